//! Plugins as the core sees them: manifests, installed versions, their
//! enablement per tenant with config and grants, and the hook trait the
//! writer calls inside its transaction. The wasm side lives in
//! `crm-plugin-host`; nothing here knows about WebAssembly.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, ChangeOp};
use crate::error::{Error, Result};
use crate::metadata::{FieldDef, FieldType, Metadata, ObjectDef, SYSTEM_FIELDS};
use crate::value::{Record, Value};
use crate::writer::Fields;

/// Interface versions this kernel can host.
pub const SUPPORTED_APIS: &[&str] = &["0.1.0"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookKind {
    BeforeWrite,
    AfterCommit,
}

/// What happens to the triggering work when a hook fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailurePolicy {
    /// The write is rejected (`PLUGIN_FAILED`); deliveries are retried.
    FailClosed,
    /// The write goes ahead; the failure is logged.
    FailOpen,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookDecl {
    pub kind: HookKind,
    pub object: String,
    pub ops: Vec<ChangeOp>,
    pub failure: FailurePolicy,
}

impl HookDecl {
    pub fn matches(&self, kind: HookKind, object: &str, op: ChangeOp) -> bool {
        self.kind == kind && names_object(&self.object, object) && self.ops.contains(&op)
    }
}

/// The kernel's channel objects, written only through host calls
/// (`outbound.send`, `events.emit`); `*` does not reach them, a plugin must
/// name them.
pub const CHANNEL_OBJECTS: [&str; 2] = ["outbound_message", "custom_event"];

/// Whether a hook's or grant's object (a name, or `*` for every object of
/// the tenant — standard and plugin-declared — but the channel objects)
/// covers `object`.
pub fn names_object(declared: &str, object: &str) -> bool {
    declared == object || (declared == "*" && object != "*" && !CHANNEL_OBJECTS.contains(&object))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionDecl {
    pub name: String,
    pub description: String,
    pub input: Vec<FieldDef>,
    pub output: Vec<FieldDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteDecl {
    pub method: String,
    pub path: String,
}

/// Access to one object; an empty `fields` list means every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectAccess {
    pub object: String,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub update: bool,
    #[serde(default)]
    pub delete: bool,
}

/// The operations a capability check distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Create,
    Update,
    Delete,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Create => "create",
            Access::Update => "update",
            Access::Delete => "delete",
        }
    }
}

impl ObjectAccess {
    fn allows(&self, access: Access) -> bool {
        match access {
            Access::Read => self.read,
            Access::Create => self.create,
            Access::Update => self.update,
            Access::Delete => self.delete,
        }
    }
    pub fn covers_field(&self, field: &str) -> bool {
        self.fields.is_empty() || self.fields.iter().any(|granted| granted == field)
    }
}

/// What a plugin asks for (in its manifest) or was granted (by an admin).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    pub records: Vec<ObjectAccess>,
    pub outbound: Vec<String>,
    pub timers: bool,
    pub kv: bool,
    pub events: bool,
    /// May add objects and fields per tenant at run time.
    pub schema: bool,
}

impl Capabilities {
    /// The grants that cover `object`: its own and a `*` grant. Asked for
    /// `*` itself, only `*` grants.
    fn object_access(&self, object: &str) -> impl Iterator<Item = &ObjectAccess> {
        self.records.iter().filter(move |access| names_object(&access.object, object))
    }

    /// Whether `access` to `object` is granted at all.
    pub fn allows(&self, object: &str, access: Access) -> bool {
        self.object_access(object).any(|grant| grant.allows(access))
    }

    /// Whether `access` to one field of `object` is granted.
    pub fn allows_field(&self, object: &str, field: &str, access: Access) -> bool {
        self.object_access(object).any(|grant| grant.allows(access) && grant.covers_field(field))
    }

    /// Checks that every grant here is within `requested`; names the first
    /// one that is not.
    pub fn check_within(&self, requested: &Capabilities) -> Result<()> {
        for grant in &self.records {
            for access in [Access::Read, Access::Create, Access::Update, Access::Delete] {
                if !grant.allows(access) {
                    continue;
                }
                let fields: Vec<Option<&str>> = if grant.fields.is_empty() {
                    vec![None]
                } else {
                    grant.fields.iter().map(|field| Some(field.as_str())).collect()
                };
                for field in fields {
                    let asked = requested.object_access(&grant.object).any(|asked| {
                        asked.allows(access)
                            && match field {
                                None => asked.fields.is_empty(),
                                Some(field) => asked.covers_field(field),
                            }
                    });
                    if !asked {
                        return Err(Error::invalid(format!(
                            "grant {} on {}{} was not requested by the plugin",
                            access.as_str(),
                            grant.object,
                            field.map(|field| format!(".{field}")).unwrap_or_default()
                        )));
                    }
                }
            }
        }
        for channel in &self.outbound {
            if !requested.outbound.contains(channel) {
                return Err(Error::invalid(format!("outbound channel '{channel}' was not requested by the plugin")));
            }
        }
        for (granted, asked, name) in [
            (self.timers, requested.timers, "timers"),
            (self.kv, requested.kv, "kv"),
            (self.events, requested.events, "events"),
            (self.schema, requested.schema, "schema"),
        ] {
            if granted && !asked {
                return Err(Error::invalid(format!("'{name}' was not requested by the plugin")));
            }
        }
        Ok(())
    }
}

/// Per-call budgets. Zero means "not set here" when merging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Instructions (wasmtime fuel units) per call.
    pub fuel: u64,
    /// Wall-clock ceiling per call.
    pub timeout_ms: u32,
    /// Linear memory cap.
    pub memory_bytes: u64,
    /// Host calls per invocation.
    pub host_calls: u32,
    /// Bytes a call may return.
    pub output_bytes: u32,
    /// Log bytes per call.
    pub log_bytes: u32,
}

impl Limits {
    /// The defaults when neither the manifest nor the admin says otherwise.
    pub const DEFAULT: Limits = Limits {
        fuel: 500_000_000,
        timeout_ms: 2_000,
        memory_bytes: 64 * 1024 * 1024,
        host_calls: 10_000,
        output_bytes: 4 * 1024 * 1024,
        log_bytes: 64 * 1024,
    };
    /// Ceilings no manifest or admin setting can exceed.
    pub const MAX: Limits = Limits {
        fuel: 50_000_000_000,
        timeout_ms: 60_000,
        memory_bytes: 1024 * 1024 * 1024,
        host_calls: 1_000_000,
        output_bytes: 64 * 1024 * 1024,
        log_bytes: 4 * 1024 * 1024,
    };

    /// `self` with the non-zero values of `over` taking precedence.
    pub fn overridden_by(self, over: &Limits) -> Limits {
        fn pick<T: Copy + PartialEq + Default>(base: T, over: T) -> T {
            if over == T::default() { base } else { over }
        }
        Limits {
            fuel: pick(self.fuel, over.fuel),
            timeout_ms: pick(self.timeout_ms, over.timeout_ms),
            memory_bytes: pick(self.memory_bytes, over.memory_bytes),
            host_calls: pick(self.host_calls, over.host_calls),
            output_bytes: pick(self.output_bytes, over.output_bytes),
            log_bytes: pick(self.log_bytes, over.log_bytes),
        }
    }

    pub fn capped(self) -> Limits {
        let max = Limits::MAX;
        Limits {
            fuel: self.fuel.min(max.fuel),
            timeout_ms: self.timeout_ms.min(max.timeout_ms),
            memory_bytes: self.memory_bytes.min(max.memory_bytes),
            host_calls: self.host_calls.min(max.host_calls),
            output_bytes: self.output_bytes.min(max.output_bytes),
            log_bytes: self.log_bytes.min(max.log_bytes),
        }
    }

    /// The effective limits: defaults, then the manifest, then the admin's
    /// per-tenant setting, capped.
    pub fn effective(manifest: &Limits, tenant: &Limits) -> Limits {
        Limits::DEFAULT.overridden_by(manifest).overridden_by(tenant).capped()
    }
}

/// A field a plugin adds to an object it does not declare itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldExtension {
    pub object: String,
    pub field: FieldDef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginManifest {
    pub id: String,
    pub version: String,
    pub api: String,
    pub description: String,
    pub objects: Vec<ObjectDef>,
    pub fields: Vec<FieldExtension>,
    pub hooks: Vec<HookDecl>,
    pub actions: Vec<ActionDecl>,
    pub routes: Vec<RouteDecl>,
    pub capabilities: Capabilities,
    pub limits: Limits,
    /// JSON Schema of the per-tenant configuration.
    pub config_schema: String,
}

fn check_name(what: &str, name: &str, dash: bool) -> Result<()> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (dash && c == '-'));
    if valid {
        Ok(())
    } else {
        let allowed = if dash { "a-z, 0-9, '_' and '-'" } else { "a-z, 0-9 and '_'" };
        Err(Error::invalid(format!(
            "{what} '{}' must start with a-z and use only {allowed} (at most 63 characters)",
            crate::ids::truncate(name, 70)
        )))
    }
}

fn check_version(version: &str) -> Result<()> {
    let parts: Vec<&str> = version.split(['-', '+']).next().unwrap_or_default().split('.').collect();
    if parts.len() == 3 && parts.iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())) {
        Ok(())
    } else {
        Err(Error::invalid(format!("version '{}' is not a semantic version (x.y.z)", crate::ids::truncate(version, 40))))
    }
}

fn check_field(object: &str, field: &FieldDef) -> Result<()> {
    check_name("field name", &field.name, false)?;
    if SYSTEM_FIELDS.contains(&field.name.as_str()) {
        return Err(Error::invalid(format!("{object}.{} is a system field", field.name)));
    }
    if let FieldType::Enum(keys) = &field.ty {
        if keys.is_empty() {
            return Err(Error::invalid(format!("{object}.{} is an enumeration without options", field.name)));
        }
        for key in keys {
            check_name("enumeration option", key, false)?;
        }
    }
    Ok(())
}

impl PluginManifest {
    /// Checks the manifest on its own: names, versions, field types and
    /// that hooks and capabilities refer to objects that exist in `base`
    /// or that the plugin declares.
    pub fn validate(&self, base: &Metadata) -> Result<()> {
        check_name("plugin id", &self.id, true)?;
        check_version(&self.version)?;
        if !SUPPORTED_APIS.contains(&self.api.as_str()) {
            return Err(Error::invalid(format!(
                "plugin {} needs interface {} but this kernel supports {}",
                self.id,
                crate::ids::truncate(&self.api, 40),
                SUPPORTED_APIS.join(", ")
            )));
        }
        let mut declared = BTreeSet::new();
        for object in &self.objects {
            check_name("object name", &object.name, false)?;
            check_name("object plural", &object.plural, false)?;
            if base.object(&object.name).is_some() || !declared.insert(object.name.clone()) {
                return Err(Error::invalid(format!("object '{}' already exists", object.name)));
            }
            let mut names = BTreeSet::new();
            for field in &object.fields {
                check_field(&object.name, field)?;
                if !names.insert(field.name.as_str()) {
                    return Err(Error::invalid(format!("{}.{} is declared twice", object.name, field.name)));
                }
            }
        }
        let known = |name: &str| base.object(name).is_some() || declared.contains(name);
        for extension in &self.fields {
            if !known(&extension.object) {
                return Err(Error::invalid(format!("field extension on unknown object '{}'", extension.object)));
            }
            check_field(&extension.object, &extension.field)?;
        }
        for object in self.objects.iter().map(|o| (o.name.as_str(), &o.fields)) {
            for field in object.1 {
                if let FieldType::Ref(target) = &field.ty
                    && !known(target)
                {
                    return Err(Error::invalid(format!("{}.{} refers to unknown object '{target}'", object.0, field.name)));
                }
            }
        }
        for hook in &self.hooks {
            if hook.object != "*" && !known(&hook.object) {
                return Err(Error::invalid(format!("hook on unknown object '{}'", hook.object)));
            }
        }
        for access in &self.capabilities.records {
            if access.object == "*" {
                // Every object, including those other plugins declare; an
                // admin grants it explicitly when enabling the plugin.
                if !access.fields.is_empty() {
                    return Err(Error::invalid("a capability on every object ('*') cannot list fields"));
                }
                continue;
            }
            if !known(&access.object) {
                return Err(Error::invalid(format!("capability on unknown object '{}'", access.object)));
            }
        }
        let mut actions = BTreeSet::new();
        for action in &self.actions {
            check_name("action name", &action.name, true)?;
            if !actions.insert(action.name.as_str()) {
                return Err(Error::invalid(format!("action '{}' is declared twice", action.name)));
            }
            for field in action.input.iter().chain(&action.output) {
                check_field(&action.name, field)?;
            }
        }
        for route in &self.routes {
            if !["GET", "POST", "PUT", "DELETE"].contains(&route.method.as_str()) || !route.path.starts_with('/') {
                return Err(Error::invalid(format!("route '{} {}' needs GET/POST/PUT/DELETE and a path starting with '/'", route.method, route.path)));
            }
        }
        for channel in &self.capabilities.outbound {
            if !["email", "sms", "webhook"].contains(&channel.as_str()) {
                return Err(Error::invalid(format!("unknown outbound channel '{channel}'")));
            }
        }
        let schema: serde_json::Value = serde_json::from_str(&self.config_schema)
            .map_err(|error| Error::invalid(format!("config schema is not JSON: {error}")))?;
        crate::json_schema::check_schema(&schema)?;
        Ok(())
    }
}

/// Hex SHA-256 of a component: its identity in the store and the cache.
pub fn content_hash(wasm: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(wasm))
}

/// An installed plugin version; the binary is stored under its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledPlugin {
    pub id: String,
    pub version: String,
    /// Hex SHA-256 of the component.
    pub hash: String,
    pub size: u64,
    pub installed_at: i64,
    pub manifest: PluginManifest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PluginStatus {
    Enabled,
    Disabled,
    /// Disabled by the kernel after repeated failures.
    Suspended { reason: String },
}

/// A plugin enabled (or once enabled) for one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enablement {
    pub plugin: String,
    pub version: String,
    pub hash: String,
    /// Configuration as JSON, valid against the manifest's schema.
    pub config: String,
    pub grants: Capabilities,
    /// The admin's per-tenant limits (zero = manifest or default).
    pub limits: Limits,
    pub status: PluginStatus,
    pub changed_at: i64,
    /// Versions enabled before, newest last (for roll back).
    pub previous: Vec<String>,
    /// What the plugin added to this tenant's schema at run time.
    #[serde(default)]
    pub extension: SchemaExtension,
}

/// Objects and fields a plugin adds to one tenant beyond its manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaExtension {
    pub objects: Vec<ObjectDef>,
    pub fields: Vec<FieldExtension>,
}

impl SchemaExtension {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.fields.is_empty()
    }

    /// Checks names and types like a manifest's declarations.
    pub fn validate(&self, plugin: &str) -> Result<()> {
        for object in &self.objects {
            check_name("object name", &object.name, false)?;
            check_name("object plural", &object.plural, false)?;
            for field in &object.fields {
                check_field(&object.name, field)?;
            }
        }
        for extension in &self.fields {
            check_field(&extension.object, &extension.field)?;
        }
        let _ = plugin;
        Ok(())
    }
}

impl Enablement {
    pub fn is_enabled(&self) -> bool {
        self.status == PluginStatus::Enabled
    }
}

/// The metadata of a tenant: the standard objects plus what its enabled
/// plugins declare, in their manifests and at run time.
pub fn tenant_metadata(standard: &Metadata, plugins: &[(&PluginManifest, &SchemaExtension)]) -> Result<Metadata> {
    let mut metadata = standard.clone();
    for (manifest, extension) in plugins {
        for object in manifest.objects.iter().chain(&extension.objects) {
            if metadata.object(&object.name).is_some() {
                return Err(Error::conflict(format!(
                    "plugin {} declares object '{}', which another plugin already declares",
                    manifest.id, object.name
                )));
            }
            metadata.objects.push(object.clone());
        }
    }
    let available: BTreeSet<String> = metadata.objects.iter().map(|object| object.name.clone()).collect();
    for (manifest, runtime) in plugins {
        // Fields added at run time may be on (or refer to) an object of
        // another plugin that is not enabled now: they stay dormant, kept by
        // their plugin and back when that object is.
        let dormant = |extension: &&FieldExtension| {
            let target_missing = matches!(&extension.field.ty, FieldType::Ref(target) if !available.contains(target));
            !available.contains(&extension.object) || target_missing
        };
        let live = runtime.fields.iter().filter(|extension| !dormant(extension));
        for extension in manifest.fields.iter().chain(live) {
            let Some(object) = metadata.objects.iter_mut().find(|object| object.name == extension.object) else {
                return Err(Error::invalid(format!(
                    "plugin {} extends object '{}', which is not available",
                    manifest.id, extension.object
                )));
            };
            if object.field(&extension.field.name).is_some() {
                return Err(Error::conflict(format!(
                    "plugin {} adds field {}.{}, which already exists",
                    manifest.id, extension.object, extension.field.name
                )));
            }
            object.fields.push(extension.field.clone());
        }
    }
    for (manifest, _) in plugins {
        for action in &manifest.actions {
            metadata.actions.push(crate::metadata::PluginAction {
                plugin: manifest.id.clone(),
                name: action.name.clone(),
                description: action.description.clone(),
                input: action.input.clone(),
                output: action.output.clone(),
            });
        }
    }
    for object in &metadata.objects {
        for field in &object.fields {
            if let FieldType::Ref(target) = &field.ty
                && metadata.object(target).is_none()
            {
                return Err(Error::invalid(format!("{}.{} refers to unknown object '{target}'", object.name, field.name)));
            }
        }
    }
    Ok(metadata)
}

/// A change about to be written, as before-write hooks see it: the record
/// as the request left it, borrowed from the writer, and what the hooks so
/// far set on it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingChange<'a> {
    pub object: &'a str,
    pub op: ChangeOp,
    pub before: Option<&'a Record>,
    /// The record as the request left it; hooks change it through
    /// [`PendingChange::set`], which keeps the change in `patch`.
    pub after: &'a Record,
    /// What the hooks set, later hooks over earlier ones: a field to a
    /// value, or to [`Value::Null`] to clear it.
    pub patch: Fields,
}

impl<'a> PendingChange<'a> {
    pub fn new(object: &'a str, op: ChangeOp, before: Option<&'a Record>, after: &'a Record) -> PendingChange<'a> {
        PendingChange { object, op, before, after, patch: Fields::new() }
    }

    /// A field as the hooks so far leave it.
    pub fn get(&self, field: &str) -> &Value {
        self.patch.get(field).unwrap_or_else(|| self.after.get(field))
    }

    /// Sets a field of the record to be written; [`Value::Null`] clears it.
    pub fn set(&mut self, field: impl Into<String>, value: Value) {
        self.patch.insert(field.into(), value);
    }

    /// The fields of the record to be written, as the hooks so far leave
    /// them (cleared ones absent), in name order.
    pub fn fields(&self) -> impl Iterator<Item = (&String, &Value)> {
        let mut kept = self.after.fields.iter().peekable();
        let mut set = self.patch.iter().peekable();
        std::iter::from_fn(move || {
            loop {
                let next = match (kept.peek(), set.peek()) {
                    (Some((a, _)), Some((b, _))) if a < b => kept.next(),
                    (Some((a, _)), Some((b, _))) if a == b => {
                        kept.next();
                        set.next()
                    }
                    (Some(_), Some(_)) | (None, Some(_)) => set.next(),
                    (Some(_), None) => kept.next(),
                    (None, None) => return None,
                };
                match next {
                    Some((_, value)) if value.is_null() => continue,
                    next => return next,
                }
            }
        })
    }
}

/// The requests a hook runs for: one actor's, committed together.
#[derive(Debug, Clone, Copy)]
pub struct HookCall<'a> {
    pub actor: &'a Actor,
    /// The request id when the changes come from one request.
    pub request_id: Option<&'a str>,
}

/// Before-write hooks of one tenant, called by its writer inside the write
/// transaction, once per group of requests of one actor that the writer
/// commits together (see `writer::group_end`).
pub trait WriteHooks: Send + Sync {
    /// Whether any hook wants changes of this kind (a cheap check made
    /// before the changes are collected).
    fn covers(&self, object: &str, op: ChangeOp) -> bool;

    /// Runs the hooks on `changes`. A hook may set or clear fields of each
    /// record to be written ([`PendingChange::set`]). A failure names the change it is about when one
    /// change is to blame (a rejection), so the writer fails only that
    /// change's request.
    fn before_write(&self, call: HookCall<'_>, changes: &mut [PendingChange<'_>]) -> std::result::Result<(), HookFailure>;
}

/// Why before-write hooks refused a group of changes.
#[derive(Debug, Clone)]
pub struct HookFailure {
    pub error: Error,
    /// The index of the change at fault; `None` when the hook failed as a
    /// whole (trap, budget, malformed answer).
    pub change: Option<usize>,
}

impl From<Error> for HookFailure {
    fn from(error: Error) -> HookFailure {
        HookFailure { error, change: None }
    }
}

/// An installed plugin enabled for a tenant, with its manifest.
#[derive(Debug, Clone)]
pub struct ActivePlugin {
    pub enablement: Enablement,
    pub manifest: PluginManifest,
}

/// How an admin enables a plugin for a tenant.
#[derive(Debug, Clone, Default)]
pub struct EnableOptions {
    /// A version to enable; the newest installed when absent.
    pub version: Option<String>,
    /// Configuration JSON; `{}` when absent.
    pub config: Option<String>,
    /// The grants approved; everything the manifest requests when absent.
    pub grants: Option<Capabilities>,
    pub limits: Limits,
}

/// Input and output of an action.
pub type ActionFields = std::collections::BTreeMap<String, crate::value::Value>;

/// A request to a plugin's public route, without kernel credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRequest {
    pub method: String,
    /// Below the plugin's prefix, starting with `/`.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RouteDecl {
    /// Whether this route serves `method path`: an exact path, or a prefix
    /// when the declared path ends with `/*`.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        match self.path.strip_suffix("/*") {
            Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
            None => self.path == path,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginLogLine {
    pub at: i64,
    pub level: String,
    pub message: String,
}

/// Calls, fuel and failures of one plugin in one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginUsage {
    pub calls: u64,
    pub errors: u64,
    pub fuel: u64,
    pub consecutive_failures: u32,
    /// (time, message), oldest first.
    pub recent_failures: std::collections::VecDeque<(i64, String)>,
}

/// The wasm side of plugins, implemented by `crm-plugin-host` and wired in
/// by the server. Calls are blocking: async callers run them on a blocking
/// thread.
pub trait PluginRuntime: Send + Sync {
    /// Compiles and checks a component and returns its manifest.
    fn inspect(&self, wasm: &[u8]) -> Result<PluginManifest>;

    /// Asks a plugin with the `schema` grant what it adds to the tenant's
    /// schema beyond its manifest.
    fn tenant_schema(&self, tenant: &crate::ids::TenantId, plugin: &ActivePlugin) -> Result<SchemaExtension>;

    /// The before-write hooks of a tenant's active plugins (None if none of
    /// them has one).
    fn write_hooks(&self, tenant: &crate::ids::TenantId, active: &[ActivePlugin]) -> Option<std::sync::Arc<dyn WriteHooks>>;

    /// Told after a tenant's plugins changed (or its store was opened), so
    /// delivery and timer workers can start or stop.
    fn tenant_changed(&self, tenant: &crate::ids::TenantId, active: &[ActivePlugin]);

    /// Log lines kept for a tenant's plugin, oldest first.
    fn logs(&self, tenant: &crate::ids::TenantId, plugin: &str) -> Vec<PluginLogLine>;

    /// Calls, fuel and failures of a tenant's plugin since the process started.
    fn usage(&self, tenant: &crate::ids::TenantId, plugin: &str) -> PluginUsage;

    /// Delivers the events (or fires the timer) of a dead letter again and
    /// removes it when that succeeds.
    fn replay(&self, tenant: &crate::ids::TenantId, letter: &crate::plugin_state::DeadLetter) -> Result<()>;

    /// Serves a request to one of a plugin's public routes.
    fn http(&self, tenant: &crate::ids::TenantId, plugin: &str, request: RouteRequest) -> Result<RouteResponse>;

    /// Runs an action of an active plugin.
    fn invoke(
        &self,
        tenant: &crate::ids::TenantId,
        plugin: &str,
        action: &str,
        input: ActionFields,
        actor: &Actor,
        request_id: Option<&str>,
    ) -> Result<ActionFields>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::FieldType;

    #[test]
    fn a_pending_change_reads_as_its_record_with_the_hooks_patch_over_it() {
        let int = Value::Int;
        let after = Record {
            id: crate::ids::RecordId::generate(),
            version: 1,
            created_at: 0,
            updated_at: 0,
            deleted_at: None,
            fields: [("a", 1), ("c", 3), ("e", 5), ("g", 7)].map(|(name, value)| (name.to_string(), int(value))).into(),
        };
        let mut change = PendingChange::new("contact", ChangeOp::Created, None, &after);
        assert_eq!(change.fields().count(), 4);
        change.set("b", int(2));
        change.set("c", Value::Null);
        change.set("e", int(6));
        change.set("f", Value::Null);
        change.set("h", int(8));
        let seen: Vec<(&str, &Value)> = change.fields().map(|(name, value)| (name.as_str(), value)).collect();
        assert_eq!(seen, [("a", &int(1)), ("b", &int(2)), ("e", &int(6)), ("g", &int(7)), ("h", &int(8))]);
        assert_eq!(change.get("c"), &Value::Null);
        assert_eq!(change.get("e"), &int(6));
        assert_eq!(change.get("g"), &int(7));
        assert_eq!(after.get("e"), &int(5), "the record itself is left as it was");
    }

    fn manifest(id: &str) -> PluginManifest {
        PluginManifest {
            id: id.into(),
            version: "1.0.0".into(),
            api: "0.1.0".into(),
            description: String::new(),
            objects: Vec::new(),
            fields: Vec::new(),
            hooks: Vec::new(),
            actions: Vec::new(),
            routes: Vec::new(),
            capabilities: Capabilities::default(),
            limits: Limits::default(),
            config_schema: "{}".into(),
        }
    }

    fn access(object: &str, fields: &[&str]) -> ObjectAccess {
        ObjectAccess {
            object: object.into(),
            fields: fields.iter().map(|field| field.to_string()).collect(),
            read: true,
            create: false,
            update: true,
            delete: false,
        }
    }

    #[test]
    fn a_wildcard_covers_every_object_but_the_channels() {
        let grants = Capabilities { records: vec![access("*", &[])], ..Capabilities::default() };
        for object in ["contact", "deal", "ticket"] {
            assert!(grants.allows(object, Access::Read) && grants.allows_field(object, "anything", Access::Update), "{object}");
            assert!(!grants.allows(object, Access::Delete), "{object}");
        }
        for object in CHANNEL_OBJECTS {
            assert!(!grants.allows(object, Access::Read), "{object}");
        }
        let hook = HookDecl { kind: HookKind::BeforeWrite, object: "*".into(), ops: vec![ChangeOp::Created], failure: FailurePolicy::FailClosed };
        assert!(hook.matches(HookKind::BeforeWrite, "ticket", ChangeOp::Created));
        assert!(!hook.matches(HookKind::BeforeWrite, "outbound_message", ChangeOp::Created));
    }

    #[test]
    fn a_wildcard_grant_needs_a_wildcard_request() {
        let asked_one = Capabilities { records: vec![access("contact", &[])], ..Capabilities::default() };
        let asked_all = Capabilities { records: vec![access("*", &[])], ..Capabilities::default() };
        let grant_all = Capabilities { records: vec![access("*", &[])], ..Capabilities::default() };
        let grant_one = Capabilities { records: vec![access("ticket", &["subject"])], ..Capabilities::default() };
        assert!(grant_all.check_within(&asked_one).is_err());
        assert!(grant_all.check_within(&asked_all).is_ok());
        assert!(grant_one.check_within(&asked_all).is_ok(), "a narrower grant within '*'");

        let mut listing = manifest("wide");
        listing.capabilities.records = vec![access("*", &["name"])];
        assert!(listing.validate(&Metadata::standard()).unwrap_err().message.contains("cannot list fields"));
        listing.capabilities.records = vec![access("*", &[])];
        listing.validate(&Metadata::standard()).unwrap();
    }

    #[test]
    fn run_time_fields_on_an_absent_object_stay_dormant() {
        let standard = Metadata::standard();
        let mut helpdesk = manifest("helpdesk");
        helpdesk.objects.push(ObjectDef {
            name: "ticket".into(),
            plural: "tickets".into(),
            description: String::new(),
            fields: vec![FieldDef::new("subject", FieldType::Text)],
        });
        let fields = manifest("custom-fields");
        let extension = SchemaExtension {
            objects: Vec::new(),
            fields: vec![
                FieldExtension { object: "ticket".into(), field: FieldDef::new("region", FieldType::Text) },
                FieldExtension { object: "contact".into(), field: FieldDef::new("last_ticket_id", FieldType::Ref("ticket".into())) },
                FieldExtension { object: "contact".into(), field: FieldDef::new("shoe_size", FieldType::Int) },
            ],
        };
        let none = SchemaExtension::default();

        let with = tenant_metadata(&standard, &[(&helpdesk, &none), (&fields, &extension)]).unwrap();
        assert!(with.object("ticket").unwrap().field("region").is_some());
        assert!(with.object("contact").unwrap().field("last_ticket_id").is_some());

        let without = tenant_metadata(&standard, &[(&fields, &extension)]).unwrap();
        assert!(without.object("ticket").is_none());
        let contact = without.object("contact").unwrap();
        assert!(contact.field("last_ticket_id").is_none(), "a relation to an absent object is dormant");
        assert!(contact.field("shoe_size").is_some(), "other fields are live");

        // A field the manifest itself declares on a missing object is still an error.
        let mut broken = manifest("broken");
        broken.fields.push(FieldExtension { object: "ticket".into(), field: FieldDef::new("x", FieldType::Text) });
        assert!(tenant_metadata(&standard, &[(&broken, &none)]).is_err());
    }
}
