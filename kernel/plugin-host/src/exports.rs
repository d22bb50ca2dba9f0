//! The plugin's exports on a fresh instance.
//!
//! The generated bindings look up and type-check every export of the
//! `crm:plugin/plugin` interface each time an instance is made, though a
//! call uses one of them. Here the exports' places in the component are
//! found once, when it is prepared, and each export's Rust signature is
//! checked against the component on its first call; later instances of the
//! same component take the export without checking again (a component's
//! types do not change between its instances).

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower, TypedFunc};

use crate::bindings::crm::plugin::types::{
    Change, Context, Decision, Event, Field, HttpRequest, HttpResponse, PluginManifest, SchemaExtension,
};
use crate::host::HostState;

/// The interface a plugin exports.
const INTERFACE: &str = "crm:plugin/plugin@0.1.0";

/// The exports of [`INTERFACE`]; the position of each in [`NAMES`] and
/// in `PluginPre::exports`.
#[derive(Clone, Copy)]
enum Export {
    Manifest,
    TenantSchema,
    BeforeWrite,
    AfterCommit,
    OnTimer,
    Invoke,
    Http,
}

const NAMES: [&str; 7] = ["manifest", "tenant-schema", "before-write", "after-commit", "on-timer", "invoke", "http"];

/// A compiled plugin, linked and ready for fresh instances.
pub struct PluginPre {
    pre: InstancePre<HostState>,
    exports: [ComponentExportIndex; 7],
    /// Whether each export's signature has been checked on an instance.
    checked: [AtomicBool; 7],
}

impl PluginPre {
    /// Finds the exports of `pre`'s component; an error names a missing one.
    pub fn new(pre: InstancePre<HostState>) -> Result<PluginPre, String> {
        let component = pre.component();
        let interface =
            component.get_export_index(None, INTERFACE).ok_or_else(|| format!("no exported instance named `{INTERFACE}`"))?;
        let mut exports = Vec::with_capacity(NAMES.len());
        for name in NAMES {
            let index = component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| format!("instance export `{INTERFACE}` does not have export `{name}`"))?;
            exports.push(index);
        }
        let exports = exports.try_into().map_err(|_| "the export table is incomplete".to_string())?;
        Ok(PluginPre { pre, exports, checked: Default::default() })
    }

    /// A fresh instance in `store`.
    pub fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Plugin<'_>> {
        let instance = self.pre.instantiate(store)?;
        Ok(Plugin { instance, pre: self })
    }
}

/// One fresh instance of a plugin, and its exports.
pub struct Plugin<'a> {
    instance: Instance,
    pre: &'a PluginPre,
}

impl Plugin<'_> {
    /// The export `export` with the signature `Params -> Results`. The
    /// first call of each export checks the signature against the
    /// component (an error if they differ); later ones rely on that check.
    fn func<Params, Results>(&self, store: &mut Store<HostState>, export: Export) -> wasmtime::Result<TypedFunc<Params, Results>>
    where
        Params: ComponentNamedList + Lower,
        Results: ComponentNamedList + Lift,
    {
        let slot = export as usize;
        let index = &self.pre.exports[slot];
        if self.pre.checked[slot].load(Ordering::Acquire) {
            let func = self.instance.get_func(&mut *store, index).ok_or_else(|| wasmtime::format_err!("the plugin lost an export"))?;
            // SAFETY: an instance of the same component type-checked this
            // export against these exact types (`checked` is set only
            // after `get_typed_func` succeeded), and each export is taken
            // through one getter below, with one signature.
            return Ok(unsafe { TypedFunc::new_unchecked(func) });
        }
        let func = self.instance.get_typed_func::<Params, Results>(&mut *store, index)?;
        self.pre.checked[slot].store(true, Ordering::Release);
        Ok(func)
    }

    /// Type-checks every export against the component: run at install, so
    /// a component built against another interface is refused there and not
    /// at its first hook, action or route.
    pub fn check_exports(&self, store: &mut Store<HostState>) -> wasmtime::Result<()> {
        self.manifest(store)?;
        self.tenant_schema(store)?;
        self.before_write(store)?;
        self.after_commit(store)?;
        self.on_timer(store)?;
        self.invoke(store)?;
        self.http(store)?;
        Ok(())
    }

    // Each export's signature is written once, in its getter below; the
    // calls and `check_exports` go through these getters, so the types an
    // export was checked with are the types it is called with.

    fn manifest(&self, store: &mut Store<HostState>) -> wasmtime::Result<TypedFunc<(), (PluginManifest,)>> {
        self.func(store, Export::Manifest)
    }

    fn tenant_schema<'p>(&self, store: &mut Store<HostState>) -> wasmtime::Result<TypedFunc<(&'p Context,), (Result<SchemaExtension, String>,)>> {
        self.func(store, Export::TenantSchema)
    }

    #[allow(clippy::type_complexity)]
    fn before_write<'p>(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<TypedFunc<(&'p Context, &'p [Change]), (Result<Vec<Decision>, String>,)>> {
        self.func(store, Export::BeforeWrite)
    }

    fn after_commit<'p>(&self, store: &mut Store<HostState>) -> wasmtime::Result<TypedFunc<(&'p Context, &'p [Event]), (Result<(), String>,)>> {
        self.func(store, Export::AfterCommit)
    }

    #[allow(clippy::type_complexity)]
    fn on_timer<'p>(&self, store: &mut Store<HostState>) -> wasmtime::Result<TypedFunc<(&'p Context, &'p str, &'p [u8]), (Result<(), String>,)>> {
        self.func(store, Export::OnTimer)
    }

    #[allow(clippy::type_complexity)]
    fn invoke<'p>(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<TypedFunc<(&'p Context, &'p str, &'p [Field]), (Result<Vec<Field>, String>,)>> {
        self.func(store, Export::Invoke)
    }

    fn http<'p>(&self, store: &mut Store<HostState>) -> wasmtime::Result<TypedFunc<(&'p Context, &'p HttpRequest), (HttpResponse,)>> {
        self.func(store, Export::Http)
    }

    pub fn call_manifest(&self, store: &mut Store<HostState>) -> wasmtime::Result<PluginManifest> {
        Ok(self.manifest(store)?.call(store, ())?.0)
    }

    pub fn call_tenant_schema(&self, store: &mut Store<HostState>, context: &Context) -> wasmtime::Result<Result<SchemaExtension, String>> {
        Ok(self.tenant_schema(store)?.call(store, (context,))?.0)
    }

    pub fn call_before_write(
        &self,
        store: &mut Store<HostState>,
        context: &Context,
        changes: &[Change],
    ) -> wasmtime::Result<Result<Vec<Decision>, String>> {
        Ok(self.before_write(store)?.call(store, (context, changes))?.0)
    }

    pub fn call_after_commit(&self, store: &mut Store<HostState>, context: &Context, events: &[Event]) -> wasmtime::Result<Result<(), String>> {
        Ok(self.after_commit(store)?.call(store, (context, events))?.0)
    }

    pub fn call_on_timer(&self, store: &mut Store<HostState>, context: &Context, key: &str, payload: &[u8]) -> wasmtime::Result<Result<(), String>> {
        Ok(self.on_timer(store)?.call(store, (context, key, payload))?.0)
    }

    pub fn call_invoke(
        &self,
        store: &mut Store<HostState>,
        context: &Context,
        action: &str,
        input: &[Field],
    ) -> wasmtime::Result<Result<Vec<Field>, String>> {
        Ok(self.invoke(store)?.call(store, (context, action, input))?.0)
    }

    pub fn call_http(&self, store: &mut Store<HostState>, context: &Context, request: &HttpRequest) -> wasmtime::Result<HttpResponse> {
        Ok(self.http(store)?.call(store, (context, request))?.0)
    }
}
