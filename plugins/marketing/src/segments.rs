//! Segments: saved filters over contacts in the kernel's filter language.
//! The host runs the filter (`records.query`/`count`), so a segment can
//! use any contact field the plugin may read, custom fields and scores
//! included, and counts are live.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{self, Value as Json, json};

use crate::objects::SEGMENT;

/// A segment as sending and enrolment use it.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: String,
    pub filter: Json,
    pub auto_enroll_sequence_id: Option<String>,
}

/// Parses a stored filter: a JSON object.
pub fn parse_filter(text: &str) -> std::result::Result<Json, String> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    match serde_json::from_str::<Json>(text) {
        Ok(filter @ Json::Object(_)) => Ok(filter),
        Ok(_) => Err("is not a JSON object".into()),
        Err(error) => Err(format!("is not JSON: {error}")),
    }
}

/// `filter` combined with more conditions (an empty filter adds nothing).
pub fn all_of(filter: &Json, more: Vec<Json>) -> Json {
    let mut parts = Vec::new();
    if filter.as_object().is_some_and(|object| !object.is_empty()) {
        parts.push(filter.clone());
    }
    parts.extend(more);
    json!({ "and": parts })
}

/// The members a message may go to: with an email address and email
/// consent (`email_opt_in` true; an unsubscribe sets it to false).
pub fn eligible(filter: &Json) -> Json {
    all_of(filter, vec![json!({"email": {"isNull": false}}), json!({"email_opt_in": {"eq": true}})])
}

/// The filter narrowed to one contact.
pub fn only(filter: &Json, contact_id: &str) -> Json {
    all_of(filter, vec![json!({"id": {"eq": contact_id}})])
}

impl Segment {
    pub fn from_record(record: &Record) -> std::result::Result<Segment, String> {
        let filter = parse_filter(record.text("filter").unwrap_or_default()).map_err(|error| format!("filter {error}"))?;
        Ok(Segment {
            id: record.id.clone(),
            filter,
            auto_enroll_sequence_id: record.id("auto_enroll_sequence_id").map(str::to_owned),
        })
    }

    /// The live segment `id`; `what` names the input or field that
    /// referred to it in errors.
    pub fn load(what: &str, id: &str) -> Result<Segment> {
        let record = records::get(SEGMENT, id)?
            .filter(|record| !record.deleted)
            .ok_or_else(|| Error::msg(format!("{what}: there is no segment {id}")))?;
        Segment::from_record(&record).map_err(|error| Error::msg(format!("{what}: segment {id}: {error}")))
    }

    /// A host error about the filter (it names a field that no longer
    /// exists or may not be read) as the plugin's own error naming the
    /// segment; other errors as they are.
    pub fn refused(&self, error: Error) -> Error {
        if error.is(ErrorCode::Invalid) || error.is(ErrorCode::Forbidden) {
            Error::msg(format!("segment_id: segment {}: filter: {}", self.id, error.message()))
        } else {
            error
        }
    }

    pub fn count(&self) -> Result<u64> {
        records::count("contact", &self.filter.to_string()).map_err(|error| self.refused(error))
    }

    pub fn count_eligible(&self) -> Result<u64> {
        records::count("contact", &eligible(&self.filter).to_string()).map_err(|error| self.refused(error))
    }

    /// Whether the contact is a member now.
    pub fn contains(&self, contact_id: &str) -> Result<bool> {
        Ok(records::count("contact", &only(&self.filter, contact_id).to_string())? > 0)
    }

    /// Counts the members and stores the count on the segment.
    pub fn refresh(&self) -> Result<u64> {
        let count = self.count()?;
        let update = Fields::new().with("member_count", count as i64).with("counted_at", clock::now());
        records::update(SEGMENT, &self.id, update, None)?;
        Ok(count)
    }
}

/// Segments flagged for automatic enrolment.
pub fn auto_enrolling() -> Result<Vec<Segment>> {
    let filter = json!({"auto_enroll_sequence_id": {"isNull": false}}).to_string();
    let mut segments = Vec::new();
    let mut after = None;
    loop {
        let page = records::query(SEGMENT, &filter, &[], 500, after.as_deref())?;
        for record in &page.records {
            match Segment::from_record(record) {
                Ok(segment) => segments.push(segment),
                Err(error) => warn!("segment {} is skipped for enrolment: {error}", record.id),
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(segments),
        }
    }
}

/// The before-write decision for a segment being created or updated: a
/// filter that is not a JSON object, or that the host refuses (an unknown
/// field or operator), is rejected with the host's reason; a new or changed
/// filter gets its member count.
pub fn judge(change: &Change) -> Result<Decision> {
    let after = change.after();
    let filter = match parse_filter(after.text("filter").unwrap_or_default()) {
        Ok(filter) => filter,
        Err(error) => return Ok(Decision::reject_field("filter", error)),
    };
    if change.op() == Op::Update && !change.changed("filter") {
        return Ok(Decision::accept());
    }
    match records::count("contact", &filter.to_string()) {
        Ok(count) => Ok(Decision::patch([("member_count", Value::Int(count as i64)), ("counted_at", Value::Int(clock::now()))])),
        Err(error) if error.is(ErrorCode::Invalid) || error.is(ErrorCode::Forbidden) => {
            Ok(Decision::reject_field("filter", error.message().to_owned()))
        }
        Err(error) => Err(error),
    }
}
