//! The ticket timeline: public replies and internal notes
//! (`ticket_comment`).
//!
//! - Before a comment is written: it defaults to an internal note by an
//!   agent, a public reply on a closed ticket is refused, and a comment's
//!   visibility and author kind cannot change afterwards (its email went
//!   out, or did not, when it was written).
//! - After a public agent reply is written: it meets the first-reply
//!   target (the first one) and the next-reply target (when the requester
//!   awaited an answer), a `new` ticket becomes `open`, and the requester
//!   gets it by email (`Re: <subject> [#<ticket id>]`); the outbound
//!   message's id is kept on the comment. A reply after the due time
//!   records the breach.
//! - After a public requester message is written (an inbound email or a
//!   portal, through the API): once the ticket had its first reply, it
//!   starts a next-reply wait, and it reopens a `pending` or `solved`
//!   ticket.
//!
//! Internal notes change nothing and email nobody. Reply times are the
//! comments' creation times, so a late delivery does not move them.

use crm_plugin_sdk::prelude::*;

use crate::breach;
use crate::config::Config;
use crate::objects::{COMMENT, TICKET, comment, ticket::*};
use crate::sla::{self, Clock, Metric};
use crate::state::TicketState;
use crate::tickets;

/// The decision on one comment change.
pub fn before_write(change: &Change) -> Result<Decision> {
    let after = change.after();
    if let Some(before) = change.before() {
        for field in [comment::VISIBILITY, comment::AUTHOR_KIND] {
            if change.changed(field) && before.get(field).is_some_and(|value| !value.is_null()) {
                return Ok(Decision::reject_field(field, "cannot change once the comment is written"));
            }
        }
        return Ok(Decision::accept());
    }
    if after.text(comment::BODY).is_none_or(|body| body.trim().is_empty()) {
        return Ok(Decision::reject_field(comment::BODY, "is empty"));
    }
    let mut patch = Fields::new();
    if after.text(comment::VISIBILITY).is_none() {
        patch.set(comment::VISIBILITY, "internal");
    }
    if after.text(comment::AUTHOR_KIND).is_none() {
        patch.set(comment::AUTHOR_KIND, "agent");
    }
    let public = after.text(comment::VISIBILITY) == Some("public");
    if public && let Some(ticket) = after.id(comment::TICKET) {
        let closed = records::get(TICKET, ticket)?.is_some_and(|ticket| ticket.text(STATUS) == Some("closed"));
        if closed {
            return Ok(Decision::reject_field(comment::TICKET, "the ticket is closed; create a follow-up ticket"));
        }
    }
    Ok(Decision::patch(patch))
}

/// A comment was written: applies a public one to its ticket.
pub fn on_created(config: &Config, id: &str, now: i64) -> Result<()> {
    let Some(note) = records::get(COMMENT, id)?.filter(|note| !note.deleted) else { return Ok(()) };
    if note.text(comment::VISIBILITY) != Some("public") {
        return Ok(());
    }
    let Some(ticket) = note.id(comment::TICKET).map(tickets::get).transpose()?.flatten() else { return Ok(()) };
    match note.text(comment::AUTHOR_KIND).unwrap_or("agent") {
        "agent" => agent_reply(config, ticket, &note, now),
        "requester" => requester_message(config, ticket, &note, now).map(|_| ()),
        _ => Ok(()),
    }
}

/// The SLA clock's reading of `ticket` at instant `at`, in whole minutes.
fn minutes_at(config: &Config, ticket: &Record, at: i64) -> i64 {
    let reading = match Clock::of(ticket) {
        Some(clock) => clock.reading(sla::running(ticket.text(STATUS)), &sla::calendar_of(config, ticket.text(POLICY)), at),
        None => (at - ticket.created_at).max(0),
    };
    reading / 60_000
}

fn agent_reply(config: &Config, ticket: Record, note: &Record, now: i64) -> Result<()> {
    let at = note.created_at;
    // Targets this reply meets after their due time, with their cycles.
    let mut late = Vec::new();
    if ticket.int(FIRST_REPLY_AT).is_none()
        && let Some(due) = ticket.int(FIRST_REPLY_DUE).filter(|due| at > *due)
    {
        late.push((Metric::FirstReply, due, Metric::FirstReply.cycle(&ticket)));
    }
    if ticket.int(AWAITING_SINCE).is_some_and(|since| at >= since)
        && let Some(due) = ticket.int(NEXT_REPLY_DUE).filter(|due| at > *due)
    {
        late.push((Metric::NextReply, due, Metric::NextReply.cycle(&ticket)));
    }
    let updated = tickets::update(config, ticket.clone(), now, |current| {
        let mut changes = Fields::new();
        if current.int(LAST_AGENT_REPLY_AT).is_none_or(|last| at > last) {
            changes.set(LAST_AGENT_REPLY_AT, at);
        }
        if current.int(FIRST_REPLY_AT).is_none() {
            changes.set(FIRST_REPLY_AT, at);
            changes.set(FIRST_REPLY_MINUTES, minutes_at(config, current, at));
            if current.int(FIRST_REPLY_DUE).is_some_and(|due| at > due) {
                changes.set(FIRST_REPLY_BREACHED, true);
            }
        }
        if current.int(AWAITING_SINCE).is_some_and(|since| at >= since) {
            changes.set(AWAITING_SINCE, Value::Null);
            if current.int(NEXT_REPLY_DUE).is_some_and(|due| at > due) {
                changes.set(NEXT_REPLY_BREACHED, true);
            }
        }
        if current.text(STATUS) == Some("new") {
            changes.set(STATUS, "open");
        }
        Ok(Some(changes))
    })?;
    let Some(mut ticket) = updated else { return Ok(()) };
    if !late.is_empty() {
        let mut state = TicketState::load(&ticket.id)?;
        for (metric, due, cycle) in late {
            ticket = breach::record(config, ticket, metric, due, &cycle, &mut state, now)?;
        }
    }
    if note.text(comment::MESSAGE).is_none()
        && let Some(message) = email_requester(&ticket, note)?
    {
        records::update(COMMENT, &note.id, [(comment::MESSAGE, message)], None)?;
    }
    Ok(())
}

fn requester_message(config: &Config, ticket: Record, note: &Record, now: i64) -> Result<Option<Record>> {
    let at = note.created_at;
    tickets::update(config, ticket, now, |current| {
        let mut changes = Fields::new();
        if current.int(LAST_REQUESTER_REPLY_AT).is_none_or(|last| at > last) {
            changes.set(LAST_REQUESTER_REPLY_AT, at);
        }
        let newer = current.int(LAST_AGENT_REPLY_AT).is_none_or(|last| at > last);
        if newer && current.int(FIRST_REPLY_AT).is_some() && current.int(AWAITING_SINCE).is_none() {
            changes.set(AWAITING_SINCE, at);
        }
        if newer && matches!(current.text(STATUS), Some("pending" | "solved")) {
            changes.set(STATUS, "open");
        }
        Ok(Some(changes))
    })
}

/// Emails a public reply to the requester; the outbound message's id, or
/// `None` when the requester has no email address.
fn email_requester(ticket: &Record, note: &Record) -> Result<Option<String>> {
    let contact = match ticket.id(REQUESTER) {
        Some(id) => records::get("contact", id)?.filter(|contact| !contact.deleted),
        None => None,
    };
    let Some(address) = contact.as_ref().and_then(|contact| contact.text("email")) else {
        info!("ticket {}: the reply was not emailed, the requester has no email address", ticket.id);
        return Ok(None);
    };
    let subject = format!("Re: {} [#{}]", ticket.text(SUBJECT).unwrap_or("your request"), ticket.id);
    let body = format!("{}\n\n--\nTicket {}", note.text(comment::BODY).unwrap_or_default(), ticket.id);
    outbound::send(&Message::email(address, subject, body)).map(Some)
}
