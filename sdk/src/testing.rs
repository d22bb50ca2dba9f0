//! An in-memory host for unit tests on native targets: records, kv,
//! timers, an outbound mailbox, captured logs and events, a settable clock
//! and configuration, and runners for a plugin's hooks.
//!
//! While a hook runs, the host functions (`records::get`, `kv::set`, …)
//! act on this host and check each call against the plugin's manifest, as
//! the real host checks it against the admin's grants: an ungranted call
//! returns `forbidden` to the plugin *and* fails the hook afterwards with a
//! `forbidden` "capability violation", since the real host may trap the
//! instance instead. Outside a hook (seeding data in a test) nothing is
//! checked.
//!
//! ```
//! use crm_plugin_sdk::prelude::*;
//! use crm_plugin_sdk::testing::TestHost;
//!
//! #[derive(Default)]
//! struct Upper;
//!
//! impl Plugin for Upper {
//!     fn manifest(&self) -> Manifest {
//!         Manifest::new("upper", "0.1.0")
//!             .before_write("contact", [Op::Create])
//!             .access(ObjectAccess::new("contact").fields(["last_name"]).read().create())
//!     }
//!     fn before_write(&self, _ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
//!         Ok(changes
//!             .iter()
//!             .map(|change| match change.after().text("last_name") {
//!                 Some(name) => Decision::patch([("last_name", name.to_uppercase())]),
//!                 None => Decision::accept(),
//!             })
//!             .collect())
//!     }
//! }
//!
//! let host = TestHost::new();
//! let stored = host.write(&Upper, Change::create("contact", [("last_name", "lovelace")])).unwrap();
//! assert_eq!(stored.text("last_name"), Some("LOVELACE"));
//! ```

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::ctx::Ctx;
use crate::error::{Error, ErrorCode, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::log::Level;
use crate::manifest::{Capabilities, HookKind, Manifest};
use crate::message::Message;
use crate::plugin::Plugin;
use crate::record::{Change, Decision, Event, Op, Page, Record};
use crate::value::{Fields, Value};

/// The clock's start: 2023-11-14T22:13:20Z.
pub const DEFAULT_NOW: i64 = 1_700_000_000_000;

/// A timer the plugin scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub key: String,
    /// Epoch milliseconds.
    pub at: i64,
    pub payload: Vec<u8>,
}

/// A message the plugin queued with `outbound::send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    pub message: Message,
}

/// A custom event the plugin emitted with `events::emit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub name: String,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

struct State {
    now: i64,
    tenant: String,
    actor: String,
    config: String,
    records: BTreeMap<String, BTreeMap<String, Record>>,
    kv: BTreeMap<String, Vec<u8>>,
    timers: BTreeMap<String, Timer>,
    sent: Vec<Sent>,
    emitted: Vec<Emitted>,
    logs: Vec<LogLine>,
    feed: Vec<Event>,
    seq: u64,
    counter: u64,
    requests: u64,
    enforce: bool,
    grants: Option<Capabilities>,
    /// The grants of the hook running now; `None` outside hooks.
    active: Option<Capabilities>,
    violations: Vec<String>,
    /// Set by `schema::changed()`.
    schema_changed: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            now: DEFAULT_NOW,
            tenant: "default".into(),
            actor: "api-key:test".into(),
            config: "{}".into(),
            records: BTreeMap::new(),
            kv: BTreeMap::new(),
            timers: BTreeMap::new(),
            sent: Vec::new(),
            emitted: Vec::new(),
            logs: Vec::new(),
            feed: Vec::new(),
            seq: 0,
            counter: 0,
            requests: 0,
            enforce: true,
            grants: None,
            schema_changed: false,
            active: None,
            violations: Vec::new(),
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

fn current() -> Rc<RefCell<State>> {
    CURRENT.with(|current| current.borrow_mut().get_or_insert_with(Default::default).clone())
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let state = current();
    let mut state = state.borrow_mut();
    f(&mut state)
}

/// An in-memory host. Creating one makes it the thread's current host, the
/// one the SDK's host functions use on native targets; clones share state.
#[derive(Clone)]
pub struct TestHost {
    state: Rc<RefCell<State>>,
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

impl TestHost {
    pub fn new() -> TestHost {
        let host = TestHost { state: Rc::new(RefCell::new(State::default())) };
        host.make_current();
        host
    }

    /// Makes this the host the SDK's functions use on this thread (hook
    /// runners do it for the duration of the call).
    pub fn make_current(&self) {
        CURRENT.with(|current| *current.borrow_mut() = Some(self.state.clone()));
    }

    fn state(&self) -> std::cell::RefMut<'_, State> {
        self.state.borrow_mut()
    }

    // ----- settings -----

    /// The tenant's configuration of the plugin, as the hooks' `Ctx` sees it.
    pub fn set_config(&self, config: serde_json::Value) {
        self.state().config = config.to_string();
    }

    /// Configuration text sent as is (to test how a plugin takes bad JSON).
    pub fn set_config_text(&self, config: impl Into<String>) {
        self.state().config = config.into();
    }

    pub fn set_tenant(&self, tenant: impl Into<String>) {
        self.state().tenant = tenant.into();
    }

    pub fn set_actor(&self, actor: impl Into<String>) {
        self.state().actor = actor.into();
    }

    pub fn now(&self) -> i64 {
        self.state().now
    }

    pub fn set_now(&self, now: i64) {
        self.state().now = now;
    }

    pub fn advance(&self, ms: i64) {
        self.state().now += ms;
    }

    /// Grants these capabilities instead of everything the manifest asks
    /// for (as an admin granting less); `None` goes back to the manifest.
    pub fn set_grants(&self, grants: Option<Capabilities>) {
        self.state().grants = grants;
    }

    /// Whether hooks are held to their grants (the default).
    pub fn enforce_grants(&self, enforce: bool) {
        self.state().enforce = enforce;
    }

    // ----- data -----

    /// Stores a record as if a user created it: no hooks, no grant checks;
    /// its event goes to the feed.
    pub fn insert(&self, object: &str, fields: impl Into<Fields>) -> Record {
        let mut state = self.state();
        let id = state.next_id();
        state.store_new(object, id, fields.into())
    }

    /// The stored record, all fields, deleted or not.
    pub fn record(&self, object: &str, id: &str) -> Option<Record> {
        self.state().records.get(object).and_then(|records| records.get(id)).cloned()
    }

    /// The records of `object` that are not deleted, oldest first.
    pub fn records(&self, object: &str) -> Vec<Record> {
        let state = self.state();
        state
            .records
            .get(object)
            .map(|records| records.values().filter(|record| !record.deleted).cloned().collect())
            .unwrap_or_default()
    }

    /// Takes the committed changes (inserts, plugin writes, `write`) not
    /// taken yet, in commit order: what the host would deliver to
    /// `after_commit`.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut self.state().feed)
    }

    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.state().kv.get(key).cloned()
    }

    pub fn kv_set(&self, key: &str, value: impl Into<Vec<u8>>) {
        self.state().kv.insert(key.to_owned(), value.into());
    }

    /// Scheduled timers, earliest first.
    pub fn timers(&self) -> Vec<Timer> {
        let mut timers: Vec<Timer> = self.state().timers.values().cloned().collect();
        timers.sort_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)));
        timers
    }

    /// Messages queued on the outbound channel, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state().sent.clone()
    }

    /// Custom events emitted, in order.
    pub fn emitted(&self) -> Vec<Emitted> {
        self.state().emitted.clone()
    }

    pub fn logs(&self) -> Vec<LogLine> {
        self.state().logs.clone()
    }

    /// Whether some log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.state().logs.iter().any(|line| line.message.contains(text))
    }

    // ----- running hooks -----

    /// The context a hook of `plugin` gets: tenant, plugin id and version,
    /// a fresh request id, the actor and the configuration.
    pub fn ctx<P: Plugin + ?Sized>(&self, plugin: &P) -> Ctx {
        self.ctx_for(&plugin.manifest())
    }

    fn ctx_for(&self, manifest: &Manifest) -> Ctx {
        let mut state = self.state();
        state.requests += 1;
        Ctx::new(state.tenant.clone(), manifest.id.clone(), manifest.version.clone())
            .with_actor(state.actor.clone())
            .with_request_id(format!("test-request-{}", state.requests))
            .with_config_text(&state.config)
    }

    /// Runs `before_write` on `changes` as the host would: only for changes
    /// a before-write hook of the manifest covers (others are an error),
    /// with fields cut to the readable ones, and checks that there is one
    /// decision per change and that patches only touch writable fields.
    /// Creates without an id get one.
    pub fn before_write<P: Plugin + ?Sized>(&self, plugin: &P, changes: Vec<Change>) -> Result<Vec<Decision>> {
        let manifest = plugin.manifest();
        let mut visible = Vec::with_capacity(changes.len());
        for change in changes {
            if !covers(&manifest, HookKind::BeforeWrite, change.object(), change.op()) {
                return Err(Error::host(
                    ErrorCode::Invalid,
                    format!("the manifest declares no before-write hook for {} {}", change.object(), change.op()),
                ));
            }
            let change = if change.op() == Op::Create && change.id().is_empty() {
                let id = self.state().next_id();
                change.with_id(id)
            } else {
                change
            };
            visible.push(change);
        }
        let grants = self.grants(&manifest);
        let visible: Vec<Change> = visible
            .into_iter()
            .map(|change| {
                let before = change.before().map(|before| readable(grants.as_ref(), change.object(), before));
                let after = readable(grants.as_ref(), change.object(), change.after());
                Change::new(change.object().to_owned(), change.op(), change.id().to_owned(), before, after)
            })
            .collect();
        let decisions = self.call(&manifest, |ctx| plugin.before_write(ctx, &visible))?;
        if decisions.len() != visible.len() {
            return Err(Error::host(
                ErrorCode::Invalid,
                format!("before_write returned {} decisions for {} changes", decisions.len(), visible.len()),
            ));
        }
        for (change, decision) in visible.iter().zip(&decisions) {
            if let Decision::Patch(fields) = decision {
                let access = if change.op() == Op::Create { Access::Create } else { Access::Update };
                for (name, _) in fields {
                    if !allows_field(grants.as_ref(), change.object(), name, access) {
                        return Err(Error::host(
                            ErrorCode::Forbidden,
                            format!(
                                "capability violation: patch of {}.{name} without {} access",
                                change.object(),
                                access.as_str()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(decisions)
    }

    /// Writes one change through the plugin's before-write hook, as a user
    /// request would: a rejection becomes an `invalid` error, a patch is
    /// applied, and the result is stored (its event goes to the feed).
    /// Returns the stored record with all its fields.
    pub fn write<P: Plugin + ?Sized>(&self, plugin: &P, change: Change) -> Result<Record> {
        let change = if change.op() == Op::Create && change.id().is_empty() {
            let id = self.state().next_id();
            change.with_id(id)
        } else {
            change
        };
        let mut after = change.after().clone();
        let manifest = plugin.manifest();
        if covers(&manifest, HookKind::BeforeWrite, change.object(), change.op()) {
            let decision = self.before_write(plugin, vec![change.clone()])?.remove(0);
            match decision {
                Decision::Accept => {}
                Decision::Patch(patch) => after.merge(&patch),
                Decision::Reject { field, message } => {
                    let message = match field {
                        Some(field) => format!("{field}: {message}"),
                        None => message,
                    };
                    return Err(Error::host(ErrorCode::Invalid, message));
                }
            }
        }
        let mut state = self.state();
        match change.op() {
            Op::Create => Ok(state.store_new(change.object(), change.id().to_owned(), after)),
            Op::Update => state.store_update(change.object(), change.id(), after, None, true),
            Op::Delete | Op::Restore => state.store_deleted(change.object(), change.id(), change.op() == Op::Delete),
        }
    }

    /// Delivers `events` to `after_commit`, keeping only those an
    /// after-commit hook of the manifest covers (the plugin is not called
    /// when none is left), with fields cut to the readable ones.
    pub fn after_commit<P: Plugin + ?Sized>(&self, plugin: &P, events: Vec<Event>) -> Result<()> {
        let manifest = plugin.manifest();
        let grants = self.grants(&manifest);
        let events: Vec<Event> = events
            .into_iter()
            .filter(|event| covers(&manifest, HookKind::AfterCommit, &event.object, event.op))
            .map(|event| Event { fields: readable(grants.as_ref(), &event.object, &event.fields), ..event })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        self.call(&manifest, |ctx| plugin.after_commit(ctx, &events))
    }

    /// Runs one timer now, whether or not it was scheduled.
    pub fn on_timer<P: Plugin + ?Sized>(&self, plugin: &P, key: &str, payload: &[u8]) -> Result<()> {
        let manifest = plugin.manifest();
        self.call(&manifest, |ctx| plugin.on_timer(ctx, key, payload))
    }

    /// Runs every timer due at the clock's now (earliest first), removing
    /// each before it runs; returns how many ran. Timers the runs schedule
    /// wait for the next call.
    pub fn fire_due_timers<P: Plugin + ?Sized>(&self, plugin: &P) -> Result<usize> {
        let due = {
            let mut state = self.state();
            let now = state.now;
            let mut due: Vec<Timer> = state.timers.values().filter(|timer| timer.at <= now).cloned().collect();
            due.sort_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)));
            for timer in &due {
                state.timers.remove(&timer.key);
            }
            due
        };
        for timer in &due {
            self.on_timer(plugin, &timer.key, &timer.payload)?;
        }
        Ok(due.len())
    }

    /// Runs a declared action.
    pub fn invoke<P: Plugin + ?Sized>(&self, plugin: &P, action: &str, input: impl Into<Fields>) -> Result<Fields> {
        let manifest = plugin.manifest();
        if !manifest.actions.iter().any(|declared| declared.name == action) {
            return Err(Error::host(ErrorCode::NotFound, format!("the manifest declares no action '{action}'")));
        }
        let input = input.into();
        self.call(&manifest, |ctx| plugin.invoke(ctx, action, &input))
    }

    /// What the plugin adds to this tenant's schema now (as the kernel asks
    /// when the plugin is enabled and after `schema::changed()`).
    pub fn tenant_schema<P: Plugin + ?Sized>(&self, plugin: &P) -> Result<crate::manifest::TenantSchema> {
        let manifest = plugin.manifest();
        self.call(&manifest, |ctx| plugin.tenant_schema(ctx))
    }

    /// Whether a call since the last check ran `schema::changed()`; resets
    /// the flag.
    pub fn take_schema_changed(&self) -> bool {
        with_state(|state| std::mem::take(&mut state.schema_changed))
    }

    /// Sends a request to the plugin's routes. A request to a route the
    /// manifest does not declare gets 404 (405 if only the method differs)
    /// without reaching the plugin. An `Err` is a capability violation.
    pub fn http<P: Plugin + ?Sized>(&self, plugin: &P, request: HttpRequest) -> Result<HttpResponse> {
        let manifest = plugin.manifest();
        let routes: Vec<_> = manifest.routes.iter().filter(|route| route.path == request.path).collect();
        if routes.is_empty() {
            return Ok(HttpResponse::not_found());
        }
        if !routes.iter().any(|route| route.method.eq_ignore_ascii_case(&request.method)) {
            let allow: Vec<&str> = routes.iter().map(|route| route.method.as_str()).collect();
            return Ok(HttpResponse::method_not_allowed(&allow.join(", ")));
        }
        self.call(&manifest, |ctx| Ok(plugin.http(ctx, &request)))
    }

    fn grants(&self, manifest: &Manifest) -> Option<Capabilities> {
        let state = self.state();
        if !state.enforce {
            return None;
        }
        Some(state.grants.clone().unwrap_or_else(|| manifest.capabilities.clone()))
    }

    /// Runs `hook` with this host current and the plugin's grants active.
    fn call<R>(&self, manifest: &Manifest, hook: impl FnOnce(&Ctx) -> Result<R>) -> Result<R> {
        let ctx = self.ctx_for(manifest);
        let grants = self.grants(manifest);
        let previous = CURRENT.with(|current| current.borrow_mut().replace(self.state.clone()));
        {
            let mut state = self.state();
            state.active = grants;
            state.violations.clear();
        }
        struct Restore<'a>(&'a TestHost, Option<Rc<RefCell<State>>>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.state().active = None;
                let previous = self.1.take();
                CURRENT.with(|current| *current.borrow_mut() = previous);
            }
        }
        let _restore = Restore(self, previous);
        let result = hook(&ctx);
        let violations = std::mem::take(&mut self.state().violations);
        if !violations.is_empty() {
            return Err(Error::host(ErrorCode::Forbidden, format!("capability violation: {}", violations.join("; "))));
        }
        result
    }
}

/// As the host: `*` names every object but the kernel's channel objects
/// (`outbound_message`, `custom_event`), which a plugin must name.
fn names_object(declared: &str, object: &str) -> bool {
    declared == object || (declared == "*" && object != "*" && !["outbound_message", "custom_event"].contains(&object))
}

fn covers(manifest: &Manifest, kind: HookKind, object: &str, op: Op) -> bool {
    manifest.hooks.iter().any(|hook| hook.kind == kind && names_object(&hook.object, object) && hook.ops.contains(&op))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Create,
    Update,
    Delete,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Create => "create",
            Access::Update => "update",
            Access::Delete => "delete",
        }
    }
}

fn allows(grants: Option<&Capabilities>, object: &str, access: Access) -> bool {
    let Some(grants) = grants else { return true };
    grants.records.iter().filter(|grant| names_object(&grant.object, object)).any(|grant| match access {
        Access::Read => grant.read,
        Access::Create => grant.create,
        Access::Update => grant.update,
        Access::Delete => grant.delete,
    })
}

fn allows_field(grants: Option<&Capabilities>, object: &str, field: &str, access: Access) -> bool {
    let Some(grants) = grants else { return true };
    grants.records.iter().filter(|grant| names_object(&grant.object, object)).any(|grant| {
        let allowed = match access {
            Access::Read => grant.read,
            Access::Create => grant.create,
            Access::Update => grant.update,
            Access::Delete => grant.delete,
        };
        allowed && grant.covers_field(field)
    })
}

/// `fields` cut to what the grants let the plugin read. An object the
/// plugin has no grant on at all is passed whole (a hook on it still sees
/// its changes); the real host may be stricter.
fn readable(grants: Option<&Capabilities>, object: &str, fields: &Fields) -> Fields {
    let Some(grants) = grants else { return fields.clone() };
    if !grants.records.iter().any(|grant| names_object(&grant.object, object)) {
        return fields.clone();
    }
    let mut fields = fields.clone();
    fields.retain(|name, _| allows_field(Some(grants), object, name, Access::Read));
    fields
}

impl State {
    fn next_id(&mut self) -> String {
        self.counter += 1;
        ulid_like(self.now, self.counter)
    }

    fn push_event(&mut self, record: &Record, op: Op) {
        self.seq += 1;
        let event = Event {
            seq: self.seq,
            at: self.now,
            object: record.object.clone(),
            id: record.id.clone(),
            op,
            version: record.version,
            fields: record.fields.clone(),
        };
        self.feed.push(event);
    }

    fn store_new(&mut self, object: &str, id: String, mut fields: Fields) -> Record {
        fields.retain(|_, value| !value.is_null());
        let record = Record {
            object: object.to_owned(),
            id: id.clone(),
            version: 1,
            created_at: self.now,
            updated_at: self.now,
            deleted: false,
            fields,
        };
        self.records.entry(object.to_owned()).or_default().insert(id, record.clone());
        self.push_event(&record, Op::Create);
        record
    }

    /// Sets `fields` on a live record; `replace` swaps the whole field set.
    fn store_update(&mut self, object: &str, id: &str, fields: Fields, expected: Option<u64>, replace: bool) -> Result<Record> {
        let now = self.now;
        let record = self
            .records
            .get_mut(object)
            .and_then(|records| records.get_mut(id))
            .filter(|record| !record.deleted)
            .ok_or_else(|| Error::host(ErrorCode::NotFound, format!("no {object} {id}")))?;
        if let Some(expected) = expected
            && expected != record.version
        {
            return Err(Error::host(
                ErrorCode::Conflict,
                format!("{object} {id} is at version {}, not {expected}", record.version),
            ));
        }
        if replace {
            record.fields = Fields::new();
        }
        for (name, value) in fields {
            if value.is_null() {
                record.fields.remove(&name);
            } else {
                record.fields.set(name, value);
            }
        }
        record.version += 1;
        record.updated_at = now;
        let record = record.clone();
        self.push_event(&record, Op::Update);
        Ok(record)
    }

    fn store_deleted(&mut self, object: &str, id: &str, deleted: bool) -> Result<Record> {
        let now = self.now;
        let record = self
            .records
            .get_mut(object)
            .and_then(|records| records.get_mut(id))
            .filter(|record| record.deleted != deleted)
            .ok_or_else(|| Error::host(ErrorCode::NotFound, format!("no {object} {id}")))?;
        record.deleted = deleted;
        record.version += 1;
        record.updated_at = now;
        let record = record.clone();
        self.push_event(&record, if deleted { Op::Delete } else { Op::Restore });
        Ok(record)
    }

    /// Checks a grant of the running hook; records a violation if refused.
    fn check(&mut self, allowed: bool, what: impl FnOnce() -> String) -> Result<()> {
        if allowed {
            return Ok(());
        }
        let what = what();
        self.violations.push(what.clone());
        Err(Error::host(ErrorCode::Forbidden, what))
    }

    fn check_object(&mut self, object: &str, access: Access) -> Result<()> {
        let allowed = allows(self.active.as_ref(), object, access);
        self.check(allowed, || format!("no {} access to {object}", access.as_str()))
    }

    fn check_fields(&mut self, object: &str, fields: &Fields, access: Access) -> Result<()> {
        self.check_object(object, access)?;
        for name in fields.names() {
            let allowed = allows_field(self.active.as_ref(), object, name, access);
            self.check(allowed, || format!("no {} access to {object}.{name}", access.as_str()))?;
        }
        Ok(())
    }

    /// The record as the running hook may see it.
    fn visible(&self, record: &Record) -> Record {
        let mut record = record.clone();
        if self.active.is_some() {
            let grants = self.active.as_ref();
            record.fields.retain(|name, _| allows_field(grants, &record.object, name, Access::Read));
        }
        record
    }
}

/// 26 Crockford base32 characters: 48 bits of time, then a counter, so ids
/// sort by creation.
fn ulid_like(now: i64, counter: u64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let value: u128 = ((now.max(0) as u128 & ((1 << 48) - 1)) << 80) | counter as u128;
    (0..26).rev().map(|index| ALPHABET[((value >> (index * 5)) & 31) as usize] as char).collect()
}

/// The host functions on native targets (see `crate::host`).
pub(crate) mod sys {
    use super::*;

    pub fn records_get(object: &str, id: &str) -> Result<Option<Record>> {
        with_state(|state| {
            state.check_object(object, Access::Read)?;
            Ok(state.records.get(object).and_then(|records| records.get(id)).map(|record| state.visible(record)))
        })
    }

    /// The live records of `object` matching `filter`, sorted by
    /// `order_by`, after checking that the hook may read every field named.
    fn select(state: &mut State, object: &str, filter: &str, order_by: &[String]) -> Result<Vec<Record>> {
        state.check_object(object, Access::Read)?;
        let filter = parse_filter(filter)?;
        let mut names = Vec::new();
        filter_fields(&filter, &mut names);
        names.extend(order_by.iter().map(|field| field.trim_start_matches('-').to_owned()));
        for name in &names {
            if !is_system_field(name) {
                let allowed = allows_field(state.active.as_ref(), object, name, Access::Read);
                state.check(allowed, || format!("no read access to {object}.{name}"))?;
            }
        }
        let mut matching = Vec::new();
        for record in state.records.get(object).into_iter().flat_map(|records| records.values()) {
            if !record.deleted && matches(&filter, record)? {
                matching.push(record.clone());
            }
        }
        matching.sort_by(|a, b| {
            for field in order_by {
                let (name, descending) = match field.strip_prefix('-') {
                    Some(name) => (name, true),
                    None => (field.as_str(), false),
                };
                let ordering = compare(&field_value(a, name), &field_value(b, name)).unwrap_or(Ordering::Equal);
                let ordering = if descending { ordering.reverse() } else { ordering };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            Ordering::Equal
        });
        Ok(matching)
    }

    /// Pages are offsets into the sorted matches; `limit` 0 means 100.
    pub fn records_query(object: &str, filter: &str, order_by: &[String], limit: u32, after: Option<&str>) -> Result<Page> {
        with_state(|state| {
            let matching = select(state, object, filter, order_by)?;
            let offset: usize = match after {
                Some(cursor) => cursor.parse().map_err(|_| Error::host(ErrorCode::Invalid, format!("bad cursor '{cursor}'")))?,
                None => 0,
            };
            let limit = match limit {
                0 => 100,
                limit => limit.min(1000) as usize,
            };
            let records: Vec<Record> = matching.iter().skip(offset).take(limit).map(|record| state.visible(record)).collect();
            let end = offset + records.len();
            let next = (end < matching.len()).then(|| end.to_string());
            Ok(Page { records, next })
        })
    }

    pub fn records_count(object: &str, filter: &str) -> Result<u64> {
        with_state(|state| Ok(select(state, object, filter, &[])?.len() as u64))
    }

    pub fn records_create(object: &str, fields: Fields) -> Result<Record> {
        with_state(|state| {
            state.check_fields(object, &fields, Access::Create)?;
            let id = state.next_id();
            let record = state.store_new(object, id, fields);
            Ok(state.visible(&record))
        })
    }

    pub fn records_update(object: &str, id: &str, fields: Fields, expected_version: Option<u64>) -> Result<Record> {
        with_state(|state| {
            state.check_fields(object, &fields, Access::Update)?;
            let record = state.store_update(object, id, fields, expected_version, false)?;
            Ok(state.visible(&record))
        })
    }

    pub fn records_delete(object: &str, id: &str) -> Result<()> {
        with_state(|state| {
            state.check_object(object, Access::Delete)?;
            state.store_deleted(object, id, true).map(|_| ())
        })
    }

    fn check_flag(state: &mut State, flag: fn(&Capabilities) -> bool, name: &str) -> Result<()> {
        let allowed = state.active.as_ref().is_none_or(flag);
        state.check(allowed, || format!("'{name}' was not granted"))
    }

    pub fn schema_changed() -> Result<()> {
        with_state(|state| {
            check_flag(state, |grants| grants.schema, "schema")?;
            state.schema_changed = true;
            Ok(())
        })
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>> {
        with_state(|state| {
            check_flag(state, |grants| grants.kv, "kv")?;
            Ok(state.kv.get(key).cloned())
        })
    }

    pub fn kv_set(key: &str, value: &[u8]) -> Result<()> {
        with_state(|state| {
            check_flag(state, |grants| grants.kv, "kv")?;
            state.kv.insert(key.to_owned(), value.to_vec());
            Ok(())
        })
    }

    pub fn kv_delete(key: &str) -> Result<()> {
        with_state(|state| {
            check_flag(state, |grants| grants.kv, "kv")?;
            state.kv.remove(key);
            Ok(())
        })
    }

    pub fn kv_keys(prefix: &str, limit: u32) -> Result<Vec<String>> {
        with_state(|state| {
            check_flag(state, |grants| grants.kv, "kv")?;
            Ok(state.kv.keys().filter(|key| key.starts_with(prefix)).take(limit as usize).cloned().collect())
        })
    }

    pub fn timers_schedule(key: &str, at: i64, payload: &[u8]) -> Result<()> {
        with_state(|state| {
            check_flag(state, |grants| grants.timers, "timers")?;
            state.timers.insert(key.to_owned(), Timer { key: key.to_owned(), at, payload: payload.to_vec() });
            Ok(())
        })
    }

    pub fn timers_cancel(key: &str) -> Result<()> {
        with_state(|state| {
            check_flag(state, |grants| grants.timers, "timers")?;
            state.timers.remove(key);
            Ok(())
        })
    }

    pub fn events_emit(name: &str, payload: &str) -> Result<()> {
        with_state(|state| {
            check_flag(state, |grants| grants.events, "events")?;
            state.emitted.push(Emitted { name: name.to_owned(), payload: payload.to_owned() });
            Ok(())
        })
    }

    pub fn outbound_send(message: &Message) -> Result<String> {
        with_state(|state| {
            let allowed = state.active.as_ref().is_none_or(|grants| grants.outbound.contains(&message.channel));
            state.check(allowed, || format!("outbound channel '{}' was not granted", message.channel))?;
            let id = format!("msg-{}", state.sent.len() + 1);
            state.sent.push(Sent { id: id.clone(), message: message.clone() });
            Ok(id)
        })
    }

    pub fn clock_now() -> i64 {
        with_state(|state| state.now)
    }

    pub fn log(level: Level, message: &str) {
        with_state(|state| state.logs.push(LogLine { level, message: message.to_owned() }))
    }
}

// ----- the filter language (a model of the kernel's, for tests) -----

fn is_system_field(name: &str) -> bool {
    matches!(name, "id" | "version" | "created_at" | "updated_at")
}

fn field_value(record: &Record, name: &str) -> Value {
    match name {
        "id" => Value::Id(record.id.clone()),
        "version" => Value::Int(record.version as i64),
        "created_at" => Value::Int(record.created_at),
        "updated_at" => Value::Int(record.updated_at),
        _ => record.fields.get(name).cloned().unwrap_or(Value::Null),
    }
}

fn parse_filter(text: &str) -> Result<serde_json::Value> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    let filter: serde_json::Value =
        serde_json::from_str(text).map_err(|error| Error::host(ErrorCode::Invalid, format!("filter is not JSON: {error}")))?;
    if !filter.is_object() {
        return Err(Error::host(ErrorCode::Invalid, "a filter is a JSON object"));
    }
    Ok(filter)
}

fn filter_fields(filter: &serde_json::Value, out: &mut Vec<String>) {
    let Some(object) = filter.as_object() else { return };
    for (key, value) in object {
        match key.as_str() {
            "and" | "or" => value.as_array().into_iter().flatten().for_each(|inner| filter_fields(inner, out)),
            "not" => filter_fields(value, out),
            field => out.push(field.to_owned()),
        }
    }
}

fn matches(filter: &serde_json::Value, record: &Record) -> Result<bool> {
    let invalid = |message: String| Error::host(ErrorCode::Invalid, message);
    let Some(object) = filter.as_object() else { return Err(invalid("a filter is a JSON object".into())) };
    for (key, operand) in object {
        if operand.is_null() {
            continue;
        }
        let matched = match key.as_str() {
            "and" | "or" => {
                let filters = operand.as_array().ok_or_else(|| invalid(format!("'{key}' takes a list of filters")))?;
                let mut results = Vec::with_capacity(filters.len());
                for inner in filters {
                    results.push(matches(inner, record)?);
                }
                if key == "and" { results.iter().all(|result| *result) } else { results.iter().any(|result| *result) }
            }
            "not" => !matches(operand, record)?,
            field => {
                let conditions = operand.as_object().ok_or_else(|| invalid(format!("'{field}' takes conditions")))?;
                let value = field_value(record, field);
                let mut all = true;
                for (op, expected) in conditions {
                    if !expected.is_null() && !condition(op, &value, expected)? {
                        all = false;
                    }
                }
                all
            }
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

fn condition(op: &str, value: &Value, operand: &serde_json::Value) -> Result<bool> {
    let expected = Value::from_json(operand);
    let text =
        || operand.as_str().map(str::to_lowercase).ok_or_else(|| Error::host(ErrorCode::Invalid, format!("'{op}' takes text")));
    let many = || -> Vec<Value> {
        match operand {
            serde_json::Value::Array(items) => items.iter().map(Value::from_json).collect(),
            other => vec![Value::from_json(other)],
        }
    };
    let equal = |a: &Value, b: &Value| compare(a, b) == Some(Ordering::Equal);
    if op == "isNull" {
        return Ok(value.is_null() == operand.as_bool().unwrap_or(true));
    }
    if value.is_null() {
        return Ok(op == "neq" && !expected.is_null());
    }
    Ok(match op {
        "eq" => equal(value, &expected),
        "neq" => !equal(value, &expected),
        "in" => many().iter().any(|option| equal(value, option)),
        "nin" => !many().iter().any(|option| equal(value, option)),
        "gt" => compare(value, &expected) == Some(Ordering::Greater),
        "gte" => matches!(compare(value, &expected), Some(Ordering::Greater | Ordering::Equal)),
        "lt" => compare(value, &expected) == Some(Ordering::Less),
        "lte" => matches!(compare(value, &expected), Some(Ordering::Less | Ordering::Equal)),
        "contains" => {
            let needle = text()?;
            match value {
                Value::Texts(items) => items.iter().any(|item| item.to_lowercase() == needle),
                other => other.as_text().is_some_and(|text| text.to_lowercase().contains(&needle)),
            }
        }
        "startsWith" => {
            let prefix = text()?;
            value.as_text().is_some_and(|text| text.to_lowercase().starts_with(&prefix))
        }
        "endsWith" => {
            let suffix = text()?;
            value.as_text().is_some_and(|text| text.to_lowercase().ends_with(&suffix))
        }
        other => return Err(Error::host(ErrorCode::Invalid, format!("unknown filter operator '{other}'"))),
    })
}

/// Orders values of one kind; `Null` sorts first; different kinds do not
/// compare.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) => Some(Ordering::Less),
        (_, Value::Null) => Some(Ordering::Greater),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => a.as_float()?.partial_cmp(&b.as_float()?),
        (Value::Text(a) | Value::Id(a), Value::Text(b) | Value::Id(b)) => Some(a.cmp(b)),
        (Value::Texts(a), Value::Texts(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{clock, events, kv, outbound, records, timers};
    use crate::manifest::{ActionDecl, FieldDecl, ObjectAccess};

    type Invoke = Box<dyn Fn(&Ctx, &str, &Fields) -> Result<Fields>>;

    /// A plugin whose `invoke` each test sets.
    struct Probe {
        manifest: Manifest,
        invoke: Invoke,
    }

    impl Plugin for Probe {
        fn manifest(&self) -> Manifest {
            self.manifest.clone()
        }
        fn invoke(&self, ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
            (self.invoke)(ctx, action, input)
        }
    }

    fn probe(manifest: Manifest, invoke: impl Fn(&Ctx, &str, &Fields) -> Result<Fields> + 'static) -> Probe {
        Probe { manifest: manifest.action(ActionDecl::new("run")), invoke: Box::new(invoke) }
    }

    fn seed(host: &TestHost) -> Vec<Record> {
        [("Ada", "ada@math.org", 36), ("Grace", "grace@navy.mil", 85), ("Alan", "alan@bletchley.uk", 41), ("Edsger", "", 72)]
            .into_iter()
            .map(|(name, email, age)| {
                let fields =
                    Fields::new().with("first_name", name).with("age", age).with("email", (!email.is_empty()).then_some(email));
                host.insert("contact", fields)
            })
            .collect()
    }

    fn names(page: &Page) -> Vec<&str> {
        page.records.iter().map(|record| record.text("first_name").unwrap_or("?")).collect()
    }

    #[test]
    fn ids_are_ulid_like_and_sorted() {
        let a = ulid_like(DEFAULT_NOW, 1);
        let b = ulid_like(DEFAULT_NOW, 2);
        let c = ulid_like(DEFAULT_NOW + 1, 0);
        assert_eq!(a.len(), 26);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(a.bytes().all(|byte| byte.is_ascii_digit() || byte.is_ascii_uppercase()));
    }

    #[test]
    fn records_create_get_update_delete_outside_hooks() {
        let host = TestHost::new();
        let created = records::create("contact", [("first_name", "Ada")]).unwrap();
        assert_eq!((created.version, created.created_at), (1, DEFAULT_NOW));
        host.advance(5);
        let updated = records::update(
            "contact",
            &created.id,
            [("first_name", Value::from("Ada")), ("title", Value::from("Countess"))],
            Some(1),
        )
        .unwrap();
        assert_eq!((updated.version, updated.updated_at), (2, DEFAULT_NOW + 5));
        let conflict = records::update("contact", &created.id, [("title", "x")], Some(1)).unwrap_err();
        assert!(conflict.is(ErrorCode::Conflict), "{conflict}");
        records::update("contact", &created.id, [("title", Value::Null)], None).unwrap();
        assert_eq!(records::get("contact", &created.id).unwrap().unwrap().text("title"), None);
        records::delete("contact", &created.id).unwrap();
        assert!(records::get("contact", &created.id).unwrap().unwrap().deleted);
        assert!(records::update("contact", &created.id, [("title", "x")], None).unwrap_err().is_not_found());
        assert!(records::get("contact", "nope").unwrap().is_none());
        assert!(host.records("contact").is_empty());
        let ops: Vec<Op> = host.take_events().into_iter().map(|event| event.op).collect();
        assert_eq!(ops, [Op::Create, Op::Update, Op::Update, Op::Delete]);
        assert!(host.take_events().is_empty());
    }

    #[test]
    fn query_filters_orders_and_pages() {
        let host = TestHost::new();
        seed(&host);
        let all = records::query("contact", "{}", &["first_name"], 0, None).unwrap();
        assert_eq!(names(&all), ["Ada", "Alan", "Edsger", "Grace"]);
        let check = |filter: serde_json::Value, expected: &[&str]| {
            let page = records::query("contact", &filter.to_string(), &["-age"], 10, None).unwrap();
            assert_eq!(names(&page), expected, "{filter}");
            assert_eq!(records::count("contact", &filter.to_string()).unwrap(), expected.len() as u64);
        };
        check(serde_json::json!({"email": {"eq": "ada@math.org"}}), &["Ada"]);
        check(serde_json::json!({"age": {"gte": 41}}), &["Grace", "Edsger", "Alan"]);
        check(serde_json::json!({"age": {"gt": 36, "lt": 80}}), &["Edsger", "Alan"]);
        check(serde_json::json!({"email": {"isNull": true}}), &["Edsger"]);
        check(serde_json::json!({"email": {"neq": "ada@math.org"}}), &["Grace", "Edsger", "Alan"]);
        check(serde_json::json!({"first_name": {"in": ["Ada", "Alan"]}}), &["Alan", "Ada"]);
        check(serde_json::json!({"first_name": {"startsWith": "a"}}), &["Alan", "Ada"]);
        check(serde_json::json!({"email": {"endsWith": ".MIL"}}), &["Grace"]);
        check(serde_json::json!({"or": [{"age": {"lt": 40}}, {"age": {"gt": 80}}]}), &["Grace", "Ada"]);
        check(serde_json::json!({"not": {"first_name": {"contains": "a"}}}), &["Edsger"]);
        let first = records::query("contact", "{}", &["age"], 3, None).unwrap();
        assert_eq!(names(&first), ["Ada", "Alan", "Edsger"]);
        let second = records::query("contact", "{}", &["age"], 3, first.next.as_deref()).unwrap();
        assert_eq!(names(&second), ["Grace"]);
        assert_eq!(second.next, None);
        let error = records::query("contact", r#"{"age": {"near": 3}}"#, &[], 1, None).unwrap_err();
        assert!(error.is(ErrorCode::Invalid) && error.message().contains("near"), "{error}");
        assert!(records::first("contact", r#"{"first_name": {"eq": "Nobody"}}"#).unwrap().is_none());
    }

    #[test]
    fn hooks_see_and_touch_only_what_was_granted() {
        let host = TestHost::new();
        let seeded = seed(&host);
        let manifest = Manifest::new("probe", "0.1.0").access(ObjectAccess::new("contact").fields(["first_name"]).read());
        let plugin = probe(manifest, |_, _, input| {
            let record = records::get("contact", input.text("id").unwrap_or_default())?.ok_or("missing")?;
            Ok(Fields::new().with("email_seen", record.contains("email")).with("name", record.text("first_name")))
        });
        let output = host.invoke(&plugin, "run", [("id", seeded[0].id.clone())]).unwrap();
        assert_eq!(output.bool("email_seen"), Some(false));
        assert_eq!(output.text("name"), Some("Ada"));

        let plugin = probe(Manifest::new("probe", "0.1.0"), |_, _, _| {
            let refused = records::create("deal", [("name", "stolen")]).unwrap_err();
            Ok(Fields::new().with("code", refused.code().map(|code| code.as_str())))
        });
        let violation = host.invoke(&plugin, "run", Fields::new()).unwrap_err();
        assert!(violation.is(ErrorCode::Forbidden) && violation.message().contains("no create access to deal"), "{violation}");
        assert!(host.records("deal").is_empty());

        let plugin = probe(Manifest::new("probe", "0.1.0"), |_, _, _| {
            kv::set("k", b"v")?;
            Ok(Fields::new())
        });
        assert!(host.invoke(&plugin, "run", Fields::new()).unwrap_err().message().contains("'kv' was not granted"));
        host.enforce_grants(false);
        host.invoke(&plugin, "run", Fields::new()).unwrap();
        assert_eq!(host.kv_get("k"), Some(b"v".to_vec()));
    }

    #[test]
    fn hooks_use_kv_timers_events_outbound_logs_and_config() {
        let host = TestHost::new();
        host.set_config(serde_json::json!({"to": "ops@example.com"}));
        let manifest = Manifest::new("probe", "0.1.0").kv().timers().events().outbound("email");
        let plugin = probe(manifest, |ctx, _, _| {
            let to = ctx.config_json()["to"].as_str().unwrap_or_default().to_owned();
            kv::set_json("state", &serde_json::json!({"n": 1}))?;
            kv::set("other", "x")?;
            timers::schedule_in("later", 1_000, b"p")?;
            timers::schedule("sooner", clock::now(), b"")?;
            events::emit("probe.ran", "{}")?;
            let id = outbound::send(&crate::message::Message::email(&to, "Hi", "Body"))?;
            crate::info!("sent {id} for {}", ctx.tenant());
            Ok(Fields::new().with("keys", kv::keys("", 10)?))
        });
        let output = host.invoke(&plugin, "run", Fields::new()).unwrap();
        assert_eq!(output.texts("keys"), Some(&["other".to_owned(), "state".to_owned()][..]));
        assert_eq!(host.timers().iter().map(|timer| timer.key.as_str()).collect::<Vec<_>>(), ["sooner", "later"]);
        assert_eq!(host.timers()[1].at, DEFAULT_NOW + 1_000);
        assert_eq!(host.emitted(), [Emitted { name: "probe.ran".into(), payload: "{}".into() }]);
        assert_eq!(host.sent()[0].message.to, "ops@example.com");
        assert!(host.logged("sent msg-1 for default"));
        assert_eq!(host.logs()[0].level, Level::Info);
    }

    #[derive(Default)]
    struct Reminder;

    impl Plugin for Reminder {
        fn manifest(&self) -> Manifest {
            Manifest::new("reminder", "0.1.0")
                .before_write("contact", [Op::Create])
                .after_commit("contact", [Op::Create])
                .timers()
                .access(ObjectAccess::new("contact").fields(["first_name", "nickname"]).read().create().update())
                .access(ObjectAccess::new("activity").create())
                .route("GET", "/ping")
        }
        fn before_write(&self, _ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
            Ok(changes
                .iter()
                .map(|change| match change.after().text("first_name") {
                    Some("") | None => Decision::reject_field("first_name", "is required"),
                    Some(name) => Decision::patch([("nickname", name.to_lowercase())]),
                })
                .collect())
        }
        fn after_commit(&self, _ctx: &Ctx, events: &[Event]) -> Result<()> {
            for event in events {
                timers::schedule_in(&format!("remind:{}", event.id), 60_000, event.id.as_bytes())?;
            }
            Ok(())
        }
        fn on_timer(&self, _ctx: &Ctx, key: &str, payload: &[u8]) -> Result<()> {
            records::create(
                "activity",
                [("subject", Value::from(key)), ("contact_id", Value::Id(String::from_utf8(payload.to_vec())?))],
            )?;
            Ok(())
        }
        fn http(&self, _ctx: &Ctx, _request: &HttpRequest) -> HttpResponse {
            HttpResponse::text(200, "pong")
        }
    }

    #[test]
    fn write_runs_before_write_then_after_commit_then_timers() {
        let host = TestHost::new();
        let rejected = host.write(&Reminder, Change::create("contact", [("first_name", "")])).unwrap_err();
        assert!(rejected.is(ErrorCode::Invalid) && rejected.message() == "first_name: is required", "{rejected}");
        let stored = host.write(&Reminder, Change::create("contact", [("first_name", "Ada"), ("email", "a@b.c")])).unwrap();
        assert_eq!(stored.text("nickname"), Some("ada"));
        assert_eq!(stored.text("email"), Some("a@b.c"), "write stores every field");
        assert!(host.before_write(&Reminder, vec![Change::update("contact", &stored.id, Fields::new(), Fields::new())]).is_err());

        host.after_commit(&Reminder, host.take_events()).unwrap();
        assert_eq!(host.timers().len(), 1);
        assert_eq!(host.fire_due_timers(&Reminder).unwrap(), 0);
        host.advance(60_000);
        assert_eq!(host.fire_due_timers(&Reminder).unwrap(), 1);
        assert!(host.timers().is_empty());
        let activities = host.records("activity");
        assert_eq!(activities[0].id("contact_id"), Some(stored.id.as_str()));
        assert_eq!(activities[0].text("subject"), Some(format!("remind:{}", stored.id).as_str()));
        // The activity event is not one Reminder's after-commit hook covers.
        host.after_commit(&Reminder, host.take_events()).unwrap();
        assert!(host.timers().is_empty());
    }

    #[test]
    fn before_write_checks_decisions_and_hides_ungranted_fields() {
        #[derive(Default)]
        struct Miscount;
        impl Plugin for Miscount {
            fn manifest(&self) -> Manifest {
                Manifest::new("miscount", "0.1.0")
                    .before_write("contact", [Op::Create])
                    .access(ObjectAccess::new("contact").fields(["first_name"]).read())
            }
            fn before_write(&self, _ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
                if changes[0].after().contains("email") {
                    return Err("saw email".into());
                }
                Ok(vec![Decision::patch([("first_name", "x")]); changes.len() + 1])
            }
        }
        let host = TestHost::new();
        let error = host.before_write(&Miscount, vec![Change::create("contact", [("email", "a@b.c")])]).unwrap_err();
        assert_eq!(error.message(), "before_write returned 2 decisions for 1 changes");
        #[derive(Default)]
        struct Patcher;
        impl Plugin for Patcher {
            fn manifest(&self) -> Manifest {
                Miscount.manifest()
            }
            fn before_write(&self, _ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
                Ok(changes.iter().map(|_| Decision::patch([("first_name", "x")])).collect())
            }
        }
        let error = host.before_write(&Patcher, vec![Change::create("contact", Fields::new())]).unwrap_err();
        assert!(error.message().contains("patch of contact.first_name without create access"), "{error}");
    }

    #[test]
    fn http_answers_only_declared_routes() {
        let host = TestHost::new();
        let response = host.http(&Reminder, HttpRequest::get("/ping")).unwrap();
        assert_eq!((response.status, response.body_text().unwrap()), (200, "pong"));
        assert_eq!(host.http(&Reminder, HttpRequest::get("/other")).unwrap().status, 404);
        assert_eq!(host.http(&Reminder, HttpRequest::post("/ping")).unwrap().status, 405);
    }

    #[test]
    fn ctx_carries_the_host_settings() {
        let host = TestHost::new();
        host.set_tenant("acme");
        host.set_actor("system");
        host.set_config_text("not json");
        let ctx = host.ctx(&Reminder);
        assert_eq!((ctx.tenant(), ctx.plugin(), ctx.version(), ctx.actor()), ("acme", "reminder", "0.1.0", "system"));
        assert!(ctx.request_id().is_some_and(|id| id.starts_with("test-request-")));
        assert!(ctx.config::<serde_json::Value>().is_err());
    }

    #[test]
    fn default_hooks_do_nothing_harmful() {
        #[derive(Default)]
        struct Bare;
        impl Plugin for Bare {
            fn manifest(&self) -> Manifest {
                Manifest::new("bare", "0.1.0")
                    .before_write("contact", Op::ALL)
                    .action(ActionDecl::new("nothing").output(FieldDecl::text("x")))
                    .route("GET", "/")
            }
        }
        let host = TestHost::new();
        let decisions = host
            .before_write(&Bare, vec![Change::create("contact", Fields::new()), Change::delete("contact", "1", Fields::new())])
            .unwrap();
        assert_eq!(decisions, [Decision::Accept, Decision::Accept]);
        assert_eq!(host.invoke(&Bare, "nothing", Fields::new()).unwrap_err().message(), "unknown action 'nothing'");
        assert!(host.invoke(&Bare, "undeclared", Fields::new()).unwrap_err().is_not_found());
        assert_eq!(host.http(&Bare, HttpRequest::get("/")).unwrap().status, 404);
        host.on_timer(&Bare, "k", b"").unwrap();
        host.after_commit(&Bare, vec![Event::new("contact", "1", Op::Create, Fields::new())]).unwrap();
    }
}
