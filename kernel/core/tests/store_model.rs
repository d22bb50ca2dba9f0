//! Model-based test of the record store: random sequences of writes and
//! reads against a tenant store and against a `BTreeMap` model of what the
//! store should hold. Every outcome (success or error kind, versions,
//! deleted state, fields, query results, audit and change counts) must agree
//! with the model.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use crm_core::{
    Actor, ChangeOp, Condition, Cursor, ErrorKind, Filter, Kernel, ListQuery, Mutation, PageRequest, Record, RecordId,
    StoreOptions, TenantStore, Value, WriteRequest,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const FIRST_NAMES: [&str; 4] = ["Ada", "Bob", "Cy", "ada"];
/// Mixed case on purpose: the store keeps emails lowercase, so "Bea@X.io"
/// and "bea@x.io" are the same value.
const EMAILS: [&str; 4] = ["ann@x.io", "Bea@X.io", "cy@x.io", "bea@x.io"];
/// Enum keys are normalized to lowercase too.
const STAGES: [&str; 3] = ["lead", "customer", "Opportunity"];

fn email(index: usize) -> Value {
    Value::Text(EMAILS[index].to_lowercase())
}
fn stage(index: usize) -> Value {
    Value::Text(STAGES[index].to_lowercase())
}
fn first_name(index: usize) -> Value {
    Value::Text(FIRST_NAMES[index].to_string())
}

/// A record as the model expects it.
#[derive(Debug, Clone)]
struct ModelRecord {
    version: u64,
    deleted: bool,
    fields: BTreeMap<String, Value>,
}

#[derive(Debug, Default)]
struct Model {
    records: BTreeMap<RecordId, ModelRecord>,
    /// Changes committed since the case started: each is one audit entry
    /// and one change event.
    changes: u64,
}

impl Model {
    /// The holder of a unique email, deleted records included: a deleted
    /// contact keeps its email until it is purged.
    fn email_holder(&self, value: &Value) -> Option<RecordId> {
        self.records.iter().find(|(_, record)| record.fields.get("email") == Some(value)).map(|(id, _)| *id)
    }

    fn pick(&self, target: &Target) -> RecordId {
        match target {
            Target::Known(index) if !self.records.is_empty() => {
                *self.records.keys().nth(index % self.records.len()).expect("index within bounds")
            }
            Target::Deleted(index) => {
                let deleted: Vec<RecordId> =
                    self.records.iter().filter(|(_, record)| record.deleted).map(|(id, _)| *id).collect();
                match deleted.len() {
                    0 => self.pick(&Target::Known(*index)),
                    count => deleted[index % count],
                }
            }
            _ => RecordId::generate(),
        }
    }

    fn expected_version(&self, id: RecordId, expect: Expect) -> Option<u64> {
        let current = self.records.get(&id).map_or(1, |record| record.version);
        match expect {
            Expect::Any => None,
            Expect::Right => Some(current),
            Expect::Wrong => Some(current + 1),
        }
    }

    fn live(&self) -> impl Iterator<Item = (&RecordId, &ModelRecord)> {
        self.records.iter().filter(|(_, record)| !record.deleted)
    }
}

#[derive(Debug, Clone)]
enum Target {
    /// The n-th record of the model (modulo its size).
    Known(usize),
    /// The n-th deleted record (any record when none is deleted).
    Deleted(usize),
    /// An id no record has.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    Right,
    Wrong,
}

/// For each field: untouched (`None`), set (`Some(Some(_))`) or cleared
/// with a null (`Some(None)`).
#[derive(Debug, Clone, Default)]
struct Patch {
    first_name: Option<Option<usize>>,
    email: Option<Option<usize>>,
    stage: Option<Option<usize>>,
    score: Option<Option<i64>>,
}

impl Patch {
    fn fields(&self) -> BTreeMap<String, Value> {
        let mut fields = BTreeMap::new();
        let mut put = |name: &str, value: Option<Value>| {
            fields.insert(name.to_string(), value.unwrap_or(Value::Null));
        };
        if let Some(value) = self.first_name {
            put("first_name", value.map(first_name));
        }
        if let Some(value) = self.email {
            put("email", value.map(email));
        }
        if let Some(value) = self.stage {
            put("lifecycle_stage", value.map(stage));
        }
        if let Some(value) = self.score {
            put("lead_score", value.map(Value::Int));
        }
        fields
    }
}

#[derive(Debug, Clone, Copy)]
enum SortChoice {
    Default,
    IdDescending,
    CreatedDescending,
    FirstName { descending: bool },
    Score { descending: bool },
    /// An indexed field: pages stream from the index.
    Stage { descending: bool },
    StageThenFirstName,
}

#[derive(Debug, Clone)]
enum Op {
    Create { first_name: Option<usize>, email: Option<usize>, stage: Option<usize>, score: Option<i64> },
    Update { target: Target, patch: Patch, expect: Expect },
    Delete { target: Target, expect: Expect },
    Restore { target: Target },
    Upsert { email: usize, first_name: Option<usize>, stage: Option<usize>, score: Option<i64> },
    Get { target: Target },
    ListByStage { stage: usize },
    ListByEmail { email: usize },
    Count { stage: Option<usize>, include_deleted: bool },
    Walk { sort: SortChoice, page_size: usize, stage: Option<usize> },
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => any::<usize>().prop_map(Target::Known),
        2 => any::<usize>().prop_map(Target::Deleted),
        1 => Just(Target::Unknown),
    ]
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![3 => Just(Expect::Any), 2 => Just(Expect::Right), 1 => Just(Expect::Wrong)]
}

fn patch_value<T: std::fmt::Debug + Clone + 'static>(value: impl Strategy<Value = T> + 'static) -> BoxedStrategy<Option<Option<T>>> {
    prop_oneof![3 => Just(None), 2 => value.prop_map(|v| Some(Some(v))), 1 => Just(Some(None))].boxed()
}

fn score() -> impl Strategy<Value = i64> {
    0i64..4
}

fn sort_choice() -> impl Strategy<Value = SortChoice> {
    prop_oneof![
        Just(SortChoice::Default),
        Just(SortChoice::IdDescending),
        Just(SortChoice::CreatedDescending),
        any::<bool>().prop_map(|descending| SortChoice::FirstName { descending }),
        any::<bool>().prop_map(|descending| SortChoice::Score { descending }),
        any::<bool>().prop_map(|descending| SortChoice::Stage { descending }),
        Just(SortChoice::StageThenFirstName),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let create = (
        prop_oneof![9 => (0..FIRST_NAMES.len()).prop_map(Some), 1 => Just(None)],
        proptest::option::of(0..EMAILS.len()),
        proptest::option::of(0..STAGES.len()),
        proptest::option::of(score()),
    )
        .prop_map(|(first_name, email, stage, score)| Op::Create { first_name, email, stage, score });
    let patch = (
        patch_value(0..FIRST_NAMES.len()),
        patch_value(0..EMAILS.len()),
        patch_value(0..STAGES.len()),
        patch_value(score()),
    )
        .prop_map(|(first_name, email, stage, score)| Patch { first_name, email, stage, score });
    let update = (target(), patch, expect()).prop_map(|(target, patch, expect)| Op::Update { target, patch, expect });
    let upsert = (
        0..EMAILS.len(),
        prop_oneof![4 => (0..FIRST_NAMES.len()).prop_map(Some), 1 => Just(None)],
        proptest::option::of(0..STAGES.len()),
        proptest::option::of(score()),
    )
        .prop_map(|(email, first_name, stage, score)| Op::Upsert { email, first_name, stage, score });
    prop_oneof![
        6 => create,
        5 => update,
        2 => (target(), expect()).prop_map(|(target, expect)| Op::Delete { target, expect }),
        2 => target().prop_map(|target| Op::Restore { target }),
        3 => upsert,
        2 => target().prop_map(|target| Op::Get { target }),
        1 => (0..STAGES.len()).prop_map(|stage| Op::ListByStage { stage }),
        1 => (0..EMAILS.len()).prop_map(|email| Op::ListByEmail { email }),
        1 => (proptest::option::of(0..STAGES.len()), any::<bool>())
            .prop_map(|(stage, include_deleted)| Op::Count { stage, include_deleted }),
        2 => (sort_choice(), 1usize..6, proptest::option::of(0..STAGES.len()))
            .prop_map(|(sort, page_size, stage)| Op::Walk { sort, page_size, stage }),
    ]
}

struct Fixture {
    store: Arc<TenantStore>,
    _kernel: Kernel,
    _dir: tempfile::TempDir,
}

fn open() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).expect("open kernel");
    let (info, _) = kernel.create_tenant("t").expect("create tenant");
    let store = kernel.tenant(&info.id).expect("open tenant");
    Fixture { store, _kernel: kernel, _dir: dir }
}

fn write(store: &TenantStore, runtime: &tokio::runtime::Runtime, mutation: Mutation) -> crm_core::Result<crm_core::Applied> {
    let mut applied = runtime.block_on(store.write(WriteRequest::new(Actor::cli(), vec![mutation])))?;
    assert_eq!(applied.len(), 1, "one mutation, one outcome");
    Ok(applied.remove(0))
}

/// What the model predicts for a write: an error kind, or the change (if
/// any) with the record id it lands on.
enum Outcome {
    Error(ErrorKind),
    Applied { id: RecordId, op: Option<ChangeOp> },
    /// A create: the id is the store's to choose.
    Created,
}

fn check_record(record: &Record, expected: &ModelRecord) -> Result<(), TestCaseError> {
    prop_assert_eq!(record.version, expected.version, "version of {}", record.id);
    prop_assert_eq!(record.is_deleted(), expected.deleted, "deleted state of {}", record.id);
    prop_assert_eq!(&record.fields, &expected.fields, "fields of {}", record.id);
    Ok(())
}

/// Applies `patch` to `fields` the way an update does: nulls clear.
fn patched(fields: &BTreeMap<String, Value>, patch: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut out = fields.clone();
    for (name, value) in patch {
        if value.is_null() {
            out.remove(name);
        } else {
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

/// The model's update: the checks in the order the kernel makes them.
fn model_update(model: &mut Model, id: RecordId, patch: &BTreeMap<String, Value>, expected: Option<u64>) -> Outcome {
    let Some(before) = model.records.get(&id) else { return Outcome::Error(ErrorKind::NotFound) };
    if expected.is_some_and(|expected| expected != before.version) {
        return Outcome::Error(ErrorKind::Conflict);
    }
    if before.deleted {
        return Outcome::Error(ErrorKind::NotFound);
    }
    let after = patched(&before.fields, patch);
    if after == before.fields {
        return Outcome::Applied { id, op: None };
    }
    if let Some(new_email) = after.get("email")
        && before.fields.get("email") != Some(new_email)
        && model.email_holder(new_email).is_some_and(|holder| holder != id)
    {
        return Outcome::Error(ErrorKind::Conflict);
    }
    let record = model.records.get_mut(&id).expect("checked above");
    record.fields = after;
    record.version += 1;
    model.changes += 1;
    Outcome::Applied { id, op: Some(ChangeOp::Updated) }
}

fn create_fields(first: Option<usize>, mail: Option<usize>, lifecycle: Option<usize>, lead_score: Option<i64>) -> BTreeMap<String, Value> {
    let mut fields = BTreeMap::new();
    if let Some(index) = first {
        fields.insert("first_name".to_string(), first_name(index));
    }
    if let Some(index) = mail {
        fields.insert("email".to_string(), email(index));
    }
    if let Some(index) = lifecycle {
        fields.insert("lifecycle_stage".to_string(), stage(index));
    }
    if let Some(score) = lead_score {
        fields.insert("lead_score".to_string(), Value::Int(score));
    }
    fields
}

/// The raw (un-normalized) input the client sends for a create or upsert.
fn raw_fields(first: Option<usize>, mail: Option<usize>, lifecycle: Option<usize>, lead_score: Option<i64>) -> BTreeMap<String, Value> {
    let mut fields = create_fields(first, None, None, lead_score);
    if let Some(index) = mail {
        fields.insert("email".to_string(), Value::Text(EMAILS[index].to_string()));
    }
    if let Some(index) = lifecycle {
        fields.insert("lifecycle_stage".to_string(), Value::Text(STAGES[index].to_string()));
    }
    fields
}

fn model_create(model: &Model, fields: &BTreeMap<String, Value>) -> Outcome {
    if !fields.contains_key("first_name") {
        return Outcome::Error(ErrorKind::Validation);
    }
    if fields.get("email").is_some_and(|value| model.email_holder(value).is_some()) {
        return Outcome::Error(ErrorKind::Conflict);
    }
    Outcome::Created
}

/// Runs one write op against store and model and compares the outcomes.
fn run_write(
    store: &TenantStore,
    runtime: &tokio::runtime::Runtime,
    model: &mut Model,
    op: &Op,
) -> Result<(), TestCaseError> {
    let (mutation, expected, created_fields) = match op {
        Op::Create { first_name, email, stage, score } => {
            let fields = create_fields(*first_name, *email, *stage, *score);
            let mutation = Mutation::Create {
                object: "contact".into(),
                fields: raw_fields(*first_name, *email, *stage, *score),
            };
            (mutation, model_create(model, &fields), Some(fields))
        }
        Op::Update { target, patch, expect } => {
            let id = model.pick(target);
            let expected_version = model.expected_version(id, *expect);
            let fields = patch.fields();
            let outcome = if fields.get("first_name").is_some_and(Value::is_null) {
                // Checked before the request reaches the writer.
                Outcome::Error(ErrorKind::Validation)
            } else {
                model_update(model, id, &fields, expected_version)
            };
            let raw: BTreeMap<String, Value> = fields
                .into_iter()
                .map(|(name, value)| match (name.as_str(), &value) {
                    // Send the spelling the client typed, not the normalized one.
                    ("email", Value::Text(_)) => {
                        let index = patch.email.flatten().expect("email set");
                        (name, Value::Text(EMAILS[index].to_string()))
                    }
                    ("lifecycle_stage", Value::Text(_)) => {
                        let index = patch.stage.flatten().expect("stage set");
                        (name, Value::Text(STAGES[index].to_string()))
                    }
                    _ => (name, value),
                })
                .collect();
            let mutation = Mutation::Update { object: "contact".into(), id, fields: raw, expected_version };
            (mutation, outcome, None)
        }
        Op::Delete { target, expect } => {
            let id = model.pick(target);
            let expected_version = model.expected_version(id, *expect);
            let outcome = match model.records.get_mut(&id) {
                None => Outcome::Error(ErrorKind::NotFound),
                Some(record) if expected_version.is_some_and(|v| v != record.version) => {
                    Outcome::Error(ErrorKind::Conflict)
                }
                Some(record) if record.deleted => Outcome::Error(ErrorKind::NotFound),
                Some(record) => {
                    record.deleted = true;
                    record.version += 1;
                    model.changes += 1;
                    Outcome::Applied { id, op: Some(ChangeOp::Deleted) }
                }
            };
            (Mutation::Delete { object: "contact".into(), id, expected_version }, outcome, None)
        }
        Op::Restore { target } => {
            let id = model.pick(target);
            let outcome = match model.records.get_mut(&id) {
                None => Outcome::Error(ErrorKind::NotFound),
                Some(record) if !record.deleted => Outcome::Error(ErrorKind::Validation),
                Some(record) => {
                    record.deleted = false;
                    record.version += 1;
                    model.changes += 1;
                    Outcome::Applied { id, op: Some(ChangeOp::Restored) }
                }
            };
            (Mutation::Restore { object: "contact".into(), id }, outcome, None)
        }
        Op::Upsert { email: mail, first_name, stage, score } => {
            let fields = create_fields(*first_name, Some(*mail), *stage, *score);
            let mutation = Mutation::Upsert {
                object: "contact".into(),
                key: "email".into(),
                fields: raw_fields(*first_name, Some(*mail), *stage, *score),
            };
            match model.email_holder(&email(*mail)) {
                None => {
                    let outcome = model_create(model, &fields);
                    (mutation, outcome, Some(fields))
                }
                Some(id) => {
                    let record = model.records.get_mut(&id).expect("holder exists");
                    let restored = record.deleted;
                    if restored {
                        record.deleted = false;
                        record.version += 1;
                        model.changes += 1;
                    }
                    let outcome = match model_update(model, id, &fields, None) {
                        // An upsert that only brought the record back reports the restore.
                        Outcome::Applied { id, op: None } if restored => {
                            Outcome::Applied { id, op: Some(ChangeOp::Restored) }
                        }
                        other => other,
                    };
                    (mutation, outcome, None)
                }
            }
        }
        _ => unreachable!("not a write: {op:?}"),
    };

    let result = write(store, runtime, mutation);
    match (expected, result) {
        (Outcome::Error(kind), Err(error)) => {
            prop_assert_eq!(error.kind, kind, "{:?} failed with the wrong kind: {}", op, error.message);
        }
        (Outcome::Error(kind), Ok(applied)) => {
            return Err(TestCaseError::fail(format!("{op:?} should fail with {kind:?}, applied {applied:?}")));
        }
        (_, Err(error)) => {
            return Err(TestCaseError::fail(format!("{op:?} should succeed, failed: {error:?}")));
        }
        (Outcome::Applied { id, op: change }, Ok(applied)) => {
            prop_assert_eq!(applied.record.id, id);
            prop_assert_eq!(applied.op, change, "op reported for {:?}", op);
            check_record(&applied.record, &model.records[&id])?;
        }
        (Outcome::Created, Ok(applied)) => {
            let id = applied.record.id;
            prop_assert_eq!(applied.op, Some(ChangeOp::Created));
            prop_assert!(!model.records.contains_key(&id), "create reused id {}", id);
            if let Some(last) = model.records.keys().next_back() {
                prop_assert!(id > *last, "ids are time-ordered: {} after {}", id, last);
            }
            let record = ModelRecord { version: 1, deleted: false, fields: created_fields.expect("create has fields") };
            check_record(&applied.record, &record)?;
            model.records.insert(id, record);
            model.changes += 1;
        }
    }
    Ok(())
}

fn text_of<'a>(record: &'a ModelRecord, field: &str) -> Option<&'a str> {
    record.fields.get(field).and_then(Value::as_text)
}

/// Nulls sort last ascending (so first descending), ties broken by id.
fn compare_nullable<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.cmp(&b),
    }
}

fn directed(ordering: Ordering, descending: bool) -> Ordering {
    if descending { ordering.reverse() } else { ordering }
}

/// The model's answer to a sorted listing.
fn model_sorted(model: &Model, sort: SortChoice, stage_filter: Option<&Value>) -> Vec<RecordId> {
    let mut rows: Vec<(&RecordId, &ModelRecord)> = model
        .live()
        .filter(|(_, record)| stage_filter.is_none_or(|value| record.fields.get("lifecycle_stage") == Some(value)))
        .collect();
    let score_of = |record: &ModelRecord| match record.fields.get("lead_score") {
        Some(Value::Int(score)) => Some(*score),
        _ => None,
    };
    rows.sort_by(|(a_id, a), (b_id, b)| match sort {
        SortChoice::Default => a_id.cmp(b_id),
        SortChoice::IdDescending | SortChoice::CreatedDescending => b_id.cmp(a_id),
        SortChoice::FirstName { descending } => {
            directed(compare_nullable(text_of(a, "first_name"), text_of(b, "first_name")), descending)
                .then(directed(a_id.cmp(b_id), descending))
        }
        SortChoice::Score { descending } => {
            directed(compare_nullable(score_of(a), score_of(b)), descending).then(directed(a_id.cmp(b_id), descending))
        }
        SortChoice::Stage { descending } => {
            directed(compare_nullable(text_of(a, "lifecycle_stage"), text_of(b, "lifecycle_stage")), descending)
                .then(directed(a_id.cmp(b_id), descending))
        }
        SortChoice::StageThenFirstName => compare_nullable(text_of(a, "lifecycle_stage"), text_of(b, "lifecycle_stage"))
            .then(compare_nullable(text_of(a, "first_name"), text_of(b, "first_name")))
            .then(a_id.cmp(b_id)),
    });
    rows.into_iter().map(|(id, _)| *id).collect()
}

fn list_query(sort: SortChoice) -> ListQuery {
    let query = ListQuery::new("contact");
    match sort {
        SortChoice::Default => query,
        SortChoice::IdDescending => query.sort("id", true),
        SortChoice::CreatedDescending => query.sort("created_at", true),
        SortChoice::FirstName { descending } => query.sort("first_name", descending),
        SortChoice::Score { descending } => query.sort("lead_score", descending),
        SortChoice::Stage { descending } => query.sort("lifecycle_stage", descending),
        SortChoice::StageThenFirstName => query.sort("lifecycle_stage", false).sort("first_name", false),
    }
}

fn ids(records: &[Record]) -> Vec<RecordId> {
    records.iter().map(|record| record.id).collect()
}

fn run_check(store: &TenantStore, model: &Model, op: &Op) -> Result<(), TestCaseError> {
    let failed = |error: crm_core::Error| TestCaseError::fail(format!("{op:?}: {error:?}"));
    match op {
        Op::Get { target } => {
            let id = model.pick(target);
            let found = store.get("contact", id).map_err(failed)?;
            match (found, model.records.get(&id)) {
                (None, None) => {}
                (Some(record), Some(expected)) => check_record(&record, expected)?,
                (found, expected) => {
                    return Err(TestCaseError::fail(format!("get {id}: store has {found:?}, model has {expected:?}")));
                }
            }
        }
        Op::ListByStage { stage: index } => {
            let value = stage(*index);
            let query = ListQuery::new("contact").filter(Filter::field("lifecycle_stage", Condition::Eq(value.clone())));
            let page = store.list(&query, &PageRequest::default()).map_err(failed)?;
            let expected: Vec<RecordId> = model
                .live()
                .filter(|(_, record)| record.fields.get("lifecycle_stage") == Some(&value))
                .map(|(id, _)| *id)
                .collect();
            prop_assert_eq!(ids(&page.records), expected, "contacts with stage {:?}", value);
            prop_assert!(!page.has_next_page);
            // Read for one field: the same records, each with that field and
            // the filter's, as stored, and nothing else.
            let mut narrow = query.clone();
            narrow.fields = Some(Arc::from(vec!["first_name".to_string()]));
            let narrowed = store.list(&narrow, &PageRequest::default()).map_err(failed)?;
            prop_assert_eq!(ids(&narrowed.records), ids(&page.records));
            for (narrow, full) in narrowed.records.iter().zip(&page.records) {
                let kept: BTreeMap<String, Value> = full
                    .fields
                    .iter()
                    .filter(|(name, _)| *name == "first_name" || *name == "lifecycle_stage")
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                prop_assert_eq!(&narrow.fields, &kept);
                prop_assert_eq!((narrow.version, narrow.created_at, narrow.updated_at), (full.version, full.created_at, full.updated_at));
            }
        }
        Op::ListByEmail { email: index } => {
            let value = email(*index);
            let query = ListQuery::new("contact").filter(Filter::field("email", Condition::Eq(value.clone())));
            let page = store.list(&query, &PageRequest::default()).map_err(failed)?;
            let expected: Vec<RecordId> = model
                .live()
                .filter(|(_, record)| record.fields.get("email") == Some(&value))
                .map(|(id, _)| *id)
                .collect();
            prop_assert_eq!(ids(&page.records), expected, "contacts with email {:?}", value);
        }
        Op::Count { stage: index, include_deleted } => {
            let mut query = ListQuery::new("contact");
            query.include_deleted = *include_deleted;
            let value = index.map(stage);
            if let Some(value) = &value {
                query = query.filter(Filter::field("lifecycle_stage", Condition::Eq(value.clone())));
            }
            let expected = model
                .records
                .values()
                .filter(|record| *include_deleted || !record.deleted)
                .filter(|record| value.as_ref().is_none_or(|value| record.fields.get("lifecycle_stage") == Some(value)))
                .count() as u64;
            prop_assert_eq!(store.count(&query).map_err(failed)?, expected, "{:?}", op);
        }
        Op::Walk { sort, page_size, stage: index } => {
            let value = index.map(stage);
            let mut query = list_query(*sort);
            if let Some(value) = &value {
                query = query.filter(Filter::field("lifecycle_stage", Condition::Eq(value.clone())));
            }
            // Every other walk reads one field only: the order and the
            // cursors must not depend on fields the caller does not read.
            if page_size % 2 == 0 {
                query.fields = Some(Arc::from(vec!["email".to_string()]));
            }
            let expected = model_sorted(model, *sort, value.as_ref());
            let order = query.effective_sort();
            let mut seen = Vec::new();
            let mut after: Option<Cursor> = None;
            for _ in 0..=expected.len() + 1 {
                let request = PageRequest { first: Some(*page_size), after: after.clone(), ..PageRequest::default() };
                let page = store.list(&query, &request).map_err(failed)?;
                prop_assert!(page.records.len() <= *page_size, "page larger than asked");
                seen.extend(ids(&page.records));
                prop_assert_eq!(
                    page.has_next_page,
                    seen.len() < expected.len(),
                    "has_next_page after {} of {} records ({:?})",
                    seen.len(),
                    expected.len(),
                    op
                );
                if !page.has_next_page {
                    break;
                }
                let last = page.records.last().ok_or_else(|| TestCaseError::fail("empty page claims a next page"))?;
                // Round-trip the cursor through its text form, as a client does.
                let cursor = Cursor::of(last, &order).encode();
                after = Some(Cursor::decode(&cursor, &order).map_err(failed)?);
            }
            prop_assert_eq!(seen, expected, "walking all pages of {:?}", op);
        }
        _ => unreachable!("not a check: {op:?}"),
    }
    Ok(())
}

/// Audit entries and change events since `audit_base`/`change_base` match
/// the model's change count, and the audit chain is intact from the start.
fn check_logs(store: &TenantStore, audit_base: usize, change_base: usize, model: &Model) -> Result<(), TestCaseError> {
    let reader = store.reader().map_err(|error| TestCaseError::fail(format!("{error:?}")))?;
    let audit = reader.audit_entries(0, usize::MAX).map_err(|error| TestCaseError::fail(format!("{error:?}")))?;
    let changes = reader.changes(0, usize::MAX).map_err(|error| TestCaseError::fail(format!("{error:?}")))?;
    prop_assert_eq!((audit.len() - audit_base) as u64, model.changes, "audit entries");
    prop_assert_eq!((changes.len() - change_base) as u64, model.changes, "change events");
    let mut previous = [0u8; 32];
    for (index, entry) in audit.iter().enumerate() {
        prop_assert_eq!(entry.seq, index as u64 + 1);
        prop_assert_eq!(entry.prev_hash, previous, "audit entry {} does not chain", entry.seq);
        prop_assert_eq!(entry.hash, entry.compute_hash(), "audit entry {} hash", entry.seq);
        previous = entry.hash;
    }
    for (entry, event) in audit.iter().zip(&changes) {
        prop_assert_eq!((entry.record_id, entry.op), (event.record_id, event.op));
    }
    for event in changes.iter().filter(|event| event.object == "contact") {
        let record = model.records.get(&event.record_id);
        prop_assert!(record.is_some_and(|record| record.version >= event.version), "event {:?}", event);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // A failing sequence is printed, shrunk; keep the source tree clean.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let fixture = open();
        let store = &fixture.store;
        let (audit_base, change_base) = {
            let reader = store.reader().expect("reader");
            (reader.audit_entries(0, usize::MAX).expect("audit").len(), reader.changes(0, usize::MAX).expect("changes").len())
        };
        let mut model = Model::default();
        for op in &ops {
            match op {
                Op::Create { .. } | Op::Update { .. } | Op::Delete { .. } | Op::Restore { .. } | Op::Upsert { .. } => {
                    run_write(store, &runtime, &mut model, op)?
                }
                _ => run_check(store, &model, op)?,
            }
        }
        // Every record, whatever the sequence checked along the way.
        for (id, expected) in &model.records {
            let record = store.get("contact", *id).expect("get").expect("record present");
            check_record(&record, expected)?;
        }
        check_logs(store, audit_base, change_base, &model)?;
    }
}
