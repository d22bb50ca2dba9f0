//! Durability: every acknowledged write survives `kill -9` of the server.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify};

use crate::support::{Server, TIMEOUT, command, crm, data_dir, stderr, stdout};

const WRITERS: usize = 8;
const ACKS_BEFORE_KILL: usize = 400;

/// One writer: creates contacts until the server stops answering; records
/// every acknowledged create (HTTP 200 without errors) as (id, email).
async fn writer(
    url: String,
    key: String,
    writer: usize,
    acked: Arc<Mutex<Vec<(String, String)>>>,
    count: Arc<AtomicUsize>,
    enough: Arc<Notify>,
) {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().expect("client");
    for n in 0.. {
        let email = format!("w{writer}-{n}@durable.example");
        let body = json!({
            "query": "mutation($e: String!, $f: String!) { createContact(input: {firstName: $f, email: $e}) { id email } }",
            "variables": { "e": email, "f": format!("Writer {writer} #{n}") },
        });
        let response = match client.post(&url).bearer_auth(&key).json(&body).send().await {
            Ok(response) => response,
            Err(_) => return, // the server is gone
        };
        if response.status() != 200 {
            return;
        }
        let Ok(reply) = response.json::<Value>().await else { return };
        if reply.get("errors").is_some() {
            panic!("a write failed while the server was up: {reply}");
        }
        let id = reply["data"]["createContact"]["id"].as_str().expect("id").to_string();
        assert_eq!(reply["data"]["createContact"]["email"], email.as_str());
        acked.lock().await.push((id, email));
        if count.fetch_add(1, Ordering::SeqCst) + 1 == ACKS_BEFORE_KILL {
            enough.notify_one();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = data_dir();
    let server = Server::start_in(dir.path(), &[]).await;
    let key = server.key.clone();

    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(server.url(), key.clone(), w, acked.clone(), count.clone(), enough.clone())))
        .collect();
    tokio::time::timeout(TIMEOUT, enough.notified()).await.expect("writers did not reach the ack count");
    // SIGKILL mid-stream: writes are in flight right now.
    server.kill9().await;
    for task in tasks {
        tokio::time::timeout(TIMEOUT, task).await.expect("writer hung after the kill").expect("writer panicked");
    }
    let acked: BTreeMap<String, String> = acked.lock().await.iter().cloned().collect();
    assert!(acked.len() >= ACKS_BEFORE_KILL, "only {} acks", acked.len());

    // Restart on the same data directory: same tenant, same key, every ack readable.
    let server = Server::start_in(dir.path(), &[]).await;
    assert_eq!(server.key, key);
    assert!(!server.startup.iter().any(|line| line.starts_with("created tenant")), "the tenant was created again: {:?}", server.startup);
    let ids: Vec<&String> = acked.keys().collect();
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let data = server
            .ok("query($ids: [ID!]) { contacts(filter: {id: {in: $ids}}, first: 500) { nodes { id email version } } }", json!({ "ids": chunk }))
            .await;
        for node in data["contacts"]["nodes"].as_array().expect("nodes") {
            assert_eq!(node["version"], 1);
            found.insert(node["id"].as_str().expect("id").to_string(), node["email"].as_str().expect("email").to_string());
        }
    }
    let lost: Vec<&String> = acked.keys().filter(|id| !found.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged writes were lost after kill -9: {lost:?}", lost.len(), acked.len());
    assert_eq!(found, acked, "emails differ after the restart");
    // Writes that were in flight may or may not have committed; none is half there.
    let total = server.count("contacts").await;
    assert!(total >= acked.len() as u64 && total <= acked.len() as u64 + WRITERS as u64, "{total} contacts for {} acks", acked.len());
    let (changes, _) = server.changes_since(None).await;
    let changed: HashSet<&str> = changes.iter().filter_map(|change| change["id"].as_str()).collect();
    assert!(acked.keys().all(|id| changed.contains(id.as_str())), "an acknowledged create is missing from the change feed");
    assert_eq!(changes.iter().filter(|change| change["object"] == "CONTACT").count() as u64, total);
    // Each email is still unique, and the server takes new writes.
    let again = server.gql("mutation($e: String!) { createContact(input: {firstName: \"Again\", email: $e}) { id } }", json!({ "e": acked.values().next() })).await;
    assert_eq!(crate::support::single_code(&again), "CONFLICT");
    server.ok("mutation { createContact(input: {firstName: \"After\", email: \"after@durable.example\"}) { id } }", json!({})).await;

    // Kill again and export offline: every acknowledged record is there.
    server.kill9().await;
    let output = crm(dir.path(), &["export", "--tenant", "default"]).await;
    assert!(output.status.success(), "export failed: {}", stderr(&output));
    let exported: BTreeMap<String, String> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("export line is JSON"))
        .filter(|line| line["object"] == "contact")
        .map(|line| (line["id"].as_str().expect("id").to_string(), line["fields"]["email"].as_str().expect("email").to_string()))
        .collect();
    assert_eq!(exported.len() as u64, total + 1);
    for (id, email) in &acked {
        assert_eq!(exported.get(id), Some(email), "acknowledged contact {id} missing from the export");
    }
    assert_eq!(exported.values().filter(|email| *email == "after@durable.example").count(), 1);
}

/// SIGTERM while the server is still starting (here: installing the bundled
/// plugins on a fresh data directory, right after it wrote the admin key)
/// ends it cleanly once it is up: it exits with status 0 rather than being
/// killed by the signal, which would leave its files to be repaired, and the
/// data directory serves again.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_during_start_up_ends_the_server_cleanly() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = data_dir();
    let mut child = command()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn crm serve");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let created = async {
        while let Some(line) = lines.next_line().await.expect("read server stdout") {
            if line.starts_with("created tenant") {
                return true;
            }
        }
        false
    };
    assert!(tokio::time::timeout(TIMEOUT, created).await.expect("no tenant created in time"), "the server exited before creating its tenant");
    let pid = child.id().expect("the server runs").to_string();
    let sent = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
    // Keep reading so the server never blocks on its output.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await.expect("the server did not stop").expect("wait for the server");
    assert!(status.success(), "the server did not end cleanly: {status:?}");
    let server = Server::start_in(dir.path(), &[]).await;
    server.ok("{ __typename }", json!({})).await;
}
