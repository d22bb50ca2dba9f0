//! Builds the GraphQL schema of a tenant from its metadata (DESIGN §6).
//! Schemas are independent of transport; the request's tenant, identity and
//! batchers arrive as request data ([`RequestCtx`]).

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar, Schema,
    SchemaError, Subscription, SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use async_graphql::ErrorExtensions;
use async_graphql::Name;
use async_graphql::indexmap::IndexMap;
use async_graphql::Value as Gql;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crm_core::aggregate::{self, Aggregate, Group, numeric_fields, ordered_fields};
use crm_core::metadata::{FieldDef, FieldType, Metadata, ObjectDef};
use crm_core::normalize::format_datetime;
use crm_core::{
    AuditEntry, ChangeEvent, Cursor, Error, ListQuery, Mutation, Page, PageRequest, Record, Sort,
    WriteRequest,
};
use futures::StreamExt;

use crate::context::{RelationSpec, RequestCtx};
use crate::convert::{self, output, record_json};
use crate::names::{camel, pascal, relation_name, screaming};
use crate::rate_limit::RateLimit;

/// Limits every tenant schema enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_page: usize,
    pub default_page: usize,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_body_bytes: usize,
    /// GraphQL operations (HTTP requests and WebSocket operations) per API key.
    pub rate_per_key: RateLimit,
    /// GraphQL operations per tenant, all its keys together.
    pub rate_per_tenant: RateLimit,
    /// Query texts per tenant kept as plans (see `plan.rs`); 0 turns plans off.
    pub query_plans: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_page: 500,
            default_page: 50,
            max_depth: 16,
            max_complexity: 20_000,
            max_body_bytes: 2 * 1024 * 1024,
            rate_per_key: RateLimit::new(200.0, 400.0),
            rate_per_tenant: RateLimit::new(1000.0, 2000.0),
            query_plans: 256,
        }
    }
}

use crate::resolver::{GqlResult, fail, ready, request};

/// Refuses a field the caller's role hides.
fn check_field(rc: &RequestCtx, object: &str, field: &str) -> GqlResult<()> {
    if rc.access.is_unrestricted() {
        return Ok(());
    }
    rc.access.require_field_read(object, field).map_err(|e| fail(rc, e))
}

/// Applies the caller's read permissions to a list query: the object must
/// be readable, filters and sorts may use only readable fields, and the
/// record scope becomes part of the filter.
pub(crate) fn secure_query(rc: &RequestCtx, query: &mut ListQuery) -> Result<(), Error> {
    if rc.access.is_unrestricted() {
        return Ok(());
    }
    let metadata = rc.store.metadata();
    let object = query.object.clone();
    let scope = rc.access.read_filter(&metadata, &object)?;
    if let Some(filter) = &query.filter {
        rc.access.check_fields_readable(&object, filter.fields())?;
    }
    rc.access.check_fields_readable(&object, query.sort.iter().map(|sort| sort.field.as_str()))?;
    if let Some(scope) = scope {
        query.filter = Some(match query.filter.take() {
            Some(filter) => crm_core::Filter::And(vec![scope, filter]),
            None => scope,
        });
    }
    Ok(())
}

/// Checks that the caller may read a record (object, then scope).
pub(crate) fn check_readable(rc: &RequestCtx, object: &str, record: &Record) -> Result<(), Error> {
    if rc.access.is_unrestricted() {
        return Ok(());
    }
    rc.access.check_record(&rc.store.metadata(), object, crm_core::Operation::Read, record)
}

/// The audit entries of a record the caller may read, without the values
/// of fields their role hides.
fn readable_history(rc: &RequestCtx, object: &str, id: crm_core::RecordId) -> Result<Vec<AuditEntry>, Error> {
    rc.access.require(object, crm_core::Operation::Read)?;
    let reader = rc.store.reader()?;
    if let Some(record) = reader.get(object, id)? {
        check_readable(rc, object, &record)?;
    }
    let mut history = reader.history(object, id)?;
    if !rc.access.is_unrestricted() {
        for entry in &mut history {
            entry.diff.retain(|change| rc.access.can_read_field(object, &change.field));
        }
    }
    Ok(history)
}


/// Parent value of a connection.
struct Connection {
    query: ListQuery,
    sort: Vec<Sort>,
    page: Page,
    total: Option<u64>,
}

struct Edge {
    record: Record,
    cursor: String,
}

struct AggregateValue {
    total: Aggregate,
    groups: Vec<GroupValue>,
}

struct GroupValue {
    fields: Arc<Vec<String>>,
    group: Group,
}

impl GroupValue {
    /// The value of one group-by field (none when not grouped by it).
    fn key_value(&self, field: &str) -> Option<&crm_core::Value> {
        self.fields.iter().position(|name| name == field).map(|index| &self.group.key[index])
    }
}

struct ChangeValue {
    event: ChangeEvent,
    record: Option<Record>,
}

struct ChangeFeed {
    changes: Vec<ChangeValue>,
    cursor: u64,
    has_more: bool,
}

fn field_type_name(object: &ObjectDef, field: &FieldDef) -> String {
    match &field.ty {
        FieldType::Text | FieldType::LongText | FieldType::Email | FieldType::Phone | FieldType::Url => "String".into(),
        FieldType::Int => "Int".into(),
        FieldType::Float => "Float".into(),
        FieldType::Bool => "Boolean".into(),
        FieldType::DateTime => "DateTime".into(),
        FieldType::Date => "Date".into(),
        FieldType::Enum(_) => format!("{}{}", pascal(&object.name), pascal(&field.name)),
        FieldType::Ref(_) | FieldType::ExternalId => "ID".into(),
        FieldType::Tags => "String".into(),
    }
}

fn field_type_ref(object: &ObjectDef, field: &FieldDef, non_null: bool) -> TypeRef {
    let name = field_type_name(object, field);
    match (&field.ty, non_null) {
        (FieldType::Tags, true) => TypeRef::named_nn_list_nn(name),
        (FieldType::Tags, false) => TypeRef::named_nn_list(name),
        (_, true) => TypeRef::named_nn(name),
        (_, false) => TypeRef::named(name),
    }
}

fn filter_type_name(object: &ObjectDef, field: &FieldDef) -> String {
    match &field.ty {
        FieldType::Text | FieldType::LongText | FieldType::Email | FieldType::Phone | FieldType::Url => "StringFilter".into(),
        FieldType::Int => "IntFilter".into(),
        FieldType::Float => "FloatFilter".into(),
        FieldType::Bool => "BooleanFilter".into(),
        FieldType::DateTime => "DateTimeFilter".into(),
        FieldType::Date => "DateFilter".into(),
        FieldType::Enum(_) => format!("{}Filter", field_type_name(object, field)),
        FieldType::Ref(_) | FieldType::ExternalId => "IDFilter".into(),
        FieldType::Tags => "TagsFilter".into(),
    }
}

fn scalar_filter(name: &str, ty: &str, ops: &[&str]) -> InputObject {
    let mut input = InputObject::new(name).description(format!("Conditions on a {ty} field; all given must hold."));
    for op in ops {
        let type_ref = match *op {
            "in" | "nin" => TypeRef::named_nn_list(ty),
            "isNull" => TypeRef::named(TypeRef::BOOLEAN),
            "contains" | "startsWith" | "endsWith" => TypeRef::named(TypeRef::STRING),
            _ => TypeRef::named(ty),
        };
        input = input.field(InputValue::new(*op, type_ref));
    }
    input
}

const COMPARE: [&str; 9] = ["eq", "neq", "in", "nin", "gt", "gte", "lt", "lte", "isNull"];
const TEXT_OPS: [&str; 12] =
    ["eq", "neq", "in", "nin", "gt", "gte", "lt", "lte", "contains", "startsWith", "endsWith", "isNull"];

fn pagination_args(field: Field) -> Field {
    field
        .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("last", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("before", TypeRef::named(TypeRef::STRING)))
}

/// Reads `filter`, `orderBy`, `includeDeleted` and the page arguments of a
/// list field, given as the engine hands them to the resolver.
pub(crate) fn list_args(
    object: &ObjectDef,
    args: &IndexMap<Name, Gql>,
    limits: &Limits,
) -> Result<(ListQuery, Vec<Sort>, PageRequest), Error> {
    let given = |name: &str| args.get(name).filter(|value| **value != Gql::Null);
    let mut query = ListQuery::new(object.name.clone());
    if let Some(filter) = given("filter") {
        let Gql::Object(filter) = filter else { return Err(Error::invalid("filter must be an object")) };
        query.filter = Some(convert::filter(object, filter)?);
    }
    if let Some(order) = given("orderBy") {
        query.sort = convert::order_by(object, order)?;
    }
    query.include_deleted = matches!(args.get("includeDeleted"), Some(Gql::Boolean(true)));
    let sort = query.effective_sort();
    let count = |name: &str| -> Result<Option<usize>, Error> {
        match given(name) {
            None => Ok(None),
            Some(value) => {
                let count = match value {
                    Gql::Number(number) => number.as_i64(),
                    _ => None,
                }
                .ok_or_else(|| Error::invalid(format!("'{name}' must be an integer")))?;
                if count < 0 || count as usize > limits.max_page {
                    Err(Error::invalid(format!("'{name}' must be between 0 and {}", limits.max_page)))
                } else {
                    Ok(Some(count as usize))
                }
            }
        }
    };
    let cursor = |name: &str| -> Result<Option<Cursor>, Error> {
        match given(name) {
            None => Ok(None),
            Some(Gql::String(text)) => Cursor::decode(text, &sort).map(Some),
            Some(_) => Err(Error::invalid(format!("'{name}' must be a cursor"))),
        }
    };
    let mut page = PageRequest { first: count("first")?, after: cursor("after")?, last: count("last")?, before: cursor("before")? };
    if page.first.is_none() && page.last.is_none() {
        page.first = Some(limits.default_page);
    }
    Ok((query, sort, page))
}

fn connection_value(connection: Connection) -> FieldValue<'static> {
    FieldValue::owned_any(connection)
}

pub fn build(metadata: &Arc<Metadata>, limits: &Limits) -> Result<Schema, SchemaError> {
    let mut query = Object::new("Query");
    let mut mutation = Object::new("Mutation");
    let mut subscription = Subscription::new("Subscription");
    let mut types: Vec<async_graphql::dynamic::Type> = Vec::new();

    // Shared types.
    types.push(
        Scalar::new("DateTime")
            .description("An RFC 3339 date-time in UTC, e.g. 2026-01-31T09:30:00.000Z")
            .validator(|value| matches!(value, Gql::String(_)))
            .into(),
    );
    types.push(
        Scalar::new("Date").description("A calendar date, e.g. 2026-01-31").validator(|value| matches!(value, Gql::String(_))).into(),
    );
    types.push(Scalar::new("JSON").description("Any JSON value").into());
    types.push(Enum::new("OrderDirection").item("ASC").item("DESC").into());
    types.push(
        Object::new("PageInfo")
            .field(Field::new("hasNextPage", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
                FieldFuture::new(async move {
                    let connection = ctx.parent_value.try_downcast_ref::<Connection>()?;
                    Ok(Some(Gql::Boolean(connection.page.has_next_page)))
                })
            }))
            .field(Field::new("hasPreviousPage", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
                FieldFuture::new(async move {
                    let connection = ctx.parent_value.try_downcast_ref::<Connection>()?;
                    Ok(Some(Gql::Boolean(connection.page.has_previous_page)))
                })
            }))
            .field(Field::new("startCursor", TypeRef::named(TypeRef::STRING), |ctx| {
                FieldFuture::new(async move {
                    let connection = ctx.parent_value.try_downcast_ref::<Connection>()?;
                    Ok(connection.page.records.first().map(|record| Gql::String(Cursor::of(record, &connection.sort).encode())))
                })
            }))
            .field(Field::new("endCursor", TypeRef::named(TypeRef::STRING), |ctx| {
                FieldFuture::new(async move {
                    let connection = ctx.parent_value.try_downcast_ref::<Connection>()?;
                    Ok(connection.page.records.last().map(|record| Gql::String(Cursor::of(record, &connection.sort).encode())))
                })
            }))
            .into(),
    );
    types.push(scalar_filter("StringFilter", TypeRef::STRING, &TEXT_OPS).into());
    types.push(scalar_filter("IntFilter", TypeRef::INT, &COMPARE).into());
    types.push(scalar_filter("FloatFilter", TypeRef::FLOAT, &COMPARE).into());
    types.push(scalar_filter("BooleanFilter", TypeRef::BOOLEAN, &["eq", "neq", "isNull"]).into());
    types.push(scalar_filter("DateTimeFilter", "DateTime", &COMPARE).into());
    types.push(scalar_filter("DateFilter", "Date", &COMPARE).into());
    types.push(scalar_filter("IDFilter", TypeRef::ID, &["eq", "neq", "in", "nin", "isNull"]).into());
    types.push(
        InputObject::new("TagsFilter")
            .description("`contains` matches records carrying the tag (case-insensitive).")
            .field(InputValue::new("contains", TypeRef::named(TypeRef::STRING)))
            .field(InputValue::new("isNull", TypeRef::named(TypeRef::BOOLEAN)))
            .into(),
    );
    let mut object_names = Enum::new("ObjectName").description("The objects of this tenant.");
    for object in &metadata.objects {
        object_names = object_names.item(screaming(&object.name));
    }
    types.push(object_names.into());
    types.push(Enum::new("ChangeOperation").items(["CREATED", "UPDATED", "DELETED", "RESTORED"]).into());
    types.extend(change_types(metadata));
    types.extend(audit_types());

    for object in &metadata.objects {
        let object = Arc::new(object.clone());
        types.extend(object_types(metadata, &object, limits));
        query = add_queries(query, &object, limits);
        mutation = add_mutations(mutation, &object);
    }
    query = add_change_feed(query);
    query = crate::admin::add_queries(query);
    mutation = crate::admin::add_mutations(mutation, metadata);
    types.extend(crate::admin::types());
    query = crate::identity::add_queries(query);
    mutation = crate::identity::add_mutations(mutation);
    types.extend(crate::identity::types());
    query = crate::gdpr::add_queries(query);
    mutation = crate::gdpr::add_mutations(mutation);
    types.extend(crate::gdpr::types());
    types.extend(crate::admin::action_types(metadata));
    query = query.field(
        Field::new("recordHistory", TypeRef::named_nn_list_nn("AuditEntry"), {
            let metadata = metadata.clone();
            move |ctx| {
                let metadata = metadata.clone();
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let object = ctx.args.try_get("object")?.enum_name()?.to_ascii_lowercase();
                    metadata.object(&object).ok_or_else(|| fail(rc, Error::invalid("unknown object")))?;
                    let id = convert::parse_id(ctx.args.try_get("id")?.as_value()).map_err(|e| fail(rc, e))?;
                    let history = readable_history(rc, &object, id).map_err(|e| fail(rc, e))?;
                    Ok(Some(FieldValue::list(history.into_iter().map(FieldValue::owned_any))))
                })
            }
        })
        .description("Every audited change of one record, oldest first.")
        .argument(InputValue::new("object", TypeRef::named_nn("ObjectName")))
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID))),
    );
    subscription = add_subscriptions(subscription);

    let mut builder = Schema::build("Query", Some("Mutation"), Some("Subscription"))
        .register(query)
        .register(mutation)
        .register(subscription)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    for ty in types {
        builder = builder.register(ty);
    }
    builder.finish()
}

/// The reverse side of every reference to `object`: the field name on
/// `object`, the referring object and its reference field. The first
/// reference from an object (in metadata order: standard fields before
/// plugin fields) keeps the plain name, so adding a second one never
/// renames a field clients already use.
pub(crate) fn reverse_relations<'m>(metadata: &'m Metadata, object: &ObjectDef) -> Vec<(String, &'m ObjectDef, &'m FieldDef)> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (child, field) in metadata.references_to(&object.name) {
        let mut relation = camel(&child.plural);
        if seen.contains(&relation) || object.field(&crate::names::snake(&relation)).is_some() {
            relation = format!("{relation}By{}", pascal(&relation_name(&field.name)));
        }
        seen.insert(relation.clone());
        out.push((relation, child, field));
    }
    out
}

fn object_types(metadata: &Arc<Metadata>, object: &Arc<ObjectDef>, limits: &Limits) -> Vec<async_graphql::dynamic::Type> {
    let name = pascal(&object.name);
    let mut out: Vec<async_graphql::dynamic::Type> = Vec::new();
    let mut record_type = Object::new(&name).description(object.description.clone());
    record_type = record_type
        .field(Field::new("id", TypeRef::named_nn(TypeRef::ID), |ctx| {
            ready(ctx.parent_value.try_downcast_ref::<Record>().map(|record| Some(Gql::String(record.id.to_string()))))
        }))
        .field(Field::new("version", TypeRef::named_nn(TypeRef::INT), |ctx| {
            ready(ctx.parent_value.try_downcast_ref::<Record>().map(|record| Some(Gql::from(record.version))))
        }))
        .field(Field::new("createdAt", TypeRef::named_nn("DateTime"), |ctx| {
            ready(ctx.parent_value.try_downcast_ref::<Record>().map(|record| Some(Gql::String(format_datetime(record.created_at)))))
        }))
        .field(Field::new("updatedAt", TypeRef::named_nn("DateTime"), |ctx| {
            ready(ctx.parent_value.try_downcast_ref::<Record>().map(|record| Some(Gql::String(format_datetime(record.updated_at)))))
        }))
        .field(Field::new("deletedAt", TypeRef::named("DateTime"), |ctx| {
            ready(ctx.parent_value.try_downcast_ref::<Record>().map(|record| record.deleted_at.map(|at| Gql::String(format_datetime(at)))))
        }));
    let mut field_enum = Enum::new(format!("{name}Field")).items(["ID", "CREATED_AT", "UPDATED_AT"]);
    let mut filter = InputObject::new(format!("{name}Filter"))
        .description("All given conditions must hold; compose with and, or, not.")
        .field(InputValue::new("id", TypeRef::named("IDFilter")))
        .field(InputValue::new("createdAt", TypeRef::named("DateTimeFilter")))
        .field(InputValue::new("updatedAt", TypeRef::named("DateTimeFilter")))
        .field(InputValue::new("and", TypeRef::named_nn_list(format!("{name}Filter"))))
        .field(InputValue::new("or", TypeRef::named_nn_list(format!("{name}Filter"))))
        .field(InputValue::new("not", TypeRef::named(format!("{name}Filter"))));
    let mut create_input = InputObject::new(format!("Create{name}Input"));
    let mut update_input = InputObject::new(format!("Update{name}Input")).description("Only the given fields change; null clears a field.");
    let mut group_key = Object::new(format!("{name}GroupKey"));
    let mut min_max = Object::new(format!("{name}MinMax"));
    let mut numeric = Object::new(format!("{name}Numbers"));
    let mut unique = Enum::new(format!("{name}UniqueField"));
    let mut has_unique = false;

    let object_name: Arc<str> = Arc::from(object.name.as_str());
    for field in &object.fields {
        let gql_name = camel(&field.name);
        let field_name = field.name.clone();
        let ty = field.ty.clone();
        let owner = object_name.clone();
        record_type = record_type.field(
            Field::new(&gql_name, field_type_ref(object, field, field.required), move |ctx| {
                // Resolved in place, without a future: this runs for every
                // field of every record of a page.
                ready((|| {
                    check_field(request(&ctx)?, &owner, &field_name)?;
                    let record = ctx.parent_value.try_downcast_ref::<Record>()?;
                    // None, not Some(Null): the engine rejects a null enum or list value.
                    let value = output(&ty, record.get(&field_name));
                    Ok((value != Gql::Null).then_some(value))
                })())
            })
            .description(field.description.clone()),
        );
        field_enum = field_enum.item(screaming(&field.name));
        filter = filter.field(InputValue::new(&gql_name, TypeRef::named(filter_type_name(object, field))));
        if !field.computed {
            create_input = create_input.field(InputValue::new(&gql_name, field_type_ref(object, field, field.required)));
            update_input = update_input.field(InputValue::new(&gql_name, field_type_ref(object, field, false)));
        }
        if field.unique {
            unique = unique.item(screaming(&field.name));
            has_unique = true;
        }
        if !matches!(field.ty, FieldType::LongText | FieldType::Tags) {
            let field_name = field.name.clone();
            let ty = field.ty.clone();
            group_key = group_key.field(Field::new(&gql_name, field_type_ref(object, field, false), move |ctx| {
                let field_name = field_name.clone();
                let ty = ty.clone();
                FieldFuture::new(async move {
                    let group = ctx.parent_value.try_downcast_ref::<GroupValue>()?;
                    Ok(group.key_value(&field_name).map(|value| output(&ty, value)).filter(|value| *value != Gql::Null))
                })
            }));
        }
        if let FieldType::Enum(options) = &field.ty {
            let enum_name = field_type_name(object, field);
            out.push(Enum::new(&enum_name).items(options.iter().map(|option| screaming(option))).into());
            out.push(
                scalar_filter(&format!("{enum_name}Filter"), &enum_name, &["eq", "neq", "in", "nin", "isNull"]).into(),
            );
        }
        if let FieldType::Ref(target) = &field.ty {
            let target_type = pascal(target);
            let target: Arc<str> = Arc::from(target.as_str());
            let field_name = field.name.clone();
            let owner = object_name.clone();
            record_type = record_type.field(
                Field::new(relation_name(&field.name), TypeRef::named(&target_type), move |ctx| {
                    let target = target.clone();
                    let field_name = field_name.clone();
                    let owner = owner.clone();
                    FieldFuture::new(async move {
                        let rc = request(&ctx)?;
                        check_field(rc, &owner, &field_name)?;
                        let record = ctx.parent_value.try_downcast_ref::<Record>()?;
                        let Some(id) = record.get(&field_name).as_id() else { return Ok(None) };
                        rc.access.require(&target, crm_core::Operation::Read).map_err(|e| fail(rc, e))?;
                        let found = rc.record(target.clone(), id).await.map_err(|e| fail(rc, e))?;
                        let found = found.filter(|record| !record.is_deleted());
                        if let Some(found) = &found {
                            check_readable(rc, &target, found).map_err(|e| fail(rc, e))?;
                        }
                        Ok(found.map(FieldValue::owned_any))
                    })
                })
                .description(format!("The record `{}` refers to.", camel(&field.name))),
            );
        }
    }
    // The reverse side of every reference to this object.
    for (relation, child, field) in reverse_relations(metadata, object) {
        let child_def = Arc::new((*child).clone());
        let fk = field.name.clone();
        let limits = limits.clone();
        let child_type = pascal(&child.name);
        record_type = record_type.field(pagination_args(
            Field::new(relation, TypeRef::named_nn(format!("{child_type}Connection")), move |ctx| {
                let child_def = child_def.clone();
                let fk = fk.clone();
                let limits = limits.clone();
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let parent = ctx.parent_value.try_downcast_ref::<Record>()?.id;
                    let (mut query, sort, page) = list_args(&child_def, ctx.args.as_index_map(), &limits).map_err(|e| fail(rc, e))?;
                    secure_query(rc, &mut query).map_err(|e| fail(rc, e))?;
                    let key = format!("{}|{}|{}", child_def.name, fk, args_key(&ctx));
                    let spec = Arc::new(RelationSpec { key, query: query.clone(), field: fk.clone(), page });
                    let (page, total) = rc.related(spec, parent).await.map_err(|e| fail(rc, e))?;
                    Ok(Some(connection_value(Connection { query, sort, page, total: Some(total) })))
                })
            })
            .argument(InputValue::new("filter", TypeRef::named(format!("{child_type}Filter"))))
            .argument(InputValue::new("orderBy", TypeRef::named_nn_list(format!("{child_type}OrderBy"))))
            .argument(InputValue::new("includeDeleted", TypeRef::named(TypeRef::BOOLEAN)))
            .description(format!("{} whose `{}` is this {}.", child.plural, camel(&field.name), object.name)),
        ));
    }
    record_type = record_type.field(
        Field::new("history", TypeRef::named_nn_list_nn("AuditEntry"), {
            let object_name = object.name.clone();
            move |ctx| {
                let object_name = object_name.clone();
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let id = ctx.parent_value.try_downcast_ref::<Record>()?.id;
                    let history = readable_history(rc, &object_name, id).map_err(|e| fail(rc, e))?;
                    Ok(Some(FieldValue::list(history.into_iter().map(FieldValue::owned_any))))
                })
            }
        })
        .description("The audited changes of this record, oldest first."),
    );
    out.push(record_type.into());
    out.push(field_enum.into());
    out.push(filter.into());
    out.push(
        InputObject::new(format!("{name}OrderBy"))
            .field(InputValue::new("field", TypeRef::named_nn(format!("{name}Field"))))
            .field(InputValue::new("direction", TypeRef::named("OrderDirection")).default_value(Gql::Enum(async_graphql::Name::new("ASC"))))
            .into(),
    );
    out.push(create_input.into());
    out.push(update_input.into());
    out.push(
        InputObject::new(format!("Update{name}Item"))
            .field(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .field(InputValue::new("expectedVersion", TypeRef::named(TypeRef::INT)))
            .field(InputValue::new("input", TypeRef::named_nn(format!("Update{name}Input"))))
            .into(),
    );
    if has_unique {
        out.push(unique.into());
    }
    // Connection and edge.
    out.push(
        Object::new(format!("{name}Edge"))
            .field(Field::new("cursor", TypeRef::named_nn(TypeRef::STRING), |ctx| {
                FieldFuture::new(async move { Ok(Some(Gql::String(ctx.parent_value.try_downcast_ref::<Edge>()?.cursor.clone()))) })
            }))
            .field(Field::new("node", TypeRef::named_nn(&name), |ctx| {
                FieldFuture::new(async move {
                    Ok(Some(FieldValue::borrowed_any(&ctx.parent_value.try_downcast_ref::<Edge>()?.record)))
                })
            }))
            .into(),
    );
    out.push(
        Object::new(format!("{name}Connection"))
            .field(Field::new("edges", TypeRef::named_nn_list_nn(format!("{name}Edge")), |ctx| {
                FieldFuture::new(async move {
                    let connection = ctx.parent_value.try_downcast_ref::<Connection>()?;
                    Ok(Some(FieldValue::list(connection.page.records.iter().map(|record| {
                        FieldValue::owned_any(Edge { record: record.clone(), cursor: Cursor::of(record, &connection.sort).encode() })
                    }))))
                })
            }))
            .field(Field::new("nodes", TypeRef::named_nn_list_nn(&name), |ctx| {
                FieldFuture::new(async move {
                    let connection = ctx.parent_value.try_downcast_ref::<Connection>()?;
                    Ok(Some(FieldValue::list(connection.page.records.iter().map(|record| FieldValue::borrowed_any(record)))))
                })
            }))
            .field(Field::new("pageInfo", TypeRef::named_nn("PageInfo"), |ctx| {
                FieldFuture::new(async move {
                    let connection = ctx.parent_value.try_downcast_ref::<Connection>()?;
                    Ok(Some(FieldValue::borrowed_any(connection)))
                })
            }))
            .field(Field::new("totalCount", TypeRef::named_nn(TypeRef::INT), |ctx| {
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let connection = ctx.parent_value.try_downcast_ref::<Connection>()?;
                    let total = match connection.total {
                        Some(total) => total,
                        None => rc.store.count(&connection.query).map_err(|e| fail(rc, e))?,
                    };
                    Ok(Some(Gql::from(total)))
                })
            }))
            .into(),
    );
    // Aggregates.
    let numeric_names = numeric_fields(object);
    let ordered_names = ordered_fields(object);
    let has_numeric = !numeric_names.is_empty();
    for field_name in &numeric_names {
        let key = field_name.to_string();
        let owner = object_name.clone();
        numeric = numeric.field(Field::new(camel(field_name), TypeRef::named(TypeRef::FLOAT), move |ctx| {
            let key = key.clone();
            let owner = owner.clone();
            FieldFuture::new(async move {
                check_field(request(&ctx)?, &owner, &key)?;
                let (aggregate, kind) = ctx.parent_value.try_downcast_ref::<(Aggregate, &'static str)>()?;
                let value = if *kind == "sum" { aggregate.sum.get(&key).copied() } else { aggregate.avg(&key) };
                Ok(value.map(Gql::from))
            })
        }));
    }
    for field_name in &ordered_names {
        let key = field_name.to_string();
        let def = convert::field_def(object, field_name);
        let Some(def) = def else { continue };
        let ty = def.ty.clone();
        let owner = object_name.clone();
        min_max = min_max.field(Field::new(camel(field_name), field_type_ref(object, &def, false), move |ctx| {
            let key = key.clone();
            let ty = ty.clone();
            let owner = owner.clone();
            FieldFuture::new(async move {
                check_field(request(&ctx)?, &owner, &key)?;
                let (aggregate, kind) = ctx.parent_value.try_downcast_ref::<(Aggregate, &'static str)>()?;
                let value = if *kind == "min" { aggregate.min.get(&key) } else { aggregate.max.get(&key) };
                Ok(value.map(|value| output(&ty, value)))
            })
        }));
    }
    let aggregate_fields = |mut target: Object, grouped: bool| -> Object {
        fn aggregate_of<'a>(ctx: &ResolverContext<'a>, grouped: bool) -> GqlResult<&'a Aggregate> {
            if grouped {
                Ok(&ctx.parent_value.try_downcast_ref::<GroupValue>()?.group.aggregate)
            } else {
                Ok(&ctx.parent_value.try_downcast_ref::<AggregateValue>()?.total)
            }
        }
        target = target.field(Field::new("count", TypeRef::named_nn(TypeRef::INT), move |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::from(aggregate_of(&ctx, grouped)?.count))) })
        }));
        let kinds: &[&'static str] = if has_numeric { &["sum", "avg", "min", "max"] } else { &["min", "max"] };
        for kind in kinds {
            let kind: &'static str = kind;
            let type_name = if kind == "sum" || kind == "avg" { format!("{name}Numbers") } else { format!("{name}MinMax") };
            target = target.field(Field::new(kind, TypeRef::named_nn(type_name), move |ctx| {
                FieldFuture::new(async move {
                    let aggregate = aggregate_of(&ctx, grouped)?.clone();
                    Ok(Some(FieldValue::owned_any((aggregate, kind))))
                })
            }));
        }
        target
    };
    let mut group_type = Object::new(format!("{name}AggregateGroup"))
        .field(Field::new("key", TypeRef::named_nn(format!("{name}GroupKey")), |ctx| {
            FieldFuture::new(async move { Ok(Some(FieldValue::borrowed_any(ctx.parent_value.try_downcast_ref::<GroupValue>()?))) })
        }));
    group_type = aggregate_fields(group_type, true);
    let mut aggregate_type = Object::new(format!("{name}Aggregate")).field(Field::new(
        "groups",
        TypeRef::named_nn_list_nn(format!("{name}AggregateGroup")),
        |ctx| {
            FieldFuture::new(async move {
                let value = ctx.parent_value.try_downcast_ref::<AggregateValue>()?;
                Ok(Some(FieldValue::list(value.groups.iter().map(|group| FieldValue::borrowed_any(group)))))
            })
        },
    ));
    aggregate_type = aggregate_fields(aggregate_type, false);
    out.push(group_type.into());
    out.push(aggregate_type.into());
    out.push(group_key.into());
    out.push(min_max.into());
    if has_numeric {
        out.push(numeric.into());
    }
    out
}

/// The arguments of the current field as canonical text: equal arguments
/// batch together.
fn args_key(ctx: &ResolverContext<'_>) -> String {
    let mut parts: Vec<String> = ctx.args.iter().map(|(name, value)| format!("{name}={}", value.as_value())).collect();
    parts.sort();
    parts.join(",")
}

fn add_queries(query: Object, object: &Arc<ObjectDef>, limits: &Limits) -> Object {
    let name = pascal(&object.name);
    let object_name: Arc<str> = Arc::from(object.name.as_str());
    let get = {
        let object_name = object_name.clone();
        Field::new(camel(&object.name), TypeRef::named(&name), move |ctx| {
            let object_name = object_name.clone();
            FieldFuture::new(async move {
                let rc = request(&ctx)?;
                let id = convert::parse_id(ctx.args.try_get("id")?.as_value()).map_err(|e| fail(rc, e))?;
                rc.access.require(&object_name, crm_core::Operation::Read).map_err(|e| fail(rc, e))?;
                let record = rc.record(object_name.clone(), id).await.map_err(|e| fail(rc, e))?;
                match record {
                    Some(record) if !record.is_deleted() => {
                        check_readable(rc, &object_name, &record).map_err(|e| fail(rc, e))?;
                        Ok(Some(FieldValue::owned_any(record)))
                    }
                    _ => Err(fail(rc, Error::not_found(format!("no {object_name} with id {id}")))),
                }
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .description(format!("One {} by id; NOT_FOUND if it does not exist or is deleted.", object.name))
    };
    let list = {
        let object_for_resolver = object.clone();
        let limits_for_resolver = limits.clone();
        pagination_args(Field::new(camel(&object.plural), TypeRef::named_nn(format!("{name}Connection")), move |ctx| {
            let object = object_for_resolver.clone();
            let limits = limits_for_resolver.clone();
            FieldFuture::new(async move {
                let rc = request(&ctx)?;
                let (mut query, sort, page) = list_args(&object, ctx.args.as_index_map(), &limits).map_err(|e| fail(rc, e))?;
                secure_query(rc, &mut query).map_err(|e| fail(rc, e))?;
                let result = rc.store.list(&query, &page).map_err(|e| fail(rc, e))?;
                Ok(Some(connection_value(Connection { query, sort, page: result, total: None })))
            })
        }))
        .argument(InputValue::new("filter", TypeRef::named(format!("{name}Filter"))))
        .argument(InputValue::new("orderBy", TypeRef::named_nn_list(format!("{name}OrderBy"))))
        .argument(InputValue::new("includeDeleted", TypeRef::named(TypeRef::BOOLEAN)))
        .description(format!("A page of {}; 50 by default, at most {}.", object.plural, limits.max_page))
    };
    let aggregate = {
        let object_for_resolver = object.clone();
        Field::new(format!("{}Aggregate", camel(&object.plural)), TypeRef::named_nn(format!("{name}Aggregate")), move |ctx| {
            let object = object_for_resolver.clone();
            FieldFuture::new(async move {
                let rc = request(&ctx)?;
                let mut query = ListQuery::new(object.name.clone());
                if let Some(filter) = ctx.args.get("filter").filter(|value| !value.is_null()) {
                    let filter = filter.object().map_err(|_| fail(rc, Error::invalid("filter must be an object")))?;
                    query.filter = Some(convert::filter(&object, filter.as_index_map()).map_err(|e| fail(rc, e))?);
                }
                let mut group_by = Vec::new();
                if let Some(fields) = ctx.args.get("groupBy").filter(|value| !value.is_null()) {
                    for field in fields.list()?.iter() {
                        let field = field.enum_name()?.to_ascii_lowercase();
                        let field = if field == "created_at" || field == "updated_at" || field == "id" {
                            return Err(fail(rc, Error::invalid(format!("cannot group by '{}'", camel(&field)))));
                        } else {
                            field
                        };
                        group_by.push(field);
                    }
                }
                secure_query(rc, &mut query).map_err(|e| fail(rc, e))?;
                if !rc.access.is_unrestricted() {
                    rc.access.check_fields_readable(&object.name, group_by.iter().map(String::as_str)).map_err(|e| fail(rc, e))?;
                }
                let records = rc.store.reader().and_then(|reader| reader.all(&query)).map_err(|e| fail(rc, e))?;
                let (total, groups) = aggregate::aggregate(&object, &records, &group_by);
                let fields = Arc::new(group_by);
                let groups = groups.into_iter().map(|group| GroupValue { fields: fields.clone(), group }).collect();
                Ok(Some(FieldValue::owned_any(AggregateValue { total, groups })))
            })
        })
        .argument(InputValue::new("filter", TypeRef::named(format!("{name}Filter"))))
        .argument(InputValue::new("groupBy", TypeRef::named_nn_list(format!("{name}Field"))))
        .description(format!("count, sum, avg, min and max over {}, optionally per group.", object.plural))
    };
    query.field(get).field(list).field(aggregate)
}

/// Runs a write and returns its records as GraphQL values.
async fn run_write(ctx: &ResolverContext<'_>, mut mutations: Vec<Mutation>) -> GqlResult<Vec<Record>> {
    let rc = request(ctx)?;
    let metadata = rc.store.metadata();
    rc.access.authorize_write(&metadata, &mut mutations).map_err(|e| fail(rc, e))?;
    let guard = rc.access.write_guard(metadata);
    let request = WriteRequest { actor: rc.actor.clone(), request_id: Some(rc.request_id.clone()), mutations, effects: Vec::new(), guard, deferred: false };
    let applied = rc.store.write(request).await.map_err(|e| fail(rc, e))?;
    Ok(applied.into_iter().map(|applied| applied.record).collect())
}

fn one(records: Vec<Record>) -> GqlResult<Option<FieldValue<'static>>> {
    Ok(records.into_iter().next().map(FieldValue::owned_any))
}

fn many(records: Vec<Record>) -> GqlResult<Option<FieldValue<'static>>> {
    Ok(Some(FieldValue::list(records.into_iter().map(FieldValue::owned_any))))
}

fn add_mutations(mutation: Object, object: &Arc<ObjectDef>) -> Object {
    let name = pascal(&object.name);
    let plural = pascal(&object.plural);
    let arg_object = |ctx: &ResolverContext<'_>, object: &ObjectDef, arg: &str| -> GqlResult<crm_core::Fields> {
        let rc = request(ctx)?;
        let input = ctx.args.try_get(arg)?.object()?;
        convert::input_fields(object, &input).map_err(|e| fail(rc, e))
    };
    let expected_version = |ctx: &ResolverContext<'_>| -> Option<u64> {
        ctx.args.get("expectedVersion").and_then(|value| value.i64().ok()).map(|version| version.max(0) as u64)
    };
    let parse_id = |ctx: &ResolverContext<'_>| -> GqlResult<crm_core::RecordId> {
        let rc = request(ctx)?;
        convert::parse_id(ctx.args.try_get("id")?.as_value()).map_err(|e| fail(rc, e))
    };

    let create = {
        let object = object.clone();
        Field::new(format!("create{name}"), TypeRef::named_nn(&name), move |ctx| {
            let object = object.clone();
            FieldFuture::new(async move {
                let fields = arg_object(&ctx, &object, "input")?;
                one(run_write(&ctx, vec![Mutation::Create { object: object.name.clone(), fields }]).await?)
            })
        })
        .argument(InputValue::new("input", TypeRef::named_nn(format!("Create{name}Input"))))
    };
    let create_many = {
        let object = object.clone();
        Field::new(format!("create{plural}"), TypeRef::named_nn_list_nn(&name), move |ctx| {
            let object = object.clone();
            FieldFuture::new(async move {
                let rc = request(&ctx)?;
                let mut mutations = Vec::new();
                for input in ctx.args.try_get("inputs")?.list()?.iter() {
                    let fields = convert::input_fields(&object, &input.object()?).map_err(|e| fail(rc, e))?;
                    mutations.push(Mutation::Create { object: object.name.clone(), fields });
                }
                many(run_write(&ctx, mutations).await?)
            })
        })
        .argument(InputValue::new("inputs", TypeRef::named_nn_list_nn(format!("Create{name}Input"))))
        .description(format!("Creates up to {} records in one transaction: all or none.", crm_core::writer::MAX_MUTATIONS))
    };
    let update = {
        let object = object.clone();
        Field::new(format!("update{name}"), TypeRef::named_nn(&name), move |ctx| {
            let object = object.clone();
            FieldFuture::new(async move {
                let id = parse_id(&ctx)?;
                let fields = arg_object(&ctx, &object, "input")?;
                let expected_version = expected_version(&ctx);
                one(run_write(&ctx, vec![Mutation::Update { object: object.name.clone(), id, fields, expected_version }]).await?)
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new("input", TypeRef::named_nn(format!("Update{name}Input"))))
        .argument(InputValue::new("expectedVersion", TypeRef::named(TypeRef::INT)))
        .description("CONFLICT when expectedVersion is given and the record has moved on.")
    };
    let update_many = {
        let object = object.clone();
        Field::new(format!("update{plural}"), TypeRef::named_nn_list_nn(&name), move |ctx| {
            let object = object.clone();
            FieldFuture::new(async move {
                let rc = request(&ctx)?;
                let mut mutations = Vec::new();
                for item in ctx.args.try_get("inputs")?.list()?.iter() {
                    let item = item.object()?;
                    let id = convert::parse_id(item.try_get("id")?.as_value()).map_err(|e| fail(rc, e))?;
                    let fields = convert::input_fields(&object, &item.try_get("input")?.object()?).map_err(|e| fail(rc, e))?;
                    let expected_version = item.get("expectedVersion").and_then(|v| v.i64().ok()).map(|v| v.max(0) as u64);
                    mutations.push(Mutation::Update { object: object.name.clone(), id, fields, expected_version });
                }
                many(run_write(&ctx, mutations).await?)
            })
        })
        .argument(InputValue::new("inputs", TypeRef::named_nn_list_nn(format!("Update{name}Item"))))
        .description(format!("Updates up to {} records in one transaction: all or none.", crm_core::writer::MAX_MUTATIONS))
    };
    let delete = {
        let object = object.clone();
        Field::new(format!("delete{name}"), TypeRef::named_nn(&name), move |ctx| {
            let object = object.clone();
            FieldFuture::new(async move {
                let id = parse_id(&ctx)?;
                let expected_version = expected_version(&ctx);
                one(run_write(&ctx, vec![Mutation::Delete { object: object.name.clone(), id, expected_version }]).await?)
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new("expectedVersion", TypeRef::named(TypeRef::INT)))
        .description("Soft delete: the record leaves every query and can be restored.")
    };
    let restore = {
        let object = object.clone();
        Field::new(format!("restore{name}"), TypeRef::named_nn(&name), move |ctx| {
            let object = object.clone();
            FieldFuture::new(async move {
                let id = parse_id(&ctx)?;
                one(run_write(&ctx, vec![Mutation::Restore { object: object.name.clone(), id }]).await?)
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    };
    let mut mutation = mutation.field(create).field(create_many).field(update).field(update_many).field(delete).field(restore);
    if object.unique_fields().next().is_some() {
        let upsert = {
            let object = object.clone();
            Field::new(format!("upsert{name}"), TypeRef::named_nn(&name), move |ctx| {
                let object = object.clone();
                FieldFuture::new(async move {
                    let fields = arg_object(&ctx, &object, "input")?;
                    let key = ctx.args.try_get("onConflict")?.enum_name()?.to_ascii_lowercase();
                    one(run_write(&ctx, vec![Mutation::Upsert { object: object.name.clone(), key, fields }]).await?)
                })
            })
            .argument(InputValue::new("input", TypeRef::named_nn(format!("Create{name}Input"))))
            .argument(InputValue::new("onConflict", TypeRef::named_nn(format!("{name}UniqueField"))))
            .description("Updates the record holding the same unique value (restoring it if deleted), or creates one.")
        };
        let upsert_many = {
            let object = object.clone();
            Field::new(format!("upsert{plural}"), TypeRef::named_nn_list_nn(&name), move |ctx| {
                let object = object.clone();
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let key = ctx.args.try_get("onConflict")?.enum_name()?.to_ascii_lowercase();
                    let mut mutations = Vec::new();
                    for input in ctx.args.try_get("inputs")?.list()?.iter() {
                        let fields = convert::input_fields(&object, &input.object()?).map_err(|e| fail(rc, e))?;
                        mutations.push(Mutation::Upsert { object: object.name.clone(), key: key.clone(), fields });
                    }
                    many(run_write(&ctx, mutations).await?)
                })
            })
            .argument(InputValue::new("inputs", TypeRef::named_nn_list_nn(format!("Create{name}Input"))))
            .argument(InputValue::new("onConflict", TypeRef::named_nn(format!("{name}UniqueField"))))
        };
        mutation = mutation.field(upsert).field(upsert_many);
    }
    mutation
}

const CURSOR_PREFIX: &str = "chg:";

fn encode_change_cursor(seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{seq}"))
}

fn decode_change_cursor(text: &str) -> Result<u64, Error> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX).and_then(|seq| seq.parse().ok()))
        .ok_or_else(|| Error::invalid(format!("invalid change cursor '{}'", text.chars().take(60).collect::<String>())))
}

fn change_types(metadata: &Arc<Metadata>) -> Vec<async_graphql::dynamic::Type> {
    let metadata_for_data = metadata.clone();
    let change = Object::new("RecordChange")
        .description("A committed change. Deleted records are tombstones: operation DELETED and no data.")
        .field(Field::new("cursor", TypeRef::named_nn(TypeRef::STRING), |ctx| {
            FieldFuture::new(async move {
                Ok(Some(Gql::String(encode_change_cursor(ctx.parent_value.try_downcast_ref::<ChangeValue>()?.event.seq))))
            })
        }))
        .field(Field::new("object", TypeRef::named_nn("ObjectName"), |ctx| {
            FieldFuture::new(async move {
                let change = ctx.parent_value.try_downcast_ref::<ChangeValue>()?;
                Ok(Some(Gql::Enum(async_graphql::Name::new(screaming(&change.event.object)))))
            })
        }))
        .field(Field::new("id", TypeRef::named_nn(TypeRef::ID), |ctx| {
            FieldFuture::new(async move {
                Ok(Some(Gql::String(ctx.parent_value.try_downcast_ref::<ChangeValue>()?.event.record_id.to_string())))
            })
        }))
        .field(Field::new("operation", TypeRef::named_nn("ChangeOperation"), |ctx| {
            FieldFuture::new(async move {
                let change = ctx.parent_value.try_downcast_ref::<ChangeValue>()?;
                Ok(Some(Gql::Enum(async_graphql::Name::new(change.event.op.as_str()))))
            })
        }))
        .field(Field::new("version", TypeRef::named_nn(TypeRef::INT), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::from(ctx.parent_value.try_downcast_ref::<ChangeValue>()?.event.version))) })
        }))
        .field(Field::new("at", TypeRef::named_nn("DateTime"), |ctx| {
            FieldFuture::new(async move {
                Ok(Some(Gql::String(format_datetime(ctx.parent_value.try_downcast_ref::<ChangeValue>()?.event.at))))
            })
        }))
        .field(
            Field::new("data", TypeRef::named("JSON"), move |ctx| {
                let metadata = metadata_for_data.clone();
                FieldFuture::new(async move {
                    let change = ctx.parent_value.try_downcast_ref::<ChangeValue>()?;
                    let Some(object) = metadata.object(&change.event.object) else { return Ok(None) };
                    let rc = request(&ctx)?;
                    Ok(change.record.as_ref().filter(|record| !record.is_deleted()).map(|record| {
                        let mut data = record_json(object, record);
                        // Fields the caller may not read are absent, not null.
                        if !rc.access.is_unrestricted()
                            && let Gql::Object(map) = &mut data
                        {
                            for field in &object.fields {
                                if !rc.access.can_read_field(&object.name, &field.name) {
                                    map.shift_remove(camel(&field.name).as_str());
                                }
                            }
                        }
                        data
                    }))
                })
            })
            .description("The record as it is now (null for a deleted record)."),
        );
    let feed = Object::new("ChangeFeed")
        .field(Field::new("changes", TypeRef::named_nn_list_nn("RecordChange"), |ctx| {
            FieldFuture::new(async move {
                let feed = ctx.parent_value.try_downcast_ref::<ChangeFeed>()?;
                Ok(Some(FieldValue::list(feed.changes.iter().map(|change| FieldValue::borrowed_any(change)))))
            })
        }))
        .field(
            Field::new("cursor", TypeRef::named_nn(TypeRef::STRING), |ctx| {
                FieldFuture::new(async move {
                    Ok(Some(Gql::String(encode_change_cursor(ctx.parent_value.try_downcast_ref::<ChangeFeed>()?.cursor))))
                })
            })
            .description("Pass as `after` to continue from here."),
        )
        .field(Field::new("hasMore", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::Boolean(ctx.parent_value.try_downcast_ref::<ChangeFeed>()?.has_more))) })
        }));
    vec![change.into(), feed.into()]
}

/// Whether a change reaches a caller: they may read the object and the
/// record lies within their read scope.
fn may_see_change(access: &crm_core::Access, metadata: &Metadata, object: &str, record: Option<&Record>) -> bool {
    if access.is_unrestricted() {
        return true;
    }
    match access.require(object, crm_core::Operation::Read) {
        Err(_) => false,
        Ok(scope) => record.is_none_or(|record| access.in_scope(metadata, object, scope, record)),
    }
}

fn add_change_feed(query: Object) -> Object {
    query.field(
        Field::new("changes", TypeRef::named_nn("ChangeFeed"), move |ctx| {
            FieldFuture::new(async move {
                let rc = request(&ctx)?;
                let after = match ctx.args.get("after").filter(|value| !value.is_null()) {
                    Some(value) => decode_change_cursor(value.string()?).map_err(|e| fail(rc, e))?,
                    None => 0,
                };
                let first = ctx.args.get("first").and_then(|value| value.i64().ok()).unwrap_or(100);
                if !(1..=1000).contains(&first) {
                    return Err(fail(rc, Error::invalid("'first' must be between 1 and 1000")));
                }
                // Only durable changes: a deferred plugin write a crash could
                // still lose (its sequence number then reused) is served once
                // a durable commit covers it.
                let durable = rc.store.durable_change();
                let reader = rc.store.reader().map_err(|e| fail(rc, e))?;
                let mut events = reader.changes(after, first as usize + 1).map_err(|e| fail(rc, e))?;
                events.retain(|event| event.seq <= durable);
                let has_more = events.len() > first as usize;
                events.truncate(first as usize);
                let cursor = events.last().map(|event| event.seq).unwrap_or(after);
                let mut changes = Vec::with_capacity(events.len());
                let metadata = rc.store.metadata();
                for event in events {
                    let record = reader.get(&event.object, event.record_id).map_err(|e| fail(rc, e))?;
                    if may_see_change(&rc.access, &metadata, &event.object, record.as_ref()) {
                        changes.push(ChangeValue { event, record });
                    }
                }
                Ok(Some(FieldValue::owned_any(ChangeFeed { changes, cursor, has_more })))
            })
        })
        .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
        .description("Committed changes in commit order, for offline sync. Start without `after`, then pass the returned cursor."),
    )
}

fn audit_types() -> Vec<async_graphql::dynamic::Type> {
    fn entry<'a>(ctx: &ResolverContext<'a>) -> GqlResult<&'a AuditEntry> {
        ctx.parent_value.try_downcast_ref::<AuditEntry>()
    }
    let audit = Object::new("AuditEntry")
        .field(Field::new("seq", TypeRef::named_nn(TypeRef::INT), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::from(entry(&ctx)?.seq))) })
        }))
        .field(Field::new("at", TypeRef::named_nn("DateTime"), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::String(format_datetime(entry(&ctx)?.at)))) })
        }))
        .field(Field::new("actor", TypeRef::named_nn(TypeRef::STRING), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::String(entry(&ctx)?.actor.0.clone()))) })
        }))
        .field(Field::new("requestId", TypeRef::named(TypeRef::STRING), |ctx| {
            FieldFuture::new(async move { Ok(entry(&ctx)?.request_id.clone().map(Gql::String)) })
        }))
        .field(
            Field::new("object", TypeRef::named_nn(TypeRef::STRING), |ctx| {
                FieldFuture::new(async move { Ok(Some(Gql::String(entry(&ctx)?.object.clone()))) })
            })
            .description("The object's name (`contact`), or what an admin action changed (`user`, `role`, `api_key`, `team`, `tenant`)."),
        )
        .field(Field::new("recordId", TypeRef::named_nn(TypeRef::ID), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::String(entry(&ctx)?.record_id.to_string()))) })
        }))
        .field(Field::new("operation", TypeRef::named_nn("ChangeOperation"), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::Enum(async_graphql::Name::new(entry(&ctx)?.op.as_str())))) })
        }))
        .field(Field::new("changes", TypeRef::named_nn_list_nn("FieldChange"), |ctx| {
            FieldFuture::new(async move {
                let rc = request(&ctx)?;
                let changes = crate::gdpr::shown_changes(rc, entry(&ctx)?).map_err(|e| fail(rc, e))?;
                Ok(Some(FieldValue::list(changes.into_iter().map(FieldValue::owned_any))))
            })
        }))
        .field(Field::new("hash", TypeRef::named_nn(TypeRef::STRING), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::String(hex_string(&entry(&ctx)?.hash)))) })
        }));
    use crate::gdpr::ShownChange;
    let change = Object::new("FieldChange")
        .field(Field::new("field", TypeRef::named_nn(TypeRef::STRING), |ctx| {
            FieldFuture::new(async move { Ok(Some(Gql::String(camel(&ctx.parent_value.try_downcast_ref::<ShownChange>()?.field)))) })
        }))
        .field(Field::new("before", TypeRef::named("JSON"), |ctx| {
            FieldFuture::new(async move { Ok(Some(json_value(&ctx.parent_value.try_downcast_ref::<ShownChange>()?.before))) })
        }))
        .field(Field::new("after", TypeRef::named("JSON"), |ctx| {
            FieldFuture::new(async move { Ok(Some(json_value(&ctx.parent_value.try_downcast_ref::<ShownChange>()?.after))) })
        }))
        .field(
            Field::new("erased", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
                FieldFuture::new(async move { Ok(Some(Gql::Boolean(ctx.parent_value.try_downcast_ref::<ShownChange>()?.erased))) })
            })
            .description("The person this change was about was erased: its values can no longer be read and show as null."),
        );
    vec![audit.into(), change.into()]
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn json_value(value: &crm_core::Value) -> Gql {
    use crm_core::Value;
    match value {
        Value::Null => Gql::Null,
        Value::Bool(flag) => Gql::Boolean(*flag),
        Value::Int(int) => Gql::from(*int),
        Value::Float(float) => Gql::from(*float),
        Value::Text(text) => Gql::String(text.clone()),
        Value::Id(id) => Gql::String(id.to_string()),
        Value::List(items) => Gql::List(items.iter().map(|item| Gql::String(item.clone())).collect()),
    }
}

fn add_subscriptions(subscription: Subscription) -> Subscription {
    subscription.field(
        SubscriptionField::new("recordChanges", TypeRef::named_nn("RecordChange"), |ctx| {
            SubscriptionFieldFuture::new(async move {
                let rc = request(&ctx)?;
                let objects: Option<Vec<String>> = match ctx.args.get("objects").filter(|value| !value.is_null()) {
                    Some(list) => Some(
                        list.list()?
                            .iter()
                            .map(|item| item.enum_name().map(|name| name.to_ascii_lowercase()))
                            .collect::<Result<_, _>>()?,
                    ),
                    None => None,
                };
                let ids: Option<Vec<crm_core::RecordId>> = match ctx.args.get("ids").filter(|value| !value.is_null()) {
                    Some(list) => Some(
                        list.list()?
                            .iter()
                            .map(|item| convert::parse_id(item.as_value()))
                            .collect::<Result<_, _>>()
                            .map_err(|e| fail(rc, e))?,
                    ),
                    None => None,
                };
                if let Some(objects) = &objects {
                    for object in objects {
                        rc.access.require(object, crm_core::Operation::Read).map_err(|e| fail(rc, e))?;
                    }
                }
                let receiver = rc.store.subscribe();
                let access = rc.access.clone();
                let store = rc.store.clone();
                let stream = tokio_stream::wrappers::BroadcastStream::new(receiver).filter_map(move |item| {
                    let keep = match &item {
                        Ok(published) => {
                            objects.as_ref().is_none_or(|objects| objects.contains(&published.event.object))
                                && ids.as_ref().is_none_or(|ids| ids.contains(&published.event.record_id))
                                && may_see_change(&access, &store.metadata(), &published.event.object, Some(&published.record))
                        }
                        Err(_) => true,
                    };
                    let value = match item {
                        Ok(published) if keep => Some(Ok(FieldValue::owned_any(ChangeValue {
                            event: published.event.clone(),
                            record: Some(published.record.clone()),
                        }))),
                        Ok(_) => None,
                        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(missed)) => {
                            Some(Err(async_graphql::Error::new(format!(
                                "subscriber fell behind and missed {missed} changes; resume from the change feed"
                            ))
                            .extend_with(|_, ext| ext.set("code", "RATE_LIMITED"))))
                        }
                    };
                    async move { value }
                });
                Ok(stream)
            })
        })
        .argument(InputValue::new("objects", TypeRef::named_nn_list("ObjectName")))
        .argument(InputValue::new("ids", TypeRef::named_nn_list(TypeRef::ID)))
        .description("Committed changes as they happen, optionally only of some objects or records."),
    )
}
