//! Identifier newtypes. Ids are ULIDs: time-ordered, so creation order is key
//! order in every table keyed by them.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The id of a record in a tenant's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordId(pub u128);

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

fn next_ulid() -> ulid::Ulid {
    let mut guard = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // Overflow happens only after 2^80 ids in one millisecond; fall back to a
    // fresh random id rather than fail a write.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

impl RecordId {
    /// A new id, strictly greater than every id this process made before.
    pub fn generate() -> Self {
        RecordId(next_ulid().0)
    }
    pub fn parse(text: &str) -> Result<Self> {
        ulid::Ulid::from_string(text)
            .map(|ulid| RecordId(ulid.0))
            .map_err(|_| Error::invalid(format!("'{}' is not a valid id", truncate(text, 40))))
    }
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        RecordId(u128::from_be_bytes(bytes))
    }
    /// Milliseconds since the epoch encoded in the id.
    pub fn timestamp_ms(self) -> u64 {
        ulid::Ulid(self.0).timestamp_ms()
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ulid::Ulid(self.0))
    }
}

/// The id of a tenant: its own database file is `tenants/<id>.redb`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TenantId(String);

impl TenantId {
    pub fn generate() -> Self {
        TenantId(next_ulid().to_string().to_lowercase())
    }
    pub fn parse(text: &str) -> Result<Self> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(TenantId(text.to_string()))
        } else {
            Err(Error::invalid(format!("'{}' is not a valid tenant id", truncate(text, 40))))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let ids: Vec<RecordId> = (0..1000).map(|_| RecordId::generate()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        let text = ids[7].to_string();
        assert_eq!(RecordId::parse(&text).unwrap(), ids[7]);
        assert!(RecordId::parse("nope").is_err());
    }
}
