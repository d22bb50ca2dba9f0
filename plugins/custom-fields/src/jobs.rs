//! Work on stored records that follows a definition change: converting
//! values after a type change, and computing a new or changed formula for
//! the records written before it.
//!
//! Both need the tenant's metadata to hold the new definition, and the
//! kernel switches it only once the action that changed the definition has
//! returned. So the action schedules a timer due at once, and the timer
//! pages through the records, updating each through the records host calls.
//! A value the kernel does not yet store as the new type means the switch
//! has not happened: the timer fails and the kernel retries it with
//! backoff. Meanwhile the before-write hook converts any stale value of a
//! record that is written for another reason.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::convert;
use crate::definition::FieldType;
use crate::formulas;
use crate::store;

const CONVERT: &str = "convert";
const COMPUTE: &str = "compute";
/// Records read per page.
const PAGE: u32 = 200;
/// Records updated per timer call before it schedules itself again.
const UPDATES_PER_CALL: usize = 2000;
/// How long after the action a job first runs: time for the kernel to
/// switch the schema, so that the first attempt usually succeeds.
pub const FIRST_RUN_AFTER_MS: i64 = 200;

fn key(job: &str, object: &str, name: &str) -> String {
    format!("{job}:{object}:{name}")
}

/// Converts the stored values of `object.name` to its (new) type.
pub fn schedule_conversion(object: &str, name: &str) -> Result<()> {
    timers::schedule(&key(CONVERT, object, name), clock::now() + FIRST_RUN_AFTER_MS, b"")
}

/// Computes the formula `object.name` for every stored record.
pub fn schedule_computation(object: &str, name: &str) -> Result<()> {
    timers::schedule(&key(COMPUTE, object, name), clock::now() + FIRST_RUN_AFTER_MS, b"")
}

/// Runs the job a timer names; `payload` is the page cursor to resume at.
pub fn run(key: &str, payload: &[u8]) -> Result<()> {
    let mut parts = key.splitn(3, ':');
    let (Some(job), Some(object), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(());
    };
    let after = std::str::from_utf8(payload).ok().filter(|cursor| !cursor.is_empty()).map(str::to_owned);
    match job {
        CONVERT => convert_values(object, name, after),
        COMPUTE => compute_values(object, name, after),
        _ => Ok(()),
    }
}

fn convert_values(object: &str, name: &str, mut after: Option<String>) -> Result<()> {
    let Some(mut definition) = store::get(object, name)? else { return Ok(()) };
    let Some(from) = definition.converting_from else { return Ok(()) };
    let filter = json!({ name: { "isNull": false } }).to_string();
    let mut updates = 0;
    loop {
        let page = records::query(object, &filter, &[], PAGE, after.as_deref())?;
        for record in &page.records {
            let Some(value) = record.get(name) else { continue };
            if convert::fits(&definition, value) {
                continue;
            }
            let converted = match convert::convert(from, &definition, value) {
                Ok(converted) => converted,
                Err(reason) => {
                    warn!("{object}.{name} of {} {reason}: left as it is", record.id);
                    continue;
                }
            };
            let written = records::update(object, &record.id, [(name, converted)], None)?;
            if written.get(name).is_some_and(|value| !convert::fits(&definition, value)) {
                return Err(Error::msg(format!(
                    "{object}.{name} is not yet {} in the tenant's schema; retrying",
                    definition.field_type.as_str()
                )));
            }
            updates += 1;
        }
        match page.next {
            None => break,
            Some(next) if updates >= UPDATES_PER_CALL => {
                return timers::schedule(&key(CONVERT, object, name), clock::now(), next);
            }
            Some(next) => after = Some(next),
        }
    }
    definition.converting_from = None;
    store::put(&definition)
}

fn compute_values(object: &str, name: &str, mut after: Option<String>) -> Result<()> {
    let definitions = store::of_object(object)?;
    if !definitions
        .iter()
        .any(|definition| definition.name == name && !definition.archived && definition.field_type == FieldType::Formula)
    {
        return Ok(());
    }
    let formulas = formulas::check_object(object, &definitions)?;
    let mut updates = 0;
    loop {
        let page = records::query(object, "{}", &[], PAGE, after.as_deref())?;
        for record in &page.records {
            if record.deleted {
                continue;
            }
            let Some((_, value)) = formulas.compute(&record.fields).into_iter().find(|(field, _)| field == name) else {
                continue;
            };
            if record.get(name).cloned().unwrap_or_default() != value {
                let written = records::update(object, &record.id, [(name, value.clone())], None)?;
                if written.get(name).cloned().unwrap_or_default() != value {
                    return Err(Error::msg(format!(
                        "{object}.{name} is not yet a formula field in the tenant's schema; retrying"
                    )));
                }
                updates += 1;
            }
        }
        match page.next {
            None => return Ok(()),
            Some(next) if updates >= UPDATES_PER_CALL => {
                return timers::schedule(&key(COMPUTE, object, name), clock::now(), next);
            }
            Some(next) => after = Some(next),
        }
    }
}
