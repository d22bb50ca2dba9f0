//! CSAT and NPS: survey emails with signed links, the public routes that
//! record answers, and the scores.

use crm_plugin_sdk::serde_json::{self, json};
use crm_plugin_sdk::testing::TestHost;

use crate::tests::*;

const PREFIX: &str = "http://127.0.0.1:8080/hooks/default/helpdesk";

/// The request behind the link for `answer` in a survey email body.
fn link(body: &str, name: &str, answer: i64) -> HttpRequest {
    let url = body
        .split_whitespace()
        .find(|word| word.starts_with(PREFIX) && word.ends_with(&format!("&{name}={answer}")))
        .unwrap_or_else(|| panic!("no link for {answer} in {body}"));
    let (path, query) = url[PREFIX.len()..].split_once('?').unwrap();
    HttpRequest::get(path).with_query(query)
}

fn solved_ticket(host: &TestHost, email: Option<&str>) -> Record {
    let ada = contact(host, "Ada", email);
    let created = ticket(host, Fields::new().with("subject", "Printer on fire").with("requester_id", Value::Id(ada.id.clone())));
    update(host, &created.id, [("status", "solved")])
}

#[test]
fn solving_a_ticket_sends_one_csat_survey_with_signed_links() {
    let host = TestHost::new();
    let solved = solved_ticket(&host, Some("ada@example.com"));
    let sent = host.sent();
    assert_eq!(sent.len(), 1);
    let message = &sent[0].message;
    assert_eq!(message.to, "ada@example.com");
    assert_eq!(message.subject, format!("How did we do? Re: Printer on fire [#{}]", solved.id));
    for rating in 1..=5 {
        let request = link(&message.body, "rating", rating);
        assert_eq!(request.path, "/csat");
        assert!(request.query.starts_with("token="));
    }
    assert!(
        message
            .html
            .as_deref()
            .is_some_and(|html| html.contains("href=\"http://127.0.0.1:8080/hooks/default/helpdesk/csat?token="))
    );
    let surveys = host.records("survey_response");
    assert_eq!(surveys.len(), 1);
    assert_eq!((surveys[0].text("kind"), surveys[0].id("ticket_id")), (Some("csat"), Some(solved.id.as_str())));
    assert_eq!(surveys[0].text("message_id"), Some(sent[0].id.as_str()));
    assert_eq!(solved.int("csat_sent_at"), Some(host.now()));
    // Reopened and solved again: still one survey.
    update(&host, &solved.id, [("status", "open")]);
    update(&host, &solved.id, [("status", "solved")]);
    assert_eq!(host.sent().len(), 1);
}

#[test]
fn no_survey_without_an_email_address_or_when_disabled() {
    let host = TestHost::new();
    let solved = solved_ticket(&host, None);
    assert!(host.sent().is_empty());
    assert_eq!(solved.int("csat_sent_at"), None);
    let host = host_with(json!({"csat": {"enabled": false}}));
    solved_ticket(&host, Some("ada@example.com"));
    assert!(host.sent().is_empty());
}

#[test]
fn the_csat_link_records_the_rating_on_the_survey_and_the_ticket() {
    let host = TestHost::new();
    let solved = solved_ticket(&host, Some("ada@example.com"));
    let body = host.sent()[0].message.body.clone();
    let response = host.http(&Helpdesk, link(&body, "rating", 4)).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(response.body_text().unwrap().contains("Thank you"));
    let rated = host.record("ticket", &solved.id).unwrap();
    assert_eq!((rated.int("csat_rating"), rated.int("csat_rated_at")), (Some(4), Some(host.now())));
    let survey = host.records("survey_response").remove(0);
    assert_eq!((survey.int("rating"), survey.text("category")), (Some(4), Some("satisfied")));
    let events = emitted(&host, "helpdesk.csat_received");
    assert_eq!((events[0]["ticket_id"].as_str(), events[0]["rating"].as_i64()), (Some(solved.id.as_str()), Some(4)));
    assert_eq!(events[0]["contact_id"], survey.id("contact_id").unwrap());
    // Another click replaces the answer.
    host.http(&Helpdesk, link(&body, "rating", 2)).unwrap();
    assert_eq!(host.record("ticket", &solved.id).unwrap().int("csat_rating"), Some(2));
    assert_eq!(host.records("survey_response")[0].text("category"), Some("dissatisfied"));
    // A comment comes by POST, as the thank-you page's form sends it.
    let token = link(&body, "rating", 5).query_param("token").unwrap();
    let post = HttpRequest::post("/csat").with_form([("token", token.as_str()), ("rating", "5"), ("comment", "Quick and kind")]);
    assert_eq!(host.http(&Helpdesk, post).unwrap().status, 200);
    let rated = host.record("ticket", &solved.id).unwrap();
    assert_eq!((rated.int("csat_rating"), rated.text("csat_comment")), (Some(5), Some("Quick and kind")));
    let json_post =
        HttpRequest::post("/csat").with_json(&json!({"token": token, "rating": 3})).with_header("accept", "application/json");
    let response = host.http(&Helpdesk, json_post).unwrap();
    let answer: serde_json::Value = response.json_body().unwrap();
    assert_eq!((answer["recorded"].as_bool(), answer["rating"].as_i64()), (Some(true), Some(3)));
    assert_eq!(answer["ticket_id"].as_str(), Some(solved.id.as_str()));
}

#[test]
fn bad_links_get_clear_status_codes() {
    let host = TestHost::new();
    solved_ticket(&host, Some("ada@example.com"));
    let body = host.sent()[0].message.body.clone();
    let good = link(&body, "rating", 5);
    let token = good.query_param("token").unwrap();
    let get = |query: String| host.http(&Helpdesk, HttpRequest::get("/csat").with_query(query)).unwrap();
    assert_eq!(get(format!("token={token}&rating=6")).status, 400);
    assert_eq!(get(format!("token={token}&rating=good")).status, 400);
    assert_eq!(get("rating=5".into()).status, 400);
    let (data, tag) = token.split_once('.').unwrap();
    let forged = format!("{}.{tag}", &data[..data.len() - 2]);
    assert_eq!(get(format!("token={forged}&rating=5")).status, 404);
    assert_eq!(get(format!("token={data}&rating=5")).status, 404);
    // Without an answer the page offers the choices and records nothing.
    let choices = get(format!("token={token}"));
    assert_eq!(choices.status, 200);
    assert!(choices.body_text().unwrap().contains("5 – Very satisfied"));
    assert!(emitted(&host, "helpdesk.csat_received").is_empty());
    let json_choices = host
        .http(&Helpdesk, HttpRequest::get("/csat").with_query(format!("token={token}")).with_header("accept", "application/json"))
        .unwrap();
    let choices: serde_json::Value = json_choices.json_body().unwrap();
    assert_eq!(choices["choices"].as_array().map(Vec::len), Some(5));
    assert_eq!(choices["choices"][0]["url"].as_str(), Some(format!("{PREFIX}/csat?token={token}&rating=5").as_str()));
    let json_error = host
        .http(
            &Helpdesk,
            HttpRequest::get("/csat").with_query(format!("token={token}&rating=0")).with_header("accept", "application/json"),
        )
        .unwrap();
    assert_eq!(json_error.json_body::<serde_json::Value>().unwrap()["error"], "rating: must be a whole number from 1 to 5");
    // A CSAT token is no NPS token, and another tenant's key does not verify it.
    assert_eq!(host.http(&Helpdesk, HttpRequest::get("/nps").with_query(format!("token={token}&score=5"))).unwrap().status, 404);
    let put = host.http(&Helpdesk, HttpRequest::new("PUT", "/csat")).unwrap();
    assert_eq!((put.status, put.header("allow")), (405, Some("GET, POST")));
    assert_eq!(host.http(&Helpdesk, HttpRequest::post("/csat").with_body("%%%")).unwrap().status, 400);
    let elsewhere = TestHost::new();
    assert_eq!(elsewhere.http(&Helpdesk, good).unwrap().status, 404);
}

#[test]
fn nps_surveys_are_sent_answered_and_scored() {
    let host = TestHost::new();
    let mut bodies = Vec::new();
    for name in ["Ada", "Grace", "Alan", "Edsger"] {
        let person = contact(&host, name, Some(&format!("{}@example.com", name.to_lowercase())));
        let output = host.invoke(&Helpdesk, "send-nps-survey", [("contact_id", Value::Id(person.id.clone()))]).unwrap();
        assert!(output.id("survey_response_id").is_some() && output.text("message_id").is_some());
        bodies.push(host.sent().last().unwrap().message.body.clone());
    }
    assert_eq!(host.sent()[0].message.subject, "How likely are you to recommend us?");
    let answered_from = host.now();
    for (body, score) in bodies.iter().zip([10, 9, 7, 3]) {
        host.advance(MINUTE);
        assert_eq!(host.http(&Helpdesk, link(body, "score", score)).unwrap().status, 200);
    }
    let score = host.invoke(&Helpdesk, "nps-score", Fields::new()).unwrap();
    assert_eq!(score.float("score"), Some(25.0));
    assert_eq!(
        (score.int("responses"), score.int("promoters"), score.int("passives"), score.int("detractors")),
        (Some(4), Some(2), Some(1), Some(1))
    );
    // A period: only the last two answers.
    let recent = host.invoke(&Helpdesk, "nps-score", [("from", answered_from + 3 * MINUTE)]).unwrap();
    assert_eq!((recent.int("responses"), recent.float("score")), (Some(2), Some(-50.0)));
    let none = host.invoke(&Helpdesk, "nps-score", [("from", host.now() + 1)]).unwrap();
    assert_eq!((none.int("responses"), none.get("score")), (Some(0), None));
    let error = host.invoke(&Helpdesk, "nps-score", [("from", Value::Int(10)), ("to", Value::Int(5))]).unwrap_err();
    assert_eq!(error.message(), "from: is after to");
    assert_eq!(emitted(&host, "helpdesk.nps_received")[0]["score"], 10);
    let silent = contact(&host, "Quiet", None);
    let error = host.invoke(&Helpdesk, "send-nps-survey", [("contact_id", Value::Id(silent.id.clone()))]).unwrap_err();
    assert_eq!(error.message(), "contact_id: the contact has no email address");
    let error = host.invoke(&Helpdesk, "send-nps-survey", [("contact_id", Value::Id(U1.into()))]).unwrap_err();
    assert_eq!(error.message(), format!("contact_id: there is no contact {U1}"));
}

#[test]
fn csat_score_counts_answers_per_team() {
    let host = host_with(json!({"teams": {"support": {"members": [U1]}, "billing": {"members": [U2]}}}));
    for (team, rating) in [("support", 5), ("support", 4), ("billing", 2)] {
        let person = contact(&host, "Ada", Some("ada@example.com"));
        let created = ticket(
            &host,
            Fields::new().with("subject", "x").with("team", team).with("requester_id", Value::Id(person.id.clone())),
        );
        update(&host, &created.id, [("status", "solved")]);
        let body = host.sent().last().unwrap().message.body.clone();
        host.http(&Helpdesk, link(&body, "rating", rating)).unwrap();
    }
    let all = host.invoke(&Helpdesk, "csat-score", Fields::new()).unwrap();
    assert_eq!((all.int("responses"), all.int("satisfied"), all.int("dissatisfied")), (Some(3), Some(2), Some(1)));
    assert_eq!((all.float("score"), all.float("average_rating")), (Some(66.7), Some(3.67)));
    let support = host.invoke(&Helpdesk, "csat-score", [("team", "support")]).unwrap();
    assert_eq!((support.int("responses"), support.float("score")), (Some(2), Some(100.0)));
    let survey = host.records("survey_response").into_iter().find(|survey| survey.text("team") == Some("billing")).unwrap();
    assert_eq!(survey.id("assignee_id"), Some(U2));
}

#[test]
fn a_broken_configuration_answers_503_and_records_nothing() {
    let host = TestHost::new();
    solved_ticket(&host, Some("ada@example.com"));
    let body = host.sent()[0].message.body.clone();
    host.set_config(json!({"default_team": "nobody"}));
    let response = host.http(&Helpdesk, link(&body, "rating", 5).with_header("accept", "application/json")).unwrap();
    assert_eq!(response.status, 503);
    assert!(host.logged("invalid helpdesk configuration: default_team: 'nobody' is not a team in teams"));
    assert!(emitted(&host, "helpdesk.csat_received").is_empty());
}
