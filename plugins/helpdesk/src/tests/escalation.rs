//! Escalation rules on breach and on age.

use crm_plugin_sdk::serde_json::json;
use crm_plugin_sdk::testing::DEFAULT_NOW;

use crate::tests::*;

fn teams() -> serde_json::Value {
    json!({"support": {"members": [U1, U2]}, "tier2": {"members": [U3]}})
}

#[test]
fn a_breach_rule_reassigns_raises_priority_notifies_and_emits_once() {
    let host = host_with(json!({
        "teams": teams(),
        "escalations": [{"name": "late-first-reply", "on": "breach", "metrics": ["first_reply"], "assign_team": "tier2", "raise_priority": true, "notify": ["leads@example.com"]}]
    }));
    let created = ticket(&host, [("subject", "Invoice wrong"), ("priority", "high"), ("team", "support")]);
    assert_eq!(created.id("assignee_id"), Some(U1));
    let due = created.int("first_reply_due_at").unwrap();
    assert_eq!(due, DEFAULT_NOW + 120 * MINUTE);
    advance_to(&host, due);
    let escalated = host.record("ticket", &created.id).unwrap();
    assert_eq!((escalated.text("team"), escalated.id("assignee_id")), (Some("tier2"), Some(U3)));
    assert_eq!(escalated.text("priority"), Some("urgent"));
    assert_eq!(escalated.int("escalation_count"), Some(1));
    assert_eq!((escalated.text("last_escalation"), escalated.int("escalated_at")), (Some("late-first-reply"), Some(due)));
    // The stricter policy applies at once, with the 120 minutes already run.
    assert_eq!(escalated.text("sla_policy"), Some("urgent"));
    assert_eq!(escalated.int("resolution_due_at"), Some(due + 120 * MINUTE));
    let mail: Vec<_> = host.sent().into_iter().filter(|sent| sent.message.to == "leads@example.com").collect();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].message.subject, format!("[Escalation] late-first-reply: Invoice wrong [#{}]", created.id));
    assert!(mail[0].message.body.contains("because the first reply target breached"), "{}", mail[0].message.body);
    let events = emitted(&host, "helpdesk.ticket_escalated");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0]["rule"].as_str(), events[0]["trigger"].as_str(), events[0]["metric"].as_str()),
        (Some("late-first-reply"), Some("breach"), Some("first_reply"))
    );
    assert_eq!(events[0]["assignee_id"], U3);
    // The first-reply breach is not emitted again under the new policy, and
    // the rule does not run for the resolution breach.
    advance_to(&host, due + 120 * MINUTE);
    let metrics: Vec<String> =
        emitted(&host, "helpdesk.sla_breached").iter().map(|event| event["metric"].as_str().unwrap().to_owned()).collect();
    assert_eq!(metrics, ["first_reply", "resolution"]);
    assert_eq!(emitted(&host, "helpdesk.ticket_escalated").len(), 1);
    assert_eq!(host.record("ticket", &created.id).unwrap().int("escalation_count"), Some(1));
}

#[test]
fn an_age_rule_runs_at_its_age_unless_the_ticket_is_done_or_does_not_match() {
    let host = host_with(json!({
        "teams": teams(),
        "escalations": [{"name": "stale", "on": "age", "after_minutes": 2880, "statuses": ["new", "open"], "assign_user": U2, "set_priority": "high", "notify": ["boss@example.com"]}]
    }));
    let old = ticket(&host, [("subject", "Old"), ("priority", "low")]);
    let solved = ticket(&host, [("subject", "Done"), ("priority", "low")]);
    let waiting = ticket(&host, [("subject", "Waiting"), ("priority", "low")]);
    assert!(timers(&host).contains(&(format!("age:{}:stale", old.id), DEFAULT_NOW + 2880 * MINUTE)));
    update(&host, &solved.id, [("status", "solved")]);
    assert!(!timers(&host).iter().any(|(key, _)| key == &format!("age:{}:stale", solved.id)));
    update(&host, &waiting.id, [("status", "pending")]);
    advance_to(&host, DEFAULT_NOW + 2880 * MINUTE - 1);
    assert!(emitted(&host, "helpdesk.ticket_escalated").is_empty());
    advance_to(&host, DEFAULT_NOW + 2880 * MINUTE);
    let escalated = host.record("ticket", &old.id).unwrap();
    assert_eq!((escalated.id("assignee_id"), escalated.text("priority")), (Some(U2), Some("high")));
    let events = emitted(&host, "helpdesk.ticket_escalated");
    assert_eq!(events.len(), 1, "the pending ticket's status is not in the rule");
    assert_eq!((events[0]["trigger"].as_str(), events[0]["metric"].as_str()), (Some("age"), None));
    assert_eq!(host.sent().iter().filter(|sent| sent.message.to == "boss@example.com").count(), 1);
    // Skipped for good: reopening the pending ticket does not bring it back.
    update(&host, &waiting.id, [("status", "open")]);
    assert!(!timers(&host).iter().any(|(key, _)| key.starts_with("age:")));
    assert_eq!(crate::escalation::raised("low"), "normal");
    assert_eq!(crate::escalation::raised("urgent"), "urgent");
}

#[test]
fn a_failed_notification_is_sent_on_retry_without_escalating_twice() {
    let host = host_with(json!({
        "escalations": [{"name": "late", "on": "breach", "raise_priority": true, "notify": ["leads@example.com"]}]
    }));
    let created = ticket(&host, [("subject", "x"), ("priority", "low")]);
    let key = format!("sla:{}:first_reply", created.id);
    host.set_now(created.int("first_reply_due_at").unwrap());
    // The admin withheld the email channel: the timer run fails after the
    // ticket changes.
    let mut grants = Helpdesk.manifest().capabilities;
    grants.outbound.clear();
    host.set_grants(Some(grants));
    assert!(host.on_timer(&Helpdesk, &key, b"").is_err());
    assert_eq!(host.record("ticket", &created.id).unwrap().text("priority"), Some("normal"));
    assert!(host.sent().is_empty());
    // The kernel runs the timer again once the grant is back.
    host.set_grants(None);
    host.on_timer(&Helpdesk, &key, b"").unwrap();
    settle(&host);
    let ticket = host.record("ticket", &created.id).unwrap();
    assert_eq!((ticket.text("priority"), ticket.int("escalation_count")), (Some("normal"), Some(1)));
    assert_eq!(host.sent().len(), 1);
    // Normal priority's resolution target (1440 minutes) is met by the clock
    // at once; the rule, done already, does not run for it.
    let metrics: Vec<String> =
        emitted(&host, "helpdesk.sla_breached").iter().map(|event| event["metric"].as_str().unwrap().to_owned()).collect();
    assert_eq!(metrics, ["first_reply", "resolution"]);
    assert_eq!(emitted(&host, "helpdesk.ticket_escalated").len(), 1);
}
