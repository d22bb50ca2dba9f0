//! Conversions between GraphQL values and core values, driven by field types,
//! and parsing of filter and order arguments.

use async_graphql::dynamic::ObjectAccessor;
use async_graphql::indexmap::IndexMap;
use async_graphql::{Name, Value as Gql};
use crm_core::metadata::{FieldDef, FieldType, ObjectDef};
use crm_core::normalize::{format_datetime, normalize};
use crm_core::{Condition, Error, Filter, Record, RecordId, Result, Sort, Value};

use crate::names::{camel, screaming, snake};

/// The definitions of the kernel-owned fields, so filters and sorting treat
/// them like any other field.
pub use crm_core::metadata::system_field;

pub fn field_def(object: &ObjectDef, name: &str) -> Option<FieldDef> {
    system_field(object, name).or_else(|| object.field(name).cloned())
}

/// A core value as GraphQL output for a field of type `ty`.
pub fn output(ty: &FieldType, value: &Value) -> Gql {
    match (ty, value) {
        (_, Value::Null) => Gql::Null,
        (FieldType::DateTime, Value::Int(ms)) => Gql::String(format_datetime(*ms)),
        (FieldType::Enum(_), Value::Text(key)) => Gql::Enum(Name::new(screaming(key))),
        (_, Value::Text(text)) => Gql::String(text.clone()),
        (_, Value::Int(int)) => Gql::from(*int),
        (_, Value::Float(float)) => Gql::from(*float),
        (_, Value::Bool(flag)) => Gql::Boolean(*flag),
        (_, Value::Id(id)) => Gql::String(id.to_string()),
        (_, Value::List(items)) => Gql::List(items.iter().map(|item| Gql::String(item.clone())).collect()),
    }
}

/// A record as a JSON object with GraphQL field names (change feed,
/// subscriptions).
pub fn record_json(object: &ObjectDef, record: &Record) -> Gql {
    let mut map = async_graphql::indexmap::IndexMap::new();
    map.insert(Name::new("id"), Gql::String(record.id.to_string()));
    map.insert(Name::new("version"), Gql::from(record.version));
    map.insert(Name::new("createdAt"), Gql::String(format_datetime(record.created_at)));
    map.insert(Name::new("updatedAt"), Gql::String(format_datetime(record.updated_at)));
    for field in &object.fields {
        let value = match output(&field.ty, record.get(&field.name)) {
            Gql::Enum(name) => Gql::String(name.to_string()),
            other => other,
        };
        map.insert(Name::new(camel(&field.name)), value);
    }
    Gql::Object(map)
}

/// A GraphQL input value as a loose core value; `normalize` then checks it
/// against the field type.
pub fn input(value: &Gql) -> Value {
    match value {
        Gql::Null => Value::Null,
        Gql::Boolean(flag) => Value::Bool(*flag),
        Gql::Number(number) => match number.as_i64() {
            Some(int) => Value::Int(int),
            None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        Gql::String(text) => Value::Text(text.clone()),
        Gql::Enum(name) => Value::Text(name.to_ascii_lowercase()),
        Gql::List(items) => Value::List(
            items
                .iter()
                .map(|item| match item {
                    Gql::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        other => Value::Text(other.to_string()),
    }
}

pub fn parse_id(value: &Gql) -> Result<RecordId> {
    match value {
        Gql::String(text) => RecordId::parse(text),
        other => RecordId::parse(&other.to_string()),
    }
}

/// Input fields (camelCase) as core fields (snake_case), unknown ones refused.
pub fn input_fields(object: &ObjectDef, values: &ObjectAccessor<'_>) -> Result<crm_core::Fields> {
    let mut fields = crm_core::Fields::new();
    for (name, value) in values.iter() {
        let field = snake(name.as_str());
        if object.field(&field).is_none() {
            return Err(Error::invalid(format!("{} has no field '{}'", object.name, name)));
        }
        fields.insert(field, input(value.as_value()));
    }
    Ok(fields)
}

/// Parses a `<Object>Filter` argument.
pub fn filter(object: &ObjectDef, value: &IndexMap<Name, Gql>) -> Result<Filter> {
    let mut all = Vec::new();
    for (name, value) in value {
        match name.as_str() {
            "and" | "or" => {
                let Gql::List(list) = value else { return Err(Error::invalid(format!("'{name}' takes a list of filters"))) };
                let mut parts = Vec::new();
                for item in list {
                    let Gql::Object(object_value) = item else {
                        return Err(Error::invalid(format!("'{name}' takes a list of filters")));
                    };
                    parts.push(filter(object, object_value)?);
                }
                all.push(if name.as_str() == "and" { Filter::And(parts) } else { Filter::Or(parts) });
            }
            "not" => {
                let inner = match value {
                    Gql::Null => continue,
                    Gql::Object(inner) => inner,
                    _ => return Err(Error::invalid("'not' takes a filter")),
                };
                all.push(Filter::Not(Box::new(filter(object, inner)?)));
            }
            field_name => {
                if *value == Gql::Null {
                    continue;
                }
                let field = snake(field_name);
                let def = field_def(object, &field)
                    .ok_or_else(|| Error::invalid(format!("{} has no field '{field_name}'", object.name)))?;
                let Gql::Object(ops) = value else {
                    return Err(Error::invalid(format!("'{field_name}' takes conditions")));
                };
                for (op, operand) in ops {
                    if *operand == Gql::Null {
                        continue;
                    }
                    all.push(Filter::field(field.clone(), condition(&def, op.as_str(), operand)?));
                }
            }
        }
    }
    Ok(if all.len() == 1 { all.remove(0) } else { Filter::And(all) })
}

fn condition(def: &FieldDef, op: &str, value: &Gql) -> Result<Condition> {
    let one = |value: &Gql| normalize(def, input(value));
    let many = |value: &Gql| -> Result<Vec<Value>> {
        match value {
            Gql::List(items) => items.iter().map(&one).collect(),
            other => Ok(vec![one(other)?]),
        }
    };
    let text = |value: &Gql| -> Result<String> {
        match value {
            Gql::String(text) => Ok(text.clone()),
            _ => Err(Error::invalid_field(def.name.clone(), format!("'{op}' takes text"))),
        }
    };
    Ok(match op {
        "eq" => Condition::Eq(one(value)?),
        "neq" => Condition::Neq(one(value)?),
        "in" => Condition::In(many(value)?),
        "nin" => Condition::Nin(many(value)?),
        "gt" => Condition::Gt(one(value)?),
        "gte" => Condition::Gte(one(value)?),
        "lt" => Condition::Lt(one(value)?),
        "lte" => Condition::Lte(one(value)?),
        "contains" => Condition::Contains(text(value)?),
        "startsWith" => Condition::StartsWith(text(value)?),
        "endsWith" => Condition::EndsWith(text(value)?),
        "isNull" => Condition::IsNull(match value {
            Gql::Boolean(flag) => *flag,
            _ => true,
        }),
        other => return Err(Error::invalid(format!("unknown filter operator '{other}'"))),
    })
}

/// Parses `orderBy: [{ field: FIELD, direction: ASC|DESC }]`.
pub fn order_by(object: &ObjectDef, value: &Gql) -> Result<Vec<Sort>> {
    let mut sort = Vec::new();
    let items: Vec<&Gql> = match value {
        Gql::List(items) => items.iter().collect(),
        other => vec![other],
    };
    for item in items {
        let Gql::Object(item) = item else { return Err(Error::invalid("orderBy takes { field, direction }")) };
        let field = match item.get("field") {
            Some(Gql::Enum(name)) => name.to_ascii_lowercase(),
            Some(Gql::String(name)) => name.to_ascii_lowercase(),
            _ => return Err(Error::invalid("orderBy needs a field")),
        };
        if field_def(object, &field).is_none() {
            return Err(Error::invalid(format!("{} has no field '{}'", object.name, camel(&field))));
        }
        // An enum literal in the query, a string when it came in a variable.
        let descending = match item.get("direction") {
            Some(Gql::Enum(name)) => name.as_str() == "DESC",
            Some(Gql::String(name)) => name == "DESC",
            _ => false,
        };
        sort.push(Sort { field, descending });
    }
    Ok(sort)
}
