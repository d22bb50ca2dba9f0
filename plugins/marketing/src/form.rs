//! The web-to-lead form endpoint, `POST /lead`: a form-urlencoded or JSON
//! body creates a contact, or updates the one with the same email address.
//!
//! Accepted: `email` (required), the contact fields listed in the
//! configuration's `form.fields`, and `email_opt_in` (consent; when
//! `form.consent` is on). Other fields are ignored and listed in the answer.
//! Empty values are skipped, so a form never clears what a contact has;
//! consent is only ever given here, never withdrawn.

use crm_plugin_sdk::http::decode_form;
use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{Map, Value as Json, json};

use crate::config::{Config, Form};
use crate::timeline::{self, Entry};

/// Longest value a submission may carry per field.
pub const MAX_VALUE_CHARS: usize = 1000;
/// The consent field of a submission.
pub const CONSENT: &str = "email_opt_in";

/// A checked submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub email: String,
    /// Accepted contact fields, values as given.
    pub fields: Fields,
    pub consent: bool,
    /// Names of fields that were not accepted.
    pub ignored: Vec<String>,
}

/// A refused submission: status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub u16, pub String);

fn bad(message: impl Into<String>) -> Refusal {
    Refusal(400, message.into())
}

fn truthy(value: &Json) -> bool {
    match value {
        Json::Bool(flag) => *flag,
        Json::Number(number) => number.as_i64() == Some(1),
        Json::String(text) => matches!(text.trim().to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1"),
        _ => false,
    }
}

/// The body's fields as JSON values, in order.
fn pairs(request: &HttpRequest) -> Result<Vec<(String, Json)>, Refusal> {
    let text = std::str::from_utf8(&request.body).map_err(|_| bad("the body is not UTF-8"))?;
    match request.content_type().as_deref() {
        Some("application/json") => match crm_plugin_sdk::serde_json::from_str::<Json>(text) {
            Ok(Json::Object(object)) => Ok(object.into_iter().collect()),
            Ok(_) => Err(bad("the JSON body must be an object of fields")),
            Err(error) => Err(bad(format!("the body is not JSON: {error}"))),
        },
        Some("application/x-www-form-urlencoded") | None => {
            Ok(decode_form(text).into_iter().map(|(key, value)| (key, Json::String(value))).collect())
        }
        Some(other) => Err(Refusal(
            415,
            format!("content type {other} is not accepted; send application/x-www-form-urlencoded or application/json"),
        )),
    }
}

/// A field value of a submission; `None` for an empty one.
fn value(name: &str, json: &Json) -> Result<Option<Value>, Refusal> {
    let value = match json {
        Json::Null => return Ok(None),
        Json::String(text) if text.trim().is_empty() => return Ok(None),
        Json::String(text) => Value::Text(text.trim().to_owned()),
        Json::Bool(flag) => Value::Bool(*flag),
        Json::Number(_) => Value::from_json(json),
        Json::Array(items) => {
            let texts: Option<Vec<String>> = items.iter().map(|item| item.as_str().map(str::to_owned)).collect();
            Value::Texts(texts.ok_or_else(|| bad(format!("{name}: a list may only hold texts")))?)
        }
        Json::Object(_) => return Err(bad(format!("{name}: must be a text, number, boolean or list of texts"))),
    };
    let length = match &value {
        Value::Text(text) => text.chars().count(),
        Value::Texts(texts) => texts.iter().map(|text| text.chars().count()).sum(),
        _ => 0,
    };
    if length > MAX_VALUE_CHARS {
        return Err(bad(format!("{name}: longer than {MAX_VALUE_CHARS} characters")));
    }
    Ok(Some(value))
}

pub use crm_plugin_sdk::text::is_email;

/// Checks a request body against the form's configuration.
pub fn parse(form: &Form, request: &HttpRequest) -> Result<Submission, Refusal> {
    let mut email = None;
    let mut consent = false;
    let mut fields = Fields::new();
    let mut ignored = Vec::new();
    for (name, json) in pairs(request)? {
        match name.as_str() {
            "email" => email = json.as_str().map(|text| text.trim().to_lowercase()),
            CONSENT if form.consent => consent = truthy(&json),
            name if form.fields.iter().any(|field| field == name) => {
                if let Some(value) = value(name, &json)? {
                    fields.set(name, value);
                }
            }
            _ => ignored.push(name),
        }
    }
    let email = email.filter(|email| !email.is_empty()).ok_or_else(|| bad("email: is required"))?;
    if !is_email(&email) {
        return Err(bad(format!("email: '{}' is not an email address", timeline::truncate(&email, 80))));
    }
    ignored.sort();
    ignored.dedup();
    Ok(Submission { email, fields, consent, ignored })
}

/// Stores a submission; answers the contact id and whether it was created.
pub fn store(config: &Config, submission: &Submission) -> Result<(String, bool)> {
    let mut fields = submission.fields.clone();
    let by_email = json!({"email": {"eq": submission.email}}).to_string();
    for _ in 0..2 {
        match records::first("contact", &by_email)? {
            Some(existing) => {
                if submission.consent && existing.bool(CONSENT) != Some(true) {
                    fields.set(CONSENT, true);
                    fields.set("email_opt_in_source", config.form.source.as_str());
                }
                if !fields.is_empty() {
                    records::update("contact", &existing.id, fields.clone(), None)?;
                }
                return Ok((existing.id, false));
            }
            None => {
                let mut new = fields.clone().with("email", submission.email.as_str());
                if !new.contains("first_name") {
                    // The contact object requires a first name.
                    let local = submission.email.split('@').next().unwrap_or_default();
                    new.set("first_name", local);
                }
                if !new.contains("source") {
                    new.set("source", config.form.source.as_str());
                }
                if let Some(stage) = &config.form.lifecycle_stage
                    && !new.contains("lifecycle_stage")
                {
                    new.set("lifecycle_stage", stage.as_str());
                }
                if submission.consent {
                    new.set(CONSENT, true);
                    new.set("email_opt_in_source", config.form.source.as_str());
                }
                match records::create("contact", new) {
                    Ok(contact) => return Ok((contact.id, true)),
                    // Created meanwhile by another submission: update it.
                    Err(error) if error.is(ErrorCode::Conflict) => continue,
                    Err(error) => return Err(error),
                }
            }
        }
    }
    Err(Error::host(ErrorCode::Conflict, format!("the contact {} changed meanwhile; submit again", submission.email)))
}

/// `POST /lead`.
pub fn submit(config: &Config, request: &HttpRequest) -> HttpResponse {
    let submission = match parse(&config.form, request) {
        Ok(submission) => submission,
        Err(Refusal(status, message)) => return HttpResponse::json(status, &json!({ "error": message })),
    };
    let form = request.query_param("form").map(|form| timeline::truncate(form.trim(), 100)).filter(|form| !form.is_empty());
    let stored = store(config, &submission).and_then(|(id, created)| {
        let mut payload = Map::new();
        payload.insert("contact_id".into(), Json::String(id.clone()));
        payload.insert("form".into(), form.clone().map_or(Json::Null, Json::String));
        payload.insert("created".into(), Json::Bool(created));
        timeline::record(Entry {
            contact_id: &id,
            kind: "note",
            direction: None,
            subject: format!("Submitted web form {}", form.as_deref().unwrap_or("")).trim_end().to_owned(),
            body: None,
            event: "form_submitted",
            payload: Json::Object(payload),
        })?;
        Ok((id, created))
    });
    match stored {
        Ok((id, created)) => {
            if request.content_type().as_deref() != Some("application/json")
                && let Some(url) = &config.form.redirect_url
            {
                return HttpResponse::new(303).with_header("location", url.as_str());
            }
            let status = if created { 201 } else { 200 };
            HttpResponse::json(status, &json!({"id": id, "created": created, "ignored": submission.ignored}))
        }
        Err(error) => {
            let status = match error.code() {
                Some(ErrorCode::Invalid) => 400,
                Some(ErrorCode::Conflict) => 409,
                Some(ErrorCode::Limit) => 429,
                _ => 503,
            };
            if status == 503 {
                warn!("web form submission for {} failed: {error}", submission.email);
            }
            HttpResponse::json(status, &json!({ "error": error.message() }))
        }
    }
}
