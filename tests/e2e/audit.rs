//! `crm audit verify`: an intact chain is counted; an entry altered in the
//! tenant's redb file behind the kernel's back is named.

use crm_core::{Actor, AuditEntry};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde_json::json;

use crate::support::{Server, crm, data_dir, stderr, stdout};

/// The audit table of a tenant file, as the kernel stores it: seq → postcard entry.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// Runs `crm audit verify --tenant default`; (success, stdout, stderr).
async fn verify(dir: &std::path::Path) -> (bool, String, String) {
    let output = crm(dir, &["audit", "verify", "--tenant", "default"]).await;
    (output.status.success(), stdout(&output), stderr(&output))
}

/// Replaces the stored bytes of entry `seq`; returns what was there.
fn rewrite(file: &std::path::Path, seq: u64, change: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let db = redb::Database::open(file).expect("open the tenant file");
    let txn = db.begin_write().expect("write transaction");
    let original = {
        let mut table = txn.open_table(AUDIT).expect("audit table");
        let original = table.get(seq).expect("read entry").expect("the entry exists").value().to_vec();
        table.insert(seq, change(&original).as_slice()).expect("write entry");
        original
    };
    txn.commit().expect("commit");
    original
}

fn entry_count(file: &std::path::Path) -> u64 {
    let db = redb::Database::open(file).expect("open the tenant file");
    let txn = db.begin_read().expect("read transaction");
    txn.open_table(AUDIT).expect("audit table").len().expect("count entries")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_an_entry_altered_in_the_file() {
    let dir = data_dir();
    let server = Server::start_in(dir.path(), &[]).await;
    for name in ["Ada", "Grace", "Edsger"] {
        server.ok("mutation($f: String!) { createContact(input: {firstName: $f}) { id } }", json!({ "f": name })).await;
    }
    let id = server.ok("{ contacts(first: 1) { edges { node { id } } } }", json!({})).await["contacts"]["edges"][0]["node"]["id"]
        .as_str()
        .expect("a contact id")
        .to_string();
    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {title: \"Dr\"}) { id } }", json!({ "id": id })).await;
    let file = dir.path().join("tenants").join(format!("{}.redb", server.only_tenant_id()));
    server.kill9().await;

    let entries = entry_count(&file);
    assert!(entries >= 4, "expected at least 4 audit entries, found {entries}");
    let (ok, out, err) = verify(dir.path()).await;
    assert!(ok, "verify failed on an intact chain: {err}");
    assert!(out.contains(&format!("intact: {entries} entries verified")), "{out}");

    // One byte changed in the middle of an entry's stored value.
    let flipped = entries - 1;
    let original = rewrite(&file, flipped, |bytes| {
        let mut bytes = bytes.to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        bytes
    });
    let (ok, out, err) = verify(dir.path()).await;
    assert!(!ok, "verify passed a changed byte: {out}");
    assert!(err.contains(&format!("broken at entry {flipped}:")), "{err}");
    assert!(err.contains(&format!("({} entries before it verified)", flipped - 1)), "{err}");
    rewrite(&file, flipped, |_| original);
    assert!(verify(dir.path()).await.0, "the restored chain verifies again");

    // An entry re-encoded with another actor, its stored hash kept.
    let forged = 2;
    rewrite(&file, forged, |bytes| {
        let mut entry: AuditEntry = postcard::from_bytes(bytes).expect("decode entry");
        entry.actor = Actor("api-key:someone-else".into());
        postcard::to_stdvec(&entry).expect("encode entry")
    });
    let (ok, out, err) = verify(dir.path()).await;
    assert!(!ok, "verify passed a forged actor: {out}");
    assert!(err.contains(&format!("broken at entry {forged}: content does not match its hash")), "{err}");
    assert!(err.contains("the entry was altered"), "{err}");
}
