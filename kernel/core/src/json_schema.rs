//! Validation of plugin configuration against the JSON Schema in its
//! manifest.
//!
//! Supported keywords (draft 2020-12 semantics): `type` (one or a list),
//! `properties`, `required`, `additionalProperties` (bool or schema),
//! `items`, `enum`, `const`, `minimum`, `maximum`, `minLength`,
//! `maxLength`, `minItems`, `maxItems`, plus the annotations `title`,
//! `description`, `default`, `examples`, `$schema`, `$id`. A schema that
//! uses any other keyword is refused when the plugin is installed, so a
//! configuration is never accepted because a rule was silently ignored.

use serde_json::Value as Json;

use crate::error::{Error, Result};

const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
];

const TYPES: &[&str] = &["object", "array", "string", "number", "integer", "boolean", "null"];

/// Checks that `schema` only uses supported keywords, recursively.
pub fn check_schema(schema: &Json) -> Result<()> {
    check_at(schema, "#")
}

fn check_at(schema: &Json, path: &str) -> Result<()> {
    let object = match schema {
        Json::Bool(_) => return Ok(()),
        Json::Object(object) => object,
        _ => return Err(Error::invalid(format!("config schema at {path} must be an object or a boolean"))),
    };
    for (keyword, value) in object {
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(Error::invalid(format!("config schema at {path} uses unsupported keyword '{keyword}'")));
        }
        match keyword.as_str() {
            "type" => {
                let names: Vec<&Json> = match value {
                    Json::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for name in names {
                    if !name.as_str().is_some_and(|name| TYPES.contains(&name)) {
                        return Err(Error::invalid(format!("config schema at {path} has an unknown type {name}")));
                    }
                }
            }
            "properties" => {
                let Some(properties) = value.as_object() else {
                    return Err(Error::invalid(format!("config schema at {path}: properties must be an object")));
                };
                for (name, property) in properties {
                    check_at(property, &format!("{path}/properties/{name}"))?;
                }
            }
            "additionalProperties" | "items" => check_at(value, &format!("{path}/{keyword}"))?,
            "required" => {
                if !value.as_array().is_some_and(|names| names.iter().all(Json::is_string)) {
                    return Err(Error::invalid(format!("config schema at {path}: required must list names")));
                }
            }
            "enum" => {
                if !value.is_array() {
                    return Err(Error::invalid(format!("config schema at {path}: enum must be a list")));
                }
            }
            "minimum" | "maximum" => {
                if !value.is_number() {
                    return Err(Error::invalid(format!("config schema at {path}: {keyword} must be a number")));
                }
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" => {
                if !value.is_u64() {
                    return Err(Error::invalid(format!("config schema at {path}: {keyword} must be a whole number")));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn type_matches(name: &str, value: &Json) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// Validates `value` against `schema`; the error names the first failing
/// location, e.g. `config.blocked_domains[2]: expected string`.
pub fn validate(schema: &Json, value: &Json) -> Result<()> {
    validate_at(schema, value, "config")
}

fn fail(path: &str, reason: impl std::fmt::Display) -> Error {
    Error::invalid_field(path.to_string(), reason.to_string())
}

fn validate_at(schema: &Json, value: &Json, path: &str) -> Result<()> {
    let rules = match schema {
        Json::Bool(true) => return Ok(()),
        Json::Bool(false) => return Err(fail(path, "is not allowed")),
        Json::Object(rules) => rules,
        _ => return Ok(()),
    };
    if let Some(types) = rules.get("type") {
        let names: Vec<&str> = match types {
            Json::Array(items) => items.iter().filter_map(Json::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        if !names.iter().any(|name| type_matches(name, value)) {
            return Err(fail(path, format!("expected {}", names.join(" or "))));
        }
    }
    if let Some(Json::Array(options)) = rules.get("enum")
        && !options.contains(value)
    {
        let shown: Vec<String> = options.iter().map(Json::to_string).collect();
        return Err(fail(path, format!("must be one of {}", shown.join(", "))));
    }
    if let Some(expected) = rules.get("const")
        && expected != value
    {
        return Err(fail(path, format!("must be {expected}")));
    }
    if let Some(number) = value.as_f64() {
        if let Some(minimum) = rules.get("minimum").and_then(Json::as_f64)
            && number < minimum
        {
            return Err(fail(path, format!("must be at least {minimum}")));
        }
        if let Some(maximum) = rules.get("maximum").and_then(Json::as_f64)
            && number > maximum
        {
            return Err(fail(path, format!("must be at most {maximum}")));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(min) = rules.get("minLength").and_then(Json::as_u64)
            && length < min
        {
            return Err(fail(path, format!("must have at least {min} characters")));
        }
        if let Some(max) = rules.get("maxLength").and_then(Json::as_u64)
            && length > max
        {
            return Err(fail(path, format!("must have at most {max} characters")));
        }
    }
    if let Some(items) = value.as_array() {
        let count = items.len() as u64;
        if let Some(min) = rules.get("minItems").and_then(Json::as_u64)
            && count < min
        {
            return Err(fail(path, format!("must have at least {min} items")));
        }
        if let Some(max) = rules.get("maxItems").and_then(Json::as_u64)
            && count > max
        {
            return Err(fail(path, format!("must have at most {max} items")));
        }
        if let Some(item_schema) = rules.get("items") {
            for (index, item) in items.iter().enumerate() {
                validate_at(item_schema, item, &format!("{path}[{index}]"))?;
            }
        }
    }
    if let Some(object) = value.as_object() {
        if let Some(Json::Array(required)) = rules.get("required") {
            for name in required.iter().filter_map(Json::as_str) {
                if !object.contains_key(name) {
                    return Err(fail(&format!("{path}.{name}"), "is required"));
                }
            }
        }
        let properties = rules.get("properties").and_then(Json::as_object);
        for (name, item) in object {
            let item_path = format!("{path}.{name}");
            match properties.and_then(|properties| properties.get(name)) {
                Some(property) => validate_at(property, item, &item_path)?,
                None => {
                    if let Some(additional) = rules.get("additionalProperties") {
                        validate_at(additional, item, &item_path)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Fills in `default` values of top-level properties that are absent.
pub fn with_defaults(schema: &Json, value: &Json) -> Json {
    let mut out = value.clone();
    if let (Some(properties), Some(object)) = (schema.get("properties").and_then(Json::as_object), out.as_object_mut()) {
        for (name, property) in properties {
            if !object.contains_key(name)
                && let Some(default) = property.get("default")
            {
                object.insert(name.clone(), default.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Json, value: Json, expect: Result<(), &str>) {
        check_schema(&schema).expect("schema is supported");
        let got = validate(&schema, &value).map_err(|error| error.message);
        assert_eq!(got, expect.map_err(String::from), "schema {schema} value {value}");
    }

    #[test]
    fn validates_the_supported_keywords() {
        let schema = json!({
            "type": "object",
            "required": ["domains"],
            "additionalProperties": false,
            "properties": {
                "domains": {"type": "array", "items": {"type": "string", "minLength": 3}, "maxItems": 2},
                "delay_ms": {"type": "integer", "minimum": 0, "maximum": 1000},
                "mode": {"enum": ["a", "b"]}
            }
        });
        check(schema.clone(), json!({"domains": ["abc"]}), Ok(()));
        check(schema.clone(), json!({}), Err("config.domains: is required"));
        check(schema.clone(), json!({"domains": ["ab"]}), Err("config.domains[0]: must have at least 3 characters"));
        check(schema.clone(), json!({"domains": ["abc", "abd", "abe"]}), Err("config.domains: must have at most 2 items"));
        check(schema.clone(), json!({"domains": [], "delay_ms": 1.5}), Err("config.delay_ms: expected integer"));
        check(schema.clone(), json!({"domains": [], "delay_ms": 1001}), Err("config.delay_ms: must be at most 1000"));
        check(schema.clone(), json!({"domains": [], "mode": "c"}), Err("config.mode: must be one of \"a\", \"b\""));
        check(schema, json!({"domains": [], "other": 1}), Err("config.other: is not allowed"));
    }

    #[test]
    fn refuses_unsupported_keywords() {
        let error = check_schema(&json!({"properties": {"a": {"pattern": "x"}}})).unwrap_err();
        assert_eq!(error.message, "config schema at #/properties/a uses unsupported keyword 'pattern'");
    }

    #[test]
    fn fills_defaults() {
        let schema = json!({"properties": {"delay": {"default": 5}, "x": {}}});
        assert_eq!(with_defaults(&schema, &json!({})), json!({"delay": 5}));
        assert_eq!(with_defaults(&schema, &json!({"delay": 1})), json!({"delay": 1}));
    }
}
