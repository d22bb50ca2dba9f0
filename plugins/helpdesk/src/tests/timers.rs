//! Breach and warning timers: scheduled at the exact times, fired once,
//! moved or cancelled as the ticket changes.

use crm_plugin_sdk::serde_json::json;
use crm_plugin_sdk::testing::DEFAULT_NOW;

use crate::tests::*;

#[test]
fn a_breach_fires_at_the_due_time_and_not_before() {
    let host = TestHost::new();
    let ada = contact(&host, "Ada", Some("ada@example.com"));
    let created = ticket(
        &host,
        Fields::new().with("subject", "Down").with("priority", "urgent").with("requester_id", Value::Id(ada.id.clone())),
    );
    let due = DEFAULT_NOW + 60 * MINUTE;
    let id = &created.id;
    assert_eq!(
        timers(&host),
        [
            (format!("warn:{id}:first_reply"), due - 30 * MINUTE),
            (format!("sla:{id}:first_reply"), due),
            (format!("warn:{id}:resolution"), DEFAULT_NOW + 210 * MINUTE),
            (format!("sla:{id}:resolution"), DEFAULT_NOW + 240 * MINUTE),
        ]
    );
    advance_to(&host, due - 30 * MINUTE - 1);
    assert!(emitted(&host, "helpdesk.sla_warning").is_empty());
    // The warning goes out 30 minutes before.
    advance_to(&host, due - 30 * MINUTE);
    let warnings = emitted(&host, "helpdesk.sla_warning");
    assert_eq!(warnings.len(), 1);
    assert_eq!((warnings[0]["metric"].as_str(), warnings[0]["minutes_left"].as_i64()), (Some("first_reply"), Some(30)));
    assert_eq!(warnings[0]["contact_id"].as_str(), Some(ada.id.as_str()));
    advance_to(&host, due - 1);
    let before = host.record("ticket", id).unwrap();
    assert_eq!((before.bool("first_reply_breached"), before.bool("sla_breached")), (Some(false), Some(false)));
    assert!(emitted(&host, "helpdesk.sla_breached").is_empty());
    assert_eq!(emitted(&host, "helpdesk.sla_warning").len(), 1);

    advance_to(&host, due);
    let after = host.record("ticket", id).unwrap();
    assert_eq!((after.bool("first_reply_breached"), after.bool("sla_breached")), (Some(true), Some(true)));
    assert_eq!(after.bool("resolution_breached"), Some(false));
    let breaches = emitted(&host, "helpdesk.sla_breached");
    assert_eq!(breaches.len(), 1);
    let event = &breaches[0];
    assert_eq!(event["ticket_id"].as_str(), Some(id.as_str()));
    assert_eq!(event["metric"], "first_reply");
    assert_eq!(event["contact_id"].as_str(), Some(ada.id.as_str()));
    assert_eq!(event["due_at_ms"].as_i64(), Some(due));
    assert_eq!(event["due_at"], crate::text::iso(due));
    assert_eq!((event["priority"].as_str(), event["policy"].as_str()), (Some("urgent"), Some("urgent")));
    // Only the resolution timers are left; firing a timer again does nothing.
    assert!(timers(&host).iter().all(|(key, _)| key.ends_with(":resolution")));
    host.on_timer(&Helpdesk, &format!("sla:{id}:first_reply"), b"").unwrap();
    settle(&host);
    assert_eq!(emitted(&host, "helpdesk.sla_breached").len(), 1);

    // A reply after the breach meets the target late; nothing more is emitted.
    host.advance(5 * MINUTE);
    comment(&host, id, "public", "agent", "Sorry for the wait");
    let replied = host.record("ticket", id).unwrap();
    assert_eq!(replied.int("first_reply_minutes"), Some(65));
    assert_eq!(emitted(&host, "helpdesk.sla_breached").len(), 1);
}

#[test]
fn a_reply_in_time_cancels_the_breach_and_a_pending_ticket_never_breaches() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x"), ("priority", "urgent")]);
    host.advance(59 * MINUTE);
    comment(&host, &created.id, "public", "agent", "Looking");
    let replied = host.record("ticket", &created.id).unwrap();
    assert_eq!((replied.int("first_reply_minutes"), replied.int("first_reply_due_at")), (Some(59), None));
    assert_eq!(replied.text("status"), Some("open"));
    assert!(!timers(&host).iter().any(|(key, _)| key.ends_with(":first_reply")));
    advance_to(&host, DEFAULT_NOW + 120 * MINUTE);
    assert_eq!(host.record("ticket", &created.id).unwrap().bool("first_reply_breached"), Some(false));

    update(&host, &created.id, [("status", "pending")]);
    assert!(timers(&host).is_empty(), "{:?}", timers(&host));
    advance_to(&host, DEFAULT_NOW + 10_000 * MINUTE);
    let paused = host.record("ticket", &created.id).unwrap();
    assert_eq!(paused.bool("sla_breached"), Some(false));
    assert!(emitted(&host, "helpdesk.sla_breached").is_empty());
}

#[test]
fn a_reply_committed_in_time_but_delivered_late_is_no_breach() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x"), ("priority", "urgent")]);
    host.advance(50 * MINUTE);
    host.write(
        &Helpdesk,
        Change::create(
            "ticket_comment",
            Fields::new().with("ticket_id", Value::Id(created.id.clone())).with("visibility", "public").with("body", "Here"),
        ),
    )
    .unwrap();
    // The breach timer runs before the comment's delivery.
    host.set_now(DEFAULT_NOW + 61 * MINUTE);
    host.fire_due_timers(&Helpdesk).unwrap();
    settle(&host);
    let ticket = host.record("ticket", &created.id).unwrap();
    assert_eq!((ticket.bool("first_reply_breached"), ticket.int("first_reply_minutes")), (Some(false), Some(50)));
    assert!(emitted(&host, "helpdesk.sla_breached").is_empty());
}

#[test]
fn next_reply_waits_start_with_requester_messages_and_breach_per_wait() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x"), ("priority", "urgent")]);
    let id = created.id.clone();
    host.advance(10 * MINUTE);
    comment(&host, &id, "public", "agent", "First answer");
    host.advance(5 * MINUTE);
    comment(&host, &id, "public", "requester", "Still broken");
    let waiting = host.record("ticket", &id).unwrap();
    let asked = DEFAULT_NOW + 15 * MINUTE;
    assert_eq!(waiting.int("awaiting_reply_since"), Some(asked));
    assert_eq!(waiting.int("next_reply_due_at"), Some(asked + 60 * MINUTE));
    advance_to(&host, asked + 60 * MINUTE);
    let breached = host.record("ticket", &id).unwrap();
    assert_eq!(breached.bool("next_reply_breached"), Some(true));
    assert_eq!(breached.bool("first_reply_breached"), Some(false));
    host.advance(MINUTE);
    comment(&host, &id, "public", "agent", "Second answer");
    let answered = host.record("ticket", &id).unwrap();
    assert_eq!((answered.int("awaiting_reply_since"), answered.int("next_reply_due_at")), (None, None));
    // A new wait is a new cycle: it breaches again, once.
    host.advance(MINUTE);
    comment(&host, &id, "public", "requester", "And again");
    let again = host.record("ticket", &id).unwrap();
    let due = again.int("next_reply_due_at").unwrap();
    assert_eq!(due, host.now() + 60 * MINUTE);
    advance_to(&host, due + 10 * MINUTE);
    let metrics: Vec<String> =
        emitted(&host, "helpdesk.sla_breached").iter().map(|event| event["metric"].as_str().unwrap().to_owned()).collect();
    assert_eq!(metrics, ["next_reply", "next_reply"]);
    // Internal notes neither answer nor start a wait.
    comment(&host, &id, "internal", "agent", "note to self");
    assert_eq!(host.record("ticket", &id).unwrap().int("awaiting_reply_since"), again.int("awaiting_reply_since"));
}

#[test]
fn warnings_can_be_turned_off_and_fire_at_once_for_short_targets() {
    let host = host_with(json!({"sla": {"warning_minutes": 0, "policies": [{"name": "all", "first_reply_minutes": 10}]}}));
    let created = ticket(&host, [("subject", "x")]);
    assert_eq!(timers(&host), [(format!("sla:{}:first_reply", created.id), DEFAULT_NOW + 10 * MINUTE)]);
    let host = host_with(json!({"sla": {"warning_minutes": 30, "policies": [{"name": "all", "first_reply_minutes": 10}]}}));
    ticket(&host, [("subject", "x")]);
    let warnings = emitted(&host, "helpdesk.sla_warning");
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0]["minutes_left"], 10);
}

#[test]
fn deleting_a_ticket_cancels_its_timers_and_a_stale_timer_does_nothing() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x"), ("priority", "urgent")]);
    assert!(!timers(&host).is_empty());
    let before = host.record("ticket", &created.id).unwrap().fields;
    host.write(&Helpdesk, Change::delete("ticket", &created.id, before)).unwrap();
    settle(&host);
    assert!(timers(&host).is_empty());
    assert!(host.kv_get(&format!("ticket:{}", created.id)).is_none());
    host.on_timer(&Helpdesk, &format!("sla:{}:first_reply", created.id), b"").unwrap();
    host.on_timer(&Helpdesk, "nonsense", b"").unwrap();
    assert!(host.logged("ignoring unknown timer nonsense"));
    assert!(emitted(&host, "helpdesk.sla_breached").is_empty());
}

#[test]
fn a_timer_that_fires_early_waits_for_the_moved_due_time() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x"), ("priority", "urgent")]);
    host.advance(10 * MINUTE);
    host.on_timer(&Helpdesk, &format!("sla:{}:first_reply", created.id), b"").unwrap();
    assert!(emitted(&host, "helpdesk.sla_breached").is_empty());
    assert!(timers(&host).contains(&(format!("sla:{}:first_reply", created.id), DEFAULT_NOW + 60 * MINUTE)));
}

#[test]
fn a_late_reply_delivered_before_the_timer_records_the_breach_once() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x"), ("priority", "urgent")]);
    host.set_now(DEFAULT_NOW + 70 * MINUTE);
    let fields = Fields::new().with("ticket_id", Value::Id(created.id.clone())).with("visibility", "public").with("body", "Late");
    host.write(&Helpdesk, Change::create("ticket_comment", fields)).unwrap();
    // The comment's delivery comes before the timer run.
    host.after_commit(&Helpdesk, host.take_events()).unwrap();
    let replied = host.record("ticket", &created.id).unwrap();
    assert_eq!((replied.bool("first_reply_breached"), replied.int("first_reply_minutes")), (Some(true), Some(70)));
    assert_eq!(emitted(&host, "helpdesk.sla_breached").len(), 1);
    settle(&host);
    let metrics: Vec<String> =
        emitted(&host, "helpdesk.sla_breached").iter().map(|event| event["metric"].as_str().unwrap().to_owned()).collect();
    assert_eq!(metrics, ["first_reply"]);
}
