//! The host side of one plugin call: the store data and the host functions
//! the plugin imports. Every function counts against the call's host-call
//! budget and checks the grant; a denied call returns a `host-error` the
//! plugin can handle, an exhausted budget traps the instance.

use std::sync::Arc;

use crm_core::audit::Actor;
use crm_core::plugin::{Access, Capabilities};
use crm_core::plugin_state::Effect;
use crm_core::query::{Cursor, ListQuery, PageRequest};
use crm_core::{ErrorKind, Mutation, RecordId, TenantStore, WriteRequest};
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::crm::plugin::{clock, events, kv, log, outbound, records, schema, timers, types};
use crate::convert;
use crate::filter;

/// What the plugin is called for; it bounds what host calls may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the manifest at install: no host calls at all.
    Inspect,
    /// Inside a write transaction: reads only.
    BeforeWrite,
    /// After-commit, timers, actions, routes: reads and writes.
    Effects,
}

pub use crm_core::plugin::PluginLogLine as LogLine;

/// Who is calling and what it may do.
pub struct CallScope {
    pub store: Option<Arc<TenantStore>>,
    pub plugin: String,
    pub version: String,
    pub grants: Capabilities,
    pub phase: Phase,
    pub request_id: Option<String>,
    pub max_host_calls: u32,
    pub max_log_bytes: u32,
}

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) scope: CallScope,
    pub(crate) host_calls: u32,
    log_bytes: u32,
    pub(crate) logs: Vec<LogLine>,
    /// Set when a budget was exceeded, to explain the trap.
    pub(crate) exceeded: Option<String>,
    /// Set by `schema.changed`: the kernel asks for the tenant schema again.
    pub(crate) schema_changed: bool,
    /// Set by the first write of the call: its writes are deferred and the
    /// call ends with a durable commit.
    pub(crate) wrote: std::cell::Cell<bool>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

type HostResult<T> = wasmtime::Result<Result<T, types::HostError>>;

fn host_error(code: types::ErrorCode, message: impl Into<String>) -> types::HostError {
    types::HostError { code, message: message.into() }
}

fn from_core(error: crm_core::Error) -> types::HostError {
    let code = match error.kind {
        ErrorKind::Forbidden | ErrorKind::Unauthenticated => types::ErrorCode::Forbidden,
        ErrorKind::NotFound => types::ErrorCode::NotFound,
        ErrorKind::Validation => types::ErrorCode::Invalid,
        ErrorKind::Conflict => types::ErrorCode::Conflict,
        ErrorKind::RateLimited => types::ErrorCode::Limit,
        _ => types::ErrorCode::Unavailable,
    };
    host_error(code, error.message)
}

impl HostState {
    pub fn new(scope: CallScope, memory_bytes: u64) -> HostState {
        // No preopens, environment, arguments or stdio: the plugin reaches
        // the world only through the crm:plugin imports.
        let wasi = wasmtime_wasi::WasiCtx::builder().build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes as usize)
            .table_elements(1_000_000)
            .instances(64)
            .memories(16)
            .tables(64)
            .trap_on_grow_failure(true)
            .build();
        HostState { wasi, table: ResourceTable::new(), limits, scope, host_calls: 0, log_bytes: 0, logs: Vec::new(), exceeded: None, schema_changed: false, wrote: Default::default() }
    }

    /// Counts a host call; traps once the budget is spent.
    fn count(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.scope.max_host_calls {
            let reason = format!("made more than {} host calls", self.scope.max_host_calls);
            self.exceeded = Some(reason.clone());
            return Err(wasmtime::Error::msg(reason));
        }
        Ok(())
    }

    fn store(&self) -> Result<&Arc<TenantStore>, types::HostError> {
        self.scope.store.as_ref().ok_or_else(|| host_error(types::ErrorCode::Forbidden, "no host calls while the manifest is read"))
    }

    fn actor(&self) -> Actor {
        Actor(format!("plugin:{}@{}", self.scope.plugin, self.scope.version))
    }

    fn require(&self, object: &str, access: Access) -> Result<(), types::HostError> {
        if self.scope.phase == Phase::Inspect {
            return Err(host_error(types::ErrorCode::Forbidden, "no host calls while the manifest is read"));
        }
        if access != Access::Read && self.scope.phase == Phase::BeforeWrite {
            return Err(host_error(types::ErrorCode::Forbidden, "before-write hooks may read but not write"));
        }
        if !self.scope.grants.allows(object, access) {
            return Err(host_error(types::ErrorCode::Forbidden, format!("{} on {object} is not granted", access.as_str())));
        }
        Ok(())
    }

    fn require_effects(&self, what: &str, granted: bool) -> Result<(), types::HostError> {
        if self.scope.phase != Phase::Effects {
            return Err(host_error(types::ErrorCode::Forbidden, format!("{what} is not available in this hook")));
        }
        if !granted {
            return Err(host_error(types::ErrorCode::Forbidden, format!("{what} is not granted")));
        }
        Ok(())
    }

    fn readable(&self, object: &str) -> impl Fn(&str) -> bool + '_ {
        let grants = &self.scope.grants;
        let object = object.to_string();
        move |field: &str| grants.allows_field(&object, field, Access::Read)
    }

    fn check_writable(&self, object: &str, fields: &crm_core::Fields, access: Access) -> Result<(), types::HostError> {
        for name in fields.keys() {
            if !self.scope.grants.allows_field(object, name, access) {
                return Err(host_error(types::ErrorCode::Forbidden, format!("writing {object}.{name} is not granted")));
            }
        }
        Ok(())
    }

    fn write(&self, mutation: Mutation) -> Result<crm_core::Applied, types::HostError> {
        let store = self.store()?;
        let mut request = WriteRequest::new(self.actor(), vec![mutation]);
        request.request_id = self.scope.request_id.clone();
        request.deferred = true;
        self.wrote.set(true);
        let mut applied = store.write_blocking(request).map_err(from_core)?;
        applied.pop().ok_or_else(|| host_error(types::ErrorCode::Unavailable, "write returned nothing"))
    }

    fn effect(&self, effect: Effect) -> Result<(), types::HostError> {
        let store = self.store()?;
        let mut request = WriteRequest::effects(self.actor(), vec![effect]);
        request.deferred = true;
        self.wrote.set(true);
        store.write_blocking(request).map_err(from_core)?;
        Ok(())
    }

    fn parse_id(id: &str) -> Result<RecordId, types::HostError> {
        RecordId::parse(id).map_err(|_| host_error(types::ErrorCode::Invalid, format!("'{}' is not a record id", id.chars().take(40).collect::<String>())))
    }
}

impl types::Host for HostState {}

impl records::Host for HostState {
    fn get(&mut self, object: String, id: String) -> HostResult<Option<types::Record>> {
        self.count()?;
        if let Err(error) = self.require(&object, Access::Read) {
            return Ok(Err(error));
        }
        let id = match Self::parse_id(&id) {
            Ok(id) => id,
            Err(error) => return Ok(Err(error)),
        };
        let store = match self.store() {
            Ok(store) => store.clone(),
            Err(error) => return Ok(Err(error)),
        };
        Ok(match store.get(&object, id) {
            Ok(record) => Ok(record.map(|record| convert::record_to_wit(&object, &record, self.readable(&object)))),
            Err(error) => Err(from_core(error)),
        })
    }

    fn query(&mut self, object: String, filter_json: String, order_by: Vec<String>, limit: u32, after: Option<String>) -> HostResult<records::Page> {
        self.count()?;
        Ok(self.query_inner(&object, &filter_json, &order_by, limit, after.as_deref()))
    }

    fn count(&mut self, object: String, filter_json: String) -> HostResult<u64> {
        HostState::count(self)?;
        let result = (|| {
            self.require(&object, Access::Read)?;
            let store = self.store()?.clone();
            let def = store.object(&object).map_err(from_core)?;
            let filter = filter::parse(&def, &filter_json, &self.readable(&object)).map_err(from_core)?;
            let mut query = ListQuery::new(object.clone());
            query.filter = filter;
            store.count(&query).map_err(from_core)
        })();
        Ok(result)
    }

    fn create(&mut self, object: String, fields: Vec<types::Field>) -> HostResult<types::Record> {
        self.count()?;
        let result = (|| {
            self.require(&object, Access::Create)?;
            let fields = convert::fields_from_wit(fields).map_err(|error| host_error(types::ErrorCode::Invalid, error))?;
            self.check_writable(&object, &fields, Access::Create)?;
            let applied = self.write(Mutation::Create { object: object.clone(), fields })?;
            Ok(convert::record_to_wit(&object, &applied.record, self.readable(&object)))
        })();
        Ok(result)
    }

    fn update(&mut self, object: String, id: String, fields: Vec<types::Field>, expected_version: Option<u64>) -> HostResult<types::Record> {
        self.count()?;
        let result = (|| {
            self.require(&object, Access::Update)?;
            let id = Self::parse_id(&id)?;
            let fields = convert::fields_from_wit(fields).map_err(|error| host_error(types::ErrorCode::Invalid, error))?;
            self.check_writable(&object, &fields, Access::Update)?;
            let applied = self.write(Mutation::Update { object: object.clone(), id, fields, expected_version })?;
            Ok(convert::record_to_wit(&object, &applied.record, self.readable(&object)))
        })();
        Ok(result)
    }

    fn delete(&mut self, object: String, id: String) -> HostResult<()> {
        self.count()?;
        let result = (|| {
            self.require(&object, Access::Delete)?;
            let id = Self::parse_id(&id)?;
            self.write(Mutation::Delete { object, id, expected_version: None })?;
            Ok(())
        })();
        Ok(result)
    }
}

impl HostState {
    fn query_inner(&self, object: &str, filter_json: &str, order_by: &[String], limit: u32, after: Option<&str>) -> Result<records::Page, types::HostError> {
        self.require(object, Access::Read)?;
        let store = self.store()?.clone();
        let def = store.object(object).map_err(from_core)?;
        let readable = self.readable(object);
        let mut query = ListQuery::new(object.to_string());
        query.filter = filter::parse(&def, filter_json, &readable).map_err(from_core)?;
        query.sort = filter::order_by(&def, order_by, &readable).map_err(from_core)?;
        let sort = query.effective_sort();
        let after = after.map(|text| Cursor::decode(text, &sort)).transpose().map_err(from_core)?;
        let first = limit.clamp(1, 500) as usize;
        let page = store.list(&query, &PageRequest { first: Some(first), after, last: None, before: None }).map_err(from_core)?;
        let next = if page.has_next_page { page.records.last().map(|record| Cursor::of(record, &sort).encode()) } else { None };
        Ok(records::Page {
            records: page.records.iter().map(|record| convert::record_to_wit(object, record, &readable)).collect(),
            next,
        })
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> HostResult<Option<Vec<u8>>> {
        self.count()?;
        let result = (|| {
            if self.scope.phase == Phase::Inspect || !self.scope.grants.kv {
                return Err(host_error(types::ErrorCode::Forbidden, "kv is not granted"));
            }
            let store = self.store()?;
            store.reader().and_then(|reader| reader.kv_get(&self.scope.plugin, &key)).map_err(from_core)
        })();
        Ok(result)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> HostResult<()> {
        self.count()?;
        let result = (|| {
            self.require_effects("kv", self.scope.grants.kv)?;
            if key.len() > 1024 || value.len() > 1024 * 1024 {
                return Err(host_error(types::ErrorCode::Limit, "kv keys are at most 1 KiB and values at most 1 MiB"));
            }
            self.effect(Effect::KvSet { plugin: self.scope.plugin.clone(), key, value })
        })();
        Ok(result)
    }

    fn delete(&mut self, key: String) -> HostResult<()> {
        self.count()?;
        let result = (|| {
            self.require_effects("kv", self.scope.grants.kv)?;
            self.effect(Effect::KvDelete { plugin: self.scope.plugin.clone(), key })
        })();
        Ok(result)
    }

    fn keys(&mut self, prefix: String, limit: u32) -> HostResult<Vec<String>> {
        self.count()?;
        let result = (|| {
            if self.scope.phase == Phase::Inspect || !self.scope.grants.kv {
                return Err(host_error(types::ErrorCode::Forbidden, "kv is not granted"));
            }
            let store = self.store()?;
            store
                .reader()
                .and_then(|reader| reader.kv_keys(&self.scope.plugin, &prefix, limit.clamp(1, 1000) as usize))
                .map_err(from_core)
        })();
        Ok(result)
    }
}

impl timers::Host for HostState {
    fn schedule(&mut self, key: String, at: i64, payload: Vec<u8>) -> HostResult<()> {
        self.count()?;
        let result = (|| {
            self.require_effects("timers", self.scope.grants.timers)?;
            if key.len() > 512 || payload.len() > 64 * 1024 {
                return Err(host_error(types::ErrorCode::Limit, "timer keys are at most 512 bytes and payloads at most 64 KiB"));
            }
            self.effect(Effect::TimerSet { plugin: self.scope.plugin.clone(), key, at, payload })
        })();
        Ok(result)
    }

    fn cancel(&mut self, key: String) -> HostResult<()> {
        self.count()?;
        let result = (|| {
            self.require_effects("timers", self.scope.grants.timers)?;
            self.effect(Effect::TimerCancel { plugin: self.scope.plugin.clone(), key, only_at: None })
        })();
        Ok(result)
    }
}

impl events::Host for HostState {
    fn emit(&mut self, name: String, payload: String) -> HostResult<()> {
        self.count()?;
        let result = (|| {
            self.require_effects("events", self.scope.grants.events)?;
            let fields = crm_core::Fields::from([
                ("name".to_string(), crm_core::Value::Text(name)),
                ("payload".to_string(), crm_core::Value::Text(payload)),
                ("source".to_string(), crm_core::Value::Text(self.scope.plugin.clone())),
            ]);
            self.write(Mutation::Create { object: "custom_event".into(), fields })?;
            Ok(())
        })();
        Ok(result)
    }
}

impl outbound::Host for HostState {
    fn send(&mut self, message: types::Message) -> HostResult<String> {
        self.count()?;
        let result = (|| {
            self.require_effects(&format!("outbound {}", message.channel), self.scope.grants.outbound.contains(&message.channel))?;
            let mut fields = crm_core::Fields::from([
                ("channel".to_string(), crm_core::Value::Text(message.channel)),
                ("recipient".to_string(), crm_core::Value::Text(message.to)),
                ("subject".to_string(), crm_core::Value::Text(message.subject)),
                ("body".to_string(), crm_core::Value::Text(message.body)),
                ("status".to_string(), crm_core::Value::Text("queued".into())),
                ("source".to_string(), crm_core::Value::Text(self.scope.plugin.clone())),
            ]);
            if let Some(html) = message.html {
                fields.insert("html".into(), crm_core::Value::Text(html));
            }
            let applied = self.write(Mutation::Create { object: "outbound_message".into(), fields })?;
            Ok(applied.record.id.to_string())
        })();
        Ok(result)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: types::Level, message: String) -> wasmtime::Result<()> {
        self.count()?;
        let level = match level {
            types::Level::Trace => "trace",
            types::Level::Debug => "debug",
            types::Level::Info => "info",
            types::Level::Warn => "warn",
            types::Level::Error => "error",
        };
        let size = message.len() as u32;
        if self.log_bytes.saturating_add(size) > self.scope.max_log_bytes {
            // Logs past the budget are dropped, not fatal; one line says so.
            if self.log_bytes <= self.scope.max_log_bytes {
                self.log_bytes = self.scope.max_log_bytes + 1;
                self.logs.push(LogLine { at: crm_core::clock::now_ms(), level: "warn".into(), message: "log budget of this call exhausted; further lines dropped".into() });
            }
            return Ok(());
        }
        self.log_bytes += size;
        self.logs.push(LogLine { at: crm_core::clock::now_ms(), level: level.into(), message });
        Ok(())
    }
}

impl schema::Host for HostState {
    fn changed(&mut self) -> wasmtime::Result<()> {
        self.count()?;
        if self.scope.phase != Phase::Effects || !self.scope.grants.schema {
            let reason = "called schema.changed without the schema grant or outside an action, delivery, timer or route".to_string();
            self.exceeded = Some(reason.clone());
            return Err(wasmtime::Error::msg(reason));
        }
        self.schema_changed = true;
        Ok(())
    }
}

impl clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<i64> {
        self.count()?;
        Ok(crm_core::clock::now_ms())
    }
}
