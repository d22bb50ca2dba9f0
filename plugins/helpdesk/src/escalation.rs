//! Escalation rules: on a breach of an SLA target, or when a ticket
//! reaches an age, reassign it (to a user, or to a team's next member),
//! raise or set its priority, and email configured addresses. Each rule
//! acts at most once per ticket; a rule whose conditions (status,
//! priority, team) do not hold when it triggers is skipped for good.
//!
//! The ticket records the escalation (`escalation_count`, `escalated_at`,
//! `last_escalation`) and the custom event `helpdesk.ticket_escalated`
//! tells automations. A raised priority can select a stricter SLA policy:
//! its due times follow at once.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::assignment;
use crate::config::{Config, Escalation, Trigger};
use crate::objects::{PRIORITIES, ticket::*};
use crate::sla::Metric;
use crate::state::TicketState;
use crate::text::iso;
use crate::tickets;

/// The next priority up (`urgent` stays).
pub fn raised(priority: &str) -> &'static str {
    let index = PRIORITIES.iter().position(|known| *known == priority).unwrap_or(1);
    PRIORITIES[(index + 1).min(PRIORITIES.len() - 1)]
}

/// Runs the breach rules of `metric`; returns the ticket as stored after.
pub fn on_breach(config: &Config, ticket: Record, metric: Metric, state: &mut TicketState, now: i64) -> Result<Record> {
    let mut ticket = ticket;
    for rule in config.escalations.iter().filter(|rule| rule.on_breach_of(metric)) {
        ticket = apply(config, ticket, rule, Some(metric), state, now)?;
    }
    Ok(ticket)
}

/// The `age:<ticket>:<rule>` timer.
pub fn on_age(config: &Config, ticket: Record, rule: &str, state: &mut TicketState, now: i64) -> Result<()> {
    match config.escalation(rule).filter(|rule| rule.on == Trigger::Age) {
        Some(rule) => apply(config, ticket, rule, None, state, now).map(|_| ()),
        None => Ok(()),
    }
}

fn apply(
    config: &Config,
    ticket: Record,
    rule: &Escalation,
    metric: Option<Metric>,
    state: &mut TicketState,
    now: i64,
) -> Result<Record> {
    let mut ticket = ticket;
    if !state.escalated.contains(&rule.name) {
        let applies =
            rule.matches(ticket.text(STATUS).unwrap_or("new"), ticket.text(PRIORITY).unwrap_or("normal"), ticket.text(TEAM));
        if !applies {
            // Skipped for good: an age timer must not come back for it.
            state.escalated.insert(rule.name.clone());
            state.notified.insert(rule.name.clone());
            state.save(&ticket.id)?;
            return Ok(ticket);
        }
        let choice = match (&rule.assign_team, &rule.assign_user) {
            (Some(team), None) => assignment::choose(config, team)?,
            _ => None,
        };
        let updated = tickets::update(config, ticket.clone(), now, |current| {
            let mut changes = Fields::new();
            if let Some(team) = &rule.assign_team {
                changes.set(TEAM, team.as_str());
            }
            match (&rule.assign_user, &choice) {
                (Some(user), _) => changes.set(ASSIGNEE, Value::Id(user.clone())),
                (None, Some(choice)) => changes.set(ASSIGNEE, Value::Id(choice.user.clone())),
                (None, None) => None,
            };
            let priority = current.text(PRIORITY).unwrap_or("normal");
            if let Some(set) = &rule.set_priority {
                changes.set(PRIORITY, set.as_str());
            } else if rule.raise_priority {
                changes.set(PRIORITY, raised(priority));
            }
            changes.set(ESCALATION_COUNT, current.int(ESCALATION_COUNT).unwrap_or(0) + 1);
            changes.set(ESCALATED_AT, now);
            changes.set(LAST_ESCALATION, rule.name.as_str());
            Ok(Some(changes))
        })?;
        let Some(updated) = updated else { return Ok(ticket) };
        if let Some(choice) = &choice {
            assignment::commit(choice)?;
        }
        state.escalated.insert(rule.name.clone());
        state.save(&updated.id)?;
        ticket = updated;
    }
    if !state.notified.contains(&rule.name) {
        notify(&ticket, rule, metric)?;
        state.notified.insert(rule.name.clone());
        state.save(&ticket.id)?;
        info!("ticket {}: escalation {} applied", ticket.id, rule.name);
    }
    Ok(ticket)
}

fn notify(ticket: &Record, rule: &Escalation, metric: Option<Metric>) -> Result<()> {
    let trigger = match metric {
        Some(metric) => format!("the {} target breached", metric.as_str().replace('_', " ")),
        None => format!("the ticket is older than {} minutes", rule.after_minutes.unwrap_or(0)),
    };
    let subject = ticket.text(SUBJECT).unwrap_or("(no subject)");
    let line = |label: &str, value: Option<&str>| format!("{label}: {}\n", value.unwrap_or("-"));
    let mut body = format!("Escalation rule '{}' applied because {trigger}.\n\n", rule.name);
    body.push_str(&line("Ticket", Some(&ticket.id)));
    body.push_str(&line("Subject", Some(subject)));
    body.push_str(&line("Status", ticket.text(STATUS)));
    body.push_str(&line("Priority", ticket.text(PRIORITY)));
    body.push_str(&line("Team", ticket.text(TEAM)));
    body.push_str(&line("Assignee", ticket.id(ASSIGNEE)));
    body.push_str(&line("Requester", ticket.id(REQUESTER)));
    for (label, field) in
        [("First reply due", FIRST_REPLY_DUE), ("Next reply due", NEXT_REPLY_DUE), ("Resolution due", RESOLUTION_DUE)]
    {
        if let Some(due) = ticket.int(field) {
            body.push_str(&line(label, Some(&iso(due))));
        }
    }
    for address in &rule.notify {
        let message = Message::email(address, format!("[Escalation] {}: {subject} [#{}]", rule.name, ticket.id), body.clone());
        outbound::send(&message)?;
    }
    let payload = json!({
        "ticket_id": ticket.id,
        "rule": rule.name,
        "trigger": rule.on.as_str(),
        "metric": metric.map(Metric::as_str),
        "priority": ticket.text(PRIORITY),
        "team": ticket.text(TEAM),
        "assignee_id": ticket.id(ASSIGNEE),
        "contact_id": ticket.id(REQUESTER),
        "escalation_count": ticket.int(ESCALATION_COUNT),
    });
    events::emit("helpdesk.ticket_escalated", &payload.to_string())
}
