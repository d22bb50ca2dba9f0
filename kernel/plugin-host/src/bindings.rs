//! Generated bindings of the plugin interface, one module per supported
//! version (see wit/POLICY.md). Only 0.1.0 exists today.

pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../../wit/crm-plugin@0.1.0",
        world: "crm-plugin",
        imports: { default: trappable },
    });
}

pub use v0_1_0::*;
