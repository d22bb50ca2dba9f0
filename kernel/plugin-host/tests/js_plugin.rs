//! A plugin written in JavaScript (tests/plugins-js/greeter, built with
//! componentize-js by crm-plugin-artifacts) in the real wasmtime sandbox,
//! against a kernel on a temporary data directory.
//!
//! One test function on purpose: compiling the 12 MB component takes
//! about 30 s in a debug build (7-12 s in release), and one kernel compiles
//! it once. The compiled form is kept in the host's cache under cargo's
//! target tmp dir, so later runs with an unchanged component skip that.

use std::sync::Arc;

use crm_core::plugin::{EnableOptions, FailurePolicy, HookKind, PluginRuntime};
use crm_core::query::ListQuery;
use crm_core::{Actor, ChangeOp, ErrorKind, Fields, Kernel, Mutation, StoreOptions, TenantId, Value, WriteRequest};
use crm_plugin_host::PluginHost;

const PLUGIN: &str = "js-greeter";

fn text(value: &str) -> Value {
    Value::Text(value.into())
}

async fn create(kernel: &Kernel, tenant: &TenantId, fields: &[(&str, Value)]) -> crm_core::Result<crm_core::Record> {
    let store = kernel.tenant(tenant)?;
    let fields: Fields = fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let applied = store.write(WriteRequest::new(Actor::cli(), vec![Mutation::Create { object: "contact".into(), fields }])).await?;
    Ok(applied[0].record.clone())
}

fn count(kernel: &Kernel, tenant: &TenantId) -> u64 {
    kernel.tenant(tenant).unwrap().count(&ListQuery::new("contact")).unwrap()
}

async fn invoke(host: &Arc<PluginHost>, tenant: &TenantId, action: &str, input: Fields) -> crm_core::Result<Fields> {
    let (host, tenant, action) = (host.clone(), tenant.clone(), action.to_string());
    tokio::task::spawn_blocking(move || host.invoke(&tenant, PLUGIN, &action, input, &Actor::cli(), None)).await.unwrap()
}

/// Removes compiled components other than `hash` from the cache, so that
/// rebuilding the plugin does not pile up 40 MB artifacts.
fn forget_other_components(cache: &std::path::Path, hash: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else { return };
    for path in entries.filter_map(|entry| entry.ok()).map(|entry| entry.path()) {
        let compiled = path.extension().is_some_and(|ext| ext == "cwasm" || ext == "sig");
        if compiled && path.file_stem().is_some_and(|stem| stem != hash) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_plugin_patches_rejects_and_greets() {
    let wasm = std::fs::read(crm_plugin_artifacts::test_plugin(PLUGIN)).expect("JS test plugin built");
    assert_eq!(&wasm[..8], b"\0asm\x0d\x00\x01\x00", "a component");

    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Arc::new(Kernel::open(dir.path(), StoreOptions::default()).expect("kernel"));
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("js-plugin-cache");
    forget_other_components(&cache, &crm_core::plugin::content_hash(&wasm));
    let host = PluginHost::new(&kernel, Some(&cache)).expect("host");
    kernel.set_runtime(host.clone());
    host.start_delivery().expect("delivery");
    let (a, _) = kernel.create_tenant("a").expect("tenant a");
    let (b, _) = kernel.create_tenant("b").expect("tenant b");
    let (a, b) = (a.id, b.id);

    // The manifest, as the kernel read it from the JS objects.
    let (installed, _) = kernel.install_plugin(&wasm).expect("install");
    let manifest = &installed.manifest;
    assert_eq!((manifest.id.as_str(), manifest.version.as_str(), manifest.api.as_str()), (PLUGIN, "0.1.0", "0.1.0"));
    assert_eq!(manifest.hooks.len(), 1);
    let hook = &manifest.hooks[0];
    assert_eq!((hook.kind, hook.object.as_str(), hook.failure), (HookKind::BeforeWrite, "contact", FailurePolicy::FailClosed));
    assert_eq!(hook.ops, vec![ChangeOp::Created]);
    let access = &manifest.capabilities.records;
    assert_eq!(access.len(), 1);
    assert_eq!(access[0].object, "contact");
    assert_eq!(access[0].fields, vec!["first_name".to_string(), "title".to_string()]);
    assert!(access[0].read && access[0].create && access[0].update && !access[0].delete);
    assert_eq!(manifest.actions.len(), 1);
    let greet = &manifest.actions[0];
    assert_eq!(greet.name, "greet");
    assert_eq!((greet.input.len(), greet.input[0].name.as_str(), greet.input[0].required), (1, "name", true));
    assert_eq!((greet.output.len(), greet.output[0].name.as_str()), (1, "greeting"));
    let schema: serde_json::Value = serde_json::from_str(&manifest.config_schema).expect("schema is JSON");
    assert_eq!(schema["properties"]["prefix"]["default"], "Hello");
    assert_eq!(manifest.limits, crm_core::plugin::Limits::default(), "zero limits: the host defaults");

    // A config outside the schema is refused; a good one is accepted.
    let bad = EnableOptions { config: Some(r#"{"prefix": 3}"#.into()), ..Default::default() };
    let error = kernel.enable_plugin(&a, PLUGIN, bad).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation, "{error:?}");
    let options = EnableOptions { config: Some(r#"{"prefix":"Hi"}"#.into()), ..Default::default() };
    kernel.enable_plugin(&a, PLUGIN, options).await.expect("enable");

    // before-write: a missing title is patched inside the same change.
    let ada = create(&kernel, &a, &[("first_name", text("Ada"))]).await.expect("created");
    assert_eq!(ada.get("title"), &text("Friend"));
    assert_eq!(ada.version, 1);
    let stored = kernel.tenant(&a).unwrap().get("contact", ada.id).unwrap().expect("stored");
    assert_eq!(stored.get("title"), &text("Friend"));
    // A title that is there is kept.
    let grace = create(&kernel, &a, &[("first_name", text("Grace")), ("title", text("Admiral"))]).await.unwrap();
    assert_eq!(grace.get("title"), &text("Admiral"));
    assert_eq!(count(&kernel, &a), 2);

    // before-write: a rejection names the field and writes nothing.
    let error = create(&kernel, &a, &[("first_name", text("reject-me"))]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation, "{error:?}");
    assert_eq!(error.field.as_deref(), Some("first_name"));
    assert!(error.message.contains("js says no"), "{}", error.message);
    assert_eq!(count(&kernel, &a), 2, "nothing written");

    // The action, with the tenant's prefix, logging through the host.
    let out = invoke(&host, &a, "greet", Fields::from([("name".to_string(), text("Ada"))])).await.expect("greet");
    assert_eq!(out.get("greeting"), Some(&text("Hi, Ada!")), "{out:?}");
    let logs = host.logs(&a, PLUGIN);
    assert!(logs.iter().any(|line| line.level == "info" && line.message.contains("greeted Ada")), "{logs:?}");
    // A string thrown by an export is its `result` error: for an action that
    // is an answer to bad input, VALIDATION with the plugin's message (the
    // host checks declared inputs first, so only an empty name gets that far).
    let error = invoke(&host, &a, "greet", Fields::from([("name".to_string(), text(" "))])).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation, "{error:?}");
    assert!(error.message.contains("greet needs a name"), "{}", error.message);
    let error = invoke(&host, &a, "no-such-action", Fields::new()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error:?}");

    // Tenant B has not enabled the plugin: no patch, no rejection, no action.
    let plain = create(&kernel, &b, &[("first_name", text("Ada"))]).await.expect("B unaffected");
    assert_eq!(plain.get("title"), &Value::Null);
    create(&kernel, &b, &[("first_name", text("reject-me"))]).await.expect("B accepts reject-me");
    assert_eq!(count(&kernel, &b), 2);
    invoke(&host, &b, "greet", Fields::from([("name".to_string(), text("Ada"))])).await.unwrap_err();
}
