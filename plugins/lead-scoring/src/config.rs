//! The per-tenant configuration: fit rules, engagement points with their
//! half-life, grade bands, thresholds and teams. Every part has a default,
//! so a tenant that enables the plugin without configuration gets working
//! scores; a part that is given replaces its default as a whole.
//!
//! The kernel checks the configuration against [`schema`] when the plugin
//! is enabled; [`Config::check`] adds what JSON Schema cannot say (a fit
//! rule needs a condition, grade bands descend, a threshold's team exists)
//! and names the part at fault.

use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::Deserialize;
use crm_plugin_sdk::serde_json::{self, json};

/// The lifecycle stages of the standard `contact` object, earliest first.
/// A threshold only ever moves a contact forward in this order.
pub const STAGES: [&str; 7] =
    ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist"];

/// The activity kinds of the standard `activity` object.
pub const ACTIVITY_KINDS: [&str; 5] = ["note", "call", "email", "meeting", "task"];

/// Points for contacts matching every condition the rule names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", deny_unknown_fields)]
pub struct FitRule {
    /// The contact's title contains one of these (case-insensitive).
    #[serde(default)]
    pub title_contains: Option<Vec<String>>,
    /// The company's `employees` is at least this.
    #[serde(default)]
    pub employees_min: Option<i64>,
    /// The company's `employees` is at most this.
    #[serde(default)]
    pub employees_max: Option<i64>,
    /// The company's `industry` is one of these (case-insensitive).
    #[serde(default)]
    pub industry_in: Option<Vec<String>>,
    /// The contact's `country` (else the company's) is one of these
    /// (case-insensitive).
    #[serde(default)]
    pub country_in: Option<Vec<String>>,
    pub points: i64,
}

/// Points per activity kind and per custom event name, and how fast they
/// fade.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default, deny_unknown_fields)]
pub struct Engagement {
    pub activities: BTreeMap<String, f64>,
    pub events: BTreeMap<String, f64>,
    /// After this many days an activity or event counts half.
    pub half_life_days: f64,
}

impl Default for Engagement {
    fn default() -> Self {
        Engagement {
            activities: [("note", 1.0), ("call", 5.0), ("email", 3.0), ("meeting", 10.0), ("task", 1.0)]
                .into_iter()
                .map(|(kind, points)| (kind.to_owned(), points))
                .collect(),
            events: [("form_submitted", 10.0), ("page_view", 1.0), ("email_clicked", 3.0)]
                .into_iter()
                .map(|(name, points)| (name.to_owned(), points))
                .collect(),
            half_life_days: 30.0,
        }
    }
}

/// The lowest total of grades A, B and C; below C is D.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", deny_unknown_fields)]
pub struct Grades {
    pub a: i64,
    pub b: i64,
    pub c: i64,
}

impl Default for Grades {
    fn default() -> Self {
        Grades { a: 80, b: 50, c: 25 }
    }
}

/// What happens when a contact's total reaches `min_score`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", deny_unknown_fields)]
pub struct Threshold {
    pub name: String,
    pub min_score: i64,
    /// Moves the contact forward to this lifecycle stage (never back).
    #[serde(default)]
    pub lifecycle_stage: Option<String>,
    /// Gives a contact without an owner the next owner of this team.
    #[serde(default)]
    pub team: Option<String>,
    /// Emits a custom event of this name.
    #[serde(default)]
    pub event: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default, deny_unknown_fields)]
pub struct Config {
    pub fit: Vec<FitRule>,
    pub engagement: Engagement,
    pub grades: Grades,
    pub thresholds: Vec<Threshold>,
    /// Owner ids (user ids, ULIDs) per team, in round-robin order.
    pub teams: BTreeMap<String, Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        let titles = ["chief", "vp", "vice president", "head of", "director", "founder"];
        Config {
            fit: vec![
                FitRule {
                    title_contains: Some(titles.iter().map(|title| (*title).to_owned()).collect()),
                    employees_min: None,
                    employees_max: None,
                    industry_in: None,
                    country_in: None,
                    points: 20,
                },
                FitRule {
                    title_contains: None,
                    employees_min: Some(50),
                    employees_max: Some(5000),
                    industry_in: None,
                    country_in: None,
                    points: 15,
                },
            ],
            engagement: Engagement::default(),
            grades: Grades::default(),
            thresholds: vec![
                Threshold {
                    name: "mql".into(),
                    min_score: 50,
                    lifecycle_stage: Some("marketingqualifiedlead".into()),
                    team: None,
                    event: None,
                },
                Threshold {
                    name: "sql".into(),
                    min_score: 80,
                    lifecycle_stage: Some("salesqualifiedlead".into()),
                    team: None,
                    event: None,
                },
            ],
            teams: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The tenant's configuration, checked.
    pub fn load(ctx: &Ctx) -> Result<Config> {
        let config: Config = ctx.config()?;
        config.check()?;
        Ok(config)
    }

    /// The checks JSON Schema cannot express; the error names the part.
    pub fn check(&self) -> Result<()> {
        for (index, rule) in self.fit.iter().enumerate() {
            let conditions = [
                rule.title_contains.is_some(),
                rule.employees_min.is_some() || rule.employees_max.is_some(),
                rule.industry_in.is_some(),
                rule.country_in.is_some(),
            ];
            if !conditions.contains(&true) {
                return Err(Error::msg(format!(
                    "fit[{index}]: needs a condition (title_contains, employees_min/employees_max, industry_in or country_in)"
                )));
            }
            if let (Some(min), Some(max)) = (rule.employees_min, rule.employees_max)
                && min > max
            {
                return Err(Error::msg(format!("fit[{index}]: employees_min {min} is above employees_max {max}")));
            }
        }
        for kind in self.engagement.activities.keys() {
            if !ACTIVITY_KINDS.contains(&kind.as_str()) {
                return Err(Error::msg(format!(
                    "engagement.activities: '{kind}' is not an activity kind ({})",
                    ACTIVITY_KINDS.join(", ")
                )));
            }
        }
        if self.engagement.half_life_days.is_nan() || self.engagement.half_life_days <= 0.0 {
            return Err(Error::msg("engagement.half_life_days: must be above 0"));
        }
        let Grades { a, b, c } = self.grades;
        if !(a > b && b > c) {
            return Err(Error::msg(format!("grades: need a > b > c, got a {a}, b {b}, c {c}")));
        }
        for (team, owners) in &self.teams {
            for (index, owner) in owners.iter().enumerate() {
                if !is_record_id(owner) {
                    return Err(Error::msg(format!(
                        "teams.{team}[{index}]: '{owner}' is not a user id (a ULID such as 01HZY00000000000000000000A)"
                    )));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, threshold) in self.thresholds.iter().enumerate() {
            if threshold.name.is_empty() || !names.insert(threshold.name.as_str()) {
                return Err(Error::msg(format!("thresholds[{index}]: name '{}' is empty or used twice", threshold.name)));
            }
            if let Some(stage) = &threshold.lifecycle_stage
                && !STAGES.contains(&stage.as_str())
            {
                return Err(Error::msg(format!(
                    "thresholds[{index}].lifecycle_stage: '{stage}' is not one of {}",
                    STAGES.join(", ")
                )));
            }
            if let Some(team) = &threshold.team
                && self.teams.get(team).is_none_or(Vec::is_empty)
            {
                return Err(Error::msg(format!("thresholds[{index}].team: '{team}' is not a team with owners in teams")));
            }
        }
        Ok(())
    }

    /// The thresholds from the lowest score to the highest.
    pub fn thresholds_ascending(&self) -> Vec<&Threshold> {
        let mut thresholds: Vec<&Threshold> = self.thresholds.iter().collect();
        thresholds.sort_by_key(|threshold| threshold.min_score);
        thresholds
    }

    /// The highest threshold `total` reaches, if any.
    pub fn reached(&self, total: i64) -> Option<&Threshold> {
        self.thresholds_ascending().into_iter().rev().find(|threshold| total >= threshold.min_score)
    }

    /// A threshold's rank: its place from the lowest score, 1-based; 0 for
    /// none or an unknown name.
    pub fn rank(&self, name: Option<&str>) -> usize {
        let Some(name) = name else { return 0 };
        self.thresholds_ascending().iter().position(|threshold| threshold.name == name).map_or(0, |index| index + 1)
    }

    /// The fields of contacts and companies the fit rules read.
    pub fn needs_company(&self) -> bool {
        self.fit.iter().any(|rule| {
            rule.employees_min.is_some()
                || rule.employees_max.is_some()
                || rule.industry_in.is_some()
                || rule.country_in.is_some()
        })
    }
}

pub use crm_plugin_sdk::text::is_id as is_record_id;

/// The JSON Schema of the configuration, for the manifest.
pub fn schema() -> serde_json::Value {
    let strings = json!({"type": "array", "items": {"type": "string", "minLength": 1}});
    let points = json!({"type": "object", "additionalProperties": {"type": "number"}});
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "fit": {
                "type": "array",
                "description": "Points for contacts matching every condition a rule names",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["points"],
                    "properties": {
                        "title_contains": strings,
                        "employees_min": {"type": "integer", "minimum": 0},
                        "employees_max": {"type": "integer", "minimum": 0},
                        "industry_in": strings,
                        "country_in": strings,
                        "points": {"type": "integer", "minimum": -1000, "maximum": 1000}
                    }
                }
            },
            "engagement": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "activities": points,
                    "events": points,
                    "half_life_days": {"type": "number", "minimum": 0.01, "maximum": 3650}
                }
            },
            "grades": {
                "type": "object",
                "additionalProperties": false,
                "required": ["a", "b", "c"],
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}}
            },
            "thresholds": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "min_score"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 40},
                        "min_score": {"type": "integer"},
                        "lifecycle_stage": {"type": "string", "enum": STAGES},
                        "team": {"type": "string", "minLength": 1},
                        "event": {"type": "string", "minLength": 1, "maxLength": 100}
                    }
                }
            },
            "teams": {
                "type": "object",
                "additionalProperties": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
            }
        }
    })
}
