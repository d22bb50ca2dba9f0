//! Action input checks and the preview.

use super::*;

#[test]
fn required_inputs_are_named() {
    let host = TestHost::new();
    for (action, field) in [
        ("send", "campaign_id"),
        ("cancel", "campaign_id"),
        ("enroll", "sequence_id"),
        ("unenroll", "enrollment_id"),
        ("preview", "template_id"),
    ] {
        let error = host.invoke(&Marketing, action, Fields::new()).unwrap_err();
        assert_eq!(error.message(), format!("{field}: is required"), "{action}");
    }
    let missing =
        host.invoke(&Marketing, "stats", [("sequence_step_id", Value::Id("01HZZZZZZZZZZZZZZZZZZZZZZZ".into()))]).unwrap_err();
    assert_eq!(missing.message(), "sequence_step_id: there is no sequence_step 01HZZZZZZZZZZZZZZZZZZZZZZZ");
}

#[test]
fn preview_renders_without_tracking_or_sending() {
    let host = TestHost::new();
    let company = host.insert("company", [("name", "Engines Ltd")]);
    let ada = contact_with(
        &host,
        "Ada",
        Some("ada@example.com"),
        Some(true),
        Fields::new().with("company_id", Value::Id(company.id.clone())),
    );
    let template =
        template(&host, "Hi {{contact.first_name}}", "<p>{{contact.company.name}}</p><a href=\"https://example.com\">x</a>");
    let preview = host
        .invoke(
            &Marketing,
            "preview",
            [("template_id", Value::Id(template.id.clone())), ("contact_id", Value::Id(ada.id.clone()))],
        )
        .unwrap();
    assert_eq!(preview.text("subject"), Some("Hi Ada"));
    let html = preview.text("html").unwrap();
    assert!(
        html.contains("<p>Engines Ltd</p>") && html.contains("href=\"https://example.com\"") && html.contains("#unsubscribe"),
        "{html}"
    );
    assert!(preview.text("text").unwrap().starts_with("Engines Ltd\n\nx (https://example.com)"));
    assert!(host.sent().is_empty() && host.records("campaign_send").is_empty());
}
