//! Canned replies: merge fields, validation and applying one to a ticket.

use std::collections::BTreeMap;

use crate::canned::{check, render};
use crate::tests::*;

#[test]
fn merge_fields_render_with_fallbacks() {
    let values: BTreeMap<&str, String> =
        [("ticket.subject", "Printer".to_owned()), ("requester.first_name", String::new())].into_iter().collect();
    assert_eq!(
        render("Hi {{ requester.first_name | there }}, about {{ticket.subject}}.", &values).unwrap(),
        "Hi there, about Printer."
    );
    assert_eq!(render("{{company.name}}!", &values).unwrap(), "!");
    assert_eq!(render("no fields", &values).unwrap(), "no fields");
    assert!(check("{{ticket.subjct}}").unwrap_err().starts_with("unknown merge field {{ticket.subjct}} (known: ticket.id"));
    assert_eq!(check("Hi {{requester.first_name"), Err("'{{' without a closing '}}'".to_owned()));
}

#[test]
fn a_canned_reply_with_an_unknown_field_is_refused() {
    let host = TestHost::new();
    let error =
        host.write(&Helpdesk, Change::create("canned_reply", [("name", "greet"), ("body", "Hi {{first_name}}")])).unwrap_err();
    assert!(error.message().starts_with("body: unknown merge field {{first_name}}"), "{error}");
    host.write(&Helpdesk, Change::create("canned_reply", [("name", "greet"), ("body", "Hi {{requester.first_name}}")])).unwrap();
}

#[test]
fn applying_a_canned_reply_posts_a_public_reply_and_sets_its_status() {
    let host = TestHost::new();
    let acme = host.insert("company", [("name", "Acme")]);
    let ada = host.insert(
        "contact",
        Fields::new().with("first_name", "Ada").with("email", "ada@example.com").with("company_id", Value::Id(acme.id.clone())),
    );
    let created = ticket(&host, Fields::new().with("subject", "Printer on fire").with("requester_id", Value::Id(ada.id.clone())));
    let canned = host
        .write(
            &Helpdesk,
            Change::create(
                "canned_reply",
                [
                    ("name", "need-info"),
                    ("body", "Hi {{requester.first_name|there}}, about \"{{ticket.subject}}\" at {{company.name}}: please send a photo. ({{agent.id}})"),
                    ("set_status", "pending"),
                ],
            ),
        )
        .unwrap();
    let input = Fields::new()
        .with("ticket_id", Value::Id(created.id.clone()))
        .with("canned_reply_id", Value::Id(canned.id.clone()))
        .with("author_id", Value::Id(U1.into()));
    let output = host.invoke(&Helpdesk, "apply-canned-reply", input).unwrap();
    let body = format!("Hi Ada, about \"Printer on fire\" at Acme: please send a photo. ({U1})");
    assert_eq!(output.text("body"), Some(body.as_str()));
    assert_eq!(output.text("status"), Some("pending"));
    settle(&host);
    let reply = host.record("ticket_comment", output.id("comment_id").unwrap()).unwrap();
    assert_eq!(
        (reply.text("visibility"), reply.text("author_kind"), reply.id("author_id")),
        (Some("public"), Some("agent"), Some(U1))
    );
    assert_eq!(host.sent()[0].message.body.lines().next(), Some(body.as_str()));
    let ticket = host.record("ticket", &created.id).unwrap();
    assert_eq!(ticket.text("status"), Some("pending"));
    assert!(ticket.int("first_reply_at").is_some());

    let missing = Fields::new().with("ticket_id", Value::Id(created.id.clone())).with("canned_reply_id", Value::Id(U2.into()));
    assert_eq!(
        host.invoke(&Helpdesk, "apply-canned-reply", missing).unwrap_err().message(),
        format!("canned_reply_id: there is no canned reply {U2}")
    );
    update(&host, &created.id, [("status", "closed")]);
    let closed =
        Fields::new().with("ticket_id", Value::Id(created.id.clone())).with("canned_reply_id", Value::Id(canned.id.clone()));
    assert_eq!(
        host.invoke(&Helpdesk, "apply-canned-reply", closed).unwrap_err().message(),
        "ticket_id: the ticket is closed; create a follow-up ticket"
    );
}
