//! Durable contact creates per second: group commit (`max_batch: 1024`,
//! many waiting requests share one transaction and one fsync) against one
//! commit per write (`max_batch: 1`), with 64 concurrent writers and with a
//! single writer for reference.
//!
//! Each writer is a tokio task awaiting one create at a time; a create
//! resolves only once its transaction is durable.
//!
//! Run: `cargo bench -p crm-core --bench group_commit`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crm_core::{Actor, Kernel, Mutation, StoreOptions, TenantStore, Value, WriteRequest};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// A store in a fresh data directory; the kernel and directory live as long
/// as the returned values.
fn open_store(max_batch: usize) -> (tempfile::TempDir, Kernel, Arc<TenantStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = StoreOptions { max_batch, ..StoreOptions::default() };
    let kernel = Kernel::open(dir.path(), options).expect("open kernel");
    let (info, _) = kernel.create_tenant("bench").expect("create tenant");
    let store = kernel.tenant(&info.id).expect("open tenant");
    (dir, kernel, store)
}

fn create(n: u64) -> WriteRequest {
    WriteRequest::new(
        Actor::cli(),
        vec![Mutation::Create {
            object: "contact".into(),
            fields: [
                ("first_name".to_string(), Value::Text(format!("Bench {n}"))),
                ("lifecycle_stage".to_string(), Value::Text("lead".into())),
            ]
            .into(),
        }],
    )
}

/// Time for `total` creates spread over `writers` tasks, each awaiting one
/// create at a time.
fn creates(runtime: &Runtime, store: &Arc<TenantStore>, writers: u64, total: u64) -> Duration {
    runtime.block_on(async {
        let remaining = Arc::new(AtomicU64::new(total));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..writers.min(total) {
            let store = store.clone();
            let remaining = remaining.clone();
            tasks.spawn(async move {
                while let Ok(left) = remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)) {
                    store.write(create(left)).await.expect("durable create");
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.expect("writer task");
        }
        start.elapsed()
    })
}

fn durable_creates(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let mut group = c.benchmark_group("durable_creates");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));
    for writers in [64u64, 1] {
        for (label, max_batch) in [("group_commit", 1024usize), ("one_commit_per_write", 1)] {
            let (_dir, _kernel, store) = open_store(max_batch);
            group.bench_with_input(BenchmarkId::new(label, format!("{writers}_writers")), &writers, |b, &writers| {
                b.iter_custom(|iterations| creates(&runtime, &store, writers, iterations));
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = durable_creates
}
criterion_main!(benches);
