//! Unit tests through the SDK's test host, with the manifest's grants
//! enforced. `settle` plays the kernel's delivery worker: committed events
//! to after-commit, then due timers, until nothing is left; it fails a
//! test whose writes never settle.

use crm_plugin_sdk::FieldKind;
use crm_plugin_sdk::serde_json;
use crm_plugin_sdk::testing::{DEFAULT_NOW, TestHost};

use super::*;

mod assignment;
mod calendar;
mod canned;
mod config;
mod escalation;
mod kb;
mod replies;
mod sla;
mod surveys;
mod timers;

pub const MINUTE: i64 = 60_000;
pub const U1: &str = "01HZY00000000000000000000A";
pub const U2: &str = "01HZY00000000000000000000B";
pub const U3: &str = "01HZY00000000000000000000C";

pub fn host_with(config: serde_json::Value) -> TestHost {
    let host = TestHost::new();
    host.set_config(config);
    host
}

/// Delivers events and fires due timers until both are exhausted.
pub fn settle(host: &TestHost) {
    for _ in 0..50 {
        let events = host.take_events();
        let had_events = !events.is_empty();
        host.after_commit(&Helpdesk, events).unwrap();
        let fired = host.fire_due_timers(&Helpdesk).unwrap();
        if !had_events && fired == 0 && host.take_events().is_empty() {
            return;
        }
    }
    panic!("the plugin's writes do not settle");
}

/// Moves the clock to `at` and settles.
pub fn advance_to(host: &TestHost, at: i64) {
    host.set_now(at);
    settle(host);
}

pub fn contact(host: &TestHost, first_name: &str, email: Option<&str>) -> Record {
    let fields = Fields::new().with("first_name", first_name).with("last_name", "Lovelace").with("email", email);
    host.insert("contact", fields)
}

/// Creates a ticket through the hooks and settles.
pub fn ticket(host: &TestHost, fields: impl Into<Fields>) -> Record {
    let stored = host.write(&Helpdesk, Change::create("ticket", fields)).unwrap();
    settle(host);
    host.record("ticket", &stored.id).unwrap()
}

/// Updates a ticket through the hooks (as a client would) and settles.
pub fn update(host: &TestHost, id: &str, changes: impl Into<Fields>) -> Record {
    let before = host.record("ticket", id).unwrap().fields;
    let mut after = before.clone();
    after.merge(&changes.into());
    host.write(&Helpdesk, Change::update("ticket", id, before, after)).unwrap();
    settle(host);
    host.record("ticket", id).unwrap()
}

/// The error of an update the hooks refuse.
pub fn refused(host: &TestHost, id: &str, changes: impl Into<Fields>) -> String {
    let before = host.record("ticket", id).unwrap().fields;
    let mut after = before.clone();
    after.merge(&changes.into());
    host.write(&Helpdesk, Change::update("ticket", id, before, after)).unwrap_err().message().to_owned()
}

/// Writes a comment through the hooks and settles.
pub fn comment(host: &TestHost, ticket: &str, visibility: &str, author: &str, body: &str) -> Record {
    let fields = Fields::new()
        .with("ticket_id", Value::Id(ticket.to_owned()))
        .with("visibility", visibility)
        .with("author_kind", author)
        .with("body", body);
    let stored = host.write(&Helpdesk, Change::create("ticket_comment", fields)).unwrap();
    settle(host);
    host.record("ticket_comment", &stored.id).unwrap()
}

/// Payloads of the custom events of this name, in order.
pub fn emitted(host: &TestHost, name: &str) -> Vec<serde_json::Value> {
    host.emitted()
        .into_iter()
        .filter(|event| event.name == name)
        .map(|event| serde_json::from_str(&event.payload).unwrap())
        .collect()
}

/// Keys of the scheduled timers with their times.
pub fn timers(host: &TestHost) -> Vec<(String, i64)> {
    host.timers().into_iter().map(|timer| (timer.key, timer.at)).collect()
}

#[test]
fn the_manifest_is_valid_and_asks_for_what_it_uses() {
    let manifest = Helpdesk.manifest();
    manifest.validate().unwrap();
    assert_eq!(manifest.id, "helpdesk");
    let objects: Vec<&str> = manifest.objects.iter().map(|object| object.name.as_str()).collect();
    assert_eq!(objects, ["ticket", "ticket_comment", "canned_reply", "kb_article", "survey_response"]);
    assert_eq!(manifest.fields[0].object, "company");
    assert_eq!(manifest.fields[0].field.name, "support_tier");
    let caps = &manifest.capabilities;
    assert!(caps.kv && caps.timers && caps.events && !caps.schema);
    assert_eq!(caps.outbound, ["email"]);
    let actions: Vec<&str> = manifest.actions.iter().map(|action| action.name.as_str()).collect();
    assert_eq!(actions, ["apply-canned-reply", "search-kb", "assign", "send-nps-survey", "nps-score", "csat-score"]);
    let routes: Vec<String> = manifest.routes.iter().map(|route| format!("{} {}", route.method, route.path)).collect();
    assert!(routes.contains(&"GET /csat".to_owned()) && routes.contains(&"POST /nps".to_owned()) && routes.len() == 8);
    let schema: serde_json::Value = serde_json::from_str(&manifest.config_schema).unwrap();
    assert_eq!(schema["properties"]["teams"]["additionalProperties"]["properties"]["strategy"]["enum"][1], "least_loaded");
    // The ticket's aggregate fields exist with the types reports need.
    let ticket = &manifest.objects[0];
    let kind = |name: &str| ticket.fields.iter().find(|field| field.name == name).map(|field| field.kind);
    assert_eq!(kind("first_reply_minutes"), Some(FieldKind::Integer));
    assert_eq!(kind("resolution_minutes"), Some(FieldKind::Integer));
    assert_eq!(kind("sla_breached"), Some(FieldKind::Boolean));
    assert_eq!(kind("csat_rating"), Some(FieldKind::Integer));
    assert_eq!(kind("requester_id"), Some(FieldKind::Reference));
    assert_eq!(kind("assignee_id"), Some(FieldKind::ExternalId));
}

#[test]
fn an_empty_configuration_works_and_the_clock_starts_at_the_default() {
    let host = TestHost::new();
    assert_eq!(host.now(), DEFAULT_NOW);
    let created = ticket(&host, [("subject", "Hello")]);
    assert_eq!(created.text("status"), Some("new"));
    assert_eq!(created.text("priority"), Some("normal"));
    assert_eq!(created.text("channel"), Some("web"));
    assert_eq!(created.text("sla_policy"), Some("normal"));
    assert_eq!(created.int("first_reply_due_at"), Some(DEFAULT_NOW + 480 * MINUTE));
    assert_eq!(created.int("resolution_due_at"), Some(DEFAULT_NOW + 1440 * MINUTE));
    assert_eq!(created.int("next_reply_due_at"), None);
    assert_eq!(created.bool("sla_breached"), Some(false));
    assert_eq!(created.int("escalation_count"), Some(0));
}
