//! What a plugin costs: the latency one before-write hook adds to a single
//! write, the per-record cost of a batched hook in a 1,000-record bulk
//! write, the cost of a fresh instance, and start-up with a warm compiled
//! cache. Prints percentiles; `cargo bench -p crm-plugin-host --bench hooks`.
//!
//! The patcher test plugin is the hook: it reads three fields of each
//! change and patches up to three. What it adds is measured against a
//! tenant with the same fields that is sent the records as the patcher
//! leaves them, without the hook: the cost of the hook, not of the data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_core::plugin::{EnableOptions, HookCall, HookFailure, PendingChange, PluginRuntime, WriteHooks};
use crm_core::{Actor, Fields, Kernel, Mutation, Record, StoreOptions, Value, WriteRequest};
use crm_plugin_host::PluginHost;

/// The server's allocator (kernel/server/src/main.rs), so the figures are
/// the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!("{name:<58} n={:<6} p50 {:>9.1} µs   p99 {:>9.1} µs", samples.len(), micros(p50), micros(p99));
    (p50, p99)
}

/// Prints how much later percentiles `with` come than `without`.
fn difference(label: &str, with: (Duration, Duration), without: (Duration, Duration)) {
    println!(
        "{label:<58} p50 {:>+9.1} µs   p99 {:>+9.1} µs",
        micros(with.0) - micros(without.0),
        micros(with.1) - micros(without.1)
    );
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn contact(i: usize) -> Mutation {
    Mutation::Create {
        object: "contact".into(),
        fields: Fields::from([
            ("first_name".to_string(), Value::Text(format!("person {i}"))),
            ("title".to_string(), Value::Text(if i % 3 == 0 { "VP Sales".into() } else { "Engineer".into() })),
            ("source".to_string(), Value::Text("referral".into())),
        ]),
    }
}

/// A tenant's before-write hooks, timed: how long each call takes on the
/// writer thread, inside the write transaction, is what the hooks add to the
/// writes that wait on that transaction.
struct Timed {
    inner: Arc<dyn WriteHooks>,
    calls: std::sync::Mutex<Vec<Duration>>,
}

impl Timed {
    fn install(kernel: &Kernel, host: &PluginHost, tenant: &crm_core::TenantId) -> Arc<Timed> {
        let active = kernel.active_plugins(tenant).unwrap();
        let inner = host.write_hooks(tenant, &active).expect("a before-write hook");
        let timed = Arc::new(Timed { inner, calls: Default::default() });
        kernel.tenant(tenant).unwrap().set_hooks(Some(timed.clone()));
        timed
    }

    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl WriteHooks for Timed {
    fn covers(&self, object: &str, op: crm_core::ChangeOp) -> bool {
        self.inner.covers(object, op)
    }

    fn before_write(&self, call: HookCall<'_>, changes: &mut [PendingChange<'_>]) -> Result<(), HookFailure> {
        let started = Instant::now();
        let outcome = self.inner.before_write(call, changes);
        self.calls.lock().unwrap().push(started.elapsed());
        outcome
    }
}

/// One durable write per mutation, each timed.
async fn single_writes(kernel: &Kernel, tenant: &crm_core::TenantId, mutations: &[Mutation]) -> Vec<Duration> {
    let store = kernel.tenant(tenant).unwrap();
    let mut samples = Vec::with_capacity(mutations.len());
    for mutation in mutations {
        let started = Instant::now();
        store.write(WriteRequest::new(Actor::cli(), vec![mutation.clone()])).await.unwrap();
        samples.push(started.elapsed());
    }
    samples
}

/// One durable write of all the mutations, timed.
async fn bulk_write(kernel: &Kernel, tenant: &crm_core::TenantId, mutations: &[Mutation]) -> Duration {
    let store = kernel.tenant(tenant).unwrap();
    let started = Instant::now();
    store.write(WriteRequest::new(Actor::cli(), mutations.to_vec())).await.unwrap();
    started.elapsed()
}

/// The creates as the hook leaves them.
fn patched(hooks: &dyn WriteHooks, mutations: &[Mutation]) -> Vec<Mutation> {
    let records: Vec<Record> = mutations.iter().map(created).collect();
    let mut changes: Vec<PendingChange> = records.iter().map(pending).collect();
    hooks.before_write(call_of(&Actor::cli()), &mut changes).unwrap();
    changes
        .iter()
        .map(|change| Mutation::Create {
            object: change.object.to_owned(),
            fields: change.fields().map(|(name, value)| (name.clone(), value.clone())).collect(),
        })
        .collect()
}

/// The record a contact create writes.
fn created(mutation: &Mutation) -> Record {
    let Mutation::Create { fields, .. } = mutation else { unreachable!("creates only") };
    Record { id: crm_core::RecordId::generate(), version: 1, created_at: 0, updated_at: 0, deleted_at: None, fields: fields.clone() }
}

/// The change a hook sees for the create of `record`.
fn pending(record: &Record) -> PendingChange<'_> {
    PendingChange::new("contact", crm_core::ChangeOp::Created, None, record)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = Arc::new(Kernel::open(dir.path(), StoreOptions::default()).unwrap());
    let cache = dir.path().join("plugin-cache");
    let host = PluginHost::new(&kernel, Some(&cache)).unwrap();
    kernel.set_runtime(host.clone());
    let wasm = std::fs::read(crm_plugin_artifacts::test_plugin("patcher")).unwrap();
    let started = Instant::now();
    kernel.install_plugin(&wasm).unwrap();
    println!("{:<58} {:>9.1} ms", "install (compile with cranelift, write the cache)", started.elapsed().as_secs_f64() * 1e3);

    kernel.install_plugin(&std::fs::read(crm_plugin_artifacts::test_plugin("validator")).unwrap()).unwrap();
    let (plain, _) = kernel.create_tenant("plain").unwrap();
    // A second tenant without plugins: how far two tenants' write latencies
    // differ with no plugin at all.
    let (control, _) = kernel.create_tenant("control").unwrap();
    let (checked, _) = kernel.create_tenant("checked").unwrap();
    kernel.enable_plugin(&checked.id, "validator", EnableOptions::default()).await.unwrap();
    let (hooked, _) = kernel.create_tenant("hooked").unwrap();
    kernel.enable_plugin(&hooked.id, "patcher", EnableOptions::default()).await.unwrap();
    // The patcher's fields without its hook: sent what the hook would make.
    let (prepatched, _) = kernel.create_tenant("prepatched").unwrap();
    kernel.enable_plugin(&prepatched.id, "patcher", EnableOptions::default()).await.unwrap();
    kernel.tenant(&prepatched.id).unwrap().set_hooks(None);

    // The hook alone, as the writer calls it: one change per call, and a
    // 1,000-change batch.
    let active = kernel.active_plugins(&hooked.id).unwrap();
    let hooks = host.write_hooks(&hooked.id, &active).expect("patcher has a before-write hook");
    let record = |i: usize| created(&contact(i));
    let singles: Vec<Mutation> = (0..100).map(contact).collect();
    let bulk: Vec<Mutation> = (0..1000).map(contact).collect();
    let (patched_singles, patched_bulk) = (patched(hooks.as_ref(), &singles), patched(hooks.as_ref(), &bulk));
    let actor = Actor::cli();
    let blocking = tokio::task::spawn_blocking(move || {
        for i in 0..200 {
            hooks.before_write(call_of(&actor), &mut [pending(&record(i))]).unwrap();
        }
        let mut one = Vec::new();
        for i in 0..5000 {
            let record = record(i);
            let mut changes = [pending(&record)];
            let started = Instant::now();
            hooks.before_write(call_of(&actor), &mut changes).unwrap();
            one.push(started.elapsed());
        }
        // The same after the thread slept, as a writer does between single
        // writes (waiting for fsync and the next request): caches gone cold.
        let mut rested = Vec::new();
        for i in 0..2000 {
            let record = record(i);
            let mut changes = [pending(&record)];
            std::thread::sleep(Duration::from_micros(500));
            let started = Instant::now();
            hooks.before_write(call_of(&actor), &mut changes).unwrap();
            rested.push(started.elapsed());
        }
        let mut batch = Vec::new();
        for round in 0..50 {
            let records: Vec<Record> = (0..1000).map(|i| record(round * 1000 + i)).collect();
            let mut changes: Vec<_> = records.iter().map(pending).collect();
            let started = Instant::now();
            hooks.before_write(call_of(&actor), &mut changes).unwrap();
            batch.push(started.elapsed());
        }
        (one, rested, batch)
    });
    let (one, rested, batch) = blocking.await.unwrap();
    println!();
    summary("before-write hook, 1 change (fresh instance + call)", one);
    summary("  the same, the thread asleep 0.5 ms before each call", rested);
    let (p50, p99) = summary("before-write hook, 1,000 changes in one call", batch);
    println!("{:<58} p50 {:>9.2} µs   p99 {:>9.2} µs", "  per record", micros(p50) / 1000.0, micros(p99) / 1000.0);

    println!();
    let checked_hooks = Timed::install(&kernel, &host, &checked.id);
    let hooked_hooks = Timed::install(&kernel, &host, &hooked.id);
    // Interleaved, so both tenants see the same disk and machine.
    let (mut plain_samples, mut hooked_samples, mut checked_samples) = (Vec::new(), Vec::new(), Vec::new());
    let (mut control_samples, mut prepatched_samples) = (Vec::new(), Vec::new());
    for round in 0..22 {
        let plain_round = single_writes(&kernel, &plain.id, &singles).await;
        let hooked_round = single_writes(&kernel, &hooked.id, &singles).await;
        let checked_round = single_writes(&kernel, &checked.id, &singles).await;
        let control_round = single_writes(&kernel, &control.id, &singles).await;
        let prepatched_round = single_writes(&kernel, &prepatched.id, &patched_singles).await;
        if round >= 2 {
            plain_samples.extend(plain_round);
            hooked_samples.extend(hooked_round);
            checked_samples.extend(checked_round);
            control_samples.extend(control_round);
            prepatched_samples.extend(prepatched_round);
        }
    }
    let warm = 2 * 100;
    summary("  validator call inside the single writes (writer thread)", checked_hooks.take().split_off(warm));
    summary("  patcher call inside the single writes (writer thread)", hooked_hooks.take().split_off(warm));
    let without = summary("durable single write, no plugin", plain_samples);
    let control = summary("durable single write, no plugin, a second tenant", control_samples);
    difference("  difference (the spread between tenants)", control, without);
    let accepted = summary("durable single write, validator before-write (accepts)", checked_samples);
    difference("  difference (includes fsync noise)", accepted, without);
    let same_data = summary("durable single write, the patcher's output, no hook", prepatched_samples);
    let with = summary("durable single write, patcher before-write (patches 3 fields)", hooked_samples);
    difference("  difference to no plugin (includes fsync noise)", with, without);
    difference("  difference to the same output without the hook", with, same_data);
    let (mut plain_bulk, mut hooked_bulk, mut checked_bulk, mut prepatched_bulk) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..60 {
        plain_bulk.push(bulk_write(&kernel, &plain.id, &bulk).await);
        hooked_bulk.push(bulk_write(&kernel, &hooked.id, &bulk).await);
        checked_bulk.push(bulk_write(&kernel, &checked.id, &bulk).await);
        prepatched_bulk.push(bulk_write(&kernel, &prepatched.id, &patched_bulk).await);
    }
    let (p50, p99) = summary("  validator call inside the bulk writes (1,000 changes)", checked_hooks.take());
    println!("{:<58} p50 {:>9.2} µs   p99 {:>9.2} µs", "    per record", micros(p50) / 1000.0, micros(p99) / 1000.0);
    let (p50, p99) = summary("  patcher call inside the bulk writes (1,000 changes)", hooked_hooks.take());
    println!("{:<58} p50 {:>9.2} µs   p99 {:>9.2} µs", "    per record", micros(p50) / 1000.0, micros(p99) / 1000.0);
    let without = summary("durable 1,000-record bulk write, no plugin", plain_bulk);
    let accepted = summary("durable 1,000-record bulk write, validator (accepts)", checked_bulk);
    println!(
        "{:<58} p50 {:>+9.2} µs per record",
        "  difference",
        (micros(accepted.0) - micros(without.0)) / 1000.0
    );
    let same_data = summary("durable 1,000-record bulk write, the patcher's output, no hook", prepatched_bulk);
    let with = summary("durable 1,000-record bulk write, patcher", hooked_bulk);
    println!(
        "{:<58} p50 {:>+9.2} µs per record",
        "  difference to no plugin",
        (micros(with.0) - micros(without.0)) / 1000.0
    );
    println!(
        "{:<58} p50 {:>+9.2} µs per record",
        "  difference to the same output without the hook",
        (micros(with.0) - micros(same_data.0)) / 1000.0
    );

    // A fresh instance per call: the cheapest export, end to end.
    let engine = crm_plugin_host::PluginEngine::new(None).unwrap();
    let hash = crm_core::plugin::content_hash(&wasm);
    let pre = engine.prepare(&hash, &wasm).unwrap();
    let blocking = tokio::task::spawn_blocking(move || {
        let mut samples = Vec::new();
        for i in 0..5200 {
            let scope = crm_plugin_host::host::CallScope {
                store: None,
                plugin: "bench".into(),
                version: String::new(),
                grants: Default::default(),
                phase: crm_plugin_host::host::Phase::Inspect,
                request_id: None,
                max_host_calls: 0,
                max_log_bytes: 0,
            };
            let started = Instant::now();
            let (result, _) = engine.call(&pre, scope, &crm_core::plugin::Limits::DEFAULT, |plugin, store| {
                plugin.call_manifest(store)
            });
            let elapsed = started.elapsed();
            result.unwrap();
            if i >= 200 {
                samples.push(elapsed);
            }
        }
        samples
    });
    println!();
    summary("fresh instance + manifest() call (pooling allocator)", blocking.await.unwrap());

    // Start-up: a new process's view of the same data directory, with the
    // compiled artifact on disk.
    drop(kernel);
    let mut warm = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let kernel = Arc::new(Kernel::open(dir.path(), StoreOptions::default()).unwrap());
        let host = PluginHost::new(&kernel, Some(&cache)).unwrap();
        kernel.set_runtime(host.clone());
        host.warm().unwrap();
        kernel.tenant(&hooked.id).unwrap();
        warm.push(started.elapsed());
    }
    println!();
    summary("open data dir + load compiled plugin from cache + open tenant", warm);
}

fn call_of(actor: &Actor) -> crm_core::plugin::HookCall<'_> {
    crm_core::plugin::HookCall { actor, request_id: None }
}
