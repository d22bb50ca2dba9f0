//! SLA breaches and warnings: what the `sla:` and `warn:` timers do, and
//! the custom events `helpdesk.sla_breached` and `helpdesk.sla_warning`.
//!
//! A breach is recorded once per metric and cycle, by whichever comes
//! first: the timer at the due time, or an agent reply that arrives after
//! it. Recording sets the metric's breach flag and `sla_breached` on the
//! ticket, emits the event and runs the escalation rules of that metric.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{self, json};

use crate::config::Config;
use crate::escalation;
use crate::objects::{COMMENT, comment, ticket::*};
use crate::schedule;
use crate::sla::Metric;
use crate::state::TicketState;
use crate::text::iso;
use crate::tickets;

/// The payload of both SLA events.
pub fn payload(ticket: &Record, metric: Metric, due: i64, now: i64) -> serde_json::Value {
    json!({
        "ticket_id": ticket.id,
        "metric": metric.as_str(),
        "due_at": iso(due),
        "due_at_ms": due,
        "at": iso(now),
        "policy": ticket.text(POLICY),
        "priority": ticket.text(PRIORITY),
        "status": ticket.text(STATUS),
        "team": ticket.text(TEAM),
        "assignee_id": ticket.id(ASSIGNEE),
        "contact_id": ticket.id(REQUESTER),
        "company_id": ticket.id(COMPANY),
        "subject": ticket.text(SUBJECT),
    })
}

/// The `sla:<ticket>:<metric>` timer: records the breach if the metric is
/// still running and due, re-arms itself if the due time moved later.
pub fn on_timer(config: &Config, ticket: Record, metric: Metric, state: &mut TicketState, now: i64) -> Result<()> {
    let Some(due) = ticket.int(metric.due_field()) else { return Ok(()) };
    let cycle = metric.cycle(&ticket);
    if state.breached_in(metric, &cycle) {
        // A retry after a failure in the escalation rules: finish them.
        return escalation::on_breach(config, ticket, metric, state, now).map(|_| ());
    }
    if schedule::breach_done(&ticket, metric, state) {
        return Ok(());
    }
    if due > now {
        return schedule::again(&ticket.id, state, schedule::key(schedule::SLA, &ticket.id, metric.as_str()), due);
    }
    if metric != Metric::Resolution && replied_in_time(&ticket, metric, due)? {
        // The reply is committed; its delivery records it as met.
        return Ok(());
    }
    record(config, ticket, metric, due, &cycle, state, now).map(|_| ())
}

/// Whether a public agent reply answering this cycle was written by `due`.
fn replied_in_time(ticket: &Record, metric: Metric, due: i64) -> Result<bool> {
    let since = match metric {
        Metric::NextReply => ticket.int(AWAITING_SINCE).unwrap_or(ticket.created_at),
        _ => ticket.created_at,
    };
    let filter = json!({
        comment::TICKET: {"eq": ticket.id},
        comment::VISIBILITY: {"eq": "public"},
        comment::AUTHOR_KIND: {"eq": "agent"},
        "created_at": {"gte": since, "lte": due},
    });
    Ok(records::first(COMMENT, &filter.to_string())?.is_some())
}

/// Records the breach of `metric` in `cycle` (due at `due`) unless it is
/// recorded already, then runs the metric's escalation rules (each acts
/// once, so running them again finishes what a failure interrupted);
/// returns the ticket as stored afterwards.
pub fn record(
    config: &Config,
    ticket: Record,
    metric: Metric,
    due: i64,
    cycle: &str,
    state: &mut TicketState,
    now: i64,
) -> Result<Record> {
    if state.breached_in(metric, cycle) {
        return escalation::on_breach(config, ticket, metric, state, now);
    }
    let flag = metric.breached_field();
    let updated = tickets::update(config, ticket.clone(), now, |current| {
        Ok((current.bool(flag) != Some(true)).then(|| Fields::new().with(flag, true)))
    })?;
    let Some(ticket) = updated else { return Ok(ticket) };
    events::emit("helpdesk.sla_breached", &payload(&ticket, metric, due, now).to_string())?;
    state.breached.insert(metric.as_str().to_owned(), cycle.to_owned());
    state.save(&ticket.id)?;
    info!("ticket {}: {} breached (due {})", ticket.id, metric.as_str(), iso(due));
    escalation::on_breach(config, ticket, metric, state, now)
}

/// The `warn:<ticket>:<metric>` timer: emits the warning once per cycle
/// while the metric runs and is not yet due.
pub fn on_warning(config: &Config, ticket: &Record, metric: Metric, state: &mut TicketState, now: i64) -> Result<()> {
    let Some(due) = ticket.int(metric.due_field()) else { return Ok(()) };
    let cycle = metric.cycle(ticket);
    if state.warned_in(metric, &cycle) || schedule::breach_done(ticket, metric, state) || due <= now {
        return Ok(());
    }
    let warn_at = due - config.sla.warning_minutes.saturating_mul(60_000);
    if warn_at > now {
        return schedule::again(&ticket.id, state, schedule::key(schedule::WARN, &ticket.id, metric.as_str()), warn_at);
    }
    let mut payload = payload(ticket, metric, due, now);
    payload["minutes_left"] = json!((due - now + 59_999) / 60_000);
    events::emit("helpdesk.sla_warning", &payload.to_string())?;
    state.warned.insert(metric.as_str().to_owned(), cycle);
    state.save(&ticket.id)
}
