//! Host access: plain functions over the WIT imports on `wasm32`, over the
//! thread's [`TestHost`](crate::testing::TestHost) on native targets.
//!
//! Every call is checked by the host against the plugin's grants; a refused
//! call returns an [`Error`](crate::Error) with code `forbidden` (or traps
//! the instance, as the host decides).

#[cfg(target_arch = "wasm32")]
use wasm as sys;

#[cfg(not(target_arch = "wasm32"))]
use crate::testing::sys;

/// Records of the tenant, within the plugin's grant.
pub mod records {
    use super::sys;
    use crate::error::Result;
    use crate::record::{Page, Record};
    use crate::value::Fields;

    /// The record, or `None` if there is none with this id (deleted records
    /// included).
    pub fn get(object: &str, id: &str) -> Result<Option<Record>> {
        sys::records_get(object, id)
    }

    /// One page of records matching `filter`, JSON in the GraphQL filter
    /// language with stored field names, e.g. `{"email": {"eq": "a@b.c"}}`
    /// (`{}` matches all). `order_by` lists field names, each optionally
    /// prefixed with `-` for descending order. Pass `page.next` as `after`
    /// for the next page.
    pub fn query(object: &str, filter: &str, order_by: &[&str], limit: u32, after: Option<&str>) -> Result<Page> {
        let order_by: Vec<String> = order_by.iter().map(|field| (*field).to_owned()).collect();
        sys::records_query(object, filter, &order_by, limit, after)
    }

    /// The first record matching `filter`, if any.
    pub fn first(object: &str, filter: &str) -> Result<Option<Record>> {
        Ok(query(object, filter, &[], 1, None)?.records.into_iter().next())
    }

    pub fn count(object: &str, filter: &str) -> Result<u64> {
        sys::records_count(object, filter)
    }

    pub fn create(object: &str, fields: impl Into<Fields>) -> Result<Record> {
        sys::records_create(object, fields.into())
    }

    /// Sets `fields` on the record (a `null` clears one). With
    /// `expected_version`, fails with `conflict` if the record moved on.
    pub fn update(object: &str, id: &str, fields: impl Into<Fields>, expected_version: Option<u64>) -> Result<Record> {
        sys::records_update(object, id, fields.into(), expected_version)
    }

    pub fn delete(object: &str, id: &str) -> Result<()> {
        sys::records_delete(object, id)
    }
}

/// A private key-value store per tenant and plugin.
pub mod kv {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::sys;
    use crate::error::Result;

    pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
        sys::kv_get(key)
    }

    pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        sys::kv_set(key, value.as_ref())
    }

    pub fn delete(key: &str) -> Result<()> {
        sys::kv_delete(key)
    }

    /// Keys starting with `prefix`, in order, at most `limit`.
    pub fn keys(prefix: &str, limit: u32) -> Result<Vec<String>> {
        sys::kv_keys(prefix, limit)
    }

    /// The value stored under `key` as JSON.
    pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
        match get(key)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
        set(key, serde_json::to_vec(value)?)
    }
}

/// Durable timers: `Plugin::on_timer` runs at or after `at`, also after a
/// restart. Scheduling an existing key replaces it.
pub mod timers {
    use super::sys;
    use crate::error::Result;

    /// Schedules `key` at `at` (epoch milliseconds).
    pub fn schedule(key: &str, at: i64, payload: impl AsRef<[u8]>) -> Result<()> {
        sys::timers_schedule(key, at, payload.as_ref())
    }

    /// Schedules `key` `delay_ms` from the host clock's now.
    pub fn schedule_in(key: &str, delay_ms: i64, payload: impl AsRef<[u8]>) -> Result<()> {
        schedule(key, super::clock::now().saturating_add(delay_ms), payload)
    }

    pub fn cancel(key: &str) -> Result<()> {
        sys::timers_cancel(key)
    }
}

/// Custom events, recorded in the tenant's change feed.
pub mod events {
    use super::sys;
    use crate::error::Result;

    pub fn emit(name: &str, payload: &str) -> Result<()> {
        sys::events_emit(name, payload)
    }
}

/// The kernel's outbound channel (email, SMS, webhook).
pub mod outbound {
    use super::sys;
    use crate::error::Result;
    use crate::message::Message;

    /// Queues a message; returns its id.
    pub fn send(message: &Message) -> Result<String> {
        sys::outbound_send(message)
    }
}

/// For plugins granted `schema`: tells the kernel that what
/// [`Plugin::tenant_schema`](crate::Plugin::tenant_schema) returns has
/// changed; it is asked again once the current call returns.
pub mod schema {
    pub fn changed() -> crate::error::Result<()> {
        super::sys::schema_changed()
    }
}

/// The kernel's clock (controllable in tests).
pub mod clock {
    /// Epoch milliseconds.
    pub fn now() -> i64 {
        super::sys::clock_now()
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use crate::__bindings::crm::plugin as imports;
    use crate::error::Result;
    use crate::log::Level;
    use crate::message::Message;
    use crate::record::{Page, Record};
    use crate::value::Fields;

    pub fn records_get(object: &str, id: &str) -> Result<Option<Record>> {
        Ok(imports::records::get(object, id)?.map(Record::from))
    }

    pub fn records_query(object: &str, filter: &str, order_by: &[String], limit: u32, after: Option<&str>) -> Result<Page> {
        Ok(imports::records::query(object, filter, order_by, limit, after)?.into())
    }

    pub fn records_count(object: &str, filter: &str) -> Result<u64> {
        Ok(imports::records::count(object, filter)?)
    }

    pub fn records_create(object: &str, fields: Fields) -> Result<Record> {
        let fields: Vec<_> = fields.into();
        Ok(imports::records::create(object, &fields)?.into())
    }

    pub fn records_update(object: &str, id: &str, fields: Fields, expected_version: Option<u64>) -> Result<Record> {
        let fields: Vec<_> = fields.into();
        Ok(imports::records::update(object, id, &fields, expected_version)?.into())
    }

    pub fn records_delete(object: &str, id: &str) -> Result<()> {
        Ok(imports::records::delete(object, id)?)
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>> {
        Ok(imports::kv::get(key)?)
    }

    pub fn kv_set(key: &str, value: &[u8]) -> Result<()> {
        Ok(imports::kv::set(key, value)?)
    }

    pub fn kv_delete(key: &str) -> Result<()> {
        Ok(imports::kv::delete(key)?)
    }

    pub fn kv_keys(prefix: &str, limit: u32) -> Result<Vec<String>> {
        Ok(imports::kv::keys(prefix, limit)?)
    }

    pub fn timers_schedule(key: &str, at: i64, payload: &[u8]) -> Result<()> {
        Ok(imports::timers::schedule(key, at, payload)?)
    }

    pub fn timers_cancel(key: &str) -> Result<()> {
        Ok(imports::timers::cancel(key)?)
    }

    pub fn events_emit(name: &str, payload: &str) -> Result<()> {
        Ok(imports::events::emit(name, payload)?)
    }

    pub fn outbound_send(message: &Message) -> Result<String> {
        Ok(imports::outbound::send(&message.clone().into())?)
    }

    pub fn clock_now() -> i64 {
        imports::clock::now()
    }

    pub fn schema_changed() -> Result<()> {
        imports::schema::changed();
        Ok(())
    }

    pub fn log(level: Level, message: &str) {
        imports::log::log(level.into(), message)
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::log;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::testing::sys::log;
