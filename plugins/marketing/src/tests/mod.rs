//! Unit tests: pure helpers directly, everything that touches the host
//! through the SDK's `TestHost` with the manifest's grants enforced.
//!
//! The test host does not know the tenant's schema: it neither enforces
//! unique fields nor refuses unknown field names in filters. Tests of
//! those paths use what the plugin does with the kernel's answers.

pub use crm_plugin_sdk::serde_json::{self, Value as Json, json};
pub use crm_plugin_sdk::testing::TestHost;

pub use crate::Marketing;
pub use crm_plugin_sdk::prelude::*;

mod actions;
mod attribution;
mod campaigns;
mod config;
mod delivery;
mod form;
mod html;
mod merge;
mod segments;
mod sequences;
mod templates;
mod tracking;

/// Where the default configuration's links point for the test host's
/// `default` tenant.
pub const BASE: &str = "http://localhost:8080/hooks/default/marketing";

/// A contact stored as a user would have it (no hooks run).
pub fn contact(host: &TestHost, first_name: &str, email: Option<&str>, opt_in: Option<bool>) -> Record {
    contact_with(host, first_name, email, opt_in, Fields::new())
}

pub fn contact_with(host: &TestHost, first_name: &str, email: Option<&str>, opt_in: Option<bool>, extra: Fields) -> Record {
    let mut fields = Fields::new().with("first_name", first_name).with("lifecycle_stage", "lead");
    if let Some(email) = email {
        fields.set("email", email);
    }
    if let Some(opt_in) = opt_in {
        fields.set("email_opt_in", opt_in);
    }
    fields.merge(&extra);
    host.insert("contact", fields)
}

/// A segment saved by a client (its before-write hook runs).
pub fn segment(host: &TestHost, filter: Json) -> Record {
    host.write(
        &Marketing,
        Change::create("segment", [("name", Value::from("Leads")), ("filter", Value::from(filter.to_string()))]),
    )
    .unwrap()
}

/// A template saved by a client.
pub fn template(host: &TestHost, subject: &str, html: &str) -> Record {
    let fields = [("name", "Spring news"), ("subject", subject), ("html", html)];
    host.write(&Marketing, Change::create("email_template", fields)).unwrap()
}

/// A draft campaign saved by a client.
pub fn campaign(host: &TestHost, segment: &Record, template: &Record, throttle: Option<i64>) -> Record {
    let fields = Fields::new()
        .with("name", "Spring")
        .with("segment_id", Value::Id(segment.id.clone()))
        .with("template_id", Value::Id(template.id.clone()))
        .with("throttle_per_minute", throttle);
    host.write(&Marketing, Change::create("campaign", fields)).unwrap()
}

/// Runs due timers until none is due at the current time; returns how
/// many ran.
pub fn drain(host: &TestHost) -> usize {
    let mut ran = 0;
    for _ in 0..1000 {
        let now = host.now();
        if !host.timers().iter().any(|timer| timer.at <= now) {
            return ran;
        }
        ran += host.fire_due_timers(&Marketing).unwrap();
    }
    panic!("timers kept coming");
}

/// Runs timers until none is left within `gap` ms of the clock, moving
/// the clock to each (a follow-up batch is scheduled 1 ms after the one
/// that ran, so `gap` 1 runs an unthrottled campaign to its end).
pub fn run_timers(host: &TestHost, gap: i64) -> usize {
    let mut ran = drain(host);
    for _ in 0..1000 {
        let Some(next) = host.timers().first().map(|timer| timer.at) else { return ran };
        if next > host.now() + gap {
            return ran;
        }
        host.set_now(next.max(host.now()));
        ran += drain(host);
    }
    panic!("timers kept coming");
}

/// Delivers every committed change not delivered yet to the plugin's
/// after-commit hook, until nothing new is committed.
pub fn deliver(host: &TestHost) {
    for _ in 0..100 {
        let events = host.take_events();
        if events.is_empty() {
            return;
        }
        host.after_commit(&Marketing, events).unwrap();
    }
    panic!("after-commit kept writing");
}

/// The URLs of `href` and `src` attributes in a message's HTML.
pub fn urls(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(marker) {
            let after = &rest[start + marker.len()..];
            let end = after.find('"').unwrap();
            found.push(crate::html::unescape(&after[..end]));
            rest = &after[end..];
        }
    }
    found
}

/// The first URL of a message going to `route` (`/open`, `/click`, …).
pub fn link(html: &str, route: &str) -> String {
    let prefix = format!("{BASE}{route}?");
    urls(html).into_iter().find(|url| url.starts_with(&prefix)).unwrap_or_else(|| panic!("no {route} link in {html}"))
}

/// A GET request for one of the plugin's absolute URLs.
pub fn get(url: &str) -> HttpRequest {
    let rest = url.strip_prefix(BASE).unwrap_or_else(|| panic!("{url} is not a link of this plugin"));
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    HttpRequest::get(path).with_query(query)
}

/// The custom events emitted with this name, payloads parsed.
pub fn emitted(host: &TestHost, name: &str) -> Vec<Json> {
    host.emitted()
        .into_iter()
        .filter(|event| event.name == name)
        .map(|event| serde_json::from_str(&event.payload).unwrap())
        .collect()
}
