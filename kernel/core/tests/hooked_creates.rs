//! A create that a before-write hook sees is written once, after the hook:
//! what the hook patched is in the stored record, in its index entries and
//! in its audit entry, and uniqueness holds between the records of one
//! write, and against stored ones, as it does without a hook.

use std::collections::HashSet;
use std::sync::Arc;

use crm_core::plugin::{HookCall, HookFailure, PendingChange, WriteHooks};
use crm_core::query::{Condition, Filter, ListQuery, PageRequest};
use crm_core::{Actor, ChangeOp, ErrorKind, Fields, Kernel, Mutation, StoreOptions, TenantStore, Value, WriteRequest};

/// Sets every contact's `country` (an indexed field) to NZ, and its email
/// to what follows `to:` in a first name of that form.
struct Patching;

impl WriteHooks for Patching {
    fn covers(&self, object: &str, op: ChangeOp) -> bool {
        object == "contact" && matches!(op, ChangeOp::Created | ChangeOp::Updated)
    }

    fn before_write(&self, _call: HookCall<'_>, changes: &mut [PendingChange<'_>]) -> Result<(), HookFailure> {
        for change in changes.iter_mut() {
            if let Value::Text(name) = change.get("first_name")
                && let Some(email) = name.strip_prefix("to:")
            {
                let email = Value::Text(email.to_string());
                change.set("email", email);
            }
            change.set("country", Value::Text("NZ".into()));
        }
        Ok(())
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.into())
}

fn contact(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(name, value)| (name.to_string(), text(value))).collect()
}

fn create(pairs: &[(&str, &str)]) -> Mutation {
    Mutation::Create { object: "contact".into(), fields: contact(pairs) }
}

fn upsert(pairs: &[(&str, &str)]) -> Mutation {
    Mutation::Upsert { object: "contact".into(), key: "email".into(), fields: contact(pairs) }
}

struct Tenant {
    _dir: tempfile::TempDir,
    store: Arc<TenantStore>,
}

fn tenant(hooked: bool) -> Tenant {
    let dir = tempfile::tempdir().unwrap();
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).unwrap();
    let (info, _) = kernel.create_tenant("t").unwrap();
    let store = kernel.tenant(&info.id).unwrap();
    if hooked {
        store.set_hooks(Some(Arc::new(Patching)));
    }
    Tenant { _dir: dir, store }
}

async fn write(tenant: &Tenant, mutations: Vec<Mutation>) -> crm_core::Result<Vec<crm_core::Applied>> {
    tenant.store.write(WriteRequest::new(Actor::cli(), mutations)).await
}

fn contacts(tenant: &Tenant, filter: Option<Filter>) -> u64 {
    let mut query = ListQuery::new("contact");
    query.filter = filter;
    tenant.store.count(&query).unwrap()
}

/// Every contact, walking the `country` index: a record with a stale entry
/// would come twice, one without an entry not at all.
fn by_country(tenant: &Tenant) -> Vec<crm_core::Record> {
    let query = ListQuery::new("contact").sort("country", false);
    let page = PageRequest { first: Some(10_000), ..Default::default() };
    tenant.store.list(&query, &page).unwrap().records
}

#[tokio::test]
async fn patched_creates_are_stored_indexed_and_audited_with_the_patch() {
    let tenant = tenant(true);
    let audited_before = tenant.store.reader().unwrap().audit_entries(0, 100_000).unwrap().len();
    let mutations = (0..300).map(|i| create(&[("first_name", &format!("p{i}"))])).collect();
    let applied = write(&tenant, mutations).await.unwrap();
    assert!(applied.iter().all(|applied| applied.record.get("country") == &text("NZ")), "answers carry the patch");

    assert_eq!(contacts(&tenant, Some(Filter::field("country", Condition::Eq(text("NZ"))))), 300);
    assert_eq!(contacts(&tenant, Some(Filter::field("country", Condition::IsNull(true)))), 0);
    let walked = by_country(&tenant);
    let ids: HashSet<_> = walked.iter().map(|record| record.id).collect();
    assert_eq!((walked.len(), ids.len()), (300, 300), "one index entry per record");
    for applied in &applied {
        let stored = tenant.store.get("contact", applied.record.id).unwrap().unwrap();
        assert_eq!(stored, applied.record);
        assert_eq!(stored.version, 1);
    }

    let audit = tenant.store.reader().unwrap().audit_entries(0, 100_000).unwrap();
    let created = &audit[audited_before..];
    assert_eq!(created.len(), 300, "one entry per create");
    assert!(created.iter().all(|entry| entry.diff.iter().any(|change| change.field == "country")));
}

#[tokio::test]
async fn a_patch_into_an_email_another_create_of_the_write_holds_fails_the_request() {
    let tenant = tenant(true);
    let error = write(&tenant, vec![create(&[("first_name", "ann"), ("email", "a@x.test")]), create(&[("first_name", "to:a@x.test")])])
        .await
        .unwrap_err();
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::Conflict, Some("email")), "{error:?}");
    assert_eq!(contacts(&tenant, None), 0, "nothing of the request is written");

    // Two creates patched into one email.
    let error = write(&tenant, vec![create(&[("first_name", "to:b@x.test")]), create(&[("first_name", "to:b@x.test")])]).await.unwrap_err();
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::Conflict, Some("email")), "{error:?}");
    assert_eq!(contacts(&tenant, None), 0);
    assert!(by_country(&tenant).is_empty());
}

#[tokio::test]
async fn a_patch_into_a_stored_records_email_fails() {
    let tenant = tenant(true);
    let stored = write(&tenant, vec![create(&[("first_name", "sam"), ("email", "s@x.test")])]).await.unwrap();
    let error = write(&tenant, vec![create(&[("first_name", "to:s@x.test")])]).await.unwrap_err();
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::Conflict, Some("email")), "{error:?}");
    assert_eq!(contacts(&tenant, None), 1);

    // The create asks for a taken email and the hook would move it elsewhere.
    let applied = write(&tenant, vec![create(&[("first_name", "to:elsewhere@x.test"), ("email", "s@x.test")])]).await;
    // The email asked for is checked before the hook runs, as without a hook.
    assert_eq!(applied.unwrap_err().kind, ErrorKind::Conflict);
    assert_eq!(contacts(&tenant, None), 1);
    let sam = tenant.store.get("contact", stored[0].record.id).unwrap().unwrap();
    assert_eq!(sam.get("email"), &text("s@x.test"));
}

#[tokio::test]
async fn an_upsert_finds_a_create_of_the_same_write_as_without_a_hook() {
    let mutations = || vec![create(&[("first_name", "ann"), ("email", "u@x.test")]), upsert(&[("first_name", "Ann B"), ("email", "u@x.test")])];
    for hooked in [false, true] {
        let tenant = tenant(hooked);
        let applied = write(&tenant, mutations()).await.unwrap();
        assert_eq!(applied[0].record.id, applied[1].record.id, "hooked: {hooked}");
        assert_eq!(contacts(&tenant, None), 1, "hooked: {hooked}");
        let stored = tenant.store.get("contact", applied[0].record.id).unwrap().unwrap();
        assert_eq!(stored.get("first_name"), &text("Ann B"), "hooked: {hooked}");
        assert_eq!(stored.get("email"), &text("u@x.test"), "hooked: {hooked}");
        assert_eq!(stored, applied[1].record, "hooked: {hooked}");
        let expected_country = if hooked { text("NZ") } else { Value::Null };
        assert_eq!(stored.get("country"), &expected_country);
        let walked = by_country(&tenant);
        assert_eq!(walked.len(), 1, "hooked: {hooked}");
    }
}

/// Titles a contact whose first name a change renames.
struct TitleOnRename;

impl WriteHooks for TitleOnRename {
    fn covers(&self, object: &str, op: ChangeOp) -> bool {
        object == "contact" && op == ChangeOp::Updated
    }

    fn before_write(&self, _call: HookCall<'_>, changes: &mut [PendingChange<'_>]) -> Result<(), HookFailure> {
        for change in changes.iter_mut() {
            if change.before.is_some_and(|before| before.get("first_name") != change.after.get("first_name")) {
                change.set("title", Value::Text("renamed".into()));
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_later_change_of_the_record_in_the_same_write_keeps_its_own_value() {
    let tenant = tenant(false);
    let created = write(&tenant, vec![create(&[("first_name", "Ada"), ("title", "CTO")])]).await.unwrap().remove(0).record;
    tenant.store.set_hooks(Some(Arc::new(TitleOnRename)));
    let update = |pairs: &[(&str, &str)]| Mutation::Update { object: "contact".into(), id: created.id, fields: contact(pairs), expected_version: None };

    // The hook titles the rename; the write's next change sets the title itself.
    let applied = write(&tenant, vec![update(&[("first_name", "Grace")]), update(&[("title", "CEO")])]).await.unwrap();
    let stored = tenant.store.get("contact", created.id).unwrap().unwrap();
    assert_eq!((stored.get("first_name"), stored.get("title")), (&text("Grace"), &text("CEO")));
    assert_eq!(applied.last().map(|applied| applied.record.get("title")), Some(&text("CEO")));

    // With no later change of the title, the hook's patch stands.
    write(&tenant, vec![update(&[("first_name", "Hedy")]), update(&[("country", "AT")])]).await.unwrap();
    let stored = tenant.store.get("contact", created.id).unwrap().unwrap();
    assert_eq!((stored.get("title"), stored.get("country")), (&text("renamed"), &text("AT")));
}
