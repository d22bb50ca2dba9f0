//! The per-tenant configuration. Every part has a default, so the plugin
//! works when enabled with `{}` (as the server does for the `default`
//! tenant); the kernel checks a configuration against [`schema`] when it
//! is set, and [`Config::check`] adds what JSON Schema cannot say.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::Deserialize;
use crm_plugin_sdk::serde_json::{self, json};

/// Messages per timer run at most: one run must stay well inside its time
/// budget, and a query page holds at most 500 records.
pub const MAX_BATCH: u32 = 500;

/// What the web-to-lead form accepts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default, deny_unknown_fields)]
pub struct Form {
    /// Contact fields (stored names) a submission may set besides `email`
    /// and the consent field.
    pub fields: Vec<String>,
    /// `source` of contacts the form creates.
    pub source: String,
    /// `lifecycle_stage` of contacts the form creates; none leaves it empty.
    pub lifecycle_stage: Option<String>,
    /// Whether a truthy `email_opt_in` in a submission records consent.
    pub consent: bool,
    /// Where a successful form-urlencoded submission is redirected (303);
    /// none answers JSON.
    pub redirect_url: Option<String>,
}

impl Default for Form {
    fn default() -> Self {
        Form {
            fields: ["first_name", "last_name", "phone", "mobile", "title", "country"].map(String::from).to_vec(),
            source: "web form".into(),
            lifecycle_stage: Some("lead".into()),
            consent: true,
            redirect_url: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default, deny_unknown_fields)]
pub struct Config {
    /// The server's address as recipients reach it; tracking and
    /// unsubscribe links are `<public_url>/hooks/<tenant>/marketing/…`.
    pub public_url: String,
    /// Messages one timer run hands to the outbound channel at most.
    pub batch_size: u32,
    /// Messages per minute for campaigns without their own throttle; 0
    /// means no limit.
    pub default_throttle_per_minute: u32,
    /// Days before a deal is won in which an open or click counts.
    pub attribution_window_days: u32,
    /// Leaves out contacts with a bounced message from any campaign.
    pub skip_bounced: bool,
    /// Logs every message handed to the outbound channel as an activity and
    /// an `email_sent` event (off by default: a large campaign would write
    /// two more records per message).
    pub log_sent: bool,
    /// The text of the page the unsubscribe link answers with.
    pub unsubscribe_message: String,
    pub form: Form,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_url: "http://localhost:8080".into(),
            batch_size: 250,
            default_throttle_per_minute: 0,
            attribution_window_days: 30,
            skip_bounced: true,
            log_sent: false,
            unsubscribe_message: "You will no longer receive marketing email from us.".into(),
            form: Form::default(),
        }
    }
}

/// The lifecycle stages of the standard `contact` object.
pub const STAGES: [&str; 8] =
    ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"];

/// Contact fields a form may never set: the kernel's, the consent trail
/// (the form records consent itself) and email (always accepted).
const FORM_RESERVED: [&str; 9] = [
    "id",
    "version",
    "created_at",
    "updated_at",
    "deleted_at",
    "email",
    "email_opt_in",
    "email_opt_in_at",
    "email_opt_in_source",
];

impl Config {
    /// The tenant's configuration, checked.
    pub fn load(ctx: &Ctx) -> Result<Config> {
        let config: Config = ctx.config()?;
        config.check()?;
        Ok(config)
    }

    /// The checks JSON Schema cannot express; the error names the part.
    pub fn check(&self) -> Result<()> {
        if !is_http_url(&self.public_url) {
            return Err(Error::msg(format!("public_url: '{}' is not an http(s) URL", self.public_url)));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(Error::msg(format!("batch_size: {} is not between 1 and {MAX_BATCH}", self.batch_size)));
        }
        if !(1..=3650).contains(&self.attribution_window_days) {
            return Err(Error::msg(format!(
                "attribution_window_days: {} is not between 1 and 3650",
                self.attribution_window_days
            )));
        }
        for (index, field) in self.form.fields.iter().enumerate() {
            if !is_field_name(field) {
                return Err(Error::msg(format!("form.fields[{index}]: '{field}' is not a field name (a-z, 0-9 and _)")));
            }
            if FORM_RESERVED.contains(&field.as_str()) {
                return Err(Error::msg(format!("form.fields[{index}]: '{field}' cannot be set by a form")));
            }
        }
        if let Some(stage) = &self.form.lifecycle_stage
            && !STAGES.contains(&stage.as_str())
        {
            return Err(Error::msg(format!("form.lifecycle_stage: '{stage}' is not one of {}", STAGES.join(", "))));
        }
        if let Some(url) = &self.form.redirect_url
            && !is_http_url(url)
        {
            return Err(Error::msg(format!("form.redirect_url: '{url}' is not an http(s) URL")));
        }
        Ok(())
    }

    /// `<public_url>/hooks/<tenant>/<plugin>`: the prefix of the plugin's
    /// public routes.
    pub fn routes_base(&self, ctx: &Ctx) -> String {
        format!("{}/hooks/{}/{}", self.public_url.trim_end_matches('/'), ctx.tenant(), ctx.plugin())
    }
}

pub fn is_http_url(text: &str) -> bool {
    (text.starts_with("http://") || text.starts_with("https://")) && !text.contains(char::is_whitespace)
}

/// `[a-z][a-z0-9_]*`, as the kernel names fields.
pub fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// The JSON Schema of the configuration, for the manifest.
pub fn schema() -> serde_json::Value {
    let defaults = Config::default();
    let mut stages: Vec<serde_json::Value> = STAGES.iter().map(|stage| json!(stage)).collect();
    stages.push(serde_json::Value::Null);
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "public_url": {
                "type": "string", "minLength": 8, "maxLength": 500, "default": defaults.public_url,
                "description": "The server's address as recipients reach it; links are <public_url>/hooks/<tenant>/marketing/…"
            },
            "batch_size": {
                "type": "integer", "minimum": 1, "maximum": MAX_BATCH, "default": defaults.batch_size,
                "description": "Messages one timer run sends at most"
            },
            "default_throttle_per_minute": {
                "type": "integer", "minimum": 0, "default": 0,
                "description": "Messages per minute for campaigns without their own throttle; 0 means no limit"
            },
            "attribution_window_days": {
                "type": "integer", "minimum": 1, "maximum": 3650, "default": defaults.attribution_window_days,
                "description": "Days before a deal is won in which an open or click counts"
            },
            "skip_bounced": {"type": "boolean", "default": true, "description": "Leave out contacts with a bounced message"},
            "log_sent": {"type": "boolean", "default": false, "description": "Log every message sent as an activity and an email_sent event"},
            "unsubscribe_message": {"type": "string", "maxLength": 2000, "default": defaults.unsubscribe_message},
            "form": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "fields": {
                        "type": "array", "maxItems": 100,
                        "items": {"type": "string", "minLength": 1, "maxLength": 63},
                        "default": defaults.form.fields,
                        "description": "Contact fields a submission may set besides email and email_opt_in"
                    },
                    "source": {"type": "string", "maxLength": 200, "default": defaults.form.source},
                    "lifecycle_stage": {"type": ["string", "null"], "enum": stages, "default": "lead"},
                    "consent": {"type": "boolean", "default": true, "description": "Whether email_opt_in in a submission records consent"},
                    "redirect_url": {"type": ["string", "null"], "maxLength": 2000, "description": "303 redirect after a form-urlencoded submission"}
                }
            }
        }
    })
}
