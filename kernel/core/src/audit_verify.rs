//! Verification of a tenant's audit chain, as stored: entries are numbered
//! from 1 without gaps, each one's `prev_hash` is the previous entry's
//! `hash` (zeros for the first), and each one's `hash` is what its content
//! hashes to.
//!
//! The chain shows that no entry was changed, inserted or removed before
//! the newest one. It cannot show that entries were cut from the end:
//! nothing outside the tenant file records the head.

use std::fmt;
use std::path::Path;

use redb::{ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable};

use crate::audit::AuditEntry;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{AUDIT, Reader, open_database};

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries that verified, counted from seq 1 up to the first broken one.
    pub verified: u64,
    /// The first entry that fails verification; `None` when the chain is intact.
    pub broken: Option<AuditBreak>,
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// The first entry of a chain that fails, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBreak {
    pub seq: u64,
    pub problem: AuditProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditProblem {
    /// No entry is stored under this sequence number; `next` is the next one stored.
    Missing { next: u64 },
    /// An entry is stored under a sequence number the chain cannot have (0).
    OutOfSequence { expected: u64 },
    /// The stored bytes do not decode as an audit entry.
    Undecodable { reason: String },
    /// The entry carries another sequence number than the one it is stored under.
    SeqMismatch { stored: u64 },
    /// The entry's content does not hash to its stored hash: it was altered.
    HashMismatch { stored: [u8; 32], computed: [u8; 32] },
    /// The entry's `prev_hash` is not the hash of the entry before it.
    PrevHashMismatch { stored: [u8; 32], expected: [u8; 32] },
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::Missing { next } => write!(f, "entry is missing (the next stored entry is {next})"),
            AuditProblem::OutOfSequence { expected } => {
                write!(f, "entry is stored out of sequence (expected entry {expected})")
            }
            AuditProblem::Undecodable { reason } => write!(f, "stored bytes are not an audit entry: {reason}"),
            AuditProblem::SeqMismatch { stored } => write!(f, "entry is stored under this number but says it is entry {stored}"),
            AuditProblem::HashMismatch { stored, computed } => write!(
                f,
                "content does not match its hash (stored {}, computed {}): the entry was altered",
                hex::encode(stored),
                hex::encode(computed)
            ),
            AuditProblem::PrevHashMismatch { stored, expected } => write!(
                f,
                "prev_hash {} is not the hash of the previous entry ({}): this entry or the previous one was altered",
                hex::encode(stored),
                hex::encode(expected)
            ),
        }
    }
}

impl fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}: {}", self.seq, self.problem)
    }
}

/// Walks a chain entry by entry, in stored order.
struct ChainCheck {
    expected_seq: u64,
    prev_hash: [u8; 32],
}

impl ChainCheck {
    fn new() -> Self {
        ChainCheck { expected_seq: 1, prev_hash: [0; 32] }
    }

    fn verified(&self) -> u64 {
        self.expected_seq - 1
    }

    /// Checks the entry stored under `key`; on success it becomes the
    /// predecessor of the next one.
    fn check(&mut self, key: u64, bytes: &[u8]) -> Result<(), AuditBreak> {
        let expected = self.expected_seq;
        if key > expected {
            return Err(AuditBreak { seq: expected, problem: AuditProblem::Missing { next: key } });
        }
        if key < expected {
            return Err(AuditBreak { seq: key, problem: AuditProblem::OutOfSequence { expected } });
        }
        let broken = |problem| AuditBreak { seq: key, problem };
        let entry: AuditEntry =
            postcard::from_bytes(bytes).map_err(|error| broken(AuditProblem::Undecodable { reason: error.to_string() }))?;
        if entry.seq != key {
            return Err(broken(AuditProblem::SeqMismatch { stored: entry.seq }));
        }
        let computed = entry.compute_hash();
        if computed != entry.hash {
            return Err(broken(AuditProblem::HashMismatch { stored: entry.hash, computed }));
        }
        if entry.prev_hash != self.prev_hash {
            return Err(broken(AuditProblem::PrevHashMismatch { stored: entry.prev_hash, expected: self.prev_hash }));
        }
        self.expected_seq += 1;
        self.prev_hash = entry.hash;
        Ok(())
    }
}

/// Verifies stored entries given as (key, bytes) in key order.
pub fn verify_entries<'a>(entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> AuditReport {
    let mut chain = ChainCheck::new();
    for (key, bytes) in entries {
        if let Err(broken) = chain.check(key, bytes) {
            return AuditReport { verified: chain.verified(), broken: Some(broken) };
        }
    }
    AuditReport { verified: chain.verified(), broken: None }
}

/// Verifies the audit table of a snapshot. Storage failures are errors;
/// a damaged chain is a report.
fn verify_in(txn: &ReadTransaction) -> Result<AuditReport> {
    let table = match txn.open_table(AUDIT) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(AuditReport { verified: 0, broken: None }),
        Err(error) => return Err(error.into()),
    };
    let mut chain = ChainCheck::new();
    for item in table.iter()? {
        let (key, bytes) = item?;
        if let Err(broken) = chain.check(key.value(), bytes.value()) {
            return Ok(AuditReport { verified: chain.verified(), broken: Some(broken) });
        }
    }
    Ok(AuditReport { verified: chain.verified(), broken: None })
}

impl Reader<'_> {
    /// Verifies the whole audit chain in this snapshot.
    pub fn verify_audit(&self) -> Result<AuditReport> {
        verify_in(self.txn())
    }
}

/// Verifies the audit chain of a tenant file that no store has open. The
/// file is opened read-only and no writer starts, so verifying changes
/// nothing; a file left unclean by a crash is opened for writing once so
/// redb can repair it.
pub fn verify_file(path: &Path) -> Result<AuditReport> {
    match ReadOnlyDatabase::open(path) {
        Ok(db) => verify_in(&db.begin_read()?),
        Err(redb::DatabaseError::RepairAborted) => verify_in(&open_database(path, 16 * 1024 * 1024)?.begin_read()?),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::new(
            ErrorKind::Unavailable,
            format!("{} is in use by another process (is `crm serve` running on this data directory?)", path.display()),
        )),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, ChangeOp, FieldChange};
    use crate::ids::RecordId;
    use crate::value::Value;

    /// A valid chain of `n` encoded entries, keyed by seq.
    fn chain(n: u64) -> Vec<(u64, Vec<u8>)> {
        let mut prev_hash = [0; 32];
        (1..=n)
            .map(|seq| {
                let mut entry = entry(seq, prev_hash);
                entry.hash = entry.compute_hash();
                prev_hash = entry.hash;
                (seq, encode(&entry))
            })
            .collect()
    }

    fn entry(seq: u64, prev_hash: [u8; 32]) -> AuditEntry {
        AuditEntry {
            seq,
            at: 1_700_000_000_000 + seq as i64,
            actor: Actor::cli(),
            request_id: Some(format!("request-{seq}")),
            object: "contact".into(),
            record_id: RecordId::generate(),
            op: ChangeOp::Updated,
            diff: vec![FieldChange { field: "first_name".into(), before: Value::Null, after: Value::Text(format!("Ada {seq}")) }],
            prev_hash,
            hash: [0; 32],
        }
    }

    fn encode(entry: &AuditEntry) -> Vec<u8> {
        postcard::to_stdvec(entry).expect("encode entry")
    }

    fn decode(bytes: &[u8]) -> AuditEntry {
        postcard::from_bytes(bytes).expect("decode entry")
    }

    fn verify(entries: &[(u64, Vec<u8>)]) -> AuditReport {
        verify_entries(entries.iter().map(|(key, bytes)| (*key, bytes.as_slice())))
    }

    /// Rewrites entry `seq` with `change` applied, keeping its stored hash.
    fn tamper(entries: &mut [(u64, Vec<u8>)], seq: u64, change: impl FnOnce(&mut AuditEntry)) {
        let slot = &mut entries[seq as usize - 1].1;
        let mut entry = decode(slot);
        change(&mut entry);
        *slot = encode(&entry);
    }

    fn broken_at(report: &AuditReport) -> (u64, &AuditProblem) {
        let broken = report.broken.as_ref().unwrap_or_else(|| panic!("expected a broken chain, got {report:?}"));
        (broken.seq, &broken.problem)
    }

    #[test]
    fn an_intact_chain_counts_every_entry() {
        assert_eq!(verify(&chain(5)), AuditReport { verified: 5, broken: None });
        assert_eq!(verify(&[]), AuditReport { verified: 0, broken: None });
    }

    #[test]
    fn an_altered_field_breaks_its_own_entry() {
        let mut entries = chain(5);
        tamper(&mut entries, 3, |entry| entry.actor = Actor("api-key:someone-else".into()));
        let report = verify(&entries);
        assert_eq!(report.verified, 2);
        assert!(matches!(broken_at(&report), (3, AuditProblem::HashMismatch { .. })), "{report:?}");
    }

    #[test]
    fn an_altered_and_rehashed_entry_breaks_the_next_link() {
        let mut entries = chain(5);
        tamper(&mut entries, 2, |entry| {
            entry.diff.clear();
            entry.hash = entry.compute_hash();
        });
        let report = verify(&entries);
        assert_eq!(report.verified, 2);
        assert!(matches!(broken_at(&report), (3, AuditProblem::PrevHashMismatch { .. })), "{report:?}");
    }

    #[test]
    fn every_single_byte_change_is_caught_at_its_entry() {
        let clean = chain(3);
        for index in 0..clean[1].1.len() {
            let mut entries = clean.clone();
            entries[1].1[index] ^= 0x01;
            let report = verify(&entries);
            let (seq, _) = broken_at(&report);
            assert_eq!(seq, 2, "byte {index}: {report:?}");
            assert_eq!(report.verified, 1);
        }
    }

    #[test]
    fn a_removed_entry_is_named() {
        let mut entries = chain(4);
        entries.remove(1);
        let report = verify(&entries);
        assert_eq!(report.verified, 1);
        assert_eq!(broken_at(&report), (2, &AuditProblem::Missing { next: 3 }));
    }

    #[test]
    fn an_entry_claiming_another_number_is_caught() {
        let mut entries = chain(3);
        tamper(&mut entries, 2, |entry| {
            entry.seq = 7;
            entry.hash = entry.compute_hash();
        });
        assert_eq!(broken_at(&verify(&entries)), (2, &AuditProblem::SeqMismatch { stored: 7 }));
    }

    #[test]
    fn numbering_starts_at_one() {
        let mut entries = chain(2);
        entries.insert(0, (0, entries[0].1.clone()));
        assert_eq!(broken_at(&verify(&entries)), (0, &AuditProblem::OutOfSequence { expected: 1 }));
        let report = verify(&chain(3)[1..]);
        assert_eq!(broken_at(&report), (1, &AuditProblem::Missing { next: 2 }));
    }

    #[test]
    fn garbage_is_undecodable() {
        let mut entries = chain(2);
        entries[1].1.truncate(3);
        assert!(matches!(broken_at(&verify(&entries)), (2, AuditProblem::Undecodable { .. })));
    }

    #[test]
    fn a_store_verifies_its_chain_and_a_tampered_file_is_named() {
        use crate::store::{StoreOptions, TenantStore};
        use crate::writer::{Mutation, WriteRequest};
        use crate::{Kernel, TenantId};

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tenant.redb");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        {
            let store = TenantStore::open(&path, TenantId::parse("t1").expect("tenant id"), Kernel::standard_metadata(), &StoreOptions::default())
                .expect("open store");
            for n in 0..4 {
                let fields = [("first_name".to_string(), Value::Text(format!("Ada {n}")))].into();
                runtime
                    .block_on(store.write(WriteRequest::new(Actor::cli(), vec![Mutation::Create { object: "contact".into(), fields }])))
                    .expect("write");
            }
            let report = store.reader().expect("reader").verify_audit().expect("verify");
            assert!(report.is_intact(), "{report:?}");
            assert!(report.verified >= 4, "{report:?}");
        }
        let intact = verify_file(&path).expect("verify file");
        assert!(intact.is_intact(), "{intact:?}");

        // Change one entry's diff in place, keeping its stored hash.
        let target = intact.verified - 1;
        {
            let db = redb::Database::open(&path).expect("open file");
            let txn = db.begin_write().expect("write txn");
            {
                let mut table = txn.open_table(AUDIT).expect("audit table");
                let mut entry = decode(table.get(target).expect("get").expect("entry").value());
                entry.diff[0].after = Value::Text("Mallory".into());
                table.insert(target, encode(&entry).as_slice()).expect("insert");
            }
            txn.commit().expect("commit");
        }
        let report = verify_file(&path).expect("verify file");
        assert_eq!(report.verified, target - 1);
        assert!(matches!(broken_at(&report), (seq, AuditProblem::HashMismatch { .. }) if seq == target), "{report:?}");
    }
}
