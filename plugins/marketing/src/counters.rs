//! The analytics counters on campaigns and sequence steps.
//!
//! The send records are the source of truth; the counters are kept up to
//! date by increments as sends change state. An increment follows the one
//! write that moved a send into the state (made with the send's expected
//! version, so concurrent requests count it once), and is itself a
//! read-modify-write with the counter record's expected version, retried
//! on conflict, so concurrent increments are not lost. Should a call fail
//! between the two writes, [`recount`] (the `stats` action) restores the
//! exact figures from the send records.

use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::objects::{CAMPAIGN, COUNTERS, FAILED, SEND, STEP};

/// Attempts of a read-modify-write before giving up.
const ATTEMPTS: usize = 8;

/// Counter increments per record, gathered over a call and written once
/// per record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Deltas(BTreeMap<(&'static str, String), BTreeMap<&'static str, i64>>);

impl Deltas {
    /// Counts one send reaching `counter` on its campaign and its step.
    pub fn add(&mut self, send: &Fields, counter: &'static str, by: i64) {
        for (object, field) in [(CAMPAIGN, "campaign_id"), (STEP, "sequence_step_id")] {
            if let Some(id) = send.id(field) {
                *self.0.entry((object, id.to_owned())).or_default().entry(counter).or_default() += by;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|counters| counters.values().all(|delta| *delta == 0))
    }

    /// Writes the increments.
    pub fn apply(&self) -> Result<()> {
        for ((object, id), counters) in &self.0 {
            let counters: Vec<(&str, i64)> =
                counters.iter().map(|(name, delta)| (*name, *delta)).filter(|(_, delta)| *delta != 0).collect();
            if !counters.is_empty() {
                bump(object, id, &counters)?;
            }
        }
        Ok(())
    }
}

/// Adds `deltas` to counters of one record, retrying on a version
/// conflict. A record that is gone is left alone.
pub fn bump(object: &str, id: &str, deltas: &[(&str, i64)]) -> Result<()> {
    for _ in 0..ATTEMPTS {
        let Some(record) = records::get(object, id)?.filter(|record| !record.deleted) else { return Ok(()) };
        let update: Fields = deltas
            .iter()
            .map(|(name, delta)| (name.to_string(), Value::Int(record.int(name).unwrap_or(0).saturating_add(*delta).max(0))))
            .collect();
        match records::update(object, id, update, Some(record.version)) {
            Ok(_) => return Ok(()),
            Err(error) if error.is(ErrorCode::Conflict) => continue,
            Err(error) if error.is_not_found() => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    Err(Error::msg(format!("{object} {id}: counters kept changing; try again")))
}

/// The counters of a campaign (`campaign_id`) or step (`sequence_step_id`)
/// computed from its send records.
pub fn count(link: &str, id: &str) -> Result<Fields> {
    let conditions = [
        ("sent_count", json!({"sent_at": {"isNull": false}})),
        ("delivered_count", json!({"delivered_at": {"isNull": false}})),
        ("opened_count", json!({"opened_at": {"isNull": false}})),
        ("clicked_count", json!({"clicked_at": {"isNull": false}})),
        ("unsubscribed_count", json!({"unsubscribed_at": {"isNull": false}})),
        ("bounced_count", json!({"bounced_at": {"isNull": false}})),
        ("failed_count", json!({"status": {"eq": FAILED}})),
    ];
    debug_assert!(conditions.iter().map(|(name, _)| *name).eq(COUNTERS));
    let mut fields = Fields::new();
    for (name, condition) in conditions {
        let filter = json!({"and": [{link: {"eq": id}}, condition]});
        fields.set(name, records::count(SEND, &filter.to_string())? as i64);
    }
    Ok(fields)
}

/// Recomputes the counters from the send records and stores them.
pub fn recount(object: &str, id: &str) -> Result<Fields> {
    let link = if object == CAMPAIGN { "campaign_id" } else { "sequence_step_id" };
    let counters = count(link, id)?;
    records::update(object, id, counters.clone(), None)?;
    Ok(counters)
}
