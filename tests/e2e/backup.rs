//! `crm backup` against a running server that keeps taking writes, then
//! `crm restore` into a fresh data directory and a server started on it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};

use crate::support::{Server, TIMEOUT, crm, data_dir, stderr, stdout};

const WRITERS: usize = 6;
/// Rate limits off: the writers would otherwise be answered 429.
const UNLIMITED: [&str; 4] = ["--rate-limit-key", "0", "--rate-limit-tenant", "0"];

/// An acknowledged contact: its email and the highest version acknowledged.
type Acked = Arc<Mutex<BTreeMap<String, (String, u64)>>>;

async fn gql(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    query: &str,
    variables: Value,
) -> Value {
    let body = json!({ "query": query, "variables": variables });
    let reply: Value = client
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("POST /graphql")
        .json()
        .await
        .expect("JSON reply");
    assert!(
        reply.get("errors").is_none(),
        "a write failed while the server was up: {reply}"
    );
    reply["data"].clone()
}

/// Creates contacts and updates each once, until told to stop.
async fn writer(
    url: String,
    key: String,
    writer: usize,
    acked: Acked,
    count: Arc<watch::Sender<usize>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client");
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let email = format!("w{writer}-{n}@backup.example");
        let data = gql(
            &client,
            &url,
            &key,
            "mutation($e: String!, $f: String!) { createContact(input: {firstName: $f, email: $e}) { id version } }",
            json!({ "e": email, "f": format!("Writer {writer} #{n}") }),
        )
        .await;
        let id = data["createContact"]["id"]
            .as_str()
            .expect("id")
            .to_string();
        acked.lock().await.insert(id.clone(), (email.clone(), 1));
        count.send_modify(|count| *count += 1);
        let data = gql(
            &client,
            &url,
            &key,
            "mutation($id: ID!, $t: String!) { updateContact(id: $id, input: {title: $t}) { version } }",
            json!({ "id": id, "t": format!("step {n}") }),
        )
        .await;
        let version = data["updateContact"]["version"].as_u64().expect("version");
        acked.lock().await.insert(id, (email, version));
        count.send_modify(|count| *count += 1);
        n += 1;
    }
}

async fn wait_for(count: &watch::Receiver<usize>, target: usize) {
    let mut count = count.clone();
    tokio::time::timeout(TIMEOUT, count.wait_for(|count| *count >= target))
        .await
        .expect("the writers did not reach the count in time")
        .expect("the writers stopped");
}

fn copy_admin_key(from: &Path, to: &Path) {
    // The admin key file is the operator's copy of a secret; the backup
    // holds only its hash, so the key goes with the operator.
    std::fs::copy(from.join("admin-key"), to.join("admin-key")).expect("copy admin-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_busy_server_restores_with_every_acknowledged_write() {
    let dir = data_dir();
    let server = Server::start_in(dir.path(), &UNLIMITED).await;
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    let (count_tx, count_rx) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                server.url(),
                server.key.clone(),
                w,
                acked.clone(),
                count_tx.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_for(&count_rx, 200).await;

    // Mid-stream: everything acknowledged so far must be in the backup.
    let before = acked.lock().await.clone();
    let backups = tempfile::tempdir().expect("temp dir");
    let out = backups.path().join("busy");
    let output = crm(
        dir.path(),
        &["backup", "--out", out.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(
        output.status.success(),
        "backup failed: {}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("by the running server"),
        "{}",
        stdout(&output)
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("backup.json")).expect("read manifest"))
            .expect("manifest is JSON");
    assert_eq!(
        manifest["files"].as_array().map(Vec::len),
        Some(2),
        "{manifest}"
    );

    // The server keeps writing; a write sent after the backup is not in it.
    let after = server
        .ok("mutation { createContact(input: {firstName: \"After\", email: \"after@backup.example\"}) { id } }", json!({}))
        .await["createContact"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let at_end = *count_rx.borrow();
    wait_for(&count_rx, at_end + 100).await;

    // Refusals while the server runs: an occupied output, a restore.
    let again = crm(
        dir.path(),
        &["backup", "--out", out.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("not empty") && stderr(&again).contains("VALIDATION"),
        "{}",
        stderr(&again)
    );
    let refused = crm(
        dir.path(),
        &["restore", out.to_str().expect("utf-8 path"), "--force"],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("server is running"),
        "{}",
        stderr(&refused)
    );

    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("writer hung")
            .expect("writer panicked");
    }
    let written = server.count("contacts").await;
    server.kill9().await;
    // A killed server leaves its socket behind; the CLI then works on the files directly.
    assert!(dir.path().join("control.sock").exists());
    let offline = backups.path().join("offline");
    let output = crm(
        dir.path(),
        &["backup", "--out", offline.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(
        output.status.success(),
        "offline backup failed: {}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("directly"), "{}", stdout(&output));
    // A server started again replaces the stale socket and answers on it.
    let server = Server::start_in(dir.path(), &UNLIMITED).await;
    let online = backups.path().join("online-again");
    let output = crm(
        dir.path(),
        &["backup", "--out", online.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(
        output.status.success(),
        "backup after a restart failed: {}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("by the running server"),
        "{}",
        stdout(&output)
    );
    server.kill9().await;

    // Restore into a fresh data directory.
    let restored = data_dir();
    let output = crm(
        restored.path(),
        &["restore", out.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("tenant 'default'")
            && stdout(&output).contains("audit chain intact"),
        "{}",
        stdout(&output)
    );
    let output = crm(restored.path(), &["audit", "verify", "--tenant", "default"]).await;
    assert!(
        output.status.success(),
        "audit verify failed on the restored data: {}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("is intact"), "{}", stdout(&output));
    let output = crm(
        restored.path(),
        &["restore", out.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(
        !output.status.success(),
        "a second restore into the same directory succeeded"
    );
    assert!(stderr(&output).contains("CONFLICT"), "{}", stderr(&output));

    copy_admin_key(dir.path(), restored.path());
    let server = Server::start_in(restored.path(), &UNLIMITED).await;
    assert!(
        !server
            .startup
            .iter()
            .any(|line| line.starts_with("created tenant")),
        "the tenant was created again: {:?}",
        server.startup
    );
    let ids: Vec<&String> = before.keys().collect();
    let mut found: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let data = server
            .ok("query($ids: [ID!]) { contacts(filter: {id: {in: $ids}}, first: 500) { nodes { id email version } } }", json!({ "ids": chunk }))
            .await;
        for node in data["contacts"]["nodes"].as_array().expect("nodes") {
            let id = node["id"].as_str().expect("id").to_string();
            found.insert(
                id,
                (
                    node["email"].as_str().expect("email").to_string(),
                    node["version"].as_u64().expect("version"),
                ),
            );
        }
    }
    for (id, (email, version)) in &before {
        let (restored_email, restored_version) = found
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged contact {id} is missing after restore"));
        assert_eq!(restored_email, email);
        assert!(
            restored_version >= version,
            "contact {id} is at version {restored_version}, version {version} was acknowledged"
        );
    }
    let missing = server
        .code(
            "query($id: ID!) { contact(id: $id) { id } }",
            json!({ "id": after }),
        )
        .await;
    assert_eq!(
        missing, "NOT_FOUND",
        "a contact written after the backup is in it"
    );
    let restored_count = server.count("contacts").await;
    assert!(
        restored_count >= before.len() as u64 && restored_count < written,
        "{restored_count} contacts restored, {} acknowledged before, {written} written",
        before.len()
    );
    // The restored server takes writes and its chain stays intact.
    server.ok("mutation { createContact(input: {firstName: \"Restored\", email: \"restored@backup.example\"}) { id } }", json!({})).await;
    server.kill9().await;
    let output = crm(restored.path(), &["audit", "verify", "--tenant", "default"]).await;
    assert!(
        output.status.success(),
        "audit verify failed after writing to the restored data: {}",
        stderr(&output)
    );
}
