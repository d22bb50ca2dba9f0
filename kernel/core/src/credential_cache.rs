//! Bearer tokens already resolved, so that a request does not read the
//! system database three times (key or session, tenant, role) to learn who
//! is calling. An entry serves only while the system database is at the
//! generation it was read at — every write there that can change an
//! identity (a revoked key, a changed role, a disabled user, a suspended or
//! deleted tenant; all but the record of a key's last use) moves it on —
//! and only before the credential's own expiry.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::access::Access;
use crate::identity::Identity;

/// Entries kept at most; a full cache drops what is out of date, and
/// starts over if that is not enough.
const CAPACITY: usize = 4096;

struct Entry {
    generation: u64,
    identity: Identity,
    access: Access,
}

/// Resolved tokens by their SHA-256 (the tokens themselves are not kept).
#[derive(Default)]
pub(crate) struct CredentialCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl CredentialCache {
    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The identity and access resolved for `key` at `generation`, unless
    /// the credential has expired by `now`.
    pub(crate) fn get(&self, key: &[u8; 32], generation: u64, now: i64) -> Option<(Identity, Access)> {
        let entries = self.lock();
        let entry = entries.get(key)?;
        let live = entry.generation == generation && entry.identity.expires_at.is_none_or(|at| now < at);
        live.then(|| (entry.identity.clone(), entry.access.clone()))
    }

    /// Keeps what was resolved for `key` from records read at `generation`
    /// (noted before reading them).
    pub(crate) fn put(&self, key: [u8; 32], generation: u64, identity: &Identity, access: &Access) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            // Only entries of the newest generation can still serve.
            let newest = entries.values().map(|entry| entry.generation).fold(generation, u64::max);
            entries.retain(|_, entry| entry.generation == newest);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, Entry { generation, identity: identity.clone(), access: access.clone() });
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // The map is valid after any panic: entries are inserted whole.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
