//! Judging a write: defaults, required, min/max, lengths, regex, select
//! options and currency codes of the active custom fields of an object.
//!
//! The kernel has already checked and normalized each value against its
//! kernel type (an integer field holds an `Int`, a single select one of its
//! keys in lowercase, a date `YYYY-MM-DD`, …) before `before-write` runs;
//! these are the rules the kernel does not know.
//!
//! On create every field is judged and absent values get their default.
//! On update only the fields the update changes are judged, so a record
//! written before a rule existed can still be edited elsewhere; clearing a
//! required field is refused.

use std::cell::OnceCell;

use crm_plugin_sdk::prelude::*;

use crate::convert;
use crate::definition::{self, Definition, FieldType, currency_field, number};
use crate::formulas::Formulas;
use crate::time;

/// A rule a value broke: the field at fault and `<rule>: <explanation>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    fn new(field: &str, message: impl Into<String>) -> Violation {
        Violation { field: field.to_owned(), message: message.into() }
    }
}

/// A definition ready to judge values (its regex compiled once per call).
pub struct Rules {
    pub definition: Definition,
    regex: Option<regex_lite::Regex>,
}

impl Rules {
    pub fn new(definition: Definition) -> Result<Rules> {
        let regex = match &definition.regex {
            Some(pattern) => Some(regex_lite::Regex::new(pattern).map_err(|error| {
                Error::msg(format!("{}.{}: stored regex '{pattern}' is invalid: {error}", definition.object, definition.name))
            })?),
            None => None,
        };
        Ok(Rules { definition, regex })
    }

    /// Checks a non-null value of the field against its rules.
    pub fn check(&self, value: &Value) -> std::result::Result<(), Violation> {
        let definition = &self.definition;
        let name = definition.name.as_str();
        let ty = definition.field_type;
        if ty.is_numeric() {
            let Some(number_value) = value.as_float() else {
                return Err(Violation::new(name, format!("type: expected a number, got '{value}'")));
            };
            if let Some(min) = definition.min
                && number_value < min
            {
                return Err(Violation::new(name, format!("min: must be at least {}", number(min))));
            }
            if let Some(max) = definition.max
                && number_value > max
            {
                return Err(Violation::new(name, format!("max: must be at most {}", number(max))));
            }
        }
        if ty.is_textual() {
            let Some(text) = value.as_text() else {
                return Err(Violation::new(name, format!("type: expected text, got '{value}'")));
            };
            let length = text.chars().count();
            if let Some(min) = definition.min_length
                && length < min as usize
            {
                return Err(Violation::new(name, format!("min_length: must be at least {min} characters")));
            }
            if let Some(max) = definition.max_length
                && length > max as usize
            {
                return Err(Violation::new(name, format!("max_length: must be at most {max} characters")));
            }
            if let Some(regex) = &self.regex
                && !regex.is_match(text)
            {
                return Err(Violation::new(name, format!("regex: must match {}", regex.as_str())));
            }
        }
        let not_an_option = |key: &str| {
            let keys: Vec<&str> = definition.option_keys().collect();
            Violation::new(name, format!("options: '{key}' is not one of {}", keys.join(", ")))
        };
        match ty {
            FieldType::SingleSelect => {
                let key = value.as_text().unwrap_or_default();
                if !definition.option_keys().any(|option| option == key) {
                    return Err(not_an_option(key));
                }
            }
            FieldType::MultiSelect => {
                let keys: &[String] = match value {
                    Value::Texts(keys) => keys,
                    _ => return Err(Violation::new(name, format!("type: expected a list of option keys, got '{value}'"))),
                };
                if let Some(key) = keys.iter().find(|key| !definition.option_keys().any(|option| option == key.as_str())) {
                    return Err(not_an_option(key));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The value a default stands for, typed as the kernel stores it; `now`
/// (epoch ms) resolves `now` and `today`.
pub fn default_value(definition: &Definition, default: &str, now: i64) -> std::result::Result<Value, String> {
    let text = default.trim();
    let not = |what: &str| format!("'{text}' is not {what}");
    Ok(match definition.field_type {
        FieldType::Text | FieldType::LongText | FieldType::Phone => Value::from(text),
        FieldType::Email => {
            let email = text.to_lowercase();
            if !crm_plugin_sdk::text::is_email(&email) {
                return Err(not("an email address"));
            }
            Value::Text(email)
        }
        FieldType::Url => {
            if !(text.starts_with("http://") || text.starts_with("https://")) {
                return Err(not("an http(s) URL"));
            }
            Value::from(text)
        }
        FieldType::Integer => Value::Int(text.parse::<i64>().map_err(|_| not("an integer"))?),
        FieldType::Decimal | FieldType::Currency => match text.parse::<f64>() {
            Ok(number) if number.is_finite() => Value::Float(number),
            _ => return Err(not("a number")),
        },
        FieldType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => return Err(not("a boolean (true or false)")),
        },
        FieldType::Date if text.eq_ignore_ascii_case("today") => Value::Text(time::format_date(now)),
        FieldType::Date => {
            if !definition::is_date(text) {
                return Err(not("a date such as 2026-01-31 (or 'today')"));
            }
            Value::from(text)
        }
        FieldType::Datetime if text.eq_ignore_ascii_case("now") => Value::Int(now),
        FieldType::Datetime => Value::Int(
            time::parse_datetime(text).ok_or_else(|| not("an RFC 3339 date-time such as 2026-01-31T09:30:00Z (or 'now')"))?,
        ),
        FieldType::SingleSelect => Value::Text(text.to_lowercase()),
        FieldType::MultiSelect => {
            let mut keys: Vec<String> =
                text.split(',').map(|key| key.trim().to_lowercase()).filter(|key| !key.is_empty()).collect();
            keys.sort();
            keys.dedup();
            Value::Texts(keys)
        }
        FieldType::Formula => return Err("a formula field has no default".into()),
        FieldType::Relation => {
            if !is_record_id(text) {
                return Err(not("a record id"));
            }
            Value::Id(text.to_owned())
        }
    })
}

/// A ULID: 26 characters of Crockford's base32.
fn is_record_id(text: &str) -> bool {
    text.len() == 26 && text.bytes().all(|byte| byte.is_ascii_digit() || (byte.is_ascii_uppercase() && !b"ILOU".contains(&byte)))
}

/// Judges one create or update of an object against the rules of its
/// active custom fields: a rejection naming the first field and rule that
/// failed, a patch with defaults, currency codes, converted values and
/// computed formulas, or accept. `now` is asked only when a default needs
/// it.
pub fn judge(change: &Change, rules: &[Rules], formulas: &Formulas, now: &OnceCell<i64>) -> Decision {
    let creating = change.op() == Op::Create;
    let after = change.after();
    let mut patch = Fields::new();
    for rule in rules {
        let definition = &rule.definition;
        let name = definition.name.as_str();
        if definition.field_type == FieldType::Formula {
            continue;
        }
        // A value stored before its field's type changed and not yet
        // converted: converted now, as the field's conversion would.
        if !creating
            && !change.changed(name)
            && let Some(value) = after.get(name)
            && !convert::fits(definition, value)
            && let Some(from) = definition.converting_from
            && let Ok(converted) = convert::convert(from, definition, value)
        {
            patch.set(name, converted);
            continue;
        }
        let currency = definition.field_type == FieldType::Currency;
        let code_field = if currency { currency_field(name) } else { String::new() };
        if !(creating || change.changed(name) || currency && change.changed(&code_field)) {
            continue;
        }
        let mut value = after.get(name).cloned().unwrap_or_default();
        if creating
            && value.is_null()
            && let Some(default) = &definition.default
        {
            value = match default_value(definition, default, *now.get_or_init(clock::now)) {
                Ok(value) => value,
                Err(error) => return Decision::reject_field(name, format!("default: {error}")),
            };
            patch.set(name, value.clone());
        }
        if value.is_null() {
            if definition.required {
                let message = if creating { "required: a value is required" } else { "required: cannot be cleared" };
                return Decision::reject_field(name, message);
            }
        } else if let Err(violation) = rule.check(&value) {
            return Decision::reject_field(violation.field, violation.message);
        }
        if currency {
            match after.get(&code_field).and_then(Value::as_text) {
                Some(code) => {
                    let upper = code.trim().to_ascii_uppercase();
                    if !definition::is_currency_code(&upper) {
                        return Decision::reject_field(
                            code_field,
                            format!("currency: '{code}' is not an ISO 4217 code (three letters such as EUR)"),
                        );
                    }
                    if upper != code {
                        patch.set(code_field.clone(), upper);
                    }
                }
                None if !value.is_null() => match &definition.currency {
                    Some(code) => {
                        patch.set(code_field.clone(), code.clone());
                    }
                    None => {
                        return Decision::reject_field(
                            code_field,
                            format!("currency: {name} needs a currency code (such as EUR)"),
                        );
                    }
                },
                None => {}
            }
        }
    }
    if !formulas.is_empty() {
        let mut record = after.clone();
        record.merge(&patch);
        for (name, value) in formulas.compute(&record) {
            let current = after.get(&name).cloned().unwrap_or_default();
            if change.changed(&name) && current != value {
                return Decision::reject_field(
                    name,
                    format!("formula: is computed from its formula ({value} here) and cannot be written"),
                );
            }
            if current != value {
                patch.set(name, value);
            }
        }
    }
    Decision::patch(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(ty: FieldType, input: Fields) -> Rules {
        let mut definition = Definition::new("contact", "x", ty, 0);
        definition.apply(&input).unwrap();
        definition.check().unwrap();
        Rules::new(definition).unwrap()
    }

    fn violation(rules: &Rules, value: impl Into<Value>) -> String {
        rules.check(&value.into()).unwrap_err().message
    }

    #[test]
    fn numbers_meet_min_and_max() {
        let size = rules(FieldType::Integer, Fields::new().with("min", 30.0).with("max", 50.0));
        assert!(size.check(&Value::Int(30)).is_ok() && size.check(&Value::Int(50)).is_ok());
        assert_eq!(violation(&size, 29), "min: must be at least 30");
        assert_eq!(violation(&size, 51), "max: must be at most 50");
        let ratio = rules(FieldType::Decimal, Fields::new().with("min", 0.5));
        assert_eq!(violation(&ratio, 0.25), "min: must be at least 0.5");
        assert_eq!(violation(&ratio, "x"), "type: expected a number, got 'x'");
    }

    #[test]
    fn text_meets_lengths_and_regex() {
        let code = rules(FieldType::Text, Fields::new().with("min_length", 2).with("max_length", 4).with("regex", "^[A-Z]+$"));
        assert!(code.check(&Value::from("ABC")).is_ok());
        assert_eq!(violation(&code, "A"), "min_length: must be at least 2 characters");
        assert_eq!(violation(&code, "ABCDE"), "max_length: must be at most 4 characters");
        assert_eq!(violation(&code, "abc"), "regex: must match ^[A-Z]+$");
        let accents = rules(FieldType::Text, Fields::new().with("max_length", 3));
        assert!(accents.check(&Value::from("äöü")).is_ok(), "lengths count characters, not bytes");
    }

    #[test]
    fn selects_take_only_their_options() {
        let tier = rules(FieldType::SingleSelect, Fields::new().with("options", "gold,silver"));
        assert!(tier.check(&Value::from("gold")).is_ok());
        assert_eq!(violation(&tier, "bronze"), "options: 'bronze' is not one of gold, silver");
        let tags = rules(FieldType::MultiSelect, Fields::new().with("options", "a,b"));
        assert!(tags.check(&Value::from(vec!["a", "b"])).is_ok());
        assert_eq!(violation(&tags, vec!["a", "z"]), "options: 'z' is not one of a, b");
    }

    #[test]
    fn defaults_resolve_now_and_today() {
        let at = Definition::new("contact", "at", FieldType::Datetime, 0);
        assert_eq!(default_value(&at, "now", 1_700_000_000_000), Ok(Value::Int(1_700_000_000_000)));
        let on = Definition::new("contact", "on", FieldType::Date, 0);
        assert_eq!(default_value(&on, "TODAY", 1_700_000_000_000), Ok(Value::from("2023-11-14")));
        let tags = Definition::new("contact", "t", FieldType::MultiSelect, 0);
        assert_eq!(default_value(&tags, "b, a,b", 0), Ok(Value::from(vec!["a", "b"])));
    }

    fn judged(rules: &[Rules], change: Change) -> Decision {
        judge(&change, rules, &Formulas::default(), &OnceCell::from(1_700_000_000_000))
    }

    #[test]
    fn creates_get_defaults_and_need_required_values() {
        let size = rules(FieldType::Integer, Fields::new().with("required", true).with("default", "40"));
        let decision = judged(std::slice::from_ref(&size), Change::create("contact", [("first_name", "Ada")]));
        assert_eq!(decision, Decision::patch([("x", 40)]));
        let needed = rules(FieldType::Integer, Fields::new().with("required", true));
        let decision = judged(std::slice::from_ref(&needed), Change::create("contact", [("first_name", "Ada")]));
        assert_eq!(decision, Decision::reject_field("x", "required: a value is required"));
        assert!(judged(std::slice::from_ref(&needed), Change::create("contact", [("x", 7)])).is_accept());
    }

    #[test]
    fn updates_judge_only_what_they_change() {
        let size = rules(FieldType::Integer, Fields::new().with("required", true).with("min", 30.0));
        let rules = std::slice::from_ref(&size);
        let legacy = Fields::new().with("first_name", "Ada").with("x", 3);
        let untouched = Change::update("contact", "1", legacy.clone(), legacy.clone().with("first_name", "Grace"));
        assert!(judged(rules, untouched).is_accept(), "a value from before the rule is left alone");
        let lowered = Change::update("contact", "1", legacy.clone(), legacy.clone().with("x", 4));
        assert_eq!(judged(rules, lowered), Decision::reject_field("x", "min: must be at least 30"));
        let cleared = Change::update("contact", "1", legacy.clone(), Fields::new().with("first_name", "Ada"));
        assert_eq!(judged(rules, cleared), Decision::reject_field("x", "required: cannot be cleared"));
        let never_set = Change::update("contact", "1", [("first_name", "Ada")], [("first_name", "Bea")]);
        assert!(judged(rules, never_set).is_accept(), "required does not force old records to get a value");
    }

    #[test]
    fn currency_amounts_come_with_a_code() {
        let mut budget = Definition::new("company", "budget", FieldType::Currency, 0);
        budget.apply(&Fields::new().with("min", 0.0)).unwrap();
        let plain = [Rules::new(budget.clone()).unwrap()];
        let decision = judged(&plain, Change::create("company", [("budget", Value::Float(10.0))]));
        assert_eq!(decision, Decision::reject_field("budget_currency", "currency: budget needs a currency code (such as EUR)"));
        let decision =
            judged(&plain, Change::create("company", [("budget", Value::Float(10.0)), ("budget_currency", Value::from("eur"))]));
        assert_eq!(decision, Decision::patch([("budget_currency", "EUR")]));
        let decision =
            judged(&plain, Change::create("company", [("budget", Value::Float(10.0)), ("budget_currency", Value::from("EURO"))]));
        assert_eq!(
            decision,
            Decision::reject_field("budget_currency", "currency: 'EURO' is not an ISO 4217 code (three letters such as EUR)")
        );
        assert_eq!(
            judged(&plain, Change::create("company", [("budget", Value::Float(-1.0)), ("budget_currency", Value::from("EUR"))])),
            Decision::reject_field("budget", "min: must be at least 0")
        );
        budget.currency = Some("USD".into());
        let with_default = [Rules::new(budget).unwrap()];
        let decision = judged(&with_default, Change::create("company", [("budget", Value::Float(10.0))]));
        assert_eq!(decision, Decision::patch([("budget_currency", "USD")]));
        assert!(judged(&with_default, Change::create("company", [("name", "Acme")])).is_accept(), "no amount, no code");
    }
}
