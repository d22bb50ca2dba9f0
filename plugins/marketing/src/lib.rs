//! The bundled `marketing` plugin: segments, email templates with merge
//! fields, campaigns sent in throttled batches with open, click and
//! unsubscribe tracking, sequences of emails, tasks and waits that stop on
//! a reply, a web-to-lead form, analytics per campaign and step, and
//! attribution of won deals to campaigns.
//!
//! How it fits together:
//!
//! - Objects ([`objects`]): `segment`, `email_template`, `campaign`,
//!   `campaign_send` (the send log), `sequence`, `sequence_step` and
//!   `sequence_enrollment`.
//! - Before-write hooks on its own objects check what clients save: a
//!   segment's filter runs and is counted ([`segments::judge`]), a
//!   template's merge fields exist ([`templates::judge`]), a campaign's
//!   status and counters move only through the plugin
//!   ([`campaigns::judge`]), a step is complete ([`sequences::judge_step`]).
//! - Actions ([`actions`]) send and cancel campaigns, count segments,
//!   preview templates, enrol contacts and compute attribution.
//! - Timers send campaign batches ([`campaigns::run_batch`]) and run
//!   sequence steps ([`sequences::run`]).
//! - After-commit hooks follow delivery reports on outbound messages
//!   ([`delivery`]), end enrolments on a reply, a new deal or an
//!   unsubscribe, and enrol contacts entering a segment flagged for it.
//! - Public routes ([`routes`]) record opens, clicks and unsubscribes from
//!   signed links ([`tracking`]) and take web-to-lead submissions
//!   ([`form`]).
//!
//! ```
//! use crm_plugin_marketing::Marketing;
//! use crm_plugin_sdk::prelude::*;
//! use crm_plugin_sdk::testing::TestHost;
//!
//! let host = TestHost::new();
//! let template = Change::create("email_template", [("name", "Hi"), ("subject", "Hi {{deal.name}}"), ("html", "<p>Hi</p>")]);
//! let refused = host.write(&Marketing, template).unwrap_err();
//! assert!(refused.message().starts_with("subject: unknown merge field {{deal.name}}"), "{refused}");
//!
//! let template = Change::create("email_template", [("name", "Hi"), ("subject", "Hi {{contact.first_name|there}}"), ("html", "<p>Hi</p>")]);
//! let saved = host.write(&Marketing, template).unwrap();
//! assert_eq!(saved.texts("merge_fields"), Some(&["contact.first_name".to_owned()][..]));
//! ```

use std::collections::BTreeSet;

use crm_plugin_sdk::prelude::*;

pub mod actions;
pub mod attribution;
pub mod campaigns;
pub mod compose;
pub mod config;
pub mod counters;
pub mod delivery;
pub mod engagement;
pub mod form;
pub mod html;
pub mod merge;
pub mod objects;
pub mod routes;
pub mod segments;
pub mod sends;
pub mod sequences;
pub mod templates;
pub mod timeline;
pub mod tracking;

use config::Config;
use merge::Catalog;
use objects::{CAMPAIGN, ENROLLMENT, SEGMENT, STEP, TEMPLATE};

/// The plugin.
#[derive(Default)]
pub struct Marketing;

/// Whether the write being judged is this plugin's own (the kernel runs
/// before-write hooks for plugin writes too, with the actor
/// `plugin:<id>@<version>`).
fn own_write(ctx: &Ctx) -> bool {
    ctx.actor().strip_prefix("plugin:").and_then(|rest| rest.split_once('@')).is_some_and(|(plugin, _)| plugin == ctx.plugin())
}

impl Plugin for Marketing {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("marketing", env!("CARGO_PKG_VERSION"))
            .description("Marketing automation: segments, templates, campaigns with tracking, sequences, web-to-lead forms, analytics and attribution");
        for object in objects::all() {
            let name = object.name.clone();
            manifest = manifest.object(object).access(ObjectAccess::new(name).all());
        }
        for object in [SEGMENT, TEMPLATE, CAMPAIGN, STEP] {
            manifest = manifest.before_write(object, [Op::Create, Op::Update]);
        }
        manifest = manifest
            .before_write(ENROLLMENT, [Op::Create])
            .hook(HookDecl::after_commit("contact", [Op::Create, Op::Update]).fail_closed())
            .hook(HookDecl::after_commit("activity", [Op::Create]).fail_closed())
            .hook(HookDecl::after_commit("deal", [Op::Create]).fail_closed())
            .hook(HookDecl::after_commit("outbound_message", [Op::Update]).fail_closed())
            // Segments filter on any contact field; forms set configured ones.
            .access(ObjectAccess::new("contact").read().create().update())
            .access(ObjectAccess::new("company").read())
            .access(ObjectAccess::new("activity").fields(["kind", "direction", "contact_id", "subject"]).read())
            .access(
                ObjectAccess::new("activity")
                    .fields(["kind", "subject", "body", "occurred_at", "due_at", "done", "direction", "contact_id", "owner_id"])
                    .create(),
            )
            .access(ObjectAccess::new("deal").fields(["contact_id", "stage", "pipeline_id", "amount", "close_date"]).read())
            .access(ObjectAccess::new("pipeline_stage").fields(["pipeline_id", "key", "is_won"]).read())
            .access(
                ObjectAccess::new("outbound_message")
                    .fields(["status", "source", "sent_at", "error", "recipient", "subject"])
                    .read(),
            )
            .outbound("email")
            .timers()
            .kv()
            .events()
            // A campaign batch hands a few hundred messages to the outbound
            // channel in one timer call, three durable writes each.
            .limits(Limits::default().fuel(20_000_000_000).timeout_ms(30_000).host_calls(200_000))
            .config_schema(config::schema());
        for (method, path) in routes::ROUTES {
            manifest = manifest.route(method, path);
        }
        for action in actions::decls() {
            manifest = manifest.action(action);
        }
        manifest
    }

    fn before_write(&self, ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
        let mut catalog = Catalog::default();
        let own = own_write(ctx);
        changes
            .iter()
            .map(|change| match change.object() {
                SEGMENT => segments::judge(change),
                TEMPLATE => templates::judge(change, &mut catalog),
                CAMPAIGN if !own => Ok(campaigns::judge(change)),
                STEP => sequences::judge_step(change, &mut catalog),
                ENROLLMENT if !own && change.op() == Op::Create => {
                    Ok(Decision::reject("enrolments are made with the enroll action (marketingEnroll) or by a segment"))
                }
                _ => Ok(Decision::accept()),
            })
            .collect()
    }

    fn after_commit(&self, ctx: &Ctx, events: &[Event]) -> Result<()> {
        let mut messages = Vec::new();
        let mut contacts = Vec::new();
        let mut seen = BTreeSet::new();
        for event in events {
            match (event.object.as_str(), event.op) {
                ("outbound_message", Op::Update) => messages.push(event),
                ("contact", Op::Create | Op::Update) => {
                    if event.fields.bool("email_opt_in") == Some(false) {
                        sequences::exit_contact(&event.id, "unsubscribed")?;
                    }
                    if seen.insert(event.id.clone()) {
                        contacts.push(event.id.clone());
                    }
                }
                ("activity", Op::Create)
                    if event.fields.text("kind") == Some("email") && event.fields.text("direction") == Some("inbound") =>
                {
                    if let Some(contact) = event.fields.id("contact_id") {
                        sequences::exit_contact(contact, "replied")?;
                    }
                }
                ("deal", Op::Create) => {
                    if let Some(contact) = event.fields.id("contact_id") {
                        sequences::exit_contact(contact, "deal_created")?;
                    }
                }
                _ => {}
            }
        }
        delivery::on_messages(ctx.plugin(), &messages)?;
        sequences::enroll_from_segments(&contacts)?;
        Ok(())
    }

    fn on_timer(&self, ctx: &Ctx, key: &str, payload: &[u8]) -> Result<()> {
        let config = Config::load(ctx)?;
        if let Some(campaign) = key.strip_prefix(campaigns::TIMER_PREFIX) {
            campaigns::run_batch(ctx, &config, campaign, payload)
        } else if let Some(enrollment) = key.strip_prefix(sequences::TIMER_PREFIX) {
            sequences::run(ctx, &config, enrollment, payload)
        } else {
            warn!("ignoring unknown timer {key}");
            Ok(())
        }
    }

    fn invoke(&self, ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
        actions::invoke(ctx, action, input)
    }

    fn http(&self, ctx: &Ctx, request: &HttpRequest) -> HttpResponse {
        routes::handle(ctx, request)
    }
}

register_plugin!(Marketing);

#[cfg(test)]
mod tests;
