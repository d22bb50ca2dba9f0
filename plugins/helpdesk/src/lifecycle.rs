//! What follows a ticket write, after it is committed: assignment within
//! its team, the CSAT survey once it is solved, and its timers. Every step
//! looks at the ticket as stored now and does only what is still missing,
//! so a ticket written several times before delivery, or delivered twice,
//! ends in the same place; and the plugin's own writes settle (they change
//! nothing more on their second look).

use crm_plugin_sdk::prelude::*;

use crate::assignment;
use crate::config::Config;
use crate::schedule;
use crate::state::TicketState;
use crate::surveys;
use crate::tickets;

/// Brings everything that follows from ticket `id` up to date.
pub fn settle(ctx: &Ctx, config: &Config, id: &str, now: i64) -> Result<()> {
    let Some(ticket) = tickets::get(id)? else { return schedule::forget(id) };
    let ticket = assignment::auto_assign(config, ticket, now)?;
    let ticket = surveys::send_csat(ctx, config, ticket, now)?;
    let mut state = TicketState::load(&ticket.id)?;
    let desired = schedule::desired(config, &ticket, &state);
    schedule::sync(&ticket.id, &mut state, &desired)
}

/// A due timer of the plugin.
pub fn on_timer(config: &Config, key: &str, now: i64) -> Result<()> {
    let Some((kind, id, name)) = schedule::parse(key) else {
        warn!("ignoring unknown timer {key}");
        return Ok(());
    };
    let mut state = TicketState::load(id)?;
    if state.timers.remove(key).is_some() {
        state.save(id)?;
    }
    let Some(ticket) = tickets::get(id)? else { return schedule::forget(id) };
    let metric = crate::sla::Metric::parse(name);
    match (kind, metric) {
        (schedule::SLA, Some(metric)) => crate::breach::on_timer(config, ticket, metric, &mut state, now),
        (schedule::WARN, Some(metric)) => crate::breach::on_warning(config, &ticket, metric, &mut state, now),
        (schedule::AGE, _) => crate::escalation::on_age(config, ticket, name, &mut state, now),
        _ => {
            warn!("ignoring unknown timer {key}");
            Ok(())
        }
    }
}
