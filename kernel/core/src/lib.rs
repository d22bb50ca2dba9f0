//! The trusted core of the CRM kernel: domain types, metadata, the record
//! store on redb with group commit, audit and change events, tenants and API
//! keys. No HTTP, no GraphQL, no wasm.
//!
//! ```no_run
//! use crm_core::{Kernel, StoreOptions, Actor, Mutation, WriteRequest, Value};
//! # async fn demo() -> crm_core::Result<()> {
//! let kernel = Kernel::open(std::path::Path::new("./crm-data"), StoreOptions::default())?;
//! let (tenant, _admin_key) = kernel.create_tenant("acme")?;
//! let store = kernel.tenant(&tenant.id)?;
//! let applied = store
//!     .write(WriteRequest::new(Actor::cli(), vec![Mutation::Create {
//!         object: "contact".into(),
//!         fields: [("first_name".to_string(), Value::Text("Ada".into()))].into(),
//!     }]))
//!     .await?;
//! assert_eq!(applied[0].record.version, 1);
//! # Ok(()) }
//! ```

pub mod access;
pub mod audit;
pub mod audit_verify;
pub mod backup;
pub mod clock;
mod credential_cache;
pub mod encoding;
pub mod error;
pub mod identity;
pub mod ids;
pub mod kernel;
pub mod metadata;
pub mod json_schema;
pub mod normalize;
pub mod plugin;
pub mod plugin_state;
pub mod query;
pub mod seal;
pub mod store;
pub mod system;
pub mod value;
pub mod writer;
pub mod aggregate;

pub use access::{Access, FieldAccess, ObjectGrant, Operation, Principal, Role, Scope, WriteGuard};
pub use audit::{Actor, AuditEntry, ChangeEvent, ChangeOp, FieldChange};
pub use audit_verify::{AuditBreak, AuditProblem, AuditReport};
pub use backup::{BackupFile, BackupManifest, BackupReport, BackupStep, RestoreReport, RestoredTenant};
pub use error::{Error, ErrorKind, Result};
pub use ids::{RecordId, TenantId};
pub use kernel::Kernel;
pub use metadata::{FieldDef, FieldType, Metadata, ObjectDef};
pub use query::{Condition, Cursor, Filter, ListQuery, Page, PageRequest, Sort};
pub use store::{Published, Reader, StoreOptions, Submitted, TenantStore};
pub use value::{Record, Value};
pub use writer::{Applied, Fields, Mutation, WriteRequest};
pub use plugin::{PluginManifest, WriteHooks};
pub use plugin_state::Effect;
