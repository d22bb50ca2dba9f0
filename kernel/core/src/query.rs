//! The filter language shared by GraphQL, the store and (later) plugins:
//! conditions per field composed with `and`, `or`, `not`; sorting; cursors.

use std::cmp::Ordering;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};
use crate::value::{Record, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    /// Case-insensitive substring; for tags, membership of a tag.
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    IsNull(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Field { field: String, condition: Condition },
}

impl Filter {
    pub fn field(field: impl Into<String>, condition: Condition) -> Filter {
        Filter::Field { field: field.into(), condition }
    }

    pub fn matches(&self, record: &Record) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|filter| filter.matches(record)),
            Filter::Or(any) => any.iter().any(|filter| filter.matches(record)),
            Filter::Not(inner) => !inner.matches(record),
            Filter::Field { field, condition } => condition.matches(&record.value_of(field)),
        }
    }

    /// Every field the filter reads, so callers can check permissions.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::And(all) | Filter::Or(all) => all.iter().for_each(|filter| filter.collect_fields(out)),
            Filter::Not(inner) => inner.collect_fields(out),
            Filter::Field { field, .. } => out.push(field),
        }
    }

    /// The conditions that every matching record must satisfy: the field
    /// conditions of the top-level conjunction. The planner uses these to
    /// pick an index.
    pub fn required_conditions(&self) -> Vec<(&str, &Condition)> {
        match self {
            Filter::Field { field, condition } => vec![(field.as_str(), condition)],
            Filter::And(all) => all.iter().flat_map(|filter| filter.required_conditions()).collect(),
            _ => Vec::new(),
        }
    }
}

fn lower_contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

impl Condition {
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            Condition::IsNull(expected) => value.is_null() == *expected,
            _ if value.is_null() => matches!(self, Condition::Neq(v) if !v.is_null())
                || matches!(self, Condition::Nin(values) if !values.iter().any(Value::is_null)),
            Condition::Eq(expected) => value.compare(expected) == Ordering::Equal,
            Condition::Neq(expected) => value.compare(expected) != Ordering::Equal,
            Condition::In(options) => options.iter().any(|option| value.compare(option) == Ordering::Equal),
            Condition::Nin(options) => !options.iter().any(|option| value.compare(option) == Ordering::Equal),
            Condition::Gt(bound) => value.compare(bound) == Ordering::Greater,
            Condition::Gte(bound) => value.compare(bound) != Ordering::Less,
            Condition::Lt(bound) => value.compare(bound) == Ordering::Less,
            Condition::Lte(bound) => value.compare(bound) != Ordering::Greater,
            Condition::Contains(needle) => match value {
                Value::Text(text) => lower_contains(text, needle),
                Value::List(items) => items.iter().any(|item| item.eq_ignore_ascii_case(needle)),
                _ => false,
            },
            Condition::StartsWith(prefix) => match value {
                Value::Text(text) => text.to_lowercase().starts_with(&prefix.to_lowercase()),
                _ => false,
            },
            Condition::EndsWith(suffix) => match value {
                Value::Text(text) => text.to_lowercase().ends_with(&suffix.to_lowercase()),
                _ => false,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub field: String,
    pub descending: bool,
}

/// What to list: an object, an optional filter and an order.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub object: String,
    pub filter: Option<Filter>,
    pub sort: Vec<Sort>,
    pub include_deleted: bool,
    /// The fields the caller reads of each record, when it reads only some:
    /// records listed then carry those (and the ones the filter and the
    /// order use) and lack the rest, so they are for reading, not for
    /// writing back. `None` reads every field.
    pub fields: Option<Arc<[String]>>,
}

impl ListQuery {
    pub fn new(object: impl Into<String>) -> Self {
        ListQuery { object: object.into(), filter: None, sort: Vec::new(), include_deleted: false, fields: None }
    }
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
    pub fn sort(mut self, field: &str, descending: bool) -> Self {
        self.sort.push(Sort { field: field.to_string(), descending });
        self
    }

    /// The fields to decode of each record: [`ListQuery::fields`] with the
    /// ones the filter and the order read; `None` for all.
    pub fn decoded_fields(&self) -> Option<Vec<&str>> {
        let fields = self.fields.as_ref()?;
        let mut keep: Vec<&str> = fields.iter().map(String::as_str).collect();
        if let Some(filter) = &self.filter {
            keep.extend(filter.fields());
        }
        keep.extend(self.sort.iter().map(|sort| sort.field.as_str()));
        keep.sort_unstable();
        keep.dedup();
        Some(keep)
    }

    pub fn matches(&self, record: &Record) -> bool {
        (self.include_deleted || !record.is_deleted()) && self.filter.as_ref().is_none_or(|filter| filter.matches(record))
    }

    /// The effective order: the requested keys then `id` as the tie-break,
    /// in the direction of the last requested key (so an index, whose keys
    /// end with the id, yields exactly this order both ways). `created_at`
    /// is kernel-owned and set with the time-ordered id, so it is ordered by
    /// id.
    pub fn effective_sort(&self) -> Vec<Sort> {
        let mut sort: Vec<Sort> = Vec::new();
        for key in &self.sort {
            let field = if key.field == "created_at" { "id" } else { key.field.as_str() };
            if sort.iter().any(|existing| existing.field == field) {
                continue;
            }
            sort.push(Sort { field: field.to_string(), descending: key.descending });
            if field == "id" {
                break;
            }
        }
        if sort.last().is_none_or(|last| last.field != "id") {
            let descending = sort.last().is_some_and(|last| last.descending);
            sort.push(Sort { field: "id".into(), descending });
        }
        sort
    }
}

/// A position in an ordered list: the sort key values of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor(pub Vec<Value>);

impl Cursor {
    pub fn of(record: &Record, sort: &[Sort]) -> Cursor {
        Cursor(sort.iter().map(|key| record.value_of(&key.field)).collect())
    }
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(postcard::to_stdvec(&self.0).unwrap_or_default())
    }
    pub fn decode(text: &str, sort: &[Sort]) -> Result<Cursor> {
        let bad = || Error::invalid(format!("invalid cursor '{}'", crate::ids::truncate(text, 60)));
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let values: Vec<Value> = postcard::from_bytes(&bytes).map_err(|_| bad())?;
        if values.len() != sort.len() || !matches!(values.last(), Some(Value::Id(_))) {
            return Err(Error::invalid(format!(
                "cursor '{}' does not belong to this ordering",
                crate::ids::truncate(text, 60)
            )));
        }
        Ok(Cursor(values))
    }
}

/// Compares a record with a cursor under `sort`.
pub fn compare_to_cursor(record: &Record, cursor: &Cursor, sort: &[Sort]) -> Ordering {
    for (key, bound) in sort.iter().zip(&cursor.0) {
        let ordering = record.value_of(&key.field).compare(bound);
        let ordering = if key.descending { ordering.reverse() } else { ordering };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

pub fn compare_records(a: &Record, b: &Record, sort: &[Sort]) -> Ordering {
    for key in sort {
        let ordering = a.value_of(&key.field).compare(&b.value_of(&key.field));
        let ordering = if key.descending { ordering.reverse() } else { ordering };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Which slice of an ordered list to return (Relay connection arguments).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageRequest {
    pub first: Option<usize>,
    pub after: Option<Cursor>,
    pub last: Option<usize>,
    pub before: Option<Cursor>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub records: Vec<Record>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

/// Applies a page request to records already filtered and sorted.
pub fn paginate(sorted: Vec<Record>, sort: &[Sort], page: &PageRequest) -> Page {
    let mut records = sorted;
    let mut has_previous_page = false;
    let mut has_next_page = false;
    if let Some(after) = &page.after {
        let start = records.partition_point(|record| compare_to_cursor(record, after, sort) != Ordering::Greater);
        has_previous_page = start > 0;
        records.drain(..start);
    }
    if let Some(before) = &page.before {
        let end = records.partition_point(|record| compare_to_cursor(record, before, sort) == Ordering::Less);
        has_next_page = end < records.len();
        records.truncate(end);
    }
    if let Some(first) = page.first
        && records.len() > first
    {
        records.truncate(first);
        has_next_page = true;
    }
    if let Some(last) = page.last
        && records.len() > last
    {
        records.drain(..records.len() - last);
        has_previous_page = true;
    }
    Page { records, has_next_page, has_previous_page }
}
