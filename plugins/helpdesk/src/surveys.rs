//! CSAT and NPS surveys. Each survey sent is a `survey_response` record;
//! its email carries one signed link per answer, to the public routes
//! `/csat` and `/nps` ([`crate::routes`]), and answering fills the record.
//!
//! - CSAT: when a ticket is first solved (or closed without being solved
//!   first), its requester gets one survey: ratings 1–5. The rating also
//!   lands on the ticket (`csat_rating`), so ticket aggregates can average
//!   it by team or agent. One survey per ticket; answering again replaces
//!   the answer.
//! - NPS: the `send-nps-survey` action sends one to a contact: scores
//!   0–10; `nps-score` gives promoters minus detractors, in percent.
//!
//! Links are `<public_url>/hooks/<tenant>/helpdesk/csat?token=<t>&rating=<n>`
//! (and `/nps?token=<t>&score=<n>`), where the token is the survey's id
//! signed with the tenant's key (`crm_plugin_sdk::signed`): a changed or
//! made-up token does not verify.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{self, json};
use crm_plugin_sdk::signed;

use crate::config::Config;
use crate::objects::{SURVEY, survey, ticket::*};
use crate::sla;
use crate::text::{escape_html, route_url};
use crate::tickets;

/// The two kinds of survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Csat,
    Nps,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Csat => "csat",
            Kind::Nps => "nps",
        }
    }

    /// The query parameter that carries the answer.
    pub fn answer_name(self) -> &'static str {
        match self {
            Kind::Csat => "rating",
            Kind::Nps => "score",
        }
    }

    pub fn range(self) -> (i64, i64) {
        match self {
            Kind::Csat => (1, 5),
            Kind::Nps => (0, 10),
        }
    }

    /// The category of an answer, for aggregates.
    pub fn category(self, value: i64) -> &'static str {
        match (self, value) {
            (Kind::Csat, 4..) => "satisfied",
            (Kind::Csat, 3) => "neutral",
            (Kind::Csat, _) => "dissatisfied",
            (Kind::Nps, 9..) => "promoter",
            (Kind::Nps, 7..=8) => "passive",
            (Kind::Nps, _) => "detractor",
        }
    }

    /// The label of each answer in emails and pages, best first.
    pub fn choices(self) -> Vec<(i64, String)> {
        match self {
            Kind::Csat => {
                [(5, "Very satisfied"), (4, "Satisfied"), (3, "Neutral"), (2, "Dissatisfied"), (1, "Very dissatisfied")]
                    .into_iter()
                    .map(|(value, label)| (value, format!("{value} – {label}")))
                    .collect()
            }
            Kind::Nps => (0..=10).rev().map(|value| (value, value.to_string())).collect(),
        }
    }
}

/// The signed token of a survey.
pub fn token(kind: Kind, survey: &str) -> Result<String> {
    signed::sign(&format!("{}:{survey}", kind.as_str()))
}

/// The survey id of a token of `kind`, or `None` if it does not verify.
pub fn verify(kind: Kind, token: &str) -> Result<Option<String>> {
    let data = signed::verify(token)?;
    Ok(data.and_then(|data| data.strip_prefix(&format!("{}:", kind.as_str())).map(str::to_owned)))
}

/// The link that answers a survey with `value`.
pub fn link(config: &Config, ctx: &Ctx, kind: Kind, token: &str, value: i64) -> String {
    let path = format!("/{}?token={token}&{}={value}", kind.as_str(), kind.answer_name());
    route_url(config, ctx.tenant(), ctx.plugin(), &path)
}

fn survey_email(config: &Config, ctx: &Ctx, kind: Kind, token: &str, to: &str, subject: String, intro: &str) -> Message {
    let mut body = format!("{intro}\n\n");
    let mut html = format!("<p>{}</p><ul>", escape_html(intro));
    for (value, label) in kind.choices() {
        let url = link(config, ctx, kind, token, value);
        body.push_str(&format!("{label}: {url}\n"));
        html.push_str(&format!("<li><a href=\"{}\">{}</a></li>", escape_html(&url), escape_html(&label)));
    }
    html.push_str("</ul>");
    Message::email(to, subject, body).with_html(html)
}

fn contact_email(contact: Option<&str>) -> Result<Option<String>> {
    let Some(contact) = contact else { return Ok(None) };
    Ok(records::get("contact", contact)?
        .filter(|contact| !contact.deleted)
        .and_then(|contact| contact.text("email").map(str::to_owned)))
}

/// Sends the CSAT survey of a solved ticket once; returns the ticket as
/// stored afterwards (with `csat_sent_at`).
pub fn send_csat(ctx: &Ctx, config: &Config, ticket: Record, now: i64) -> Result<Record> {
    let due = config.csat.enabled
        && ticket.int(CSAT_SENT_AT).is_none()
        && sla::stopped(ticket.text(STATUS))
        && ticket.int(SOLVED_AT).is_some();
    if !due {
        return Ok(ticket);
    }
    let Some(contact) = ticket.id(REQUESTER).map(str::to_owned) else { return Ok(ticket) };
    let Some(address) = contact_email(Some(&contact))? else {
        info!("ticket {}: no CSAT survey, the requester has no email address", ticket.id);
        return Ok(ticket);
    };
    let filter = json!({survey::TICKET: {"eq": ticket.id}, survey::KIND: {"eq": "csat"}});
    let existing = records::first(SURVEY, &filter.to_string())?;
    let record = match existing {
        Some(record) => record,
        None => {
            let mut fields = Fields::new()
                .with(survey::KIND, "csat")
                .with(survey::TICKET, Value::Id(ticket.id.clone()))
                .with(survey::CONTACT, Value::Id(contact))
                .with(survey::TEAM, ticket.text(TEAM))
                .with(survey::ASSIGNEE, ticket.id(ASSIGNEE).map(|id| Value::Id(id.to_owned())))
                .with(survey::SENT_AT, now);
            fields.retain(|_, value| !value.is_null());
            records::create(SURVEY, fields)?
        }
    };
    let sent_at = record.int(survey::SENT_AT).unwrap_or(now);
    if record.text(survey::MESSAGE).is_none() {
        let token = token(Kind::Csat, &record.id)?;
        let subject = format!("{} Re: {} [#{}]", config.csat.subject, ticket.text(SUBJECT).unwrap_or("your request"), ticket.id);
        let message = outbound::send(&survey_email(config, ctx, Kind::Csat, &token, &address, subject, &config.csat.message))?;
        records::update(SURVEY, &record.id, [(survey::MESSAGE, message)], None)?;
    }
    let stored = tickets::update(config, ticket.clone(), now, |current| {
        Ok(current.int(CSAT_SENT_AT).is_none().then(|| Fields::new().with(CSAT_SENT_AT, sent_at)))
    })?;
    Ok(stored.unwrap_or(ticket))
}

/// Sends an NPS survey to a contact; returns the survey and message ids.
pub fn send_nps(ctx: &Ctx, config: &Config, contact: &str, now: i64) -> Result<Fields> {
    if records::get("contact", contact)?.is_none_or(|record| record.deleted) {
        return Err(Error::msg(format!("contact_id: there is no contact {contact}")));
    }
    let Some(address) = contact_email(Some(contact))? else {
        return Err(Error::msg("contact_id: the contact has no email address"));
    };
    let fields =
        Fields::new().with(survey::KIND, "nps").with(survey::CONTACT, Value::Id(contact.to_owned())).with(survey::SENT_AT, now);
    let record = records::create(SURVEY, fields)?;
    let token = token(Kind::Nps, &record.id)?;
    let message =
        outbound::send(&survey_email(config, ctx, Kind::Nps, &token, &address, config.nps.subject.clone(), &config.nps.message))?;
    records::update(SURVEY, &record.id, [(survey::MESSAGE, message.clone())], None)?;
    Ok(Fields::new().with("survey_response_id", Value::Id(record.id)).with("message_id", message))
}

/// What answering a survey came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    Recorded {
        survey: String,
        ticket: Option<String>,
        value: i64,
    },
    /// The token does not verify, or its survey is gone.
    Unknown,
    /// The answer is out of range.
    Invalid(String),
}

/// Records `value` (and a comment, when given) as the answer of the
/// survey behind `token`; a CSAT rating also lands on its ticket. Emits
/// `helpdesk.csat_received` or `helpdesk.nps_received`.
pub fn answer(config: &Config, kind: Kind, token: &str, value: i64, comment: Option<&str>, now: i64) -> Result<Answered> {
    let Some(id) = verify(kind, token)? else { return Ok(Answered::Unknown) };
    let Some(record) =
        records::get(SURVEY, &id)?.filter(|record| !record.deleted && record.text(survey::KIND) == Some(kind.as_str()))
    else {
        return Ok(Answered::Unknown);
    };
    let (low, high) = kind.range();
    if !(low..=high).contains(&value) {
        return Ok(Answered::Invalid(format!("{}: must be a whole number from {low} to {high}", kind.answer_name())));
    }
    let comment = comment.map(str::trim).filter(|comment| !comment.is_empty());
    let value_field = match kind {
        Kind::Csat => survey::RATING,
        Kind::Nps => survey::SCORE,
    };
    let mut fields =
        Fields::new().with(value_field, value).with(survey::CATEGORY, kind.category(value)).with(survey::RESPONDED_AT, now);
    if let Some(comment) = comment {
        fields.set(survey::COMMENT, comment);
    }
    records::update(SURVEY, &record.id, fields, None)?;
    let ticket_id = record.id(survey::TICKET).map(str::to_owned);
    if kind == Kind::Csat
        && let Some(ticket) = ticket_id.as_deref().map(tickets::get).transpose()?.flatten()
    {
        tickets::update(config, ticket, now, |_| {
            let mut changes = Fields::new().with(CSAT_RATING, value).with(CSAT_RATED_AT, now);
            if let Some(comment) = comment {
                changes.set(CSAT_COMMENT, comment);
            }
            Ok(Some(changes))
        })?;
    }
    let payload = json!({
        "survey_response_id": record.id,
        "ticket_id": ticket_id,
        "contact_id": record.id(survey::CONTACT),
        kind.answer_name(): value,
        "category": kind.category(value),
        "comment": comment,
    });
    events::emit(&format!("helpdesk.{}_received", kind.as_str()), &payload.to_string())?;
    Ok(Answered::Recorded { survey: record.id, ticket: ticket_id, value })
}

/// `{"and": [...]}` of survey answers of `kind` in a period of answer times.
fn answered_filter(kind: Kind, from: Option<i64>, to: Option<i64>, extra: &[serde_json::Value]) -> serde_json::Value {
    let mut period = serde_json::Map::new();
    period.insert("isNull".into(), json!(false));
    if let Some(from) = from {
        period.insert("gte".into(), json!(from));
    }
    if let Some(to) = to {
        period.insert("lte".into(), json!(to));
    }
    let mut all = vec![json!({survey::KIND: {"eq": kind.as_str()}}), json!({survey::RESPONDED_AT: period})];
    all.extend(extra.iter().cloned());
    json!({"and": all})
}

fn check_period(from: Option<i64>, to: Option<i64>) -> Result<()> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => Err(Error::msg("from: is after to")),
        _ => Ok(()),
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// NPS over answers given in `[from, to]`: promoters (9–10) minus
/// detractors (0–6) in percent of all answers; no score without answers.
pub fn nps_score(from: Option<i64>, to: Option<i64>) -> Result<Fields> {
    check_period(from, to)?;
    let mut counts = [0u64; 3];
    for (slot, category) in ["promoter", "passive", "detractor"].into_iter().enumerate() {
        let filter = answered_filter(Kind::Nps, from, to, &[json!({survey::CATEGORY: {"eq": category}})]);
        counts[slot] = records::count(SURVEY, &filter.to_string())?;
    }
    let [promoters, passives, detractors] = counts;
    let responses = promoters + passives + detractors;
    let score = (responses > 0).then(|| round1((promoters as f64 - detractors as f64) * 100.0 / responses as f64));
    Ok(Fields::new()
        .with("score", score)
        .with("responses", responses as i64)
        .with("promoters", promoters as i64)
        .with("passives", passives as i64)
        .with("detractors", detractors as i64))
}

/// CSAT over answers given in `[from, to]` (of one team's tickets when
/// given): the share of 4 and 5 ratings in percent, and the average.
pub fn csat_score(from: Option<i64>, to: Option<i64>, team: Option<&str>) -> Result<Fields> {
    check_period(from, to)?;
    let mut per_rating = [0u64; 5];
    for (slot, count) in per_rating.iter_mut().enumerate() {
        let mut extra = vec![json!({survey::RATING: {"eq": slot as i64 + 1}})];
        if let Some(team) = team {
            extra.push(json!({survey::TEAM: {"eq": team}}));
        }
        *count = records::count(SURVEY, &answered_filter(Kind::Csat, from, to, &extra).to_string())?;
    }
    let responses: u64 = per_rating.iter().sum();
    let satisfied = per_rating[3] + per_rating[4];
    let dissatisfied = per_rating[0] + per_rating[1];
    let total: u64 = per_rating.iter().enumerate().map(|(slot, count)| (slot as u64 + 1) * count).sum();
    let score = (responses > 0).then(|| round1(satisfied as f64 * 100.0 / responses as f64));
    let average = (responses > 0).then(|| (total as f64 / responses as f64 * 100.0).round() / 100.0);
    Ok(Fields::new()
        .with("score", score)
        .with("average_rating", average)
        .with("responses", responses as i64)
        .with("satisfied", satisfied as i64)
        .with("dissatisfied", dissatisfied as i64))
}
