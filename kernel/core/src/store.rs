//! The record store of one tenant: a redb file, read paths and a handle to
//! its group-commit writer.
//!
//! Tables:
//! - `records:<object>`: `u128` record id → encoded record
//! - `index`: `object \0 field \0 value id` → `()` for every indexed field
//! - `unique`: `object \0 field \0 value` → record id
//! - `audit`: seq → audit entry; `audit_by_record`: `object \0 id seq` → `()`
//! - `changes`: seq → change event
//! - `record_keys`: `object \0 id` → the key sealing the audit values of a
//!   record of a personal object (see `seal`)
//! - `meta`: settings such as the format version and the default pipeline

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::broadcast;

use crate::audit::{AuditEntry, ChangeEvent};
use crate::encoding::{self, decode_record, decode_record_fields};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, TenantId};
use crate::metadata::{Metadata, ObjectDef};
use crate::plugin::WriteHooks;
use crate::query::{Condition, ListQuery, Page, PageRequest, compare_records, paginate};
use crate::seal::{self, RecordKey};
use crate::value::{Record, Value};
use crate::writer::{self, WriteRequest, Applied, WriterHandle};

pub(crate) const INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("index");
pub(crate) const UNIQUE: TableDefinition<&[u8], u128> = TableDefinition::new("unique");
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
pub(crate) const AUDIT_BY_RECORD: TableDefinition<&[u8], ()> = TableDefinition::new("audit_by_record");
pub(crate) const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `plugin \0 key` → value: the private key-value store of each plugin.
pub(crate) const PLUGIN_KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("plugin_kv");
/// `plugin \0 key` → timer (postcard).
pub(crate) const TIMERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("timers");
/// `due (big-endian i64, sign-flipped) plugin \0 key` → `()`: timers in due order.
pub(crate) const TIMERS_DUE: TableDefinition<&[u8], ()> = TableDefinition::new("timers_due");
/// seq → dead letter (JSON): deliveries that exhausted their retries.
pub(crate) const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
/// `object \0 id` → 32-byte key sealing the audit values of that record.
pub(crate) const RECORD_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("record_keys");

/// The on-disk layout version of a tenant file.
pub const TENANT_FORMAT: u64 = 1;

pub(crate) fn records_table(object: &str) -> String {
    format!("records:{object}")
}

/// Tuning of a tenant store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most write requests applied in one transaction (1 disables group commit).
    pub max_batch: usize,
    /// redb page cache per tenant file.
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_batch: 1024, cache_bytes: 64 * 1024 * 1024 }
    }
}

/// A committed change as published to live subscribers.
#[derive(Debug, Clone)]
pub struct Published {
    pub event: ChangeEvent,
    pub record: Record,
}

/// What the store and its writer thread share and may change at run time.
pub(crate) struct Shared {
    pub(crate) metadata: RwLock<Arc<Metadata>>,
    pub(crate) hooks: RwLock<Option<Arc<dyn WriteHooks>>>,
    /// Whether the writer's last commit was a deferred (non-durable) one:
    /// some committed writes are not on disk yet.
    pub(crate) unsynced: std::sync::atomic::AtomicBool,
    /// The last change sequence number a durable commit covers.
    pub(crate) durable_change: AtomicU64,
}

impl Shared {
    pub(crate) fn metadata(&self) -> Arc<Metadata> {
        self.metadata.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
    pub(crate) fn hooks(&self) -> Option<Arc<dyn WriteHooks>> {
        self.hooks.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

pub struct TenantStore {
    id: TenantId,
    db: Arc<Database>,
    shared: Arc<Shared>,
    writer: WriterHandle,
    events: broadcast::Sender<Arc<Published>>,
    reads: AtomicU64,
}

impl std::fmt::Debug for TenantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantStore").field("id", &self.id).finish()
    }
}

pub(crate) fn open_database(path: &Path, cache_bytes: usize) -> Result<Database> {
    let result = if path.exists() {
        Database::builder().set_cache_size(cache_bytes).open(path)
    } else {
        Database::builder().set_cache_size(cache_bytes).create(path)
    };
    result.map_err(|error| match error {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::new(
            ErrorKind::Unavailable,
            format!("{} is in use by another process (is `crm serve` running on this data directory?)", path.display()),
        ),
        other => Error::from(other),
    })
}

impl TenantStore {
    /// Opens (or creates) the tenant file and starts its writer thread.
    pub fn open(path: &Path, id: TenantId, metadata: Arc<Metadata>, options: &StoreOptions) -> Result<Arc<TenantStore>> {
        let db = Arc::new(open_database(path, options.cache_bytes)?);
        writer::initialize(&db, &metadata)?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            metadata: RwLock::new(metadata),
            hooks: RwLock::new(None),
            unsynced: Default::default(),
            durable_change: AtomicU64::new(0),
        });
        let writer = WriterHandle::start(id.clone(), db.clone(), shared.clone(), events.clone(), options.max_batch)?;
        Ok(Arc::new(TenantStore { id, db, shared, writer, events, reads: AtomicU64::new(0) }))
    }

    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// The tenant's redb database, for whole-file work such as backups.
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// The tenant's current metadata (it changes when plugins are enabled
    /// or disabled).
    pub fn metadata(&self) -> Arc<Metadata> {
        self.shared.metadata()
    }

    pub fn object(&self, name: &str) -> Result<ObjectDef> {
        self.metadata().object(name).cloned().ok_or_else(|| Error::invalid(format!("unknown object '{name}'")))
    }

    /// Switches the tenant to new metadata. Indexes of fields that are
    /// indexed now but were not before are rebuilt first, in one
    /// transaction with the switch; a unique field whose existing values
    /// collide makes the switch fail with `CONFLICT` and changes nothing.
    pub async fn set_metadata(&self, metadata: Arc<Metadata>) -> Result<()> {
        self.writer.reindex(metadata).await
    }

    /// Installs the before-write hooks the writer calls (None removes them).
    pub fn set_hooks(&self, hooks: Option<Arc<dyn WriteHooks>>) {
        *self.shared.hooks.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = hooks;
    }

    /// Number of read transactions this store has begun: the unit in which
    /// tests bound the cost of a query.
    pub fn read_count(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// A snapshot to read from.
    pub fn reader(&self) -> Result<Reader<'_>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(Reader { store: self, metadata: self.shared.metadata(), txn: self.db.begin_read()? })
    }

    /// Applies a write request through the group-commit writer; resolves once
    /// the transaction holding it is durable.
    pub async fn write(&self, request: WriteRequest) -> Result<Vec<Applied>> {
        let request = writer::prepare(&self.shared.metadata(), request)?;
        self.writer.submit(request).await
    }

    /// `write` for callers on a plain thread (plugin host calls).
    pub fn write_blocking(&self, request: WriteRequest) -> Result<Vec<Applied>> {
        let request = writer::prepare(&self.shared.metadata(), request)?;
        self.writer.enqueue(request).blocking_recv().unwrap_or_else(|_| Err(Error::internal("the tenant writer stopped")))
    }

    /// A durable commit: every deferred write committed before it is on
    /// disk when this returns. Commits nothing when no deferred write is
    /// waiting for one.
    pub fn sync_blocking(&self) -> Result<()> {
        self.write_blocking(WriteRequest::effects(crate::Actor::system(), Vec::new())).map(|_| ())
    }

    /// `sync_blocking` for async callers.
    pub async fn sync(&self) -> Result<()> {
        self.write(WriteRequest::effects(crate::Actor::system(), Vec::new())).await.map(|_| ())
    }

    /// Whether deferred writes are committed but not yet durable (no
    /// durable commit followed them).
    pub fn unsynced(&self) -> bool {
        self.shared.unsynced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The last change sequence number that is durable: changes after it
    /// were committed deferred and a crash could still lose them.
    pub fn durable_change(&self) -> u64 {
        self.shared.durable_change.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Submits many independent requests at once; each succeeds or fails on
    /// its own, and the writer commits them in as few transactions as it can.
    pub async fn write_each(&self, requests: Vec<WriteRequest>) -> Vec<Result<Vec<Applied>>> {
        self.submit_each(requests).outcomes().await
    }

    /// `write_each` in two steps: the requests are queued for the writer
    /// now, in order, and their outcomes are awaited later, so a caller can
    /// prepare its next requests while the writer applies these.
    pub fn submit_each(&self, requests: Vec<WriteRequest>) -> Submitted {
        let metadata = self.shared.metadata();
        let waiting = requests
            .into_iter()
            .map(|request| writer::prepare(&metadata, request).map(|request| self.writer.enqueue(request)))
            .collect();
        Submitted { waiting }
    }

    /// The tenant's committed changes as they become durable (a deferred
    /// commit's changes come with the durable commit that covers them).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.events.subscribe()
    }

    // Convenience read paths, one snapshot each.

    pub fn get(&self, object: &str, id: RecordId) -> Result<Option<Record>> {
        self.reader()?.get(object, id)
    }
    pub fn list(&self, query: &ListQuery, page: &PageRequest) -> Result<Page> {
        self.reader()?.list(query, page)
    }
    pub fn count(&self, query: &ListQuery) -> Result<u64> {
        self.reader()?.count(query)
    }
    pub fn changes(&self, after: u64, limit: usize) -> Result<Vec<ChangeEvent>> {
        self.reader()?.changes(after, limit)
    }
}

/// A consistent read snapshot of one tenant.
pub struct Reader<'s> {
    store: &'s TenantStore,
    metadata: Arc<Metadata>,
    txn: ReadTransaction,
}

/// The records of `ids` that exist in `table`.
fn records_of(
    table: &redb::ReadOnlyTable<u128, &'static [u8]>,
    ids: &[RecordId],
    keep: Option<&[&str]>,
) -> Result<HashMap<RecordId, Record>> {
    let mut out = HashMap::with_capacity(ids.len());
    for &id in ids {
        if let Some(bytes) = table.get(id.0)? {
            out.insert(id, decode_record_fields(id, bytes.value(), keep)?);
        }
    }
    Ok(out)
}

/// Ids whose indexed `field` of `object` equals `value`, in id order.
fn ids_of(index: &redb::ReadOnlyTable<&'static [u8], ()>, object: &str, field: &str, value: &Value) -> Result<Vec<RecordId>> {
    let prefix = encoding::unique_key(object, field, value);
    let end = encoding::prefix_end(&prefix);
    let mut ids = Vec::new();
    for entry in index.range(prefix.as_slice()..end.as_slice())? {
        let (key, _) = entry?;
        if let Some(id) = encoding::id_from_index_key(key.value()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The condition a scan can walk an index for in id order: an equality on
/// a non-unique indexed field, when no condition on `id` or on a unique
/// field (both a handful of ids at most) does better.
fn streamable_condition<'q>(object: &ObjectDef, query: &'q ListQuery) -> Option<(&'q str, &'q Value)> {
    let conditions = query.filter.as_ref()?.required_conditions();
    let mut candidate = None;
    for (field, condition) in conditions {
        if field == "id" {
            return None;
        }
        let Some(def) = object.field(field) else { continue };
        if !def.has_index() {
            continue;
        }
        match condition {
            Condition::Eq(value) if def.unique && !value.is_null() => return None,
            Condition::Eq(value) if !value.is_null() && candidate.is_none() => candidate = Some((field, value)),
            _ => {}
        }
    }
    candidate
}

impl Reader<'_> {
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub(crate) fn txn(&self) -> &ReadTransaction {
        let _ = self.store;
        &self.txn
    }

    fn object_def(&self, name: &str) -> Result<&ObjectDef> {
        self.metadata.object(name).ok_or_else(|| Error::invalid(format!("unknown object '{name}'")))
    }

    fn records(&self, object: &str) -> Result<Option<redb::ReadOnlyTable<u128, &'static [u8]>>> {
        self.object_def(object)?;
        let name = records_table(object);
        match self.txn.open_table(TableDefinition::<u128, &[u8]>::new(&name)) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub fn get(&self, object: &str, id: RecordId) -> Result<Option<Record>> {
        let Some(table) = self.records(object)? else { return Ok(None) };
        match table.get(id.0)? {
            Some(bytes) => Ok(Some(decode_record(id, bytes.value())?)),
            None => Ok(None),
        }
    }

    pub fn get_many(&self, object: &str, ids: &[RecordId]) -> Result<HashMap<RecordId, Record>> {
        self.get_many_fields(object, ids, None)
    }

    /// [`Reader::get_many`] decoding only the fields `keep` names (all when
    /// `None`); see [`ListQuery::fields`].
    pub fn get_many_fields(&self, object: &str, ids: &[RecordId], keep: Option<&[&str]>) -> Result<HashMap<RecordId, Record>> {
        match self.records(object)? {
            Some(table) => records_of(&table, ids, keep),
            None => Ok(HashMap::new()),
        }
    }

    /// Ids whose indexed `field` equals `value`, in id order.
    pub fn index_ids(&self, object: &str, field: &str, value: &Value) -> Result<Vec<RecordId>> {
        match self.index_table()? {
            Some(table) => ids_of(&table, object, field, value),
            None => Ok(Vec::new()),
        }
    }

    fn index_table(&self) -> Result<Option<redb::ReadOnlyTable<&'static [u8], ()>>> {
        match self.txn.open_table(INDEX) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The id holding a unique value, if any (deleted records included).
    pub fn unique_id(&self, object: &str, field: &str, value: &Value) -> Result<Option<RecordId>> {
        let table = match self.txn.open_table(UNIQUE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        Ok(table.get(encoding::unique_key(object, field, value).as_slice())?.map(|id| RecordId(id.value())))
    }

    /// Candidate ids from an index, when the filter pins an indexed field to
    /// one or a few values. `None` means no index applies.
    fn planned_ids(&self, object: &ObjectDef, query: &ListQuery) -> Result<Option<Vec<RecordId>>> {
        let Some(filter) = &query.filter else { return Ok(None) };
        let conditions = filter.required_conditions();
        for (field, condition) in &conditions {
            if *field == "id" {
                let ids = match condition {
                    Condition::Eq(Value::Id(id)) => vec![*id],
                    Condition::In(values) => values.iter().filter_map(Value::as_id).collect(),
                    _ => continue,
                };
                let mut ids: Vec<RecordId> = ids.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
                ids.sort();
                return Ok(Some(ids));
            }
        }
        let mut best: Option<Vec<RecordId>> = None;
        for (field, condition) in conditions {
            let Some(def) = object.field(field) else { continue };
            if !def.has_index() {
                continue;
            }
            let values: Vec<&Value> = match condition {
                Condition::Eq(value) if !value.is_null() => vec![value],
                Condition::In(values) if values.len() <= 64 => values.iter().filter(|v| !v.is_null()).collect(),
                _ => continue,
            };
            let mut ids = Vec::new();
            for value in values {
                if def.unique {
                    ids.extend(self.unique_id(&object.name, field, value)?);
                } else {
                    ids.extend(self.index_ids(&object.name, field, value)?);
                }
            }
            ids.sort();
            ids.dedup();
            if best.as_ref().is_none_or(|current| ids.len() < current.len()) {
                best = Some(ids);
            }
        }
        Ok(best)
    }

    /// Visits the records a query may match, in id order (or reversed),
    /// starting after `from` and stopping when `visit` returns false.
    fn scan(
        &self,
        query: &ListQuery,
        descending: bool,
        from: Option<RecordId>,
        visit: &mut dyn FnMut(Record) -> bool,
    ) -> Result<()> {
        let object = self.object_def(&query.object)?;
        let Some(table) = self.records(&query.object)? else { return Ok(()) };
        let keep = query.decoded_fields();
        let keep = keep.as_deref();
        if let Some((field, value)) = streamable_condition(object, query) {
            // Index keys of one value are in id order: walk them and stop
            // as soon as the visitor has enough, instead of collecting every
            // id of the value first.
            let prefix = encoding::unique_key(&object.name, field, value);
            let end = encoding::prefix_end(&prefix);
            let index = self.txn.open_table(INDEX)?;
            use std::ops::Bound::{Excluded, Included};
            let after;
            let bounds: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = match (from, descending) {
                (None, _) => (Included(prefix.as_slice()), Excluded(end.as_slice())),
                (Some(from), false) => {
                    after = encoding::index_key(&object.name, field, value, from);
                    (Excluded(after.as_slice()), Excluded(end.as_slice()))
                }
                (Some(from), true) => {
                    after = encoding::index_key(&object.name, field, value, from);
                    (Included(prefix.as_slice()), Excluded(after.as_slice()))
                }
            };
            let range = index.range::<&[u8]>(bounds)?;
            let entries: Box<dyn Iterator<Item = _>> = if descending { Box::new(range.rev()) } else { Box::new(range) };
            for entry in entries {
                let (key, _) = entry?;
                let Some(id) = encoding::id_from_index_key(key.value()) else { continue };
                if let Some(bytes) = table.get(id.0)? {
                    let record = decode_record_fields(id, bytes.value(), keep)?;
                    if query.matches(&record) && !visit(record) {
                        break;
                    }
                }
            }
            return Ok(());
        }
        if let Some(mut ids) = self.planned_ids(object, query)? {
            if descending {
                ids.reverse();
            }
            for id in ids {
                if let Some(from) = from
                    && (if descending { id >= from } else { id <= from })
                {
                    continue;
                }
                if let Some(bytes) = table.get(id.0)? {
                    let record = decode_record_fields(id, bytes.value(), keep)?;
                    if query.matches(&record) && !visit(record) {
                        break;
                    }
                }
            }
            return Ok(());
        }
        let range = match (from, descending) {
            (Some(from), false) => table.range((std::ops::Bound::Excluded(from.0), std::ops::Bound::Unbounded))?,
            (Some(from), true) => table.range(..from.0)?,
            (None, _) => table.range::<u128>(..)?,
        };
        let mut step = |entry: Result<(redb::AccessGuard<u128>, redb::AccessGuard<&[u8]>), redb::StorageError>| -> Result<bool> {
            let (key, bytes) = entry?;
            let record = decode_record_fields(RecordId(key.value()), bytes.value(), keep)?;
            Ok(!query.matches(&record) || visit(record))
        };
        if descending {
            for entry in range.rev() {
                if !step(entry)? {
                    break;
                }
            }
        } else {
            for entry in range {
                if !step(entry)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Every record matching the query, unsorted.
    pub fn all(&self, query: &ListQuery) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.scan(query, false, None, &mut |record| {
            out.push(record);
            true
        })?;
        Ok(out)
    }

    pub fn count(&self, query: &ListQuery) -> Result<u64> {
        let mut count = 0u64;
        self.scan(query, false, None, &mut |_| {
            count += 1;
            true
        })?;
        Ok(count)
    }

    /// One page of a query. Orders by id (or created time) stream from the
    /// table or an index and stop after the page; other orders sort the
    /// matching records.
    pub fn list(&self, query: &ListQuery, page: &PageRequest) -> Result<Page> {
        let sort = query.effective_sort();
        let by_id = sort.len() == 1;
        if by_id && page.last.is_none() && page.before.is_none() {
            let descending = sort[0].descending;
            let from = page.after.as_ref().and_then(|cursor| cursor.0.last().and_then(Value::as_id));
            let limit = page.first.unwrap_or(usize::MAX);
            let mut records = Vec::new();
            self.scan(query, descending, from, &mut |record| {
                records.push(record);
                records.len() <= limit
            })?;
            let has_next_page = records.len() > limit;
            records.truncate(limit);
            return Ok(Page { records, has_next_page, has_previous_page: page.after.is_some() });
        }
        let object = self.object_def(&query.object)?;
        let indexed = sort.len() == 2
            && sort[0].descending == sort[1].descending
            && (sort[0].field == "updated_at" || object.field(&sort[0].field).is_some_and(|field| field.has_index()));
        if indexed && page.last.is_none() && page.before.is_none() && self.planned_ids(object, query)?.is_none() {
            return self.list_by_index(query, &sort, page);
        }
        let mut records = self.all(query)?;
        records.sort_by(|a, b| compare_records(a, b, &sort));
        Ok(paginate(records, &sort, page))
    }

    /// Streams a page in the order of an index on the first sort key.
    fn list_by_index(&self, query: &ListQuery, sort: &[crate::query::Sort], page: &PageRequest) -> Result<Page> {
        let field = &sort[0].field;
        let descending = sort[0].descending;
        let prefix = encoding::index_prefix(&query.object, field);
        let end = encoding::prefix_end(&prefix);
        let cursor_key = match &page.after {
            Some(cursor) => match cursor.0.as_slice() {
                [value, Value::Id(id)] => Some(encoding::index_key(&query.object, field, value, *id)),
                _ => return Err(Error::invalid("cursor does not belong to this ordering")),
            },
            None => None,
        };
        use std::ops::Bound::{Excluded, Included};
        let bounds: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = match (&cursor_key, descending) {
            (None, _) => (Included(prefix.as_slice()), Excluded(end.as_slice())),
            (Some(key), false) => (Excluded(key.as_slice()), Excluded(end.as_slice())),
            (Some(key), true) => (Included(prefix.as_slice()), Excluded(key.as_slice())),
        };
        let index = self.txn.open_table(INDEX)?;
        let Some(records) = self.records(&query.object)? else { return Ok(Page::default()) };
        let limit = page.first.unwrap_or(usize::MAX);
        let keep = query.decoded_fields();
        let mut out = Vec::new();
        let range = index.range::<&[u8]>(bounds)?;
        let entries: Box<dyn Iterator<Item = _>> = if descending { Box::new(range.rev()) } else { Box::new(range) };
        for entry in entries {
            let (key, _) = entry?;
            let Some(id) = encoding::id_from_index_key(key.value()) else { continue };
            let Some(bytes) = records.get(id.0)? else { continue };
            let record = decode_record_fields(id, bytes.value(), keep.as_deref())?;
            if query.matches(&record) {
                out.push(record);
                if out.len() > limit {
                    break;
                }
            }
        }
        let has_next_page = out.len() > limit;
        out.truncate(limit);
        Ok(Page { records: out, has_next_page, has_previous_page: page.after.is_some() })
    }

    /// Children of many parents at once: for each parent id, the records of
    /// `query.object` whose `field` references it, sorted and cut to
    /// `first`, with the total count. One snapshot for the whole batch.
    pub fn related(
        &self,
        query: &ListQuery,
        field: &str,
        parents: &[RecordId],
        page: &PageRequest,
    ) -> Result<HashMap<RecordId, (Page, u64)>> {
        let sort = query.effective_sort();
        let mut out = HashMap::with_capacity(parents.len());
        // Both tables are opened once for every parent.
        let (Some(index), Some(table)) = (self.index_table()?, self.records(&query.object)?) else {
            return Ok(parents.iter().map(|&parent| (parent, (Page::default(), 0))).collect());
        };
        let keep = query.decoded_fields();
        for &parent in parents {
            let ids = ids_of(&index, &query.object, field, &Value::Id(parent))?;
            let mut records: Vec<Record> = records_of(&table, &ids, keep.as_deref())?.into_values().filter(|record| query.matches(record)).collect();
            let total = records.len() as u64;
            records.sort_by(|a, b| compare_records(a, b, &sort));
            out.insert(parent, (paginate(records, &sort, page), total));
        }
        Ok(out)
    }

    /// Change events after `after`, in commit order.
    pub fn changes(&self, after: u64, limit: usize) -> Result<Vec<ChangeEvent>> {
        self.entries_after(CHANGES, after, limit)
    }

    /// At most `limit` entries of a sequence-keyed log after `after`, in order.
    fn entries_after<T: serde::de::DeserializeOwned>(
        &self,
        log: TableDefinition<'static, u64, &'static [u8]>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<T>> {
        let table = match self.txn.open_table(log) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut out = Vec::new();
        for entry in table.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))? {
            let (_, bytes) = entry?;
            out.push(postcard::from_bytes(bytes.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The last committed change sequence number (0 when none).
    pub fn last_change(&self) -> Result<u64> {
        let table = match self.txn.open_table(CHANGES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(error) => return Err(error.into()),
        };
        Ok(table.last()?.map(|(key, _)| key.value()).unwrap_or(0))
    }

    /// The audit entries of one record, oldest first, with sealed values
    /// opened; values whose key was deleted (an erased person) stay sealed
    /// (`seal::is_sealed`).
    pub fn history(&self, object: &str, id: RecordId) -> Result<Vec<AuditEntry>> {
        let mut prefix = object.as_bytes().to_vec();
        prefix.push(0);
        prefix.extend_from_slice(&id.to_bytes());
        let end = encoding::prefix_end(&prefix);
        let (index, audit) = match (self.txn.open_table(AUDIT_BY_RECORD), self.txn.open_table(AUDIT)) {
            (Ok(index), Ok(audit)) => (index, audit),
            _ => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for entry in index.range(prefix.as_slice()..end.as_slice())? {
            let (key, _) = entry?;
            let key = key.value();
            let seq_bytes: [u8; 8] = key[key.len() - 8..].try_into().map_err(|_| Error::internal("bad audit index key"))?;
            if let Some(bytes) = audit.get(u64::from_be_bytes(seq_bytes))? {
                out.push(postcard::from_bytes(bytes.value())?);
            }
        }
        self.open_audit(&mut out)?;
        Ok(out)
    }

    /// The key sealing the audit values of a record, if it has one (records
    /// of personal objects get one on their first audited change; erasure
    /// deletes it).
    pub fn record_key(&self, object: &str, id: RecordId) -> Result<Option<RecordKey>> {
        let table = match self.txn.open_table(RECORD_KEYS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let key = table.get(seal::key_id(object, id).as_slice())?;
        Ok(key.and_then(|bytes| RecordKey::from_bytes(bytes.value())))
    }

    /// Opens the sealed values of `entries` in place, with one key lookup
    /// per record. Values that cannot be opened (the key was deleted) stay
    /// sealed; entries of other objects are left as they are.
    pub fn open_audit(&self, entries: &mut [AuditEntry]) -> Result<()> {
        let mut keys: HashMap<(String, RecordId), Option<RecordKey>> = HashMap::new();
        for entry in entries.iter_mut() {
            if !seal::is_personal(&entry.object)
                || !entry.diff.iter().any(|change| seal::is_sealed(&change.before) || seal::is_sealed(&change.after))
            {
                continue;
            }
            let slot = (entry.object.clone(), entry.record_id);
            let key = match keys.get(&slot) {
                Some(key) => key.clone(),
                None => {
                    let key = self.record_key(&entry.object, entry.record_id)?;
                    keys.insert(slot, key.clone());
                    key
                }
            };
            let Some(key) = key else { continue };
            for change in &mut entry.diff {
                for value in [&mut change.before, &mut change.after] {
                    if let Some(opened) = key.open(&entry.object, entry.record_id, &change.field, value) {
                        *value = opened;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every audit entry in order, as stored (sealed values stay sealed;
    /// `open_audit` opens them), for verification and export.
    pub fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.entries_after(AUDIT, after, limit)
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let table = match self.txn.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        Ok(table.get(key)?.map(|value| value.value().to_vec()))
    }
}

/// Requests queued by [`TenantStore::submit_each`].
#[must_use = "the outcomes say which requests were refused"]
pub struct Submitted {
    waiting: Vec<Result<tokio::sync::oneshot::Receiver<Result<Vec<Applied>>>>>,
}

impl Submitted {
    /// Each request's outcome, in the order they were submitted.
    pub async fn outcomes(self) -> Vec<Result<Vec<Applied>>> {
        let mut out = Vec::with_capacity(self.waiting.len());
        for item in self.waiting {
            out.push(match item {
                Ok(receiver) => WriterHandle::wait(receiver).await,
                Err(error) => Err(error),
            });
        }
        out
    }
}
