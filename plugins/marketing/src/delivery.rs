//! Following delivery: the kernel updates an `outbound_message` record when
//! its transport delivered, bounced or gave up on it; an after-commit hook
//! on those updates finds this plugin's messages (`source`) and applies
//! the report to their send records by `message_id`.
//!
//! An event carries the record as it is at delivery, so a message that
//! moved on twice before the hook ran is judged by its latest status;
//! repeated deliveries change nothing (see [`engagement::report`]).

use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::counters::Deltas;
use crate::engagement::{self, Report};
use crate::objects::SEND;
use crate::sends::CHUNK;

/// A final status of one of this plugin's messages.
struct Status {
    report: Report,
    at: i64,
    error: Option<String>,
}

/// Handles `outbound_message` update events.
pub fn on_messages(plugin: &str, events: &[&Event]) -> Result<()> {
    let mut reports: BTreeMap<String, Status> = BTreeMap::new();
    for event in events {
        if event.fields.text("source") != Some(plugin) {
            continue;
        }
        let Some(report) = event.fields.text("status").and_then(Report::from_status) else { continue };
        let at = event.fields.int("sent_at").unwrap_or(event.at);
        let error = event.fields.text("error").map(str::to_owned);
        reports.insert(event.id.clone(), Status { report, at, error });
    }
    if reports.is_empty() {
        return Ok(());
    }
    let ids: Vec<&String> = reports.keys().collect();
    let mut deltas = Deltas::default();
    for chunk in ids.chunks(CHUNK) {
        let filter = json!({"message_id": {"in": chunk}}).to_string();
        for send in records::query(SEND, &filter, &[], CHUNK as u32, None)?.records {
            let Some(status) = send.text("message_id").and_then(|id| reports.get(id)) else { continue };
            engagement::report(&send.id, &status.report, status.at, status.error.as_deref(), &mut deltas)?;
        }
    }
    deltas.apply()
}
