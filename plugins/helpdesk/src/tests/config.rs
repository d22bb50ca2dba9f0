//! The configuration: defaults, checks that name the part at fault, and
//! how a bad configuration shows.

use crm_plugin_sdk::serde_json::{self, json};

use crate::config::Config;
use crate::tests::*;

fn error(config: serde_json::Value) -> String {
    let config: Config = serde_json::from_value(config).unwrap();
    config.check().unwrap_err()
}

#[test]
fn defaults_pass_their_own_checks_and_the_schema_accepts_a_full_example() {
    Config::default().check().unwrap();
    assert_eq!(Config::default().sla.policies.len(), 4);
    let full = json!({
        "public_url": "https://crm.example.com/",
        "default_priority": "high",
        "default_channel": "email",
        "default_team": "support",
        "teams": {"support": {"members": [U1, U2], "strategy": "round_robin"}, "tier2": {"members": [U3], "strategy": "least_loaded"}},
        "calendars": {"emea": {"time_zone": "Europe/Berlin", "hours": {"mon": ["09:00-17:00"]}, "holidays": ["2025-12-25"]}},
        "sla": {"warning_minutes": 15, "policies": [
            {"name": "gold", "company_tiers": ["gold"], "calendar": "emea", "first_reply_minutes": 30, "resolution_minutes": 240},
            {"name": "rest", "first_reply_minutes": 120}
        ]},
        "escalations": [
            {"name": "late-first-reply", "on": "breach", "metrics": ["first_reply"], "assign_team": "tier2", "raise_priority": true, "notify": ["leads@example.com"]},
            {"name": "stale", "on": "age", "after_minutes": 2880, "statuses": ["new", "open"], "set_priority": "urgent"}
        ],
        "csat": {"enabled": true, "subject": "Rate us", "message": "How did we do?"},
        "nps": {"subject": "Recommend us?", "message": "0 to 10?"}
    });
    let config: Config = serde_json::from_value(full).unwrap();
    config.check().unwrap();
    assert_eq!(config.base_url(), "https://crm.example.com");
    assert!(config.uses_tiers());
}

#[test]
fn checks_name_the_part_at_fault() {
    assert_eq!(error(json!({"public_url": "crm.example.com"})), "public_url: 'crm.example.com' is not an http(s) URL");
    assert!(error(json!({"default_priority": "asap"})).starts_with("default_priority: 'asap' is not one of low, normal"));
    assert_eq!(
        error(json!({"teams": {"support": {"members": ["u1"]}}})),
        "teams.support.members[0]: 'u1' is not a user id (a ULID such as 01HZY00000000000000000000A)"
    );
    assert_eq!(
        error(json!({"teams": {"Support Team": {"members": [U1]}}})),
        "teams: 'Support Team' must be lowercase letters, digits, '-' or '_' (at most 40)"
    );
    assert_eq!(error(json!({"default_team": "nobody"})), "default_team: 'nobody' is not a team in teams");
    assert_eq!(
        error(json!({"calendars": {"24x7": {"hours": {"mon": ["09:00-17:00"]}}}})),
        "calendars.24x7: the name is reserved for the built-in calendar"
    );
    assert_eq!(
        error(json!({"sla": {"policies": [{"name": "a", "calendar": "emea"}]}})),
        "sla.policies[0].calendar: 'emea' is not a calendar in calendars"
    );
    assert_eq!(
        error(json!({"sla": {"policies": [{"name": "a"}, {"name": "a"}]}})),
        "sla.policies[1].name: 'a' is empty or used twice"
    );
    assert_eq!(
        error(json!({"sla": {"policies": [{"name": "a", "first_reply_minutes": 0}]}})),
        "sla.policies[0].first_reply_minutes: must be at least 1"
    );
    assert!(
        error(json!({"sla": {"policies": [{"name": "a", "channels": ["fax"]}]}}))
            .starts_with("sla.policies[0].channels: 'fax' is not one of")
    );
    assert_eq!(
        error(json!({"escalations": [{"name": "x", "on": "age", "notify": ["a@b.co"]}]})),
        "escalations[0].after_minutes: is required for on = age"
    );
    assert_eq!(
        error(json!({"escalations": [{"name": "x", "on": "breach"}]})),
        "escalations[0]: needs an action (assign_user, assign_team, raise_priority, set_priority or notify)"
    );
    assert_eq!(
        error(json!({"escalations": [{"name": "x", "on": "breach", "notify": ["nobody"]}]})),
        "escalations[0].notify[0]: 'nobody' is not an email address"
    );
    assert_eq!(
        error(json!({"escalations": [{"name": "x", "on": "breach", "assign_team": "tier9"}]})),
        "escalations[0].assign_team: 'tier9' is not a team in teams"
    );
    assert_eq!(
        error(json!({"escalations": [{"name": "x", "on": "breach", "metrics": ["speed"], "raise_priority": true}]})),
        "escalations[0].metrics: 'speed' is not one of first_reply, next_reply, resolution"
    );
    assert_eq!(
        error(json!({"escalations": [{"name": "x", "on": "breach", "raise_priority": true, "set_priority": "high"}]})),
        "escalations[0]: raise_priority and set_priority exclude each other"
    );
    let unknown: Result<Config, _> = serde_json::from_value(json!({"sla": {"policies": [{"name": "a", "target": 3}]}}));
    assert!(unknown.is_err(), "unknown keys are refused");
}

#[test]
fn a_broken_configuration_refuses_ticket_writes_with_the_reason() {
    let host = host_with(json!({"sla": {"policies": [{"name": "a", "calendar": "nowhere"}]}}));
    let error = host.write(&Helpdesk, Change::create("ticket", [("subject", "x")])).unwrap_err();
    assert_eq!(
        error.message(),
        "invalid helpdesk configuration: sla.policies[0].calendar: 'nowhere' is not a calendar in calendars"
    );
    // Other objects are still written.
    host.write(&Helpdesk, Change::create("kb_article", [("title", "Reset a password")])).unwrap();
}

#[test]
fn the_readme_example_is_a_valid_configuration() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```json\n").map(|at| at + "```json\n".len()).unwrap();
    let end = start + readme[start..].find("```").unwrap();
    let config: Config = serde_json::from_str(&readme[start..end]).unwrap();
    config.check().unwrap();
    assert_eq!(config.sla.policies.len(), 4);
    assert_eq!(config.escalations[1].after_minutes, Some(4320));
}
