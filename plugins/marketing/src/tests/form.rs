//! The web-to-lead form.

use super::*;

fn post_form(host: &TestHost, query: &str, body: &[(&str, &str)]) -> HttpResponse {
    host.http(&Marketing, HttpRequest::post("/lead").with_query(query).with_form(body.iter().copied())).unwrap()
}

fn post_json(host: &TestHost, body: Json) -> HttpResponse {
    host.http(&Marketing, HttpRequest::post("/lead").with_json(&body)).unwrap()
}

fn error(response: &HttpResponse) -> String {
    response.json_body::<Json>().unwrap()["error"].as_str().unwrap().to_owned()
}

#[test]
fn a_submission_creates_a_contact_with_consent_and_tells_the_timeline() {
    let host = TestHost::new();
    let response = post_form(
        &host,
        "form=newsletter",
        &[("email", " Ada@Example.com "), ("first_name", "Ada"), ("title", "CTO"), ("email_opt_in", "on"), ("utm_source", "ad")],
    );
    assert_eq!(response.status, 201);
    let body: Json = response.json_body().unwrap();
    assert_eq!((body["created"].clone(), body["ignored"].clone()), (json!(true), json!(["utm_source"])));
    let contact = host.record("contact", body["id"].as_str().unwrap()).unwrap();
    assert_eq!(contact.text("email"), Some("ada@example.com"));
    assert_eq!(contact.text("first_name"), Some("Ada"));
    assert_eq!(contact.text("title"), Some("CTO"));
    assert_eq!(contact.text("source"), Some("web form"));
    assert_eq!(contact.text("lifecycle_stage"), Some("lead"));
    assert_eq!(contact.bool("email_opt_in"), Some(true));
    assert_eq!(contact.text("email_opt_in_source"), Some("web form"));
    let submitted = emitted(&host, "form_submitted");
    assert_eq!(submitted, [json!({"contact_id": contact.id, "form": "newsletter", "created": true})]);
    assert_eq!(host.records("activity")[0].text("subject"), Some("Submitted web form newsletter"));
}

#[test]
fn a_submission_for_a_known_address_updates_only_what_it_gives() {
    let host = TestHost::new();
    let ada = contact_with(&host, "Ada", Some("ada@example.com"), Some(false), Fields::new().with("title", "CTO"));
    let response =
        post_json(&host, json!({"email": "ADA@example.com", "last_name": "Lovelace", "first_name": "", "title": null}));
    assert_eq!(response.status, 200);
    assert_eq!(response.json_body::<Json>().unwrap()["created"], false);
    let stored = host.record("contact", &ada.id).unwrap();
    assert_eq!(
        (stored.text("first_name"), stored.text("last_name"), stored.text("title")),
        (Some("Ada"), Some("Lovelace"), Some("CTO"))
    );
    assert_eq!(stored.bool("email_opt_in"), Some(false), "consent is not given without the field");
    assert_eq!(host.records("contact").len(), 1);
    // Consent given through the form later.
    post_json(&host, json!({"email": "ada@example.com", "email_opt_in": true}));
    assert_eq!(host.record("contact", &ada.id).unwrap().bool("email_opt_in"), Some(true));
}

#[test]
fn only_configured_fields_are_accepted() {
    let host = TestHost::new();
    host.set_config(json!({"form": {"fields": ["first_name", "shoe_size"], "consent": false, "lifecycle_stage": null, "source": "landing page"}}));
    let response = post_json(
        &host,
        json!({"email": "bo@example.com", "first_name": "Bo", "title": "VP", "shoe_size": 43, "email_opt_in": true}),
    );
    assert_eq!(response.status, 201);
    let body: Json = response.json_body().unwrap();
    assert_eq!(body["ignored"], json!(["email_opt_in", "title"]));
    let contact = host.record("contact", body["id"].as_str().unwrap()).unwrap();
    assert_eq!((contact.text("title"), contact.int("shoe_size")), (None, Some(43)));
    assert_eq!(
        (contact.text("source"), contact.text("lifecycle_stage"), contact.bool("email_opt_in")),
        (Some("landing page"), None, None)
    );
}

#[test]
fn a_contact_without_a_first_name_gets_the_start_of_its_address() {
    let host = TestHost::new();
    let response = post_form(&host, "", &[("email", "grace.hopper@navy.example")]);
    let contact = host.record("contact", response.json_body::<Json>().unwrap()["id"].as_str().unwrap()).unwrap();
    assert_eq!(contact.text("first_name"), Some("grace.hopper"));
    assert_eq!(emitted(&host, "form_submitted")[0]["form"], Json::Null);
}

#[test]
fn bad_submissions_get_400_or_415_and_change_nothing() {
    let host = TestHost::new();
    let long = "x".repeat(1001);
    let cases: Vec<(HttpResponse, u16, &str)> = vec![
        (post_form(&host, "", &[("first_name", "Ada")]), 400, "email: is required"),
        (post_form(&host, "", &[("email", "ada at example")]), 400, "email: 'ada at example' is not an email address"),
        (post_form(&host, "", &[("email", "a@b.co"), ("first_name", &long)]), 400, "first_name: longer than 1000 characters"),
        (post_json(&host, json!(["a@b.co"])), 400, "the JSON body must be an object of fields"),
        (
            post_json(&host, json!({"email": "a@b.co", "first_name": {"x": 1}})),
            400,
            "first_name: must be a text, number, boolean or list of texts",
        ),
        (
            host.http(&Marketing, HttpRequest::post("/lead").with_header("content-type", "application/json").with_body("{"))
                .unwrap(),
            400,
            "the body is not JSON",
        ),
        (
            host.http(&Marketing, HttpRequest::post("/lead").with_header("content-type", "text/plain").with_body("email=a@b.co"))
                .unwrap(),
            415,
            "content type text/plain is not accepted",
        ),
    ];
    for (response, status, message) in cases {
        assert_eq!(response.status, status, "{message}");
        assert!(error(&response).starts_with(message), "{} vs {message}", error(&response));
    }
    assert!(host.records("contact").is_empty());
    assert!(host.emitted().is_empty());
}

#[test]
fn a_configured_redirect_answers_303_to_form_posts() {
    let host = TestHost::new();
    host.set_config(json!({"form": {"redirect_url": "https://example.com/thanks"}}));
    let response = post_form(&host, "", &[("email", "ada@example.com")]);
    assert_eq!(response.status, 303);
    assert_eq!(response.header("location"), Some("https://example.com/thanks"));
    assert_eq!(post_json(&host, json!({"email": "ada@example.com"})).status, 200, "JSON clients get JSON");
}
