//! Plugins end to end: installed and enabled through the CLI and the admin
//! GraphQL API, changing one tenant's schema and behaviour, delivering
//! after-commit events at least once across `kill -9`, firing timers on the
//! kernel's clock, and hostile plugins failing only their own calls.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::{Server, crm, create_tenant, data_dir, eventually, single_code, stderr, stdout};

pub fn plugin_path(name: &str) -> String {
    crm_plugin_artifacts::test_plugin(name).display().to_string()
}

pub fn wasm_base64(name: &str) -> String {
    let bytes = std::fs::read(crm_plugin_artifacts::test_plugin(name)).expect("test plugin built");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const INSTALL: &str = "mutation($wasm: String!) { installPlugin(wasm: $wasm) { id version sha256 } }";
const ENABLE: &str =
    "mutation($id: String!, $config: JSON, $limits: JSON) { enablePlugin(id: $id, config: $config, limits: $limits) { id status version } }";

pub async fn install_enable(server: &Server, key: &str, name: &str, config: Value) {
    server.ok_as(key, INSTALL, json!({ "wasm": wasm_base64(name) })).await;
    let enabled = server.ok_as(key, ENABLE, json!({ "id": name, "config": config })).await;
    assert_eq!(enabled["enablePlugin"]["status"], "ENABLED");
}

fn by_id<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|item| item["id"] == id).unwrap_or_else(|| panic!("no {id} in {list}"))
}


async fn activity_subjects(server: &Server, key: &str) -> Vec<String> {
    let data = server.ok_as(key, "{ activities(first: 500) { edges { node { subject } } } }", json!({})).await;
    data["activities"]["edges"].as_array().unwrap().iter().filter_map(|e| e["node"]["subject"].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn the_cli_installs_and_enables_a_plugin_for_one_tenant() {
    let dir = data_dir();
    let acme = create_tenant(dir.path(), "acme").await;
    let install = crm(dir.path(), &["plugin", "install", &plugin_path("validator")]).await;
    assert!(install.status.success(), "{}", stderr(&install));
    assert!(stdout(&install).contains("installed validator@0.1.0"), "{}", stdout(&install));
    let again = crm(dir.path(), &["plugin", "install", &plugin_path("validator")]).await;
    assert!(stdout(&again).contains("already installed"), "{}", stdout(&again));

    let enable = crm(dir.path(), &["plugin", "enable", "validator", "--tenant", "acme", "--config", r#"{"blocked_domains":["example.org"]}"#]).await;
    assert!(enable.status.success(), "{}", stderr(&enable));
    let bad = crm(dir.path(), &["plugin", "enable", "validator", "--tenant", "acme", "--config", r#"{"blocked_domains":7}"#]).await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("blocked_domains"), "{}", stderr(&bad));
    let listed = crm(dir.path(), &["plugin", "list", "--tenant", "acme"]).await;
    assert!(stdout(&listed).contains("validator") && stdout(&listed).contains("enabled"), "{}", stdout(&listed));

    let not_wasm = dir.path().join("notes.txt");
    std::fs::write(&not_wasm, "hello").unwrap();
    let refused = crm(dir.path(), &["plugin", "install", not_wasm.to_str().unwrap()]).await;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("not a WebAssembly"), "{}", stderr(&refused));

    let server = Server::start_in(dir.path(), &[]).await;
    let create = "mutation($email: String!) { createContact(input: {firstName: \"Eve\", email: $email}) { id } }";
    let rejected = server.gql_as(&acme, create, json!({ "email": "eve@example.org" })).await;
    assert_eq!(single_code(&rejected), "VALIDATION");
    assert!(rejected["errors"][0]["message"].as_str().unwrap().contains("email"), "{rejected}");
    assert_eq!(server.count_as(&acme, "contacts").await, 0);
    // The default tenant has no validator.
    server.ok(create, json!({ "email": "eve@example.org" })).await;
    // Disabling through the API restores the plain behaviour.
    server.ok_as(&acme, "mutation { disablePlugin(id: \"validator\") { status } }", json!({})).await;
    server.ok_as(&acme, create, json!({ "email": "eve@example.org" })).await;
}

#[tokio::test]
async fn enabling_a_plugin_changes_one_tenants_schema_and_actions() {
    let dir = data_dir();
    let other = create_tenant(dir.path(), "other").await;
    let server = Server::start_in(dir.path(), &[]).await;
    install_enable(&server, &server.key, "follow-up", json!({})).await;

    let rules = "{ followUpRules { totalCount } }";
    server.ok("mutation { createFollowUpRule(input: {name: \"fast\", delayMs: 5}) { id name delayMs } }", json!({})).await;
    assert_eq!(server.ok(rules, json!({})).await["followUpRules"]["totalCount"], 1);
    assert_eq!(single_code(&server.gql_as(&other, rules, json!({})).await), "VALIDATION", "other tenant's schema unchanged");

    let contact = server.ok("mutation { createContact(input: {firstName: \"Ada\"}) { id } }", json!({})).await;
    let id = contact["createContact"]["id"].as_str().unwrap().to_string();
    let scheduled = server
        .ok("mutation($id: ID!) { followUpSchedule(input: {contactId: $id, delayMs: 3600000}) { timerKey } }", json!({ "id": id }))
        .await;
    assert_eq!(scheduled["followUpSchedule"]["timerKey"], format!("remind:{id}"));

    let plugins = server.ok("{ tenantPlugins { id version status calls errors logs { level message } } }", json!({})).await;
    let plugin = by_id(&plugins["tenantPlugins"], "follow-up");
    assert_eq!(plugin["id"], "follow-up");
    assert!(plugin["calls"].as_i64().unwrap() >= 1, "{plugin}");
    assert_eq!(server.ok_as(&other, "{ tenantPlugins { id } }", json!({})).await["tenantPlugins"], json!([]));
    // Its after-commit hook catches up with the contact created above.
    eventually("follow-up to receive every change", || async {
        let plugins = server.ok("{ tenantPlugins { id pendingEvents } }", json!({})).await;
        (by_id(&plugins["tenantPlugins"], "follow-up")["pendingEvents"] == 0).then_some(())
    })
    .await;
    // custom-fields has no after-commit hooks: nothing is ever pending for it.
    let plugins = server.ok("{ tenantPlugins { id pendingEvents } }", json!({})).await;
    assert_eq!(by_id(&plugins["tenantPlugins"], "custom-fields")["pendingEvents"], 0);

    let metrics = server.get("/metrics", &[]).await.text;
    assert!(metrics.contains("crm_plugin_calls_total{") && metrics.contains("plugin=\"follow-up\""), "{metrics}");

    server.ok("mutation { disablePlugin(id: \"follow-up\") { status } }", json!({})).await;
    assert_eq!(single_code(&server.gql(rules, json!({})).await), "VALIDATION", "gone when disabled");
}

/// A development-clock server with follow-up (reminders an hour out) and a
/// contact Ada whose follow-up task exists: the after-commit delivery of
/// her creation is done. Returns the server and Ada's id.
async fn ada_followed_up(dir: &std::path::Path) -> (Server, String) {
    let server = Server::start_in(dir, &["--dev-clock"]).await;
    install_enable(&server, &server.key, "follow-up", json!({ "delay_ms": 3_600_000 })).await;
    let contact = server.ok("mutation { createContact(input: {firstName: \"Ada\"}) { id } }", json!({})).await;
    let id = contact["createContact"]["id"].as_str().unwrap().to_string();
    let key = server.key.clone();
    eventually("the follow-up task", || async { activity_subjects(&server, &key).await.contains(&"Follow up with Ada".to_string()).then_some(()) }).await;
    (server, id)
}

#[tokio::test]
async fn timers_fire_on_the_kernels_clock_and_survive_a_restart() {
    let dir = data_dir();
    let (server, id) = ada_followed_up(dir.path()).await;
    let key = server.key.clone();
    let reminder = format!("Reminder for {id}");
    assert!(!activity_subjects(&server, &key).await.contains(&reminder), "not due yet");
    server.kill9().await;

    // The timer is durable; a restarted server fires it once the clock passes it.
    let server = Server::start_in(dir.path(), &["--dev-clock"]).await;
    server.ok("mutation { advanceClock(ms: 3600001) }", json!({})).await;
    let key = server.key.clone();
    eventually("the condition", || async { activity_subjects(&server, &key).await.contains(&reminder).then_some(()) }).await;
}

/// A plugin's writes inside a call are committed without waiting for the
/// disk and made durable together when the call ends: once an action has
/// answered, what it wrote survives `kill -9`.
#[tokio::test]
async fn what_an_action_wrote_survives_kill_9_once_it_answered() {
    let dir = data_dir();
    // The after-commit delivery is done: its reminder is an hour away.
    let (server, id) = ada_followed_up(dir.path()).await;
    // The action moves the reminder to a minute from now; the server dies as soon as it answers.
    let scheduled = server
        .ok("mutation($id: ID!) { followUpSchedule(input: {contactId: $id, delayMs: 60000}) { timerKey } }", json!({ "id": id }))
        .await;
    assert_eq!(scheduled["followUpSchedule"]["timerKey"], format!("remind:{id}"));
    server.kill9().await;

    let server = Server::start_in(dir.path(), &["--dev-clock"]).await;
    server.ok("mutation { advanceClock(ms: 60001) }", json!({})).await;
    let key = server.key.clone();
    let reminder = format!("Reminder for {id}");
    eventually("the reminder the action scheduled", || async { activity_subjects(&server, &key).await.contains(&reminder).then_some(()) }).await;
}

#[tokio::test]
async fn the_clock_only_moves_on_a_development_server() {
    let server = Server::start(&[]).await;
    assert_eq!(single_code(&server.gql("mutation { advanceClock(ms: 1000) }", json!({})).await), "FORBIDDEN");
}

#[tokio::test]
async fn a_hostile_plugin_fails_its_own_calls_and_the_server_keeps_serving() {
    let dir = data_dir();
    let other = create_tenant(dir.path(), "other").await;
    let server = Server::start_in(dir.path(), &[]).await;
    install_enable(&server, &server.key, "hostile", json!({ "mode": "loop" })).await;
    let create = "mutation { createContact(input: {firstName: \"Mallory\"}) { id } }";
    let failed = server.gql(create, json!({})).await;
    assert_eq!(single_code(&failed), "PLUGIN_FAILED", "{failed}");
    assert_eq!(server.count("contacts").await, 0, "no partial write");
    server.ok_as(&other, create, json!({})).await;

    for mode in ["memory-bomb", "panic", "flood", "bad-decisions"] {
        server.ok(ENABLE, json!({ "id": "hostile", "config": { "mode": mode } })).await;
        assert_eq!(single_code(&server.gql(create, json!({})).await), "PLUGIN_FAILED", "{mode}");
    }
    assert_eq!(server.count("contacts").await, 0);
    let status = server.ok("{ tenantPlugins { id status errors recentFailures { message } } }", json!({})).await;
    let failures: Vec<String> = by_id(&status["tenantPlugins"], "hostile")["recentFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert!(failures.iter().any(|m| m.contains("time limit") || m.contains("fuel")), "{failures:?}");
    assert!(failures.iter().any(|m| m.contains("memory")), "{failures:?}");
    assert!(failures.iter().any(|m| m.contains("host calls")), "{failures:?}");
    assert_eq!(server.get("/healthz", &[]).await.text, "ok");
}

#[tokio::test]
async fn invalid_uploads_are_refused_with_a_code() {
    let server = Server::start(&[]).await;
    let not_base64 = server.gql(INSTALL, json!({ "wasm": "***" })).await;
    assert_eq!(single_code(&not_base64), "VALIDATION");
    let not_wasm = server.gql(INSTALL, json!({ "wasm": base64::engine::general_purpose::STANDARD.encode(b"hello") })).await;
    assert_eq!(single_code(&not_wasm), "VALIDATION");
    let bad_manifest = server.gql(INSTALL, json!({ "wasm": wasm_base64("bad-manifest") })).await;
    assert_eq!(single_code(&bad_manifest), "VALIDATION");
    let installed = server.ok("{ plugins { id } }", json!({})).await;
    let bundled: Vec<Value> = crm_plugin_artifacts::BUNDLED.iter().map(|bundled| json!({ "id": bundled.name })).collect();
    assert_eq!(installed["plugins"], Value::Array(bundled), "only the bundled plugins");
    let unknown = server.gql(ENABLE, json!({ "id": "nope" })).await;
    assert_eq!(single_code(&unknown), "NOT_FOUND");
}

#[tokio::test]
async fn after_commit_delivery_survives_kill_9_mid_delivery() {
    let dir = data_dir();
    let server = Server::start_in(dir.path(), &[]).await;
    server.ok_as(&server.key, INSTALL, json!({ "wasm": wasm_base64("follow-up") })).await;
    // Each delivery stays busy for a minute first, so the kill below always
    // lands after the commit and before the delivery completes.
    let held = json!({ "id": "follow-up", "config": { "hold_ms": 60_000, "delay_ms": 3_600_000 }, "limits": { "fuel": 50_000_000_000u64, "timeout_ms": 60_000 } });
    server.ok(ENABLE, held).await;
    server.ok("mutation { createContact(input: {firstName: \"Ada\"}) { id } }", json!({})).await;
    server.kill9().await;

    // While the server is down, the admin lifts the hold (an upgrade of the
    // configuration keeps the delivery position).
    let output = crm(dir.path(), &["plugin", "enable", "follow-up", "--tenant", "default", "--config", r#"{"delay_ms": 3600000}"#]).await;
    assert!(output.status.success(), "{}", stderr(&output));

    let server = Server::start_in(dir.path(), &[]).await;
    let key = server.key.clone();
    let subjects = eventually("the condition", || async {
        let subjects = activity_subjects(&server, &key).await;
        subjects.contains(&"Follow up with Ada".to_string()).then_some(subjects)
    })
    .await;
    assert_eq!(subjects.iter().filter(|s| s.as_str() == "Follow up with Ada").count(), 1, "{subjects:?}");
}

#[tokio::test]
async fn public_routes_reach_the_plugin_without_credentials() {
    let dir = data_dir();
    let other = create_tenant(dir.path(), "other").await;
    let server = Server::start_in(dir.path(), &["--no-bundled-plugins"]).await;
    install_enable(&server, &server.key, "web-form", json!({ "thank_you": true })).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}/hooks/default/web-form", server.addr);

    let created = client
        .post(format!("{base}/lead"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=Ada%40Math.org&first_name=Ada")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let body: Value = created.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    let contact = server.ok("query($id: ID!) { contact(id: $id) { email firstName } }", json!({ "id": id })).await;
    assert_eq!(contact["contact"]["email"], "ada@math.org");
    let mail = server.ok("{ outboundMessages { edges { node { channel recipient subject status } } } }", json!({})).await;
    assert_eq!(mail["outboundMessages"]["edges"][0]["node"]["recipient"], "ada@math.org");
    assert_eq!(mail["outboundMessages"]["edges"][0]["node"]["status"], "QUEUED");

    let pixel = client.get(format!("{base}/pixel.gif?c=spring")).send().await.unwrap();
    assert_eq!(pixel.status().as_u16(), 200);
    assert_eq!(pixel.headers()["content-type"], "image/gif");
    assert!(pixel.bytes().await.unwrap().starts_with(b"GIF89a"));
    let events = server.ok("{ customEvents { edges { node { name payload source } } } }", json!({})).await;
    assert_eq!(events["customEvents"]["edges"][0]["node"]["name"], "pixel.open");
    assert_eq!(events["customEvents"]["edges"][0]["node"]["payload"], "c=spring");

    assert_eq!(client.get(format!("{base}/undeclared")).send().await.unwrap().status().as_u16(), 404);
    let elsewhere = format!("http://{}/hooks/other/web-form/pixel.gif", server.addr);
    assert_eq!(client.get(elsewhere).send().await.unwrap().status().as_u16(), 404, "not enabled for the other tenant");
    assert_eq!(server.count_as(&other, "customEvents").await, 0);
    let huge = client.post(format!("{base}/lead")).body(vec![b'a'; 300 * 1024]).send().await.unwrap();
    assert_eq!(huge.status().as_u16(), 413);

    let mut limited = 0;
    for _ in 0..260 {
        let status = client.get(format!("{base}/pixel.gif")).send().await.unwrap().status().as_u16();
        if status == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "the route's rate limit applies");
}

#[tokio::test]
async fn a_scaffolded_plugin_builds_installs_and_runs_unchanged() {
    let dir = data_dir();
    let work = tempfile::tempdir().unwrap();
    let acme = create_tenant(dir.path(), "acme").await;
    let created = crm(dir.path(), &["plugin", "new", "title-score", "--dir", work.path().to_str().unwrap()]).await;
    assert!(created.status.success(), "{}", stderr(&created));
    let crate_dir = work.path().join("title-score");

    // Built exactly as the scaffold's README says, with no edits.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffolded-plugin");
    let mut build = tokio::process::Command::new(cargo);
    build
        .args(["build", "--offline", "--target", "wasm32-wasip2", "--profile", "plugin"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target);
    for (name, _) in std::env::vars() {
        if name.starts_with("CARGO_") && name != "CARGO_HOME" || name == "RUSTFLAGS" || name == "RUSTC_WRAPPER" {
            build.env_remove(&name);
        }
    }
    build.env("CARGO_TARGET_DIR", &target);
    let built = tokio::time::timeout(Duration::from_secs(600), build.output()).await.expect("build timed out").expect("run cargo");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let wasm = target.join("wasm32-wasip2/plugin/title_score.wasm");

    let install = crm(dir.path(), &["plugin", "install", wasm.to_str().unwrap()]).await;
    assert!(install.status.success(), "{}", stderr(&install));
    let enable = crm(dir.path(), &["plugin", "enable", "title-score", "--tenant", "acme"]).await;
    assert!(enable.status.success(), "{}", stderr(&enable));

    let server = Server::start_in(dir.path(), &[]).await;
    let contact = server.ok_as(&acme, "mutation { createContact(input: {firstName: \"Ada\", title: \"VP Sales\"}) { leadScore } }", json!({})).await;
    assert_eq!(contact["createContact"]["leadScore"], 30);
}

#[tokio::test]
async fn the_bundled_plugins_are_enabled_on_first_start_unless_declined() {
    let server = Server::start(&[]).await;
    let plugins = server.ok("{ tenantPlugins { id status } }", json!({})).await;
    assert_eq!(by_id(&plugins["tenantPlugins"], "custom-fields")["status"], "ENABLED");
    // Its actions are mutations of the default tenant from the start.
    let defined = server
        .ok(
            r#"mutation { customFieldsDefineField(input: {object: "contact", name: "shoe_size", type: INTEGER, min: 30, max: 50}) { field } }"#,
            json!({}),
        )
        .await;
    assert!(defined["customFieldsDefineField"]["field"].as_str().unwrap().contains("shoe_size"));
    let created = server.ok("mutation { createContact(input: {firstName: \"Ada\", shoeSize: 38}) { shoeSize } }", json!({})).await;
    assert_eq!(created["createContact"]["shoeSize"], 38);
    let refused = server.gql("mutation { createContact(input: {firstName: \"Bob\", shoeSize: 12}) { id } }", json!({})).await;
    assert_eq!(single_code(&refused), "VALIDATION");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("shoeSize") || refused["errors"][0]["message"].as_str().unwrap().contains("shoe_size"), "{refused}");

    let declined = Server::start(&["--no-bundled-plugins"]).await;
    assert_eq!(declined.ok("{ tenantPlugins { id } }", json!({})).await["tenantPlugins"], json!([]));
}
