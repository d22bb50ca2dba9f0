//! The timers of a ticket. After every ticket write the plugin works out
//! which timers the ticket needs now and brings the scheduled set in line,
//! touching only timers that changed:
//!
//! - `sla:<ticket>:<metric>` at the metric's due time, while it runs and
//!   has not breached in this cycle;
//! - `warn:<ticket>:<metric>` at the due time minus `sla.warning_minutes`,
//!   while the warning of this cycle was not emitted (a due time closer
//!   than that gets its warning at once);
//! - `age:<ticket>:<rule>` at the creation time plus the rule's
//!   `after_minutes`, while the ticket is not solved or closed and the
//!   rule was not applied.
//!
//! Timers carry no payload: the key names everything, and a timer that
//! fires late or twice re-reads the ticket before acting.

use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;

use crate::config::{Config, Trigger};
use crate::objects::ticket::STATUS;
use crate::sla::{self, Metric};
use crate::state::TicketState;

pub const SLA: &str = "sla";
pub const WARN: &str = "warn";
pub const AGE: &str = "age";

pub fn key(kind: &str, ticket: &str, name: &str) -> String {
    format!("{kind}:{ticket}:{name}")
}

/// `(kind, ticket, name)` of a timer key.
pub fn parse(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.splitn(3, ':');
    let (kind, ticket, name) = (parts.next()?, parts.next()?, parts.next()?);
    (!ticket.is_empty() && !name.is_empty()).then_some((kind, ticket, name))
}

/// Whether the breach of `metric` in the ticket's current cycle is done
/// (recorded by the plugin, or a flag given on import).
pub fn breach_done(ticket: &Record, metric: Metric, state: &TicketState) -> bool {
    let flagged = metric != Metric::NextReply && ticket.bool(metric.breached_field()) == Some(true);
    flagged || state.breached_in(metric, &metric.cycle(ticket))
}

/// The timers `ticket` needs now.
pub fn desired(config: &Config, ticket: &Record, state: &TicketState) -> BTreeMap<String, i64> {
    let mut timers = BTreeMap::new();
    let warning = config.sla.warning_minutes.saturating_mul(60_000);
    for metric in Metric::ALL {
        let Some(due) = ticket.int(metric.due_field()) else { continue };
        if breach_done(ticket, metric, state) {
            continue;
        }
        timers.insert(key(SLA, &ticket.id, metric.as_str()), due);
        if warning > 0 && !state.warned_in(metric, &metric.cycle(ticket)) {
            timers.insert(key(WARN, &ticket.id, metric.as_str()), due - warning);
        }
    }
    if !sla::stopped(ticket.text(STATUS)) {
        for rule in config.escalations.iter().filter(|rule| rule.on == Trigger::Age) {
            if let Some(minutes) = rule.after_minutes
                && !state.escalated.contains(&rule.name)
            {
                timers.insert(key(AGE, &ticket.id, &rule.name), ticket.created_at.saturating_add(minutes.saturating_mul(60_000)));
            }
        }
    }
    timers
}

/// Schedules and cancels so that exactly `desired` is scheduled; stores
/// the state when anything changed.
pub fn sync(ticket: &str, state: &mut TicketState, desired: &BTreeMap<String, i64>) -> Result<()> {
    let mut changed = false;
    for (key, at) in desired {
        if state.timers.get(key) != Some(at) {
            timers::schedule(key, *at, b"")?;
            state.timers.insert(key.clone(), *at);
            changed = true;
        }
    }
    let stale: Vec<String> = state.timers.keys().filter(|key| !desired.contains_key(*key)).cloned().collect();
    for key in stale {
        timers::cancel(&key)?;
        state.timers.remove(&key);
        changed = true;
    }
    if changed {
        state.save(ticket)?;
    }
    Ok(())
}

/// Schedules one timer again (it fired early: the due time moved on).
pub fn again(ticket: &str, state: &mut TicketState, key: String, at: i64) -> Result<()> {
    timers::schedule(&key, at, b"")?;
    state.timers.insert(key, at);
    state.save(ticket)
}

/// Cancels every timer of a deleted ticket and forgets its state.
pub fn forget(ticket: &str) -> Result<()> {
    let state = TicketState::load(ticket)?;
    for key in state.timers.keys() {
        timers::cancel(key)?;
    }
    TicketState::delete(ticket)
}
