//! What the plugin adds to a contact's history: an activity on the
//! timeline (its `contact_id` set) and a custom event whose JSON payload
//! names the contact (`contact_id`) and the campaign or sequence, so lead
//! scoring and other plugins can react.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{Map, Value as Json, json};

/// One entry: an activity and an event.
pub struct Entry<'a> {
    pub contact_id: &'a str,
    /// Activity kind: `email` for message engagement, `note` otherwise.
    pub kind: &'a str,
    /// `outbound` for engagement with a message sent; never `inbound`,
    /// which means a reply.
    pub direction: Option<&'a str>,
    pub subject: String,
    pub body: Option<String>,
    /// Custom event name.
    pub event: &'a str,
    pub payload: Json,
}

/// The event payload of something that happened to a send record:
/// `contact_id`, `send_id`, `campaign_id`, `sequence_id`, `sequence_step_id`
/// (null when not set), plus `extra`.
pub fn send_payload(send: &Record, extra: Json) -> Json {
    let id = |field: &str| send.id(field).map_or(Json::Null, |id| Json::String(id.to_owned()));
    let mut payload = Map::new();
    payload.insert("contact_id".into(), id("contact_id"));
    payload.insert("send_id".into(), Json::String(send.id.clone()));
    payload.insert("campaign_id".into(), id("campaign_id"));
    payload.insert("sequence_id".into(), id("sequence_id"));
    payload.insert("sequence_step_id".into(), id("sequence_step_id"));
    if let Json::Object(extra) = extra {
        payload.extend(extra);
    }
    Json::Object(payload)
}

/// Writes the activity and emits the event. A contact deleted meanwhile
/// gets neither (the kernel refuses a reference to a deleted record).
pub fn record(entry: Entry<'_>) -> Result<()> {
    let now = clock::now();
    let activity = Fields::new()
        .with("kind", entry.kind)
        .with("subject", truncate(&entry.subject, 250))
        .with("body", entry.body)
        .with("occurred_at", now)
        .with("direction", entry.direction)
        .with("contact_id", Value::Id(entry.contact_id.to_owned()));
    match records::create("activity", activity) {
        Ok(_) => {}
        Err(error) if error.is_not_found() => {
            debug!("no timeline entry for contact {}: {error}", entry.contact_id);
            return Ok(());
        }
        Err(error) => return Err(error),
    }
    events::emit(entry.event, &entry.payload.to_string())
}

/// A short text for a subject line, cut at a character boundary.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `json!({})` for payloads without extras.
pub fn no_extra() -> Json {
    json!({})
}
