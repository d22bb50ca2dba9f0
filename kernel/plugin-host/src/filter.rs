//! The GraphQL filter language in JSON, as plugins pass it to
//! `records.query`: `{"email": {"eq": "a@b.c"}, "and": [...], "or": [...],
//! "not": {...}}` with stored (snake_case) field names. A filter may only
//! name fields the plugin may read.

use crm_core::metadata::{ObjectDef, system_field};
use crm_core::normalize::normalize;
use crm_core::{Condition, Error, Filter, Result, Sort, Value};
use serde_json::Value as Json;

fn json_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(|item| item.as_str().map(String::from).unwrap_or_else(|| item.to_string())).collect()),
        Json::Object(_) => Value::Text(json.to_string()),
    }
}

/// Parses a JSON filter; `readable` says which fields may be named.
pub fn parse(object: &ObjectDef, text: &str, readable: &dyn Fn(&str) -> bool) -> Result<Option<Filter>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let json: Json = serde_json::from_str(text).map_err(|error| Error::invalid(format!("filter is not JSON: {error}")))?;
    Ok(Some(parse_json(object, &json, readable)?))
}

fn parse_json(object: &ObjectDef, json: &Json, readable: &dyn Fn(&str) -> bool) -> Result<Filter> {
    let Json::Object(map) = json else { return Err(Error::invalid("a filter must be a JSON object")) };
    let mut all = Vec::new();
    for (name, value) in map {
        match name.as_str() {
            "and" | "or" => {
                let Json::Array(items) = value else { return Err(Error::invalid(format!("'{name}' takes a list of filters"))) };
                let parts = items.iter().map(|item| parse_json(object, item, readable)).collect::<Result<Vec<_>>>()?;
                all.push(if name == "and" { Filter::And(parts) } else { Filter::Or(parts) });
            }
            "not" => all.push(Filter::Not(Box::new(parse_json(object, value, readable)?))),
            field => {
                let def = system_field(object, field)
                    .or_else(|| object.field(field).cloned())
                    .ok_or_else(|| Error::invalid(format!("{} has no field '{field}'", object.name)))?;
                if system_field(object, field).is_none() && !readable(field) {
                    return Err(Error::new(crm_core::ErrorKind::Forbidden, format!("field {}.{field} is not granted for reading", object.name)));
                }
                let Json::Object(ops) = value else { return Err(Error::invalid(format!("'{field}' takes conditions"))) };
                for (op, operand) in ops {
                    let one = |json: &Json| normalize(&def, json_value(json));
                    let text = || operand.as_str().map(String::from).ok_or_else(|| Error::invalid_field(field, format!("'{op}' takes text")));
                    let many = || -> Result<Vec<Value>> {
                        match operand {
                            Json::Array(items) => items.iter().map(one).collect(),
                            other => Ok(vec![one(other)?]),
                        }
                    };
                    let condition = match op.as_str() {
                        "eq" => Condition::Eq(one(operand)?),
                        "neq" => Condition::Neq(one(operand)?),
                        "in" => Condition::In(many()?),
                        "nin" => Condition::Nin(many()?),
                        "gt" => Condition::Gt(one(operand)?),
                        "gte" => Condition::Gte(one(operand)?),
                        "lt" => Condition::Lt(one(operand)?),
                        "lte" => Condition::Lte(one(operand)?),
                        "contains" => Condition::Contains(text()?),
                        "startsWith" => Condition::StartsWith(text()?),
                        "endsWith" => Condition::EndsWith(text()?),
                        "isNull" => Condition::IsNull(operand.as_bool().unwrap_or(true)),
                        other => return Err(Error::invalid(format!("unknown filter operator '{other}'"))),
                    };
                    all.push(Filter::field(field.to_string(), condition));
                }
            }
        }
    }
    Ok(if all.len() == 1 { all.remove(0) } else { Filter::And(all) })
}

/// Parses `["name", "-created_at"]`.
pub fn order_by(object: &ObjectDef, keys: &[String], readable: &dyn Fn(&str) -> bool) -> Result<Vec<Sort>> {
    keys.iter()
        .map(|key| {
            let (field, descending) = match key.strip_prefix('-') {
                Some(field) => (field, true),
                None => (key.as_str(), false),
            };
            let system = system_field(object, field).is_some();
            if !system && object.field(field).is_none() {
                return Err(Error::invalid(format!("{} has no field '{field}'", object.name)));
            }
            if !system && !readable(field) {
                return Err(Error::new(crm_core::ErrorKind::Forbidden, format!("field {}.{field} is not granted for reading", object.name)));
            }
            Ok(Sort { field: field.to_string(), descending })
        })
        .collect()
}
