//! Sealed audit values and erasure by deleting record keys: values of
//! personal records are stored sealed and read back opened; once a record's
//! key is deleted its audit values cannot be read by anyone, while every
//! entry stays in place and the chain still verifies.

use std::path::Path;
use std::sync::Arc;

use crm_core::audit_verify::verify_file;
use crm_core::seal::{self, RecordKey};
use crm_core::{
    Actor, AuditEntry, ChangeOp, Effect, ErrorKind, Fields, Kernel, Mutation, RecordId, StoreOptions, TenantId, TenantStore,
    Value, WriteRequest,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// The audit table as the kernel stores it: seq → postcard entry.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

const EMAIL: &str = "ada.lovelace.erasure@example.com";
const NAME: &str = "Augusta-Erasure";
const PHONE: &str = "+44 20 7946 0958";
const SUBJECT: &str = "Call about the analytical engine";
const BODY: &str = "She asked for the Bernoulli numbers note";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

fn open(path: &Path) -> Arc<TenantStore> {
    TenantStore::open(path, TenantId::parse("t1").expect("tenant id"), Kernel::standard_metadata(), &StoreOptions::default())
        .expect("open store")
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Fields {
    pairs.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
}

fn write(runtime: &tokio::runtime::Runtime, store: &TenantStore, request: WriteRequest) -> Vec<crm_core::Applied> {
    runtime.block_on(store.write(request)).expect("write")
}

fn one(runtime: &tokio::runtime::Runtime, store: &TenantStore, mutation: Mutation) -> RecordId {
    write(runtime, store, WriteRequest::new(Actor::cli(), vec![mutation]))[0].record.id
}

/// A contact with personal values, updated twice, an activity about them
/// and a company; returns (contact, activity, company).
fn person(runtime: &tokio::runtime::Runtime, store: &TenantStore) -> (RecordId, RecordId, RecordId) {
    let company = one(
        runtime,
        store,
        Mutation::Create { object: "company".into(), fields: fields([("name", text("Analytical Engines Ltd"))]) },
    );
    let contact = one(
        runtime,
        store,
        Mutation::Create {
            object: "contact".into(),
            fields: fields([("first_name", text(NAME)), ("email", text(EMAIL)), ("company_id", Value::Id(company))]),
        },
    );
    for patch in [fields([("phone", text(PHONE)), ("title", text("Countess"))]), fields([("email_opt_in", Value::Bool(true))])] {
        one(runtime, store, Mutation::Update { object: "contact".into(), id: contact, fields: patch, expected_version: None });
    }
    let activity = one(
        runtime,
        store,
        Mutation::Create {
            object: "activity".into(),
            fields: fields([
                ("kind", text("call")),
                ("subject", text(SUBJECT)),
                ("body", text(BODY)),
                ("contact_id", Value::Id(contact)),
            ]),
        },
    );
    (contact, activity, company)
}

/// Every value of every change of `entries`.
fn values(entries: &[AuditEntry]) -> Vec<&Value> {
    entries.iter().flat_map(|entry| entry.diff.iter().flat_map(|change| [&change.before, &change.after])).collect()
}

fn mentions(value: &Value, needle: &str) -> bool {
    match value {
        Value::Text(text) => text.contains(needle),
        Value::List(items) => items.iter().any(|item| item.contains(needle)),
        _ => false,
    }
}

/// Every audit entry as stored in the file, decoded.
fn stored_entries(path: &Path) -> Vec<(Vec<u8>, AuditEntry)> {
    let db = redb::Database::open(path).expect("open the tenant file");
    let txn = db.begin_read().expect("read transaction");
    let table = txn.open_table(AUDIT).expect("audit table");
    table
        .iter()
        .expect("iterate")
        .map(|item| {
            let (_, bytes) = item.expect("entry");
            let bytes = bytes.value().to_vec();
            let entry = postcard::from_bytes(&bytes).expect("decode entry");
            (bytes, entry)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// The request that erases the person: every personal field of the
/// contact cleared (the required first name replaced), the contact
/// deleted, the activity's texts cleared, then both records' keys deleted.
fn erasure(contact: RecordId, activity: RecordId) -> WriteRequest {
    let cleared = fields([
        ("first_name", text("erased")),
        ("email", Value::Null),
        ("phone", Value::Null),
        ("title", Value::Null),
        ("company_id", Value::Null),
        ("email_opt_in", Value::Null),
        ("email_opt_in_at", Value::Null),
        ("email_opt_in_source", Value::Null),
    ]);
    let mut request = WriteRequest::new(
        Actor::cli(),
        vec![
            Mutation::Update { object: "contact".into(), id: contact, fields: cleared, expected_version: None },
            Mutation::Delete { object: "contact".into(), id: contact, expected_version: None },
            Mutation::Update {
                object: "activity".into(),
                id: activity,
                fields: fields([("subject", Value::Null), ("body", Value::Null)]),
                expected_version: None,
            },
        ],
    );
    request.effects =
        vec![Effect::DeleteRecordKeys { records: vec![("contact".into(), contact), ("activity".into(), activity)] }];
    request
}

#[test]
fn personal_values_are_stored_sealed_and_read_back_opened() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tenant.redb");
    let store = open(&path);
    let (contact, activity, company) = person(&runtime, &store);
    let reader = store.reader().expect("reader");

    // History opens every value: the diffs are the plain changes.
    let history = reader.history("contact", contact).expect("history");
    assert_eq!(
        history.iter().map(|entry| entry.op).collect::<Vec<_>>(),
        [ChangeOp::Created, ChangeOp::Updated, ChangeOp::Updated]
    );
    let change = |entry: &AuditEntry, field: &str| entry.diff.iter().find(|change| change.field == field).cloned();
    assert_eq!(change(&history[0], "email").map(|change| (change.before, change.after)), Some((Value::Null, text(EMAIL))));
    assert_eq!(change(&history[0], "company_id").map(|change| change.after), Some(Value::Id(company)));
    assert_eq!(change(&history[1], "phone").map(|change| change.after), Some(text(PHONE)));
    assert_eq!(change(&history[2], "email_opt_in").map(|change| change.after), Some(Value::Bool(true)));
    assert!(values(&history).iter().all(|value| !seal::is_sealed(value)), "every value opens: {history:?}");
    let activity_history = reader.history("activity", activity).expect("history");
    assert_eq!(change(&activity_history[0], "body").map(|change| change.after), Some(text(BODY)));
    assert!(reader.record_key("contact", contact).expect("key").is_some());
    // Other objects keep plain values and get no key.
    let company_history = reader.history("company", company).expect("history");
    assert_eq!(change(&company_history[0], "name").map(|change| change.after), Some(text("Analytical Engines Ltd")));
    assert!(reader.record_key("company", company).expect("key").is_none());

    // As stored, every non-null value of the personal records is sealed
    // and no stored entry carries a personal value.
    let stored = reader.audit_entries(0, usize::MAX).expect("audit");
    let personal: Vec<&AuditEntry> = stored.iter().filter(|entry| seal::is_personal(&entry.object)).collect();
    assert_eq!(personal.len(), 4);
    for entry in &personal {
        for value in entry.diff.iter().flat_map(|change| [&change.before, &change.after]) {
            assert!(value.is_null() || seal::is_sealed(value), "entry {} stores {value:?}", entry.seq);
        }
    }
    for needle in [EMAIL, NAME, PHONE, SUBJECT, BODY] {
        assert!(!values(&stored).iter().any(|value| mentions(value, needle)), "{needle} is stored in the audit log");
    }
    // Opening a page of stored entries gives what history gives.
    let mut opened = stored.clone();
    reader.open_audit(&mut opened).expect("open");
    let opened_contact: Vec<AuditEntry> = opened.into_iter().filter(|entry| entry.record_id == contact).collect();
    assert_eq!(opened_contact, history);
    drop(reader);
    drop(store);

    for (bytes, entry) in stored_entries(&path) {
        for needle in [EMAIL, NAME, PHONE, SUBJECT, BODY] {
            assert!(!contains(&bytes, needle), "audit entry {} holds {needle} in its stored bytes", entry.seq);
        }
    }
    let report = verify_file(&path).expect("verify");
    assert!(report.is_intact(), "{report:?}");
}

#[test]
fn deleting_the_keys_erases_every_audit_value_and_the_chain_still_verifies() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tenant.redb");
    let store = open(&path);
    let (contact, activity, company) = person(&runtime, &store);
    // Someone else, untouched by the erasure.
    let other = one(
        &runtime,
        &store,
        Mutation::Create {
            object: "contact".into(),
            fields: fields([("first_name", text("Grace")), ("email", text("grace@example.com"))]),
        },
    );
    let before = store.reader().expect("reader").audit_entries(0, usize::MAX).expect("audit");

    let applied = write(&runtime, &store, erasure(contact, activity));
    assert_eq!(
        applied.iter().map(|applied| applied.op).collect::<Vec<_>>(),
        [Some(ChangeOp::Updated), Some(ChangeOp::Deleted), Some(ChangeOp::Updated)]
    );

    let reader = store.reader().expect("reader");
    assert!(reader.record_key("contact", contact).expect("key").is_none());
    assert!(reader.record_key("activity", activity).expect("key").is_none());
    // The entries are all there, with field names, actors and operations;
    // every value that was not null stays sealed, the erasing update's too.
    let history = reader.history("contact", contact).expect("history");
    assert_eq!(
        history.iter().map(|entry| entry.op).collect::<Vec<_>>(),
        [ChangeOp::Created, ChangeOp::Updated, ChangeOp::Updated, ChangeOp::Updated, ChangeOp::Deleted]
    );
    assert!(history.iter().all(|entry| entry.actor == Actor::cli()));
    let erasing = &history[3];
    assert!(
        erasing.diff.iter().any(|change| change.field == "email" && seal::is_sealed(&change.before) && change.after.is_null())
    );
    assert!(erasing.diff.iter().any(|change| change.field == "first_name" && seal::is_sealed(&change.after)));
    let activity_history = reader.history("activity", activity).expect("history");
    assert_eq!(activity_history.len(), 2);
    for entries in [&history, &activity_history] {
        assert!(values(entries).iter().all(|value| value.is_null() || seal::is_sealed(value)), "{entries:?}");
        for needle in [EMAIL, NAME, PHONE, SUBJECT, BODY, "Countess"] {
            assert!(!values(entries).iter().any(|value| mentions(value, needle)), "{needle} is readable");
        }
    }
    // The record holds no personal value any more, and the email is free.
    let record = reader.get("contact", contact).expect("get").expect("the contact is kept, deleted");
    assert!(record.is_deleted());
    assert_eq!(record.fields, fields([("first_name", text("erased"))]));
    assert_eq!(reader.unique_id("contact", "email", &text(EMAIL)).expect("unique"), None);
    let activity_record = reader.get("activity", activity).expect("get").expect("activity");
    assert!(activity_record.get("subject").is_null() && activity_record.get("body").is_null());
    assert_eq!(activity_record.get("contact_id"), &Value::Id(contact));

    // Nothing written before changed: same entries, same hashes.
    let after = reader.audit_entries(0, usize::MAX).expect("audit");
    assert_eq!(&after[..before.len()], before.as_slice());
    // Others keep their values and keys.
    let grace = reader.history("contact", other).expect("history");
    assert!(grace[0].diff.iter().any(|change| change.field == "email" && change.after == text("grace@example.com")));
    assert_eq!(reader.history("company", company).expect("history").len(), 1);
    assert!(reader.verify_audit().expect("verify").is_intact());

    // A later change of the record is sealed with a new key; the erased
    // values stay erased.
    drop(reader);
    write(&runtime, &store, WriteRequest::new(Actor::cli(), vec![Mutation::Restore { object: "contact".into(), id: contact }]));
    one(
        &runtime,
        &store,
        Mutation::Update {
            object: "contact".into(),
            id: contact,
            fields: fields([("title", text("Restored"))]),
            expected_version: None,
        },
    );
    let reader = store.reader().expect("reader");
    let history = reader.history("contact", contact).expect("history");
    let last = history.last().expect("entry");
    assert_eq!(
        last.diff.iter().find(|change| change.field == "title").map(|change| change.after.clone()),
        Some(text("Restored"))
    );
    assert!(
        history[..5]
            .iter()
            .all(|entry| values(std::slice::from_ref(entry)).iter().all(|value| value.is_null() || seal::is_sealed(value)))
    );
    drop(reader);
    drop(store);

    let report = verify_file(&path).expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.verified, after.len() as u64 + 2);
    for (bytes, entry) in stored_entries(&path) {
        for needle in [EMAIL, NAME, PHONE, SUBJECT, BODY] {
            assert!(!contains(&bytes, needle), "audit entry {} holds {needle}", entry.seq);
        }
    }
}

#[test]
fn a_key_is_bound_to_its_record() {
    // The key of one record does not open another record's values, so
    // deleting one person's key never depends on anyone else's.
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir.path().join("tenant.redb"));
    let (contact, activity, _) = person(&runtime, &store);
    let reader = store.reader().expect("reader");
    let contact_key = reader.record_key("contact", contact).expect("key").expect("a key");
    let activity_key = reader.record_key("activity", activity).expect("key").expect("a key");
    assert_ne!(contact_key, activity_key);
    let stored = reader.audit_entries(0, usize::MAX).expect("audit");
    let sealed = stored
        .iter()
        .filter(|entry| entry.record_id == activity)
        .flat_map(|entry| entry.diff.iter())
        .find(|change| change.field == "body")
        .expect("the body change");
    assert_eq!(activity_key.open("activity", activity, "body", &sealed.after), Some(text(BODY)));
    assert_eq!(contact_key.open("activity", activity, "body", &sealed.after), None);
    assert_eq!(RecordKey::generate().open("activity", activity, "body", &sealed.after), None);
}

#[test]
fn input_that_looks_sealed_is_refused_and_changes_nothing() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir.path().join("tenant.redb"));
    let count = store.reader().expect("reader").audit_entries(0, usize::MAX).expect("audit").len();
    let forged = format!("{}AAAA", seal::SEALED_PREFIX);
    let error = runtime
        .block_on(store.write(WriteRequest::new(
            Actor::cli(),
            vec![Mutation::Create { object: "contact".into(), fields: fields([("first_name", text(&forged))]) }],
        )))
        .expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Validation);
    assert_eq!(error.field.as_deref(), Some("first_name"));
    assert_eq!(store.reader().expect("reader").audit_entries(0, usize::MAX).expect("audit").len(), count);
}
