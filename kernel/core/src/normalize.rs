//! Checking and normalizing input values against a field's type. Every write
//! path (GraphQL, CSV import, later plugins) and every filter goes through
//! here, so a value is stored and compared in one canonical form.

use chrono::{DateTime, NaiveDate};

use crate::error::{Error, Result};
use crate::ids::{RecordId, truncate};
use crate::metadata::{FieldDef, FieldType};
use crate::value::Value;

/// Longest text accepted in a single field (long text allows more).
pub const MAX_TEXT_BYTES: usize = 4 * 1024;
pub const MAX_LONG_TEXT_BYTES: usize = 256 * 1024;
pub const MAX_TAGS: usize = 100;

/// Normalizes `value` for `field`. Text input is accepted for every type and
/// parsed (CSV import sends text), typed input must match the field type.
pub fn normalize(field: &FieldDef, value: Value) -> Result<Value> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let name = field.name.as_str();
    let bad = |reason: String| Error::invalid_field(name, reason);
    // Sealed audit values begin with NUL (see `seal`); no input may look like one.
    if value.as_text().is_some_and(|text| text.starts_with('\0')) {
        return Err(bad("text cannot begin with a NUL character".into()));
    }
    match (&field.ty, value) {
        (FieldType::Text | FieldType::Phone, Value::Text(text)) => {
            check_len(name, &text, MAX_TEXT_BYTES)?;
            Ok(Value::Text(text))
        }
        (FieldType::LongText, Value::Text(text)) => {
            check_len(name, &text, MAX_LONG_TEXT_BYTES)?;
            Ok(Value::Text(text))
        }
        (FieldType::Email, Value::Text(text)) => {
            let email = text.trim().to_lowercase();
            check_len(name, &email, 320)?;
            let valid = match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
                        && !email.contains(char::is_whitespace) && !domain.contains('@')
                }
                None => false,
            };
            if valid { Ok(Value::Text(email)) } else { Err(bad(format!("'{}' is not an email address", truncate(&text, 80)))) }
        }
        (FieldType::Url, Value::Text(text)) => {
            check_len(name, &text, 2048)?;
            if text.starts_with("http://") || text.starts_with("https://") {
                Ok(Value::Text(text))
            } else {
                Err(bad(format!("'{}' is not an http(s) URL", truncate(&text, 80))))
            }
        }
        (FieldType::Int, Value::Int(int)) => Ok(Value::Int(int)),
        (FieldType::Int, Value::Float(float)) if float.fract() == 0.0 && float.abs() < 9.0e15 => Ok(Value::Int(float as i64)),
        (FieldType::Int, Value::Text(text)) => {
            text.trim().parse::<i64>().map(Value::Int).map_err(|_| bad(format!("'{}' is not an integer", truncate(&text, 40))))
        }
        (FieldType::Float, Value::Float(float)) if float.is_finite() => Ok(Value::Float(float)),
        (FieldType::Float, Value::Int(int)) => Ok(Value::Float(int as f64)),
        (FieldType::Float, Value::Text(text)) => match text.trim().parse::<f64>() {
            Ok(float) if float.is_finite() => Ok(Value::Float(float)),
            _ => Err(bad(format!("'{}' is not a number", truncate(&text, 40)))),
        },
        (FieldType::Bool, Value::Bool(flag)) => Ok(Value::Bool(flag)),
        (FieldType::Bool, Value::Text(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" | "" => Ok(Value::Bool(false)),
            _ => Err(bad(format!("'{}' is not a boolean", truncate(&text, 40)))),
        },
        (FieldType::DateTime, Value::Int(ms)) => Ok(Value::Int(ms)),
        (FieldType::DateTime, Value::Text(text)) => parse_datetime(text.trim()).map(Value::Int).ok_or_else(|| {
            bad(format!("'{}' is not an RFC 3339 date-time such as 2026-01-31T09:30:00Z", truncate(&text, 40)))
        }),
        (FieldType::Date, Value::Text(text)) => match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
            Ok(date) => Ok(Value::Text(date.format("%Y-%m-%d").to_string())),
            Err(_) => Err(bad(format!("'{}' is not a date such as 2026-01-31", truncate(&text, 40)))),
        },
        (FieldType::Enum(options), Value::Text(text)) => {
            let key = text.trim().to_lowercase();
            if options.iter().any(|option| *option == key) {
                Ok(Value::Text(key))
            } else {
                Err(bad(format!("'{}' is not one of {}", truncate(&text, 40), options.join(", "))))
            }
        }
        (FieldType::Ref(_) | FieldType::ExternalId, Value::Id(id)) => Ok(Value::Id(id)),
        (FieldType::Ref(_) | FieldType::ExternalId, Value::Text(text)) => {
            RecordId::parse(text.trim()).map(Value::Id).map_err(|error| bad(error.message))
        }
        (FieldType::Tags, Value::List(items)) => normalize_tags(name, items),
        (FieldType::Tags, Value::Text(text)) => {
            normalize_tags(name, text.split([',', ';']).map(|tag| tag.to_string()).collect())
        }
        (ty, other) => Err(bad(format!("expected {}, got {}", type_name(ty), describe(&other)))),
    }
}

fn normalize_tags(name: &str, items: Vec<String>) -> Result<Value> {
    let mut tags: Vec<String> =
        items.into_iter().map(|tag| tag.trim().to_string()).filter(|tag| !tag.is_empty()).collect();
    tags.sort();
    tags.dedup();
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid_field(name, format!("at most {MAX_TAGS} tags")));
    }
    for tag in &tags {
        check_len(name, tag, 100)?;
    }
    Ok(Value::List(tags))
}

fn check_len(name: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        Err(Error::invalid_field(name, format!("longer than {max} bytes")))
    } else {
        Ok(())
    }
}

pub fn parse_datetime(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|time| time.timestamp_millis())
}

pub fn format_datetime(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn type_name(ty: &FieldType) -> &'static str {
    match ty {
        FieldType::Text | FieldType::LongText | FieldType::Phone => "text",
        FieldType::Email => "an email address",
        FieldType::Url => "a URL",
        FieldType::Int => "an integer",
        FieldType::Float => "a number",
        FieldType::Bool => "a boolean",
        FieldType::DateTime => "a date-time",
        FieldType::Date => "a date",
        FieldType::Enum(_) => "an option key",
        FieldType::Ref(_) | FieldType::ExternalId => "an id",
        FieldType::Tags => "a list of tags",
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Text(_) => "text",
        Value::Id(_) => "an id",
        Value::List(_) => "a list",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Metadata;

    fn field(object: &str, name: &str) -> FieldDef {
        Metadata::standard().object(object).unwrap().field(name).unwrap().clone()
    }

    #[test]
    fn normalizes_by_type() {
        let email = field("contact", "email");
        assert_eq!(normalize(&email, Value::Text(" Ada@Example.COM ".into())).unwrap(), Value::Text("ada@example.com".into()));
        assert!(normalize(&email, Value::Text("nope".into())).is_err());
        let stage = field("contact", "lifecycle_stage");
        assert_eq!(normalize(&stage, Value::Text("LEAD".into())).unwrap(), Value::Text("lead".into()));
        let error = normalize(&stage, Value::Text("zzz".into())).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("lifecycle_stage"));
        let score = field("contact", "lead_score");
        assert_eq!(normalize(&score, Value::Text("42".into())).unwrap(), Value::Int(42));
        assert!(normalize(&score, Value::Text("4x".into())).is_err());
        let at = field("activity", "occurred_at");
        let ms = normalize(&at, Value::Text("2026-01-31T09:30:00Z".into())).unwrap();
        assert_eq!(format_datetime(ms.as_f64().unwrap() as i64), "2026-01-31T09:30:00.000Z");
        let title = field("contact", "title");
        for sealed in ["\0sealed:1:AAAA", "\0sealed:2:AAAA"] {
            let error = normalize(&title, Value::Text(sealed.into())).unwrap_err();
            assert_eq!(error.field.as_deref(), Some("title"));
        }
        assert_eq!(normalize(&email, Value::Text("\0a@b.example".into())).unwrap_err().field.as_deref(), Some("email"));
        assert_eq!(normalize(&title, Value::Text("a\0b".into())).unwrap(), Value::Text("a\0b".into()));
        let tags = field("contact", "tags");
        assert_eq!(normalize(&tags, Value::Text("b, a,b".into())).unwrap(), Value::List(vec!["a".into(), "b".into()]));
    }
}
