//! Policies, due times, the pausing clock and status timestamps, as the
//! before-write hook derives them.

use crm_plugin_sdk::serde_json::json;
use crm_plugin_sdk::testing::DEFAULT_NOW;

use crate::config::Config;
use crate::sla::{Metric, derive};
use crate::tests::calendar::utc;
use crate::tests::*;

#[test]
fn the_first_matching_policy_applies_by_priority_channel_tier_and_team() {
    let host = host_with(json!({
        "teams": {"vip": {"members": [U1]}},
        "sla": {"policies": [
            {"name": "gold-chat", "company_tiers": ["Gold"], "channels": ["chat"], "first_reply_minutes": 5},
            {"name": "vip-team", "teams": ["vip"], "first_reply_minutes": 15},
            {"name": "urgent", "priorities": ["urgent"], "first_reply_minutes": 30},
            {"name": "rest", "resolution_minutes": 600}
        ]}
    }));
    let gold = host.insert("company", [("name", "Acme"), ("support_tier", "gold")]);
    let ada = host.insert("contact", Fields::new().with("first_name", "Ada").with("company_id", Value::Id(gold.id.clone())));
    let chat =
        ticket(&host, Fields::new().with("subject", "a").with("channel", "chat").with("requester_id", Value::Id(ada.id.clone())));
    // The company follows the requester, and its tier matches case-insensitively.
    assert_eq!(chat.id("company_id"), Some(gold.id.as_str()));
    assert_eq!(chat.text("sla_policy"), Some("gold-chat"));
    assert_eq!(chat.int("first_reply_due_at"), Some(DEFAULT_NOW + 5 * MINUTE));
    let web = ticket(
        &host,
        Fields::new().with("subject", "b").with("requester_id", Value::Id(ada.id.clone())).with("priority", "urgent"),
    );
    assert_eq!(web.text("sla_policy"), Some("urgent"));
    let vip = ticket(&host, [("subject", "c"), ("team", "vip"), ("priority", "urgent")]);
    assert_eq!(vip.text("sla_policy"), Some("vip-team"), "order decides between matching policies");
    let rest = ticket(&host, [("subject", "d")]);
    assert_eq!(rest.text("sla_policy"), Some("rest"));
    assert_eq!((rest.int("first_reply_due_at"), rest.int("resolution_due_at")), (None, Some(DEFAULT_NOW + 600 * MINUTE)));

    // No policy at all: no due times.
    let host = host_with(json!({"sla": {"policies": [{"name": "chat", "channels": ["chat"], "first_reply_minutes": 5}]}}));
    let none = ticket(&host, [("subject", "e")]);
    assert_eq!((none.text("sla_policy"), none.int("first_reply_due_at")), (None, None));
}

#[test]
fn pending_pauses_the_clock_and_open_resumes_it() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "Down"), ("priority", "urgent")]);
    assert_eq!(created.int("resolution_due_at"), Some(DEFAULT_NOW + 240 * MINUTE));
    host.advance(20 * MINUTE);
    let pending = update(&host, &created.id, [("status", "pending")]);
    assert_eq!((pending.int("first_reply_due_at"), pending.int("resolution_due_at")), (None, None));
    assert_eq!(pending.int("sla_clock_ms"), Some(20 * MINUTE));
    host.advance(100 * MINUTE);
    let open = update(&host, &created.id, [("status", "open")]);
    let now = host.now();
    assert_eq!(open.int("first_reply_due_at"), Some(now + 40 * MINUTE), "60 minutes less the 20 already run");
    assert_eq!(open.int("resolution_due_at"), Some(now + 220 * MINUTE));
    // The timers moved with the due times.
    let first = format!("sla:{}:first_reply", created.id);
    assert!(timers(&host).contains(&(first, now + 40 * MINUTE)), "{:?}", timers(&host));
    assert!(timers(&host).contains(&(format!("warn:{}:first_reply", created.id), now + 10 * MINUTE)));
    // A change that does not touch the clock leaves the due times alone.
    host.advance(5 * MINUTE);
    let tagged = update(&host, &created.id, [("tags", Value::Texts(vec!["vip".into()]))]);
    assert_eq!(tagged.int("first_reply_due_at"), Some(now + 40 * MINUTE));
    assert_eq!(tagged.int("sla_clock_at"), open.int("sla_clock_at"));
}

#[test]
fn solving_records_resolution_minutes_without_paused_time_and_reopening_clears_them() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "Slow"), ("priority", "high")]);
    host.advance(30 * MINUTE);
    update(&host, &created.id, [("status", "pending")]);
    host.advance(60 * MINUTE);
    update(&host, &created.id, [("status", "open")]);
    host.advance(15 * MINUTE);
    let solved = update(&host, &created.id, [("status", "solved")]);
    assert_eq!(solved.int("solved_at"), Some(host.now()));
    assert_eq!(solved.int("resolution_minutes"), Some(45));
    assert_eq!((solved.int("resolution_due_at"), solved.int("first_reply_due_at")), (None, None));

    host.advance(10 * MINUTE);
    let reopened = update(&host, &created.id, [("status", "open")]);
    assert_eq!((reopened.int("solved_at"), reopened.int("resolution_minutes")), (None, None));
    // The resolution target continues from the 45 minutes run: 480 - 45 left.
    assert_eq!(reopened.int("resolution_due_at"), Some(host.now() + 435 * MINUTE));
    host.advance(5 * MINUTE);
    let closed = update(&host, &created.id, [("status", "closed")]);
    assert_eq!((closed.int("closed_at"), closed.int("solved_at")), (Some(host.now()), Some(host.now())));
    assert_eq!(closed.int("resolution_minutes"), Some(50));
    assert_eq!(
        refused(&host, &created.id, [("status", "open")]),
        "status: a closed ticket cannot be reopened; create a follow-up ticket"
    );
    // Other fields of a closed ticket may still change.
    update(&host, &created.id, [("tags", Value::Texts(vec!["done".into()]))]);
}

#[test]
fn a_priority_change_keeps_the_time_already_run() {
    let host = TestHost::new();
    let created = ticket(&host, [("subject", "x")]);
    assert_eq!(created.int("first_reply_due_at"), Some(DEFAULT_NOW + 480 * MINUTE));
    host.advance(30 * MINUTE);
    let urgent = update(&host, &created.id, [("priority", "urgent")]);
    assert_eq!(urgent.text("sla_policy"), Some("urgent"));
    assert_eq!(urgent.int("first_reply_due_at"), Some(DEFAULT_NOW + 60 * MINUTE));
    // Already past the new target: due at once.
    host.advance(45 * MINUTE);
    let created = ticket(&host, [("subject", "y")]);
    host.advance(70 * MINUTE);
    let late = update(&host, &created.id, [("priority", "urgent")]);
    assert_eq!(late.int("first_reply_due_at"), Some(host.now()));
}

#[test]
fn business_hours_policies_use_their_calendar() {
    let host = host_with(json!({
        "calendars": {"berlin": {"time_zone": "Europe/Berlin", "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"], "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]}}},
        "sla": {"policies": [{"name": "office", "calendar": "berlin", "first_reply_minutes": 120, "resolution_minutes": 960}]}
    }));
    host.set_now(utc(2025, 3, 28, 15, 0));
    let created = ticket(&host, [("subject", "Friday afternoon")]);
    assert_eq!(created.int("first_reply_due_at"), Some(utc(2025, 3, 31, 8, 0)));
    // Two working days: Friday's hour, Monday's eight, seven on Tuesday.
    assert_eq!(created.int("resolution_due_at"), Some(utc(2025, 4, 1, 14, 0)));
    host.set_now(utc(2025, 3, 31, 7, 30));
    comment(&host, &created.id, "public", "agent", "On it");
    let replied = host.record("ticket", &created.id).unwrap();
    assert_eq!(replied.int("first_reply_minutes"), Some(90), "business minutes, not the 64 hours of wall time");
}

#[test]
fn teams_must_be_configured_and_the_default_team_applies() {
    let host = host_with(json!({"teams": {"support": {"members": [U1]}}, "default_team": "support"}));
    let created = ticket(&host, [("subject", "x")]);
    assert_eq!(created.text("team"), Some("support"));
    assert_eq!(
        refused(&host, &created.id, [("team", "billing")]),
        "team: 'billing' is not a team in the helpdesk configuration (known: support)"
    );
    let host = TestHost::new();
    let error = host.write(&Helpdesk, Change::create("ticket", [("subject", "x"), ("team", "support")])).unwrap_err();
    assert_eq!(error.message(), "team: 'support' is not a team in the helpdesk configuration (none are configured)");
}

#[test]
fn values_a_write_gives_are_kept_so_imports_keep_their_history() {
    let host = TestHost::new();
    let imported = ticket(
        &host,
        Fields::new()
            .with("subject", "Old")
            .with("status", "solved")
            .with("solved_at", DEFAULT_NOW - 1000)
            .with("resolution_minutes", 42)
            .with("csat_sent_at", DEFAULT_NOW - 500),
    );
    assert_eq!((imported.int("solved_at"), imported.int("resolution_minutes")), (Some(DEFAULT_NOW - 1000), Some(42)));
    assert!(host.sent().is_empty(), "an imported survey time means no new survey");
}

#[test]
fn derive_is_idempotent_over_a_ticket_history() {
    let config: Config = Config::default();
    let steps: Vec<(i64, Fields)> = vec![
        (0, Fields::new().with("subject", "x").with("priority", "high")),
        (10, Fields::new().with("status", "pending")),
        (25, Fields::new().with("status", "open")),
        (30, Fields::new().with("first_reply_at", DEFAULT_NOW + 30 * MINUTE)),
        (40, Fields::new().with("awaiting_reply_since", DEFAULT_NOW + 40 * MINUTE)),
        (45, Fields::new().with("priority", "urgent")),
        (50, Fields::new().with("status", "solved")),
        (55, Fields::new().with("status", "open")),
        (60, Fields::new().with("status", "closed")),
    ];
    let mut stored: Option<Fields> = None;
    for (minute, changes) in steps {
        let now = DEFAULT_NOW + minute * MINUTE;
        let mut after = stored.clone().unwrap_or_default();
        after.merge(&changes);
        let patch = derive(&config, stored.as_ref(), &after, now, None);
        after.merge(&patch);
        // The same write derived again (as the kernel's hook does on the
        // plugin's own writes, a moment later) changes nothing.
        let again = derive(&config, stored.as_ref(), &after, now + 7, None);
        assert!(again.is_empty(), "minute {minute}: {again:?}");
        after.retain(|_, value| !value.is_null());
        stored = Some(after);
    }
    let last = stored.unwrap();
    assert_eq!(last.int("resolution_minutes"), Some(40), "50 minutes less 15 pending, then 5 more after reopening");
    assert!(Metric::ALL.iter().all(|metric| last.int(metric.due_field()).is_none()));
}

#[test]
fn configured_defaults_fill_new_tickets() {
    let host = host_with(json!({"default_priority": "high", "default_channel": "email"}));
    let created = ticket(&host, [("subject", "x")]);
    assert_eq!(
        (created.text("priority"), created.text("channel"), created.text("sla_policy")),
        (Some("high"), Some("email"), Some("high"))
    );
    let given = ticket(&host, [("subject", "y"), ("priority", "low"), ("channel", "phone")]);
    assert_eq!((given.text("priority"), given.text("channel")), (Some("low"), Some("phone")));
}
