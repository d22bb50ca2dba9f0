//! The manifest: what a plugin declares (objects, fields, hooks, actions,
//! routes) and asks for (capabilities, limits).
//!
//! Built with chained calls:
//!
//! ```
//! use crm_plugin_sdk::prelude::*;
//!
//! let manifest = Manifest::new("scoring", "0.1.0")
//!     .description("Scores leads")
//!     .extend("contact", FieldDecl::integer("score_points").indexed())
//!     .before_write("contact", [Op::Create, Op::Update])
//!     .access(ObjectAccess::new("contact").fields(["title", "score_points"]).read().create().update());
//! assert_eq!(manifest.api, "0.1.0");
//! manifest.validate().unwrap();
//! ```

use crate::error::{Error, Result};
use crate::record::Op;

/// The interface version this SDK is built against.
pub const API_VERSION: &str = "0.1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    Text,
    LongText,
    Email,
    Phone,
    Url,
    Integer,
    Float,
    Boolean,
    /// Epoch milliseconds.
    Datetime,
    /// `YYYY-MM-DD`.
    Date,
    Enumeration,
    Reference,
    ExternalId,
    Tags,
}

/// A field of an object, an action's input or its output.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    pub name: String,
    pub kind: FieldKind,
    pub required: bool,
    pub unique: bool,
    pub indexed: bool,
    pub description: String,
    /// Allowed keys of an `Enumeration`.
    pub options: Vec<String>,
    /// Target object of a `Reference`.
    pub target: Option<String>,
}

impl FieldDecl {
    pub fn new(name: impl Into<String>, kind: FieldKind) -> FieldDecl {
        FieldDecl {
            name: name.into(),
            kind,
            required: false,
            unique: false,
            indexed: false,
            description: String::new(),
            options: Vec::new(),
            target: None,
        }
    }

    pub fn text(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Text)
    }
    pub fn long_text(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::LongText)
    }
    pub fn email(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Email)
    }
    pub fn phone(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Phone)
    }
    pub fn url(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Url)
    }
    pub fn integer(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Integer)
    }
    pub fn float(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Float)
    }
    pub fn boolean(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Boolean)
    }
    pub fn datetime(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Datetime)
    }
    pub fn date(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Date)
    }
    pub fn external_id(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::ExternalId)
    }
    pub fn tags(name: impl Into<String>) -> FieldDecl {
        FieldDecl::new(name, FieldKind::Tags)
    }

    pub fn enumeration<S: Into<String>>(name: impl Into<String>, options: impl IntoIterator<Item = S>) -> FieldDecl {
        FieldDecl { options: options.into_iter().map(Into::into).collect(), ..FieldDecl::new(name, FieldKind::Enumeration) }
    }

    /// A reference to a record of `target`.
    pub fn reference(name: impl Into<String>, target: impl Into<String>) -> FieldDecl {
        FieldDecl { target: Some(target.into()), ..FieldDecl::new(name, FieldKind::Reference) }
    }

    pub fn required(mut self) -> FieldDecl {
        self.required = true;
        self
    }

    pub fn unique(mut self) -> FieldDecl {
        self.unique = true;
        self
    }

    pub fn indexed(mut self) -> FieldDecl {
        self.indexed = true;
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> FieldDecl {
        self.description = description.into();
        self
    }
}

/// An object the plugin declares (it owns its records).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDecl {
    pub name: String,
    pub description: String,
    pub fields: Vec<FieldDecl>,
}

impl ObjectDecl {
    pub fn new(name: impl Into<String>) -> ObjectDecl {
        ObjectDecl { name: name.into(), description: String::new(), fields: Vec::new() }
    }

    pub fn description(mut self, description: impl Into<String>) -> ObjectDecl {
        self.description = description.into();
        self
    }

    pub fn field(mut self, field: FieldDecl) -> ObjectDecl {
        self.fields.push(field);
        self
    }
}

/// A field the plugin adds to an object it does not own.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldExtension {
    pub object: String,
    pub field: FieldDecl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    BeforeWrite,
    AfterCommit,
}

/// What happens to the triggering write when the hook fails (trap, budget
/// exhausted, invalid output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The write is refused.
    Closed,
    /// The write goes ahead; the failure is logged.
    Open,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HookDecl {
    pub kind: HookKind,
    pub object: String,
    pub ops: Vec<Op>,
    pub failure: Failure,
}

impl HookDecl {
    /// A before-write hook; fails closed unless told otherwise.
    pub fn before_write(object: impl Into<String>, ops: impl IntoIterator<Item = Op>) -> HookDecl {
        HookDecl { kind: HookKind::BeforeWrite, object: object.into(), ops: ops.into_iter().collect(), failure: Failure::Closed }
    }

    /// An after-commit hook; fails open unless told otherwise.
    pub fn after_commit(object: impl Into<String>, ops: impl IntoIterator<Item = Op>) -> HookDecl {
        HookDecl { kind: HookKind::AfterCommit, object: object.into(), ops: ops.into_iter().collect(), failure: Failure::Open }
    }

    pub fn fail_open(mut self) -> HookDecl {
        self.failure = Failure::Open;
        self
    }

    pub fn fail_closed(mut self) -> HookDecl {
        self.failure = Failure::Closed;
        self
    }
}

/// An action, exposed as a typed GraphQL mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionDecl {
    pub name: String,
    pub description: String,
    pub input: Vec<FieldDecl>,
    pub output: Vec<FieldDecl>,
}

impl ActionDecl {
    pub fn new(name: impl Into<String>) -> ActionDecl {
        ActionDecl { name: name.into(), description: String::new(), input: Vec::new(), output: Vec::new() }
    }

    pub fn description(mut self, description: impl Into<String>) -> ActionDecl {
        self.description = description.into();
        self
    }

    pub fn input(mut self, field: FieldDecl) -> ActionDecl {
        self.input.push(field);
        self
    }

    pub fn output(mut self, field: FieldDecl) -> ActionDecl {
        self.output.push(field);
        self
    }
}

/// A public route under `/hooks/<tenant>/<plugin>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecl {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// Starts with `/`.
    pub path: String,
}

/// Access to one object. An empty `fields` list means every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectAccess {
    pub object: String,
    pub fields: Vec<String>,
    pub read: bool,
    pub create: bool,
    pub update: bool,
    pub delete: bool,
}

impl ObjectAccess {
    /// No access yet to any field of `object`; add with the methods below.
    pub fn new(object: impl Into<String>) -> ObjectAccess {
        ObjectAccess { object: object.into(), fields: Vec::new(), read: false, create: false, update: false, delete: false }
    }

    /// Limits the access to these fields.
    pub fn fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> ObjectAccess {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }

    pub fn read(mut self) -> ObjectAccess {
        self.read = true;
        self
    }

    pub fn create(mut self) -> ObjectAccess {
        self.create = true;
        self
    }

    pub fn update(mut self) -> ObjectAccess {
        self.update = true;
        self
    }

    pub fn delete(mut self) -> ObjectAccess {
        self.delete = true;
        self
    }

    /// Read, create, update and delete.
    pub fn all(self) -> ObjectAccess {
        self.read().create().update().delete()
    }

    pub fn covers_field(&self, field: &str) -> bool {
        self.fields.is_empty() || self.fields.iter().any(|granted| granted == field)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub records: Vec<ObjectAccess>,
    /// Outbound channels: `email`, `sms`, `webhook`.
    pub outbound: Vec<String>,
    pub timers: bool,
    pub kv: bool,
    pub events: bool,
    /// May add objects and fields per tenant at run time.
    pub schema: bool,
}

/// What a plugin adds to one tenant's schema beyond its manifest (see
/// [`Plugin::tenant_schema`](crate::Plugin::tenant_schema)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantSchema {
    pub objects: Vec<ObjectDecl>,
    pub fields: Vec<FieldExtension>,
}

impl TenantSchema {
    pub fn new() -> TenantSchema {
        TenantSchema::default()
    }
    pub fn object(mut self, object: ObjectDecl) -> TenantSchema {
        self.objects.push(object);
        self
    }
    pub fn extend(mut self, object: impl Into<String>, field: FieldDecl) -> TenantSchema {
        self.fields.push(FieldExtension { object: object.into(), field });
        self
    }
}

/// Per-call budgets; zero means "the host default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub fuel: u64,
    pub timeout_ms: u32,
    pub memory_bytes: u64,
    pub host_calls: u32,
    pub output_bytes: u32,
    pub log_bytes: u32,
}

impl Limits {
    pub fn fuel(mut self, fuel: u64) -> Limits {
        self.fuel = fuel;
        self
    }
    pub fn timeout_ms(mut self, timeout_ms: u32) -> Limits {
        self.timeout_ms = timeout_ms;
        self
    }
    pub fn memory_bytes(mut self, memory_bytes: u64) -> Limits {
        self.memory_bytes = memory_bytes;
        self
    }
    pub fn host_calls(mut self, host_calls: u32) -> Limits {
        self.host_calls = host_calls;
        self
    }
    pub fn output_bytes(mut self, output_bytes: u32) -> Limits {
        self.output_bytes = output_bytes;
        self
    }
    pub fn log_bytes(mut self, log_bytes: u32) -> Limits {
        self.log_bytes = log_bytes;
        self
    }
}

/// What a plugin declares and asks for. `api` is filled with the interface
/// version of this SDK.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Lowercase `[a-z][a-z0-9-]*`.
    pub id: String,
    /// Semantic version of the plugin.
    pub version: String,
    /// The interface version the plugin is built against.
    pub api: String,
    pub description: String,
    pub objects: Vec<ObjectDecl>,
    pub fields: Vec<FieldExtension>,
    pub hooks: Vec<HookDecl>,
    pub actions: Vec<ActionDecl>,
    pub routes: Vec<RouteDecl>,
    pub capabilities: Capabilities,
    pub limits: Limits,
    /// JSON Schema of the per-tenant configuration (`{}` accepts any).
    pub config_schema: String,
}

impl Manifest {
    pub fn new(id: impl Into<String>, version: impl Into<String>) -> Manifest {
        Manifest {
            id: id.into(),
            version: version.into(),
            api: API_VERSION.into(),
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

    pub fn description(mut self, description: impl Into<String>) -> Manifest {
        self.description = description.into();
        self
    }

    /// Declares an object the plugin owns.
    pub fn object(mut self, object: ObjectDecl) -> Manifest {
        self.objects.push(object);
        self
    }

    /// Adds a field to an object the plugin does not own.
    pub fn extend(mut self, object: impl Into<String>, field: FieldDecl) -> Manifest {
        self.fields.push(FieldExtension { object: object.into(), field });
        self
    }

    pub fn hook(mut self, hook: HookDecl) -> Manifest {
        self.hooks.push(hook);
        self
    }

    /// A fail-closed before-write hook on `object` for `ops`.
    pub fn before_write(self, object: impl Into<String>, ops: impl IntoIterator<Item = Op>) -> Manifest {
        self.hook(HookDecl::before_write(object, ops))
    }

    /// A fail-open after-commit hook on `object` for `ops`.
    pub fn after_commit(self, object: impl Into<String>, ops: impl IntoIterator<Item = Op>) -> Manifest {
        self.hook(HookDecl::after_commit(object, ops))
    }

    pub fn action(mut self, action: ActionDecl) -> Manifest {
        self.actions.push(action);
        self
    }

    /// A public route, e.g. `.route("POST", "/lead")`.
    pub fn route(mut self, method: impl Into<String>, path: impl Into<String>) -> Manifest {
        self.routes.push(RouteDecl { method: method.into(), path: path.into() });
        self
    }

    /// Asks for access to records of one object.
    pub fn access(mut self, access: ObjectAccess) -> Manifest {
        self.capabilities.records.push(access);
        self
    }

    /// Asks to send on an outbound channel (`email`, `sms`, `webhook`).
    pub fn outbound(mut self, channel: impl Into<String>) -> Manifest {
        self.capabilities.outbound.push(channel.into());
        self
    }

    /// Asks for durable timers.
    pub fn timers(mut self) -> Manifest {
        self.capabilities.timers = true;
        self
    }

    /// Asks for the private key-value store.
    pub fn kv(mut self) -> Manifest {
        self.capabilities.kv = true;
        self
    }

    /// Asks to emit custom events.
    pub fn events(mut self) -> Manifest {
        self.capabilities.events = true;
        self
    }

    /// Asks to add objects and fields per tenant at run time
    /// ([`Plugin::tenant_schema`](crate::Plugin::tenant_schema)).
    pub fn schema(mut self) -> Manifest {
        self.capabilities.schema = true;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Manifest {
        self.limits = limits;
        self
    }

    /// The JSON Schema of the per-tenant configuration.
    pub fn config_schema(mut self, schema: serde_json::Value) -> Manifest {
        self.config_schema = schema.to_string();
        self
    }

    /// The access granted to `object`, merged over all entries (a `*`
    /// entry covers every object but `outbound_message` and `custom_event`).
    pub fn access_to<'a>(&'a self, object: &'a str) -> impl Iterator<Item = &'a ObjectAccess> + 'a {
        self.capabilities.records.iter().filter(move |access| {
            access.object == object || (access.object == "*" && !["*", "outbound_message", "custom_event"].contains(&object))
        })
    }

    /// The checks the host makes on a manifest alone (names, versions,
    /// routes, channels, schema being JSON), so a unit test catches what
    /// installation would refuse. The host additionally checks it against
    /// the tenant's objects and its supported JSON Schema keywords.
    pub fn validate(&self) -> Result<()> {
        check_name("plugin id", &self.id, true)?;
        check_version("version", &self.version)?;
        if self.api != API_VERSION {
            return Err(Error::msg(format!("api '{}' is not {API_VERSION}", self.api)));
        }
        let mut declared = std::collections::BTreeSet::new();
        for object in &self.objects {
            check_name("object name", &object.name, false)?;
            if !declared.insert(object.name.as_str()) {
                return Err(Error::msg(format!("object '{}' is declared twice", object.name)));
            }
            let mut names = std::collections::BTreeSet::new();
            for field in &object.fields {
                check_field(&object.name, field)?;
                if !names.insert(field.name.as_str()) {
                    return Err(Error::msg(format!("{}.{} is declared twice", object.name, field.name)));
                }
            }
        }
        for extension in &self.fields {
            check_name("object name", &extension.object, false)?;
            check_field(&extension.object, &extension.field)?;
        }
        let mut actions = std::collections::BTreeSet::new();
        for action in &self.actions {
            check_name("action name", &action.name, true)?;
            if !actions.insert(action.name.as_str()) {
                return Err(Error::msg(format!("action '{}' is declared twice", action.name)));
            }
            for field in action.input.iter().chain(&action.output) {
                check_field(&action.name, field)?;
            }
        }
        for route in &self.routes {
            if !["GET", "POST", "PUT", "DELETE"].contains(&route.method.as_str()) || !route.path.starts_with('/') {
                return Err(Error::msg(format!(
                    "route '{} {}' needs GET/POST/PUT/DELETE and a path starting with '/'",
                    route.method, route.path
                )));
            }
        }
        for channel in &self.capabilities.outbound {
            if !["email", "sms", "webhook"].contains(&channel.as_str()) {
                return Err(Error::msg(format!("unknown outbound channel '{channel}'")));
            }
        }
        serde_json::from_str::<serde_json::Value>(&self.config_schema)
            .map_err(|error| Error::msg(format!("config schema is not JSON: {error}")))?;
        Ok(())
    }
}

const SYSTEM_FIELDS: [&str; 5] = ["id", "version", "created_at", "updated_at", "deleted_at"];

fn check_name(what: &str, name: &str, dash: bool) -> Result<()> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (dash && c == '-'));
    if valid {
        Ok(())
    } else {
        let allowed = if dash { "a-z, 0-9, '_' and '-'" } else { "a-z, 0-9 and '_'" };
        Err(Error::msg(format!("{what} '{name}' must start with a-z and use only {allowed} (at most 63 characters)")))
    }
}

fn check_version(what: &str, version: &str) -> Result<()> {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())) {
        Ok(())
    } else {
        Err(Error::msg(format!("{what} '{version}' is not a semantic version (x.y.z)")))
    }
}

fn check_field(owner: &str, field: &FieldDecl) -> Result<()> {
    check_name("field name", &field.name, false)?;
    if SYSTEM_FIELDS.contains(&field.name.as_str()) {
        return Err(Error::msg(format!("{owner}.{} is a system field", field.name)));
    }
    match field.kind {
        FieldKind::Enumeration if field.options.is_empty() => {
            Err(Error::msg(format!("{owner}.{} is an enumeration without options", field.name)))
        }
        FieldKind::Enumeration => field.options.iter().try_for_each(|option| check_name("enumeration option", option, false)),
        FieldKind::Reference if field.target.is_none() => {
            Err(Error::msg(format!("{owner}.{} is a reference without a target", field.name)))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(manifest: Manifest) -> String {
        manifest.validate().unwrap_err().to_string()
    }

    #[test]
    fn validate_refuses_what_installation_would() {
        assert!(error(Manifest::new("Bad Manifest!", "0.1.0")).contains("plugin id"));
        assert!(error(Manifest::new("ok", "1.0")).contains("semantic version"));
        let mut wrong_api = Manifest::new("ok", "1.0.0");
        wrong_api.api = "9.9.9".into();
        assert!(error(wrong_api).contains("api"));
        assert!(error(Manifest::new("ok", "1.0.0").extend("contact", FieldDecl::text("id"))).contains("system field"));
        assert!(
            error(
                Manifest::new("ok", "1.0.0")
                    .object(ObjectDecl::new("x").field(FieldDecl::enumeration("e", Vec::<String>::new())))
            )
            .contains("without options")
        );
        assert!(error(Manifest::new("ok", "1.0.0").route("get", "/x")).contains("route"));
        assert!(error(Manifest::new("ok", "1.0.0").outbound("pigeon")).contains("pigeon"));
        let mut schema = Manifest::new("ok", "1.0.0");
        schema.config_schema = "{".into();
        assert!(error(schema).contains("schema"));
    }

    #[test]
    fn builder_fills_every_part() {
        let manifest = Manifest::new("follow-up", "0.2.0-beta.1")
            .description("d")
            .object(ObjectDecl::new("rule").field(FieldDecl::text("name").required()))
            .extend("contact", FieldDecl::integer("score").indexed())
            .before_write("contact", [Op::Create])
            .after_commit("contact", [Op::Create])
            .hook(HookDecl::before_write("deal", Op::ALL).fail_open())
            .action(
                ActionDecl::new("schedule").input(FieldDecl::reference("contact_id", "contact")).output(FieldDecl::text("key")),
            )
            .route("POST", "/lead")
            .access(ObjectAccess::new("contact").fields(["email"]).read())
            .outbound("email")
            .timers()
            .kv()
            .events()
            .limits(Limits::default().timeout_ms(500))
            .config_schema(serde_json::json!({"type": "object"}));
        manifest.validate().unwrap();
        assert_eq!(manifest.hooks[0].failure, Failure::Closed);
        assert_eq!(manifest.hooks[1].failure, Failure::Open);
        assert_eq!(manifest.hooks[2].failure, Failure::Open);
        assert_eq!(manifest.config_schema, r#"{"type":"object"}"#);
        assert!(manifest.capabilities.timers && manifest.capabilities.kv && manifest.capabilities.events);
        assert_eq!(manifest.access_to("contact").count(), 1);
    }
}
