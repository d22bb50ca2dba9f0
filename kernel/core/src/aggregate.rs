//! Aggregates with group-by over the records a query matches: count, sum,
//! average, minimum and maximum — the data behind pipeline, forecast and
//! helpdesk dashboards.

use std::collections::{BTreeMap, HashMap};

use crate::metadata::{FieldType, ObjectDef};
use crate::value::{Record, Value};

/// Aggregates of one set of records. Sums and averages cover numeric fields;
/// minimum and maximum also cover dates and date-times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub count: u64,
    pub sum: HashMap<String, f64>,
    /// Non-null values seen per field, the divisor of the average.
    pub counted: HashMap<String, u64>,
    pub min: HashMap<String, Value>,
    pub max: HashMap<String, Value>,
}

impl Aggregate {
    pub fn avg(&self, field: &str) -> Option<f64> {
        let count = *self.counted.get(field)?;
        (count > 0).then(|| self.sum.get(field).copied().unwrap_or(0.0) / count as f64)
    }

    fn add(&mut self, record: &Record, numeric: &[&str], ordered: &[&str]) {
        self.count += 1;
        for field in numeric {
            if let Some(number) = record.get(field).as_f64() {
                *self.sum.entry(field.to_string()).or_default() += number;
                *self.counted.entry(field.to_string()).or_default() += 1;
            }
        }
        for field in ordered {
            let value = record.value_of(field);
            if value.is_null() {
                continue;
            }
            let min = self.min.entry(field.to_string()).or_insert_with(|| value.clone());
            if value.compare(min).is_lt() {
                *min = value.clone();
            }
            let max = self.max.entry(field.to_string()).or_insert_with(|| value.clone());
            if value.compare(max).is_gt() {
                *max = value;
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub key: Vec<Value>,
    pub aggregate: Aggregate,
}

/// The fields of an object that sums and averages apply to.
pub fn numeric_fields(object: &ObjectDef) -> Vec<&str> {
    object.fields.iter().filter(|field| field.ty.is_numeric()).map(|field| field.name.as_str()).collect()
}

/// The fields minimum and maximum apply to.
pub fn ordered_fields(object: &ObjectDef) -> Vec<&str> {
    let mut out: Vec<&str> = object
        .fields
        .iter()
        .filter(|field| field.ty.is_numeric() || matches!(field.ty, FieldType::DateTime | FieldType::Date))
        .map(|field| field.name.as_str())
        .collect();
    out.extend(["created_at", "updated_at"]);
    out
}

/// The total over `records` and, when `group_by` is not empty, one group per
/// distinct key, ordered by key.
pub fn aggregate(object: &ObjectDef, records: &[Record], group_by: &[String]) -> (Aggregate, Vec<Group>) {
    let numeric = numeric_fields(object);
    let ordered = ordered_fields(object);
    let mut total = Aggregate::default();
    let mut groups: BTreeMap<Vec<u8>, Group> = BTreeMap::new();
    for record in records {
        total.add(record, &numeric, &ordered);
        if group_by.is_empty() {
            continue;
        }
        let key: Vec<Value> = group_by.iter().map(|field| record.value_of(field)).collect();
        let mut sort_key = Vec::new();
        for value in &key {
            crate::encoding::encode_key_value(&mut sort_key, value);
        }
        groups
            .entry(sort_key)
            .or_insert_with(|| Group { key, aggregate: Aggregate::default() })
            .aggregate
            .add(record, &numeric, &ordered);
    }
    (total, groups.into_values().collect())
}
