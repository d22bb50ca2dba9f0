//! Merge fields in template texts: `{{contact.first_name}}`,
//! `{{contact.company.name}}`, `{{unsubscribe_url}}`, each with an optional
//! default after a bar: `{{contact.first_name|there}}`. Spaces inside the
//! braces are ignored.
//!
//! A template is parsed once into [`Parsed`] parts, checked against the
//! fields that exist ([`Catalog`]) when it is saved and again before it is
//! sent, so a misspelt or removed field is reported instead of rendering
//! blank, and rendered per recipient without parsing again.

use std::collections::{BTreeMap, BTreeSet};

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::config::is_field_name;

/// System fields a merge field may name, besides the standard objects'
/// stored fields (`crm_plugin_sdk::standard`), which are known without
/// asking the host.
const SYSTEM_MERGE_FIELDS: [&str; 3] = ["id", "created_at", "updated_at"];

/// What a merge field refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    Contact(String),
    Company(String),
    UnsubscribeUrl,
}

impl Path {
    /// The name as written in a template, without braces.
    pub fn name(&self) -> String {
        match self {
            Path::Contact(field) => format!("contact.{field}"),
            Path::Company(field) => format!("contact.company.{field}"),
            Path::UnsubscribeUrl => "unsubscribe_url".into(),
        }
    }

    /// The object and field to look for in the tenant's schema.
    fn stored(&self) -> Option<(&'static str, &str)> {
        match self {
            Path::Contact(field) => Some(("contact", field)),
            Path::Company(field) => Some(("company", field)),
            Path::UnsubscribeUrl => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Merge { path: Path, default: Option<String> },
}

/// A template text split into literal text and merge fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed(pub Vec<Part>);

/// Parses `source`; the error says what is wrong and where.
pub fn parse(source: &str) -> std::result::Result<Parsed, String> {
    let mut parts = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            let snippet: String = rest[start..].chars().take(30).collect();
            return Err(format!("merge field '{snippet}' is not closed with '}}}}'"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once('|') {
            Some((name, default)) => (name.trim(), Some(default.trim().to_owned())),
            None => (inner.trim(), None),
        };
        parts.push(Part::Merge { path: path(name, inner)?, default });
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(Parsed(parts))
}

fn path(name: &str, inner: &str) -> std::result::Result<Path, String> {
    let segments: Vec<&str> = name.split('.').collect();
    match segments.as_slice() {
        ["unsubscribe_url"] => Ok(Path::UnsubscribeUrl),
        ["contact", "company", field] if is_field_name(field) => Ok(Path::Company((*field).to_owned())),
        ["contact", field] if is_field_name(field) => Ok(Path::Contact((*field).to_owned())),
        _ => Err(format!(
            "unknown merge field {{{{{}}}}}: use contact.<field>, contact.company.<field> or unsubscribe_url",
            inner.trim()
        )),
    }
}

impl Parsed {
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().filter_map(|part| match part {
            Part::Merge { path, .. } => Some(path),
            Part::Text(_) => None,
        })
    }

    pub fn uses(&self, wanted: &Path) -> bool {
        self.paths().any(|path| path == wanted)
    }

    /// Whether any merge field reads the contact's company.
    pub fn needs_company(&self) -> bool {
        self.paths().any(|path| matches!(path, Path::Company(_)))
    }

    /// The text with every merge field filled in from `values`; values are
    /// HTML-escaped when `html` is set. A field without a value renders its
    /// default, or nothing.
    pub fn render(&self, values: &Values<'_>, html: bool) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Merge { path, default } => {
                    let value = values.get(path).or_else(|| default.clone()).unwrap_or_default();
                    if html {
                        out.push_str(&crate::html::escape(&value));
                    } else {
                        out.push_str(&value);
                    }
                }
            }
        }
        out
    }
}

/// What merge fields are filled in from for one recipient.
pub struct Values<'a> {
    /// The contact's fields plus `id`, `created_at` and `updated_at`.
    pub contact: &'a Fields,
    pub company: Option<&'a Fields>,
    pub unsubscribe_url: &'a str,
}

impl Values<'_> {
    fn get(&self, path: &Path) -> Option<String> {
        match path {
            Path::Contact(field) => self.contact.get(field).and_then(display),
            Path::Company(field) => self.company.and_then(|company| company.get(field)).and_then(display),
            Path::UnsubscribeUrl => Some(self.unsubscribe_url.to_owned()),
        }
    }
}

/// A record's fields with its system fields added, as merge fields see it.
pub fn with_system_fields(record: &Record) -> Fields {
    record
        .fields
        .clone()
        .with("id", Value::Id(record.id.clone()))
        .with("created_at", record.created_at)
        .with("updated_at", record.updated_at)
}

/// A value as text in a message; `None` when empty.
pub fn display(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::Bool(flag) => flag.to_string(),
        Value::Int(int) => int.to_string(),
        Value::Float(float) if float.fract() == 0.0 && float.abs() < 1e15 => format!("{float:.0}"),
        Value::Float(float) => float.to_string(),
        Value::Text(text) | Value::Id(text) => text.clone(),
        Value::Texts(texts) => texts.join(", "),
    };
    (!text.is_empty()).then_some(text)
}

/// The fields that exist in the tenant's schema, as far as merge fields
/// are concerned. Standard fields are known; others (custom fields, fields
/// other plugins add) are looked up once per call.
#[derive(Default)]
pub struct Catalog {
    probed: BTreeMap<(String, String), bool>,
}

/// A record id that no record has: probes ask for it, so they touch at
/// most one record.
const NO_RECORD: &str = "00000000000000000000000000";

impl Catalog {
    pub fn has(&mut self, object: &'static str, field: &str) -> Result<bool> {
        if SYSTEM_MERGE_FIELDS.contains(&field) || crm_plugin_sdk::standard::fields(object).contains(&field) {
            return Ok(true);
        }
        let key = (object.to_owned(), field.to_owned());
        if let Some(exists) = self.probed.get(&key) {
            return Ok(*exists);
        }
        // The host checks a filter's field names against the schema before
        // running it; pinned to one id, the query itself costs nothing.
        let filter = json!({"id": {"eq": NO_RECORD}, field: {"isNull": true}}).to_string();
        let exists = probe_answer(records::query(object, &filter, &[], 1, None))?;
        self.probed.insert(key, exists);
        Ok(exists)
    }

    /// The merge fields of `parsed` that name no field the plugin can read,
    /// as written (`contact.favourite_color`).
    pub fn unknown(&mut self, parsed: &Parsed) -> Result<Vec<String>> {
        let mut unknown = BTreeSet::new();
        for path in parsed.paths() {
            if let Some((object, field)) = path.stored()
                && !self.has(object, field)?
            {
                unknown.insert(path.name());
            }
        }
        Ok(unknown.into_iter().collect())
    }
}

/// Reads a probe's outcome: a refused filter (`invalid`: no such field;
/// `forbidden`: a field the plugin may not read) means the field cannot be
/// merged; other errors are the host's and propagate.
pub fn probe_answer(result: Result<crm_plugin_sdk::Page>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(error) if error.is(ErrorCode::Invalid) || error.is(ErrorCode::Forbidden) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Parses and checks each named text of a template; the first problem is
/// returned as (field, message). On success, the sorted merge fields used.
pub fn check_texts(texts: &[(&str, &str)], catalog: &mut Catalog) -> Result<std::result::Result<Vec<String>, (String, String)>> {
    let mut used = BTreeSet::new();
    for (field, text) in texts {
        let parsed = match parse(text) {
            Ok(parsed) => parsed,
            Err(message) => return Ok(Err(((*field).to_owned(), message))),
        };
        let unknown = catalog.unknown(&parsed)?;
        if !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().map(|name| format!("{{{{{name}}}}}")).collect();
            let noun = if list.len() == 1 { "merge field" } else { "merge fields" };
            return Ok(Err((
                (*field).to_owned(),
                format!("unknown {noun} {} (no such field, or not readable)", list.join(", ")),
            )));
        }
        used.extend(parsed.paths().map(Path::name));
    }
    Ok(Ok(used.into_iter().collect()))
}
