//! Scoring contacts through the host: what is linked to a contact (its
//! activities and events), the patch of score fields the before-write hook
//! returns, and the engagement refresh that after-commit and the backfill
//! write.

use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{self, json};

use crate::config::{ACTIVITY_KINDS, Config};
use crate::fields;
use crate::model::Model;
use crate::rules::{self, Touch};

/// Activities and events are read in pages of this many.
const PAGE: u32 = 500;
/// Stop reading a contact's activities or events after this many pages.
const MAX_PAGES: usize = 20;

/// What is linked to one contact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Linked {
    pub touches: Vec<Touch>,
    /// Activities per kind, in the order of [`ACTIVITY_KINDS`].
    pub activities: [u64; 5],
    /// Custom events naming the contact.
    pub events: u64,
}

/// The contact id a custom event's payload names (`contact_id` or
/// `contactId` in a JSON object), if any.
pub fn event_contact(payload: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(payload).ok()?;
    let id = json.get("contact_id").or_else(|| json.get("contactId"))?.as_str()?;
    Some(id.to_owned())
}

/// Reads the activities and the custom events of `contact_id`. Events are
/// found by their payload naming the contact (the standard `custom_event`
/// object has no reference field); this plugin's own events do not count.
pub fn linked(config: &Config, plugin: &str, contact_id: &str) -> Result<Linked> {
    let mut linked = Linked::default();
    let filter = json!({"contact_id": {"eq": contact_id}}).to_string();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = records::query("activity", &filter, &[], PAGE, after.as_deref())?;
        for activity in page.records.iter().filter(|record| !record.deleted) {
            let Some(kind) = activity.text("kind") else { continue };
            if let Some(index) = ACTIVITY_KINDS.iter().position(|known| *known == kind) {
                linked.activities[index] += 1;
            }
            let points = config.engagement.activities.get(kind).copied().unwrap_or(0.0);
            if points != 0.0 {
                let at = activity.int("occurred_at").unwrap_or(activity.created_at);
                linked.touches.push(Touch { points, at });
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let filter = json!({"payload": {"contains": contact_id}}).to_string();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = records::query("custom_event", &filter, &[], PAGE, after.as_deref())?;
        for event in page.records.iter().filter(|record| !record.deleted) {
            if event.text("source") == Some(plugin) {
                continue;
            }
            if event.text("payload").and_then(event_contact).as_deref() != Some(contact_id) {
                continue;
            }
            linked.events += 1;
            let points = event.text("name").and_then(|name| config.engagement.events.get(name)).copied().unwrap_or(0.0);
            if points != 0.0 {
                linked.touches.push(Touch { points, at: event.created_at });
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(linked)
}

/// The names of the model's features, in order.
pub const FEATURES: [&str; 8] = ["fit_score", "log_employees", "notes", "calls", "emails", "meetings", "tasks", "events"];

/// The model's features of a contact.
pub fn features(config: &Config, contact: &Fields, company: Option<&Fields>, linked: &Linked) -> Vec<f64> {
    let (fit, _) = rules::fit(config, contact, company);
    let employees = company.and_then(|company| company.int("employees")).unwrap_or(0).max(0);
    let mut features = vec![fit as f64, (employees as f64).ln_1p()];
    features.extend(linked.activities.iter().map(|count| (*count as f64).ln_1p()));
    features.push((linked.events as f64).ln_1p());
    features
}

/// Company records read during one call, by id.
#[derive(Default)]
pub struct Companies(BTreeMap<String, Option<Fields>>);

impl Companies {
    /// The company of a contact, read once per call.
    pub fn of(&mut self, contact: &Fields) -> Result<Option<&Fields>> {
        let Some(id) = contact.id("company_id") else { return Ok(None) };
        if !self.0.contains_key(id) {
            let company = records::get("company", id)?.filter(|record| !record.deleted).map(|record| record.fields);
            self.0.insert(id.to_owned(), company);
        }
        Ok(self.0.get(id).and_then(Option::as_ref))
    }
}

/// The stored model, if one was trained.
pub fn stored_model() -> Result<Option<Model>> {
    kv::get_json("model")
}

/// Whether a change of a contact calls for scoring it again: a create, or
/// an update of a field a score depends on.
pub fn needs_rescore(change: &Change) -> bool {
    match change.op() {
        Op::Create => true,
        Op::Update => fields::INPUTS.iter().any(|field| change.changed(field)),
        Op::Delete | Op::Restore => false,
    }
}

/// The score fields to set on a contact being written. `after` is the
/// record as it will be written, `before` as it was (none for a create).
/// Engagement is the stored one decayed from its `scored_at` to `now`;
/// after-commit and the backfill write fresh engagement with `scored_at`
/// set to their own now.
pub fn patch(
    config: &Config,
    model: Option<&Model>,
    change: &Change,
    companies: &mut Companies,
    plugin: &str,
    now: i64,
) -> Result<Fields> {
    let after = change.after();
    let before = change.before();
    let company = companies.of(after)?.cloned();
    let (fit, matched) = rules::fit(config, after, company.as_ref());
    let stored = after.float(fields::ENGAGEMENT).unwrap_or(0.0);
    let since = after.int(fields::SCORED_AT).unwrap_or(now);
    let engagement = rules::round2(rules::decay(stored, now - since, config.engagement.half_life_days));
    let total = rules::total(fit, engagement);
    let previous = before.and_then(|before| before.int(fields::TOTAL));
    let reason = if change.changed(fields::REASON) && after.text(fields::REASON).is_some() {
        after.text(fields::REASON).unwrap_or_default().to_owned()
    } else if change.op() == Op::Create {
        format!("created; fit rules matched: {}", list(&matched))
    } else {
        let changed: Vec<&str> = fields::INPUTS.iter().copied().filter(|field| change.changed(field)).collect();
        format!("changed {}; fit rules matched: {}", changed.join(", "), list(&matched))
    };

    let mut patch = Fields::new()
        .with(fields::FIT, fit)
        .with(fields::ENGAGEMENT, engagement)
        .with(fields::TOTAL, total)
        .with(fields::GRADE, rules::grade(&config.grades, total))
        .with(fields::SCORED_AT, now)
        .with(fields::PREVIOUS, previous)
        .with(fields::REASON, reason);

    match model.filter(|model| model.usable) {
        Some(model) => {
            let linked = if change.op() == Op::Create { Linked::default() } else { linked(config, plugin, change.id())? };
            let probability = model.predict(&features(config, after, company.as_ref(), &linked));
            patch.set(fields::PREDICTIVE, (probability * 100.0).round() as i64);
        }
        None if after.contains(fields::PREDICTIVE) => {
            patch.set(fields::PREDICTIVE, Value::Null);
        }
        None => {}
    }

    let reached = config.reached(total);
    let old_rank = config.rank(before.and_then(|before| before.text(fields::THRESHOLD)));
    let new_rank = config.rank(reached.map(|threshold| threshold.name.as_str()));
    patch.set(fields::THRESHOLD, reached.map(|threshold| threshold.name.clone()));
    if new_rank > old_rank {
        let crossed = config.thresholds_ascending();
        let stage = crossed[old_rank..new_rank].iter().rev().find_map(|threshold| threshold.lifecycle_stage.as_deref());
        if let Some(stage) = stage
            && rules::moves_forward(after.text("lifecycle_stage"), stage)
        {
            patch.set("lifecycle_stage", stage);
        }
    }
    Ok(patch)
}

fn list(matched: &[usize]) -> String {
    if matched.is_empty() {
        return "none".into();
    }
    matched.iter().map(|index| format!("fit[{index}]")).collect::<Vec<_>>().join(", ")
}

/// Computes a contact's engagement from what is linked to it now and
/// writes it with `reason`; the contact's before-write hook then scores
/// the rest. Returns `false` if there is no such live contact.
pub fn refresh(config: &Config, plugin: &str, contact_id: &str, reason: &str) -> Result<bool> {
    let now = clock::now();
    let linked = linked(config, plugin, contact_id)?;
    let engagement = rules::engagement(&linked.touches, now, config.engagement.half_life_days);
    let update = Fields::new().with(fields::ENGAGEMENT, engagement).with(fields::SCORED_AT, now).with(fields::REASON, reason);
    match records::update("contact", contact_id, update, None) {
        Ok(_) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}
