//! The in-process hot paths of the record store: record encode and decode,
//! sealing an audit diff's personal values, index lookups and filtered
//! pages on a real store on disk, and filter evaluation.
//!
//! The store is a tenant in a temp directory holding 10,000 companies and
//! 100,000 contacts shaped like `crm seed` data (kernel/server/src/seed.rs),
//! written once per run in requests of 1,000 creates.
//!
//! Run: `cargo bench -p crm-core --bench hot_paths`
//! (shorter: `cargo bench -p crm-core --bench hot_paths -- --warm-up-time 1 --measurement-time 3`)

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use crm_core::encoding::{decode_record, decode_record_fields, encode_record};
use crm_core::seal::RecordKey;
use crm_core::{
    Actor, Condition, Fields, Filter, Kernel, ListQuery, Mutation, PageRequest, Record, RecordId, StoreOptions, TenantStore,
    Value, WriteRequest,
};

const CONTACTS: usize = 100_000;
const COMPANIES: usize = CONTACTS / 10;
const CHUNK: usize = 1_000;

const TITLES: [&str; 10] =
    ["CEO", "CTO", "VP Sales", "Engineer", "Marketing Manager", "Buyer", "Analyst", "Director", "Consultant", "Founder"];
const STAGES: [&str; 7] =
    ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist"];
const FIRST_NAMES: [&str; 20] = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Katherine",
    "John",
    "Hedy",
    "Tim",
    "Sophie",
    "Niklaus",
    "Anita",
    "Guido",
];
const LAST_NAMES: [&str; 20] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Knuth",
    "Johnson",
    "McCarthy",
    "Lamarr",
    "Berners-Lee",
    "Wilson",
    "Wirth",
    "Borg",
    "van Rossum",
];
const SOURCES: [&str; 5] = ["web", "referral", "event", "ads", "import"];

fn text(value: impl Into<String>) -> Value {
    Value::Text(value.into())
}

/// The company (1-based) contact `g` works at, as in the seed.
fn company_of(g: usize) -> usize {
    1 + (g - 1) % COMPANIES
}

fn email_of(g: usize) -> String {
    format!("contact{g}@company{}.example", company_of(g))
}

/// Contact `g` (1-based) with the fields the seed fills. Names, stage and
/// score are spread deterministically instead of drawn from the seed's RNG.
fn contact_fields(g: usize, company: RecordId) -> Fields {
    Fields::from([
        ("first_name".into(), text(FIRST_NAMES[g % 20])),
        ("last_name".into(), text(LAST_NAMES[(g / 20) % 20])),
        ("email".into(), text(email_of(g))),
        ("phone".into(), text(format!("+1-555-{:04}", g % 10000))),
        ("title".into(), text(TITLES[g % 10])),
        ("company_id".into(), Value::Id(company)),
        ("lifecycle_stage".into(), text(STAGES[g % 7])),
        ("lead_score".into(), Value::Int((g * 37 % 101) as i64)),
        ("source".into(), text(SOURCES[g % 5])),
        ("tags".into(), Value::List(vec![format!("t{}", g % 17), format!("t{}", g % 23)])),
    ])
}

fn record(fields: Fields) -> Record {
    let now = 1_795_000_000_000;
    Record { id: RecordId::generate(), version: 1, created_at: now, updated_at: now, deleted_at: None, fields }
}

/// A seeded contact as the store holds it.
fn realistic_contact() -> Record {
    record(contact_fields(4_242, RecordId::generate()))
}

/// A contact with two fields.
fn small_record() -> Record {
    record(BTreeMap::from([("first_name".into(), text("Ada")), ("lifecycle_stage".into(), text("lead"))]))
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    for (label, record) in [("contact", realistic_contact()), ("small", small_record())] {
        let bytes = encode_record(&record).expect("encode");
        group.bench_function(format!("encode/{label} ({} bytes)", bytes.len()), |b| {
            b.iter(|| encode_record(black_box(&record)).expect("encode"))
        });
        group.bench_function(format!("decode/{label} ({} bytes)", bytes.len()), |b| {
            b.iter(|| decode_record(record.id, black_box(&bytes)).expect("decode"))
        });
        if label == "contact" {
            // What the page of 50 in bench/queries/crm reads of each contact.
            let keep = ["company_id", "email", "first_name", "last_name", "lead_score", "lifecycle_stage", "owner_id", "team_id"];
            group.bench_function(format!("decode/{label}, the 6 fields a page reads ({} bytes)", bytes.len()), |b| {
                b.iter(|| decode_record_fields(record.id, black_box(&bytes), Some(&keep)).expect("decode"))
            });
        }
    }
    group.finish();
}

/// The bench store and what is needed to address its records.
struct Seeded {
    _dir: tempfile::TempDir,
    _kernel: Kernel,
    store: Arc<TenantStore>,
    /// Contact g is `contacts[g - 1]`.
    contacts: Vec<RecordId>,
    companies: Vec<RecordId>,
}

fn write_all(runtime: &tokio::runtime::Runtime, store: &TenantStore, mutations: Vec<Mutation>) -> Vec<RecordId> {
    let mut chunks = Vec::new();
    let mut mutations = mutations.into_iter().peekable();
    while mutations.peek().is_some() {
        chunks.push(WriteRequest::new(Actor::cli(), mutations.by_ref().take(CHUNK).collect()));
    }
    runtime.block_on(async {
        let mut ids = Vec::new();
        for result in store.write_each(chunks).await {
            ids.extend(result.expect("bulk write").into_iter().map(|applied| applied.record.id));
        }
        ids
    })
}

fn seed() -> Seeded {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).expect("open kernel");
    let (info, _) = kernel.create_tenant("bench").expect("create tenant");
    let store = kernel.tenant(&info.id).expect("open tenant");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let started = std::time::Instant::now();
    let companies = write_all(
        &runtime,
        &store,
        (1..=COMPANIES)
            .map(|g| Mutation::Create {
                object: "company".into(),
                fields: Fields::from([
                    ("name".into(), text(format!("Company {g}"))),
                    ("domain".into(), text(format!("company{g}.example"))),
                ]),
            })
            .collect(),
    );
    let contacts = write_all(
        &runtime,
        &store,
        (1..=CONTACTS)
            .map(|g| Mutation::Create { object: "contact".into(), fields: contact_fields(g, companies[company_of(g) - 1]) })
            .collect(),
    );
    eprintln!("seeded {} companies and {} contacts in {:.1} s", companies.len(), contacts.len(), started.elapsed().as_secs_f64());
    Seeded { _dir: dir, _kernel: kernel, store, contacts, companies }
}

/// A cheap, fixed sequence of positions spread over `0..len`.
struct Cycle(usize);

impl Cycle {
    fn next(&mut self, len: usize) -> usize {
        self.0 = (self.0 + 7_919) % len;
        self.0
    }
}

fn lookups(c: &mut Criterion) {
    let seeded = seed();
    let store = &seeded.store;
    let contacts = &seeded.contacts;
    let mut group = c.benchmark_group("store_100k_contacts");

    let mut at = Cycle(0);
    group.bench_function("get by id (new snapshot)", |b| {
        b.iter(|| store.get("contact", contacts[at.next(CONTACTS)]).expect("get").expect("found"))
    });
    {
        let reader = store.reader().expect("reader");
        group.bench_function("get by id (open snapshot)", |b| {
            b.iter(|| reader.get("contact", contacts[at.next(CONTACTS)]).expect("get").expect("found"))
        });
    }
    group.bench_function("get_many 50 ids (new snapshot)", |b| {
        b.iter_batched(
            || (0..50).map(|_| contacts[at.next(CONTACTS)]).collect::<Vec<_>>(),
            |ids| {
                let found = store.reader().expect("reader").get_many("contact", &ids).expect("get_many");
                assert_eq!(found.len(), 50);
                found
            },
            criterion::BatchSize::SmallInput,
        )
    });
    {
        let reader = store.reader().expect("reader");
        group.bench_function("unique_id by email", |b| {
            b.iter_batched(
                || text(email_of(1 + at.next(CONTACTS))),
                |email| reader.unique_id("contact", "email", &email).expect("unique_id").expect("found"),
                criterion::BatchSize::SmallInput,
            )
        });
        let companies = &seeded.companies;
        group.bench_function("index_ids by company_id (10 ids)", |b| {
            b.iter(|| {
                let company = Value::Id(companies[at.next(COMPANIES)]);
                let ids = reader.index_ids("contact", "company_id", &company).expect("index_ids");
                assert_eq!(ids.len(), 10);
                ids
            })
        });
        let lead = text("lead");
        let leads = reader.index_ids("contact", "lifecycle_stage", &lead).expect("index_ids").len();
        group.bench_function(format!("index_ids by lifecycle_stage ({leads} ids)"), |b| {
            b.iter(|| reader.index_ids("contact", "lifecycle_stage", black_box(&lead)).expect("index_ids"))
        });
    }

    let by_stage =
        ListQuery::new("contact").filter(Filter::field("lifecycle_stage", Condition::Eq(text("lead")))).sort("id", false);
    let first_50 = PageRequest { first: Some(50), ..PageRequest::default() };
    group.bench_function("list lifecycle_stage = lead, by id, first 50", |b| {
        b.iter(|| {
            let page = store.list(&by_stage, &first_50).expect("list");
            assert_eq!(page.records.len(), 50);
            page
        })
    });
    let middle = store.list(&by_stage, &PageRequest { first: Some(5_000), ..PageRequest::default() }).expect("list");
    let after = crm_core::Cursor::of(middle.records.last().expect("a record"), &by_stage.effective_sort());
    let next_50 = PageRequest { first: Some(50), after: Some(after), ..PageRequest::default() };
    group.bench_function("list lifecycle_stage = lead, by id, 50 after the 5,000th", |b| {
        b.iter(|| {
            let page = store.list(&by_stage, &next_50).expect("list");
            assert_eq!(page.records.len(), 50);
            page
        })
    });
    let matching = store.count(&by_stage).expect("count");
    group.bench_function(format!("count lifecycle_stage = lead ({matching})"), |b| {
        b.iter(|| store.count(black_box(&by_stage)).expect("count"))
    });
    group.finish();
}

fn filters(c: &mut Criterion) {
    let record = realistic_contact();
    let eq = |field: &str, value: Value| Filter::field(field, Condition::Eq(value));
    let stage = record.get("lifecycle_stage").clone();
    let mut group = c.benchmark_group("filter");

    let equality = eq("lifecycle_stage", stage.clone());
    assert!(equality.matches(&record));
    group.bench_function("eq", |b| b.iter(|| black_box(&equality).matches(black_box(&record))));

    // Five conditions; every one is evaluated (the first branch of the `or`
    // fails), and the record matches.
    let tree = Filter::And(vec![
        eq("lifecycle_stage", stage),
        Filter::Or(vec![
            Filter::field("lead_score", Condition::Gt(Value::Int(1_000))),
            Filter::field("title", Condition::Contains("a".into())),
        ]),
        Filter::Not(Box::new(eq("source", text("no such source")))),
        Filter::field("email", Condition::StartsWith("contact".into())),
    ]);
    assert_eq!(tree.fields().len(), 5);
    assert!(tree.matches(&record));
    group.bench_function("and/or/not of 5 conditions", |b| b.iter(|| black_box(&tree).matches(black_box(&record))));

    let contains = Filter::field("email", Condition::Contains("COMPANY".into()));
    assert!(contains.matches(&record));
    group.bench_function("contains on text", |b| b.iter(|| black_box(&contains).matches(black_box(&record))));

    // The record's value is the last of the list, so all 20 are compared.
    let mut options: Vec<Value> = (0..19).map(|i| text(format!("name {i}"))).collect();
    options.push(record.get("first_name").clone());
    let within = Filter::field("first_name", Condition::In(options));
    assert!(within.matches(&record));
    group.bench_function("in of 20 values", |b| b.iter(|| black_box(&within).matches(black_box(&record))));
    group.finish();
}

/// Sealing the audit values of a contact's create: every non-null field of
/// the realistic contact, with one sealer for the record as the writer does.
fn sealing(c: &mut Criterion) {
    let contact = realistic_contact();
    let values: Vec<(String, Value)> =
        contact.fields.iter().filter(|(_, value)| !value.is_null()).map(|(field, value)| (field.clone(), value.clone())).collect();
    let key = RecordKey::generate();
    let mut group = c.benchmark_group("audit");
    group.bench_function(format!("seal a contact's create ({} values)", values.len()), |b| {
        b.iter(|| {
            let sealer = key.sealer();
            for (field, value) in &values {
                black_box(sealer.seal("contact", contact.id, field, value).expect("seal"));
            }
        })
    });
    let sealed = key.seal("contact", contact.id, "email", contact.get("email")).expect("seal");
    assert_eq!(key.open("contact", contact.id, "email", &sealed).as_ref(), Some(contact.get("email")));
    group.bench_function("open one value", |b| b.iter(|| black_box(key.open("contact", contact.id, "email", black_box(&sealed)))));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = encoding, sealing, filters, lookups
}
criterion_main!(benches);
