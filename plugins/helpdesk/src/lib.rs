//! The bundled `helpdesk` plugin: tickets with SLA clocks on business-hours
//! calendars, breach and warning events, escalation rules, assignment
//! within teams, canned replies, a knowledge base, and CSAT and NPS
//! surveys.
//!
//! How it fits together:
//!
//! - A fail-closed before-write hook on tickets ([`tickets`]) keeps the
//!   rules (a closed ticket stays closed, teams come from the
//!   configuration) and derives the SLA fields in the write itself
//!   ([`sla::derive`]): the policy ([`policy`]), the clock checkpoint, the
//!   due times on the policy's calendar ([`calendar`]), status timestamps
//!   and minutes. So due times are on the ticket the moment a client
//!   writes it.
//! - After a ticket is committed ([`lifecycle`]): assignment within its
//!   team ([`assignment`]), the CSAT survey once solved ([`surveys`]), and
//!   its timers ([`schedule`]) at the exact due times.
//! - Timers record breaches and warnings ([`breach`]) and run escalation
//!   rules ([`escalation`]); the per-ticket bookkeeping is in kv
//!   ([`state`]).
//! - Comments ([`replies`]): a public agent reply meets reply targets and
//!   is emailed to the requester; a requester message starts a next-reply
//!   wait and reopens the ticket.
//! - Actions ([`actions`]): canned replies ([`canned`]), knowledge-base
//!   search ([`kb`]), assignment, NPS surveys and scores. Public routes
//!   ([`routes`]) record survey answers from signed links.
//!
//! ```
//! use crm_plugin_helpdesk::Helpdesk;
//! use crm_plugin_sdk::prelude::*;
//! use crm_plugin_sdk::testing::TestHost;
//!
//! let host = TestHost::new();
//! let ticket = host.write(&Helpdesk, Change::create("ticket", [("subject", "Printer on fire"), ("priority", "urgent")])).unwrap();
//! assert_eq!(ticket.text("status"), Some("new"));
//! assert_eq!(ticket.text("sla_policy"), Some("urgent"));
//! // The default urgent policy: first reply within 60 minutes, around the clock.
//! assert_eq!(ticket.int("first_reply_due_at"), Some(host.now() + 60 * 60_000));
//! ```

use crm_plugin_sdk::prelude::*;

pub mod actions;
pub mod assignment;
pub mod breach;
pub mod calendar;
pub mod canned;
pub mod config;
pub mod escalation;
pub mod kb;
pub mod lifecycle;
pub mod objects;
pub mod policy;
pub mod replies;
pub mod routes;
pub mod schedule;
pub mod sla;
pub mod state;
pub mod surveys;
pub mod text;
pub mod tickets;

use config::Config;
use objects::{ARTICLE, CANNED, COMMENT, SURVEY, TICKET};

/// The plugin.
#[derive(Default)]
pub struct Helpdesk;

impl Plugin for Helpdesk {
    fn manifest(&self) -> Manifest {
        let writes = [Op::Create, Op::Update];
        let mut manifest = Manifest::new("helpdesk", env!("CARGO_PKG_VERSION"))
            .description("Helpdesk: tickets, SLA policies with business hours, escalation, assignment, canned replies, knowledge base, CSAT and NPS")
            .extend("company", objects::company_tier())
            .hook(HookDecl::before_write(TICKET, writes))
            .hook(HookDecl::before_write(COMMENT, writes))
            .hook(HookDecl::before_write(CANNED, writes))
            .hook(HookDecl::before_write(ARTICLE, writes))
            .hook(HookDecl::after_commit(TICKET, Op::ALL).fail_closed())
            .hook(HookDecl::after_commit(COMMENT, [Op::Create]).fail_closed())
            // Create access on tickets and articles is what lets the
            // before-write hook patch defaults into records being created.
            .access(ObjectAccess::new(TICKET).read().create().update())
            .access(ObjectAccess::new(COMMENT).read().create().update())
            .access(ObjectAccess::new(CANNED).read())
            .access(ObjectAccess::new(ARTICLE).read().create().update())
            .access(ObjectAccess::new(SURVEY).read().create().update())
            .access(ObjectAccess::new("contact").fields(["first_name", "last_name", "email", "company_id"]).read())
            .access(ObjectAccess::new("company").fields(["name", objects::SUPPORT_TIER]).read())
            .outbound("email")
            .timers()
            .kv()
            .events()
            // A delivery batch of imported tickets writes timers and kv
            // for each; a knowledge-base search reads up to 1000 articles.
            .limits(Limits::default().fuel(5_000_000_000).timeout_ms(30_000).host_calls(100_000))
            .config_schema(config::schema());
        for object in objects::declared() {
            manifest = manifest.object(object);
        }
        for action in actions::decls() {
            manifest = manifest.action(action);
        }
        for (method, path) in routes::declared() {
            manifest = manifest.route(method, path);
        }
        manifest
    }

    fn before_write(&self, ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
        let now = clock::now();
        let mut config: Option<std::result::Result<Config, String>> = None;
        let mut decisions = Vec::with_capacity(changes.len());
        for change in changes {
            let decision = match change.object() {
                TICKET if matches!(change.op(), Op::Create | Op::Update) => {
                    let loaded = config.get_or_insert_with(|| Config::load(ctx).map_err(|error| error.message().to_owned()));
                    match loaded {
                        Ok(config) => tickets::before_write(config, change, now)?,
                        Err(message) => Decision::reject(message.clone()),
                    }
                }
                COMMENT if matches!(change.op(), Op::Create | Op::Update) => replies::before_write(change)?,
                CANNED if matches!(change.op(), Op::Create | Op::Update) => canned::before_write(change),
                ARTICLE if matches!(change.op(), Op::Create | Op::Update) => kb::before_write(change, now),
                _ => Decision::accept(),
            };
            decisions.push(decision);
        }
        Ok(decisions)
    }

    fn after_commit(&self, ctx: &Ctx, events: &[Event]) -> Result<()> {
        let config = Config::load(ctx)?;
        let now = clock::now();
        let mut settle: Vec<&str> = Vec::new();
        for event in events {
            match event.object.as_str() {
                COMMENT if event.op == Op::Create => replies::on_created(&config, &event.id, now)?,
                TICKET if !settle.contains(&event.id.as_str()) => settle.push(&event.id),
                _ => {}
            }
        }
        for id in settle {
            lifecycle::settle(ctx, &config, id, now)?;
        }
        Ok(())
    }

    fn on_timer(&self, ctx: &Ctx, key: &str, _payload: &[u8]) -> Result<()> {
        lifecycle::on_timer(&Config::load(ctx)?, key, clock::now())
    }

    fn invoke(&self, ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
        actions::invoke(ctx, action, input)
    }

    fn http(&self, ctx: &Ctx, request: &HttpRequest) -> HttpResponse {
        routes::handle(ctx, request)
    }
}

register_plugin!(Helpdesk);

#[cfg(test)]
mod tests;
