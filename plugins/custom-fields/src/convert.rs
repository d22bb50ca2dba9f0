//! Changing a field's type: which changes exist, and how one stored value
//! converts.
//!
//! A change is allowed when every stored value converts losslessly:
//!
//! - to text or long text from any type but currency and formula (numbers
//!   as written, date-times as RFC 3339, multi selects as `a, b`);
//! - between the text types (text, long text, email, URL, phone) when each
//!   value is valid for the new one;
//! - from text or long text to integer, decimal, date, datetime, boolean,
//!   single select or multi select when each value parses;
//! - integer to decimal; decimal to integer when no value has a fraction;
//! - date to datetime (midnight UTC); datetime to date when each value is
//!   at midnight UTC;
//! - single select to multi select; multi select to single select when no
//!   record holds more than one option.
//!
//! Currency, formula and relation fields keep their type (a relation may
//! become text).

use crm_plugin_sdk::prelude::*;

use crate::definition::{Definition, FieldType, number};
use crate::rules;
use crate::time;

const MS_PER_DAY: i64 = 86_400_000;
const MAX_TEXT_BYTES: usize = 4 * 1024;
const MAX_LONG_TEXT_BYTES: usize = 256 * 1024;

fn is_textual(ty: FieldType) -> bool {
    ty.is_textual()
}

/// Whether a field of type `from` may become `to`; the error says why not.
pub fn plan(from: FieldType, to: FieldType) -> std::result::Result<(), String> {
    use FieldType::*;
    if from == to {
        return Ok(());
    }
    match (from, to) {
        (Currency, _) | (_, Currency) => {
            Err("a currency field stores an amount and a code; define a new field and copy the values".into())
        }
        (Formula, _) | (_, Formula) => Err("a formula field is computed; define a new formula field instead".into()),
        (Relation, to) if is_textual(to) => Ok(()),
        (Relation, _) | (_, Relation) => Err("a relation can only become text".into()),
        (_, to) if is_textual(to) => Ok(()),
        (from, Integer | Decimal | Date | Datetime | Boolean | SingleSelect | MultiSelect) if is_textual(from) => Ok(()),
        (Integer, Decimal) | (Decimal, Integer) | (Date, Datetime) | (Datetime, Date) => Ok(()),
        (SingleSelect, MultiSelect) | (MultiSelect, SingleSelect) => Ok(()),
        (from, to) => Err(format!("there is no conversion from {} to {}", from.as_str(), to.as_str())),
    }
}

/// Whether `value` is already stored as a field of `definition`'s type
/// holds it.
pub fn fits(definition: &Definition, value: &Value) -> bool {
    match (definition.field_type, value) {
        (_, Value::Null) | (FieldType::Formula, _) => true,
        (FieldType::Text | FieldType::Phone, Value::Text(text)) => text.len() <= MAX_TEXT_BYTES,
        (FieldType::LongText, Value::Text(text)) => text.len() <= MAX_LONG_TEXT_BYTES,
        (FieldType::Url, Value::Text(text)) => text.starts_with("http://") || text.starts_with("https://"),
        (FieldType::Email, Value::Text(text)) => rules::default_value(definition, text, 0).is_ok_and(|email| email == *value),
        (FieldType::Integer | FieldType::Datetime, Value::Int(_)) => true,
        (FieldType::Decimal | FieldType::Currency, Value::Float(_)) => true,
        (FieldType::Date, Value::Text(text)) => time::parse_date(text).is_some(),
        (FieldType::Boolean, Value::Bool(_)) => true,
        (FieldType::SingleSelect, Value::Text(key)) => definition.option_keys().any(|option| option == key),
        (FieldType::MultiSelect, Value::Texts(_)) => true,
        (FieldType::Relation, Value::Id(_) | Value::Text(_)) => true,
        _ => false,
    }
}

/// The text a value of a `from` field reads as.
fn as_text(from: FieldType, value: &Value) -> Option<String> {
    Some(match (from, value) {
        (FieldType::Datetime, Value::Int(ms)) => time::format_datetime(*ms),
        (_, Value::Int(int)) => int.to_string(),
        (_, Value::Float(float)) => number(*float),
        (_, Value::Bool(flag)) => flag.to_string(),
        (_, Value::Text(text) | Value::Id(text)) => text.clone(),
        (_, Value::Texts(texts)) => texts.join(", "),
        (_, Value::Null) => return None,
    })
}

/// Converts one stored value of a `from` field to the type of `to`. The
/// error completes "N records hold values that …".
pub fn convert(from: FieldType, to: &Definition, value: &Value) -> std::result::Result<Value, &'static str> {
    if fits(to, value) {
        return Ok(value.clone());
    }
    let text = as_text(from, value).ok_or("are empty")?;
    let trimmed = text.trim();
    match to.field_type {
        FieldType::Text | FieldType::Phone if text.len() > MAX_TEXT_BYTES => Err("are longer than 4096 bytes"),
        FieldType::Text | FieldType::Phone => Ok(Value::Text(text)),
        FieldType::LongText if text.len() > MAX_LONG_TEXT_BYTES => Err("are longer than 256 KiB"),
        FieldType::LongText => Ok(Value::Text(text)),
        FieldType::Email => rules::default_value(to, trimmed, 0).map_err(|_| "are not email addresses"),
        FieldType::Url => rules::default_value(to, trimmed, 0).map_err(|_| "are not http(s) URLs"),
        FieldType::Integer => match value {
            Value::Float(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => Ok(Value::Int(*float as i64)),
            Value::Text(_) => trimmed.parse::<i64>().map(Value::Int).map_err(|_| "are not integers"),
            _ => Err("are not integers"),
        },
        FieldType::Decimal => match value {
            Value::Int(int) => Ok(Value::Float(*int as f64)),
            Value::Text(_) => match trimmed.parse::<f64>() {
                Ok(float) if float.is_finite() => Ok(Value::Float(float)),
                _ => Err("are not numbers"),
            },
            _ => Err("are not numbers"),
        },
        FieldType::Date => match value {
            Value::Int(ms) if from == FieldType::Datetime => {
                if ms.rem_euclid(MS_PER_DAY) == 0 {
                    Ok(Value::Text(time::format_date(*ms)))
                } else {
                    Err("are not at midnight UTC")
                }
            }
            _ if time::parse_date(trimmed).is_some() => Ok(Value::Text(trimmed.to_owned())),
            _ => Err("are not dates such as 2026-01-31"),
        },
        FieldType::Datetime => match time::parse_date(trimmed) {
            Some((year, month, day)) => Ok(Value::Int(time::days_from_civil(year, month, day) * MS_PER_DAY)),
            None => time::parse_datetime(trimmed).map(Value::Int).ok_or("are not RFC 3339 date-times"),
        },
        FieldType::Boolean => match rules::default_value(to, trimmed, 0) {
            Ok(flag) => Ok(flag),
            Err(_) => Err("are not booleans (true or false)"),
        },
        FieldType::SingleSelect => {
            let key = match value {
                Value::Texts(keys) if keys.len() > 1 => return Err("hold more than one option"),
                Value::Texts(keys) => keys.first().cloned().unwrap_or_default(),
                _ => trimmed.to_lowercase(),
            };
            if to.option_keys().any(|option| option == key) { Ok(Value::Text(key)) } else { Err("are not one of the options") }
        }
        FieldType::MultiSelect => {
            let keys = match rules::default_value(to, trimmed, 0) {
                Ok(Value::Texts(keys)) => keys,
                _ => return Err("are not lists of the options"),
            };
            if keys.iter().all(|key| to.option_keys().any(|option| option == key)) {
                Ok(Value::Texts(keys))
            } else {
                Err("are not lists of the options")
            }
        }
        FieldType::Currency | FieldType::Relation | FieldType::Formula => Err("cannot be converted"),
    }
}

/// What converting the stored values of a field would do.
#[derive(Debug, Default, PartialEq)]
pub struct Survey {
    /// Records whose value needs converting.
    pub to_convert: u64,
    /// Records whose value does not convert, by reason.
    pub blocked: Vec<(&'static str, u64)>,
    /// Records whose converted value breaks a rule of the new definition.
    pub breaking: u64,
    /// The first rule broken, for the message.
    pub first_broken: Option<String>,
}

impl Survey {
    /// Counts one stored value.
    pub fn add(&mut self, from: FieldType, to: &rules::Rules, value: &Value) {
        if value.is_null() {
            return;
        }
        match convert(from, &to.definition, value) {
            Ok(converted) => {
                if let Err(violation) = to.check(&converted) {
                    self.breaking += 1;
                    self.first_broken.get_or_insert(violation.message);
                } else if converted != *value {
                    self.to_convert += 1;
                }
            }
            Err(reason) => match self.blocked.iter_mut().find(|(known, _)| *known == reason) {
                Some((_, count)) => *count += 1,
                None => self.blocked.push((reason, 1)),
            },
        }
    }

    /// Why the change is refused, if it is.
    pub fn refusal(&self, from: &Definition, to: &Definition) -> Option<String> {
        let mut reasons: Vec<String> =
            self.blocked.iter().map(|(reason, count)| format!("{count} {} values that {reason}", records_hold(*count))).collect();
        if self.breaking > 0 {
            reasons.push(format!(
                "{} {} values that would break {}",
                self.breaking,
                records_hold(self.breaking),
                self.first_broken.as_deref().unwrap_or("its rules")
            ));
        }
        if reasons.is_empty() {
            return None;
        }
        Some(format!(
            "type: cannot change {}.{} from {} to {}: {}",
            from.object,
            from.name,
            from.field_type.as_str().to_ascii_uppercase(),
            to.field_type.as_str().to_ascii_uppercase(),
            reasons.join("; ")
        ))
    }
}

fn records_hold(count: u64) -> &'static str {
    if count == 1 { "record holds" } else { "records hold" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(ty: FieldType, input: Fields) -> Definition {
        let mut definition = Definition::new("contact", "x", ty, 0);
        definition.apply(&input).unwrap();
        definition.check().unwrap();
        definition
    }

    fn converted(from: FieldType, ty: FieldType, value: impl Into<Value>) -> std::result::Result<Value, &'static str> {
        let input = if ty.is_select() { Fields::new().with("options", "gold,silver") } else { Fields::new() };
        convert(from, &to(ty, input), &value.into())
    }

    #[test]
    fn the_allowed_changes() {
        use FieldType::*;
        for (from, into) in [
            (Integer, Decimal),
            (Decimal, Integer),
            (Integer, Text),
            (Text, LongText),
            (LongText, Text),
            (Email, Text),
            (Url, LongText),
            (Phone, Text),
            (Text, Email),
            (Text, Integer),
            (Text, Decimal),
            (Text, Date),
            (Text, Datetime),
            (Text, Boolean),
            (Text, SingleSelect),
            (SingleSelect, MultiSelect),
            (MultiSelect, SingleSelect),
            (Date, Datetime),
            (Datetime, Date),
            (Boolean, Text),
            (Relation, Text),
        ] {
            assert_eq!(plan(from, into), Ok(()), "{from:?} -> {into:?}");
        }
        for (from, into, expected) in [
            (Integer, Currency, "a currency field stores"),
            (Currency, Decimal, "a currency field stores"),
            (Text, Formula, "a formula field is computed"),
            (Text, Relation, "a relation can only become text"),
            (Integer, Date, "there is no conversion from integer to date"),
            (Boolean, Integer, "there is no conversion"),
        ] {
            assert!(plan(from, into).unwrap_err().contains(expected), "{from:?} -> {into:?}");
        }
    }

    #[test]
    fn values_convert_losslessly_or_not_at_all() {
        use FieldType::*;
        assert_eq!(converted(Integer, Decimal, 3), Ok(Value::Float(3.0)));
        assert_eq!(converted(Decimal, Integer, Value::Float(4.0)), Ok(Value::Int(4)));
        assert_eq!(converted(Decimal, Integer, Value::Float(4.5)), Err("are not integers"));
        assert_eq!(converted(Integer, Text, 42), Ok(Value::from("42")));
        assert_eq!(converted(Decimal, Text, Value::Float(2.5)), Ok(Value::from("2.5")));
        assert_eq!(converted(Text, Integer, " 42 "), Ok(Value::Int(42)));
        assert_eq!(converted(Text, Integer, "42.5"), Err("are not integers"));
        assert_eq!(converted(Text, Decimal, "42.5"), Ok(Value::Float(42.5)));
        assert_eq!(converted(Text, Date, "2026-01-31"), Ok(Value::from("2026-01-31")));
        assert_eq!(converted(Text, Date, "31/01/2026"), Err("are not dates such as 2026-01-31"));
        assert_eq!(converted(Date, Datetime, "2023-11-14"), Ok(Value::Int(1_699_920_000_000)));
        assert_eq!(converted(Datetime, Date, 1_699_920_000_000i64), Ok(Value::from("2023-11-14")));
        assert_eq!(converted(Datetime, Date, 1_699_920_000_001i64), Err("are not at midnight UTC"));
        assert_eq!(converted(Datetime, Text, 1_700_000_000_000i64), Ok(Value::from("2023-11-14T22:13:20.000Z")));
        assert_eq!(converted(Text, Boolean, "Yes"), Ok(Value::Bool(true)));
        assert_eq!(converted(Text, Boolean, "maybe"), Err("are not booleans (true or false)"));
        assert_eq!(converted(Text, Email, "Ada@Example.com"), Ok(Value::from("ada@example.com")));
        assert_eq!(converted(Text, Email, "ada"), Err("are not email addresses"));
        assert_eq!(converted(Text, SingleSelect, "Gold"), Ok(Value::from("gold")));
        assert_eq!(converted(Text, SingleSelect, "bronze"), Err("are not one of the options"));
        assert_eq!(converted(SingleSelect, MultiSelect, "gold"), Ok(Value::from(vec!["gold"])));
        assert_eq!(converted(MultiSelect, SingleSelect, vec!["gold"]), Ok(Value::from("gold")));
        assert_eq!(converted(MultiSelect, SingleSelect, vec!["gold", "silver"]), Err("hold more than one option"));
        assert_eq!(converted(MultiSelect, Text, vec!["gold", "silver"]), Ok(Value::from("gold, silver")));
        assert_eq!(converted(Text, LongText, "x".repeat(5000)), Ok(Value::from("x".repeat(5000))));
        assert_eq!(converted(LongText, Text, "x".repeat(5000)), Err("are longer than 4096 bytes"));
        // Converting twice changes nothing.
        assert_eq!(converted(Text, Integer, 42), Ok(Value::Int(42)));
    }

    #[test]
    fn a_survey_counts_what_blocks_a_change() {
        let from = Definition::new("contact", "shoe_size", FieldType::Text, 0);
        let mut into = from.clone();
        into.field_type = FieldType::Integer;
        into.min = Some(30.0);
        let rules = rules::Rules::new(into.clone()).unwrap();
        let mut survey = Survey::default();
        for value in ["42", "41", "x", "12", "4.5", "y"] {
            survey.add(FieldType::Text, &rules, &Value::from(value));
        }
        survey.add(FieldType::Text, &rules, &Value::Null);
        assert_eq!(survey.to_convert, 2);
        assert_eq!(
            survey.refusal(&from, &into).unwrap(),
            "type: cannot change contact.shoe_size from TEXT to INTEGER: 3 records hold values that are not integers; \
             1 record holds values that would break min: must be at least 30"
        );
        let mut clean = Survey::default();
        clean.add(FieldType::Text, &rules, &Value::from("40"));
        assert_eq!((clean.to_convert, clean.refusal(&from, &into)), (1, None));
    }
}
