//! Canned replies: reusable bodies with merge fields, applied to a ticket
//! as a public agent reply (which then goes out like any reply).
//!
//! A merge field is `{{name}}` or `{{name|fallback}}`; the fallback is
//! used when the value is empty (`Hi {{requester.first_name|there}}`).
//! The names are [`FIELDS`]; a canned reply naming another one is refused
//! when it is written, so a typo never reaches a customer.

use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;

use crate::config::Config;
use crate::objects::{CANNED, COMMENT, comment, ticket::*};
use crate::tickets;

/// The merge fields a canned reply may use.
pub const FIELDS: [&str; 12] = [
    "ticket.id",
    "ticket.subject",
    "ticket.status",
    "ticket.priority",
    "ticket.channel",
    "ticket.team",
    "requester.first_name",
    "requester.last_name",
    "requester.name",
    "requester.email",
    "company.name",
    "agent.id",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Field { name: &'a str, fallback: Option<&'a str> },
}

fn parse(template: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| "'{{' without a closing '}}'".to_owned())?;
        let inner = &after[..close];
        let (name, fallback) = match inner.split_once('|') {
            Some((name, fallback)) => (name.trim(), Some(fallback.trim())),
            None => (inner.trim(), None),
        };
        if !FIELDS.contains(&name) {
            return Err(format!("unknown merge field {{{{{name}}}}} (known: {})", FIELDS.join(", ")));
        }
        parts.push(Part::Field { name, fallback });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

/// Checks a template's merge fields.
pub fn check(template: &str) -> Result<(), String> {
    parse(template).map(|_| ())
}

/// The template with its merge fields filled in; an unknown or empty value
/// is the field's fallback, or nothing.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for part in parse(template)? {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Field { name, fallback } => match values.get(name).filter(|value| !value.is_empty()) {
                Some(value) => out.push_str(value),
                None => out.push_str(fallback.unwrap_or_default()),
            },
        }
    }
    Ok(out)
}

/// The decision on a canned reply change: its body's merge fields exist.
pub fn before_write(change: &Change) -> Decision {
    match change.after().text("body").map(check) {
        Some(Err(reason)) => Decision::reject_field("body", reason),
        _ => Decision::accept(),
    }
}

/// The merge values of a ticket, its requester and company.
pub fn values(ticket: &Record, agent: Option<&str>) -> Result<BTreeMap<&'static str, String>> {
    let mut values = BTreeMap::new();
    let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
    values.insert("ticket.id", ticket.id.clone());
    values.insert("ticket.subject", text(ticket.text(SUBJECT)));
    values.insert("ticket.status", text(ticket.text(STATUS)));
    values.insert("ticket.priority", text(ticket.text(PRIORITY)));
    values.insert("ticket.channel", text(ticket.text(CHANNEL)));
    values.insert("ticket.team", text(ticket.text(TEAM)));
    values.insert("agent.id", text(agent.or(ticket.id(ASSIGNEE))));
    if let Some(contact) = ticket.id(REQUESTER).map(|id| records::get("contact", id)).transpose()?.flatten() {
        let first = text(contact.text("first_name"));
        let last = text(contact.text("last_name"));
        values.insert("requester.name", format!("{first} {last}").trim().to_owned());
        values.insert("requester.first_name", first);
        values.insert("requester.last_name", last);
        values.insert("requester.email", text(contact.text("email")));
    }
    if let Some(company) = ticket.id(COMPANY).map(|id| records::get("company", id)).transpose()?.flatten() {
        values.insert("company.name", text(company.text("name")));
    }
    Ok(values)
}

/// The `apply-canned-reply` action: renders the canned reply for the
/// ticket, writes it as a public agent reply and sets the canned reply's
/// status on the ticket, if it has one.
pub fn apply(config: &Config, input: &Fields, now: i64) -> Result<Fields> {
    let ticket_id = input.id("ticket_id").ok_or("ticket_id: is required")?;
    let canned_id = input.id("canned_reply_id").ok_or("canned_reply_id: is required")?;
    let ticket = tickets::get(ticket_id)?.ok_or_else(|| Error::msg(format!("ticket_id: there is no ticket {ticket_id}")))?;
    if ticket.text(STATUS) == Some("closed") {
        return Err(Error::msg("ticket_id: the ticket is closed; create a follow-up ticket"));
    }
    let canned = records::get(CANNED, canned_id)?
        .filter(|canned| !canned.deleted)
        .ok_or_else(|| Error::msg(format!("canned_reply_id: there is no canned reply {canned_id}")))?;
    let agent = input.id("author_id");
    let body = render(canned.text("body").unwrap_or_default(), &values(&ticket, agent)?)
        .map_err(|reason| Error::msg(format!("canned_reply_id: {reason}")))?;
    if body.trim().is_empty() {
        return Err(Error::msg("canned_reply_id: the reply renders empty"));
    }
    let mut fields = Fields::new()
        .with(comment::TICKET, Value::Id(ticket.id.clone()))
        .with(comment::BODY, body.as_str())
        .with(comment::VISIBILITY, "public")
        .with(comment::AUTHOR_KIND, "agent");
    if let Some(agent) = agent {
        fields.set(comment::AUTHOR, Value::Id(agent.to_owned()));
    }
    let note = records::create(COMMENT, fields)?;
    let mut status = ticket.text(STATUS).map(str::to_owned);
    if let Some(set) = canned.text("set_status").map(str::to_owned) {
        let stored = tickets::update(config, ticket, now, |_| Ok(Some(Fields::new().with(STATUS, set.as_str()))))?;
        status = stored.and_then(|ticket| ticket.text(STATUS).map(str::to_owned));
    }
    Ok(Fields::new().with("comment_id", Value::Id(note.id)).with("body", body).with("status", status))
}
