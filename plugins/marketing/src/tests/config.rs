//! The manifest and the configuration.

use crm_plugin_sdk::serde_json::{self, json};

use super::*;
use crate::config::Config;

#[test]
fn the_manifest_is_valid_and_asks_for_what_it_uses() {
    let manifest = Marketing.manifest();
    manifest.validate().unwrap();
    assert_eq!(manifest.id, "marketing");
    let objects: Vec<&str> = manifest.objects.iter().map(|object| object.name.as_str()).collect();
    assert_eq!(
        objects,
        ["segment", "email_template", "campaign", "campaign_send", "sequence", "sequence_step", "sequence_enrollment"]
    );
    let caps = &manifest.capabilities;
    assert!(caps.timers && caps.kv && caps.events && !caps.schema);
    assert_eq!(caps.outbound, ["email"]);
    let routes: Vec<(&str, &str)> = manifest.routes.iter().map(|route| (route.method.as_str(), route.path.as_str())).collect();
    assert_eq!(
        routes,
        [("GET", "/open"), ("GET", "/click"), ("GET", "/unsubscribe"), ("POST", "/unsubscribe"), ("POST", "/lead")]
    );
    let actions: Vec<&str> = manifest.actions.iter().map(|action| action.name.as_str()).collect();
    assert_eq!(actions, ["send", "cancel", "stats", "segment-count", "preview", "enroll", "unenroll", "attribution"]);
    // Hooks on standard objects only after the commit, so a failure never
    // blocks a client's write of a contact, activity or deal.
    for hook in &manifest.hooks {
        if ["contact", "activity", "deal", "outbound_message"].contains(&hook.object.as_str()) {
            assert_eq!(hook.kind, crm_plugin_sdk::HookKind::AfterCommit, "{hook:?}");
        }
    }
    assert!(manifest.limits.timeout_ms <= 60_000 && manifest.limits.host_calls <= 1_000_000, "within the kernel's ceilings");
    let schema: serde_json::Value = serde_json::from_str(&manifest.config_schema).unwrap();
    assert_eq!(schema["properties"]["public_url"]["default"], "http://localhost:8080");
}

#[test]
fn an_empty_configuration_has_working_defaults() {
    let config: Config = serde_json::from_value(json!({})).unwrap();
    config.check().unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.batch_size, 250);
    assert_eq!(config.default_throttle_per_minute, 0);
    assert_eq!(config.attribution_window_days, 30);
    assert!(config.skip_bounced && !config.log_sent && config.form.consent);
    assert_eq!(config.form.lifecycle_stage.as_deref(), Some("lead"));
}

#[test]
fn configuration_checks_name_the_part_at_fault() {
    let error = |config: serde_json::Value| {
        let config: Config = serde_json::from_value(config).unwrap();
        config.check().unwrap_err().to_string()
    };
    assert!(error(json!({"public_url": "localhost:8080"})).starts_with("public_url:"));
    assert!(error(json!({"batch_size": 0})).starts_with("batch_size: 0"));
    assert!(error(json!({"batch_size": 501})).starts_with("batch_size: 501"));
    assert!(error(json!({"attribution_window_days": 0})).starts_with("attribution_window_days:"));
    assert!(error(json!({"form": {"fields": ["Title"]}})).starts_with("form.fields[0]: 'Title'"));
    assert!(error(json!({"form": {"fields": ["title", "email_opt_in"]}})).starts_with("form.fields[1]: 'email_opt_in' cannot"));
    assert!(error(json!({"form": {"lifecycle_stage": "hot"}})).starts_with("form.lifecycle_stage: 'hot'"));
    assert!(error(json!({"form": {"redirect_url": "/thanks"}})).starts_with("form.redirect_url:"));
    let unknown: Result<Config, _> = serde_json::from_value(json!({"throttle": 5}));
    assert!(unknown.is_err(), "unknown keys are refused");
}

#[test]
fn a_broken_configuration_fails_calls_with_its_reason() {
    let host = TestHost::new();
    host.set_config(json!({"batch_size": 9999}));
    let error = host.invoke(&Marketing, "attribution", Fields::new()).unwrap_err();
    assert!(error.message().starts_with("batch_size: 9999"), "{error}");
    let response = host.http(&Marketing, HttpRequest::get("/open").with_query("t=x")).unwrap();
    assert_eq!(response.status, 503);
}

#[test]
fn links_use_the_public_url_tenant_and_plugin() {
    let host = TestHost::new();
    host.set_tenant("acme");
    host.set_config(json!({"public_url": "https://crm.example.com/"}));
    let ctx = host.ctx(&Marketing);
    let config = Config::load(&ctx).unwrap();
    assert_eq!(config.routes_base(&ctx), "https://crm.example.com/hooks/acme/marketing");
}
