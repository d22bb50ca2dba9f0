//! The per-tenant configuration: public URL, defaults, teams, calendars,
//! SLA policies, escalation rules and survey texts. Every part has a
//! default, so `{}` gives a working helpdesk: four SLA policies (one per
//! priority, around the clock), no teams and no escalations, CSAT surveys
//! on.
//!
//! The kernel checks the configuration against [`schema`] when the plugin
//! is enabled; [`Config::check`] adds what JSON Schema cannot say (a
//! policy's calendar exists, a time zone is real, an escalation's team is
//! configured, user ids are ULIDs) and names the part at fault.

use std::collections::{BTreeMap, BTreeSet};

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::Deserialize;
use crm_plugin_sdk::serde_json::{self, json};

use crate::calendar::{self, Calendar};
use crate::objects::{CHANNELS, PRIORITIES, STATUSES};
use crate::sla::Metric;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default, deny_unknown_fields)]
pub struct Config {
    /// Where this server is reached from outside, for links in emails.
    pub public_url: String,
    pub default_priority: String,
    pub default_channel: String,
    /// The team a new ticket without one gets.
    pub default_team: Option<String>,
    pub teams: BTreeMap<String, Team>,
    pub calendars: BTreeMap<String, CalendarConfig>,
    pub sla: Sla,
    pub escalations: Vec<Escalation>,
    pub csat: Csat,
    pub nps: Nps,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_url: "http://127.0.0.1:8080".into(),
            default_priority: "normal".into(),
            default_channel: "web".into(),
            default_team: None,
            teams: BTreeMap::new(),
            calendars: BTreeMap::new(),
            sla: Sla::default(),
            escalations: Vec::new(),
            csat: Csat::default(),
            nps: Nps::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", rename_all = "snake_case")]
pub enum Strategy {
    /// Members in turn, the position kept per team.
    #[default]
    RoundRobin,
    /// The member with the fewest new, open and pending tickets.
    LeastLoaded,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastLoaded => "least_loaded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", deny_unknown_fields)]
pub struct Team {
    /// User ids (ULIDs), in round-robin order.
    pub members: Vec<String>,
    #[serde(default)]
    pub strategy: Strategy,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", deny_unknown_fields)]
pub struct CalendarConfig {
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Day (`mon` … `sun`) to intervals such as `09:00-17:00`.
    pub hours: BTreeMap<String, Vec<String>>,
    /// Closed local dates, `YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default, deny_unknown_fields)]
pub struct Sla {
    /// How long before a due time the warning event fires (wall minutes;
    /// 0 turns warnings off).
    pub warning_minutes: i64,
    /// The first policy whose conditions all hold applies.
    pub policies: Vec<Policy>,
}

impl Default for Sla {
    fn default() -> Self {
        let policy = |name: &str, first: i64, next: i64, resolution: i64| Policy {
            name: name.into(),
            priorities: vec![name.into()],
            channels: Vec::new(),
            company_tiers: Vec::new(),
            teams: Vec::new(),
            calendar: calendar::ALWAYS.into(),
            first_reply_minutes: Some(first),
            next_reply_minutes: Some(next),
            resolution_minutes: Some(resolution),
        };
        Sla {
            warning_minutes: 30,
            policies: vec![
                policy("urgent", 60, 60, 240),
                policy("high", 120, 240, 480),
                policy("normal", 480, 480, 1440),
                policy("low", 1440, 1440, 4320),
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    /// Conditions: an empty list matches any value.
    #[serde(default)]
    pub priorities: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    /// The company's `support_tier` is one of these (case-insensitive); a
    /// ticket without a company or tier does not match.
    #[serde(default)]
    pub company_tiers: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default = "always")]
    pub calendar: String,
    /// Targets in business minutes of the calendar; absent = not tracked.
    #[serde(default)]
    pub first_reply_minutes: Option<i64>,
    #[serde(default)]
    pub next_reply_minutes: Option<i64>,
    #[serde(default)]
    pub resolution_minutes: Option<i64>,
}

fn always() -> String {
    calendar::ALWAYS.into()
}

impl Policy {
    /// The target of a metric in milliseconds.
    pub fn target_ms(&self, metric: Metric) -> Option<i64> {
        let minutes = match metric {
            Metric::FirstReply => self.first_reply_minutes,
            Metric::NextReply => self.next_reply_minutes,
            Metric::Resolution => self.resolution_minutes,
        };
        minutes.map(|minutes| minutes.saturating_mul(60_000))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", rename_all = "snake_case")]
pub enum Trigger {
    /// When an SLA target of the ticket breaches.
    Breach,
    /// When the ticket reaches an age (wall minutes since it was created).
    Age,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Breach => "breach",
            Trigger::Age => "age",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", deny_unknown_fields)]
pub struct Escalation {
    pub name: String,
    pub on: Trigger,
    /// For `breach`: the metrics that trigger it (empty: any).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// For `age`: minutes after the ticket was created.
    #[serde(default)]
    pub after_minutes: Option<i64>,
    /// The ticket's status must be one of these (empty: new, open or pending).
    #[serde(default)]
    pub statuses: Vec<String>,
    #[serde(default)]
    pub priorities: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    /// Assign this user.
    #[serde(default)]
    pub assign_user: Option<String>,
    /// Move the ticket to this team (and assign its next member unless
    /// `assign_user` is given).
    #[serde(default)]
    pub assign_team: Option<String>,
    /// Raise the priority one step (low → normal → high → urgent).
    #[serde(default)]
    pub raise_priority: bool,
    #[serde(default)]
    pub set_priority: Option<String>,
    /// Email addresses told about the escalation.
    #[serde(default)]
    pub notify: Vec<String>,
}

impl Escalation {
    /// Whether the rule applies to a ticket with these values now.
    pub fn matches(&self, status: &str, priority: &str, team: Option<&str>) -> bool {
        let status_ok = if self.statuses.is_empty() {
            matches!(status, "new" | "open" | "pending")
        } else {
            self.statuses.iter().any(|wanted| wanted == status)
        };
        let team_ok = self.teams.is_empty() || team.is_some_and(|team| self.teams.iter().any(|wanted| wanted == team));
        status_ok && team_ok && (self.priorities.is_empty() || self.priorities.iter().any(|wanted| wanted == priority))
    }

    /// Whether a breach of `metric` triggers the rule.
    pub fn on_breach_of(&self, metric: Metric) -> bool {
        self.on == Trigger::Breach && (self.metrics.is_empty() || self.metrics.iter().any(|name| name == metric.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default, deny_unknown_fields)]
pub struct Csat {
    /// Send a survey when a ticket is solved.
    pub enabled: bool,
    pub subject: String,
    /// The text above the rating links.
    pub message: String,
}

impl Default for Csat {
    fn default() -> Self {
        Csat {
            enabled: true,
            subject: "How did we do?".into(),
            message: "Your request has been solved. How satisfied are you with the support you received? Choose a rating:".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default, deny_unknown_fields)]
pub struct Nps {
    pub subject: String,
    pub message: String,
}

impl Default for Nps {
    fn default() -> Self {
        Nps {
            subject: "How likely are you to recommend us?".into(),
            message: "On a scale from 0 (not at all likely) to 10 (extremely likely), how likely are you to recommend us to a friend or colleague?".into(),
        }
    }
}

impl Config {
    /// The tenant's configuration, checked, with user ids in canonical form.
    pub fn load(ctx: &Ctx) -> Result<Config> {
        let mut config: Config = ctx.config()?;
        config.check().map_err(|message| Error::msg(format!("invalid helpdesk configuration: {message}")))?;
        config.normalize();
        Ok(config)
    }

    /// User ids in upper case, as the kernel stores ids: a member written
    /// `01hzy…` is the same user as the assignee `01HZY…` read back.
    pub fn normalize(&mut self) {
        for team in self.teams.values_mut() {
            for member in &mut team.members {
                member.make_ascii_uppercase();
            }
        }
        for rule in &mut self.escalations {
            if let Some(user) = &mut rule.assign_user {
                user.make_ascii_uppercase();
            }
        }
    }

    /// The public URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }

    /// The calendar called `name` (`24x7` is built in).
    pub fn calendar(&self, name: &str) -> Result<Calendar, String> {
        if name == calendar::ALWAYS {
            return Ok(Calendar::always());
        }
        let config = self.calendars.get(name).ok_or_else(|| format!("'{name}' is not a calendar in calendars"))?;
        let hours: Vec<(String, Vec<String>)> = config.hours.iter().map(|(day, hours)| (day.clone(), hours.clone())).collect();
        Calendar::parse(&format!("calendars.{name}"), &config.time_zone, &hours, &config.holidays)
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.sla.policies.iter().find(|policy| policy.name == name)
    }

    /// Whether any policy looks at the company's support tier.
    pub fn uses_tiers(&self) -> bool {
        self.sla.policies.iter().any(|policy| !policy.company_tiers.is_empty())
    }

    pub fn escalation(&self, name: &str) -> Option<&Escalation> {
        self.escalations.iter().find(|rule| rule.name == name)
    }

    /// The checks JSON Schema cannot express; the message names the part.
    pub fn check(&self) -> Result<(), String> {
        let url = self.base_url();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(char::is_whitespace) {
            return Err(format!("public_url: '{}' is not an http(s) URL", self.public_url));
        }
        one_of("default_priority", &self.default_priority, &PRIORITIES)?;
        one_of("default_channel", &self.default_channel, &CHANNELS)?;
        for (key, team) in &self.teams {
            check_key("teams", key)?;
            if team.members.is_empty() {
                return Err(format!("teams.{key}.members: needs at least one user id"));
            }
            for (index, member) in team.members.iter().enumerate() {
                if !is_user_id(member) {
                    return Err(format!(
                        "teams.{key}.members[{index}]: '{member}' is not a user id (a ULID such as 01HZY00000000000000000000A)"
                    ));
                }
            }
        }
        if let Some(team) = &self.default_team {
            self.known_team("default_team", team)?;
        }
        for name in self.calendars.keys() {
            if name == calendar::ALWAYS {
                return Err(format!("calendars.{name}: the name is reserved for the built-in calendar"));
            }
            self.calendar(name)?;
        }
        if self.sla.warning_minutes < 0 {
            return Err("sla.warning_minutes: must not be negative".into());
        }
        let mut names = BTreeSet::new();
        for (index, policy) in self.sla.policies.iter().enumerate() {
            let at = format!("sla.policies[{index}]");
            if policy.name.trim().is_empty() || !names.insert(policy.name.as_str()) {
                return Err(format!("{at}.name: '{}' is empty or used twice", policy.name));
            }
            all_of(&format!("{at}.priorities"), &policy.priorities, &PRIORITIES)?;
            all_of(&format!("{at}.channels"), &policy.channels, &CHANNELS)?;
            for team in &policy.teams {
                self.known_team(&format!("{at}.teams"), team)?;
            }
            self.calendar(&policy.calendar).map_err(|reason| format!("{at}.calendar: {reason}"))?;
            for (metric, minutes) in [
                ("first_reply_minutes", policy.first_reply_minutes),
                ("next_reply_minutes", policy.next_reply_minutes),
                ("resolution_minutes", policy.resolution_minutes),
            ] {
                if minutes.is_some_and(|minutes| minutes <= 0) {
                    return Err(format!("{at}.{metric}: must be at least 1"));
                }
            }
        }
        let mut names = BTreeSet::new();
        for (index, rule) in self.escalations.iter().enumerate() {
            let at = format!("escalations[{index}]");
            check_key(&format!("{at}.name"), &rule.name)
                .map_err(|_| format!("{at}.name: '{}' must be lowercase letters, digits, '-' or '_' (at most 40)", rule.name))?;
            if !names.insert(rule.name.as_str()) {
                return Err(format!("{at}.name: '{}' is used twice", rule.name));
            }
            match (rule.on, rule.after_minutes) {
                (Trigger::Age, None) => return Err(format!("{at}.after_minutes: is required for on = age")),
                (Trigger::Age, Some(minutes)) if minutes <= 0 => return Err(format!("{at}.after_minutes: must be at least 1")),
                (Trigger::Breach, Some(_)) => return Err(format!("{at}.after_minutes: only applies to on = age")),
                _ => {}
            }
            if rule.on == Trigger::Age && !rule.metrics.is_empty() {
                return Err(format!("{at}.metrics: only applies to on = breach"));
            }
            let metrics: Vec<&str> = Metric::ALL.iter().map(|metric| metric.as_str()).collect();
            all_of(&format!("{at}.metrics"), &rule.metrics, &metrics)?;
            all_of(&format!("{at}.statuses"), &rule.statuses, &STATUSES)?;
            all_of(&format!("{at}.priorities"), &rule.priorities, &PRIORITIES)?;
            for team in &rule.teams {
                self.known_team(&format!("{at}.teams"), team)?;
            }
            if let Some(user) = &rule.assign_user
                && !is_user_id(user)
            {
                return Err(format!("{at}.assign_user: '{user}' is not a user id (a ULID)"));
            }
            if let Some(team) = &rule.assign_team {
                self.known_team(&format!("{at}.assign_team"), team)?;
            }
            if let Some(priority) = &rule.set_priority {
                one_of(&format!("{at}.set_priority"), priority, &PRIORITIES)?;
                if rule.raise_priority {
                    return Err(format!("{at}: raise_priority and set_priority exclude each other"));
                }
            }
            for (position, address) in rule.notify.iter().enumerate() {
                if !is_email(address) {
                    return Err(format!("{at}.notify[{position}]: '{address}' is not an email address"));
                }
            }
            let acts = rule.assign_user.is_some()
                || rule.assign_team.is_some()
                || rule.raise_priority
                || rule.set_priority.is_some()
                || !rule.notify.is_empty();
            if !acts {
                return Err(format!("{at}: needs an action (assign_user, assign_team, raise_priority, set_priority or notify)"));
            }
        }
        Ok(())
    }

    fn known_team(&self, at: &str, team: &str) -> Result<(), String> {
        if self.teams.contains_key(team) { Ok(()) } else { Err(format!("{at}: '{team}' is not a team in teams")) }
    }
}

fn one_of(at: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) { Ok(()) } else { Err(format!("{at}: '{value}' is not one of {}", allowed.join(", "))) }
}

fn all_of(at: &str, values: &[String], allowed: &[&str]) -> Result<(), String> {
    values.iter().try_for_each(|value| one_of(at, value, allowed))
}

/// Team keys and rule names end up in timer keys: lowercase, short.
fn check_key(at: &str, key: &str) -> Result<(), String> {
    let valid = !key.is_empty()
        && key.len() <= 40
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid { Ok(()) } else { Err(format!("{at}: '{key}' must be lowercase letters, digits, '-' or '_' (at most 40)")) }
}

pub use crm_plugin_sdk::text::is_id as is_user_id;

pub use crm_plugin_sdk::text::is_email;

/// The JSON Schema of the configuration, for the manifest.
pub fn schema() -> serde_json::Value {
    let strings = |items: &[&str]| json!({"type": "array", "items": {"type": "string", "enum": items}});
    let key = json!({"type": "string", "minLength": 1, "maxLength": 40});
    let minutes = json!({"type": "integer", "minimum": 1, "maximum": 5_256_000});
    let metrics: Vec<&str> = Metric::ALL.iter().map(|metric| metric.as_str()).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "public_url": {"type": "string", "minLength": 8, "description": "Origin of this server as customers reach it, for survey links"},
            "default_priority": {"type": "string", "enum": PRIORITIES},
            "default_channel": {"type": "string", "enum": CHANNELS},
            "default_team": key,
            "teams": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["members"],
                    "properties": {
                        "members": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 26, "maxLength": 26}},
                        "strategy": {"type": "string", "enum": ["round_robin", "least_loaded"]}
                    }
                }
            },
            "calendars": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["hours"],
                    "properties": {
                        "time_zone": {"type": "string", "minLength": 1},
                        "hours": {
                            "type": "object",
                            "additionalProperties": false,
                            "properties": calendar::DAYS.iter().map(|day| (
                                (*day).to_owned(),
                                json!({"type": "array", "items": {"type": "string", "minLength": 11, "maxLength": 11}})
                            )).collect::<serde_json::Map<String, serde_json::Value>>()
                        },
                        "holidays": {"type": "array", "items": {"type": "string", "minLength": 10, "maxLength": 10}}
                    }
                }
            },
            "sla": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "warning_minutes": {"type": "integer", "minimum": 0, "maximum": 10080},
                    "policies": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string", "minLength": 1, "maxLength": 80},
                                "priorities": strings(&PRIORITIES),
                                "channels": strings(&CHANNELS),
                                "company_tiers": {"type": "array", "items": {"type": "string", "minLength": 1}},
                                "teams": {"type": "array", "items": key},
                                "calendar": {"type": "string", "minLength": 1},
                                "first_reply_minutes": minutes,
                                "next_reply_minutes": minutes,
                                "resolution_minutes": minutes
                            }
                        }
                    }
                }
            },
            "escalations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "on"],
                    "properties": {
                        "name": key,
                        "on": {"type": "string", "enum": ["breach", "age"]},
                        "metrics": strings(&metrics),
                        "after_minutes": minutes,
                        "statuses": strings(&STATUSES),
                        "priorities": strings(&PRIORITIES),
                        "teams": {"type": "array", "items": key},
                        "assign_user": {"type": "string", "minLength": 26, "maxLength": 26},
                        "assign_team": key,
                        "raise_priority": {"type": "boolean"},
                        "set_priority": {"type": "string", "enum": PRIORITIES},
                        "notify": {"type": "array", "items": {"type": "string", "minLength": 3}}
                    }
                }
            },
            "csat": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "enabled": {"type": "boolean"},
                    "subject": {"type": "string", "minLength": 1, "maxLength": 200},
                    "message": {"type": "string", "maxLength": 4000}
                }
            },
            "nps": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "subject": {"type": "string", "minLength": 1, "maxLength": 200},
                    "message": {"type": "string", "maxLength": 4000}
                }
            }
        }
    })
}
