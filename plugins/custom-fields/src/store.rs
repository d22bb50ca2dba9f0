//! Definitions in the plugin's private kv: one JSON value per object and
//! field under `field:<object>:<name>`, so defining two fields at once
//! never loses either.

use crm_plugin_sdk::prelude::*;

use crate::definition::Definition;

const PREFIX: &str = "field:";

/// Most definitions (archived ones included) a tenant may have: what one
/// `kv::keys` call lists, with room to spare.
pub const MAX_FIELDS: usize = 500;

fn key(object: &str, name: &str) -> String {
    format!("{PREFIX}{object}:{name}")
}

pub fn get(object: &str, name: &str) -> Result<Option<Definition>> {
    kv::get_json(&key(object, name)).map_err(|error| Error::msg(format!("definition of {object}.{name} is unreadable: {error}")))
}

pub fn put(definition: &Definition) -> Result<()> {
    kv::set_json(&key(&definition.object, &definition.name), definition)
}

fn under(prefix: &str) -> Result<Vec<Definition>> {
    let mut definitions = Vec::new();
    for key in kv::keys(prefix, MAX_FIELDS as u32 + 1)? {
        let definition: Option<Definition> =
            kv::get_json(&key).map_err(|error| Error::msg(format!("definition {key} is unreadable: {error}")))?;
        definitions.extend(definition);
    }
    Ok(definitions)
}

/// The definitions of one object, archived ones included, by name.
pub fn of_object(object: &str) -> Result<Vec<Definition>> {
    under(&format!("{PREFIX}{object}:"))
}

/// Every definition of the tenant, by object and name.
pub fn all() -> Result<Vec<Definition>> {
    under(PREFIX)
}

/// How many definitions the tenant has, at most `MAX_FIELDS + 1`.
pub fn count() -> Result<usize> {
    Ok(kv::keys(PREFIX, MAX_FIELDS as u32 + 1)?.len())
}
