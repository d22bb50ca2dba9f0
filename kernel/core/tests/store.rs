//! Focused tests of the record store: bulk atomicity, group-commit
//! isolation, audit and change logs, durability across reopen, deal rules,
//! references and the data-directory lock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crm_core::{
    Actor, Applied, AuditEntry, ChangeOp, ErrorKind, Fields, Kernel, ListQuery, Mutation, RecordId, StoreOptions,
    TenantId, TenantStore, Value, WriteRequest,
};

struct Fixture {
    store: Arc<TenantStore>,
    kernel: Kernel,
    tenant: TenantId,
    dir: tempfile::TempDir,
}

fn open() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).expect("open kernel");
    let (info, _) = kernel.create_tenant("t").expect("create tenant");
    let store = kernel.tenant(&info.id).expect("open tenant");
    Fixture { store, kernel, tenant: info.id, dir }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Fields {
    pairs.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

fn contact(first_name: &str, email: Option<&str>) -> Mutation {
    let mut fields = fields([("first_name", text(first_name))]);
    if let Some(email) = email {
        fields.insert("email".into(), text(email));
    }
    Mutation::Create { object: "contact".into(), fields }
}

fn request(mutations: Vec<Mutation>) -> WriteRequest {
    WriteRequest::new(Actor::cli(), mutations)
}

fn write_one(runtime: &tokio::runtime::Runtime, store: &TenantStore, mutation: Mutation) -> crm_core::Result<Applied> {
    let mut applied = runtime.block_on(store.write(request(vec![mutation])))?;
    assert_eq!(applied.len(), 1);
    Ok(applied.remove(0))
}

fn audit(store: &TenantStore) -> Vec<AuditEntry> {
    store.reader().expect("reader").audit_entries(0, usize::MAX).expect("audit entries")
}

fn change_count(store: &TenantStore) -> usize {
    store.changes(0, usize::MAX).expect("changes").len()
}

fn contact_count(store: &TenantStore, include_deleted: bool) -> u64 {
    let mut query = ListQuery::new("contact");
    query.include_deleted = include_deleted;
    store.count(&query).expect("count")
}

/// The chain is intact from the first entry: consecutive sequence numbers,
/// each entry hashing to its stored hash and pointing at its predecessor.
fn assert_chain(entries: &[AuditEntry]) {
    let mut previous = [0u8; 32];
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(entry.seq, index as u64 + 1, "audit sequence has a gap");
        assert_eq!(entry.prev_hash, previous, "audit entry {} does not chain to its predecessor", entry.seq);
        assert_eq!(entry.hash, entry.compute_hash(), "audit entry {} was altered", entry.seq);
        previous = entry.hash;
    }
}

#[test]
fn a_bulk_request_is_all_or_nothing() {
    let runtime = runtime();
    let fixture = open();
    let store = &fixture.store;
    let audit_before = audit(store).len();

    let mut mutations: Vec<Mutation> =
        (0..1000).map(|n| contact(&format!("Bulk {n}"), Some(&format!("bulk{n}@example.com")))).collect();
    // The 600th repeats the first one's email, in another case.
    mutations[599] = contact("Bulk duplicate", Some("BULK0@example.com"));
    let error = runtime.block_on(store.write(request(mutations.clone()))).expect_err("duplicate email");
    assert_eq!(error.kind, ErrorKind::Conflict, "{}", error.message);
    assert_eq!(error.field.as_deref(), Some("email"));
    assert_eq!(contact_count(store, true), 0, "a failed bulk request writes nothing");
    assert_eq!(audit(store).len(), audit_before, "a failed bulk request logs nothing");

    mutations[599] = contact("Bulk 599", Some("bulk599@example.com"));
    let applied = runtime.block_on(store.write(request(mutations))).expect("bulk create");
    assert_eq!(applied.len(), 1000);
    assert!(applied.iter().all(|applied| applied.op == Some(ChangeOp::Created) && applied.record.version == 1));
    assert_eq!(contact_count(store, false), 1000);
    assert_eq!(audit(store).len(), audit_before + 1000);

    let too_many: Vec<Mutation> = (0..1001).map(|n| contact(&format!("Over {n}"), None)).collect();
    let error = runtime.block_on(store.write(request(too_many))).expect_err("over the limit");
    assert_eq!(error.kind, ErrorKind::Validation);
    assert!(error.message.contains("1000"), "the message names the limit: {}", error.message);
    assert_eq!(contact_count(store, false), 1000);
}

#[test]
fn group_commit_isolates_failing_requests() {
    let runtime = runtime();
    let fixture = open();
    let store = &fixture.store;
    let taken = write_one(&runtime, store, contact("Taken", Some("taken@example.com"))).expect("seed contact");

    // Index → the error kind that request must get, alone.
    let bad: BTreeMap<usize, ErrorKind> = [
        (3, ErrorKind::Conflict),    // an email another contact holds
        (11, ErrorKind::NotFound),   // an update of a record that does not exist
        (20, ErrorKind::Validation), // no first name (rejected before the writer)
        (34, ErrorKind::Conflict),   // the same new email as request 33, in the same batch
        (47, ErrorKind::Conflict),   // a stale expected version
    ]
    .into();
    let requests: Vec<WriteRequest> = (0..50)
        .map(|n| {
            let mutation = match n {
                3 => contact("Dup", Some("taken@example.com")),
                11 => Mutation::Update {
                    object: "contact".into(),
                    id: RecordId::generate(),
                    fields: fields([("title", text("CEO"))]),
                    expected_version: None,
                },
                20 => Mutation::Create { object: "contact".into(), fields: fields([("last_name", text("Nameless"))]) },
                33 | 34 => contact(&format!("Twin {n}"), Some("twin@example.com")),
                47 => Mutation::Update {
                    object: "contact".into(),
                    id: taken.record.id,
                    fields: fields([("title", text("CTO"))]),
                    expected_version: Some(taken.record.version + 1),
                },
                _ => contact(&format!("Member {n}"), Some(&format!("member{n}@example.com"))),
            };
            request(vec![mutation])
        })
        .collect();
    let changes_before = change_count(store);

    let results = runtime.block_on(store.write_each(requests));
    assert_eq!(results.len(), 50);
    for (index, result) in results.iter().enumerate() {
        match (bad.get(&index), result) {
            (Some(kind), Err(error)) => assert_eq!(error.kind, *kind, "request {index}: {}", error.message),
            (Some(kind), Ok(applied)) => panic!("request {index} should fail with {kind:?}, applied {applied:?}"),
            (None, Err(error)) => panic!("request {index} failed with a neighbour's error: {error:?}"),
            (None, Ok(applied)) => {
                let name = applied[0].record.get("first_name").as_text().expect("first name");
                let expected = if index == 33 { "Twin 33".to_string() } else { format!("Member {index}") };
                assert_eq!(name, expected, "request {index} got another request's record");
            }
        }
    }
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 45);
    assert_eq!(change_count(store) - changes_before, 45, "one change event per applied request");
    assert_eq!(contact_count(store, false), 46);
    let taken_now = store.get("contact", taken.record.id).expect("get").expect("present");
    assert_eq!(taken_now, taken.record, "the stale update left the record alone");
}

#[test]
fn every_change_has_one_audit_entry_and_one_event() {
    let runtime = runtime();
    let fixture = open();
    let store = &fixture.store;
    let audit_before = audit(store);
    let changes_before = store.changes(0, usize::MAX).expect("changes");
    assert_eq!(audit_before.len(), changes_before.len(), "the seeded pipeline is logged too");

    let mut applied: Vec<Applied> = Vec::new();
    let mut write = |mutations: Vec<Mutation>| -> crm_core::Result<Vec<Applied>> {
        let outcome = runtime.block_on(store.write(request(mutations)))?;
        applied.extend(outcome.iter().cloned());
        Ok(outcome)
    };
    let created = write(vec![contact("Ada", Some("ada@example.com")), contact("Bob", None)]).expect("creates");
    let ada = created[0].record.id;
    let bob = created[1].record.id;
    let update = |id, title: &str| Mutation::Update {
        object: "contact".into(),
        id,
        fields: fields([("title", text(title))]),
        expected_version: None,
    };
    write(vec![update(ada, "CEO")]).expect("update");
    let unchanged = write(vec![update(ada, "CEO")]).expect("an update that changes nothing");
    assert_eq!((unchanged[0].op, unchanged[0].record.version), (None, 2));
    write(vec![Mutation::Delete { object: "contact".into(), id: bob, expected_version: Some(1) }]).expect("delete");
    write(vec![Mutation::Restore { object: "contact".into(), id: bob }]).expect("restore");
    write(vec![Mutation::Upsert {
        object: "contact".into(),
        key: "email".into(),
        fields: fields([("email", text("ADA@example.com")), ("title", text("CTO"))]),
    }])
    .expect("upsert");

    let after_writes = (audit(store).len(), change_count(store));
    // A failed request, partly applied inside its transaction, leaves no trace.
    let failed = write(vec![update(bob, "VP"), contact("Dup", Some("ada@example.com"))]).expect_err("duplicate");
    assert_eq!(failed.kind, ErrorKind::Conflict);
    assert_eq!((audit(store).len(), change_count(store)), after_writes);
    assert_eq!(store.get("contact", bob).expect("get").expect("bob").get("title"), &Value::Null);

    let ops: Vec<ChangeOp> = applied.iter().filter_map(|applied| applied.op).collect();
    assert_eq!(
        ops,
        [ChangeOp::Created, ChangeOp::Created, ChangeOp::Updated, ChangeOp::Deleted, ChangeOp::Restored, ChangeOp::Updated]
    );
    let entries = audit(store);
    let events = store.changes(0, usize::MAX).expect("changes");
    let new_entries = &entries[audit_before.len()..];
    let new_events = &events[changes_before.len()..];
    assert_eq!(new_entries.len(), ops.len());
    assert_eq!(new_events.len(), ops.len());
    assert_chain(&entries);
    let changed: Vec<&Applied> = applied.iter().filter(|applied| applied.op.is_some()).collect();
    for ((entry, event), applied) in new_entries.iter().zip(new_events).zip(changed) {
        assert_eq!((entry.record_id, entry.op), (applied.record.id, applied.op.expect("changed")));
        assert_eq!((event.record_id, event.op, event.version), (applied.record.id, entry.op, applied.record.version));
        assert_eq!(entry.actor, Actor::cli());
    }
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "change sequence has a gap");
    }
    let history = store.reader().expect("reader").history("contact", ada).expect("history");
    assert_eq!(history.iter().map(|entry| entry.op).collect::<Vec<_>>(), [ChangeOp::Created, ChangeOp::Updated, ChangeOp::Updated]);
}

#[test]
fn data_survives_reopen_and_the_audit_chain_continues() {
    let runtime = runtime();
    let Fixture { store, kernel, tenant, dir } = open();
    let ada = write_one(&runtime, &store, contact("Ada", Some("ada@example.com"))).expect("create");
    let head = audit(&store).last().cloned().expect("audit head");
    drop(store);
    drop(kernel);

    // Reopen straight away, several times over: dropping the kernel must
    // release the files, with no waiting by the caller.
    let mut ids = vec![ada.record.id];
    let mut head = head;
    for round in 0..10 {
        let kernel = Kernel::open(dir.path(), StoreOptions::default()).expect("reopen kernel");
        let store = kernel.tenant(&tenant).expect("reopen tenant");
        for id in &ids {
            assert!(store.get("contact", *id).expect("get").is_some(), "round {round}: {id} lost");
        }
        let added = write_one(&runtime, &store, contact(&format!("Round {round}"), None)).expect("write after reopen");
        ids.push(added.record.id);
        let entries = audit(&store);
        let first_new = entries.iter().find(|entry| entry.seq == head.seq + 1).expect("a new entry");
        assert_eq!(first_new.prev_hash, head.hash, "round {round}: the chain restarts instead of continuing");
        assert_chain(&entries);
        head = entries.last().cloned().expect("head");
        let pipelines = store.count(&ListQuery::new("pipeline")).expect("count");
        assert_eq!(pipelines, 1, "the default pipeline is seeded once");
    }
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).expect("final reopen");
    let store = kernel.tenant(&tenant).expect("tenant");
    assert_eq!(contact_count(&store, false), ids.len() as u64);
    assert_eq!(store.get("contact", ada.record.id).expect("get"), Some(ada.record));
}

#[test]
fn deferred_writes_wait_for_the_next_durable_commit() {
    let runtime = runtime();
    let Fixture { store, kernel, tenant, dir } = open();
    let deferred = |first_name: &str| WriteRequest { deferred: true, ..request(vec![contact(first_name, None)]) };
    assert!(!store.unsynced());
    runtime.block_on(store.sync()).expect("a sync with nothing to make durable");
    assert!(!store.unsynced());

    let durable = store.durable_change();
    assert_eq!(durable, store.reader().expect("reader").last_change().expect("last change"));
    let mut published = store.subscribe();
    runtime.block_on(store.write(deferred("Ada"))).expect("deferred write");
    assert!(store.unsynced(), "a deferred commit is not durable yet");
    assert_eq!(contact_count(&store, false), 1, "but visible at once");
    assert_eq!(store.durable_change(), durable, "its change is not durable either");
    assert!(published.try_recv().is_err(), "nor published to subscribers");
    write_one(&runtime, &store, contact("Grace", None)).expect("durable write");
    assert!(!store.unsynced(), "a durable commit makes the deferred one before it durable too");
    assert_eq!(store.durable_change(), durable + 2);
    let names: Vec<Value> = std::iter::from_fn(|| published.try_recv().ok()).map(|change| change.record.get("first_name").clone()).collect();
    assert_eq!(names, [text("Ada"), text("Grace")], "both published with the durable commit, in order");

    runtime.block_on(store.write(deferred("Alan"))).expect("deferred write");
    assert!(store.unsynced());
    runtime.block_on(store.sync()).expect("sync");
    assert!(!store.unsynced());
    runtime.block_on(store.sync()).expect("a second sync");
    assert!(!store.unsynced());

    drop(store);
    drop(kernel);
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).expect("reopen kernel");
    let store = kernel.tenant(&tenant).expect("reopen tenant");
    assert_eq!(contact_count(&store, false), 3);
    assert!(!store.unsynced());
    assert_eq!(store.durable_change(), store.reader().expect("reader").last_change().expect("last change"));
}

fn default_pipeline(store: &TenantStore) -> RecordId {
    let bytes = store.reader().expect("reader").meta("default_pipeline").expect("meta").expect("seeded");
    RecordId::from_bytes(bytes.try_into().expect("16 bytes"))
}

fn deal(pairs: Fields) -> Mutation {
    let mut fields = fields([("name", text("Big deal"))]);
    fields.extend(pairs);
    Mutation::Create { object: "deal".into(), fields }
}

fn update_deal(id: RecordId, fields: Fields) -> Mutation {
    Mutation::Update { object: "deal".into(), id, fields, expected_version: None }
}

#[test]
fn deals_follow_their_pipeline() {
    let runtime = runtime();
    let fixture = open();
    let store = &fixture.store;
    let pipeline = default_pipeline(store);

    let created = write_one(&runtime, store, deal(fields([("amount", Value::Float(1000.0))]))).expect("deal").record;
    assert_eq!(created.get("pipeline_id"), &Value::Id(pipeline));
    assert_eq!(created.get("stage"), &text("appointmentscheduled"));
    assert_eq!(created.get("probability"), &Value::Float(0.2));
    assert_eq!(created.get("expected_amount"), &Value::Float(1000.0 * 0.2));

    let error = write_one(&runtime, store, deal(fields([("stage", text("nowhere"))]))).expect_err("unknown stage");
    assert_eq!(error.kind, ErrorKind::Validation);
    assert_eq!(error.field.as_deref(), Some("stage"));
    assert!(error.message.contains("nowhere") && error.message.contains("contractsent"), "{}", error.message);

    let moved = write_one(&runtime, store, update_deal(created.id, fields([("stage", text("contractsent"))])))
        .expect("move")
        .record;
    assert_eq!(moved.get("probability"), &Value::Float(0.9));
    assert_eq!(moved.get("expected_amount"), &Value::Float(1000.0 * 0.9));

    let won = write_one(
        &runtime,
        store,
        update_deal(created.id, fields([("stage", text("closedwon")), ("probability", Value::Float(0.5))])),
    )
    .expect("stage and explicit probability")
    .record;
    assert_eq!(won.get("stage"), &text("closedwon"));
    assert_eq!(won.get("probability"), &Value::Float(0.5), "an explicit probability wins over the stage's");
    assert_eq!(won.get("expected_amount"), &Value::Float(1000.0 * 0.5));

    let bigger = write_one(&runtime, store, update_deal(created.id, fields([("amount", Value::Float(3000.0))])))
        .expect("amount")
        .record;
    assert_eq!(bigger.get("probability"), &Value::Float(0.5), "the probability stays when the stage does");
    assert_eq!(bigger.get("expected_amount"), &Value::Float(3000.0 * 0.5));

    let error = write_one(&runtime, store, update_deal(created.id, fields([("stage", text("nowhere"))])))
        .expect_err("unknown stage on update");
    assert_eq!(error.field.as_deref(), Some("stage"));
    let error = write_one(&runtime, store, update_deal(created.id, fields([("expected_amount", Value::Float(1.0))])))
        .expect_err("computed field");
    assert_eq!(error.field.as_deref(), Some("expected_amount"));

    let qualified = write_one(&runtime, store, deal(fields([("stage", text("qualifiedtobuy"))]))).expect("deal").record;
    assert_eq!(qualified.get("probability"), &Value::Float(0.4));
    assert_eq!(qualified.get("expected_amount"), &Value::Null, "no amount, no expected amount");
}

#[test]
fn references_must_exist_in_the_same_tenant() {
    let runtime = runtime();
    let fixture = open();
    let store = &fixture.store;
    let with_company = |company: RecordId| Mutation::Create {
        object: "contact".into(),
        fields: fields([("first_name", text("Ada")), ("company_id", Value::Id(company))]),
    };

    let error = write_one(&runtime, store, with_company(RecordId::generate())).expect_err("no such company");
    assert_eq!(error.kind, ErrorKind::NotFound);
    assert_eq!(error.field.as_deref(), Some("company_id"));

    let (other, _) = fixture.kernel.create_tenant("other").expect("second tenant");
    let other = fixture.kernel.tenant(&other.id).expect("other store");
    let foreign = write_one(
        &runtime,
        &other,
        Mutation::Create { object: "company".into(), fields: fields([("name", text("Elsewhere"))]) },
    )
    .expect("company in the other tenant")
    .record;
    let error = write_one(&runtime, store, with_company(foreign.id)).expect_err("a company of another tenant");
    assert_eq!(error.kind, ErrorKind::NotFound);
    assert_eq!(error.field.as_deref(), Some("company_id"));

    let local = write_one(
        &runtime,
        store,
        Mutation::Create { object: "company".into(), fields: fields([("name", text("Here"))]) },
    )
    .expect("company")
    .record;
    let linked = write_one(&runtime, store, with_company(local.id)).expect("a company of this tenant").record;
    assert_eq!(linked.get("company_id"), &Value::Id(local.id));

    write_one(&runtime, store, Mutation::Delete { object: "company".into(), id: local.id, expected_version: None })
        .expect("delete company");
    let error = write_one(&runtime, store, with_company(local.id)).expect_err("a deleted company");
    assert_eq!(error.kind, ErrorKind::NotFound);
    assert_eq!(contact_count(store, true), 1);
}

fn assert_in_use(error: crm_core::Error, path: &Path) {
    assert_eq!(error.kind, ErrorKind::Unavailable, "{}", error.message);
    assert!(error.message.contains("in use"), "{}", error.message);
    assert!(error.message.contains("data directory"), "{}", error.message);
    assert!(error.message.contains(&path.display().to_string()), "{}", error.message);
}

#[test]
fn a_data_directory_in_use_is_unavailable() {
    let fixture = open();
    let tenant_file = fixture.dir.path().join("tenants").join(format!("{}.redb", fixture.tenant));
    assert!(tenant_file.exists());

    let metadata = fixture.kernel.metadata(&fixture.tenant).expect("metadata");
    let error = TenantStore::open(&tenant_file, fixture.tenant.clone(), metadata, &StoreOptions::default())
        .expect_err("the tenant file is held");
    assert_in_use(error, &tenant_file);

    let error = Kernel::open(fixture.dir.path(), StoreOptions::default()).err().expect("the data directory is held");
    assert_in_use(error, &fixture.dir.path().join("system.redb"));

    // Still usable by its holder.
    let runtime = runtime();
    write_one(&runtime, &fixture.store, contact("Ada", None)).expect("write");
}
