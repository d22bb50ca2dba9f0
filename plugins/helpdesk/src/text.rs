//! Small text helpers shared by emails, pages and event payloads: UTC
//! timestamps, HTML escaping and the public links the plugin hands out.

use chrono::{DateTime, SecondsFormat};

use crate::config::Config;

/// An instant as RFC 3339 in UTC with milliseconds, as GraphQL shows
/// date-times (`2025-03-31T08:00:00.000Z`).
pub fn iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|time| time.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default()
}

pub use crm_plugin_sdk::text::escape_html;

/// The public URL of one of the plugin's routes:
/// `<public_url>/hooks/<tenant>/<plugin><path>`.
pub fn route_url(config: &Config, tenant: &str, plugin: &str, path: &str) -> String {
    format!("{}/hooks/{tenant}/{plugin}{path}", config.base_url())
}

/// The first `limit` characters of `text` with runs of whitespace made
/// single spaces, and `…` when cut.
pub fn snippet(text: &str, limit: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= limit {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(limit).collect();
    cut.push('…');
    cut
}
