//! Audit entries and change events. Both are written in the same redb
//! transaction as the record change they describe.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::RecordId;
use crate::value::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOp {
    Created,
    Updated,
    Deleted,
    Restored,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Created => "CREATED",
            ChangeOp::Updated => "UPDATED",
            ChangeOp::Deleted => "DELETED",
            ChangeOp::Restored => "RESTORED",
        }
    }
}

/// Who made a change: `api-key:<prefix>`, `system`, `cli`, later users and
/// `plugin@version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor(pub String);

impl Actor {
    pub fn system() -> Actor {
        Actor("system".into())
    }
    pub fn cli() -> Actor {
        Actor("cli".into())
    }
    pub fn api_key(prefix: &str) -> Actor {
        Actor(format!("api-key:{prefix}"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// One entry of a tenant's append-only audit log. `hash` covers every other
/// field including `prev_hash`, so entries form a chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: i64,
    pub actor: Actor,
    pub request_id: Option<String>,
    pub object: String,
    pub record_id: RecordId,
    pub op: ChangeOp,
    pub diff: Vec<FieldChange>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl AuditEntry {
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut unhashed = self.clone();
        unhashed.hash = [0; 32];
        let bytes = postcard::to_stdvec(&unhashed).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash);
        hasher.update(bytes);
        hasher.finalize().into()
    }
}

/// A committed change, in commit order per tenant: the change feed, the
/// subscription source and (later) the plugin outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub seq: u64,
    pub at: i64,
    pub object: String,
    pub record_id: RecordId,
    pub op: ChangeOp,
    pub version: u64,
}
