//! The send log and the sending of one message.
//!
//! Every message has a `campaign_send` record with a unique key (one per
//! contact and campaign, or per step and enrolment). Sending is:
//!
//! 1. reserve: create the record as `pending` (a second reservation of
//!    the same key is refused by the kernel's unique index);
//! 2. hand the message, whose links carry the record's id, to the outbound
//!    channel;
//! 3. record the outbound message's id, `queued` and `sent_at`.
//!
//! Timers and after-commit hooks run at least once, so a batch may run
//! again. A key that is already `queued` (or further) is skipped, so
//! nobody gets a message twice. A record left `pending` by a call that
//! ended between steps 1 and 3 is resolved on the next run: if the
//! outbound channel has a message to the same address with the same
//! subject created since the reservation, it is adopted; otherwise the
//! message is sent now.

use std::collections::{BTreeMap, BTreeSet};

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::compose;
use crate::config::Config;
use crate::merge::with_system_fields;
use crate::objects::{BOUNCED, PENDING, QUEUED, SEND};
use crate::templates::Template;
use crate::timeline::{self, Entry};
use crate::tracking::Links;

/// `in` lists are cut to this size, so the kernel answers them from an
/// index.
pub const CHUNK: usize = 64;

/// What a message belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub campaign: Option<String>,
    pub sequence: Option<String>,
    pub step: Option<String>,
    pub enrollment: Option<String>,
}

impl Target {
    pub fn campaign(id: &str) -> Target {
        Target { campaign: Some(id.to_owned()), ..Target::default() }
    }

    pub fn step(sequence: &str, step: &str, enrollment: &str) -> Target {
        Target {
            sequence: Some(sequence.to_owned()),
            step: Some(step.to_owned()),
            enrollment: Some(enrollment.to_owned()),
            campaign: None,
        }
    }

    /// The send record's unique key for `contact_id`.
    pub fn key(&self, contact_id: &str) -> String {
        match (&self.campaign, &self.step, &self.enrollment) {
            (Some(campaign), _, _) => format!("c:{campaign}:{contact_id}"),
            (None, Some(step), Some(enrollment)) => format!("s:{step}:{enrollment}"),
            _ => format!("x:{contact_id}"),
        }
    }

    fn fields(&self) -> Fields {
        let id = |id: &Option<String>| id.clone().map(Value::Id);
        Fields::new()
            .with("campaign_id", id(&self.campaign))
            .with("sequence_id", id(&self.sequence))
            .with("sequence_step_id", id(&self.step))
            .with("enrollment_id", id(&self.enrollment))
    }
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to the outbound channel now (or an interrupted hand-over was
    /// found and recorded).
    Sent { send: String },
    /// The key was sent before.
    AlreadySent,
}

/// Send records by key, for the keys given.
pub fn by_keys(keys: &[String]) -> Result<BTreeMap<String, Record>> {
    let mut found = BTreeMap::new();
    for chunk in keys.chunks(CHUNK) {
        let filter = json!({"key": {"in": chunk}}).to_string();
        for record in records::query(SEND, &filter, &[], CHUNK as u32, None)?.records {
            if let Some(key) = record.text("key") {
                found.insert(key.to_owned(), record.clone());
            }
        }
    }
    Ok(found)
}

/// The contacts among `contact_ids` with a bounced message.
pub fn bounced(contact_ids: &[String]) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    for chunk in contact_ids.chunks(CHUNK) {
        let filter = json!({"contact_id": {"in": chunk}, "status": {"eq": BOUNCED}}).to_string();
        let mut after = None;
        loop {
            let page = records::query(SEND, &filter, &[], 500, after.as_deref())?;
            found.extend(page.records.iter().filter_map(|record| record.id("contact_id").map(str::to_owned)));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(found)
}

/// Sends messages for one call, reading each company once.
pub struct Sender<'a> {
    pub config: &'a Config,
    pub links: &'a Links,
    /// The plugin id: outbound messages carry it as their `source`.
    pub plugin: &'a str,
    companies: BTreeMap<String, Option<Fields>>,
}

impl<'a> Sender<'a> {
    pub fn new(config: &'a Config, links: &'a Links, plugin: &'a str) -> Sender<'a> {
        Sender { config, links, plugin, companies: BTreeMap::new() }
    }

    fn company(&mut self, contact: &Record) -> Result<Option<Fields>> {
        let Some(id) = contact.id("company_id") else { return Ok(None) };
        if !self.companies.contains_key(id) {
            let company = records::get("company", id)?.filter(|record| !record.deleted).map(|record| with_system_fields(&record));
            self.companies.insert(id.to_owned(), company);
        }
        Ok(self.companies.get(id).cloned().flatten())
    }

    /// Sends `template` to `contact` for `target`, unless its key was sent
    /// already. `existing` is the send record of the key, if the caller
    /// looked it up. The contact must have an email address.
    pub fn send(&mut self, template: &Template, contact: &Record, target: &Target, existing: Option<Record>) -> Result<Outcome> {
        let email = contact.text("email").ok_or_else(|| Error::msg(format!("contact {} has no email address", contact.id)))?;
        let fields = with_system_fields(contact);
        let company = if template.needs_company() { self.company(contact)? } else { None };
        let subject = compose::subject(template, &fields, company.as_ref());
        let key = target.key(&contact.id);
        let (send, fresh) = match existing {
            Some(send) => (send, false),
            None => {
                let reservation = target
                    .fields()
                    .with("key", key.as_str())
                    .with("contact_id", Value::Id(contact.id.clone()))
                    .with("email", email)
                    .with("subject", subject.as_str())
                    .with("status", PENDING);
                match records::create(SEND, reservation) {
                    Ok(send) => (send, true),
                    // Reserved meanwhile by another call: judge that record.
                    Err(error) if error.is(ErrorCode::Conflict) => {
                        (by_keys(std::slice::from_ref(&key))?.remove(&key).ok_or(error)?, false)
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        if send.text("status") != Some(PENDING) {
            return Ok(Outcome::AlreadySent);
        }
        if !fresh {
            // A reservation of an earlier call that did not finish: look
            // for its message before sending.
            if let Some(message) = self.handed_over(&send)? {
                self.mark_queued(&send, &message.id, message.created_at)?;
                return Ok(Outcome::Sent { send: send.id });
            }
        }
        let (html, text) = compose::body(template, &fields, company.as_ref(), Some((self.links, &send.id)))?;
        let subject = send.text("subject").unwrap_or(&subject).to_owned();
        let message_id = outbound::send(&Message::email(email, &subject, text).with_html(html))?;
        self.mark_queued(&send, &message_id, clock::now())?;
        if self.config.log_sent {
            timeline::record(Entry {
                contact_id: &contact.id,
                kind: "email",
                direction: Some("outbound"),
                subject: format!("Sent email: {subject}"),
                body: None,
                event: "email_sent",
                payload: timeline::send_payload(&send, json!({})),
            })?;
        }
        Ok(Outcome::Sent { send: send.id })
    }

    /// The outbound message of an interrupted hand-over, if it was made.
    fn handed_over(&self, send: &Record) -> Result<Option<Record>> {
        let (Some(email), Some(subject)) = (send.text("email"), send.text("subject")) else { return Ok(None) };
        let filter = json!({
            "recipient": {"eq": email},
            "source": {"eq": self.plugin},
            "subject": {"eq": subject},
            "created_at": {"gte": send.created_at},
        });
        records::first("outbound_message", &filter.to_string())
    }

    fn mark_queued(&self, send: &Record, message_id: &str, at: i64) -> Result<()> {
        let update = Fields::new().with("message_id", message_id).with("status", QUEUED).with("sent_at", at);
        records::update(SEND, &send.id, update, None)?;
        Ok(())
    }
}
