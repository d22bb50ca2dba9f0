//! The glue `register_plugin!` expands to: WIT exports that convert their
//! arguments, call the `Plugin` and convert the results back. Not a public
//! API; only the macro calls it.

use std::sync::Once;

pub use crate::__bindings::exports::crm::plugin::plugin::Guest;

use crate::__bindings::crm::plugin::types as wit;
use crate::ctx::Ctx;
use crate::http::HttpRequest;
use crate::plugin::Plugin;
use crate::record::{Change, Event};
use crate::value::Fields;

/// Sends panic messages to the host log before the instance aborts, since
/// the guest's stderr goes nowhere.
fn enter() {
    static PANIC_HOOK: Once = Once::new();
    PANIC_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::log::write(crate::log::Level::Error, &format!("plugin panicked: {info}"));
        }));
    });
}

pub fn manifest<P: Plugin>(plugin: &P) -> wit::PluginManifest {
    enter();
    plugin.manifest().into()
}

pub fn tenant_schema<P: Plugin>(plugin: &P, ctx: wit::Context) -> Result<wit::SchemaExtension, String> {
    enter();
    plugin.tenant_schema(&Ctx::from(ctx)).map(Into::into).map_err(|error| error.to_string())
}

pub fn before_write<P: Plugin>(plugin: &P, ctx: wit::Context, changes: Vec<wit::Change>) -> Result<Vec<wit::Decision>, String> {
    enter();
    let changes: Vec<Change> = changes.into_iter().map(Change::from).collect();
    match plugin.before_write(&Ctx::from(ctx), &changes) {
        Ok(decisions) => Ok(decisions.into_iter().map(Into::into).collect()),
        Err(error) => Err(error.to_string()),
    }
}

pub fn after_commit<P: Plugin>(plugin: &P, ctx: wit::Context, events: Vec<wit::Event>) -> Result<(), String> {
    enter();
    let events: Vec<Event> = events.into_iter().map(Event::from).collect();
    plugin.after_commit(&Ctx::from(ctx), &events).map_err(|error| error.to_string())
}

pub fn on_timer<P: Plugin>(plugin: &P, ctx: wit::Context, key: String, payload: Vec<u8>) -> Result<(), String> {
    enter();
    plugin.on_timer(&Ctx::from(ctx), &key, &payload).map_err(|error| error.to_string())
}

pub fn invoke<P: Plugin>(
    plugin: &P,
    ctx: wit::Context,
    action: String,
    input: Vec<wit::Field>,
) -> Result<Vec<wit::Field>, String> {
    enter();
    match plugin.invoke(&Ctx::from(ctx), &action, &Fields::from(input)) {
        Ok(output) => Ok(output.into()),
        Err(error) => Err(error.to_string()),
    }
}

pub fn http<P: Plugin>(plugin: &P, ctx: wit::Context, request: wit::HttpRequest) -> wit::HttpResponse {
    enter();
    plugin.http(&Ctx::from(ctx), &HttpRequest::from(request)).into()
}

/// Exports `$plugin` (a type implementing [`Plugin`](crate::Plugin) and
/// `Default`) as the component's `crm:plugin/plugin` interface. Use it once,
/// in the plugin crate's `lib.rs`.
///
/// On `wasm32` one value of the type is created per instance (lazily, at
/// the first call) and serves every call of that instance. On native
/// targets nothing is exported; the macro only checks the type, and tests
/// drive the plugin through [`testing::TestHost`](crate::testing::TestHost).
#[macro_export]
macro_rules! register_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__bindings::crm::plugin::types as __wit;

            struct __CrmPluginExport;

            ::std::thread_local! {
                static __PLUGIN: $plugin = <$plugin as ::core::default::Default>::default();
            }

            impl $crate::__private::Guest for __CrmPluginExport {
                fn manifest() -> __wit::PluginManifest {
                    __PLUGIN.with(|plugin| $crate::__private::manifest(plugin))
                }
                fn tenant_schema(ctx: __wit::Context) -> ::core::result::Result<__wit::SchemaExtension, ::std::string::String> {
                    __PLUGIN.with(|plugin| $crate::__private::tenant_schema(plugin, ctx))
                }
                fn before_write(
                    ctx: __wit::Context,
                    changes: ::std::vec::Vec<__wit::Change>,
                ) -> ::core::result::Result<::std::vec::Vec<__wit::Decision>, ::std::string::String> {
                    __PLUGIN.with(|plugin| $crate::__private::before_write(plugin, ctx, changes))
                }
                fn after_commit(
                    ctx: __wit::Context,
                    events: ::std::vec::Vec<__wit::Event>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __PLUGIN.with(|plugin| $crate::__private::after_commit(plugin, ctx, events))
                }
                fn on_timer(
                    ctx: __wit::Context,
                    key: ::std::string::String,
                    payload: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __PLUGIN.with(|plugin| $crate::__private::on_timer(plugin, ctx, key, payload))
                }
                fn invoke(
                    ctx: __wit::Context,
                    action: ::std::string::String,
                    input: ::std::vec::Vec<__wit::Field>,
                ) -> ::core::result::Result<::std::vec::Vec<__wit::Field>, ::std::string::String> {
                    __PLUGIN.with(|plugin| $crate::__private::invoke(plugin, ctx, action, input))
                }
                fn http(ctx: __wit::Context, request: __wit::HttpRequest) -> __wit::HttpResponse {
                    __PLUGIN.with(|plugin| $crate::__private::http(plugin, ctx, request))
                }
            }

    $crate::__bindings::__export_crm_plugin!(__CrmPluginExport with_types_in $crate::__bindings);
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            fn __is_a_plugin<P: $crate::Plugin + ::core::default::Default>() {}
            let _ = __is_a_plugin::<$plugin>;
        };
    };
}
