//! On-disk encodings: records (versioned, compact) and order-preserving index
//! keys.
//!
//! Record format 1: one format byte, then postcard of [`StoredRecordV1`].
//! Fields are stored by name; a field absent from a stored record reads as
//! null and a stored field no longer in the metadata is ignored, so metadata
//! changes never rewrite records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::RecordId;
use crate::value::{Record, Value};

pub const RECORD_FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct StoredRecordV1 {
    version: u64,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    fields: Vec<(String, Value)>,
}

pub fn encode_record(record: &Record) -> Result<Vec<u8>> {
    let stored = StoredRecordV1 {
        version: record.version,
        created_at: record.created_at,
        updated_at: record.updated_at,
        deleted_at: record.deleted_at,
        fields: record
            .fields
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    };
    let mut out = vec![RECORD_FORMAT];
    postcard::to_io(&stored, &mut out)?;
    Ok(out)
}

pub fn decode_record(id: RecordId, bytes: &[u8]) -> Result<Record> {
    match bytes.split_first() {
        Some((&RECORD_FORMAT, rest)) => {
            let stored: StoredRecordV1 = postcard::from_bytes(rest)?;
            Ok(Record {
                id,
                version: stored.version,
                created_at: stored.created_at,
                updated_at: stored.updated_at,
                deleted_at: stored.deleted_at,
                fields: stored.fields.into_iter().collect::<BTreeMap<_, _>>(),
            })
        }
        Some((format, _)) => Err(Error::internal(format!("record {id} has unknown format {format}"))),
        None => Err(Error::internal(format!("record {id} is empty"))),
    }
}

/// `object \0 field \0`: the prefix of every index key of one field.
pub fn index_prefix(object: &str, field: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(object.len() + field.len() + 2);
    out.extend_from_slice(object.as_bytes());
    out.push(0);
    out.extend_from_slice(field.as_bytes());
    out.push(0);
    out
}

/// Appends an order-preserving, self-delimiting encoding of `value`. Null
/// sorts after every value, as in [`Value::compare`].
pub fn encode_key_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0xff),
        Value::Bool(flag) => {
            out.push(0x01);
            out.push(*flag as u8);
        }
        Value::Int(int) => {
            out.push(0x02);
            out.extend_from_slice(&((*int as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float(float) => {
            out.push(0x03);
            let bits = float.to_bits();
            let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Text(text) => {
            out.push(0x04);
            escape_into(out, text.as_bytes());
        }
        Value::Id(id) => {
            out.push(0x05);
            out.extend_from_slice(&id.to_bytes());
        }
        Value::List(items) => {
            out.push(0x06);
            for item in items {
                escape_into(out, item.as_bytes());
            }
        }
    }
}

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for &byte in bytes {
        if byte == 0 {
            out.extend_from_slice(&[0, 0xff]);
        } else {
            out.push(byte);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

/// The key of one index entry: prefix, value, record id.
pub fn index_key(object: &str, field: &str, value: &Value, id: RecordId) -> Vec<u8> {
    let mut key = index_prefix(object, field);
    encode_key_value(&mut key, value);
    key.extend_from_slice(&id.to_bytes());
    key
}

/// The key under which a unique value maps to its record.
pub fn unique_key(object: &str, field: &str, value: &Value) -> Vec<u8> {
    let mut key = index_prefix(object, field);
    encode_key_value(&mut key, value);
    key
}

/// The record id at the end of an index key.
pub fn id_from_index_key(key: &[u8]) -> Option<RecordId> {
    let start = key.len().checked_sub(16)?;
    let bytes: [u8; 16] = key[start..].try_into().ok()?;
    Some(RecordId::from_bytes(bytes))
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key_value(&mut out, value);
        out
    }

    proptest! {
        #[test]
        fn int_keys_preserve_order(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), key(&Value::Int(a)).cmp(&key(&Value::Int(b))));
        }

        #[test]
        fn float_keys_preserve_order(a in proptest::num::f64::NORMAL | proptest::num::f64::ZERO, b in proptest::num::f64::NORMAL) {
            prop_assert_eq!(a.total_cmp(&b), key(&Value::Float(a)).cmp(&key(&Value::Float(b))));
        }

        #[test]
        fn text_keys_preserve_order_and_delimit(a in ".{0,12}", b in ".{0,12}", id: u128) {
            prop_assert_eq!(a.as_bytes().cmp(b.as_bytes()), key(&Value::Text(a.clone())).cmp(&key(&Value::Text(b.clone()))));
            // A longer text never falls inside the range of a shorter one's prefix.
            let full = index_key("o", "f", &Value::Text(a.clone()), RecordId(id));
            let prefix = unique_key("o", "f", &Value::Text(a.clone()));
            prop_assert!(full.starts_with(&prefix));
            if a != b {
                let other = unique_key("o", "f", &Value::Text(b.clone()));
                prop_assert!(!full.starts_with(&other));
            }
            prop_assert_eq!(id_from_index_key(&full), Some(RecordId(id)));
        }

        #[test]
        fn records_round_trip(version: u64, created: i64, text in ".{0,30}", int: i64, float: f64) {
            let mut fields = BTreeMap::new();
            fields.insert("t".to_string(), Value::Text(text));
            fields.insert("i".to_string(), Value::Int(int));
            fields.insert("f".to_string(), Value::Float(float));
            let record = Record { id: RecordId(7), version, created_at: created, updated_at: created, deleted_at: None, fields };
            let decoded = decode_record(RecordId(7), &encode_record(&record).unwrap()).unwrap();
            prop_assert_eq!(decoded.fields.len(), 3);
            prop_assert_eq!(decoded.version, version);
            prop_assert_eq!(decoded.get("t"), record.get("t"));
        }
    }
}
