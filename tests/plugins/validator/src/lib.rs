//! Test plugin: a fail-closed before-write hook on contacts that refuses an
//! email at a blocked domain (config `{"blocked_domains": [...]}`, default
//! `["blocked.test"]`) and an empty `last_name`.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::Deserialize;
use crm_plugin_sdk::serde_json::json;

#[derive(Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default)]
struct Config {
    blocked_domains: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { blocked_domains: vec!["blocked.test".into()] }
    }
}

#[derive(Default)]
pub struct Validator;

impl Plugin for Validator {
    fn manifest(&self) -> Manifest {
        Manifest::new("validator", env!("CARGO_PKG_VERSION"))
            .description("Refuses contacts with an email at a blocked domain or an empty last name")
            .before_write("contact", [Op::Create, Op::Update])
            .access(ObjectAccess::new("contact").fields(["email", "last_name"]).read())
            .config_schema(json!({
                "type": "object",
                "properties": {
                    "blocked_domains": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "description": "Email domains (and their subdomains) to refuse",
                        "default": ["blocked.test"]
                    }
                },
                "additionalProperties": false
            }))
    }

    fn before_write(&self, ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
        let config: Config = ctx.config()?;
        Ok(changes.iter().map(|change| judge(&config, change.after())).collect())
    }
}

fn judge(config: &Config, after: &Fields) -> Decision {
    if let Some(domain) =
        after.text("email").and_then(|email| email.trim().rsplit_once('@')).map(|(_, domain)| domain.to_ascii_lowercase())
    {
        let blocked =
            config.blocked_domains.iter().map(|blocked| blocked.trim().to_ascii_lowercase()).find(|blocked| {
                domain == *blocked || domain.strip_suffix(blocked.as_str()).is_some_and(|rest| rest.ends_with('.'))
            });
        if let Some(blocked) = blocked {
            return Decision::reject_field("email", format!("email addresses at {blocked} are not accepted"));
        }
    }
    if after.text("last_name").is_some_and(|name| name.trim().is_empty()) {
        return Decision::reject_field("last_name", "must not be empty");
    }
    Decision::accept()
}

register_plugin!(Validator);

#[cfg(test)]
mod tests {
    use super::*;
    use crm_plugin_sdk::testing::TestHost;

    fn decide(host: &TestHost, fields: Fields) -> Decision {
        host.before_write(&Validator, vec![Change::create("contact", fields)]).unwrap().remove(0)
    }

    #[test]
    fn manifest_is_valid() {
        Validator.manifest().validate().unwrap();
    }

    #[test]
    fn default_config_blocks_blocked_test() {
        let host = TestHost::new();
        let decision = decide(&host, Fields::new().with("email", "a@Blocked.Test"));
        assert!(matches!(&decision, Decision::Reject { field: Some(field), .. } if field == "email"), "{decision:?}");
        assert!(decide(&host, Fields::new().with("email", "a@sub.blocked.test")).is_reject());
        assert!(decide(&host, Fields::new().with("email", "a@notblocked.test")).is_accept());
        assert!(decide(&host, Fields::new().with("email", "a@example.org")).is_accept());
    }

    #[test]
    fn configured_domains_replace_the_default() {
        let host = TestHost::new();
        host.set_config(json!({"blocked_domains": ["example.org"]}));
        assert!(decide(&host, Fields::new().with("email", "a@example.org")).is_reject());
        assert!(decide(&host, Fields::new().with("email", "a@blocked.test")).is_accept());
    }

    #[test]
    fn empty_last_name_is_refused_only_when_present() {
        let host = TestHost::new();
        let decision = decide(&host, Fields::new().with("last_name", " "));
        assert_eq!(decision, Decision::reject_field("last_name", "must not be empty"));
        assert!(decide(&host, Fields::new().with("first_name", "Ada")).is_accept());
        assert!(decide(&host, Fields::new().with("last_name", "Lovelace")).is_accept());
    }

    #[test]
    fn updates_are_judged_too() {
        let host = TestHost::new();
        let before = Fields::new().with("email", "a@ok.test");
        let change = Change::update("contact", "01ID", before, Fields::new().with("email", "a@blocked.test"));
        assert!(host.before_write(&Validator, vec![change]).unwrap()[0].is_reject());
    }

    #[test]
    fn bad_config_fails_the_hook() {
        let host = TestHost::new();
        host.set_config(json!({"blocked_domains": "example.org"}));
        let error = host.before_write(&Validator, vec![Change::create("contact", Fields::new())]).unwrap_err();
        assert!(error.message().contains("invalid plugin configuration"), "{error}");
    }
}
