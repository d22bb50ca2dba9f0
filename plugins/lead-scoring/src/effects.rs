//! What happens after a contact's score was committed: a history record
//! for a changed total, and the thresholds' owner assignment and event.
//!
//! Delivery is at least once and an event carries the record as it is at
//! delivery, so both steps are idempotent: a history record has a unique
//! key (contact id and scoring time) and a repeated one is a conflict to
//! ignore; the threshold whose actions are done is written to the contact
//! (`score_threshold_acted`), so a later delivery finds nothing left to do.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::config::Config;
use crate::fields;
use crate::rules;

/// Writes the history record of the contact's last scoring, if its total
/// changed. A contact scored 0 from nothing has no history yet.
pub fn record_history(contact_id: &str, contact: &Fields) -> Result<bool> {
    let (Some(total), Some(scored_at)) = (contact.int(fields::TOTAL), contact.int(fields::SCORED_AT)) else {
        return Ok(false);
    };
    let previous = contact.int(fields::PREVIOUS);
    if previous.unwrap_or(0) == total {
        return Ok(false);
    }
    let key = format!("{contact_id}:{scored_at}");
    // A read first: most deliveries of an unchanged contact end here,
    // without a refused write.
    if records::count(fields::HISTORY, &json!({"key": {"eq": key}}).to_string())? > 0 {
        return Ok(false);
    }
    let history = Fields::new()
        .with("contact_id", Value::Id(contact_id.to_owned()))
        .with("old_score", previous)
        .with("new_score", total)
        .with(fields::FIT, contact.int(fields::FIT))
        .with(fields::ENGAGEMENT, contact.float(fields::ENGAGEMENT))
        .with("grade", contact.text(fields::GRADE))
        .with("reason", contact.text(fields::REASON))
        .with(fields::SCORED_AT, scored_at)
        .with("key", key);
    match records::create(fields::HISTORY, history) {
        Ok(_) => Ok(true),
        Err(error) if error.is(ErrorCode::Conflict) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Runs the owner assignment and event of every threshold the contact
/// reached beyond the one already acted on. Returns what it did.
pub fn act_on_thresholds(config: &Config, contact_id: &str, contact: &Fields) -> Result<Vec<String>> {
    let reached = config.rank(contact.text(fields::THRESHOLD));
    let acted = config.rank(contact.text(fields::ACTED));
    if reached <= acted {
        return Ok(Vec::new());
    }
    let ascending = config.thresholds_ascending();
    let mut done = Vec::new();
    let mut owner = contact.text("owner_id").map(str::to_owned);
    let mut update = Fields::new();
    for threshold in &ascending[acted..reached] {
        if let Some(team) = &threshold.team
            && owner.is_none()
        {
            let owners = config.teams.get(team).map(Vec::as_slice).unwrap_or_default();
            let key = format!("round-robin:{team}");
            let position =
                kv::get(&key)?.and_then(|bytes| String::from_utf8(bytes).ok()).and_then(|text| text.parse().ok()).unwrap_or(0);
            if let Some((next_owner, next)) = rules::round_robin(owners, position) {
                kv::set(&key, next.to_string())?;
                update.set("owner_id", next_owner);
                done.push(format!("{}: owner {next_owner} from team {team}", threshold.name));
                owner = Some(next_owner.to_owned());
            }
        }
        if let Some(event) = &threshold.event {
            let payload = json!({
                "contact_id": contact_id,
                "threshold": threshold.name,
                "total_score": contact.int(fields::TOTAL),
                "grade": contact.text(fields::GRADE),
                "owner_id": owner,
            });
            events::emit(event, &payload.to_string())?;
            done.push(format!("{}: event {event}", threshold.name));
        }
    }
    if done.is_empty() {
        return Ok(done);
    }
    update.set(fields::ACTED, ascending[reached - 1].name.clone());
    match records::update("contact", contact_id, update, None) {
        Ok(_) => Ok(done),
        Err(error) if error.is_not_found() => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}
