//! Real plugins (compiled from tests/plugins by crm-plugin-artifacts) in
//! the real wasmtime sandbox, against a kernel on a temporary data
//! directory. Each hostile behaviour must fail only its own call.

use std::sync::Arc;

use crm_core::plugin::{EnableOptions, Limits, PluginStatus};
use crm_core::query::ListQuery;
use crm_core::{Actor, ErrorKind, Fields, Kernel, Mutation, RecordId, StoreOptions, TenantId, Value, WriteRequest};
use crm_plugin_host::PluginHost;

struct Fixture {
    _dir: tempfile::TempDir,
    kernel: Arc<Kernel>,
    host: Arc<PluginHost>,
    a: TenantId,
    b: TenantId,
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(crm_plugin_artifacts::test_plugin(name)).expect("test plugin built")
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Arc::new(Kernel::open(dir.path(), StoreOptions::default()).expect("kernel"));
    let host = PluginHost::new(&kernel, Some(&dir.path().join("plugin-cache"))).expect("host");
    kernel.set_runtime(host.clone());
    host.start_delivery().expect("delivery");
    let (a, _) = kernel.create_tenant("a").expect("tenant a");
    let (b, _) = kernel.create_tenant("b").expect("tenant b");
    Fixture { _dir: dir, kernel, host, a: a.id, b: b.id }
}

impl Fixture {
    async fn install_enable(&self, name: &str, tenant: &TenantId, config: Option<&str>) {
        self.kernel.install_plugin(&wasm(name)).expect("install");
        self.kernel
            .enable_plugin(tenant, name, EnableOptions { config: config.map(String::from), ..Default::default() })
            .await
            .expect("enable");
    }

    async fn create(&self, tenant: &TenantId, object: &str, fields: &[(&str, Value)]) -> crm_core::Result<crm_core::Record> {
        let store = self.kernel.tenant(tenant)?;
        let fields: Fields = fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let applied = store.write(WriteRequest::new(Actor::cli(), vec![Mutation::Create { object: object.into(), fields }])).await?;
        Ok(applied[0].record.clone())
    }

    fn count(&self, tenant: &TenantId, object: &str) -> u64 {
        self.kernel.tenant(tenant).unwrap().count(&ListQuery::new(object)).unwrap()
    }

    async fn invoke(&self, tenant: &TenantId, plugin: &str, action: &str, input: Fields) -> crm_core::Result<Fields> {
        let host = self.host.clone();
        let (tenant, plugin, action) = (tenant.clone(), plugin.to_string(), action.to_string());
        tokio::task::spawn_blocking(move || {
            use crm_core::plugin::PluginRuntime;
            host.invoke(&tenant, &plugin, &action, input, &Actor::cli(), None)
        })
        .await
        .unwrap()
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_validator_rejects_with_its_message_and_writes_nothing() {
    let f = fixture().await;
    f.install_enable("validator", &f.a, Some(r#"{"blocked_domains": ["example.org"]}"#)).await;

    let error = f.create(&f.a, "contact", &[("first_name", text("Eve")), ("email", text("eve@example.org"))]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation);
    assert_eq!(error.field.as_deref(), Some("email"));
    assert_eq!(f.count(&f.a, "contact"), 0, "nothing written");

    f.create(&f.a, "contact", &[("first_name", text("Ada")), ("email", text("ada@math.org"))]).await.expect("allowed");
    // Tenant B has no validator.
    f.create(&f.b, "contact", &[("first_name", text("Eve")), ("email", text("eve@example.org"))]).await.expect("B unaffected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_is_refused_at_enable() {
    let f = fixture().await;
    f.kernel.install_plugin(&wasm("validator")).unwrap();
    let error = f
        .kernel
        .enable_plugin(&f.a, "validator", EnableOptions { config: Some(r#"{"blocked_domains": "x"}"#.into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation, "{error:?}");
    assert!(error.message.contains("blocked_domains"), "{}", error.message);
    assert!(f.kernel.system().enablement(&f.a, "validator").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patcher_patches_inside_the_transaction_and_the_audit_shows_it() {
    let f = fixture().await;
    f.install_enable("patcher", &f.a, None).await;
    let record = f
        .create(&f.a, "contact", &[("first_name", text("  ada")), ("title", text("VP Sales")), ("source", text("referral"))])
        .await
        .unwrap();
    assert_eq!(record.get("lead_score"), &Value::Int(50));
    assert_eq!(record.get("plugin_score"), &Value::Int(50));
    assert_eq!(record.get("first_name"), &text("Ada"));
    assert_eq!(record.version, 1, "a patch is part of the same change");
    let store = f.kernel.tenant(&f.a).unwrap();
    let stored = store.get("contact", record.id).unwrap().unwrap();
    assert_eq!(stored.get("plugin_score"), &Value::Int(50));
    let history = store.reader().unwrap().history("contact", record.id).unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].diff.iter().any(|change| change.field == "plugin_score" && change.after == Value::Int(50)));
    // The declared field is indexed: an index lookup finds the record.
    let found = store.reader().unwrap().index_ids("contact", "plugin_score", &Value::Int(50)).unwrap();
    assert_eq!(found, vec![record.id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_write_calls_the_hook_once_per_half() {
    let f = fixture().await;
    f.install_enable("patcher", &f.a, None).await;
    let store = f.kernel.tenant(&f.a).unwrap();
    let contacts = |count: usize| -> Vec<Mutation> {
        (0..count)
            .map(|i| Mutation::Create {
                object: "contact".into(),
                fields: Fields::from([
                    ("first_name".to_string(), text(&format!("p{i}"))),
                    ("title".to_string(), text(if i % 3 == 0 { "VP" } else { "Engineer" })),
                ]),
            })
            .collect()
    };
    use crm_core::plugin::PluginRuntime;
    // A small batch: one call.
    let before = f.host.usage(&f.a, "patcher").calls;
    let applied = store.write(WriteRequest::new(Actor::cli(), contacts(100))).await.unwrap();
    assert_eq!(applied.len(), 100);
    assert_eq!(f.host.usage(&f.a, "patcher").calls - before, 1, "one call for the whole batch");
    // A thousand: two calls made at once, each decision on its own record.
    let before = f.host.usage(&f.a, "patcher").calls;
    let applied = store.write(WriteRequest::new(Actor::cli(), contacts(1000))).await.unwrap();
    assert_eq!(applied.len(), 1000);
    assert_eq!(f.host.usage(&f.a, "patcher").calls - before, 2, "one call for each half of the batch");
    for (i, applied) in applied.iter().enumerate() {
        let score = if i % 3 == 0 { 30 } else { 0 };
        assert_eq!(applied.record.get("plugin_score"), &Value::Int(score), "record {i}");
        assert_eq!(applied.record.get("first_name"), &text(&format!("P{i}")), "record {i}");
        let stored = store.get("contact", applied.record.id).unwrap().unwrap();
        assert_eq!(stored.get("plugin_score"), &Value::Int(score), "stored record {i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_in_the_second_half_of_a_batch_refuses_the_write() {
    let f = fixture().await;
    f.install_enable("validator", &f.a, Some(r#"{"blocked_domains": ["example.org"]}"#)).await;
    let store = f.kernel.tenant(&f.a).unwrap();
    let mutations: Vec<Mutation> = (0..1000)
        .map(|i| {
            let domain = if i == 900 { "example.org" } else { "example.com" };
            Mutation::Create {
                object: "contact".into(),
                fields: Fields::from([
                    ("first_name".to_string(), text(&format!("p{i}"))),
                    ("email".to_string(), text(&format!("p{i}@{domain}"))),
                ]),
            }
        })
        .collect();
    let error = store.write(WriteRequest::new(Actor::cli(), mutations)).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation, "{error:?}");
    assert_eq!(error.field.as_deref(), Some("email"));
    assert!(error.message.contains("example.org"), "{}", error.message);
    assert_eq!(f.count(&f.a, "contact"), 0, "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_in_the_second_half_of_many_requests_fails_only_its_own() {
    let f = fixture().await;
    f.install_enable("validator", &f.a, Some(r#"{"blocked_domains": ["example.org"]}"#)).await;
    let store = f.kernel.tenant(&f.a).unwrap();
    // A bulk request and then a thousand single requests of one actor:
    // while the writer applies the bulk one the others queue up, and it
    // groups them into before-write batches of up to a thousand changes,
    // which go to the plugin in two halves.
    let bulk: Vec<Mutation> = (0..1000)
        .map(|i| Mutation::Create {
            object: "contact".into(),
            fields: Fields::from([
                ("first_name".to_string(), text(&format!("b{i}"))),
                ("email".to_string(), text(&format!("b{i}@example.com"))),
            ]),
        })
        .collect();
    let mut requests = vec![WriteRequest::new(Actor::cli(), bulk)];
    requests.extend((0..1000).map(|i| {
        let domain = if i == 800 { "example.org" } else { "example.com" };
        let fields = Fields::from([
            ("first_name".to_string(), text(&format!("p{i}"))),
            ("email".to_string(), text(&format!("p{i}@{domain}"))),
        ]);
        WriteRequest::new(Actor::cli(), vec![Mutation::Create { object: "contact".into(), fields }])
    }));
    use crm_core::plugin::PluginRuntime;
    let before = f.host.usage(&f.a, "validator").calls;
    let mut outcomes = store.write_each(requests).await;
    assert_eq!(outcomes.remove(0).expect("the bulk request").len(), 1000);
    // Split: two calls for the bulk request and two for each group of
    // single requests, in the pass that met the rejection and in the one
    // redone without it (6 or 8); without the split 3 or 4.
    let calls = f.host.usage(&f.a, "validator").calls - before;
    assert!(calls >= 6, "{calls} calls");
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(applied) => {
                assert_ne!(i, 800, "the blocked address was written");
                assert_eq!(applied[0].record.get("email"), &text(&format!("p{i}@example.com")));
            }
            Err(error) => {
                assert_eq!(i, 800, "request {i} failed: {error:?}");
                assert_eq!(error.field.as_deref(), Some("email"));
            }
        }
    }
    assert_eq!(f.count(&f.a, "contact"), 1999);
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_objects_appear_for_one_tenant_only() {
    let f = fixture().await;
    f.install_enable("follow-up", &f.a, None).await;
    assert!(f.kernel.tenant(&f.a).unwrap().metadata().object("follow_up_rule").is_some());
    assert!(f.kernel.tenant(&f.b).unwrap().metadata().object("follow_up_rule").is_none());
    f.create(&f.a, "follow_up_rule", &[("name", text("fast")), ("delay_ms", Value::Int(10))]).await.unwrap();
    let error = f.create(&f.b, "follow_up_rule", &[("name", text("fast"))]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation);

    f.kernel.disable_plugin(&f.a, "follow-up", PluginStatus::Disabled).await.unwrap();
    assert!(f.kernel.tenant(&f.a).unwrap().metadata().object("follow_up_rule").is_none());
    // Data is kept: enabling again brings the records back.
    f.kernel.enable_plugin(&f.a, "follow-up", EnableOptions::default()).await.unwrap();
    assert_eq!(f.count(&f.a, "follow_up_rule"), 1);
}

async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..800 {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn after_commit_writes_and_timers_fire() {
    let f = fixture().await;
    f.install_enable("follow-up", &f.a, Some(r#"{"delay_ms": 0}"#)).await;
    let contact = f.create(&f.a, "contact", &[("first_name", text("Ada"))]).await.unwrap();
    let store = f.kernel.tenant(&f.a).unwrap();
    let subjects = || -> Vec<String> {
        let query = ListQuery::new("activity");
        store.reader().unwrap().all(&query).unwrap().iter().filter_map(|r| r.get("subject").as_text().map(String::from)).collect()
    };
    assert!(eventually(|| subjects().iter().any(|s| s == "Follow up with Ada")).await, "after-commit task: {:?}", subjects());
    let reminder = format!("Reminder for {}", contact.id);
    assert!(eventually(|| subjects().contains(&reminder)).await, "timer fired: {:?}", subjects());
    // Writes by the plugin are audited with its actor.
    let activity = store.reader().unwrap().all(&ListQuery::new("activity")).unwrap().remove(0);
    let history = store.reader().unwrap().history("activity", activity.id).unwrap();
    assert_eq!(history[0].actor.0, "plugin:follow-up@0.1.0");
    // The delivery's and the timer's writes were deferred; with no client
    // write to carry them, the worker makes them durable itself once quiet.
    assert!(eventually(|| !store.unsynced()).await, "deliveries left deferred writes that never became durable");
}

async fn hostile(f: &Fixture, mode: &str) -> crm_core::Error {
    hostile_with(f, mode, Limits::default()).await
}

async fn hostile_with(f: &Fixture, mode: &str, limits: Limits) -> crm_core::Error {
    let config = format!(r#"{{"mode": "{mode}"}}"#);
    f.kernel.install_plugin(&wasm("hostile")).unwrap();
    f.kernel
        .enable_plugin(&f.a, "hostile", EnableOptions { config: Some(config), limits, ..Default::default() })
        .await
        .unwrap();
    let error = f.create(&f.a, "contact", &[("first_name", text("Mallory"))]).await.unwrap_err();
    assert_eq!(f.count(&f.a, "contact"), 0, "{mode}: no partial write");
    // The tenant next door is served throughout.
    f.create(&f.b, "contact", &[("first_name", text("Bob"))]).await.expect("other tenant served");
    error
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_runs_out_of_fuel() {
    let f = fixture().await;
    let error = hostile(&f, "loop").await;
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    assert!(error.message.contains("ran out of fuel"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_with_ample_fuel_hits_the_wall_clock_deadline() {
    let f = fixture().await;
    let started = std::time::Instant::now();
    let error = hostile_with(&f, "loop", Limits { fuel: Limits::MAX.fuel, timeout_ms: 200, ..Limits::default() }).await;
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    assert!(error.message.contains("time limit of 200 ms"), "{}", error.message);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_hits_the_memory_cap() {
    let f = fixture().await;
    let error = hostile(&f, "memory-bomb").await;
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    assert!(error.message.contains("memory"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_fails_only_its_call() {
    let f = fixture().await;
    let error = hostile(&f, "panic").await;
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    assert!(error.message.contains("panic") || error.message.contains("unreachable"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_output_is_refused() {
    let f = fixture().await;
    let error = hostile(&f, "big-output").await;
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    assert!(error.message.contains("output limit") || error.message.contains("memory"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_call_flood_is_cut_off() {
    let f = fixture().await;
    let error = hostile(&f, "flood").await;
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    assert!(error.message.contains("host calls"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_decision_counts_are_a_plugin_failure() {
    let f = fixture().await;
    let error = hostile(&f, "bad-decisions").await;
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    assert!(error.message.contains("decisions"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_batch_is_booked_as_one_outcome() {
    let f = fixture().await;
    f.kernel.install_plugin(&wasm("hostile")).unwrap();
    f.kernel
        .enable_plugin(&f.a, "hostile", EnableOptions { config: Some(r#"{"mode": "bad-decisions"}"#.into()), ..Default::default() })
        .await
        .unwrap();
    let store = f.kernel.tenant(&f.a).unwrap();
    let mutations: Vec<Mutation> = (0..600)
        .map(|i| Mutation::Create { object: "contact".into(), fields: Fields::from([("first_name".to_string(), text(&format!("m{i}")))]) })
        .collect();
    use crm_core::plugin::PluginRuntime;
    let before = f.host.usage(&f.a, "hostile");
    let error = store.write(WriteRequest::new(Actor::cli(), mutations)).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    assert!(error.message.contains("301 decisions for 300 changes"), "{}", error.message);
    let after = f.host.usage(&f.a, "hostile");
    // Both halves failed: two calls, one failed batch, so a plugin is
    // suspended after as many failed writes as with one call each.
    assert_eq!(after.calls - before.calls, 2);
    assert_eq!(after.errors - before.errors, 1);
    assert_eq!(after.consecutive_failures, before.consecutive_failures + 1);
    assert_eq!(f.count(&f.a, "contact"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ungranted_fields_are_absent_and_ungranted_objects_unwritable() {
    let f = fixture().await;
    f.install_enable("hostile", &f.a, None).await;
    let contact = f.create(&f.a, "contact", &[("first_name", text("Ada")), ("email", text("ada@math.org"))]).await.unwrap();
    let out = f.invoke(&f.a, "hostile", "read-ungranted", Fields::from([("record_id".into(), text(&contact.id.to_string()))])).await.unwrap();
    assert_eq!(out.get("email_present"), Some(&Value::Bool(false)));
    assert_eq!(out.get("fields"), Some(&Value::List(vec!["first_name".into()])));

    let out = f.invoke(&f.a, "hostile", "write-ungranted", Fields::new()).await.unwrap();
    assert!(out.get("deal_id").is_none());
    let message = out.get("error").and_then(Value::as_text).unwrap_or_default().to_string();
    assert!(message.contains("not granted"), "{message}");
    assert_eq!(f.count(&f.a, "deal"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenants_record_id_is_not_found() {
    let f = fixture().await;
    f.install_enable("hostile", &f.a, None).await;
    let theirs = f.create(&f.b, "contact", &[("first_name", text("Bob"))]).await.unwrap();
    let input = Fields::from([("record_id".into(), text(&theirs.id.to_string())), ("object".into(), text("contact"))]);
    let out = f.invoke(&f.a, "hostile", "cross-tenant", input).await.unwrap();
    assert_eq!(out.get("found"), Some(&Value::Bool(false)));
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_actions_fail_their_own_call_and_the_plugin_keeps_working() {
    let f = fixture().await;
    f.install_enable("hostile", &f.a, None).await;
    for action in ["loop", "memory-bomb", "panic"] {
        let error = f.invoke(&f.a, "hostile", action, Fields::new()).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::PluginFailed, "{action}: {error:?}");
    }
    let big = Fields::from([("bytes".into(), Value::Int(64 * 1024 * 1024))]);
    let error = f.invoke(&f.a, "hostile", "big-output", big).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::PluginFailed);
    let out = f.invoke(&f.a, "hostile", "ok", Fields::new()).await.unwrap();
    assert_eq!(out.get("ok"), Some(&Value::Bool(true)));
    use crm_core::plugin::PluginRuntime;
    let usage = f.host.usage(&f.a, "hostile");
    assert_eq!(usage.errors, 4);
    assert!(usage.recent_failures.iter().any(|(_, message)| message.contains("memory")));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_starts_from_the_memory_image() {
    // Slots of the pooling allocator are reused and may keep their pages
    // resident: whatever a call wrote must be gone for the next one, in
    // one tenant and across tenants, however the slot was reset.
    let f = fixture().await;
    f.install_enable("hostile", &f.a, None).await;
    f.install_enable("hostile", &f.b, None).await;
    for round in 0..4 {
        for tenant in [&f.a, &f.b] {
            let out = f.invoke(tenant, "hostile", "remember", Fields::new()).await.unwrap();
            assert_eq!(out.get("mark"), Some(&Value::Int(24301)), "round {round}: {out:?}");
            assert_eq!(out.get("scratch_clean"), Some(&Value::Bool(true)), "round {round}: {out:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hook_call_starts_from_the_memory_image() {
    // Single writes and a bulk write: each hook call finds nothing an
    // earlier one left in the pool's slots.
    let f = fixture().await;
    f.install_enable("hostile", &f.a, Some(r#"{"mode": "remember"}"#)).await;
    for n in 0..6 {
        f.create(&f.a, "contact", &[("first_name", text(&format!("c{n}")))]).await.unwrap();
    }
    let mutations = (0..50).map(|n| Mutation::Create { object: "contact".into(), fields: Fields::from([("first_name".to_string(), text(&format!("bulk {n}")))]) }).collect();
    f.kernel.tenant(&f.a).unwrap().write(WriteRequest::new(Actor::cli(), mutations)).await.unwrap();
    assert_eq!(f.count(&f.a, "contact"), 56);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_suspend_the_plugin_for_that_tenant() {
    let f = fixture().await;
    f.install_enable("hostile", &f.a, None).await;
    for _ in 0..crm_plugin_host::runtime::SUSPEND_AFTER {
        f.invoke(&f.a, "hostile", "panic", Fields::new()).await.unwrap_err();
    }
    let suspended = eventually(|| {
        matches!(f.kernel.system().enablement(&f.a, "hostile").unwrap().map(|e| e.status), Some(PluginStatus::Suspended { .. }))
    })
    .await;
    assert!(suspended);
    let error = f.invoke(&f.a, "hostile", "ok", Fields::new()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_components_are_refused_at_install() {
    let f = fixture().await;
    let error = f.kernel.install_plugin(b"definitely not wasm").unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation);
    assert!(error.message.contains("not a WebAssembly"), "{}", error.message);

    let mut truncated = wasm("validator");
    truncated.truncate(truncated.len() / 2);
    let error = f.kernel.install_plugin(&truncated).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation, "{}", error.message);

    let error = f.kernel.install_plugin(&wasm("bad-manifest")).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation);
    assert!(error.message.contains("plugin id") || error.message.contains("interface"), "{}", error.message);
    assert!(f.kernel.system().plugins().unwrap().is_empty(), "nothing installed");
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_beyond_the_request_are_refused() {
    let f = fixture().await;
    f.kernel.install_plugin(&wasm("validator")).unwrap();
    let grants: crm_core::plugin::Capabilities =
        serde_json::from_str(r#"{"records":[{"object":"deal","fields":[],"read":true,"create":false,"update":false,"delete":false}],"outbound":[],"timers":false,"kv":false,"events":false}"#)
            .unwrap();
    let error = f
        .kernel
        .enable_plugin(&f.a, "validator", EnableOptions { grants: Some(grants), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation);
    assert!(error.message.contains("deal"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_components_are_cached_and_only_verified_artifacts_load() {
    let f = fixture().await;
    let (plugin, _) = f.kernel.install_plugin(&wasm("validator")).unwrap();
    let cache = f._dir.path().join("plugin-cache");
    let artifact = cache.join(format!("{}.cwasm", plugin.hash));
    assert!(artifact.exists(), "compiled artifact written");
    // A tampered artifact is ignored (recompiled), never loaded.
    let mut bytes = std::fs::read(&artifact).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    let engine = crm_plugin_host::PluginEngine::new(Some(&cache)).unwrap();
    engine.prepare(&plugin.hash, &wasm("validator")).expect("recompiled from the component");
    assert_ne!(std::fs::read(&artifact).unwrap(), bytes, "artifact rewritten");
}

#[test]
fn record_ids_in_values_round_trip() {
    let id = RecordId::generate();
    let wire = crm_plugin_host::convert::value_to_wit(&Value::Id(id));
    assert_eq!(crm_plugin_host::convert::value_from_wit(wire).unwrap(), Value::Id(id));
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_live_side_by_side_and_a_tenant_upgrades_and_rolls_back() {
    let f = fixture().await;
    f.kernel.install_plugin(&wasm("validator")).unwrap();
    f.kernel.install_plugin(&wasm("validator-v2")).unwrap();
    let versions: Vec<String> = f.kernel.system().plugins().unwrap().into_iter().map(|p| format!("{}@{}", p.id, p.version)).collect();
    assert_eq!(versions, ["validator@0.1.0", "validator@0.2.0"]);

    let options = |version: &str| EnableOptions { version: Some(version.into()), ..Default::default() };
    f.kernel.enable_plugin(&f.a, "validator", options("0.1.0")).await.unwrap();
    f.kernel.enable_plugin(&f.b, "validator", options("0.1.0")).await.unwrap();
    let upgraded = f.kernel.enable_plugin(&f.a, "validator", EnableOptions::default()).await.unwrap();
    assert_eq!(upgraded.version, "0.2.0", "the newest by default");
    assert_eq!(upgraded.previous, ["0.1.0"]);
    assert_eq!(f.kernel.system().enablement(&f.b, "validator").unwrap().unwrap().version, "0.1.0", "B stays");

    // Version 0.1.0 is in use by B: it cannot be removed.
    let error = f.kernel.system().uninstall_plugin("validator", "0.1.0").unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    let rolled_back = f.kernel.enable_plugin(&f.a, "validator", options("0.1.0")).await.unwrap();
    assert_eq!(rolled_back.version, "0.1.0");
    let error = f.create(&f.a, "contact", &[("first_name", text("Eve")), ("email", text("eve@blocked.test"))]).await.unwrap_err();
    assert_eq!(error.field.as_deref(), Some("email"), "the rolled-back version still validates");
    f.kernel.system().uninstall_plugin("validator", "0.2.0").unwrap();
    assert_eq!(f.kernel.system().plugins().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_index_on_existing_records_is_built_when_enabled() {
    let f = fixture().await;
    let store = f.kernel.tenant(&f.a).unwrap();
    let before = f.create(&f.a, "contact", &[("first_name", text("Ada"))]).await.unwrap();
    f.install_enable("patcher", &f.a, None).await;
    // The existing record has no value yet; it is in the index under null,
    // so an ordered scan on the new field still visits it.
    let mut query = ListQuery::new("contact");
    query.sort = vec![crm_core::Sort { field: "plugin_score".into(), descending: false }];
    let after = f.create(&f.a, "contact", &[("first_name", text("Bob")), ("title", text("VP"))]).await.unwrap();
    let page = store.list(&query, &crm_core::PageRequest { first: Some(10), ..Default::default() }).unwrap();
    let ids: Vec<RecordId> = page.records.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![after.id, before.id], "30 first, then the null");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_deliveries_go_to_dead_letters_and_replay_once_fixed() {
    let f = fixture().await;
    f.kernel.install_plugin(&wasm("follow-up")).unwrap();
    // Granted too little to create its task: every delivery fails.
    let grants: crm_core::plugin::Capabilities =
        serde_json::from_str(r#"{"records":[{"object":"contact","fields":["first_name"],"read":true}],"timers":true}"#).unwrap();
    let config = Some(r#"{"delay_ms": 3600000}"#.to_string());
    let options = EnableOptions { grants: Some(grants), config: config.clone(), ..Default::default() };
    f.kernel.enable_plugin(&f.a, "follow-up", options).await.unwrap();
    f.create(&f.a, "contact", &[("first_name", text("Ada"))]).await.unwrap();
    let store = f.kernel.tenant(&f.a).unwrap();
    let dead = || store.reader().unwrap().dead_letters(10).unwrap();
    assert!(eventually(|| !dead().is_empty()).await, "retries end in a dead letter");
    let letter = dead().remove(0);
    assert_eq!((letter.plugin.as_str(), letter.hook.as_str()), ("follow-up", "after-commit"));
    assert_eq!(letter.attempts, crm_plugin_host::runtime::MAX_ATTEMPTS);
    assert!(letter.error.contains("not granted"), "{}", letter.error);
    assert_eq!(f.count(&f.a, "activity"), 0);
    use crm_core::plugin::PluginRuntime;
    let logs = f.host.logs(&f.a, "follow-up");
    assert!(logs.iter().any(|line| line.level == "error" && line.message.contains("not granted")), "{logs:?}");

    // The admin grants what was missing and replays the letter.
    f.kernel.enable_plugin(&f.a, "follow-up", EnableOptions { config, ..Default::default() }).await.unwrap();
    let host = f.host.clone();
    let tenant = f.a.clone();
    tokio::task::spawn_blocking(move || host.replay(&tenant, &letter)).await.unwrap().unwrap();
    assert!(dead().is_empty());
    assert_eq!(f.count(&f.a, "activity"), 1);
}
