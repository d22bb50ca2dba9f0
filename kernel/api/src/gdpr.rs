//! Personal data of one person, for admins (DESIGN §7):
//! `exportPerson(email)` returns everything the tenant holds about them as
//! JSON; `erasePerson(email)` clears their personal values and deletes the
//! keys that seal their audit values, in one write.
//!
//! A person is every contact with the email (lowercased, deleted ones
//! included). Their records are the contacts, the records whose reference
//! fields point at a contact (activities, deals, …) and the audit entries
//! of all of these.

use std::collections::BTreeMap;

use async_graphql::Value as Gql;
use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, TypeRef};
use crm_core::metadata::{FieldType, ObjectDef};
use crm_core::normalize::{format_datetime, normalize};
use crm_core::seal;
use crm_core::{AuditEntry, Effect, Error, Mutation, Reader, Record, RecordId, Value, WriteRequest};
use serde_json::{Map, Value as Json, json};

use crate::context::RequestCtx;
use crate::convert::record_json;
use crate::names::camel;
use crate::resolver::{GqlResult, admin, fail, getter};

/// Fields erasure keeps on a contact: who owns the record, so it stays
/// within the same permissions.
const OWNERSHIP_FIELDS: [&str; 2] = ["owner_id", "team_id"];

/// Fields of an activity that hold what was said or written.
const ACTIVITY_TEXT_FIELDS: [&str; 2] = ["subject", "body"];

/// What erasure writes into a required text field, which cannot be empty.
pub const ERASED_TEXT: &str = "erased";

/// A field change as readers see it: sealed values opened, or null and
/// `erased` when the record's key was deleted.
pub(crate) struct ShownChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
    pub erased: bool,
}

/// The changes of an audit entry as shown. Entries of personal objects
/// read as stored (the audit log) are opened here with one key lookup.
pub(crate) fn shown_changes(rc: &RequestCtx, entry: &AuditEntry) -> Result<Vec<ShownChange>, Error> {
    let sealed = |value: &Value| seal::is_personal(&entry.object) && seal::is_sealed(value);
    let mut opened = None;
    if entry.diff.iter().any(|change| sealed(&change.before) || sealed(&change.after)) {
        let mut copy = entry.clone();
        rc.store.reader()?.open_audit(std::slice::from_mut(&mut copy))?;
        opened = Some(copy);
    }
    let entry = opened.as_ref().unwrap_or(entry);
    Ok(entry
        .diff
        .iter()
        .map(|change| {
            let shown = |value: &Value| if sealed(value) { Value::Null } else { value.clone() };
            ShownChange {
                field: change.field.clone(),
                before: shown(&change.before),
                after: shown(&change.after),
                erased: sealed(&change.before) || sealed(&change.after),
            }
        })
        .collect())
}

/// What `erasePerson` did.
struct ErasureReport {
    contacts: usize,
    activities: usize,
    audit_entries: usize,
}

pub fn types() -> Vec<async_graphql::dynamic::Type> {
    let report = Object::new("ErasureReport")
        .description("What an erasure changed: contacts cleared and deleted, activities cleared, audit entries whose values can no longer be read.")
        .field(getter!(ErasureReport, "contacts", TypeRef::named_nn(TypeRef::INT), |r| Some(Gql::from(r.contacts as u64))))
        .field(getter!(ErasureReport, "activities", TypeRef::named_nn(TypeRef::INT), |r| Some(Gql::from(r.activities as u64))))
        .field(getter!(ErasureReport, "auditEntries", TypeRef::named_nn(TypeRef::INT), |r| Some(Gql::from(r.audit_entries as u64))));
    vec![report.into()]
}

pub fn add_queries(query: Object) -> Object {
    query.field(
        Field::new("exportPerson", TypeRef::named_nn("JSON"), |ctx| {
            FieldFuture::new(async move {
                let rc = admin(&ctx)?;
                let email = email_arg(rc, &ctx)?;
                let export = export_person(rc, &email).map_err(|e| fail(rc, e))?;
                Ok(Some(Gql::from_json(export).map_err(|e| fail(rc, Error::internal(e.to_string())))?))
            })
        })
        .argument(InputValue::new("email", TypeRef::named_nn(TypeRef::STRING)))
        .description(
            "Everything held about the person with this email (admin): their contacts, the records referring to them, \
             consent and every audit entry of these, as JSON. Values erased earlier read as null.",
        ),
    )
}

pub fn add_mutations(mutation: Object) -> Object {
    mutation.field(
        Field::new("erasePerson", TypeRef::named_nn("ErasureReport"), |ctx| {
            FieldFuture::new(async move {
                let rc = admin(&ctx)?;
                let email = email_arg(rc, &ctx)?;
                let report = erase_person(rc, &email).await.map_err(|e| fail(rc, e))?;
                Ok(Some(FieldValue::owned_any(report)))
            })
        })
        .argument(InputValue::new("email", TypeRef::named_nn(TypeRef::STRING)))
        .description(
            "Erases the person with this email (admin): their contacts lose every value but owner and team and are \
             deleted, their activities lose subject and body, and the values of all their audit entries become \
             unreadable. The entries themselves (fields, actors, times, operations) and the chain stay.",
        ),
    )
}

/// The `email` argument, checked and lowercased like a contact's email.
fn email_arg(rc: &RequestCtx, ctx: &ResolverContext<'_>) -> GqlResult<Value> {
    let text = ctx.args.try_get("email")?.string()?.to_string();
    let contact = rc.store.object("contact").map_err(|e| fail(rc, e))?;
    let field = contact.field("email").ok_or_else(|| fail(rc, Error::invalid("contacts have no email field")))?;
    let email = normalize(field, Value::Text(text)).map_err(|e| fail(rc, e))?;
    if email.is_null() {
        return Err(fail(rc, Error::invalid_field("email", "is required")));
    }
    Ok(email)
}

/// The contacts with `email`, deleted ones included, in id order.
fn contacts_with(reader: &Reader<'_>, email: &Value) -> Result<Vec<Record>, Error> {
    let ids = reader.index_ids("contact", "email", email)?;
    let mut contacts: Vec<Record> = reader.get_many("contact", &ids)?.into_values().collect();
    contacts.sort_by_key(|record| record.id);
    Ok(contacts)
}

/// Records of every object whose reference fields point at one of
/// `contacts`: object name → (reference fields, records in id order).
fn referring(reader: &Reader<'_>, contacts: &[Record]) -> Result<BTreeMap<String, Vec<(String, Record)>>, Error> {
    let mut out: BTreeMap<String, Vec<(String, Record)>> = BTreeMap::new();
    for (object, field) in reader.metadata().references_to("contact") {
        for contact in contacts {
            let ids = reader.index_ids(&object.name, &field.name, &Value::Id(contact.id))?;
            let records = out.entry(object.name.clone()).or_default();
            for (_, record) in reader.get_many(&object.name, &ids)? {
                if !records.iter().any(|(_, known)| known.id == record.id) {
                    records.push((field.name.clone(), record));
                }
            }
        }
    }
    for records in out.values_mut() {
        records.sort_by_key(|(_, record)| record.id);
    }
    out.retain(|_, records| !records.is_empty());
    Ok(out)
}


fn record_export(object: &ObjectDef, record: &Record) -> Result<Json, Error> {
    let mut json = record_json(object, record).into_json().map_err(|e| Error::internal(e.to_string()))?;
    if let Some(map) = json.as_object_mut() {
        map.insert("deletedAt".into(), record.deleted_at.map(format_datetime).map(Json::String).unwrap_or(Json::Null));
    }
    Ok(json)
}

fn entry_export(rc: &RequestCtx, entry: &AuditEntry) -> Result<Json, Error> {
    let changes: Vec<Json> = shown_changes(rc, entry)?
        .into_iter()
        .map(|change| {
            json!({
                "field": camel(&change.field),
                "before": change.before.to_json(),
                "after": change.after.to_json(),
                "erased": change.erased,
            })
        })
        .collect();
    Ok(json!({
        "seq": entry.seq,
        "at": format_datetime(entry.at),
        "actor": entry.actor.0,
        "requestId": entry.request_id,
        "object": entry.object,
        "recordId": entry.record_id.to_string(),
        "operation": entry.op.as_str(),
        "changes": changes,
    }))
}

/// The consent a contact gave or withdrew: every field about opting in.
fn consent(object: &ObjectDef, record: &Record) -> Json {
    let mut map = Map::new();
    map.insert("contactId".into(), json!(record.id.to_string()));
    for field in object.fields.iter().filter(|field| field.name.contains("opt_in")) {
        let value = match (&field.ty, record.get(&field.name)) {
            (FieldType::DateTime, Value::Int(ms)) => json!(format_datetime(*ms)),
            (_, value) => value.to_json(),
        };
        map.insert(camel(&field.name), value);
    }
    Json::Object(map)
}

fn export_person(rc: &RequestCtx, email: &Value) -> Result<Json, Error> {
    let reader = rc.store.reader()?;
    let metadata = reader.metadata();
    let contact_def = metadata.object("contact").ok_or_else(|| Error::internal("no contact object"))?;
    let contacts = contacts_with(&reader, email)?;
    let related = referring(&reader, &contacts)?;

    let mut audit: Vec<AuditEntry> = Vec::new();
    for contact in &contacts {
        audit.extend(reader.history("contact", contact.id)?);
    }
    let mut related_json = Map::new();
    for (object, records) in &related {
        let def = metadata.object(object).ok_or_else(|| Error::internal(format!("no object {object}")))?;
        let mut list = Vec::with_capacity(records.len());
        for (field, record) in records {
            let mut json = record_export(def, record)?;
            if let Some(map) = json.as_object_mut() {
                map.insert("referencedBy".into(), json!(camel(field)));
            }
            list.push(json);
            audit.extend(reader.history(object, record.id)?);
        }
        related_json.insert(camel(&def.plural), Json::Array(list));
    }
    audit.sort_by_key(|entry| entry.seq);
    audit.dedup_by_key(|entry| entry.seq);

    Ok(json!({
        "email": email.to_json(),
        "exportedAt": format_datetime(crm_core::clock::now_ms()),
        "contacts": contacts.iter().map(|record| record_export(contact_def, record)).collect::<Result<Vec<_>, _>>()?,
        "consent": contacts.iter().map(|record| consent(contact_def, record)).collect::<Vec<_>>(),
        "related": related_json,
        "audit": audit.iter().map(|entry| entry_export(rc, entry)).collect::<Result<Vec<_>, _>>()?,
    }))
}

/// The patch that clears a contact: every value but ownership becomes
/// null; a required field cannot, so a required text field gets
/// [`ERASED_TEXT`] and a required field of another type keeps its value.
fn contact_patch(object: &ObjectDef, record: &Record) -> crm_core::Fields {
    let mut patch = crm_core::Fields::new();
    for field in &object.fields {
        if OWNERSHIP_FIELDS.contains(&field.name.as_str()) || field.computed || record.get(&field.name).is_null() {
            continue;
        }
        let cleared = match (&field.ty, field.required) {
            (_, false) => Value::Null,
            (FieldType::Text | FieldType::LongText | FieldType::Phone, true) => Value::Text(ERASED_TEXT.into()),
            _ => continue,
        };
        if record.get(&field.name) != &cleared {
            patch.insert(field.name.clone(), cleared);
        }
    }
    patch
}

/// Mutations that apply `patch` to `record` and, with `delete_after`,
/// delete it. A deleted record is brought back for the change and deleted
/// again, so it ends as it was.
fn clear(object: &str, record: &Record, patch: crm_core::Fields, delete_after: bool, mutations: &mut Vec<Mutation>) {
    let deleted = record.is_deleted();
    let delete = Mutation::Delete { object: object.into(), id: record.id, expected_version: None };
    if patch.is_empty() {
        if delete_after && !deleted {
            mutations.push(delete);
        }
        return;
    }
    if deleted {
        mutations.push(Mutation::Restore { object: object.into(), id: record.id });
    }
    let expected_version = Some(record.version + u64::from(deleted));
    mutations.push(Mutation::Update { object: object.into(), id: record.id, fields: patch, expected_version });
    if delete_after || deleted {
        mutations.push(delete);
    }
}

async fn erase_person(rc: &RequestCtx, email: &Value) -> Result<ErasureReport, Error> {
    let (mutations, records) = {
        let reader = rc.store.reader()?;
        let metadata = reader.metadata();
        let contact_def = metadata.object("contact").ok_or_else(|| Error::internal("no contact object"))?;
        let contacts = contacts_with(&reader, email)?;
        if contacts.is_empty() {
            return Err(Error::not_found("no contact has this email"));
        }
        let mut mutations = Vec::new();
        let mut records: Vec<(String, RecordId)> = Vec::new();
        for contact in &contacts {
            clear("contact", contact, contact_patch(contact_def, contact), true, &mut mutations);
            records.push(("contact".into(), contact.id));
        }
        let activity_def = metadata.object("activity");
        for contact in &contacts {
            let ids = reader.index_ids("activity", "contact_id", &Value::Id(contact.id))?;
            let mut activities: Vec<Record> = reader.get_many("activity", &ids)?.into_values().collect();
            activities.sort_by_key(|record| record.id);
            for activity in activities {
                if records.iter().any(|(object, id)| object == "activity" && *id == activity.id) {
                    continue;
                }
                let patch: crm_core::Fields = ACTIVITY_TEXT_FIELDS
                    .iter()
                    .filter(|name| activity_def.is_some_and(|def| def.field(name).is_some()))
                    .filter(|name| !activity.get(name).is_null())
                    .map(|name| (name.to_string(), Value::Null))
                    .collect();
                clear("activity", &activity, patch, false, &mut mutations);
                records.push(("activity".into(), activity.id));
            }
        }
        (mutations, records)
    };
    let request = WriteRequest {
        actor: rc.actor.clone(),
        request_id: Some(rc.request_id.clone()),
        mutations,
        effects: vec![Effect::DeleteRecordKeys { records: records.clone() }],
        guard: None,
        deferred: false,
    };
    rc.store.write(request).await?;

    let reader = rc.store.reader()?;
    let mut audit_entries = 0;
    for (object, id) in &records {
        audit_entries += reader.history(object, *id)?.len();
    }
    let contacts = records.iter().filter(|(object, _)| object == "contact").count();
    Ok(ErasureReport { contacts, activities: records.len() - contacts, audit_entries })
}
