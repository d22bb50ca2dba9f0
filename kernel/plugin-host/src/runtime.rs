//! `PluginHost`: the core's `PluginRuntime` on wasmtime. It inspects
//! components at install, runs before-write hooks for the writers, actions
//! for the API, and per tenant a worker that delivers committed events to
//! after-commit hooks and fires due timers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crm_core::audit::{Actor, ChangeOp};
use crm_core::plugin::{
    ActionFields, ActivePlugin, FailurePolicy, HookCall, HookKind, Limits, PendingChange, PluginManifest, PluginRuntime, PluginStatus,
    RouteRequest, RouteResponse, WriteHooks, HookFailure,
};
use crm_core::plugin_state::{DeadLetter, Effect};
use crm_core::{Error, ErrorKind, Kernel, Result, TenantId, TenantStore, WriteRequest};

use crate::bindings::crm::plugin::types as wit;
use crate::convert;
use crate::engine::{CallFailure, PluginEngine};
use crate::exports::{Plugin, PluginPre};
use crate::host::{CallScope, HostState, LogLine, Phase};

/// Consecutive failed calls after which a plugin is suspended for a tenant.
pub const SUSPEND_AFTER: u32 = 10;
/// Delivery attempts before events go to the dead-letter list.
pub const MAX_ATTEMPTS: u32 = 5;
const LOG_LINES_KEPT: usize = 500;

pub use crm_core::plugin::PluginUsage as Usage;

pub struct PluginHost {
    me: Weak<PluginHost>,
    engine: PluginEngine,
    kernel: Weak<Kernel>,
    runtime: tokio::runtime::Handle,
    logs: Mutex<HashMap<(TenantId, String), VecDeque<LogLine>>>,
    usage: Mutex<HashMap<(TenantId, String), Usage>>,
    workers: Mutex<HashMap<TenantId, tokio::sync::watch::Sender<Vec<ActivePlugin>>>>,
    /// Whether this process delivers events and fires timers (the server
    /// does; one-shot CLI commands leave that to it).
    deliver: std::sync::atomic::AtomicBool,
}

/// One active plugin, ready to call.
#[derive(Clone)]
struct Prepared {
    active: ActivePlugin,
    pre: Arc<PluginPre>,
    limits: Limits,
}

impl PluginHost {
    /// A host for `kernel`, caching compiled plugins in `cache_dir`; must
    /// be created inside a tokio runtime (its workers run there).
    pub fn new(kernel: &Arc<Kernel>, cache_dir: Option<&Path>) -> Result<Arc<PluginHost>> {
        let engine = PluginEngine::new(cache_dir)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::internal("the plugin host needs a tokio runtime"))?;
        Ok(Arc::new_cyclic(|me| PluginHost {
            me: me.clone(),
            engine,
            kernel: Arc::downgrade(kernel),
            runtime,
            logs: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            deliver: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Makes this process deliver after-commit events and fire timers for
    /// every tenant store that is (or gets) opened.
    pub fn start_delivery(&self) -> Result<()> {
        self.deliver.store(true, std::sync::atomic::Ordering::SeqCst);
        let kernel = self.kernel()?;
        for store in kernel.open_tenants() {
            let active = kernel.active_plugins(store.id())?;
            self.tenant_changed(store.id(), &active);
        }
        Ok(())
    }

    fn kernel(&self) -> Result<Arc<Kernel>> {
        self.kernel.upgrade().ok_or_else(|| Error::new(ErrorKind::Unavailable, "the kernel is shutting down"))
    }

    /// Compiles (or loads from the cache) every plugin version enabled
    /// anywhere, so the first call does not pay for it.
    pub fn warm(&self) -> Result<usize> {
        let kernel = self.kernel()?;
        let mut count = 0;
        for installed in kernel.system().plugins()? {
            if let Some(wasm) = kernel.system().plugin_blob(&installed.hash)? {
                self.engine.prepare(&installed.hash, &wasm)?;
                count += 1;
            }
        }
        Ok(count)
    }

    fn prepare(&self, active: &ActivePlugin) -> Result<Prepared> {
        let hash = &active.enablement.hash;
        let pre = if self.engine.is_prepared(hash) {
            self.engine.prepare(hash, &[])?
        } else {
            let kernel = self.kernel()?;
            let wasm = kernel
                .system()
                .plugin_blob(hash)?
                .ok_or_else(|| Error::internal(format!("plugin {} has no stored component", active.enablement.plugin)))?;
            self.engine.prepare(hash, &wasm)?
        };
        Ok(Prepared { limits: Limits::effective(&active.manifest.limits, &active.enablement.limits), pre, active: active.clone() })
    }

    fn context(&self, tenant: &TenantId, plugin: &ActivePlugin, actor: &Actor, request_id: Option<&str>) -> wit::Context {
        wit::Context {
            tenant: tenant.to_string(),
            plugin: plugin.enablement.plugin.clone(),
            version: plugin.enablement.version.clone(),
            request_id: request_id.map(String::from),
            actor: actor.0.clone(),
            config: plugin.enablement.config.clone(),
        }
    }

    fn scope(&self, store: &Arc<TenantStore>, prepared: &Prepared, phase: Phase, request_id: Option<&str>) -> CallScope {
        CallScope {
            store: Some(store.clone()),
            plugin: prepared.active.enablement.plugin.clone(),
            version: prepared.active.enablement.version.clone(),
            grants: prepared.active.enablement.grants.clone(),
            phase,
            request_id: request_id.map(String::from),
            max_host_calls: prepared.limits.host_calls,
            max_log_bytes: prepared.limits.log_bytes,
        }
    }

    /// Records the outcome of a call — or of the `calls` calls that made
    /// up one batch, as one outcome: logs, usage, and suspension after
    /// repeated failures.
    fn finish(&self, tenant: &TenantId, plugin: &str, logs: &[LogLine], calls: u64, fuel_used: u64, failure: Option<&str>) {
        let key = (tenant.clone(), plugin.to_string());
        {
            let mut kept = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            let lines = kept.entry(key.clone()).or_default();
            for line in logs {
                tracing::info!(tenant = %tenant, plugin, level = %line.level, "{}", line.message);
                lines.push_back(line.clone());
            }
            if let Some(failure) = failure {
                lines.push_back(LogLine { at: crm_core::clock::now_ms(), level: "error".into(), message: failure.to_string() });
            }
            while lines.len() > LOG_LINES_KEPT {
                lines.pop_front();
            }
        }
        let suspend = {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            let entry = usage.entry(key).or_default();
            entry.calls += calls;
            entry.fuel += fuel_used;
            match failure {
                None => {
                    entry.consecutive_failures = 0;
                    false
                }
                Some(message) => {
                    entry.errors += 1;
                    entry.consecutive_failures += 1;
                    entry.recent_failures.push_back((crm_core::clock::now_ms(), message.to_string()));
                    while entry.recent_failures.len() > 20 {
                        entry.recent_failures.pop_front();
                    }
                    entry.consecutive_failures == SUSPEND_AFTER
                }
            }
        };
        if let Some(message) = failure {
            tracing::warn!(tenant = %tenant, plugin, "{message}");
        }
        if suspend && let Ok(kernel) = self.kernel() {
            let tenant = tenant.clone();
            let plugin = plugin.to_string();
            let reason = format!("suspended after {SUSPEND_AFTER} consecutive failures; last: {}", failure.unwrap_or_default());
            self.runtime.spawn(async move {
                tracing::error!(tenant = %tenant, plugin = %plugin, "{reason}");
                if let Err(error) = kernel.disable_plugin(&tenant, &plugin, PluginStatus::Suspended { reason }).await {
                    tracing::error!(%error, "cannot suspend plugin");
                }
            });
        }
    }

    /// Runs an after-commit delivery or a timer: no request behind it, its
    /// writes left to the tenant's next durable commit, nothing returned.
    fn run_effects(
        &self,
        tenant: &TenantId,
        store: &Arc<TenantStore>,
        prepared: &Prepared,
        f: impl FnOnce(&Plugin<'_>, &mut wasmtime::Store<HostState>) -> wasmtime::Result<std::result::Result<(), String>>,
    ) -> std::result::Result<(), String> {
        self.run(Writes::Deferred, tenant, store, prepared, Phase::Effects, None, f, |_| 0)
    }

    /// Runs one export in a fresh instance and books the outcome; `writes`
    /// says when the call's writes become durable.
    #[allow(clippy::too_many_arguments)]
    fn run<R>(
        &self,
        writes: Writes,
        tenant: &TenantId,
        store: &Arc<TenantStore>,
        prepared: &Prepared,
        phase: Phase,
        request_id: Option<&str>,
        f: impl FnOnce(&Plugin<'_>, &mut wasmtime::Store<HostState>) -> wasmtime::Result<std::result::Result<R, String>>,
        size: impl FnOnce(&R) -> usize,
    ) -> std::result::Result<R, String> {
        let call = self.call(writes, store, prepared, phase, request_id, f, size);
        let plugin = &prepared.active.enablement.plugin;
        self.finish(
            tenant,
            plugin,
            &call.state.logs,
            1,
            call.fuel_used,
            call.outcome.as_ref().err().map(|message| format!("plugin {plugin} {message}")).as_deref(),
        );
        if call.outcome.is_ok() && call.state.schema_changed {
            // Calls that may report a change run on blocking threads.
            let kernel = self.kernel().map_err(|error| error.message)?;
            self.runtime
                .block_on(kernel.refresh_plugin_schema(tenant, plugin))
                .map_err(|error| format!("changed the tenant's schema, which was refused: {}", error.message))?;
        }
        call.outcome
    }

    /// One export in a fresh instance, not yet booked (`finish`).
    #[allow(clippy::too_many_arguments)]
    fn call<R>(
        &self,
        writes: Writes,
        store: &Arc<TenantStore>,
        prepared: &Prepared,
        phase: Phase,
        request_id: Option<&str>,
        f: impl FnOnce(&Plugin<'_>, &mut wasmtime::Store<HostState>) -> wasmtime::Result<std::result::Result<R, String>>,
        size: impl FnOnce(&R) -> usize,
    ) -> Called<R> {
        let scope = self.scope(store, prepared, phase, request_id);
        let limits = prepared.limits;
        let mut fuel_left = 0;
        let (result, state) = self.engine.call(&prepared.pre, scope, &limits, |plugin, wasm_store| {
            let out = f(plugin, wasm_store);
            fuel_left = wasm_store.get_fuel().unwrap_or(0);
            out
        });
        // The call's writes were deferred: one durable commit for all of
        // them, whatever the call's outcome, before the outcome counts.
        let synced = if state.wrote.get() && writes == Writes::Durable {
            store.sync_blocking().map_err(|error| format!("wrote records that could not be made durable: {}", error.message))
        } else {
            Ok(())
        };
        let outcome = match result {
            Err(CallFailure { message }) => Err(message),
            Ok(Err(message)) => Err(format!("returned an error: {}", message.chars().take(500).collect::<String>())),
            Ok(Ok(value)) => {
                let bytes = size(&value);
                if bytes > limits.output_bytes as usize {
                    Err(format!("returned {bytes} bytes, more than its output limit of {}", limits.output_bytes))
                } else {
                    Ok(value)
                }
            }
        };
        let outcome = outcome.and_then(|value| synced.map(|()| value));
        Called { outcome, state, fuel_used: limits.fuel.saturating_sub(fuel_left) }
    }

    /// Usage of every plugin in every tenant, for /metrics.
    pub fn all_usage(&self) -> Vec<(TenantId, String, Usage)> {
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.iter().map(|((tenant, plugin), usage)| (tenant.clone(), plugin.clone(), usage.clone())).collect()
    }
}

impl PluginRuntime for PluginHost {
    fn inspect(&self, wasm: &[u8]) -> Result<PluginManifest> {
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(Error::invalid("not a WebAssembly file (missing the \\0asm header)"));
        }
        let hash = crm_core::plugin::content_hash(wasm);
        let pre = self.engine.prepare(&hash, wasm)?;
        let scope = CallScope {
            store: None,
            plugin: "(installing)".into(),
            version: String::new(),
            grants: Default::default(),
            phase: Phase::Inspect,
            request_id: None,
            max_host_calls: 0,
            max_log_bytes: 0,
        };
        let (result, _) = self.engine.call(&pre, scope, &Limits::DEFAULT, |plugin, store| {
            plugin.check_exports(store)?;
            plugin.call_manifest(store)
        });
        let manifest = result.map_err(|failure| Error::invalid(format!("reading the manifest failed: {}", failure.message)))?;
        convert::manifest_from_wit(manifest).map_err(|error| Error::invalid(format!("invalid manifest: {error}")))
    }

    fn tenant_schema(&self, tenant: &TenantId, plugin: &ActivePlugin) -> Result<crm_core::plugin::SchemaExtension> {
        let kernel = self.kernel()?;
        let store = kernel.tenant(tenant)?;
        let prepared = self.prepare(plugin)?;
        let context = self.context(tenant, plugin, &Actor::system(), None);
        let id = &plugin.enablement.plugin;
        let extension = self
            .run(
                Writes::Durable,
                tenant,
                &store,
                &prepared,
                Phase::BeforeWrite,
                None,
                |instance, wasm_store| instance.call_tenant_schema(wasm_store, &context),
                |extension: &wit::SchemaExtension| extension.objects.len() * 256 + extension.fields.len() * 256,
            )
            .map_err(|message| Error::new(ErrorKind::PluginFailed, format!("plugin {id} {message}")))?;
        convert::schema_extension_from_wit(extension).map_err(|error| Error::invalid(format!("plugin {id} declared an invalid field: {error}")))
    }

    fn write_hooks(&self, tenant: &TenantId, active: &[ActivePlugin]) -> Option<Arc<dyn WriteHooks>> {
        let mut plugins = Vec::new();
        for plugin in active {
            if !plugin.manifest.hooks.iter().any(|hook| hook.kind == HookKind::BeforeWrite) {
                continue;
            }
            match self.prepare(plugin) {
                Ok(prepared) => plugins.push(prepared),
                Err(error) => tracing::error!(tenant = %tenant, plugin = %plugin.enablement.plugin, %error, "cannot load plugin"),
            }
        }
        if plugins.is_empty() {
            return None;
        }
        let host = self.me.upgrade()?;
        Some(Arc::new(TenantHooks { host, tenant: tenant.clone(), plugins }))
    }

    fn tenant_changed(&self, tenant: &TenantId, active: &[ActivePlugin]) {
        if !self.deliver.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let wants_worker = active.iter().any(|plugin| {
            plugin.manifest.hooks.iter().any(|hook| hook.kind == HookKind::AfterCommit) || plugin.enablement.grants.timers
        });
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = workers.get(tenant) {
            if wants_worker {
                let _ = sender.send(active.to_vec());
            } else {
                workers.remove(tenant);
            }
            return;
        }
        if !wants_worker {
            return;
        }
        let (sender, receiver) = tokio::sync::watch::channel(active.to_vec());
        workers.insert(tenant.clone(), sender);
        let (Some(kernel), Some(host)) = (self.kernel.upgrade(), self.me.upgrade()) else { return };
        let tenant = tenant.clone();
        self.runtime.spawn(worker(kernel, host, tenant, receiver));
    }

    fn logs(&self, tenant: &TenantId, plugin: &str) -> Vec<LogLine> {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.get(&(tenant.clone(), plugin.to_string())).map(|lines| lines.iter().cloned().collect()).unwrap_or_default()
    }

    fn usage(&self, tenant: &TenantId, plugin: &str) -> Usage {
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.get(&(tenant.clone(), plugin.to_string())).cloned().unwrap_or_default()
    }

    fn replay(&self, tenant: &TenantId, letter: &DeadLetter) -> Result<()> {
        let kernel = self.kernel()?;
        let store = kernel.tenant(tenant)?;
        let active = kernel
            .active_plugins(tenant)?
            .into_iter()
            .find(|active| active.enablement.plugin == letter.plugin)
            .ok_or_else(|| Error::not_found(format!("plugin {} is not enabled for this tenant", letter.plugin)))?;
        let prepared = self.prepare(&active)?;
        let context = self.context(tenant, &active, &Actor::system(), None);
        let outcome = match &letter.timer {
            Some(key) => self.run(
                Writes::Durable,
                tenant,
                &store,
                &prepared,
                Phase::Effects,
                None,
                |instance, wasm_store| instance.call_on_timer(wasm_store, &context, key, &[]),
                |_| 0,
            ),
            None => {
                let reader = store.reader()?;
                let grants = &active.enablement.grants;
                let mut wire = Vec::new();
                for seq in &letter.events {
                    let Some(event) = reader.changes(seq - 1, 1)?.into_iter().next() else { continue };
                    wire.push(event_to_wit(&reader, grants, &event));
                }
                drop(reader);
                self.run(
                    Writes::Durable,
                    tenant,
                    &store,
                    &prepared,
                    Phase::Effects,
                    None,
                    |instance, wasm_store| instance.call_after_commit(wasm_store, &context, &wire),
                    |_| 0,
                )
            }
        };
        outcome.map_err(|message| Error::new(ErrorKind::PluginFailed, format!("plugin {} {message}", letter.plugin)))?;
        store.write_blocking(WriteRequest::effects(Actor::system(), vec![Effect::DeadLetterRemove { seq: letter.seq }]))?;
        Ok(())
    }

    fn http(&self, tenant: &TenantId, plugin: &str, request: RouteRequest) -> Result<RouteResponse> {
        let kernel = self.kernel()?;
        let active = kernel
            .active_plugins(tenant)?
            .into_iter()
            .find(|active| active.enablement.plugin == plugin)
            .ok_or_else(|| Error::not_found(format!("no plugin {plugin} here")))?;
        if !active.manifest.routes.iter().any(|route| route.matches(&request.method, &request.path)) {
            return Err(Error::not_found(format!("plugin {plugin} has no route {} {}", request.method, request.path)));
        }
        let store = kernel.tenant(tenant)?;
        let prepared = self.prepare(&active)?;
        let actor = Actor(format!("route:{plugin}"));
        let context = self.context(tenant, &active, &actor, None);
        let wire = wit::HttpRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        let response = self
            .run(
                Writes::Durable,
                tenant,
                &store,
                &prepared,
                Phase::Effects,
                None,
                |instance, wasm_store| instance.call_http(wasm_store, &context, &wire).map(Ok),
                |response: &wit::HttpResponse| {
                    response.body.len() + response.headers.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>()
                },
            )
            .map_err(|message| Error::new(ErrorKind::PluginFailed, format!("plugin {plugin} {message}")))?;
        if !(100..=599).contains(&response.status) {
            return Err(Error::new(ErrorKind::PluginFailed, format!("plugin {plugin} answered with status {}", response.status)));
        }
        Ok(RouteResponse { status: response.status, headers: response.headers, body: response.body })
    }

    fn invoke(&self, tenant: &TenantId, plugin: &str, action: &str, input: ActionFields, actor: &Actor, request_id: Option<&str>) -> Result<ActionFields> {
        let kernel = self.kernel()?;
        let active = kernel
            .active_plugins(tenant)?
            .into_iter()
            .find(|active| active.enablement.plugin == plugin)
            .ok_or_else(|| Error::not_found(format!("plugin {plugin} is not enabled for this tenant")))?;
        let decl = active
            .manifest
            .actions
            .iter()
            .find(|decl| decl.name == action)
            .ok_or_else(|| Error::not_found(format!("plugin {plugin} has no action '{action}'")))?
            .clone();
        let mut checked = ActionFields::new();
        for (name, value) in input {
            let field = decl.input.iter().find(|field| field.name == name).ok_or_else(|| Error::invalid_field(name.clone(), "is not an input of this action"))?;
            checked.insert(name, crm_core::normalize::normalize(field, value)?);
        }
        for field in decl.input.iter().filter(|field| field.required) {
            if checked.get(&field.name).is_none_or(crm_core::Value::is_null) {
                return Err(Error::invalid_field(field.name.clone(), "is required"));
            }
        }
        let store = kernel.tenant(tenant)?;
        let prepared = self.prepare(&active)?;
        let context = self.context(tenant, &active, actor, request_id);
        let input: Vec<wit::Field> = convert::fields_to_wit(&checked, |_| true);
        // An error the action returns is an answer (bad input, a refused
        // request), not a plugin failure: it reaches the client as VALIDATION
        // and does not count towards suspension.
        let answer = self
            .run(
                Writes::Durable,
                tenant,
                &store,
                &prepared,
                Phase::Effects,
                request_id,
                |plugin, wasm_store| plugin.call_invoke(wasm_store, &context, action, &input).map(Ok),
                |answer: &std::result::Result<Vec<wit::Field>, String>| match answer {
                    Ok(fields) => convert::fields_size(fields),
                    Err(message) => message.len(),
                },
            )
            .map_err(|message| Error::new(ErrorKind::PluginFailed, format!("plugin {plugin} {message}")))?;
        let output = answer.map_err(|message| Error::invalid(message.chars().take(1000).collect::<String>()))?;
        let output = convert::fields_from_wit(output).map_err(|error| Error::new(ErrorKind::PluginFailed, format!("plugin {plugin} returned {error}")))?;
        let mut out = BTreeMap::new();
        for (name, value) in output {
            let Some(field) = decl.output.iter().find(|field| field.name == name) else { continue };
            let value = crm_core::normalize::normalize(field, value)
                .map_err(|error| Error::new(ErrorKind::PluginFailed, format!("plugin {plugin} returned a bad {name}: {}", error.message)))?;
            out.insert(name, value);
        }
        Ok(out)
    }
}

/// A call made and not yet booked: its outcome (an error without the
/// plugin's name), what the instance left (logs, flags) and its fuel.
struct Called<R> {
    outcome: std::result::Result<R, String>,
    state: HostState,
    fuel_used: u64,
}

/// Changes from which one plugin's before-write batch is split in two
/// calls made at once (a bulk write's thousand, not a single write's few).
const SPLIT_BATCH_AT: usize = 256;

/// The before-write hooks of one tenant.
struct TenantHooks {
    host: Arc<PluginHost>,
    tenant: TenantId,
    plugins: Vec<Prepared>,
}

impl WriteHooks for TenantHooks {
    fn covers(&self, object: &str, op: ChangeOp) -> bool {
        self.plugins.iter().any(|plugin| plugin.active.manifest.hooks.iter().any(|hook| hook.matches(HookKind::BeforeWrite, object, op)))
    }

    fn before_write(&self, call: HookCall<'_>, changes: &mut [PendingChange<'_>]) -> std::result::Result<(), HookFailure> {
        let host = &self.host;
        let kernel = host.kernel()?;
        let store = kernel.tenant(&self.tenant)?;
        for prepared in &self.plugins {
            let manifest = &prepared.active.manifest;
            let grants = &prepared.active.enablement.grants;
            let plugin = &prepared.active.enablement.plugin;
            let mut selected = Vec::new();
            let mut failure = FailurePolicy::FailOpen;
            for (index, change) in changes.iter().enumerate() {
                if let Some(hook) = manifest.hooks.iter().find(|hook| hook.matches(HookKind::BeforeWrite, change.object, change.op)) {
                    selected.push(index);
                    if hook.failure == FailurePolicy::FailClosed {
                        failure = FailurePolicy::FailClosed;
                    }
                }
            }
            if selected.is_empty() {
                continue;
            }
            let context = host.context(&self.tenant, &prepared.active, call.actor, call.request_id);
            // The plugin's decisions on the changes at `part` of `changes`,
            // from one call, not yet booked.
            let decide = |part: &[usize]| -> Called<Vec<wit::Decision>> {
                let wire: Vec<wit::Change> = part
                    .iter()
                    .map(|&index| {
                        let change = &changes[index];
                        let visible = |field: &str| grants.allows_field(change.object, field, crm_core::plugin::Access::Read);
                        wit::Change {
                            object: change.object.to_owned(),
                            op: convert::op_to_wit(change.op),
                            id: change.after.id.to_string(),
                            before: change.before.map(|before| convert::fields_to_wit(&before.fields, visible)),
                            after: convert::fields_to_wit(change.fields(), visible),
                        }
                    })
                    .collect();
                let mut called = host.call(
                    Writes::Durable,
                    &store,
                    prepared,
                    Phase::BeforeWrite,
                    call.request_id,
                    |plugin, wasm_store| plugin.call_before_write(wasm_store, &context, &wire),
                    |decisions: &Vec<wit::Decision>| {
                        decisions
                            .iter()
                            .map(|decision| match decision {
                                wit::Decision::Patch(fields) => convert::fields_size(fields),
                                wit::Decision::Reject(rejection) => rejection.message.len(),
                                wit::Decision::Accept => 1,
                            })
                            .sum()
                    },
                );
                if let Ok(decisions) = &called.outcome
                    && decisions.len() != part.len()
                {
                    called.outcome = Err(format!("returned {} decisions for {} changes", decisions.len(), part.len()));
                }
                called
            };
            // A large batch goes to the plugin in two calls, the second
            // half offered to another thread: with a core free the halves
            // run at once and the writer's thread, which the tenant's other
            // writes wait for, spends half as long. Whichever thread comes
            // to the second half first calls it, so a helper that is not
            // scheduled in time (or not started at all) costs nothing but
            // its start. The batch is booked as one outcome of its calls.
            let calls: Vec<Called<Vec<wit::Decision>>> = if selected.len() >= SPLIT_BATCH_AT {
                let (first, second) = selected.split_at(selected.len() / 2);
                let taken = std::sync::atomic::AtomicBool::new(false);
                let second_half = || (!taken.swap(true, std::sync::atomic::Ordering::AcqRel)).then(|| decide(second));
                std::thread::scope(|scope| {
                    let helper = std::thread::Builder::new().name("before-write".into()).spawn_scoped(scope, second_half).ok();
                    let first = decide(first);
                    let mine = second_half();
                    let theirs = match helper.map(|helper| helper.join()) {
                        None | Some(Ok(None)) => None,
                        Some(Ok(Some(called))) => Some(called),
                        Some(Err(_)) => {
                            tracing::error!(tenant = %self.tenant, plugin = %plugin, "a before-write call panicked in the host");
                            Some(Called {
                                outcome: Err("call ended in a panic of the host".to_string()),
                                state: HostState::new(empty_scope(), 0),
                                fuel_used: 0,
                            })
                        }
                    };
                    // One of the two threads took the second half.
                    vec![first, mine.or(theirs).unwrap_or_else(|| decide(second))]
                })
            } else {
                vec![decide(&selected)]
            };
            let failed = calls.iter().find_map(|called| called.outcome.as_ref().err()).map(|message| format!("plugin {plugin} {message}"));
            let logs: Vec<LogLine> = calls.iter().flat_map(|called| called.state.logs.iter().cloned()).collect();
            let fuel_used = calls.iter().map(|called| called.fuel_used).sum();
            // The batch is booked once, with what its decisions turn out to
            // be: a patch the plugin may not make fails it like an error.
            let made = calls.len() as u64;
            let book = |failure: Option<&str>| host.finish(&self.tenant, plugin, &logs, made, fuel_used, failure);
            if let Some(message) = failed {
                book(Some(&message));
                match failure {
                    FailurePolicy::FailClosed => return Err(Error::new(ErrorKind::PluginFailed, message).into()),
                    FailurePolicy::FailOpen => continue,
                }
            }
            let decisions: Vec<wit::Decision> = calls.into_iter().flat_map(|called| called.outcome.unwrap_or_default()).collect();
            for (index, decision) in selected.into_iter().zip(decisions) {
                let change = &mut changes[index];
                match decision {
                    wit::Decision::Accept => {}
                    wit::Decision::Reject(rejection) => {
                        book(None);
                        let message = rejection.message.chars().take(1000).collect::<String>();
                        let error = match rejection.field {
                            Some(field) => Error { kind: ErrorKind::Validation, message: format!("{field}: {message}"), field: Some(field) },
                            None => Error::invalid(message),
                        };
                        return Err(HookFailure { error, change: Some(index) });
                    }
                    wit::Decision::Patch(fields) => {
                        let access = if change.op == ChangeOp::Created { crm_core::plugin::Access::Create } else { crm_core::plugin::Access::Update };
                        let fields = match convert::fields_from_wit(fields) {
                            Ok(fields) => fields,
                            Err(error) => {
                                let message = format!("plugin {plugin} patched {error}");
                                book(Some(&message));
                                return Err(HookFailure { error: Error::new(ErrorKind::PluginFailed, message), change: Some(index) });
                            }
                        };
                        for (name, value) in fields {
                            if !grants.allows_field(change.object, &name, access) {
                                let message = format!("plugin {plugin} patched {}.{name}, which it may not write", change.object);
                                book(Some(&message));
                                return Err(HookFailure { error: Error::new(ErrorKind::PluginFailed, message), change: Some(index) });
                            }
                            change.set(name, value);
                        }
                    }
                }
            }
            book(None);
        }
        Ok(())
    }
}

fn empty_scope() -> CallScope {
    CallScope {
        store: None,
        plugin: String::new(),
        version: String::new(),
        grants: Default::default(),
        phase: Phase::Inspect,
        request_id: None,
        max_host_calls: 0,
        max_log_bytes: 0,
    }
}

/// A committed change as an after-commit event: the record as it is now,
/// granted fields only (none if it cannot be read).
fn event_to_wit(reader: &crm_core::Reader<'_>, grants: &crm_core::plugin::Capabilities, event: &crm_core::ChangeEvent) -> wit::Event {
    let visible = |field: &str| grants.allows_field(&event.object, field, crm_core::plugin::Access::Read);
    let fields = reader
        .get(&event.object, event.record_id)
        .ok()
        .flatten()
        .map(|record| convert::fields_to_wit(&record.fields, visible))
        .unwrap_or_default();
    wit::Event {
        seq: event.seq,
        at: event.at,
        object: event.object.clone(),
        id: event.record_id.to_string(),
        op: convert::op_to_wit(event.op),
        version: event.version,
        fields,
    }
}

/// When a plugin call's writes (deferred, as every host write) become
/// durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Before the call's outcome counts: someone waits for its answer (an
    /// action, a route).
    Durable,
    /// With the tenant's next durable commit: a delivery or a timer, whose
    /// bookkeeping (the cursor, the timer's removal) is written deferred
    /// after the call, so it is never durable while the call's writes are
    /// not; a crash before then means the call is made again. The delivery
    /// worker makes a durable commit when the tenant has been quiet for
    /// [`SYNC_WHEN_QUIET_MS`], and at least every
    /// [`SYNC_AT_LEAST_EVERY_MS`] while it keeps delivering.
    Deferred,
}

/// How long the delivery worker waits for another commit to make its
/// deferred writes durable before it makes one itself.
const SYNC_WHEN_QUIET_MS: u64 = 20;
/// The longest the worker leaves its deferred writes to other commits
/// while it keeps delivering (a backlog with no client writing).
const SYNC_AT_LEAST_EVERY_MS: u64 = 1000;

/// Retry bookkeeping of one plugin's delivery or one timer.
#[derive(Default, Clone)]
struct Attempts {
    count: u32,
    next_at: i64,
}

fn backoff_ms(attempt: u32) -> i64 {
    (200i64 << attempt.min(8)).min(60_000)
}

/// What to do after a failed delivery or timer call.
enum Verdict {
    /// Try again at this time.
    Retry(i64),
    /// The last attempt (this many) failed: keep a dead letter.
    GiveUp(u32),
}

/// Books a failed attempt under `key`; after the last one the bookkeeping
/// is dropped.
fn failed(attempts: &mut HashMap<String, Attempts>, key: &str, now: i64) -> Verdict {
    let entry = attempts.entry(key.to_string()).or_default();
    entry.count += 1;
    if entry.count < MAX_ATTEMPTS {
        entry.next_at = now + backoff_ms(entry.count);
        return Verdict::Retry(entry.next_at);
    }
    let count = entry.count;
    attempts.remove(key);
    Verdict::GiveUp(count)
}

/// The delivery worker of one tenant: after-commit events and timers.
async fn worker(
    kernel: Arc<Kernel>,
    host: Arc<PluginHost>,
    tenant: TenantId,
    mut plugins: tokio::sync::watch::Receiver<Vec<ActivePlugin>>,
) {
    let Ok(store) = kernel.tenant(&tenant) else { return };
    let mut events = store.subscribe();
    let mut attempts: HashMap<String, Attempts> = HashMap::new();
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let active = plugins.borrow_and_update().clone();
        let (host2, tenant2, store2) = (host.clone(), tenant.clone(), store.clone());
        let mut state = std::mem::take(&mut attempts);
        let pass = tokio::task::spawn_blocking(move || {
            let wake = deliver(&host2, &tenant2, &store2, &active, &mut state);
            (state, wake)
        })
        .await;
        let wake_in = match pass {
            Ok((state, wake)) => {
                attempts = state;
                wake.map(|at| (at - crm_core::clock::now_ms()).clamp(0, 1000)).unwrap_or(1000)
            }
            Err(error) => {
                tracing::error!(%error, "plugin delivery pass failed");
                1000
            }
        };
        // Under load the clients' durable commits make the deliveries'
        // deferred writes durable; when the tenant falls quiet, or while a
        // backlog keeps the worker busy for long, one of its own does.
        let unsynced = store.unsynced();
        if !unsynced {
            unsynced_since = None;
        } else if unsynced_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_millis(SYNC_AT_LEAST_EVERY_MS) {
            sync(&store).await;
            unsynced_since = None;
        }
        tokio::select! {
            changed = plugins.changed() => if changed.is_err() { return },
            _ = events.recv() => {},
            _ = tokio::time::sleep(Duration::from_millis(wake_in as u64)) => {},
            _ = tokio::time::sleep(Duration::from_millis(SYNC_WHEN_QUIET_MS)), if unsynced => {
                sync(&store).await;
                unsynced_since = None;
            },
        }
    }
}

/// A durable commit of the deliveries' deferred writes (nothing when a
/// client's commit already made them durable).
async fn sync(store: &TenantStore) {
    if let Err(error) = store.sync().await {
        tracing::error!(%error, "cannot make plugin deliveries durable");
    }
}

/// Events read from the change log at a time.
const DELIVERY_BATCH: usize = 100;
/// Batches of changes without a hook for the plugin passed over in one pass.
const SKIP_BATCHES: usize = 50;

/// One pass: delivers pending events to each after-commit plugin and fires
/// due timers. Returns when the next retry or timer is due.
fn deliver(
    host: &PluginHost,
    tenant: &TenantId,
    store: &Arc<TenantStore>,
    active: &[ActivePlugin],
    attempts: &mut HashMap<String, Attempts>,
) -> Option<i64> {
    let mut wake: Option<i64> = None;
    let mut wake_at = |at: i64| wake = Some(wake.map_or(at, |current: i64| current.min(at)));
    let now = crm_core::clock::now_ms();
    for plugin in active {
        let hooks: Vec<_> = plugin.manifest.hooks.iter().filter(|hook| hook.kind == HookKind::AfterCommit).collect();
        if hooks.is_empty() {
            continue;
        }
        let id = &plugin.enablement.plugin;
        let key = format!("events:{id}");
        if attempts.get(&key).is_some_and(|a| a.next_at > now) {
            wake_at(attempts[&key].next_at);
            continue;
        }
        let Ok(reader) = store.reader() else { continue };
        let cursor = match reader.cursor(id) {
            Ok(Some(cursor)) => cursor,
            Ok(None) => {
                let last = reader.last_change().unwrap_or(0);
                let _ = store.write_blocking(WriteRequest::effects(Actor::system(), vec![Effect::Cursor { plugin: id.clone(), seq: last }]));
                continue;
            }
            Err(_) => continue,
        };
        // The next events the plugin wants, at most a batch; changes it has
        // no hook for are passed over a few batches at a time.
        let grants = &plugin.enablement.grants;
        let mut wire = Vec::new();
        let mut failure = FailurePolicy::FailOpen;
        let mut last_seq = None;
        let mut more = false;
        for _ in 0..SKIP_BATCHES {
            let Ok(batch) = reader.changes(last_seq.unwrap_or(cursor), DELIVERY_BATCH) else { break };
            more = batch.len() == DELIVERY_BATCH;
            let Some(last) = batch.last().map(|event| event.seq) else { break };
            last_seq = Some(last);
            for event in &batch {
                let Some(hook) = hooks.iter().find(|hook| hook.matches(HookKind::AfterCommit, &event.object, event.op)) else { continue };
                if hook.failure == FailurePolicy::FailClosed {
                    failure = FailurePolicy::FailClosed;
                }
                wire.push(event_to_wit(&reader, grants, event));
            }
            if !wire.is_empty() || !more {
                break;
            }
        }
        drop(reader);
        let Some(last_seq) = last_seq else { continue };
        if more {
            // A backlog: the next pass follows at once.
            wake_at(now);
        }
        let advance = |effects: Vec<Effect>| {
            let mut all = effects;
            all.push(Effect::Cursor { plugin: id.clone(), seq: last_seq });
            let request = WriteRequest { deferred: true, ..WriteRequest::effects(Actor::system(), all) };
            if let Err(error) = store.write_blocking(request) {
                tracing::error!(%error, "cannot record plugin delivery");
            }
        };
        if wire.is_empty() {
            advance(Vec::new());
            continue;
        }
        let prepared = match host.prepare(plugin) {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::error!(%error, plugin = %id, "cannot load plugin for delivery");
                continue;
            }
        };
        let context = host.context(tenant, plugin, &Actor::system(), None);
        let result = host.run_effects(tenant, store, &prepared, |instance, wasm_store| instance.call_after_commit(wasm_store, &context, &wire));
        match result {
            Ok(()) => {
                attempts.remove(&key);
                advance(Vec::new());
                wake_at(now);
            }
            Err(message) if failure == FailurePolicy::FailOpen => {
                tracing::warn!(plugin = %id, "after-commit failed (fail-open, events skipped): {message}");
                advance(Vec::new());
            }
            Err(message) => {
                let now = crm_core::clock::now_ms();
                match failed(attempts, &key, now) {
                    Verdict::Retry(at) => wake_at(at),
                    Verdict::GiveUp(count) => {
                        let letter = DeadLetter {
                            seq: 0,
                            plugin: id.clone(),
                            hook: "after-commit".into(),
                            events: wire.iter().map(|event| event.seq).collect(),
                            timer: None,
                            error: message,
                            attempts: count,
                            at: now,
                        };
                        advance(vec![Effect::DeadLetter { letter }]);
                    }
                }
            }
        }
    }
    fire_timers(host, tenant, store, active, attempts, &mut wake_at);
    if let Ok(reader) = store.reader()
        && let Ok(Some(next)) = reader.next_timer_at()
    {
        wake_at(next);
    }
    wake
}

fn fire_timers(
    host: &PluginHost,
    tenant: &TenantId,
    store: &Arc<TenantStore>,
    active: &[ActivePlugin],
    attempts: &mut HashMap<String, Attempts>,
    wake_at: &mut impl FnMut(i64),
) {
    let now = crm_core::clock::now_ms();
    let Ok(due) = store.reader().and_then(|reader| reader.due_timers(now, 50)) else { return };
    for timer in due {
        let Some(plugin) = active.iter().find(|plugin| plugin.enablement.plugin == timer.plugin && plugin.enablement.grants.timers) else {
            // The plugin is disabled: its timers wait for it.
            continue;
        };
        let key = format!("timer:{}:{}", timer.plugin, timer.key);
        if let Some(retry) = attempts.get(&key)
            && retry.next_at > now
        {
            wake_at(retry.next_at);
            continue;
        }
        let Ok(prepared) = host.prepare(plugin) else { continue };
        let context = host.context(tenant, plugin, &Actor::system(), None);
        let result =
            host.run_effects(tenant, store, &prepared, |instance, wasm_store| instance.call_on_timer(wasm_store, &context, &timer.key, &timer.payload));
        let done = Effect::TimerCancel { plugin: timer.plugin.clone(), key: timer.key.clone(), only_at: Some(timer.at) };
        let effects = match result {
            Ok(()) => {
                attempts.remove(&key);
                vec![done]
            }
            Err(message) => match failed(attempts, &key, now) {
                Verdict::Retry(at) => {
                    wake_at(at);
                    continue;
                }
                Verdict::GiveUp(count) => {
                    let letter = DeadLetter {
                        seq: 0,
                        plugin: timer.plugin.clone(),
                        hook: "on-timer".into(),
                        events: Vec::new(),
                        timer: Some(timer.key.clone()),
                        error: message,
                        attempts: count,
                        at: now,
                    };
                    vec![done, Effect::DeadLetter { letter }]
                }
            },
        };
        if let Err(error) = store.write_blocking(WriteRequest { deferred: true, ..WriteRequest::effects(Actor::system(), effects) }) {
            tracing::error!(%error, "cannot record a fired timer");
        }
    }
}
