//! Public replies, internal notes and requester messages.

use crm_plugin_sdk::testing::DEFAULT_NOW;

use crate::tests::*;

#[test]
fn a_public_reply_is_emailed_to_the_requester_and_counts_as_the_first_reply() {
    let host = TestHost::new();
    let ada = contact(&host, "Ada", Some("ada@example.com"));
    let created = ticket(&host, Fields::new().with("subject", "Printer on fire").with("requester_id", Value::Id(ada.id.clone())));
    host.advance(12 * MINUTE);
    let reply = comment(&host, &created.id, "public", "agent", "We are sending help.");
    let sent = host.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message.to, "ada@example.com");
    assert_eq!(sent[0].message.subject, format!("Re: Printer on fire [#{}]", created.id));
    assert!(sent[0].message.body.starts_with("We are sending help.\n\n--\nTicket "));
    assert_eq!(reply.text("outbound_message_id"), Some(sent[0].id.as_str()));
    let replied = host.record("ticket", &created.id).unwrap();
    assert_eq!(replied.text("status"), Some("open"));
    assert_eq!((replied.int("first_reply_at"), replied.int("first_reply_minutes")), (Some(DEFAULT_NOW + 12 * MINUTE), Some(12)));
    assert_eq!(replied.int("last_agent_reply_at"), Some(DEFAULT_NOW + 12 * MINUTE));
    // Delivering the comment again sends nothing more.
    host.after_commit(&Helpdesk, vec![Event::new("ticket_comment", &reply.id, Op::Create, reply.fields.clone())]).unwrap();
    settle(&host);
    assert_eq!(host.sent().len(), 1);
    // A second reply is emailed too but is not the first reply.
    host.advance(MINUTE);
    comment(&host, &created.id, "public", "agent", "Help has arrived.");
    assert_eq!(host.sent().len(), 2);
    assert_eq!(host.record("ticket", &created.id).unwrap().int("first_reply_minutes"), Some(12));
}

#[test]
fn internal_notes_and_requesters_without_email_send_nothing() {
    let host = TestHost::new();
    let silent = contact(&host, "Grace", None);
    let created = ticket(&host, Fields::new().with("subject", "x").with("requester_id", Value::Id(silent.id.clone())));
    let note = comment(&host, &created.id, "internal", "agent", "Check the logs");
    assert!(host.sent().is_empty());
    assert_eq!(host.record("ticket", &created.id).unwrap().int("first_reply_at"), None);
    assert_eq!(note.text("outbound_message_id"), None);
    comment(&host, &created.id, "public", "agent", "Answer");
    assert!(host.sent().is_empty());
    assert!(host.logged("the reply was not emailed, the requester has no email address"));
    assert!(host.record("ticket", &created.id).unwrap().int("first_reply_at").is_some());
}

#[test]
fn a_requester_message_reopens_pending_and_solved_tickets() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x")]);
    comment(&host, &created.id, "public", "agent", "Please send a screenshot");
    update(&host, &created.id, [("status", "pending")]);
    host.advance(MINUTE);
    comment(&host, &created.id, "public", "requester", "Here it is");
    let reopened = host.record("ticket", &created.id).unwrap();
    assert_eq!(reopened.text("status"), Some("open"));
    assert_eq!(reopened.int("last_requester_reply_at"), Some(host.now()));
    assert!(reopened.int("next_reply_due_at").is_some());
    host.advance(MINUTE);
    comment(&host, &created.id, "public", "agent", "Fixed");
    update(&host, &created.id, [("status", "solved")]);
    host.advance(MINUTE);
    comment(&host, &created.id, "public", "requester", "Not fixed");
    assert_eq!(host.record("ticket", &created.id).unwrap().text("status"), Some("open"));
}

#[test]
fn comment_rules_default_refuse_and_freeze() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x")]);
    let note = host
        .write(
            &Helpdesk,
            Change::create("ticket_comment", [("ticket_id", Value::Id(created.id.clone())), ("body", Value::from("hi"))]),
        )
        .unwrap();
    assert_eq!((note.text("visibility"), note.text("author_kind")), (Some("internal"), Some("agent")));
    let error = host
        .write(
            &Helpdesk,
            Change::create("ticket_comment", [("ticket_id", Value::Id(created.id.clone())), ("body", Value::from("  "))]),
        )
        .unwrap_err();
    assert_eq!(error.message(), "body: is empty");
    let after = note.fields.clone().with("visibility", "public");
    let error = host.write(&Helpdesk, Change::update("ticket_comment", &note.id, note.fields.clone(), after)).unwrap_err();
    assert_eq!(error.message(), "visibility: cannot change once the comment is written");
    let edited = note.fields.clone().with("body", "hello");
    host.write(&Helpdesk, Change::update("ticket_comment", &note.id, note.fields.clone(), edited)).unwrap();

    update(&host, &created.id, [("status", "closed")]);
    let public = Fields::new().with("ticket_id", Value::Id(created.id.clone())).with("body", "late").with("visibility", "public");
    let error = host.write(&Helpdesk, Change::create("ticket_comment", public)).unwrap_err();
    assert_eq!(error.message(), "ticket_id: the ticket is closed; create a follow-up ticket");
    comment(&host, &created.id, "internal", "agent", "post-mortem notes are fine");
}
