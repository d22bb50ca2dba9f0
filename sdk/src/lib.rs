//! The SDK for CRM plugins written in Rust.
//!
//! A plugin is one WebAssembly component that the CRM kernel loads, checks
//! and runs in a sandbox: it can see and change only what an admin granted
//! it, within per-call budgets. This crate hides the WIT interface
//! (`crm:plugin@0.1.0`) behind a small typed API: implement [`Plugin`],
//! register the type with [`register_plugin!`], and use the host through
//! plain functions ([`records`], [`kv`], [`timers`], [`events`],
//! [`outbound`], [`clock`] and the log macros). On native targets the same
//! functions run against an in-memory [`testing::TestHost`], so a plugin is
//! unit-tested with plain `cargo test`.
//!
//! # Tutorial
//!
//! ## 1. Create the crate
//!
//! `crm plugin new scoring` scaffolds a crate (a workspace of its own) with
//! `crate-type = ["cdylib", "rlib"]`, a `plugin` build profile, an example
//! hook and a unit test. By hand, `Cargo.toml` needs:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! crm-plugin-sdk = { path = "…/sdk" }
//!
//! [profile.plugin]
//! inherits = "release"
//! opt-level = "s"
//! lto = true
//! strip = true
//! panic = "abort"
//! codegen-units = 1
//! ```
//!
//! ## 2. Write the plugin
//!
//! The manifest declares what the plugin adds (objects, fields, hooks,
//! actions, routes) and asks for (capabilities); the hooks you do not
//! write keep their harmless defaults.
//!
//! ```
//! use crm_plugin_sdk::prelude::*;
//!
//! #[derive(Default)]
//! struct Scoring;
//!
//! impl Plugin for Scoring {
//!     fn manifest(&self) -> Manifest {
//!         Manifest::new("scoring", "0.1.0")
//!             .description("Scores contacts as they are written")
//!             .before_write("contact", [Op::Create, Op::Update])
//!             .access(ObjectAccess::new("contact").fields(["title", "lead_score"]).read().create().update())
//!     }
//!
//!     fn before_write(&self, _ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
//!         changes
//!             .iter()
//!             .map(|change| {
//!                 let mut score = 0;
//!                 if change.after().text("title").is_some_and(|title| title.contains("VP")) {
//!                     score += 30;
//!                 }
//!                 Ok(Decision::patch([("lead_score", Value::Int(score))]))
//!             })
//!             .collect()
//!     }
//! }
//!
//! register_plugin!(Scoring);
//! ```
//!
//! ## 3. Unit-test it
//!
//! [`testing::TestHost`] runs hooks the way the kernel does — with the
//! plugin's grants enforced — against in-memory records, kv, timers, an
//! outbound mailbox, captured logs and a settable clock and configuration:
//!
//! ```
//! # use crm_plugin_sdk::prelude::*;
//! # #[derive(Default)]
//! # struct Scoring;
//! # impl Plugin for Scoring {
//! #     fn manifest(&self) -> Manifest {
//! #         Manifest::new("scoring", "0.1.0")
//! #             .before_write("contact", [Op::Create, Op::Update])
//! #             .access(ObjectAccess::new("contact").fields(["title", "lead_score"]).read().create().update())
//! #     }
//! #     fn before_write(&self, _ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
//! #         Ok(changes.iter().map(|_| Decision::patch([("lead_score", Value::Int(30))])).collect())
//! #     }
//! # }
//! use crm_plugin_sdk::testing::TestHost;
//!
//! let host = TestHost::new();
//! Scoring.manifest().validate().unwrap();
//! let decisions = host.before_write(&Scoring, vec![Change::create("contact", [("title", "VP Sales")])]).unwrap();
//! assert_eq!(decisions, [Decision::patch([("lead_score", Value::Int(30))])]);
//!
//! // Or write through the hook and look at what got stored:
//! let stored = host.write(&Scoring, Change::create("contact", [("title", "VP Sales")])).unwrap();
//! assert_eq!(stored.int("lead_score"), Some(30));
//! ```
//!
//! ## 4. Build, install, enable
//!
//! ```sh
//! cargo build --target wasm32-wasip2 --profile plugin
//! crm plugin install target/wasm32-wasip2/plugin/scoring.wasm
//! crm plugin enable scoring --tenant default
//! ```
//!
//! The `.wasm` file is named after the crate's library (dashes become
//! underscores). `rustup target add wasm32-wasip2` once if the target is
//! missing; no other tool is needed, rustc links a component directly.
//! Installing checks the manifest; enabling asks the admin to grant the
//! capabilities it lists.
//!
//! # How the kernel calls a plugin
//!
//! - `before_write` runs inside the write transaction, once per batch, and
//!   must return exactly one [`Decision`] per [`Change`], in order. Reads see
//!   the state committed before the batch. A write of 256 changes or more
//!   for one plugin is given to it as two batches, called at the same time
//!   on two fresh instances, so a decision should depend on its own change
//!   (and what the plugin reads), not on the other changes of the batch.
//! - `after_commit` gets committed [`Event`]s at least once, in order per
//!   tenant; an error makes the kernel deliver them again.
//! - `on_timer` runs timers scheduled with [`timers::schedule`].
//! - `invoke` runs a declared action with typed input and output fields.
//! - `http` answers the declared routes under
//!   `/hooks/<tenant>/<plugin>/<path>`.
//!
//! A panic, an endless loop or exhausting a budget ends the call (the
//! instance is discarded); the hook's failure policy decides what happens
//! to the write. A panic's message goes to the plugin's log first.
//!
//! Typed configuration: derive `Deserialize` with
//! `#[serde(crate = "crm_plugin_sdk::serde")]` (or depend on `serde`
//! yourself) and read it with [`Ctx::config`].

// Generated bindings; only `register_plugin!` and the SDK itself use them.
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit/crm-plugin@0.1.0",
        world: "crm-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_crm_plugin",
        default_bindings_module: "crm_plugin_sdk::__bindings",
    });
}

#[doc(hidden)]
#[path = "export.rs"]
pub mod __private;
mod convert;
mod ctx;
mod error;
mod host;
pub mod http;
pub mod log;
pub mod manifest;
mod message;
mod plugin;
mod record;
pub mod signed;
pub mod standard;
pub mod text;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod value;

pub use ctx::Ctx;
pub use error::{Error, ErrorCode, Result};
pub use host::{clock, events, kv, outbound, records, schema, timers};
pub use http::{HttpRequest, HttpResponse};
pub use manifest::{
    ActionDecl, Capabilities, Failure, FieldDecl, FieldExtension, FieldKind, HookDecl, HookKind, Limits, Manifest, ObjectAccess,
    ObjectDecl, RouteDecl, TenantSchema,
};
pub use message::Message;
pub use plugin::Plugin;
pub use record::{Change, Decision, Event, Op, Page, Record};
pub use value::{Fields, Value};

pub use serde;
pub use serde_json;

/// Everything a plugin usually needs: `use crm_plugin_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ActionDecl, Change, Ctx, Decision, Error, ErrorCode, Event, FieldDecl, Fields, HookDecl, HttpRequest, HttpResponse, Limits,
        Manifest, Message, ObjectAccess, ObjectDecl, Op, Plugin, Record, Result, TenantSchema, Value,
    };
    pub use crate::{clock, events, kv, outbound, records, schema, timers};
    pub use crate::{debug, error, info, register_plugin, trace, warn};
}
