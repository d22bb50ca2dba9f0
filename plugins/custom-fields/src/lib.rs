//! The bundled `custom-fields` plugin: admins define typed, validated
//! fields on the standard objects and on the objects other plugins declare,
//! per tenant, through the plugin's
//! actions (GraphQL mutations `customFieldsDefineField`,
//! `customFieldsChangeField`, `customFieldsArchiveField`,
//! `customFieldsRestoreField`, `customFieldsListFields`).
//!
//! How it fits together:
//!
//! - Definitions live in the plugin's private kv, one JSON value per object
//!   and field ([`store`]).
//! - [`Plugin::tenant_schema`] returns the active (not archived) ones as
//!   kernel fields ([`definition::Definition::extensions`]), so they are
//!   typed, filterable, sortable and aggregatable in the tenant's GraphQL
//!   schema like any standard field; a unique field gets a kernel unique
//!   index. Every action that changes a definition calls
//!   `schema::changed()`.
//! - A fail-closed before-write hook on every object (`*`) applies what
//!   the kernel does not know ([`rules`]): defaults, required, min/max,
//!   lengths, regex, select options and currency codes. A rejection names
//!   the field and the rule: `shoe_size: min: must be at least 30`.
//! - The same hook computes formula fields ([`formula`], [`formulas`]) from
//!   the record as it will be written and refuses a client's value for one.
//! - A type change converts stored values ([`convert`]) once every one of
//!   them converts losslessly; values are rewritten, and new formulas
//!   computed for existing records, by a timer the action schedules (the
//!   kernel applies the new schema only after the action returns).
//!
//! ```
//! use crm_plugin_custom_fields::CustomFields;
//! use crm_plugin_sdk::prelude::*;
//! use crm_plugin_sdk::testing::TestHost;
//!
//! let host = TestHost::new();
//! let input = Fields::new()
//!     .with("object", "contact")
//!     .with("name", "shoe_size")
//!     .with("type", "integer")
//!     .with("min", 30.0)
//!     .with("max", 50.0);
//! host.invoke(&CustomFields, "define-field", input).unwrap();
//! let error = host.write(&CustomFields, Change::create("contact", [("shoe_size", 12)])).unwrap_err();
//! assert_eq!(error.message(), "shoe_size: min: must be at least 30");
//! ```

use std::cell::OnceCell;
use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

pub mod actions;
pub mod convert;
pub mod definition;
pub mod formula;
pub mod formulas;
mod jobs;
pub mod names;
pub mod options;
pub mod rules;
pub mod store;
mod time;

/// The plugin.
#[derive(Default)]
pub struct CustomFields;

impl Plugin for CustomFields {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("custom-fields", env!("CARGO_PKG_VERSION"))
            .description("Custom fields on standard and plugin-declared objects: typed, validated and in the GraphQL schema, per tenant")
            .kv()
            .schema()
            .timers()
            .config_schema(json!({"type": "object", "properties": {}, "additionalProperties": false}));
        // Every object, standard or declared by another plugin, and every
        // field: the custom fields are named at run time. Create and update
        // for the defaults, currency codes and formulas it patches in.
        manifest = manifest.before_write("*", [Op::Create, Op::Update]).access(ObjectAccess::new("*").read().create().update());
        for action in actions::decls() {
            manifest = manifest.action(action);
        }
        manifest
    }

    fn tenant_schema(&self, _ctx: &Ctx) -> Result<TenantSchema> {
        let mut schema = TenantSchema::new();
        for definition in store::all()?.into_iter().filter(|definition| !definition.archived) {
            schema.fields.extend(definition.extensions());
        }
        Ok(schema)
    }

    fn before_write(&self, _ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
        // Definitions are read once per object and batch.
        let mut by_object: BTreeMap<&str, (Vec<rules::Rules>, formulas::Formulas)> = BTreeMap::new();
        let now = OnceCell::new();
        let mut decisions = Vec::with_capacity(changes.len());
        for change in changes {
            if !matches!(change.op(), Op::Create | Op::Update) {
                decisions.push(Decision::Accept);
                continue;
            }
            let object = change.object();
            if !by_object.contains_key(object) {
                let definitions = store::of_object(object)?;
                // Checked when defined; a formula that no longer checks
                // (its definitions edited outside the actions) computes
                // nothing rather than failing writes.
                let formulas = formulas::check_object(object, &definitions).unwrap_or_else(|error| {
                    warn!("formulas of {object} are not computed: {error}");
                    formulas::Formulas::default()
                });
                let active = definitions
                    .into_iter()
                    .filter(|definition| !definition.archived)
                    .map(rules::Rules::new)
                    .collect::<Result<Vec<_>>>()?;
                by_object.insert(object, (active, formulas));
            }
            let (rules, formulas) = &by_object[object];
            decisions.push(rules::judge(change, rules, formulas, &now));
        }
        Ok(decisions)
    }

    fn invoke(&self, _ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
        actions::invoke(action, input)
    }

    fn on_timer(&self, _ctx: &Ctx, key: &str, payload: &[u8]) -> Result<()> {
        jobs::run(key, payload)
    }
}

register_plugin!(CustomFields);

#[cfg(test)]
mod tests;
