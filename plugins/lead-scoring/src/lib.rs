//! The bundled `lead-scoring` plugin: fit and engagement scores, a grade
//! and a predictive score on every contact, score history, thresholds that
//! move the lifecycle stage, assign an owner and emit an event, and a
//! backfill that re-scores every contact.
//!
//! How it fits together:
//!
//! - A fail-open before-write hook on contacts scores a contact whenever it
//!   is created or a field a score depends on changes ([`scoring::patch`]):
//!   fit points from the rules ([`rules::fit`]), the stored engagement
//!   decayed to now, the total, its grade, the predictive score when a
//!   usable model exists, the threshold reached, and the lifecycle stage
//!   of a threshold just crossed. Scoring never blocks a write: a failure
//!   leaves the contact unscored and is logged.
//! - After-commit hooks on activities and custom events compute the linked
//!   contact's engagement from everything linked to it, decayed by age, and
//!   write it ([`scoring::refresh`]); that write goes through the
//!   before-write hook, which scores the rest.
//! - An after-commit hook on contacts writes the history record of a
//!   changed total and runs the owner assignment and event of a threshold
//!   just reached ([`effects`]).
//! - Actions train and apply the predictive model ([`predictive`],
//!   [`model`]) and run the backfill ([`backfill`]).
//!
//! ```
//! use crm_plugin_lead_scoring::LeadScoring;
//! use crm_plugin_sdk::prelude::*;
//! use crm_plugin_sdk::testing::TestHost;
//!
//! let host = TestHost::new();
//! let contact = host.write(&LeadScoring, Change::create("contact", [("first_name", "Ada"), ("title", "VP Sales")])).unwrap();
//! assert_eq!(contact.int("fit_score"), Some(20));
//! assert_eq!(contact.text("score_grade"), Some("d"));
//! ```

use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;

pub mod actions;
pub mod backfill;
pub mod config;
pub mod effects;
pub mod fields;
pub mod model;
pub mod predictive;
pub mod rules;
pub mod scoring;

use config::Config;

/// The plugin.
#[derive(Default)]
pub struct LeadScoring;

impl Plugin for LeadScoring {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("lead-scoring", env!("CARGO_PKG_VERSION"))
            .description("Lead scoring: fit and engagement scores, grades, thresholds, score history and a predictive score")
            .object(fields::history_object())
            .hook(HookDecl::before_write("contact", [Op::Create, Op::Update]).fail_open())
            .hook(HookDecl::after_commit("contact", [Op::Create, Op::Update]).fail_closed())
            .hook(HookDecl::after_commit("activity", Op::ALL).fail_closed())
            .hook(HookDecl::after_commit("custom_event", [Op::Create]).fail_closed())
            .access(ObjectAccess::new("contact").read())
            .access(ObjectAccess::new("contact").fields(fields::writable()).create().update())
            .access(ObjectAccess::new("company").fields(["employees", "industry", "country"]).read())
            .access(ObjectAccess::new("activity").fields(["kind", "occurred_at", "contact_id"]).read())
            .access(ObjectAccess::new("custom_event").fields(["name", "payload", "source"]).read())
            .access(ObjectAccess::new("deal").fields(["contact_id", "pipeline_id", "stage"]).read())
            .access(ObjectAccess::new("pipeline_stage").fields(["pipeline_id", "key", "is_closed", "is_won"]).read())
            .access(ObjectAccess::new(fields::HISTORY).read().create())
            .kv()
            .timers()
            .events()
            // Training and backfill batches read and write many records in
            // one call.
            .limits(Limits::default().fuel(20_000_000_000).timeout_ms(30_000).host_calls(200_000))
            .config_schema(config::schema());
        for field in fields::contact_fields() {
            manifest = manifest.extend("contact", field);
        }
        for action in actions::decls() {
            manifest = manifest.action(action);
        }
        manifest
    }

    fn before_write(&self, ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
        if !changes.iter().any(scoring::needs_rescore) {
            return Ok(vec![Decision::Accept; changes.len()]);
        }
        let config = Config::load(ctx)?;
        let model = scoring::stored_model()?;
        let now = clock::now();
        let mut companies = scoring::Companies::default();
        changes
            .iter()
            .map(|change| {
                if !scoring::needs_rescore(change) {
                    return Ok(Decision::Accept);
                }
                let patch = scoring::patch(&config, model.as_ref(), change, &mut companies, ctx.plugin(), now)?;
                Ok(Decision::patch(patch))
            })
            .collect()
    }

    fn after_commit(&self, ctx: &Ctx, events: &[Event]) -> Result<()> {
        let config = Config::load(ctx)?;
        // Contacts to refresh, once each, with the reason of their last event.
        let mut refresh: BTreeMap<String, String> = BTreeMap::new();
        for event in events {
            match event.object.as_str() {
                "activity" => {
                    if let Some(contact) = event.fields.id("contact_id") {
                        let kind = event.fields.text("kind").unwrap_or("activity");
                        refresh.insert(contact.to_owned(), format!("activity {} ({kind})", event.op));
                    }
                }
                "custom_event" if event.fields.text("source") != Some(ctx.plugin()) => {
                    if let Some(contact) = event.fields.text("payload").and_then(scoring::event_contact) {
                        let name = event.fields.text("name").unwrap_or("event");
                        refresh.insert(contact, format!("event {name}"));
                    }
                }
                "contact" if matches!(event.op, Op::Create | Op::Update) => {
                    effects::record_history(&event.id, &event.fields)?;
                    for done in effects::act_on_thresholds(&config, &event.id, &event.fields)? {
                        info!("contact {}: {done}", event.id);
                    }
                }
                _ => {}
            }
        }
        for (contact, reason) in refresh {
            // The contact may be gone, or the id not a contact at all.
            match scoring::refresh(&config, ctx.plugin(), &contact, &reason) {
                Ok(_) => {}
                Err(error) if error.is(ErrorCode::Invalid) => warn!("cannot score contact {contact}: {error}"),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn on_timer(&self, ctx: &Ctx, key: &str, payload: &[u8]) -> Result<()> {
        if key != backfill::TIMER_KEY {
            warn!("ignoring unknown timer {key}");
            return Ok(());
        }
        backfill::run_batch(&Config::load(ctx)?, ctx.plugin(), payload)
    }

    fn invoke(&self, ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
        actions::invoke(ctx, action, input)
    }
}

register_plugin!(LeadScoring);

#[cfg(test)]
mod tests;
