//! Ticket writes: the before-write rules every ticket change passes (a
//! closed ticket stays closed, a team must be configured, the company
//! follows the requester, the SLA fields are derived), and the one way the
//! plugin itself updates a ticket, [`update`], which derives the same
//! fields so its writes are complete even where no hook runs on them.

use crm_plugin_sdk::prelude::*;

use crate::config::Config;
use crate::objects::{SUPPORT_TIER, TICKET, ticket::*};
use crate::sla;

/// The decision on one ticket change.
pub fn before_write(config: &Config, change: &Change, now: i64) -> Result<Decision> {
    if change.before().is_some_and(|before| before.text(STATUS) == Some("closed")) && change.changed(STATUS) {
        return Ok(Decision::reject_field(STATUS, "a closed ticket cannot be reopened; create a follow-up ticket"));
    }
    if change.changed(TEAM)
        && let Some(team) = change.after().text(TEAM)
        && !config.teams.contains_key(team)
    {
        let known: Vec<&str> = config.teams.keys().map(String::as_str).collect();
        let known = if known.is_empty() { "none are configured".to_owned() } else { format!("known: {}", known.join(", ")) };
        return Ok(Decision::reject_field(TEAM, format!("'{team}' is not a team in the helpdesk configuration ({known})")));
    }
    let mut after = change.after().clone();
    let mut patch = Fields::new();
    if change.changed(REQUESTER) && after.id(COMPANY).is_none() && !change.changed(COMPANY) {
        let company = match after.id(REQUESTER) {
            Some(requester) => records::get("contact", requester)?.and_then(|contact| contact.id(COMPANY).map(str::to_owned)),
            None => None,
        };
        if let Some(company) = company {
            after.set(COMPANY, Value::Id(company.clone()));
            patch.set(COMPANY, Value::Id(company));
        }
    }
    let tier = tier_of(config, after.id(COMPANY))?;
    patch.merge(&sla::derive(config, change.before(), &after, now, tier.as_deref()));
    Ok(Decision::patch(patch))
}

/// The support tier of a company, read only when a policy looks at tiers.
pub fn tier_of(config: &Config, company: Option<&str>) -> Result<Option<String>> {
    match company {
        Some(company) if config.uses_tiers() => {
            Ok(records::get("company", company)?.and_then(|company| company.text(SUPPORT_TIER).map(str::to_owned)))
        }
        _ => Ok(None),
    }
}

/// A live ticket, or `None` if there is none (or it is deleted).
pub fn get(id: &str) -> Result<Option<Record>> {
    Ok(records::get(TICKET, id)?.filter(|ticket| !ticket.deleted))
}

/// Writes `changes` and the fields they imply to `ticket`, under the
/// version it was read at. `changes` sees the ticket to change; it is
/// asked again on a fresh read when another writer got there first (up to
/// three times), and returning `None` writes nothing. Returns the ticket as
/// stored afterwards, `None` if it is gone.
pub fn update(
    config: &Config,
    ticket: Record,
    now: i64,
    changes: impl Fn(&Record) -> Result<Option<Fields>>,
) -> Result<Option<Record>> {
    let mut ticket = ticket;
    for attempt in 0..3 {
        let Some(mut write) = changes(&ticket)? else { return Ok(Some(ticket)) };
        let mut after = ticket.fields.clone();
        after.merge(&write);
        let tier = tier_of(config, after.id(COMPANY))?;
        write.merge(&sla::derive(config, Some(&ticket.fields), &after, now, tier.as_deref()));
        write.retain(|name, value| ticket.fields.get(name).unwrap_or(&Value::Null) != value);
        if write.is_empty() {
            return Ok(Some(ticket));
        }
        match records::update(TICKET, &ticket.id, write, Some(ticket.version)) {
            Ok(stored) => return Ok(Some(stored)),
            Err(error) if error.is(ErrorCode::Conflict) && attempt < 2 => match get(&ticket.id)? {
                Some(fresh) => ticket = fresh,
                None => return Ok(None),
            },
            Err(error) => return Err(error),
        }
    }
    Ok(Some(ticket))
}
