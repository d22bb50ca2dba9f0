//! The wasmtime host of CRM plugins.
//!
//! A plugin is a WebAssembly component of the `crm:plugin@0.1.0` world
//! (`wit/`). This crate compiles components once per content hash (cached
//! on disk, signed), instantiates a fresh instance per call from an
//! `InstancePre` with the pooling allocator, enforces fuel, wall-clock,
//! memory, output, log and host-call budgets, checks every host call
//! against the tenant's grants, and implements the core's `PluginRuntime`:
//! before-write hooks inside the writer's transaction, actions, and a
//! per-tenant worker for after-commit delivery and timers.
//!
//! ```no_run
//! # async fn demo() -> crm_core::Result<()> {
//! use std::sync::Arc;
//! let kernel = Arc::new(crm_core::Kernel::open(std::path::Path::new("./crm-data"), Default::default())?);
//! let host = crm_plugin_host::PluginHost::new(&kernel, Some(std::path::Path::new("./crm-data/plugin-cache")))?;
//! kernel.set_runtime(host.clone());
//! let (plugin, _new) = kernel.install_plugin(&std::fs::read("validator.wasm").unwrap())?;
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod convert;
pub mod engine;
pub mod exports;
pub mod filter;
pub mod host;
pub mod runtime;

pub use engine::PluginEngine;
pub use host::LogLine;
pub use runtime::{PluginHost, Usage};
