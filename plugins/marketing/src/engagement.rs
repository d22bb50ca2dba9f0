//! What happens to a message after it is sent: opens, clicks and
//! unsubscribes (from the tracking routes) and delivery, bounce and
//! failure (from the outbound channel), each recorded on the send record,
//! counted on its campaign or step, and — for opens, clicks, unsubscribes
//! and bounces — added to the contact's timeline.
//!
//! Each change of a send record is written with the version it was read
//! at and retried on a conflict, so two requests for the same message
//! (a pixel loaded twice at once, a delivery report delivered twice) are
//! judged one after the other: only the first open, click, unsubscribe or
//! bounce of a message counts and reaches the timeline.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::counters::Deltas;
use crate::objects::{BOUNCED, DELIVERED, FAILED, PENDING, QUEUED, SEND};
use crate::timeline::{self, Entry, send_payload};

const ATTEMPTS: usize = 8;

/// Reads the send record, asks `change` what to set (`None`: nothing to
/// do) and writes it with the version read, starting over on a conflict.
/// Returns the record before and after, or `None` when there is no such
/// live record or nothing to do.
pub fn modify(send_id: &str, mut change: impl FnMut(&Record) -> Option<Fields>) -> Result<Option<(Record, Record)>> {
    for _ in 0..ATTEMPTS {
        let Some(before) = records::get(SEND, send_id)?.filter(|record| !record.deleted) else { return Ok(None) };
        let Some(update) = change(&before) else { return Ok(None) };
        match records::update(SEND, send_id, update, Some(before.version)) {
            Ok(after) => return Ok(Some((before, after))),
            Err(error) if error.is(ErrorCode::Conflict) => continue,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        }
    }
    Err(Error::msg(format!("campaign_send {send_id} kept changing; try again")))
}

fn subject_of(send: &Record) -> &str {
    send.text("subject").unwrap_or("(no subject)")
}

fn contact_of(send: &Record) -> Result<&str> {
    send.id("contact_id").ok_or_else(|| Error::msg(format!("campaign_send {} has no contact_id", send.id)))
}

/// An open (the pixel was loaded). Returns false if there is no such send.
pub fn open(send_id: &str) -> Result<bool> {
    let now = clock::now();
    let Some((before, after)) = modify(send_id, |send| {
        let mut update = Fields::new().with("last_opened_at", now).with("open_count", send.int("open_count").unwrap_or(0) + 1);
        if send.int("opened_at").is_none() {
            update.set("opened_at", now);
        }
        Some(update)
    })?
    else {
        return Ok(false);
    };
    if before.int("opened_at").is_none() {
        let mut deltas = Deltas::default();
        deltas.add(&after, "opened_count", 1);
        deltas.apply()?;
        timeline::record(Entry {
            contact_id: contact_of(&after)?,
            kind: "email",
            direction: Some("outbound"),
            subject: format!("Opened email: {}", subject_of(&after)),
            body: None,
            event: "email_opened",
            payload: send_payload(&after, json!({})),
        })?;
    }
    Ok(true)
}

/// A click on `url`. A click also marks the message opened (images are
/// often blocked). Returns false if there is no such send.
pub fn click(send_id: &str, url: &str) -> Result<bool> {
    let now = clock::now();
    let Some((before, after)) = modify(send_id, |send| {
        let mut update = Fields::new().with("last_clicked_at", now).with("click_count", send.int("click_count").unwrap_or(0) + 1);
        if send.int("clicked_at").is_none() {
            update.set("clicked_at", now);
        }
        if send.int("opened_at").is_none() {
            update.set("opened_at", now);
            update.set("last_opened_at", now);
            update.set("open_count", send.int("open_count").unwrap_or(0).max(1));
        }
        Some(update)
    })?
    else {
        return Ok(false);
    };
    let mut deltas = Deltas::default();
    if before.int("opened_at").is_none() {
        deltas.add(&after, "opened_count", 1);
    }
    if before.int("clicked_at").is_none() {
        deltas.add(&after, "clicked_count", 1);
    }
    deltas.apply()?;
    if before.int("clicked_at").is_none() {
        timeline::record(Entry {
            contact_id: contact_of(&after)?,
            kind: "email",
            direction: Some("outbound"),
            subject: format!("Clicked {url} in email: {}", subject_of(&after)),
            body: None,
            event: "email_clicked",
            payload: send_payload(&after, json!({ "url": url })),
        })?;
    }
    Ok(true)
}

/// Marks the message as the one its recipient unsubscribed through.
/// Returns the send record, or `None` if there is none.
pub fn unsubscribed(send_id: &str) -> Result<Option<Record>> {
    let now = clock::now();
    match modify(send_id, |send| send.int("unsubscribed_at").is_none().then(|| Fields::new().with("unsubscribed_at", now)))? {
        Some((_, after)) => {
            let mut deltas = Deltas::default();
            deltas.add(&after, "unsubscribed_count", 1);
            deltas.apply()?;
            timeline::record(Entry {
                contact_id: contact_of(&after)?,
                kind: "note",
                direction: None,
                subject: format!("Unsubscribed from marketing email through: {}", subject_of(&after)),
                body: None,
                event: "email_unsubscribed",
                payload: send_payload(&after, json!({})),
            })?;
            Ok(Some(after))
        }
        None => Ok(records::get(SEND, send_id)?.filter(|record| !record.deleted)),
    }
}

/// What the outbound channel reported for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Delivered,
    Bounced,
    Failed,
}

impl Report {
    /// The report an `outbound_message` status stands for; `queued` and
    /// `sent` are not final.
    pub fn from_status(status: &str) -> Option<Report> {
        match status {
            DELIVERED => Some(Report::Delivered),
            BOUNCED => Some(Report::Bounced),
            FAILED => Some(Report::Failed),
            _ => None,
        }
    }
}

/// Applies a delivery report to a send record and gathers the counter
/// changes in `deltas`. A report repeated, or older than one already
/// applied, changes nothing; a bounce after a delivery (a late bounce)
/// counts as a bounce.
pub fn report(send_id: &str, report: &Report, at: i64, error: Option<&str>, deltas: &mut Deltas) -> Result<()> {
    let applied = modify(send_id, |send| {
        let status = send.text("status").unwrap_or(PENDING);
        match report {
            Report::Delivered if matches!(status, PENDING | QUEUED) => {
                Some(Fields::new().with("status", DELIVERED).with("delivered_at", at))
            }
            Report::Bounced if send.int("bounced_at").is_none() => {
                Some(Fields::new().with("status", BOUNCED).with("bounced_at", at).with("error", error.map(str::to_owned)))
            }
            Report::Failed if matches!(status, PENDING | QUEUED) => {
                Some(Fields::new().with("status", FAILED).with("error", error.map(str::to_owned)))
            }
            _ => None,
        }
    })?;
    let Some((_, after)) = applied else { return Ok(()) };
    match report {
        Report::Delivered => deltas.add(&after, "delivered_count", 1),
        Report::Failed => deltas.add(&after, "failed_count", 1),
        Report::Bounced => {
            deltas.add(&after, "bounced_count", 1);
            timeline::record(Entry {
                contact_id: contact_of(&after)?,
                kind: "note",
                direction: None,
                subject: format!("Email bounced: {}", subject_of(&after)),
                body: error.map(str::to_owned),
                event: "email_bounced",
                payload: send_payload(&after, json!({ "error": error })),
            })?;
        }
    }
    Ok(())
}
