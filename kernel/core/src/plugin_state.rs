//! Durable plugin state kept in the tenant's file: key-value entries,
//! timers, delivery cursors and dead letters. Changes to it are `Effect`s
//! applied by the tenant's writer, in the same transaction as any record
//! changes of the same request.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::{DEAD_LETTERS, META, PLUGIN_KV, Reader, TIMERS, TIMERS_DUE};

/// A change to plugin state.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    KvSet { plugin: String, key: String, value: Vec<u8> },
    KvDelete { plugin: String, key: String },
    /// Schedules (or reschedules) a timer.
    TimerSet { plugin: String, key: String, at: i64, payload: Vec<u8> },
    /// Removes a timer; `only_at` removes it only if it is still due then
    /// (so a timer rescheduled while it fired is kept).
    TimerCancel { plugin: String, key: String, only_at: Option<i64> },
    /// Records that events up to `seq` were delivered to the plugin.
    Cursor { plugin: String, seq: u64 },
    /// Records a delivery that exhausted its retries.
    DeadLetter { letter: DeadLetter },
    /// Removes a dead letter (after a replay).
    DeadLetterRemove { seq: u64 },
    /// An audit entry for something that is not a record of the tenant's
    /// store: an admin action on users, roles, keys, teams or plugins.
    /// It joins the tenant's hash chain like any record change.
    Audit { object: String, record_id: crate::ids::RecordId, op: crate::audit::ChangeOp, diff: Vec<crate::audit::FieldChange> },
    /// Deletes the keys that seal the audit values of these records
    /// (`object`, id), so those values can never be read again. The keys
    /// go after the request's own audit entries are written: values the
    /// same request changes are sealed with them too (erasure of a person).
    DeleteRecordKeys { records: Vec<(String, crate::ids::RecordId)> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub plugin: String,
    pub key: String,
    pub at: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Filled in when stored.
    pub seq: u64,
    pub plugin: String,
    /// `after-commit` or `on-timer`.
    pub hook: String,
    /// The change sequence numbers (after-commit) or timer key (on-timer).
    pub events: Vec<u64>,
    pub timer: Option<String>,
    pub error: String,
    pub attempts: u32,
    pub at: i64,
}

pub(crate) fn plugin_key(plugin: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(plugin.len() + 1 + key.len());
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// Big-endian with the sign bit flipped, so byte order is numeric order.
pub(crate) fn due_key(at: i64, plugin: &str, key: &str) -> Vec<u8> {
    let mut out = ((at as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    out.extend_from_slice(&plugin_key(plugin, key));
    out
}

pub(crate) fn cursor_key(plugin: &str) -> String {
    format!("cursor:{plugin}")
}

fn split_plugin_key(bytes: &[u8]) -> Option<(String, String)> {
    let zero = bytes.iter().position(|b| *b == 0)?;
    Some((String::from_utf8_lossy(&bytes[..zero]).into_owned(), String::from_utf8_lossy(&bytes[zero + 1..]).into_owned()))
}

impl Reader<'_> {
    pub fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let table = self.txn().open_table(PLUGIN_KV)?;
        Ok(table.get(plugin_key(plugin, key).as_slice())?.map(|value| value.value().to_vec()))
    }

    /// Keys of `plugin` starting with `prefix`, in order.
    pub fn kv_keys(&self, plugin: &str, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let table = self.txn().open_table(PLUGIN_KV)?;
        let start = plugin_key(plugin, prefix);
        let end = crate::encoding::prefix_end(&start);
        let mut out = Vec::new();
        for entry in table.range(start.as_slice()..end.as_slice())? {
            let (key, _) = entry?;
            if let Some((_, key)) = split_plugin_key(key.value()) {
                out.push(key);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn timer(&self, plugin: &str, key: &str) -> Result<Option<Timer>> {
        let table = self.txn().open_table(TIMERS)?;
        match table.get(plugin_key(plugin, key).as_slice())? {
            Some(bytes) => Ok(Some(postcard::from_bytes(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Timers due at or before `now`, earliest first.
    pub fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<Timer>> {
        let due = self.txn().open_table(TIMERS_DUE)?;
        let timers = self.txn().open_table(TIMERS)?;
        let end = due_key(now.saturating_add(1), "", "");
        let mut out = Vec::new();
        for entry in due.range(..end.as_slice())? {
            let (key, _) = entry?;
            let Some(bytes) = timers.get(&key.value()[8..])? else { continue };
            out.push(postcard::from_bytes(bytes.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// When the next timer is due, if any.
    pub fn next_timer_at(&self) -> Result<Option<i64>> {
        let due = self.txn().open_table(TIMERS_DUE)?;
        Ok(due.first()?.map(|(key, _)| {
            let raw: [u8; 8] = key.value()[..8].try_into().unwrap_or([0; 8]);
            (u64::from_be_bytes(raw) ^ (1 << 63)) as i64
        }))
    }

    /// The last event sequence delivered to `plugin` (None: never started).
    pub fn cursor(&self, plugin: &str) -> Result<Option<u64>> {
        let meta = self.txn().open_table(META)?;
        Ok(meta
            .get(cursor_key(plugin).as_str())?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.value()).ok())
            .map(u64::from_le_bytes))
    }

    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let table = self.txn().open_table(DEAD_LETTERS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, bytes) = entry?;
            out.push(serde_json::from_slice(bytes.value()).map_err(|e| crate::Error::internal(e.to_string()))?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
