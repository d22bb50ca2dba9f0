//! Sealing of personal values in audit entries (crypto-shredding).
//!
//! Records of the objects that describe a person ([`PERSONAL_OBJECTS`]) each
//! get a random 256-bit key on their first audited change, kept in the
//! tenant's `record_keys` table. The writer seals every value of their
//! audit diffs with that key (AES-256-GCM, a random nonce per value, bound
//! to object, record and field), and the entry's hash covers the sealed
//! form. Erasing a person deletes the keys of their records: the sealed
//! values can no longer be opened, while every entry, its hash and the
//! chain stay exactly as they were.
//!
//! A sealed value is stored as text: [`SEALED_PREFIX`] (it begins with a NUL
//! character, which `normalize` refuses in any input) followed by the
//! base64 of nonce and ciphertext. The plaintext is the postcard encoding
//! of the original [`Value`], so it opens to the same type.
//!
//! Format versions, all of which open:
//! - `\0sealed:2:` — AES-256-GCM, what the writer seals with. With the key
//!   schedule made once per record ([`RecordKey::sealer`]), a value costs
//!   a few hundred nanoseconds.
//! - `\0sealed:1:` — ChaCha20-Poly1305, written by earlier releases. Its
//!   one-time Poly1305 key per value cost about 2 µs a value, a large share
//!   of a personal record's write.

use aes_gcm::Aes256Gcm;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use rand::Rng;

use crate::error::{Error, Result};
use crate::ids::RecordId;
use crate::value::Value;

/// Objects whose records hold personal data: the values of their audit
/// diffs are sealed with a key per record. Other objects keep plain values.
pub const PERSONAL_OBJECTS: [&str; 2] = ["contact", "activity"];

/// How every sealed value begins, whatever its format version. No input
/// text can begin like this: `normalize` refuses text that starts with NUL.
pub const SEALED_MARK: &str = "\0sealed:";

/// How a value sealed now begins (format version 2, AES-256-GCM).
pub const SEALED_PREFIX: &str = "\0sealed:2:";

/// Format version 1 (ChaCha20-Poly1305), still opened.
const SEALED_PREFIX_V1: &str = "\0sealed:1:";

const NONCE_BYTES: usize = 12;

/// Whether the audit values of `object`'s records are sealed.
pub fn is_personal(object: &str) -> bool {
    PERSONAL_OBJECTS.contains(&object)
}

/// Whether `value` is a sealed value (one whose key may be gone).
pub fn is_sealed(value: &Value) -> bool {
    value.as_text().is_some_and(|text| text.starts_with(SEALED_MARK))
}

/// The `record_keys` table key of a record: `object \0 id`.
pub(crate) fn key_id(object: &str, id: RecordId) -> Vec<u8> {
    let mut out = Vec::with_capacity(object.len() + 17);
    out.extend_from_slice(object.as_bytes());
    out.push(0);
    out.extend_from_slice(&id.to_bytes());
    out
}

/// What a sealed value is bound to, so it cannot be moved to another
/// record or field: `object \0 id \0 field`.
fn associated_data(object: &str, id: RecordId, field: &str) -> Vec<u8> {
    let mut out = key_id(object, id);
    out.push(0);
    out.extend_from_slice(field.as_bytes());
    out
}

/// The key that seals the audit values of one record.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordKey([u8; 32]);

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(..)")
    }
}

impl RecordKey {
    /// A new random key.
    pub fn generate() -> RecordKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        RecordKey(bytes)
    }

    /// A key as stored; `None` when the bytes are not a key.
    pub fn from_bytes(bytes: &[u8]) -> Option<RecordKey> {
        <[u8; 32]>::try_from(bytes).ok().map(RecordKey)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The sealer of this key: the cipher's key schedule made once, for
    /// all the values of one record's audit diff.
    pub fn sealer(&self) -> Sealer {
        Sealer(Aes256Gcm::new(self.0.as_slice().into()))
    }

    /// Seals one value; see [`Sealer::seal`]. Sealing several values of a
    /// record is cheaper through one [`RecordKey::sealer`].
    pub fn seal(&self, object: &str, id: RecordId, field: &str, value: &Value) -> Result<Value> {
        self.sealer().seal(object, id, field, value)
    }

    /// Opens a value sealed with this key for the same record and field,
    /// in any format version. `None` when `value` is not sealed, or not
    /// with this key for this place (altered, moved or sealed by another
    /// key).
    pub fn open(&self, object: &str, id: RecordId, field: &str, value: &Value) -> Option<Value> {
        let text = value.as_text()?;
        let (encoded, version) = match text.strip_prefix(SEALED_PREFIX) {
            Some(encoded) => (encoded, 2),
            None => (text.strip_prefix(SEALED_PREFIX_V1)?, 1),
        };
        let sealed = STANDARD_NO_PAD.decode(encoded).ok()?;
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let aad = associated_data(object, id, field);
        let payload = Payload { msg: ciphertext, aad: &aad };
        let plaintext = match version {
            2 => Aes256Gcm::new(self.0.as_slice().into()).decrypt(nonce.into(), payload),
            _ => ChaCha20Poly1305::new(self.0.as_slice().into()).decrypt(nonce.into(), payload),
        }
        .ok()?;
        postcard::from_bytes(&plaintext).ok()
    }
}

/// Seals values with one record's key (format version 2).
pub struct Sealer(Aes256Gcm);

impl Sealer {
    /// Seals `value` of `field` of record `object`/`id`. Null stays null:
    /// it holds nothing to hide.
    pub fn seal(&self, object: &str, id: RecordId, field: &str, value: &Value) -> Result<Value> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let plaintext = postcard::to_stdvec(value)?;
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill(&mut nonce);
        let aad = associated_data(object, id, field);
        let ciphertext = self
            .0
            .encrypt(nonce.as_slice().into(), Payload { msg: &plaintext, aad: &aad })
            .map_err(|_| Error::internal("sealing an audit value failed"))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        let mut text = String::with_capacity(SEALED_PREFIX.len() + (sealed.len() * 4).div_ceil(3));
        text.push_str(SEALED_PREFIX);
        STANDARD_NO_PAD.encode_string(&sealed, &mut text);
        Ok(Value::Text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_to_the_same_value_and_type() {
        let key = RecordKey::generate();
        let id = RecordId::generate();
        for value in [
            Value::Text("ada@example.com".into()),
            Value::Int(42),
            Value::Bool(true),
            Value::Float(1.5),
            Value::Id(RecordId::generate()),
            Value::List(vec!["a".into(), "b".into()]),
        ] {
            let sealed = key.seal("contact", id, "email", &value).expect("seal");
            assert!(is_sealed(&sealed), "{sealed:?}");
            assert_ne!(sealed, value);
            assert_eq!(key.open("contact", id, "email", &sealed), Some(value));
        }
        assert_eq!(key.seal("contact", id, "email", &Value::Null).expect("seal"), Value::Null);
    }

    #[test]
    fn the_plaintext_does_not_appear_and_each_seal_differs() {
        let key = RecordKey::generate();
        let id = RecordId::generate();
        let value = Value::Text("grace.hopper@example.com".into());
        let first = key.seal("contact", id, "email", &value).expect("seal");
        let second = key.seal("contact", id, "email", &value).expect("seal");
        assert_ne!(first, second, "a random nonce per value");
        assert!(!first.as_text().unwrap_or_default().contains("grace"));
    }

    #[test]
    fn another_key_record_or_field_cannot_open_it() {
        let key = RecordKey::generate();
        let id = RecordId::generate();
        let sealed = key.seal("contact", id, "email", &Value::Text("ada@example.com".into())).expect("seal");
        assert_eq!(RecordKey::generate().open("contact", id, "email", &sealed), None);
        assert_eq!(key.open("contact", RecordId::generate(), "email", &sealed), None);
        assert_eq!(key.open("contact", id, "phone", &sealed), None);
        assert_eq!(key.open("activity", id, "email", &sealed), None);
        let mut altered = sealed.as_text().unwrap_or_default().to_string();
        let last = altered.pop();
        altered.push(if last == Some('A') { 'B' } else { 'A' });
        assert_eq!(key.open("contact", id, "email", &Value::Text(altered)), None);
        assert_eq!(key.open("contact", id, "email", &Value::Text("plain".into())), None);
    }

    /// A value as releases before format version 2 sealed it.
    fn seal_v1(key: &RecordKey, object: &str, id: RecordId, field: &str, value: &Value) -> Value {
        let plaintext = postcard::to_stdvec(value).expect("encode");
        let nonce = [7u8; NONCE_BYTES];
        let aad = associated_data(object, id, field);
        let ciphertext = ChaCha20Poly1305::new(key.as_bytes().into())
            .encrypt(nonce.as_slice().into(), Payload { msg: &plaintext, aad: &aad })
            .expect("seal");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Value::Text(format!("{SEALED_PREFIX_V1}{}", STANDARD_NO_PAD.encode(sealed)))
    }

    #[test]
    fn values_sealed_by_earlier_releases_still_open() {
        let key = RecordKey::generate();
        let id = RecordId::generate();
        let value = Value::Text("ada@example.com".into());
        let old = seal_v1(&key, "contact", id, "email", &value);
        assert!(is_sealed(&old));
        assert_eq!(key.open("contact", id, "email", &old), Some(value.clone()));
        assert_eq!(key.open("contact", id, "phone", &old), None);
        assert_eq!(RecordKey::generate().open("contact", id, "email", &old), None);
        // The version names the cipher: the same bytes under the other
        // version's prefix do not open.
        let relabelled = old.as_text().unwrap_or_default().replacen(SEALED_PREFIX_V1, SEALED_PREFIX, 1);
        assert_eq!(key.open("contact", id, "email", &Value::Text(relabelled)), None);
        let now = key.seal("contact", id, "email", &value).expect("seal");
        assert!(now.as_text().unwrap_or_default().starts_with(SEALED_PREFIX));
    }
}
