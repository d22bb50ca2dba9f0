//! Records, the changes `before_write` judges, the decisions it returns and
//! the events `after_commit` receives.

use std::fmt;
use std::ops::Deref;

use crate::value::{Fields, Value};

/// What a change does to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Create,
    Update,
    Delete,
    Restore,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Create, Op::Update, Op::Delete, Op::Restore];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Restore => "restore",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored record, with only the fields the plugin was granted.
///
/// Dereferences to its [`Fields`], so `record.text("email")` works.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    pub object: String,
    pub id: String,
    pub version: u64,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// Epoch milliseconds.
    pub updated_at: i64,
    pub deleted: bool,
    pub fields: Fields,
}

impl Deref for Record {
    type Target = Fields;
    fn deref(&self) -> &Fields {
        &self.fields
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub records: Vec<Record>,
    /// Pass back as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A change about to be written, as `before_write` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    object: String,
    op: Op,
    id: String,
    before: Option<Fields>,
    after: Fields,
}

impl Change {
    /// A create of `object` with `after` as the new record. The id is empty
    /// until set with [`Change::with_id`]; the test host assigns one.
    pub fn create(object: impl Into<String>, after: impl Into<Fields>) -> Change {
        Change { object: object.into(), op: Op::Create, id: String::new(), before: None, after: after.into() }
    }

    /// An update of record `id` from `before` to `after` (both whole records).
    pub fn update(
        object: impl Into<String>,
        id: impl Into<String>,
        before: impl Into<Fields>,
        after: impl Into<Fields>,
    ) -> Change {
        Change { object: object.into(), op: Op::Update, id: id.into(), before: Some(before.into()), after: after.into() }
    }

    /// A delete of record `id`, whose fields stay as they were.
    pub fn delete(object: impl Into<String>, id: impl Into<String>, before: impl Into<Fields>) -> Change {
        let before = before.into();
        Change { object: object.into(), op: Op::Delete, id: id.into(), after: before.clone(), before: Some(before) }
    }

    /// A restore of the deleted record `id`.
    pub fn restore(object: impl Into<String>, id: impl Into<String>, before: impl Into<Fields>) -> Change {
        Change { op: Op::Restore, ..Change::delete(object, id, before) }
    }

    /// Any change, as the host describes it.
    pub fn new(object: impl Into<String>, op: Op, id: impl Into<String>, before: Option<Fields>, after: Fields) -> Change {
        Change { object: object.into(), op, id: id.into(), before, after }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Change {
        self.id = id.into();
        self
    }

    pub fn object(&self) -> &str {
        &self.object
    }

    pub fn op(&self) -> Op {
        self.op
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this is an `op` on `object`.
    pub fn is(&self, object: &str, op: Op) -> bool {
        self.object == object && self.op == op
    }

    /// The record before the change; `None` for a create.
    pub fn before(&self) -> Option<&Fields> {
        self.before.as_ref()
    }

    /// The record as it will be written unless a plugin patches it.
    pub fn after(&self) -> &Fields {
        &self.after
    }

    /// Whether the change sets `field` to something else than it was (for a
    /// create: to something other than null).
    pub fn changed(&self, field: &str) -> bool {
        let after = self.after.get(field).unwrap_or(&Value::Null);
        let before = self.before.as_ref().and_then(|before| before.get(field)).unwrap_or(&Value::Null);
        after != before
    }
}

/// What `before_write` says about one change.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let the change through as it is.
    Accept,
    /// Set these fields on the record (`Value::Null` clears one).
    Patch(Fields),
    /// Refuse the whole request; the client gets a VALIDATION error.
    Reject { field: Option<String>, message: String },
}

impl Decision {
    pub fn accept() -> Decision {
        Decision::Accept
    }

    /// `Decision::patch([("lead_score", Value::Int(30))])`. An empty patch
    /// is the same as `accept`.
    pub fn patch<K: Into<String>, V: Into<Value>>(fields: impl IntoIterator<Item = (K, V)>) -> Decision {
        let fields: Fields = fields.into_iter().collect();
        if fields.is_empty() { Decision::Accept } else { Decision::Patch(fields) }
    }

    pub fn reject(message: impl Into<String>) -> Decision {
        Decision::Reject { field: None, message: message.into() }
    }

    /// A rejection that names the field at fault.
    pub fn reject_field(field: impl Into<String>, message: impl Into<String>) -> Decision {
        Decision::Reject { field: Some(field.into()), message: message.into() }
    }

    pub fn is_accept(&self) -> bool {
        matches!(self, Decision::Accept)
    }

    pub fn is_reject(&self) -> bool {
        matches!(self, Decision::Reject { .. })
    }

    /// The patched fields, if this is a patch.
    pub fn patched(&self) -> Option<&Fields> {
        match self {
            Decision::Patch(fields) => Some(fields),
            _ => None,
        }
    }
}

/// A committed change, delivered to `after_commit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the tenant's change feed.
    pub seq: u64,
    /// Commit time, epoch milliseconds.
    pub at: i64,
    pub object: String,
    pub id: String,
    pub op: Op,
    /// The record's version after the change.
    pub version: u64,
    /// The record after the change, granted fields only.
    pub fields: Fields,
}

impl Event {
    /// An event for tests; `seq`, `at` and `version` are placeholders.
    pub fn new(object: impl Into<String>, id: impl Into<String>, op: Op, fields: impl Into<Fields>) -> Event {
        Event { seq: 0, at: 0, object: object.into(), id: id.into(), op, version: 1, fields: fields.into() }
    }

    /// Whether this is an `op` on `object`.
    pub fn is(&self, object: &str, op: Op) -> bool {
        self.object == object && self.op == op
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_compares_before_and_after() {
        let create = Change::create("contact", [("email", "a@b.c")]);
        assert!(create.changed("email"));
        assert!(!create.changed("phone"));
        let update =
            Change::update("contact", "1", [("email", "a@b.c"), ("title", "CEO")], [("email", "a@b.c"), ("title", "VP")]);
        assert!(!update.changed("email"));
        assert!(update.changed("title"));
        let delete = Change::delete("contact", "1", [("email", "a@b.c")]);
        assert_eq!(delete.after().text("email"), Some("a@b.c"));
        assert!(!delete.changed("email"));
    }

    #[test]
    fn an_empty_patch_is_an_accept() {
        assert_eq!(Decision::patch(Vec::<(String, Value)>::new()), Decision::Accept);
        let patch = Decision::patch([("lead_score", Value::Int(3))]);
        assert_eq!(patch.patched().and_then(|fields| fields.int("lead_score")), Some(3));
        assert_eq!(
            Decision::reject_field("email", "blocked"),
            Decision::Reject { field: Some("email".into()), message: "blocked".into() }
        );
    }
}
