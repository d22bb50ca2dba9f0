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
    decode_record_fields(id, bytes, None)
}

/// Decodes a record keeping only the fields `keep` names (all of them
/// when `None`). The others are parsed over without being copied, and are
/// absent from the result: a record decoded this way is for reading those
/// fields, never for writing back.
pub fn decode_record_fields(id: RecordId, bytes: &[u8], keep: Option<&[&str]>) -> Result<Record> {
    match bytes.split_first() {
        Some((&RECORD_FORMAT, rest)) => {
            let mut deserializer = postcard::Deserializer::from_bytes(rest);
            let stored = serde::Deserializer::deserialize_tuple(&mut deserializer, 5, StoredVisitor { keep })?;
            Ok(Record {
                id,
                version: stored.version,
                created_at: stored.created_at,
                updated_at: stored.updated_at,
                deleted_at: stored.deleted_at,
                fields: stored.fields,
            })
        }
        Some((format, _)) => Err(Error::internal(format!("record {id} has unknown format {format}"))),
        None => Err(Error::internal(format!("record {id} is empty"))),
    }
}

/// [`StoredRecordV1`] as decoded, fields straight into the record's map.
struct Decoded {
    version: u64,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    fields: BTreeMap<String, Value>,
}

/// A [`Value`] read in place: what a field not kept is parsed as. Its
/// variants are [`Value`]'s, in the same order, so both read the same bytes.
#[derive(Deserialize)]
#[allow(dead_code)]
enum SkippedValue<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(#[serde(borrow)] RawText<'a>),
    Id(RecordId),
    List(SkippedList),
}

/// A text read in place as its bytes, for comparing or skipping: postcard
/// writes a string as its length and its UTF-8 bytes, and reading them as
/// bytes leaves out checking that they are UTF-8.
struct RawText<'a>(&'a [u8]);

impl<'de: 'a, 'a> Deserialize<'de> for RawText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Bytes<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Bytes<'a> {
            type Value = RawText<'a>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a text")
            }

            fn visit_borrowed_bytes<E: serde::de::Error>(self, bytes: &'de [u8]) -> std::result::Result<RawText<'a>, E> {
                Ok(RawText(bytes))
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> std::result::Result<RawText<'a>, E> {
                Ok(RawText(text.as_bytes()))
            }
        }
        deserializer.deserialize_bytes(Bytes(std::marker::PhantomData))
    }
}

/// A list of texts parsed over.
struct SkippedList;

impl<'de> Deserialize<'de> for SkippedList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Texts;
        impl<'de> serde::de::Visitor<'de> for Texts {
            type Value = SkippedList;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a list of texts")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<SkippedList, A::Error> {
                while seq.next_element::<RawText<'de>>()?.is_some() {}
                Ok(SkippedList)
            }
        }
        deserializer.deserialize_seq(Texts)
    }
}

/// Reads the five members of [`StoredRecordV1`] in order (postcard writes
/// a struct as the tuple of its members).
struct StoredVisitor<'k> {
    keep: Option<&'k [&'k str]>,
}

impl<'de> serde::de::Visitor<'de> for StoredVisitor<'_> {
    type Value = Decoded;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a stored record")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Decoded, A::Error> {
        let missing = || serde::de::Error::custom("stored record too short");
        Ok(Decoded {
            version: seq.next_element()?.ok_or_else(missing)?,
            created_at: seq.next_element()?.ok_or_else(missing)?,
            updated_at: seq.next_element()?.ok_or_else(missing)?,
            deleted_at: seq.next_element()?.ok_or_else(missing)?,
            fields: seq.next_element_seed(FieldsSeed { keep: self.keep })?.ok_or_else(missing)?,
        })
    }
}

/// The `(name, value)` list of a stored record, into a map.
struct FieldsSeed<'k> {
    keep: Option<&'k [&'k str]>,
}

impl<'de> serde::de::DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = BTreeMap<String, Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldsSeed<'_> {
    type Value = BTreeMap<String, Value>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a list of fields")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        // Stored in name order: collected, the map is built in one pass.
        let mut fields = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(field) = seq.next_element_seed(FieldSeed { keep: self.keep })? {
            fields.extend(field);
        }
        Ok(fields.into_iter().collect())
    }
}

/// One `(name, value)` pair: the name is read in place first, and the
/// value copied out only when the name is kept.
struct FieldSeed<'k> {
    keep: Option<&'k [&'k str]>,
}

impl<'de> serde::de::DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<(String, Value)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_tuple(2, self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldSeed<'_> {
    type Value = Option<(String, Value)>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a field name and value")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        let missing = || serde::de::Error::custom("stored field too short");
        let name: RawText<'de> = seq.next_element()?.ok_or_else(missing)?;
        // A kept name is the caller's, byte for byte; only a name taken
        // without a list is checked to be UTF-8.
        let name = match self.keep {
            None => std::str::from_utf8(name.0).map_err(serde::de::Error::custom)?,
            Some(keep) => match keep.iter().find(|kept| kept.as_bytes() == name.0) {
                Some(kept) => *kept,
                None => {
                    let _: SkippedValue<'de> = seq.next_element()?.ok_or_else(missing)?;
                    return Ok(None);
                }
            },
        };
        let value: Value = seq.next_element()?.ok_or_else(missing)?;
        Ok(Some((name.to_owned(), value)))
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

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan()).prop_map(Value::Float),
            ".{0,20}".prop_map(Value::Text),
            any::<u128>().prop_map(|id| Value::Id(RecordId(id))),
            proptest::collection::vec(".{0,6}", 0..4).prop_map(Value::List),
        ]
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
        fn a_record_decodes_as_its_stored_form_and_keeps_what_is_asked(
            fields in proptest::collection::btree_map("[a-e]{1,3}", any_value(), 0..12),
            keep in proptest::collection::vec("[a-e]{1,3}", 0..6),
            deleted in proptest::option::of(any::<i64>()),
        ) {
            let record = Record { id: RecordId(9), version: 3, created_at: -5, updated_at: 8, deleted_at: deleted, fields };
            let bytes = encode_record(&record).unwrap();
            // What serde derives for the stored form reads the same bytes the same way.
            let stored: StoredRecordV1 = postcard::from_bytes(&bytes[1..]).unwrap();
            let decoded = decode_record(RecordId(9), &bytes).unwrap();
            prop_assert_eq!((decoded.version, decoded.created_at, decoded.updated_at, decoded.deleted_at), (3, -5, 8, deleted));
            let stored_fields: BTreeMap<String, Value> = stored.fields.into_iter().collect();
            prop_assert_eq!(&decoded.fields, &stored_fields);
            let expected: BTreeMap<String, Value> =
                record.fields.iter().filter(|(_, value)| !value.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(&decoded.fields, &expected);
            let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
            let some = decode_record_fields(RecordId(9), &bytes, Some(&keep)).unwrap();
            let kept: BTreeMap<String, Value> =
                expected.into_iter().filter(|(name, _)| keep.contains(&name.as_str())).collect();
            prop_assert_eq!(some.fields, kept);
            prop_assert_eq!((some.version, some.deleted_at), (3, deleted));
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
