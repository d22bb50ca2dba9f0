//! Planned reads. Most traffic is a few query texts sent over and over with
//! different variables. When a text comes a second time and the engine has
//! run it for the tenant without an error, the text is compiled into a plan
//! against the tenant's metadata:
//! which objects to read, with which arguments, and which response keys to
//! fill from which record fields. A plan reads the records level by level
//! (every relation of a level in one batch) and builds the response tree
//! directly, without the engine's per-field resolution.
//!
//! A plan answers only what it answers exactly as the engine would. It is
//! compiled only for queries made of record fields, relations, connections
//! and `__typename` (no fragments, no directives, no introspection), it is
//! put to use only after it produced the same data as the engine on the
//! same request, and at the first thing it does not handle the same way
//! (a variable it does not check itself, a field the caller's role hides,
//! a record it may not read, a missing record, a null in a non-null field,
//! any error) it gives the request back to the engine, which then reports
//! the error as usual. Reads have no effects, so giving up half-way is
//! harmless.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Value as Gql, Variables};
use crm_core::access::SCOPE_FIELDS;
use crm_core::metadata::{FieldType, Metadata, ObjectDef};
use crm_core::normalize::format_datetime;
use crm_core::{Cursor, ListQuery, Operation, Page, Reader, Record, RecordId, Sort, Value};

use crate::context::RequestCtx;
use crate::convert;
use crate::names::{camel, pascal, relation_name, screaming};
use crate::schema::{Limits, list_args, reverse_relations};

/// The plan gives the request back to the engine.
#[derive(Debug)]
pub(crate) struct Bail;

type Run<T> = Result<T, Bail>;

/// An argument as written in the query: literals and `$variables`.
type Arguments = Vec<(Name, async_graphql_value::Value)>;

/// How many times a plan may disagree with the engine (a write between
/// the two runs) before its text is left to the engine for good.
const TRIES: u8 = 3;

/// Query texts longer than this are never planned.
const MAX_QUERY_BYTES: usize = 16 * 1024;

enum Entry {
    /// Seen once: a text sent once (literal values written into it, say)
    /// never pays for a plan.
    Seen,
    /// Seen again; compiled and checked after the next clean run of the
    /// engine.
    Pending { tries: u8 },
    Ready(Arc<Plan>),
    /// Not plannable: always the engine.
    Never,
}

/// The entries of one query text by operation name.
type Named = Vec<(Option<String>, Entry)>;

/// A request the engine answered without error, kept to check a plan on.
pub(crate) struct Lesson {
    pub(crate) query: String,
    pub(crate) operation: Option<String>,
    pub(crate) variables: Variables,
}

/// The plans of one tenant schema, by query text and operation name.
pub(crate) struct Plans {
    metadata: Arc<Metadata>,
    capacity: usize,
    /// Query text → (operation name, entry).
    entries: Mutex<HashMap<String, Named>>,
}

/// What to do with a request.
pub(crate) enum Decision {
    Run(Arc<Plan>),
    /// Run the engine, then offer its response to [`Plans::learn`].
    Learn,
    Engine,
}

impl Plans {
    pub(crate) fn new(metadata: Arc<Metadata>, capacity: usize) -> Self {
        Plans { metadata, capacity, entries: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn decide(&self, query: &str, operation: Option<&str>) -> Decision {
        if self.capacity == 0 || query.len() > MAX_QUERY_BYTES {
            return Decision::Engine;
        }
        let mut entries = self.lock();
        let found = entries.get(query).and_then(|named| named.iter().find(|(name, _)| name.as_deref() == operation));
        match found.map(|(_, entry)| entry) {
            Some(Entry::Ready(plan)) => Decision::Run(plan.clone()),
            Some(Entry::Never) => Decision::Engine,
            Some(Entry::Seen | Entry::Pending { .. }) => Decision::Learn,
            None => {
                self.make_room(&mut entries, query);
                entries.entry(query.to_string()).or_default().push((operation.map(str::to_string), Entry::Seen));
                Decision::Engine
            }
        }
    }

    /// Drops an eighth of the entries when the map is full, so texts with
    /// literal values in them cannot pin it.
    fn make_room(&self, entries: &mut HashMap<String, Named>, query: &str) {
        if entries.len() >= self.capacity && !entries.contains_key(query) {
            let doomed: Vec<String> = entries.keys().take(self.capacity.div_ceil(8)).cloned().collect();
            for doomed in doomed {
                entries.remove(&doomed);
            }
        }
    }

    /// After the engine answered `query` with `data` and no error: compiles
    /// the text, runs the plan on the same request and keeps it if it gives
    /// the same data.
    pub(crate) fn learn(
        &self,
        document: Option<&ExecutableDocument>,
        lesson: &Lesson,
        rc: &RequestCtx,
        limits: &Limits,
        data: &Gql,
    ) {
        // A document no longer kept is learned from a later request.
        let Some(document) = document else { return };
        let (query, operation) = (lesson.query.as_str(), lesson.operation.as_deref());
        let compiled = compile(&self.metadata, document, operation, limits).ok();
        let entry = match compiled {
            None => Entry::Never,
            Some(plan) => match plan.run(rc, &lesson.variables) {
                Ok(mine) if same_data(&mine, data) => Entry::Ready(Arc::new(plan)),
                _ => {
                    let tries = self.tries(query, operation) + 1;
                    if tries >= TRIES { Entry::Never } else { Entry::Pending { tries } }
                }
            },
        };
        if matches!(entry, Entry::Never) {
            tracing::debug!(bytes = query.len(), "a query text is left to the engine");
        }
        let mut entries = self.lock();
        self.make_room(&mut entries, query);
        let named = entries.entry(query.to_string()).or_default();
        named.retain(|(name, _)| name.as_deref() != operation);
        named.push((operation.map(str::to_string), entry));
    }

    /// How many times the plan of a text disagreed with the engine so far.
    fn tries(&self, query: &str, operation: Option<&str>) -> u8 {
        let entries = self.lock();
        let found = entries.get(query).and_then(|named| named.iter().find(|(name, _)| name.as_deref() == operation));
        match found {
            Some((_, Entry::Pending { tries })) => *tries,
            _ => 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Named>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

}

// ---------------------------------------------------------------------------
// Plans

pub(crate) struct Plan {
    /// The tenant metadata the plan was compiled against (shared with the
    /// schema), for the definitions of the objects it lists.
    metadata: Arc<Metadata>,
    variables: Vec<Variable>,
    roots: Vec<(Name, Root)>,
    limits: Limits,
}

struct Variable {
    name: Name,
    kind: VariableKind,
    nullable: bool,
    default: Option<Gql>,
}

/// The named input types a plan checks a variable's value against itself.
enum VariableKind {
    String,
    Int,
    Float,
    Boolean,
    Id,
    /// DateTime and Date: strings.
    Text,
    Enum(HashSet<String>),
}

enum Root {
    Typename,
    Get { object: Arc<str>, id: async_graphql_value::Value, selection: RecordSelection },
    /// A list of the object named; its definition is looked up in the plan's metadata.
    List { object: String, arguments: Arguments, selection: ConnectionSelection },
}

struct RecordSelection {
    type_name: String,
    object: Arc<str>,
    items: Vec<(Name, RecordItem)>,
    /// Fields the caller's role must be allowed to read.
    checked: Vec<String>,
    /// The stored fields read of each record: the values and relations
    /// selected and the fields its scope is checked on. Records are decoded
    /// with these only.
    fields: Arc<[String]>,
}

enum RecordItem {
    Typename,
    Id,
    Version,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
    /// `items`: an enum's stored options and the names the schema gives them.
    Value { field: String, ty: FieldType, required: bool, items: Option<HashMap<String, String>> },
    Relation { field: String, target: Arc<str>, selection: RecordSelection },
    Children { child: String, field: String, arguments: Arguments, selection: ConnectionSelection },
}

struct ConnectionSelection {
    type_name: String,
    items: Vec<(Name, ConnectionItem)>,
    /// What its nodes read ([`RecordSelection::fields`]), for the list query.
    fields: Arc<[String]>,
}

enum ConnectionItem {
    Typename,
    Nodes(RecordSelection),
    Edges(EdgeSelection),
    PageInfo(Vec<(Name, PageInfoItem)>),
    TotalCount,
}

struct EdgeSelection {
    type_name: String,
    items: Vec<(Name, EdgeItem)>,
}

enum EdgeItem {
    Typename,
    Cursor,
    Node(RecordSelection),
}

enum PageInfoItem {
    Typename,
    HasNextPage,
    HasPreviousPage,
    StartCursor,
    EndCursor,
}

// ---------------------------------------------------------------------------
// Compiling

struct Compiler<'m> {
    metadata: &'m Metadata,
}

fn compile(metadata: &Arc<Metadata>, document: &ExecutableDocument, operation: Option<&str>, limits: &Limits) -> Run<Plan> {
    // The engine's choice of operation.
    let operation: &Positioned<OperationDefinition> = match (operation, &document.operations) {
        (Some(name), DocumentOperations::Multiple(operations)) => operations.get(name).ok_or(Bail)?,
        (Some(_), DocumentOperations::Single(_)) => return Err(Bail),
        (None, DocumentOperations::Single(operation)) => operation,
        (None, DocumentOperations::Multiple(operations)) if operations.len() == 1 => {
            operations.values().next().ok_or(Bail)?
        }
        (None, DocumentOperations::Multiple(_)) => return Err(Bail),
    };
    let operation = &operation.node;
    if operation.ty != OperationType::Query || !operation.directives.is_empty() {
        return Err(Bail);
    }
    let compiler = Compiler { metadata };
    let mut variables = Vec::new();
    for definition in &operation.variable_definitions {
        let definition = &definition.node;
        if !definition.directives.is_empty() {
            return Err(Bail);
        }
        let ty = &definition.var_type.node;
        let BaseType::Named(type_name) = &ty.base else { return Err(Bail) };
        variables.push(Variable {
            name: definition.name.node.clone(),
            kind: compiler.variable_kind(type_name)?,
            nullable: ty.nullable,
            default: definition.default_value.as_ref().map(|value| value.node.clone()),
        });
    }
    let mut roots = Vec::new();
    for (key, field) in fields(&operation.selection_set.node)? {
        let name = field.name.node.as_str();
        let root = if name == "__typename" {
            Root::Typename
        } else if let Some(object) = metadata.objects.iter().find(|object| camel(&object.name) == name) {
            let [(argument, id)] = field.arguments.as_slice() else { return Err(Bail) };
            if argument.node != "id" {
                return Err(Bail);
            }
            Root::Get {
                object: Arc::from(object.name.as_str()),
                id: id.node.clone(),
                selection: compiler.record(object, &field.selection_set.node)?,
            }
        } else if let Some(object) = metadata.objects.iter().find(|object| camel(&object.plural) == name) {
            Root::List {
                object: object.name.clone(),
                arguments: list_arguments(field)?,
                selection: compiler.connection(object, &field.selection_set.node)?,
            }
        } else {
            return Err(Bail);
        };
        roots.push((key, root));
    }
    Ok(Plan { metadata: metadata.clone(), variables, roots, limits: limits.clone() })
}

/// The fields of a selection set with their response keys; anything else
/// (fragments, directives, a response key used twice) is not planned.
fn fields(selection: &SelectionSet) -> Run<Vec<(Name, &async_graphql::parser::types::Field)>> {
    let mut out: Vec<(Name, &async_graphql::parser::types::Field)> = Vec::with_capacity(selection.items.len());
    for item in &selection.items {
        let Selection::Field(field) = &item.node else { return Err(Bail) };
        let field = &field.node;
        if !field.directives.is_empty() {
            return Err(Bail);
        }
        let key = field.response_key().node.clone();
        if out.iter().any(|(seen, _)| *seen == key) {
            return Err(Bail);
        }
        out.push((key, field));
    }
    Ok(out)
}

/// The arguments a list field takes; any other is not planned.
fn list_arguments(field: &async_graphql::parser::types::Field) -> Run<Arguments> {
    const KNOWN: [&str; 7] = ["first", "after", "last", "before", "filter", "orderBy", "includeDeleted"];
    field
        .arguments
        .iter()
        .map(|(name, value)| {
            if KNOWN.contains(&name.node.as_str()) { Ok((name.node.clone(), value.node.clone())) } else { Err(Bail) }
        })
        .collect()
}

fn leaf(field: &async_graphql::parser::types::Field) -> Run<()> {
    if field.arguments.is_empty() && field.selection_set.node.items.is_empty() { Ok(()) } else { Err(Bail) }
}

fn no_arguments(field: &async_graphql::parser::types::Field) -> Run<()> {
    if field.arguments.is_empty() { Ok(()) } else { Err(Bail) }
}

impl Compiler<'_> {
    fn variable_kind(&self, type_name: &str) -> Run<VariableKind> {
        Ok(match type_name {
            "String" => VariableKind::String,
            "Int" => VariableKind::Int,
            "Float" => VariableKind::Float,
            "Boolean" => VariableKind::Boolean,
            "ID" => VariableKind::Id,
            "DateTime" | "Date" => VariableKind::Text,
            other => {
                // The enums of record fields, named as the schema names them.
                let items = self
                    .metadata
                    .objects
                    .iter()
                    .flat_map(|object| object.fields.iter().map(move |field| (object, field)))
                    .find_map(|(object, field)| match &field.ty {
                        FieldType::Enum(options) if format!("{}{}", pascal(&object.name), pascal(&field.name)) == other => {
                            Some(options.iter().map(|option| screaming(option)).collect())
                        }
                        _ => None,
                    })
                    .ok_or(Bail)?;
                VariableKind::Enum(items)
            }
        })
    }

    fn record(&self, object: &ObjectDef, selection: &SelectionSet) -> Run<RecordSelection> {
        let mut items = Vec::new();
        let mut checked = Vec::new();
        let references = reverse_relations(self.metadata, object);
        for (key, field) in fields(selection)? {
            let name = field.name.node.as_str();
            let item = match name {
                "__typename" => RecordItem::Typename,
                "id" => RecordItem::Id,
                "version" => RecordItem::Version,
                "createdAt" => RecordItem::CreatedAt,
                "updatedAt" => RecordItem::UpdatedAt,
                "deletedAt" => RecordItem::DeletedAt,
                _ => {
                    // Resolved in the order the schema registers fields, a
                    // later one of the same name replacing an earlier one.
                    let mut found = None;
                    for def in &object.fields {
                        if camel(&def.name) == name {
                            found = Some(RecordItem::Value {
                                field: def.name.clone(),
                                ty: def.ty.clone(),
                                required: def.required,
                                items: match &def.ty {
                                    FieldType::Enum(options) => {
                                        Some(options.iter().map(|option| (option.clone(), screaming(option))).collect())
                                    }
                                    _ => None,
                                },
                            });
                        }
                        if let FieldType::Ref(target) = &def.ty
                            && relation_name(&def.name) == name
                        {
                            let target_def = self.metadata.object(target).ok_or(Bail)?;
                            found = Some(RecordItem::Relation {
                                field: def.name.clone(),
                                target: Arc::from(target.as_str()),
                                selection: self.record(target_def, &field.selection_set.node)?,
                            });
                        }
                    }
                    for (relation, child, fk) in &references {
                        if relation == name {
                            found = Some(RecordItem::Children {
                                child: child.name.clone(),
                                field: fk.name.clone(),
                                arguments: list_arguments(field)?,
                                selection: self.connection(child, &field.selection_set.node)?,
                            });
                        }
                    }
                    found.ok_or(Bail)?
                }
            };
            match &item {
                RecordItem::Value { field: def, .. } => {
                    leaf(field)?;
                    checked.push(def.clone());
                }
                RecordItem::Relation { field: def, .. } => {
                    no_arguments(field)?;
                    checked.push(def.clone());
                }
                RecordItem::Children { .. } => {}
                _ => leaf(field)?,
            }
            items.push((key, item));
        }
        let mut read: Vec<String> = items
            .iter()
            .filter_map(|(_, item)| match item {
                RecordItem::Value { field, .. } | RecordItem::Relation { field, .. } => Some(field.clone()),
                _ => None,
            })
            .chain(SCOPE_FIELDS.iter().map(|field| field.to_string()))
            .collect();
        read.sort_unstable();
        read.dedup();
        Ok(RecordSelection {
            type_name: pascal(&object.name),
            object: Arc::from(object.name.as_str()),
            items,
            checked,
            fields: read.into(),
        })
    }

    fn connection(&self, object: &ObjectDef, selection: &SelectionSet) -> Run<ConnectionSelection> {
        let type_name = pascal(&object.name);
        let mut items = Vec::new();
        for (key, field) in fields(selection)? {
            let item = match field.name.node.as_str() {
                "__typename" => {
                    leaf(field)?;
                    ConnectionItem::Typename
                }
                "totalCount" => {
                    leaf(field)?;
                    ConnectionItem::TotalCount
                }
                "nodes" => {
                    no_arguments(field)?;
                    ConnectionItem::Nodes(self.record(object, &field.selection_set.node)?)
                }
                "edges" => {
                    no_arguments(field)?;
                    let mut edge_items = Vec::new();
                    for (key, edge_field) in fields(&field.selection_set.node)? {
                        let item = match edge_field.name.node.as_str() {
                            "__typename" => EdgeItem::Typename,
                            "cursor" => EdgeItem::Cursor,
                            "node" => {
                                no_arguments(edge_field)?;
                                edge_items.push((key, EdgeItem::Node(self.record(object, &edge_field.selection_set.node)?)));
                                continue;
                            }
                            _ => return Err(Bail),
                        };
                        leaf(edge_field)?;
                        edge_items.push((key, item));
                    }
                    ConnectionItem::Edges(EdgeSelection { type_name: format!("{type_name}Edge"), items: edge_items })
                }
                "pageInfo" => {
                    no_arguments(field)?;
                    let mut info = Vec::new();
                    for (key, info_field) in fields(&field.selection_set.node)? {
                        leaf(info_field)?;
                        info.push((
                            key,
                            match info_field.name.node.as_str() {
                                "__typename" => PageInfoItem::Typename,
                                "hasNextPage" => PageInfoItem::HasNextPage,
                                "hasPreviousPage" => PageInfoItem::HasPreviousPage,
                                "startCursor" => PageInfoItem::StartCursor,
                                "endCursor" => PageInfoItem::EndCursor,
                                _ => return Err(Bail),
                            },
                        ));
                    }
                    ConnectionItem::PageInfo(info)
                }
                _ => return Err(Bail),
            };
            items.push((key, item));
        }
        let mut read: Vec<String> = Vec::new();
        for (_, item) in &items {
            match item {
                ConnectionItem::Nodes(nodes) => read.extend(nodes.fields.iter().cloned()),
                ConnectionItem::Edges(edges) => {
                    for (_, item) in &edges.items {
                        if let EdgeItem::Node(node) = item {
                            read.extend(node.fields.iter().cloned());
                        }
                    }
                }
                _ => {}
            }
        }
        read.sort_unstable();
        read.dedup();
        Ok(ConnectionSelection { type_name: format!("{type_name}Connection"), items, fields: read.into() })
    }
}

// ---------------------------------------------------------------------------
// Running

/// One connection being answered.
struct Connection<'r> {
    query: &'r ListQuery,
    sort: &'r [Sort],
    page: &'r Page,
    /// Known for a relation; counted on demand for a top-level list.
    total: Option<u64>,
}

struct Runner<'a> {
    metadata: &'a Metadata,
    rc: &'a RequestCtx,
    reader: Reader<'a>,
    variables: HashMap<&'a str, &'a Gql>,
    limits: &'a Limits,
}

impl Plan {
    /// The response data for one request, or [`Bail`].
    pub(crate) fn run(&self, rc: &RequestCtx, variables: &Variables) -> Run<Json> {
        let mut values: HashMap<&str, &Gql> = HashMap::with_capacity(self.variables.len());
        for variable in &self.variables {
            let value = match variables.get(&variable.name) {
                Some(value) => value,
                None => variable.default.as_ref().ok_or(Bail)?,
            };
            if !variable.accepts(value) {
                return Err(Bail);
            }
            values.insert(variable.name.as_str(), value);
        }
        let reader = rc.store.reader().map_err(|_| Bail)?;
        let runner = Runner { metadata: &self.metadata, rc, reader, variables: values, limits: &self.limits };
        let mut out = Vec::with_capacity(4096);
        out.push(b'{');
        for (index, (key, root)) in self.roots.iter().enumerate() {
            write_member(&mut out, index, key);
            match root {
                Root::Typename => out.extend_from_slice(br#""Query""#),
                Root::Get { object, id, selection } => out.extend(runner.get(object, id, selection)?),
                Root::List { object, arguments, selection } => {
                    out.extend(runner.list(self.metadata.object(object).ok_or(Bail)?, arguments, selection)?)
                }
            }
        }
        out.push(b'}');
        Ok(out)
    }
}

impl Variable {
    /// Whether the engine would take `value` for this variable as it is. Only
    /// what is certainly valid is accepted; the engine judges the rest.
    fn accepts(&self, value: &Gql) -> bool {
        match value {
            Gql::Null => self.nullable,
            Gql::String(text) => match &self.kind {
                VariableKind::String | VariableKind::Id | VariableKind::Text => true,
                VariableKind::Enum(items) => items.contains(text),
                _ => false,
            },
            Gql::Number(number) => match self.kind {
                VariableKind::Int => number.as_i64().is_some_and(|int| i32::try_from(int).is_ok()),
                VariableKind::Float => number.as_f64().is_some_and(f64::is_finite),
                _ => false,
            },
            Gql::Boolean(_) => matches!(self.kind, VariableKind::Boolean),
            _ => false,
        }
    }
}

impl<'a> Runner<'a> {
    /// An argument with its variables put in, as the engine does.
    fn argument(&self, value: &async_graphql_value::Value) -> Run<Gql> {
        value.clone().into_const_with(|name| self.variables.get(name.as_str()).map(|value| (*value).clone()).ok_or(Bail))
    }

    fn arguments(&self, arguments: &Arguments) -> Run<IndexMap<Name, Gql>> {
        arguments.iter().map(|(name, value)| Ok((name.clone(), self.argument(value)?))).collect()
    }

    fn get(&self, object: &Arc<str>, id: &async_graphql_value::Value, selection: &RecordSelection) -> Run<Json> {
        let rc = self.rc;
        let id = convert::parse_id(&self.argument(id)?).map_err(|_| Bail)?;
        rc.access.require(object, Operation::Read).map_err(|_| Bail)?;
        let record = self.reader.get(object, id).map_err(|_| Bail)?;
        let record = record.filter(|record| !record.is_deleted()).ok_or(Bail)?;
        self.readable(object, &record)?;
        Ok(self.records(selection, &[&record])?.remove(0))
    }

    fn list(&self, object: &ObjectDef, arguments: &Arguments, selection: &ConnectionSelection) -> Run<Json> {
        let (mut query, sort, page) = list_args(object, &self.arguments(arguments)?, self.limits).map_err(|_| Bail)?;
        self.secure(&mut query)?;
        query.fields = Some(selection.fields.clone());
        let page = self.reader.list(&query, &page).map_err(|_| Bail)?;
        let connection = Connection { query: &query, sort: &sort, page: &page, total: None };
        Ok(self.connections(selection, &[connection])?.remove(0))
    }

    /// The caller's read permissions applied to a list query, as for the engine.
    fn secure(&self, query: &mut ListQuery) -> Run<()> {
        crate::schema::secure_query(self.rc, query).map_err(|_| Bail)
    }

    fn readable(&self, object: &str, record: &Record) -> Run<()> {
        crate::schema::check_readable(self.rc, object, record).map_err(|_| Bail)
    }

    /// The objects `selection` makes of `records`, one each.
    fn records(&self, selection: &RecordSelection, records: &[&Record]) -> Run<Vec<Json>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let access = &self.rc.access;
        if !access.is_unrestricted() {
            for field in &selection.checked {
                access.require_field_read(&selection.object, field).map_err(|_| Bail)?;
            }
        }
        // Relations and connections are read for all the records at once,
        // before the objects are written one by one.
        let mut batched: Vec<std::vec::IntoIter<Json>> = Vec::new();
        for (_, item) in &selection.items {
            match item {
                RecordItem::Relation { field, target, selection } => {
                    batched.push(self.relation(field, target, selection, records)?.into_iter())
                }
                RecordItem::Children { child, field, arguments, selection } => {
                    let child = self.metadata.object(child).ok_or(Bail)?;
                    batched.push(self.children(child, field, arguments, selection, records)?.into_iter());
                }
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let mut json = Vec::with_capacity(64 * selection.items.len());
            let mut batched = batched.iter_mut();
            json.push(b'{');
            for (index, (key, item)) in selection.items.iter().enumerate() {
                write_member(&mut json, index, key);
                match item {
                    RecordItem::Typename => write_json(&mut json, &selection.type_name)?,
                    // A ULID's text is letters and digits.
                    RecordItem::Id => write!(json, "\"{}\"", record.id).map_err(|_| Bail)?,
                    RecordItem::Version => write_json(&mut json, &record.version)?,
                    RecordItem::CreatedAt => write_json(&mut json, &format_datetime(record.created_at))?,
                    RecordItem::UpdatedAt => write_json(&mut json, &format_datetime(record.updated_at))?,
                    RecordItem::DeletedAt => match record.deleted_at {
                        Some(at) => write_json(&mut json, &format_datetime(at))?,
                        None => json.extend_from_slice(b"null"),
                    },
                    RecordItem::Value { field, ty, required, items } => {
                        write_value(&mut json, ty, *required, items.as_ref(), record.get(field))?
                    }
                    RecordItem::Relation { .. } | RecordItem::Children { .. } => {
                        json.extend(batched.next().and_then(Iterator::next).ok_or(Bail)?)
                    }
                }
            }
            json.push(b'}');
            out.push(json);
        }
        Ok(out)
    }

    /// The record each of `records` refers to through `field`, in one read.
    fn relation(&self, field: &str, target: &Arc<str>, selection: &RecordSelection, records: &[&Record]) -> Run<Vec<Json>> {
        let ids: Vec<Option<RecordId>> = records.iter().map(|record| record.get(field).as_id()).collect();
        let mut wanted: Vec<RecordId> = ids.iter().flatten().copied().collect();
        if wanted.is_empty() {
            return Ok(vec![b"null".to_vec(); records.len()]);
        }
        wanted.sort_unstable();
        wanted.dedup();
        self.rc.access.require(target, Operation::Read).map_err(|_| Bail)?;
        let keep: Vec<&str> = selection.fields.iter().map(String::as_str).collect();
        let found = self.reader.get_many_fields(target, &wanted, Some(&keep)).map_err(|_| Bail)?;
        let mut present: Vec<&Record> = Vec::with_capacity(found.len());
        for id in &wanted {
            if let Some(record) = found.get(id).filter(|record| !record.is_deleted()) {
                self.readable(target, record)?;
                present.push(record);
            }
        }
        let values = self.records(selection, &present)?;
        let by_id: HashMap<RecordId, &Json> = present.iter().map(|record| record.id).zip(values.iter()).collect();
        Ok(ids
            .iter()
            .map(|id| match id.and_then(|id| by_id.get(&id)) {
                Some(value) => (*value).clone(),
                None => b"null".to_vec(),
            })
            .collect())
    }

    /// The children of each of `records` under one reverse relation, in one read.
    fn children(
        &self,
        child: &ObjectDef,
        field: &str,
        arguments: &Arguments,
        selection: &ConnectionSelection,
        records: &[&Record],
    ) -> Run<Vec<Json>> {
        let (mut query, sort, page) = list_args(child, &self.arguments(arguments)?, self.limits).map_err(|_| Bail)?;
        self.secure(&mut query)?;
        query.fields = Some(selection.fields.clone());
        let mut parents: Vec<RecordId> = Vec::with_capacity(records.len());
        for record in records {
            if !parents.contains(&record.id) {
                parents.push(record.id);
            }
        }
        let pages = self.reader.related(&query, field, &parents, &page).map_err(|_| Bail)?;
        let empty = (Page::default(), 0);
        let connections: Vec<Connection<'_>> = records
            .iter()
            .map(|record| {
                let (page, total) = pages.get(&record.id).unwrap_or(&empty);
                Connection { query: &query, sort: &sort, page, total: Some(*total) }
            })
            .collect();
        self.connections(selection, &connections)
    }

    fn connections(&self, selection: &ConnectionSelection, connections: &[Connection<'_>]) -> Run<Vec<Json>> {
        // The value of each item for every connection, then the objects.
        let mut columns: Vec<std::vec::IntoIter<Json>> = Vec::with_capacity(selection.items.len());
        for (_, item) in &selection.items {
            let values: Vec<Json> = match item {
                ConnectionItem::Typename => connections.iter().map(|_| json_of(&selection.type_name)).collect::<Run<_>>()?,
                ConnectionItem::TotalCount => connections
                    .iter()
                    .map(|connection| match connection.total {
                        Some(total) => json_of(&total),
                        None => json_of(&self.reader.count(connection.query).map_err(|_| Bail)?),
                    })
                    .collect::<Run<_>>()?,
                ConnectionItem::PageInfo(items) => connections
                    .iter()
                    .map(|connection| {
                        let records = &connection.page.records;
                        let mut json = vec![b'{'];
                        for (index, (key, item)) in items.iter().enumerate() {
                            write_member(&mut json, index, key);
                            let cursor = match item {
                                PageInfoItem::Typename => {
                                    write_json(&mut json, "PageInfo")?;
                                    continue;
                                }
                                PageInfoItem::HasNextPage => {
                                    write_json(&mut json, &connection.page.has_next_page)?;
                                    continue;
                                }
                                PageInfoItem::HasPreviousPage => {
                                    write_json(&mut json, &connection.page.has_previous_page)?;
                                    continue;
                                }
                                PageInfoItem::StartCursor => records.first(),
                                PageInfoItem::EndCursor => records.last(),
                            };
                            match cursor {
                                Some(record) => write_json(&mut json, &Cursor::of(record, connection.sort).encode())?,
                                None => json.extend_from_slice(b"null"),
                            }
                        }
                        json.push(b'}');
                        Ok(json)
                    })
                    .collect::<Run<_>>()?,
                ConnectionItem::Nodes(nodes) => {
                    let all: Vec<&Record> = connections.iter().flat_map(|connection| connection.page.records.iter()).collect();
                    split(connections, self.records(nodes, &all)?)
                }
                ConnectionItem::Edges(edges) => {
                    let all: Vec<(&Record, &[Sort])> = connections
                        .iter()
                        .flat_map(|connection| connection.page.records.iter().map(|record| (record, connection.sort)))
                        .collect();
                    let mut edge_columns: Vec<std::vec::IntoIter<Json>> = Vec::with_capacity(edges.items.len());
                    for (_, item) in &edges.items {
                        let values: Vec<Json> = match item {
                            EdgeItem::Typename => all.iter().map(|_| json_of(&edges.type_name)).collect::<Run<_>>()?,
                            EdgeItem::Cursor => {
                                all.iter().map(|(record, sort)| json_of(&Cursor::of(record, sort).encode())).collect::<Run<_>>()?
                            }
                            EdgeItem::Node(node) => {
                                let records: Vec<&Record> = all.iter().map(|(record, _)| *record).collect();
                                self.records(node, &records)?
                            }
                        };
                        edge_columns.push(values.into_iter());
                    }
                    let objects: Vec<Json> = all.iter().map(|_| object(&edges.items, &mut edge_columns)).collect::<Run<_>>()?;
                    split(connections, objects)
                }
            };
            columns.push(values.into_iter());
        }
        connections.iter().map(|_| object(&selection.items, &mut columns)).collect()
    }
}

/// Whether a plan's answer holds the data the engine answered: the same
/// JSON, the keys of an object in any order.
fn same_data(mine: &[u8], data: &Gql) -> bool {
    match (serde_json::from_slice::<serde_json::Value>(mine), serde_json::to_value(data)) {
        (Ok(mine), Ok(data)) => mine == data,
        _ => false,
    }
}

/// The JSON text of one value of the response.
type Json = Vec<u8>;

/// The start of an object's member number `index`: the comma before all
/// but the first, then `"key":`. Response keys are GraphQL names
/// (`[_A-Za-z][_0-9A-Za-z]*`): nothing in them needs escaping.
fn write_member(out: &mut Json, index: usize, key: &Name) {
    if index > 0 {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// A value as serde_json writes it, which is how the engine's responses are
/// written.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Json, value: &T) -> Run<()> {
    serde_json::to_writer(out, value).map_err(|_| Bail)
}

fn json_of<T: serde::Serialize + ?Sized>(value: &T) -> Run<Json> {
    let mut out = Vec::new();
    write_json(&mut out, value)?;
    Ok(out)
}

/// One object of the response: the next value of each column under its key.
fn object<T>(items: &[(Name, T)], columns: &mut [std::vec::IntoIter<Json>]) -> Run<Json> {
    let mut out = vec![b'{'];
    for (index, ((key, _), column)) in items.iter().zip(columns.iter_mut()).enumerate() {
        write_member(&mut out, index, key);
        out.extend(column.next().ok_or(Bail)?);
    }
    out.push(b'}');
    Ok(out)
}

/// A stored value as the engine writes it for a field of type `ty`, or
/// [`Bail`] where the engine would report an error (a null in a required
/// field, an enum value or a date the schema does not have) or where this
/// writer is not sure to write what the engine writes.
fn write_value(out: &mut Json, ty: &FieldType, required: bool, items: Option<&HashMap<String, String>>, value: &Value) -> Run<()> {
    match (ty, value) {
        (_, Value::Null) if required => Err(Bail),
        (_, Value::Null) => {
            out.extend_from_slice(b"null");
            Ok(())
        }
        (FieldType::Enum(_), Value::Text(key)) => write_json(out, items.and_then(|items| items.get(key)).ok_or(Bail)?),
        (FieldType::Enum(_), _) => Err(Bail),
        (FieldType::DateTime, Value::Int(ms)) => write_json(out, &format_datetime(*ms)),
        (FieldType::DateTime | FieldType::Date, Value::Text(text)) => write_json(out, text),
        (FieldType::DateTime | FieldType::Date, _) => Err(Bail),
        (_, Value::Text(text)) => write_json(out, text),
        (_, Value::Int(int)) => write_json(out, int),
        (_, Value::Float(float)) if float.is_finite() => write_json(out, float),
        (_, Value::Float(_)) => Err(Bail),
        (_, Value::Bool(flag)) => write_json(out, flag),
        (_, Value::Id(id)) => write!(out, "\"{id}\"").map_err(|_| Bail),
        (_, Value::List(items)) => write_json(out, items),
    }
}

/// Cuts the values of all connections' records back into one list per connection.
fn split(connections: &[Connection<'_>], values: Vec<Json>) -> Vec<Json> {
    let mut values = values.into_iter();
    connections
        .iter()
        .map(|connection| {
            let mut list = vec![b'['];
            for (index, value) in values.by_ref().take(connection.page.records.len()).enumerate() {
                if index > 0 {
                    list.push(b',');
                }
                list.extend(value);
            }
            list.push(b']');
            list
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(query: &str) -> Run<Plan> {
        let document = async_graphql::parser::parse_query(query).expect("a query that parses");
        compile(&Metadata::standard(), &document, None, &Limits::default())
    }

    #[test]
    fn record_fields_relations_and_connections_are_planned() {
        let plan = compiled(
            "query Page($stage: ContactLifecycleStage!) { contacts(first: 50, filter: { lifecycleStage: { eq: $stage } }) \
             { totalCount pageInfo { endCursor } edges { cursor node { id } } nodes { __typename id firstName company { name } \
             deals(first: 10) { nodes { name } } } } }",
        )
        .expect("planned");
        assert_eq!(plan.variables.len(), 1);
        let [(key, Root::List { selection, .. })] = plan.roots.as_slice() else { panic!("one list root") };
        assert_eq!(key.as_str(), "contacts");
        assert_eq!(selection.items.len(), 4);
        let Some((_, ConnectionItem::Nodes(nodes))) = selection.items.iter().find(|(key, _)| key.as_str() == "nodes") else {
            panic!("nodes")
        };
        let kinds: Vec<&str> = nodes
            .items
            .iter()
            .map(|(_, item)| match item {
                RecordItem::Typename => "typename",
                RecordItem::Id => "id",
                RecordItem::Value { .. } => "value",
                RecordItem::Relation { .. } => "relation",
                RecordItem::Children { .. } => "children",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["typename", "id", "value", "relation", "children"]);
        assert_eq!(nodes.checked, ["first_name", "company_id"], "fields the caller's role must be allowed to read");
    }

    #[test]
    fn what_a_plan_does_not_answer_is_left_to_the_engine() {
        for query in [
            // Fragments, directives, a response key twice.
            "{ contacts { nodes { ...F } } } fragment F on Contact { id }",
            "{ contacts { nodes { ... on Contact { id } } } }",
            "query($x: Boolean!) { contacts { nodes { id @include(if: $x) } } }",
            "{ contacts { nodes { id id } } }",
            "{ contacts { nodes { a: id a: firstName } } }",
            // Not a query of records: mutations, introspection, other roots,
            // history, unknown arguments.
            "mutation { deleteContact(id: \"01J00000000000000000000000\") { id } }",
            "{ __schema { types { name } } }",
            "{ contacts { nodes { id __type(name: \"Contact\") { name } } } }",
            "{ me { email } }",
            "{ contactsAggregate { count } }",
            "{ contacts { nodes { history { operation } } } }",
            "{ contacts(search: \"x\") { nodes { id } } }",
            // Variables of list or input types.
            "query($ids: [ID!]) { contacts(filter: { id: { in: $ids } }) { nodes { id } } }",
            "query($f: ContactFilter) { contacts(filter: $f) { nodes { id } } }",
        ] {
            assert!(compiled(query).is_err(), "planned: {query}");
        }
    }

    #[test]
    fn a_plan_takes_only_variable_values_it_can_vouch_for() {
        let stage = Variable { name: Name::new("s"), kind: VariableKind::Enum(["LEAD".to_string()].into()), nullable: false, default: None };
        assert!(stage.accepts(&Gql::String("LEAD".into())));
        assert!(!stage.accepts(&Gql::String("SHOPPER".into())));
        assert!(!stage.accepts(&Gql::from(3)));
        assert!(!stage.accepts(&Gql::Null));
        let first = Variable { name: Name::new("n"), kind: VariableKind::Int, nullable: true, default: None };
        assert!(first.accepts(&Gql::from(50)));
        assert!(first.accepts(&Gql::Null));
        assert!(!first.accepts(&Gql::from(i64::from(i32::MAX) + 1)));
        assert!(!first.accepts(&Gql::from(1.5)));
        assert!(!first.accepts(&Gql::String("50".into())));
        let id = Variable { name: Name::new("id"), kind: VariableKind::Id, nullable: false, default: None };
        assert!(id.accepts(&Gql::String("01J00000000000000000000000".into())));
        assert!(!id.accepts(&Gql::from(7)), "an id as a number is left to the engine");
    }
}
