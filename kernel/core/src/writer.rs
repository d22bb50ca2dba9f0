//! The group-commit writer of one tenant.
//!
//! A dedicated thread owns the tenant's write transactions. It takes every
//! request waiting in its queue (up to `max_batch`), applies them in one
//! redb transaction, commits once (one fsync) and only then answers each
//! caller. A request that fails is answered with its error and the batch is
//! re-applied without it, so one bad request never fails its neighbours.
//!
//! Every applied change writes, in the same transaction, the record, its
//! index entries, a hash-chained audit entry and a change event. The audit
//! values of records of personal objects are sealed with a key per record
//! (see `seal`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use tokio::sync::{broadcast, oneshot};

use crate::access::{Operation, WriteGuard};
use crate::audit::{Actor, AuditEntry, ChangeEvent, ChangeOp, FieldChange};
use crate::plugin::{HookCall, PendingChange, WriteHooks};
use crate::plugin_state::{Effect, cursor_key, due_key, plugin_key};
use crate::encoding::{self, decode_record, encode_record};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, TenantId};
use crate::metadata::{FieldType, Metadata, ObjectDef, SYSTEM_FIELDS};
use crate::normalize::normalize;
use crate::seal::{self, RecordKey};
use crate::store::{
    AUDIT, AUDIT_BY_RECORD, CHANGES, DEAD_LETTERS, INDEX, META, PLUGIN_KV, Published, RECORD_KEYS, Shared, TENANT_FORMAT,
    TIMERS, TIMERS_DUE, UNIQUE, records_table,
};
use crate::value::{Record, Value};

/// Most mutations one request may carry (bulk writes).
pub const MAX_MUTATIONS: usize = 1000;

pub type Fields = BTreeMap<String, Value>;

#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    Create { object: String, fields: Fields },
    /// Sets the given fields; a null value clears a field.
    Update { object: String, id: RecordId, fields: Fields, expected_version: Option<u64> },
    /// Updates the record whose unique `key` field equals the value in
    /// `fields`, restoring it if deleted, or creates one.
    Upsert { object: String, key: String, fields: Fields },
    Delete { object: String, id: RecordId, expected_version: Option<u64> },
    Restore { object: String, id: RecordId },
}

impl Mutation {
    fn object(&self) -> &str {
        match self {
            Mutation::Create { object, .. }
            | Mutation::Update { object, .. }
            | Mutation::Upsert { object, .. }
            | Mutation::Delete { object, .. }
            | Mutation::Restore { object, .. } => object,
        }
    }
}

/// Mutations applied atomically: all of them commit or none.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub mutations: Vec<Mutation>,
    /// Plugin state changes committed with the mutations.
    pub effects: Vec<Effect>,
    /// The caller's record scope, checked on the stored record of every
    /// update, delete and restore; `None` for unrestricted callers.
    pub guard: Option<WriteGuard>,
    /// Committed without waiting for the disk: visible at once, durable
    /// with the tenant's next durable commit. A plugin's writes inside one
    /// call are deferred. A call someone waits for (an action, a route)
    /// ends with a durable commit (`TenantStore::sync_blocking`) before it
    /// answers; a delivery's or a timer's writes stay deferred, and so does
    /// the cursor or timer record written after them, so neither is ever
    /// durable without the other's predecessors and a crash loses only
    /// calls that will be made again. A batch holding any request that is
    /// not deferred commits durably.
    pub deferred: bool,
}

impl WriteRequest {
    pub fn new(actor: Actor, mutations: Vec<Mutation>) -> Self {
        WriteRequest { actor, request_id: None, mutations, effects: Vec::new(), guard: None, deferred: false }
    }

    /// A request that only changes plugin state.
    pub fn effects(actor: Actor, effects: Vec<Effect>) -> Self {
        WriteRequest { actor, request_id: None, mutations: Vec::new(), effects, guard: None, deferred: false }
    }
}

/// The outcome of one mutation: the record after it, and what happened
/// (`None` when an update changed nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub object: String,
    pub record: Record,
    pub op: Option<ChangeOp>,
}

/// Consent on contacts: when `email_opt_in` or `sms_opt_in` changes, the
/// time and source of the change are recorded with it (the write may give
/// its own; the source defaults to who made the change).
fn consent_rules(now: i64, actor: &str, before: Option<&Record>, record: &mut Record, patch: &Fields) {
    for channel in ["email", "sms"] {
        let flag = format!("{channel}_opt_in");
        let changed = patch.contains_key(&flag) && before.is_none_or(|before| before.get(&flag) != record.get(&flag));
        if !changed {
            continue;
        }
        let at = format!("{channel}_opt_in_at");
        let source = format!("{channel}_opt_in_source");
        if !patch.contains_key(&at) {
            record.fields.insert(at, Value::Int(now));
        }
        if !patch.contains_key(&source) {
            record.fields.insert(source, Value::Text(actor.to_string()));
        }
    }
}

/// Checks a request against the metadata and normalizes its values. Runs on
/// the caller's thread so the writer only does what needs the transaction.
pub fn prepare(metadata: &Metadata, mut request: WriteRequest) -> Result<WriteRequest> {
    if request.mutations.len() > MAX_MUTATIONS {
        return Err(Error::invalid(format!(
            "a request may carry at most {MAX_MUTATIONS} mutations, got {}",
            request.mutations.len()
        )));
    }
    for mutation in &mut request.mutations {
        let object = metadata
            .object(mutation.object())
            .ok_or_else(|| Error::invalid(format!("unknown object '{}'", mutation.object())))?;
        match mutation {
            Mutation::Create { fields, .. } => {
                normalize_fields(object, fields)?;
                check_required(object, fields)?;
            }
            Mutation::Update { fields, .. } => {
                normalize_fields(object, fields)?;
                for (name, value) in fields.iter() {
                    if value.is_null() && object.field(name).is_some_and(|field| field.required) {
                        return Err(Error::invalid_field(name.clone(), "is required and cannot be cleared"));
                    }
                }
            }
            Mutation::Upsert { key, fields, .. } => {
                normalize_fields(object, fields)?;
                match object.field(key) {
                    Some(field) if field.unique => {}
                    _ => return Err(Error::invalid(format!("'{key}' is not a unique field of {}", object.name))),
                }
                if fields.get(key.as_str()).is_none_or(Value::is_null) {
                    return Err(Error::invalid_field(key.clone(), "is required to upsert"));
                }
            }
            Mutation::Delete { .. } | Mutation::Restore { .. } => {}
        }
    }
    Ok(request)
}

fn normalize_fields(object: &ObjectDef, fields: &mut Fields) -> Result<()> {
    let taken = std::mem::take(fields);
    for (name, value) in taken {
        if SYSTEM_FIELDS.contains(&name.as_str()) {
            return Err(Error::invalid_field(name, "is maintained by the kernel and cannot be written"));
        }
        let Some(field) = object.field(&name) else {
            return Err(Error::invalid_field(name.clone(), format!("{} has no field '{name}'", object.name)));
        };
        if field.computed {
            return Err(Error::invalid_field(name, "is computed and cannot be written"));
        }
        let value = normalize(field, value)?;
        fields.insert(name, value);
    }
    Ok(())
}

fn check_required(object: &ObjectDef, fields: &Fields) -> Result<()> {
    for field in object.fields.iter().filter(|field| field.required) {
        if fields.get(&field.name).is_none_or(Value::is_null) {
            return Err(Error::invalid_field(field.name.clone(), "is required"));
        }
    }
    Ok(())
}

struct Job {
    request: WriteRequest,
    reply: oneshot::Sender<Result<Vec<Applied>>>,
}

enum Command {
    Write(Job),
    Reindex(Arc<Metadata>, oneshot::Sender<Result<()>>),
}

/// The chain heads, carried from one transaction to the next.
#[derive(Debug, Clone, Default)]
struct ChainState {
    audit_seq: u64,
    audit_hash: [u8; 32],
    change_seq: u64,
}

pub(crate) struct WriterHandle {
    sender: Option<mpsc::Sender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterHandle {
    /// Closes the queue and waits for the writer thread to finish: the thread
    /// holds the database, so only then is the tenant file free to open again.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            // A writer that panicked has nothing left to release.
            let _ = thread.join();
        }
    }
}

impl WriterHandle {
    pub(crate) fn start(
        tenant: TenantId,
        db: Arc<Database>,
        shared: Arc<Shared>,
        events: broadcast::Sender<Arc<Published>>,
        max_batch: usize,
    ) -> Result<WriterHandle> {
        let mut writer = Writer { db, shared, events, held: Vec::new(), state: ChainState::default(), max_batch: max_batch.max(1) };
        writer.state = writer.load_state()?;
        writer.seed_defaults()?;
        // What is in the file is durable (redb recovers to its last durable commit).
        writer.shared.durable_change.store(writer.state.change_seq, Ordering::Release);
        let (sender, receiver) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name(format!("writer-{tenant}"))
            .spawn(move || writer.run(receiver))
            .map_err(|error| Error::internal(format!("cannot start writer thread: {error}")))?;
        Ok(WriterHandle { sender: Some(sender), thread: Some(thread) })
    }

    pub(crate) fn enqueue(&self, request: WriteRequest) -> oneshot::Receiver<Result<Vec<Applied>>> {
        let (reply, receiver) = oneshot::channel();
        // If the writer is gone the reply sender is dropped and `wait` reports it.
        if let Some(sender) = &self.sender {
            let _ = sender.send(Command::Write(Job { request, reply }));
        }
        receiver
    }

    pub(crate) async fn reindex(&self, metadata: Arc<Metadata>) -> Result<()> {
        let (reply, receiver) = oneshot::channel();
        if let Some(sender) = &self.sender {
            let _ = sender.send(Command::Reindex(metadata, reply));
        }
        receiver.await.unwrap_or_else(|_| Err(Error::internal("the tenant writer stopped")))
    }

    pub(crate) async fn wait(receiver: oneshot::Receiver<Result<Vec<Applied>>>) -> Result<Vec<Applied>> {
        receiver.await.unwrap_or_else(|_| Err(Error::internal("the tenant writer stopped")))
    }

    pub(crate) async fn submit(&self, request: WriteRequest) -> Result<Vec<Applied>> {
        Self::wait(self.enqueue(request)).await
    }
}

/// Creates the tables and checks the on-disk format of a tenant file.
pub(crate) fn initialize(db: &Database, _metadata: &Metadata) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let format = meta.get("format")?.map(|value| value.value().to_vec());
        match format {
            None => {
                meta.insert("format", TENANT_FORMAT.to_le_bytes().as_slice())?;
            }
            Some(bytes) => {
                let version = bytes.try_into().map(u64::from_le_bytes).unwrap_or(u64::MAX);
                if version > TENANT_FORMAT {
                    return Err(Error::internal(format!(
                        "tenant file format {version} is newer than this release supports ({TENANT_FORMAT})"
                    )));
                }
            }
        }
        txn.open_table(INDEX)?;
        txn.open_table(UNIQUE)?;
        txn.open_table(AUDIT)?;
        txn.open_table(AUDIT_BY_RECORD)?;
        txn.open_table(CHANGES)?;
        txn.open_table(PLUGIN_KV)?;
        txn.open_table(TIMERS)?;
        txn.open_table(TIMERS_DUE)?;
        txn.open_table(DEAD_LETTERS)?;
        txn.open_table(RECORD_KEYS)?;
    }
    txn.commit()?;
    Ok(())
}

struct Writer {
    db: Arc<Database>,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Published>>,
    /// Changes of deferred commits, published once a durable commit
    /// covers them: subscribers see only what a crash cannot take back.
    held: Vec<Published>,
    state: ChainState,
    max_batch: usize,
}

impl Writer {
    fn load_state(&self) -> Result<ChainState> {
        let txn = self.db.begin_read()?;
        let audit = txn.open_table(AUDIT)?;
        let changes = txn.open_table(CHANGES)?;
        let mut state = ChainState::default();
        if let Some((seq, bytes)) = audit.last()? {
            let entry: AuditEntry = postcard::from_bytes(bytes.value())?;
            state.audit_seq = seq.value();
            state.audit_hash = entry.hash;
        }
        if let Some((seq, _)) = changes.last()? {
            state.change_seq = seq.value();
        }
        Ok(state)
    }

    /// A new tenant gets a default sales pipeline.
    fn seed_defaults(&mut self) -> Result<()> {
        let seeded = {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(META)?;
            meta.get("default_pipeline")?.is_some()
        };
        let metadata = self.shared.metadata();
        if seeded || metadata.object("pipeline").is_none() {
            return Ok(());
        }
        let pipeline_id = RecordId::generate();
        let stages = [
            ("appointmentscheduled", "Appointment scheduled", 0.2, false, false),
            ("qualifiedtobuy", "Qualified to buy", 0.4, false, false),
            ("presentationscheduled", "Presentation scheduled", 0.6, false, false),
            ("decisionmakerboughtin", "Decision maker bought in", 0.8, false, false),
            ("contractsent", "Contract sent", 0.9, false, false),
            ("closedwon", "Closed won", 1.0, true, true),
            ("closedlost", "Closed lost", 0.0, true, false),
        ];
        let mut mutations = vec![Mutation::Create {
            object: "pipeline".into(),
            fields: Fields::from([
                ("name".into(), Value::Text("Sales pipeline".into())),
                ("is_default".into(), Value::Bool(true)),
            ]),
        }];
        for (position, (key, name, probability, closed, won)) in stages.into_iter().enumerate() {
            mutations.push(Mutation::Create {
                object: "pipeline_stage".into(),
                fields: Fields::from([
                    ("pipeline_id".into(), Value::Id(pipeline_id)),
                    ("key".into(), Value::Text(key.into())),
                    ("name".into(), Value::Text(name.into())),
                    ("position".into(), Value::Int(position as i64)),
                    ("probability".into(), Value::Float(probability)),
                    ("is_closed".into(), Value::Bool(closed)),
                    ("is_won".into(), Value::Bool(won)),
                ]),
            });
        }
        let request = prepare(&metadata, WriteRequest::new(Actor::system(), mutations))?;
        let txn = self.db.begin_write()?;
        let mut state = self.state.clone();
        let published = {
            let mut tx = Tx::open(&txn, &metadata, &mut state)?;
            tx.fixed_first_id = Some(pipeline_id);
            tx.apply(&request, None)?;
            tx.meta.insert("default_pipeline", pipeline_id.to_bytes().as_slice())?;
            tx.published
        };
        txn.commit()?;
        drop(published);
        self.state = state;
        Ok(())
    }

    fn run(mut self, receiver: mpsc::Receiver<Command>) {
        let mut held = None;
        loop {
            let first = match held.take() {
                Some(command) => command,
                None => match receiver.recv() {
                    Ok(command) => command,
                    Err(_) => return,
                },
            };
            let first = match first {
                Command::Reindex(metadata, reply) => {
                    let _ = reply.send(self.reindex(metadata));
                    continue;
                }
                Command::Write(job) => job,
            };
            let mut jobs = vec![first];
            while jobs.len() < self.max_batch {
                match receiver.try_recv() {
                    Ok(Command::Write(job)) => jobs.push(job),
                    // Runs after this batch, so the batch sees one metadata.
                    Ok(command @ Command::Reindex(..)) => {
                        held = Some(command);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_jobs(jobs);
        }
    }

    /// Switches to `metadata`, first building the index entries of fields
    /// that were not indexed under the previous metadata.
    fn reindex(&mut self, metadata: Arc<Metadata>) -> Result<()> {
        let old = self.shared.metadata();
        let txn = self.db.begin_write()?;
        let mut state = self.state.clone();
        {
            let mut tx = Tx::open(&txn, &metadata, &mut state)?;
            for object in &metadata.objects {
                let previous = old.object(&object.name);
                for field in object.fields.iter().filter(|field| field.has_index()) {
                    let before = previous.and_then(|previous| previous.field(&field.name));
                    let same = before.is_some_and(|before| before.has_index() && before.unique == field.unique && before.ty == field.ty);
                    if !same {
                        tx.rebuild_index(object, field)?;
                    }
                }
            }
        }
        txn.commit()?;
        self.state = state;
        *self.shared.metadata.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = metadata;
        Ok(())
    }

    fn commit_jobs(&mut self, mut jobs: Vec<Job>) {
        let unsynced = &self.shared.unsynced;
        if !unsynced.load(Ordering::Acquire) && jobs.iter().all(|job| job.request.mutations.is_empty() && job.request.effects.is_empty()) {
            // Syncs with nothing to make durable: the last commit was.
            for job in jobs {
                let _ = job.reply.send(Ok(Vec::new()));
            }
            return;
        }
        let metadata = self.shared.metadata();
        let hooks = self.shared.hooks();
        // Requests of one actor share one before-write call; after a hook
        // failure that no single request is to blame for, the batch is
        // retried one request per call so the failure stays with its own.
        let mut grouped = true;
        while !jobs.is_empty() {
            let mut txn = match self.db.begin_write() {
                Ok(txn) => txn,
                Err(error) => return reply_all(jobs, Error::from(error)),
            };
            let mut state = self.state.clone();
            let mut outcomes = Vec::with_capacity(jobs.len());
            let mut failure = None;
            let mut regroup = false;
            let published = match Tx::open(&txn, &metadata, &mut state) {
                Ok(mut tx) => {
                    let mut start = 0;
                    while start < jobs.len() {
                        let end = if grouped && hooks.is_some() { group_end(&jobs, start) } else { start + 1 };
                        let requests: Vec<&WriteRequest> = jobs[start..end].iter().map(|job| &job.request).collect();
                        match tx.apply_group(&requests, hooks.as_deref()) {
                            Ok(applied) => outcomes.extend(applied),
                            Err((Some(index), error)) => {
                                failure = Some((start + index, error));
                                break;
                            }
                            Err((None, error)) if end - start == 1 => {
                                failure = Some((start, error));
                                break;
                            }
                            Err((None, _)) => {
                                regroup = true;
                                break;
                            }
                        }
                        start = end;
                    }
                    tx.published
                }
                Err(error) => return reply_all(jobs, error),
            };
            if regroup {
                if let Err(abort_error) = txn.abort() {
                    tracing::warn!(%abort_error, "aborting a batch to retry it request by request");
                }
                grouped = false;
                continue;
            }
            if let Some((index, error)) = failure {
                if let Err(abort_error) = txn.abort() {
                    tracing::warn!(%abort_error, "aborting a failed batch");
                }
                let job = jobs.remove(index);
                let _ = job.reply.send(Err(error));
                continue;
            }
            let mut durable = true;
            if jobs.iter().all(|job| job.request.deferred) {
                match txn.set_durability(redb::Durability::None) {
                    Ok(()) => durable = false,
                    Err(error) => tracing::warn!(%error, "committing deferred writes durably"),
                }
            }
            if let Err(error) = txn.commit() {
                return reply_all(jobs, Error::from(error));
            }
            // A durable commit makes every earlier deferred one durable too.
            self.shared.unsynced.store(!durable, Ordering::Release);
            if durable {
                self.shared.durable_change.store(state.change_seq, Ordering::Release);
            }
            self.state = state;
            if durable {
                for event in self.held.drain(..).chain(published) {
                    // No subscribers is not an error.
                    let _ = self.events.send(Arc::new(event));
                }
            } else {
                self.held.extend(published);
            }
            for (job, applied) in jobs.drain(..).zip(outcomes) {
                let _ = job.reply.send(Ok(applied));
            }
        }
    }
}

/// Most changes one grouped before-write call carries (a bulk request's
/// limit).
const MAX_GROUP_MUTATIONS: usize = MAX_MUTATIONS;

/// The end of the group of requests starting at `start` that share one
/// before-write call: same actor, at most [`MAX_GROUP_MUTATIONS`] mutations,
/// and no record named twice — a second mutation of an id already in the
/// group starts a new group, so a hook's patch never has to be carried over
/// into another request. Upserts find their record by key, so whether two
/// of them meet one record is only known once they are applied:
/// `Tx::apply_group` checks that and the batch is then redone one request
/// per call.
fn group_end(jobs: &[Job], start: usize) -> usize {
    let actor = &jobs[start].request.actor;
    let mut ids: std::collections::HashSet<RecordId> = std::collections::HashSet::new();
    let mut mutations = 0;
    let mut end = start;
    for job in &jobs[start..] {
        let request = &job.request;
        if end > start && (request.actor != *actor || mutations + request.mutations.len() > MAX_GROUP_MUTATIONS) {
            break;
        }
        let mut clash = false;
        let mut named = Vec::new();
        for mutation in &request.mutations {
            match mutation {
                Mutation::Create { .. } | Mutation::Upsert { .. } => {}
                Mutation::Update { id, .. } | Mutation::Delete { id, .. } | Mutation::Restore { id, .. } => {
                    clash |= ids.contains(id);
                    named.push(*id);
                }
            }
        }
        if end > start && clash {
            break;
        }
        ids.extend(named);
        mutations += request.mutations.len();
        end += 1;
    }
    end
}

fn reply_all(jobs: Vec<Job>, error: Error) {
    for job in jobs {
        let _ = job.reply.send(Err(error.clone()));
    }
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

/// A request whose mutations are applied in the transaction; its hooks,
/// effects, audit entries and events are still to come.
struct Staged {
    out: Vec<Applied>,
    /// For each mutation, the range of `Tx::logged` it produced.
    spans: Vec<std::ops::Range<usize>>,
    /// All of the request's range of `Tx::logged`.
    logged: std::ops::Range<usize>,
}

/// A change applied in the transaction whose audit entry and event are
/// still to be written.
struct Logged {
    object: String,
    op: ChangeOp,
    before: Option<Record>,
    after: Record,
}

/// One write transaction with its tables open.
struct Tx<'t> {
    metadata: &'t Metadata,
    records: HashMap<String, Table<'t, u128, &'static [u8]>>,
    txn: &'t WriteTransaction,
    index: Table<'t, &'static [u8], ()>,
    unique: Table<'t, &'static [u8], u128>,
    audit: Table<'t, u64, &'static [u8]>,
    audit_by_record: Table<'t, &'static [u8], ()>,
    changes: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
    record_keys: Table<'t, &'static [u8], &'static [u8]>,
    /// Keys of personal records this transaction has read or made.
    keys: HashMap<Vec<u8>, RecordKey>,
    /// Record keys the current request deletes once its audit is written.
    doomed_keys: Vec<Vec<u8>>,
    state: &'t mut ChainState,
    published: Vec<Published>,
    /// Changes of the current group of requests, logged when the group is
    /// done (after before-write hooks may have patched them).
    logged: Vec<Logged>,
    now: i64,
    /// Id for the first record created (seeding needs to know it up front).
    fixed_first_id: Option<RecordId>,
    /// Who makes the current change: the default source of consent changes.
    actor: String,
    /// Objects whose creates the current group's before-write hooks see:
    /// those records are written once, after the hooks (see `put_deferred`).
    defer_creates: Vec<String>,
    /// Positions in `logged` of creates not written yet.
    deferred: Vec<usize>,
    /// Unique values the deferred creates hold, as the unique table would.
    deferred_unique: HashMap<Vec<u8>, RecordId>,
}

impl<'t> Tx<'t> {
    fn open(txn: &'t WriteTransaction, metadata: &'t Metadata, state: &'t mut ChainState) -> Result<Tx<'t>> {
        Ok(Tx {
            metadata,
            records: HashMap::new(),
            txn,
            index: txn.open_table(INDEX)?,
            unique: txn.open_table(UNIQUE)?,
            audit: txn.open_table(AUDIT)?,
            audit_by_record: txn.open_table(AUDIT_BY_RECORD)?,
            changes: txn.open_table(CHANGES)?,
            meta: txn.open_table(META)?,
            record_keys: txn.open_table(RECORD_KEYS)?,
            keys: HashMap::new(),
            doomed_keys: Vec::new(),
            state,
            published: Vec::new(),
            logged: Vec::new(),
            now: now_ms(),
            fixed_first_id: None,
            actor: String::new(),
            defer_creates: Vec::new(),
            deferred: Vec::new(),
            deferred_unique: HashMap::new(),
        })
    }

    fn table(&mut self, object: &str) -> Result<&mut Table<'t, u128, &'static [u8]>> {
        if !self.records.contains_key(object) {
            let name = records_table(object);
            let table = self.txn.open_table(TableDefinition::<u128, &[u8]>::new(&name))?;
            self.records.insert(object.to_string(), table);
        }
        self.records.get_mut(object).ok_or_else(|| Error::internal("records table vanished"))
    }

    fn load(&mut self, object: &str, id: RecordId) -> Result<Option<Record>> {
        let table = self.table(object)?;
        let bytes = table.get(id.0)?.map(|guard| guard.value().to_vec());
        bytes.map(|bytes| decode_record(id, &bytes)).transpose()
    }

    fn object(&self, name: &str) -> Result<&'t ObjectDef> {
        self.metadata.object(name).ok_or_else(|| Error::invalid(format!("unknown object '{name}'")))
    }

    /// Applies one request on its own.
    fn apply(&mut self, request: &WriteRequest, hooks: Option<&dyn WriteHooks>) -> Result<Vec<Applied>> {
        let mut applied = self.apply_group(&[request], hooks).map_err(|(_, error)| error)?;
        Ok(applied.pop().unwrap_or_default())
    }

    /// Applies requests of one actor with one before-write call over all
    /// their changes: mutations first, then the hooks, then each request's
    /// effects, audit entries and events in request order. A failure says
    /// which request it belongs to, when one does.
    fn apply_group(&mut self, requests: &[&WriteRequest], hooks: Option<&dyn WriteHooks>) -> Result<Vec<Vec<Applied>>, (Option<usize>, Error)> {
        self.logged.clear();
        self.deferred.clear();
        self.deferred_unique.clear();
        self.defer_creates.clear();
        if let Some(hooks) = hooks {
            for request in requests {
                for mutation in &request.mutations {
                    if let Mutation::Create { object, .. } | Mutation::Upsert { object, .. } = mutation
                        && !self.defer_creates.contains(object)
                        && hooks.covers(object, ChangeOp::Created)
                    {
                        self.defer_creates.push(object.clone());
                    }
                }
            }
        }
        let mut staged: Vec<Staged> = Vec::with_capacity(requests.len());
        let mut touched: std::collections::HashSet<RecordId> = std::collections::HashSet::new();
        for (index, request) in requests.iter().enumerate() {
            let done = self.stage(request).map_err(|error| (Some(index), error))?;
            let ids: std::collections::HashSet<RecordId> = self.logged[done.logged.clone()].iter().map(|change| change.after.id).collect();
            if requests.len() > 1 && !touched.is_disjoint(&ids) {
                // Two requests of the group met one record (upserts of one
                // key): no request is at fault; the batch is redone one
                // request per call.
                return Err((None, Error::conflict("requests of one group changed the same record")));
            }
            touched.extend(ids);
            staged.push(done);
        }
        let hooked = match hooks {
            Some(hooks) => self.run_hooks(requests, &staged, hooks)?,
            None => false,
        };
        let owner = |position: usize| staged.iter().position(|staged| staged.logged.contains(&position));
        self.put_deferred().map_err(|(position, error)| (owner(position), error))?;
        let logged = std::mem::take(&mut self.logged);
        let mut out = Vec::with_capacity(requests.len());
        for (index, (request, staged)) in requests.iter().zip(staged).enumerate() {
            out.push(self.finish(request, staged, &logged, hooked).map_err(|error| (Some(index), error))?);
        }
        Ok(out)
    }

    /// Applies a request's mutations; its hooks, effects and logs follow.
    fn stage(&mut self, request: &WriteRequest) -> Result<Staged> {
        let first = self.logged.len();
        let mut out = Vec::with_capacity(request.mutations.len());
        let mut spans = Vec::with_capacity(request.mutations.len());
        for mutation in &request.mutations {
            let start = self.logged.len();
            out.push(self.apply_one(request, mutation)?);
            spans.push(start..self.logged.len());
        }
        Ok(Staged { out, spans, logged: first..self.logged.len() })
    }

    /// Effects, audit entries and events of a staged request.
    fn finish(&mut self, request: &WriteRequest, staged: Staged, logged: &[Logged], hooked: bool) -> Result<Vec<Applied>> {
        let mut out = staged.out;
        if hooked {
            for (applied, span) in out.iter_mut().zip(staged.spans) {
                if let Some(last) = span.last() {
                    applied.record = logged[last].after.clone();
                }
            }
        }
        self.doomed_keys.clear();
        for effect in &request.effects {
            self.apply_effect(request, effect)?;
        }
        for change in &logged[staged.logged] {
            let object = self.object(&change.object)?;
            self.write_log(request, object, change.before.as_ref(), &change.after, change.op)?;
        }
        for key_id in std::mem::take(&mut self.doomed_keys) {
            self.record_keys.remove(key_id.as_slice())?;
            self.keys.remove(&key_id);
        }
        Ok(out)
    }

    /// Calls the before-write hooks once with the changes of every staged
    /// request and writes back what they patched; says whether they ran.
    fn run_hooks(&mut self, requests: &[&WriteRequest], staged: &[Staged], hooks: &dyn WriteHooks) -> Result<bool, (Option<usize>, Error)> {
        let owner = |position: usize| staged.iter().position(|staged| staged.logged.contains(&position));
        let mut positions = Vec::new();
        let mut changes = Vec::new();
        for (position, logged) in self.logged.iter().enumerate() {
            if hooks.covers(&logged.object, logged.op) {
                positions.push(position);
                changes.push(PendingChange::new(&logged.object, logged.op, logged.before.as_ref(), &logged.after));
            }
        }
        if changes.is_empty() {
            return Ok(false);
        }
        let request_id = match requests {
            [only] => only.request_id.as_deref(),
            _ => None,
        };
        let call = HookCall { actor: &requests[0].actor, request_id };
        if let Err(failure) = hooks.before_write(call, &mut changes) {
            let owner = failure.change.and_then(|change| positions.get(change).copied()).and_then(owner);
            return Err((owner, failure.error));
        }
        // Where each record's changes are in `logged`.
        let mut changes_of: HashMap<RecordId, Vec<usize>> = HashMap::new();
        for (position, logged) in self.logged.iter().enumerate() {
            changes_of.entry(logged.after.id).or_default().push(position);
        }
        // What the hooks changed: a value set that differs, a field cleared
        // that was there. A field a later change of the same record in this
        // group sets itself keeps that change's value, as if the changes ran
        // one after another, each hook after its own change.
        let patches: Vec<(usize, Fields)> = positions
            .into_iter()
            .zip(changes)
            .filter_map(|(position, change)| {
                let after = change.after;
                let newest = changes_of.get(&after.id).and_then(|positions| positions.last()).copied().unwrap_or(position);
                let latest = &self.logged[newest].after;
                let mut patch = change.patch;
                patch.retain(|name, value| {
                    let set = match value {
                        Value::Null => after.fields.get(name).is_some_and(|old| !old.is_null()),
                        value => after.fields.get(name) != Some(value),
                    };
                    set && after.get(name) == latest.get(name)
                });
                (!patch.is_empty() && !matches!(change.op, ChangeOp::Deleted)).then_some((position, patch))
            })
            .collect();
        for (position, patch) in patches {
            let same_record = changes_of.get(&self.logged[position].after.id).map(Vec::as_slice).unwrap_or_default();
            self.patch(position, same_record, patch).map_err(|error| (owner(position), error))?;
        }
        Ok(true)
    }

    /// Writes the creates whose first write waited for the hooks: unique
    /// values are checked again (a hook may have patched them, and records
    /// of the group are now checked against each other in the table) and
    /// each record is written once. A failure names its `logged` position.
    fn put_deferred(&mut self) -> Result<(), (usize, Error)> {
        // From here the unique table alone holds the group's values.
        self.deferred_unique.clear();
        self.write_deferred(true)
    }

    /// Writes the deferred creates as `logged` has them, checking their
    /// unique values against the table first when `check` is set.
    fn write_deferred(&mut self, check: bool) -> Result<(), (usize, Error)> {
        let deferred = std::mem::take(&mut self.deferred);
        // Borrowed aside, so the records are written without a copy.
        let logged = std::mem::take(&mut self.logged);
        let mut outcome = Ok(());
        for position in deferred {
            let change = &logged[position];
            let written = self.object(&change.object).and_then(|object| {
                if check {
                    self.check_unique(object, None, &change.after)?;
                }
                self.put(object, None, &change.after)
            });
            if let Err(error) = written {
                outcome = Err((position, error));
                break;
            }
        }
        self.logged = logged;
        outcome
    }

    /// Writes every deferred create now, as it stands: for a change that
    /// must see them in the tables (an upsert whose key one of them holds).
    /// Hook patches then write them a second time.
    fn flush_deferred(&mut self) -> Result<()> {
        self.write_deferred(false).map_err(|(_, error)| error)?;
        self.deferred_unique.clear();
        Ok(())
    }

    /// Applies a hook's patch to the record of `logged[position]`: the
    /// values are checked like client input and the kernel's rules run
    /// again; the change keeps its version. `same_record` lists the
    /// positions in `logged` of every change of that record, in order.
    fn patch(&mut self, position: usize, same_record: &[usize], mut patch: Fields) -> Result<()> {
        let object = self.object(&self.logged[position].object)?;
        normalize_fields(object, &mut patch)?;
        for (name, value) in &patch {
            if value.is_null() && object.field(name).is_some_and(|field| field.required) {
                return Err(Error::invalid_field(name.clone(), "is required and cannot be cleared"));
            }
        }
        // The record as this transaction last wrote it: the newest logged state.
        let newest = same_record.last().copied().ok_or_else(|| Error::internal("patched record vanished"))?;
        // Its fields are taken out while the checks run and put back, or
        // replaced by the patched ones, after.
        let head = &self.logged[newest].after;
        let current = Record {
            id: head.id,
            version: head.version,
            created_at: head.created_at,
            updated_at: head.updated_at,
            deleted_at: head.deleted_at,
            fields: std::mem::take(&mut self.logged[newest].after.fields),
        };
        let mut after = current.clone();
        for (name, value) in &patch {
            if value.is_null() {
                after.fields.remove(name);
            } else {
                after.fields.insert(name.clone(), value.clone());
            }
        }
        if let Err(error) = self.check_patched(object, newest, &current, &mut after, &patch) {
            self.logged[newest].after.fields = current.fields;
            return Err(error);
        }
        // Later changes of the same record in this request build on it; the
        // newest takes the patched fields themselves.
        for &later in same_record.iter().filter(|&&later| later >= position && later != newest) {
            self.logged[later].after.fields = after.fields.clone();
        }
        self.logged[newest].after.fields = after.fields;
        Ok(())
    }

    /// The checks and writes of a patched record: the kernel's rules,
    /// references, and its unique values (held for a create still waiting
    /// for its first write, else checked and written).
    fn check_patched(&mut self, object: &ObjectDef, newest: usize, current: &Record, after: &mut Record, patch: &Fields) -> Result<()> {
        self.object_rules(object, Some(current), after, patch)?;
        self.check_references(object, Some(current), after)?;
        if self.deferred.binary_search(&newest).is_ok() {
            // A create still waiting for its first write: checked and
            // written in `put_deferred`; meanwhile it holds its new values.
            for field in object.unique_fields() {
                let (old, new) = (current.get(&field.name), after.get(&field.name));
                if old != new {
                    if !old.is_null() {
                        self.deferred_unique.remove(&encoding::unique_key(&object.name, &field.name, old));
                    }
                    if !new.is_null() {
                        self.deferred_unique.insert(encoding::unique_key(&object.name, &field.name, new), after.id);
                    }
                }
            }
        } else {
            self.check_unique(object, Some(current), after)?;
            self.put(object, Some(current), after)?;
        }
        Ok(())
    }

    fn apply_effect(&mut self, request: &WriteRequest, effect: &Effect) -> Result<()> {
        match effect {
            Effect::KvSet { plugin, key, value } => {
                let mut table = self.txn.open_table(PLUGIN_KV)?;
                table.insert(plugin_key(plugin, key).as_slice(), value.as_slice())?;
            }
            Effect::KvDelete { plugin, key } => {
                let mut table = self.txn.open_table(PLUGIN_KV)?;
                table.remove(plugin_key(plugin, key).as_slice())?;
            }
            Effect::TimerSet { plugin, key, at, payload } => {
                self.remove_timer(plugin, key, None)?;
                let timer = crate::plugin_state::Timer { plugin: plugin.clone(), key: key.clone(), at: *at, payload: payload.clone() };
                self.txn.open_table(TIMERS)?.insert(plugin_key(plugin, key).as_slice(), postcard::to_stdvec(&timer)?.as_slice())?;
                self.txn.open_table(TIMERS_DUE)?.insert(due_key(*at, plugin, key).as_slice(), ())?;
            }
            Effect::TimerCancel { plugin, key, only_at } => self.remove_timer(plugin, key, *only_at)?,
            Effect::Cursor { plugin, seq } => {
                self.meta.insert(cursor_key(plugin).as_str(), seq.to_le_bytes().as_slice())?;
            }
            Effect::DeadLetter { letter } => {
                let mut table = self.txn.open_table(DEAD_LETTERS)?;
                let seq = table.last()?.map(|(key, _)| key.value()).unwrap_or(0) + 1;
                let mut letter = letter.clone();
                letter.seq = seq;
                let bytes = serde_json::to_vec(&letter).map_err(|e| Error::internal(e.to_string()))?;
                table.insert(seq, bytes.as_slice())?;
            }
            Effect::DeadLetterRemove { seq } => {
                self.txn.open_table(DEAD_LETTERS)?.remove(*seq)?;
            }
            Effect::Audit { object, record_id, op, diff } => {
                self.append_audit(request.actor.clone(), request.request_id.clone(), object, *record_id, *op, diff.clone())?;
            }
            Effect::DeleteRecordKeys { records } => {
                self.doomed_keys.extend(records.iter().map(|(object, id)| seal::key_id(object, *id)));
            }
        }
        Ok(())
    }

    fn remove_timer(&mut self, plugin: &str, key: &str, only_at: Option<i64>) -> Result<()> {
        let mut timers = self.txn.open_table(TIMERS)?;
        let existing = timers.get(plugin_key(plugin, key).as_slice())?.map(|bytes| bytes.value().to_vec());
        let Some(bytes) = existing else { return Ok(()) };
        let timer: crate::plugin_state::Timer = postcard::from_bytes(&bytes)?;
        if only_at.is_some_and(|at| at != timer.at) {
            return Ok(());
        }
        timers.remove(plugin_key(plugin, key).as_slice())?;
        self.txn.open_table(TIMERS_DUE)?.remove(due_key(timer.at, plugin, key).as_slice())?;
        Ok(())
    }

    /// Drops every entry of `field`'s index and writes it anew from the
    /// records; a unique field with duplicate values fails with CONFLICT.
    fn rebuild_index(&mut self, object: &ObjectDef, field: &crate::metadata::FieldDef) -> Result<()> {
        for table_name in ["index", "unique"] {
            let prefix = encoding::unique_key(&object.name, &field.name, &Value::Null);
            let prefix = &prefix[..object.name.len() + field.name.len() + 2];
            let end = encoding::prefix_end(prefix);
            if table_name == "index" {
                let keys: Vec<Vec<u8>> =
                    self.index.range(prefix..end.as_slice())?.map(|entry| entry.map(|(key, _)| key.value().to_vec())).collect::<Result<_, _>>()?;
                for key in keys {
                    self.index.remove(key.as_slice())?;
                }
            } else {
                let keys: Vec<Vec<u8>> =
                    self.unique.range(prefix..end.as_slice())?.map(|entry| entry.map(|(key, _)| key.value().to_vec())).collect::<Result<_, _>>()?;
                for key in keys {
                    self.unique.remove(key.as_slice())?;
                }
            }
        }
        let records: Vec<(u128, Vec<u8>)> = {
            let table = self.table(&object.name)?;
            table.iter()?.map(|entry| entry.map(|(id, bytes)| (id.value(), bytes.value().to_vec()))).collect::<Result<_, _>>()?
        };
        for (id, bytes) in records {
            let record = decode_record(RecordId(id), &bytes)?;
            let value = record.get(&field.name);
            self.index.insert(encoding::index_key(&object.name, &field.name, value, record.id).as_slice(), ())?;
            if field.unique && !value.is_null() {
                let key = encoding::unique_key(&object.name, &field.name, value);
                if let Some(holder) = self.unique.insert(key.as_slice(), record.id.0)?
                    && holder.value() != record.id.0
                {
                    return Err(Error {
                        kind: ErrorKind::Conflict,
                        message: format!(
                            "{}.{} cannot be unique: {} {} and {} have the same value",
                            object.name,
                            field.name,
                            object.name,
                            RecordId(holder.value()),
                            record.id
                        ),
                        field: Some(field.name.clone()),
                    });
                }
            }
        }
        Ok(())
    }

    fn apply_one(&mut self, request: &WriteRequest, mutation: &Mutation) -> Result<Applied> {
        self.actor.clone_from(&request.actor.0);
        match mutation {
            Mutation::Create { object, fields } => self.create(request, self.object(object)?, fields),
            Mutation::Update { object, id, fields, expected_version } => {
                self.update(request, self.object(object)?, *id, fields, *expected_version)
            }
            Mutation::Upsert { object, key, fields } => {
                let def = self.object(object)?;
                let value = fields.get(key).cloned().unwrap_or(Value::Null);
                let unique_key = encoding::unique_key(object, key, &value);
                if self.deferred_unique.contains_key(&unique_key) {
                    // The key's record is a create of this group not written yet.
                    self.flush_deferred()?;
                }
                let existing = self.unique.get(unique_key.as_slice())?.map(|id| id.value());
                match existing {
                    Some(id) => {
                        let id = RecordId(id);
                        let current = self.load(object, id)?;
                        let restored = current.as_ref().is_some_and(Record::is_deleted);
                        if restored {
                            self.restore(request, def, id)?;
                        }
                        let mut applied = self.update(request, def, id, fields, None)?;
                        // Bringing the record back is a change even when no field differs.
                        if restored && applied.op.is_none() {
                            applied.op = Some(ChangeOp::Restored);
                        }
                        Ok(applied)
                    }
                    None => {
                        check_required(def, fields)?;
                        match &request.guard {
                            Some(guard) => {
                                let mut fields = fields.clone();
                                guard.fill_owner(object, &mut fields);
                                self.create(request, def, &fields)
                            }
                            None => self.create(request, def, fields),
                        }
                    }
                }
            }
            Mutation::Delete { object, id, expected_version } => {
                self.delete(request, self.object(object)?, *id, *expected_version)
            }
            Mutation::Restore { object, id } => self.restore(request, self.object(object)?, *id),
        }
    }

    fn create(&mut self, request: &WriteRequest, object: &ObjectDef, fields: &Fields) -> Result<Applied> {
        let id = self.fixed_first_id.take().unwrap_or_else(RecordId::generate);
        let mut record = Record {
            id,
            version: 1,
            created_at: self.now,
            updated_at: self.now,
            deleted_at: None,
            fields: fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        self.object_rules(object, None, &mut record, fields)?;
        self.check_references(object, None, &record)?;
        self.check_unique(object, None, &record)?;
        if self.defer_creates.contains(&object.name) {
            // Written once the hooks have seen it (`put_deferred`).
            for field in object.unique_fields() {
                let value = record.get(&field.name);
                if !value.is_null() {
                    self.deferred_unique.insert(encoding::unique_key(&object.name, &field.name, value), record.id);
                }
            }
            self.deferred.push(self.logged.len());
        } else {
            self.put(object, None, &record)?;
        }
        self.log(request, object, None, &record, ChangeOp::Created)?;
        Ok(Applied { object: object.name.clone(), record, op: Some(ChangeOp::Created) })
    }

    fn existing(&mut self, object: &ObjectDef, id: RecordId, expected_version: Option<u64>) -> Result<Record> {
        let record = self
            .load(&object.name, id)?
            .ok_or_else(|| Error::not_found(format!("no {} with id {id}", object.name)))?;
        if let Some(expected) = expected_version
            && expected != record.version
        {
            return Err(Error::conflict(format!(
                "{} {id} is at version {}, not the expected version {expected}",
                object.name, record.version
            )));
        }
        Ok(record)
    }

    fn update(
        &mut self,
        request: &WriteRequest,
        object: &ObjectDef,
        id: RecordId,
        patch: &Fields,
        expected_version: Option<u64>,
    ) -> Result<Applied> {
        let before = self.existing(object, id, expected_version)?;
        if before.is_deleted() {
            return Err(Error::not_found(format!("{} {id} is deleted; restore it first", object.name)));
        }
        if let Some(guard) = &request.guard {
            guard.check_existing(&object.name, Operation::Update, &before)?;
        }
        let mut after = before.clone();
        for (name, value) in patch {
            if value.is_null() {
                after.fields.remove(name);
            } else {
                after.fields.insert(name.clone(), value.clone());
            }
        }
        self.object_rules(object, Some(&before), &mut after, patch)?;
        if after.fields == before.fields {
            return Ok(Applied { object: object.name.clone(), record: before, op: None });
        }
        self.check_references(object, Some(&before), &after)?;
        self.check_unique(object, Some(&before), &after)?;
        after.version += 1;
        after.updated_at = self.now.max(before.updated_at);
        self.put(object, Some(&before), &after)?;
        self.log(request, object, Some(&before), &after, ChangeOp::Updated)?;
        Ok(Applied { object: object.name.clone(), record: after, op: Some(ChangeOp::Updated) })
    }

    fn delete(&mut self, request: &WriteRequest, object: &ObjectDef, id: RecordId, expected: Option<u64>) -> Result<Applied> {
        let before = self.existing(object, id, expected)?;
        if before.is_deleted() {
            return Err(Error::not_found(format!("{} {id} is already deleted", object.name)));
        }
        if let Some(guard) = &request.guard {
            guard.check_existing(&object.name, Operation::Delete, &before)?;
        }
        let mut after = before.clone();
        after.deleted_at = Some(self.now);
        after.version += 1;
        after.updated_at = self.now.max(before.updated_at);
        self.put(object, Some(&before), &after)?;
        self.log(request, object, Some(&before), &after, ChangeOp::Deleted)?;
        Ok(Applied { object: object.name.clone(), record: after, op: Some(ChangeOp::Deleted) })
    }

    fn restore(&mut self, request: &WriteRequest, object: &ObjectDef, id: RecordId) -> Result<Applied> {
        let before = self.existing(object, id, None)?;
        if !before.is_deleted() {
            return Err(Error::invalid(format!("{} {id} is not deleted", object.name)));
        }
        if let Some(guard) = &request.guard {
            guard.check_existing(&object.name, Operation::Delete, &before)?;
        }
        let mut after = before.clone();
        after.deleted_at = None;
        after.version += 1;
        after.updated_at = self.now.max(before.updated_at);
        self.put(object, Some(&before), &after)?;
        self.log(request, object, Some(&before), &after, ChangeOp::Restored)?;
        Ok(Applied { object: object.name.clone(), record: after, op: Some(ChangeOp::Restored) })
    }

    /// Kernel rules of standard objects. Contacts stamp consent changes; an
    /// outbound message is `queued` unless given a status. A deal follows its pipeline: the
    /// stage must belong to it, the probability follows the stage unless set
    /// explicitly, and the expected amount is amount × probability.
    fn object_rules(&mut self, object: &ObjectDef, before: Option<&Record>, record: &mut Record, patch: &Fields) -> Result<()> {
        if object.name == "contact" {
            consent_rules(self.now, &self.actor, before, record, patch);
            return Ok(());
        }
        if object.name == "outbound_message" {
            // A message written without a status joins the queue (the dev
            // mailbox, or the transport's queue when one is configured).
            if record.get("status").is_null() {
                record.fields.insert("status".into(), Value::Text("queued".into()));
            }
            return Ok(());
        }
        if object.name != "deal" {
            return Ok(());
        }
        if record.get("pipeline_id").is_null()
            && let Some(bytes) = self.meta.get("default_pipeline")?
            && let Ok(raw) = <[u8; 16]>::try_from(bytes.value())
        {
            record.fields.insert("pipeline_id".into(), Value::Id(RecordId::from_bytes(raw)));
        }
        let pipeline_changed = before.is_none_or(|b| b.get("pipeline_id") != record.get("pipeline_id"));
        let stage_changed = before.is_none_or(|b| b.get("stage") != record.get("stage"));
        if let Some(pipeline) = record.get("pipeline_id").as_id()
            && (pipeline_changed || stage_changed)
        {
            let stages = self.stages_of(pipeline)?;
            if !stages.is_empty() {
                let chosen = match record.get("stage").as_text() {
                    None => stages.first(),
                    Some(key) => stages.iter().find(|stage| stage.get("key").as_text() == Some(key)),
                };
                let Some(stage) = chosen else {
                    let keys: Vec<&str> = stages.iter().filter_map(|stage| stage.get("key").as_text()).collect();
                    return Err(Error::invalid_field(
                        "stage",
                        format!(
                            "'{}' is not a stage of the deal's pipeline (one of {})",
                            record.get("stage").as_text().unwrap_or_default(),
                            keys.join(", ")
                        ),
                    ));
                };
                record.fields.insert("stage".into(), stage.get("key").clone());
                if !patch.contains_key("probability") {
                    record.fields.insert("probability".into(), stage.get("probability").clone());
                }
            }
        }
        let expected = match (record.get("amount").as_f64(), record.get("probability").as_f64()) {
            (Some(amount), Some(probability)) => Value::Float(amount * probability),
            _ => Value::Null,
        };
        if expected.is_null() {
            record.fields.remove("expected_amount");
        } else {
            record.fields.insert("expected_amount".into(), expected);
        }
        Ok(())
    }

    fn stages_of(&mut self, pipeline: RecordId) -> Result<Vec<Record>> {
        let prefix = encoding::unique_key("pipeline_stage", "pipeline_id", &Value::Id(pipeline));
        let end = encoding::prefix_end(&prefix);
        let mut ids = Vec::new();
        for entry in self.index.range(prefix.as_slice()..end.as_slice())? {
            let (key, _) = entry?;
            ids.extend(encoding::id_from_index_key(key.value()));
        }
        let mut stages = Vec::new();
        for id in ids {
            if let Some(stage) = self.load("pipeline_stage", id)?
                && !stage.is_deleted()
            {
                stages.push(stage);
            }
        }
        stages.sort_by_key(|stage| match stage.get("position") {
            Value::Int(position) => *position,
            _ => i64::MAX,
        });
        Ok(stages)
    }

    fn check_references(&mut self, object: &ObjectDef, before: Option<&Record>, record: &Record) -> Result<()> {
        for field in &object.fields {
            let FieldType::Ref(target) = &field.ty else { continue };
            let value = record.get(&field.name);
            let Some(id) = value.as_id() else { continue };
            if before.is_some_and(|before| before.get(&field.name) == value) {
                continue;
            }
            let exists = if target == &object.name && id == record.id {
                true
            } else {
                self.load(target, id)?.is_some_and(|target| !target.is_deleted())
            };
            if !exists {
                return Err(Error {
                    kind: ErrorKind::NotFound,
                    message: format!("{}: no {target} with id {id}", field.name),
                    field: Some(field.name.clone()),
                });
            }
        }
        Ok(())
    }

    fn check_unique(&mut self, object: &ObjectDef, before: Option<&Record>, record: &Record) -> Result<()> {
        for field in object.unique_fields() {
            let value = record.get(&field.name);
            if value.is_null() || before.is_some_and(|before| before.get(&field.name) == value) {
                continue;
            }
            let key = encoding::unique_key(&object.name, &field.name, value);
            let holder = match self.deferred_unique.get(&key) {
                Some(id) => Some(id.0),
                None => self.unique.get(key.as_slice())?.map(|id| id.value()),
            };
            if let Some(holder) = holder
                && holder != record.id.0
            {
                return Err(Error {
                    kind: ErrorKind::Conflict,
                    message: format!("{}: {} {} already has this value", field.name, object.name, RecordId(holder)),
                    field: Some(field.name.clone()),
                });
            }
        }
        Ok(())
    }

    /// Writes the record and brings its index entries in line with it.
    fn put(&mut self, object: &ObjectDef, before: Option<&Record>, after: &Record) -> Result<()> {
        let bytes = encode_record(after)?;
        self.table(&object.name)?.insert(after.id.0, bytes.as_slice())?;
        for field in object.fields.iter().filter(|field| field.has_index()) {
            let old = before.map(|before| before.get(&field.name));
            let new = after.get(&field.name);
            if old == Some(new) {
                continue;
            }
            // Nulls are indexed too (sorting last) so an index walk in field
            // order visits every record; unique values exclude null.
            if let Some(old) = old {
                self.index.remove(encoding::index_key(&object.name, &field.name, old, after.id).as_slice())?;
                if field.unique && !old.is_null() {
                    self.unique.remove(encoding::unique_key(&object.name, &field.name, old).as_slice())?;
                }
            }
            self.index.insert(encoding::index_key(&object.name, &field.name, new, after.id).as_slice(), ())?;
            if field.unique && !new.is_null() {
                self.unique.insert(encoding::unique_key(&object.name, &field.name, new).as_slice(), after.id.0)?;
            }
        }
        let old_updated = before.map(|before| before.updated_at);
        if old_updated != Some(after.updated_at) {
            if let Some(old) = old_updated {
                self.index.remove(encoding::index_key(&object.name, "updated_at", &Value::Int(old), after.id).as_slice())?;
            }
            self.index.insert(
                encoding::index_key(&object.name, "updated_at", &Value::Int(after.updated_at), after.id).as_slice(),
                (),
            )?;
        }
        Ok(())
    }

    fn log(&mut self, _request: &WriteRequest, object: &ObjectDef, before: Option<&Record>, after: &Record, op: ChangeOp) -> Result<()> {
        self.logged.push(Logged { object: object.name.clone(), op, before: before.cloned(), after: after.clone() });
        Ok(())
    }

    /// The key sealing the audit values of a personal record, made and
    /// stored on its first audited change. A record just created cannot
    /// have one yet, so `created` skips the lookup.
    fn record_key(&mut self, object: &str, id: RecordId, created: bool) -> Result<RecordKey> {
        let key_id = seal::key_id(object, id);
        if let Some(key) = self.keys.get(&key_id) {
            return Ok(key.clone());
        }
        let stored = if created {
            None
        } else {
            self.record_keys.get(key_id.as_slice())?.and_then(|bytes| RecordKey::from_bytes(bytes.value()))
        };
        let key = match stored {
            Some(key) => key,
            None => {
                let key = RecordKey::generate();
                self.record_keys.insert(key_id.as_slice(), key.as_bytes().as_slice())?;
                key
            }
        };
        self.keys.insert(key_id, key.clone());
        Ok(key)
    }

    /// Appends one entry to the tenant's audit chain.
    fn append_audit(
        &mut self,
        actor: Actor,
        request_id: Option<String>,
        object: &str,
        record_id: RecordId,
        op: ChangeOp,
        diff: Vec<FieldChange>,
    ) -> Result<()> {
        let seq = self.state.audit_seq + 1;
        let mut entry = AuditEntry {
            seq,
            at: self.now,
            actor,
            request_id,
            object: object.to_string(),
            record_id,
            op,
            diff,
            prev_hash: self.state.audit_hash,
            hash: [0; 32],
        };
        entry.hash = entry.compute_hash();
        self.audit.insert(seq, postcard::to_stdvec(&entry)?.as_slice())?;
        let mut by_record = object.as_bytes().to_vec();
        by_record.push(0);
        by_record.extend_from_slice(&record_id.to_bytes());
        by_record.extend_from_slice(&seq.to_be_bytes());
        self.audit_by_record.insert(by_record.as_slice(), ())?;
        self.state.audit_seq = seq;
        self.state.audit_hash = entry.hash;
        Ok(())
    }

    /// Writes the audit entries and change events of the request's changes.
    fn write_log(&mut self, request: &WriteRequest, object: &ObjectDef, before: Option<&Record>, after: &Record, op: ChangeOp) -> Result<()> {
        let mut diff = Vec::new();
        if matches!(op, ChangeOp::Created | ChangeOp::Updated) {
            for field in &object.fields {
                let old = before.map(|before| before.get(&field.name)).unwrap_or(&Value::Null);
                let new = after.get(&field.name);
                if old != new {
                    diff.push(FieldChange { field: field.name.clone(), before: old.clone(), after: new.clone() });
                }
            }
        }
        if seal::is_personal(&object.name) && !diff.is_empty() {
            let sealer = self.record_key(&object.name, after.id, op == ChangeOp::Created)?.sealer();
            for change in &mut diff {
                change.before = sealer.seal(&object.name, after.id, &change.field, &change.before)?;
                change.after = sealer.seal(&object.name, after.id, &change.field, &change.after)?;
            }
        }
        self.append_audit(request.actor.clone(), request.request_id.clone(), &object.name, after.id, op, diff)?;

        let change_seq = self.state.change_seq + 1;
        let event = ChangeEvent {
            seq: change_seq,
            at: self.now,
            object: object.name.clone(),
            record_id: after.id,
            op,
            version: after.version,
        };
        self.changes.insert(change_seq, postcard::to_stdvec(&event)?.as_slice())?;
        self.state.change_seq = change_seq;
        self.published.push(Published { event, record: after.clone() });
        Ok(())
    }
}
