//! Field values as the kernel stores them, and the record type.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::RecordId;

/// One field value. Date-times are milliseconds since the Unix epoch (UTC);
/// dates are `YYYY-MM-DD` text, which sorts correctly as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Id(RecordId),
    List(Vec<String>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as plain JSON (ids as text, date-times as milliseconds).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(flag) => serde_json::json!(flag),
            Value::Int(int) => serde_json::json!(int),
            Value::Float(float) => serde_json::json!(float),
            Value::Text(text) => serde_json::json!(text),
            Value::Id(id) => serde_json::json!(id.to_string()),
            Value::List(items) => serde_json::json!(items),
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }
    pub fn as_id(&self) -> Option<RecordId> {
        match self {
            Value::Id(id) => Some(*id),
            _ => None,
        }
    }

    /// The total order used for sorting and range filters. Values of one field
    /// always have one type, so cross-type comparisons only order nulls.
    pub fn compare(&self, other: &Value) -> Ordering {
        use Value::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Greater,
            (_, Null) => Ordering::Less,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Int(a), Float(b)) => (*a as f64).total_cmp(b),
            (Float(a), Int(b)) => a.total_cmp(&(*b as f64)),
            (Text(a), Text(b)) => a.cmp(b),
            (Id(a), Id(b)) => a.cmp(b),
            (List(a), List(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 9,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Text(_) => 3,
            Value::Id(_) => 4,
            Value::List(_) => 5,
        }
    }
}

/// A record of any object: kernel-owned bookkeeping plus the field map.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: RecordId,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    pub fields: BTreeMap<String, Value>,
}

impl Record {
    pub fn get(&self, field: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.fields.get(field).unwrap_or(&NULL)
    }

    /// The value of a field including the kernel-owned ones, used by filters
    /// and sorting.
    pub fn value_of(&self, field: &str) -> Value {
        match field {
            "id" => Value::Id(self.id),
            "version" => Value::Int(self.version as i64),
            "created_at" => Value::Int(self.created_at),
            "updated_at" => Value::Int(self.updated_at),
            "deleted_at" => self.deleted_at.map(Value::Int).unwrap_or(Value::Null),
            other => self.get(other).clone(),
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}
