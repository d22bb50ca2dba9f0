//! Delivery reports from the outbound channel.

use super::*;

struct Sent {
    host: TestHost,
    campaign: Record,
    sends: Vec<Record>,
}

fn sent() -> Sent {
    let host = TestHost::new();
    contact(&host, "Ada", Some("ada@example.com"), Some(true));
    contact(&host, "Bob", Some("bob@example.com"), Some(true));
    contact(&host, "Cy", Some("cy@example.com"), Some(true));
    let segment = segment(&host, json!({}));
    let template = template(&host, "News", "<p>Hi</p>");
    let campaign = campaign(&host, &segment, &template, None);
    host.invoke(&Marketing, "send", [("campaign_id", Value::Id(campaign.id.clone()))]).unwrap();
    run_timers(&host, 1);
    host.take_events();
    let sends = host.records("campaign_send");
    Sent { host, campaign, sends }
}

/// The kernel's update of an outbound message, as the hook receives it.
fn report(message_id: &str, status: &str, source: &str, error: Option<&str>, sent_at: i64) -> Event {
    let fields = Fields::new().with("status", status).with("source", source).with("error", error).with("sent_at", sent_at);
    Event { at: sent_at + 5, ..Event::new("outbound_message", message_id, Op::Update, fields) }
}

fn message(send: &Record) -> &str {
    send.text("message_id").unwrap()
}

#[test]
fn delivery_bounce_and_failure_reach_the_send_log_and_the_counters() {
    let Sent { host, campaign, sends } = sent();
    let at = host.now() + 10;
    let events = vec![
        report(message(&sends[0]), "delivered", "marketing", None, at),
        report(message(&sends[1]), "bounced", "marketing", Some("550 no such user"), at),
        report(message(&sends[2]), "failed", "marketing", Some("connection refused"), at),
        // Not final yet, and another plugin's message: ignored.
        report("msg-9", "delivered", "helpdesk", None, at),
    ];
    host.after_commit(&Marketing, events.clone()).unwrap();
    let read = |send: &Record| host.record("campaign_send", &send.id).unwrap();
    assert_eq!(read(&sends[0]).text("status"), Some("delivered"));
    assert_eq!(read(&sends[0]).int("delivered_at"), Some(at));
    assert_eq!(read(&sends[1]).text("status"), Some("bounced"));
    assert_eq!(read(&sends[1]).int("bounced_at"), Some(at));
    assert_eq!(read(&sends[1]).text("error"), Some("550 no such user"));
    assert_eq!(read(&sends[2]).text("status"), Some("failed"));
    let counters = host.record("campaign", &campaign.id).unwrap();
    assert_eq!(
        [counters.int("delivered_count"), counters.int("bounced_count"), counters.int("failed_count")],
        [Some(1), Some(1), Some(1)]
    );
    let bounced = emitted(&host, "email_bounced");
    assert_eq!(bounced.len(), 1);
    assert_eq!(bounced[0]["error"], "550 no such user");
    assert_eq!(bounced[0]["contact_id"], sends[1].id("contact_id").unwrap());
    assert_eq!(host.records("activity")[0].text("subject"), Some("Email bounced: News"));

    // Delivered again (at least once): nothing changes.
    host.after_commit(&Marketing, events).unwrap();
    let again = host.record("campaign", &campaign.id).unwrap();
    assert_eq!(again.int("delivered_count"), Some(1));
    assert_eq!(emitted(&host, "email_bounced").len(), 1);

    // A late bounce of a delivered message counts as a bounce.
    host.after_commit(&Marketing, vec![report(message(&sends[0]), "bounced", "marketing", Some("mailbox full"), at + 50)])
        .unwrap();
    assert_eq!(read(&sends[0]).text("status"), Some("bounced"));
    assert_eq!(host.record("campaign", &campaign.id).unwrap().int("bounced_count"), Some(2));
}

#[test]
fn queued_and_sent_statuses_are_not_reports() {
    let Sent { host, sends, .. } = sent();
    let at = host.now();
    host.after_commit(
        &Marketing,
        vec![
            report(message(&sends[0]), "queued", "marketing", None, at),
            report(message(&sends[1]), "sent", "marketing", None, at),
        ],
    )
    .unwrap();
    assert!(host.records("campaign_send").iter().all(|send| send.text("status") == Some("queued")));
}

#[test]
fn stats_recounts_the_counters_from_the_send_log() {
    let Sent { host, campaign, sends } = sent();
    host.make_current();
    records::update("campaign_send", &sends[0].id, [("delivered_at", host.now()), ("opened_at", host.now())], None).unwrap();
    records::update("campaign_send", &sends[1].id, [("status", "failed")], None).unwrap();
    records::update("campaign", &campaign.id, [("sent_count", 99)], None).unwrap();
    let stats = host.invoke(&Marketing, "stats", [("campaign_id", Value::Id(campaign.id.clone()))]).unwrap();
    let expected = [
        ("sent_count", 3),
        ("delivered_count", 1),
        ("opened_count", 1),
        ("clicked_count", 0),
        ("unsubscribed_count", 0),
        ("bounced_count", 0),
        ("failed_count", 1),
    ];
    for (counter, value) in expected {
        assert_eq!(stats.int(counter), Some(value), "{counter}");
        assert_eq!(host.record("campaign", &campaign.id).unwrap().int(counter), Some(value), "{counter} stored");
    }
    let neither = host.invoke(&Marketing, "stats", Fields::new()).unwrap_err();
    assert_eq!(neither.message(), "campaign_id or sequence_step_id: give exactly one");
}
