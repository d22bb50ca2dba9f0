//! Who and what a call is about.

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The context of one call: tenant, plugin, the triggering request and the
/// tenant's configuration of the plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Ctx {
    tenant: String,
    plugin: String,
    version: String,
    request_id: Option<String>,
    actor: String,
    config: serde_json::Value,
    config_error: Option<String>,
}

impl Ctx {
    /// A context with actor `system`, no request id and an empty config.
    pub fn new(tenant: impl Into<String>, plugin: impl Into<String>, version: impl Into<String>) -> Ctx {
        Ctx {
            tenant: tenant.into(),
            plugin: plugin.into(),
            version: version.into(),
            request_id: None,
            actor: "system".into(),
            config: serde_json::Value::Object(Default::default()),
            config_error: None,
        }
    }

    /// The context with the configuration given as JSON text, as the host
    /// sends it. Empty text is `{}`; text that is not JSON is remembered and
    /// reported by [`Ctx::config`].
    pub fn with_config_text(mut self, text: &str) -> Ctx {
        let text = if text.trim().is_empty() { "{}" } else { text };
        match serde_json::from_str(text) {
            Ok(config) => {
                self.config = config;
                self.config_error = None;
            }
            Err(error) => {
                self.config = serde_json::Value::Null;
                self.config_error = Some(error.to_string());
            }
        }
        self
    }

    pub fn with_config(mut self, config: serde_json::Value) -> Ctx {
        self.config = config;
        self.config_error = None;
        self
    }

    pub fn with_actor(mut self, actor: impl Into<String>) -> Ctx {
        self.actor = actor.into();
        self
    }

    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Ctx {
        self.request_id = Some(request_id.into());
        self
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The plugin's id.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The plugin's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The request that caused the call, when there is one.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The actor of the triggering request (`api-key:…`, `system`, …).
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The tenant's configuration as JSON (`null` if the host sent text that
    /// is not JSON).
    pub fn config_json(&self) -> &serde_json::Value {
        &self.config
    }

    /// The tenant's configuration as `T`. A `null` configuration reads as
    /// `{}`, so a struct whose fields all have `#[serde(default)]` always
    /// reads.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        if let Some(error) = &self.config_error {
            return Err(Error::msg(format!("plugin configuration is not JSON: {error}")));
        }
        let config = if self.config.is_null() { serde_json::Value::Object(Default::default()) } else { self.config.clone() };
        serde_json::from_value(config).map_err(|error| Error::msg(format!("invalid plugin configuration: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Config {
        #[serde(default)]
        blocked: Vec<String>,
    }

    #[test]
    fn typed_config_reads_defaults_and_reports_bad_json() {
        let ctx = Ctx::new("t", "p", "0.1.0");
        assert_eq!(ctx.config::<Config>().unwrap(), Config { blocked: vec![] });
        let ctx = ctx.with_config_text(r#"{"blocked": ["x"]}"#);
        assert_eq!(ctx.config::<Config>().unwrap().blocked, ["x"]);
        assert_eq!(ctx.config_json()["blocked"][0], "x");
        let ctx = ctx.with_config_text("{oops");
        assert!(ctx.config::<Config>().unwrap_err().message().contains("not JSON"));
        let ctx = ctx.with_config_text("");
        assert!(ctx.config::<Config>().is_ok());
        let ctx = ctx.with_config(serde_json::json!({"blocked": 3}));
        assert!(ctx.config::<Config>().unwrap_err().message().starts_with("invalid plugin configuration"));
    }
}
