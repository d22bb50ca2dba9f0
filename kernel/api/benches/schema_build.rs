//! Building a tenant's GraphQL schema from its metadata (`schema::build`),
//! for the standard metadata and for metadata with 50 custom fields on
//! contact, and one small query executed through a built schema against a
//! real store on disk (no HTTP: the request context is attached as request
//! data, as the HTTP handler does).
//!
//! Run: `cargo bench -p crm-api --bench schema_build`
//! (shorter: `cargo bench -p crm-api --bench schema_build -- --warm-up-time 1 --measurement-time 3`)

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use crm_api::{Caller, Limits, RequestCtx, schema};
use crm_core::metadata::{FieldDef, FieldType, Metadata};
use crm_core::{Actor, Fields, Kernel, Mutation, StoreOptions, Value, WriteRequest};

/// The standard metadata plus 50 custom fields on contact, of mixed types,
/// every fifth one indexed.
fn with_custom_fields() -> Arc<Metadata> {
    let mut metadata = (*Metadata::standard()).clone();
    let contact = metadata.objects.iter_mut().find(|object| object.name == "contact").expect("contact object");
    for i in 0..50 {
        let ty = match i % 10 {
            0 => FieldType::Text,
            1 => FieldType::LongText,
            2 => FieldType::Int,
            3 => FieldType::Float,
            4 => FieldType::Bool,
            5 => FieldType::DateTime,
            6 => FieldType::Date,
            7 => FieldType::Enum(vec!["bronze".into(), "silver".into(), "gold".into()]),
            8 => FieldType::Url,
            _ => FieldType::Tags,
        };
        contact.fields.push(FieldDef {
            name: format!("custom_field_{i}"),
            ty,
            required: false,
            unique: false,
            indexed: i % 5 == 0,
            computed: false,
            description: format!("Custom field number {i}."),
        });
    }
    Arc::new(metadata)
}

fn build(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("schema_build");
    for (label, metadata) in [("standard", Metadata::standard()), ("standard + 50 contact fields", with_custom_fields())] {
        schema::build(&metadata, &limits).expect("schema builds");
        group.bench_function(label, |b| b.iter(|| schema::build(black_box(&metadata), &limits).expect("schema builds")));
    }
    group.finish();
}

fn query(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Arc::new(Kernel::open(dir.path(), StoreOptions::default()).expect("open kernel"));
    let (_, admin_key) = kernel.create_tenant("bench").expect("create tenant");
    let (identity, access, store) = kernel.identify(&admin_key).expect("identify");

    // 1,000 companies and 10,000 contacts, ten per company.
    let write = |mutations: Vec<Mutation>| {
        runtime.block_on(async {
            let mut ids = Vec::new();
            for chunk in mutations.chunks(1_000) {
                let applied = store.write(WriteRequest::new(Actor::cli(), chunk.to_vec())).await.expect("write");
                ids.extend(applied.into_iter().map(|applied| applied.record.id));
            }
            ids
        })
    };
    let companies = write(
        (1..=1_000)
            .map(|g| Mutation::Create {
                object: "company".into(),
                fields: Fields::from([("name".into(), Value::Text(format!("Company {g}")))]),
            })
            .collect(),
    );
    let contacts = write(
        (1..=10_000usize)
            .map(|g| Mutation::Create {
                object: "contact".into(),
                fields: Fields::from([
                    ("first_name".into(), Value::Text(format!("Person {g}"))),
                    ("email".into(), Value::Text(format!("contact{g}@company{}.example", 1 + (g - 1) % 1_000))),
                    ("company_id".into(), Value::Id(companies[(g - 1) % 1_000])),
                    ("lifecycle_stage".into(), Value::Text("lead".into())),
                ]),
            })
            .collect(),
    );

    let schema = schema::build(&store.metadata(), &Limits::default()).expect("schema builds");
    let caller = Caller {
        kernel: kernel.clone(),
        store: store.clone(),
        actor: identity.actor,
        access: Arc::new(access),
        credential: identity.credential,
    };
    let text = |id: crm_core::RecordId| format!("{{ contact(id: \"{id}\") {{ id firstName company {{ name }} }} }}");
    let execute = |query: String| {
        let request = async_graphql::Request::new(query).data(RequestCtx::new(caller.clone(), "bench".into()));
        let response = runtime.block_on(schema.execute(request));
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        response
    };
    let first = execute(text(contacts[0])).data.into_json().expect("json");
    assert_eq!(first["contact"]["company"]["name"], "Company 1", "{first}");

    let mut at = 0usize;
    // `{ contact(id: …) { id firstName company { name } } }`, a different
    // contact each time.
    let mut group = c.benchmark_group("graphql_execute");
    group.bench_function("contact by id with company", |b| {
        b.iter(|| {
            at = (at + 7_919) % contacts.len();
            execute(text(contacts[at]))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = build, query
}
criterion_main!(benches);
