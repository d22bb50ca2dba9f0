//! Roles and what they allow: per object `read create update delete`, per
//! field `read write`, and a record scope (`own`, `team`, `all`).
//!
//! A role is data: the five built-in roles are defined here, custom roles
//! are stored per tenant in `system.redb`. An [`Access`] is a role bound to
//! a caller (their user id and team); the API asks it before every read and
//! write, and hands the writer a [`WriteGuard`] so scope checks of updates
//! and deletes run inside the write transaction, on the record as stored.
//!
//! Scope is decided by two fields of a record: `owner_id` (a user id) and
//! `team_id` (a team name). `own` admits records the caller owns; `team`
//! also admits records of the caller's team. Objects without an `owner_id`
//! field (pipelines, events, messages) are not owned, and any scope admits
//! their records.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::ids::RecordId;
use crate::metadata::Metadata;
use crate::query::{Condition, Filter};
use crate::value::{Record, Value};
use crate::writer::{Fields, Mutation};

/// The fields a record's scope (`own`, `team`) is decided on.
pub const SCOPE_FIELDS: [&str; 2] = ["owner_id", "team_id"];

/// Which records of an object an operation reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Own,
    Team,
    All,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Own => "own",
            Scope::Team => "team",
            Scope::All => "all",
        }
    }
}

/// The operations on records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// What a role may do with the records of one object. `None` forbids the
/// operation; a scope allows it on the records within that scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectGrant {
    #[serde(default)]
    pub read: Option<Scope>,
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub update: Option<Scope>,
    #[serde(default)]
    pub delete: Option<Scope>,
}

impl ObjectGrant {
    pub const NONE: ObjectGrant = ObjectGrant { read: None, create: false, update: None, delete: None };
    pub const FULL: ObjectGrant =
        ObjectGrant { read: Some(Scope::All), create: true, update: Some(Scope::All), delete: Some(Scope::All) };
    pub const READ: ObjectGrant = ObjectGrant { read: Some(Scope::All), create: false, update: None, delete: None };

    /// The scope of an operation; `create` has no scope and reads as `all`.
    pub fn scope(&self, operation: Operation) -> Option<Scope> {
        match operation {
            Operation::Read => self.read,
            Operation::Create => self.create.then_some(Scope::All),
            Operation::Update => self.update,
            Operation::Delete => self.delete,
        }
    }
}

/// What a role may do with one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAccess {
    /// Neither read nor written: absent from results, refused in filters,
    /// sorts, groupings and inputs.
    Hidden,
    /// Read, never written.
    Read,
    /// Read and written (the default).
    Write,
}

/// A role: object grants (a default for objects not listed), field rules
/// (`object.field` → access) and whether it administers the tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Users, roles, API keys, plugins and tenant settings.
    #[serde(default)]
    pub admin: bool,
    /// May call plugin actions (typed mutations that plugins declare).
    #[serde(default)]
    pub actions: bool,
    #[serde(default)]
    pub default: ObjectGrant,
    #[serde(default)]
    pub objects: BTreeMap<String, ObjectGrant>,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldAccess>,
    #[serde(default)]
    pub builtin: bool,
}

/// The names of the built-in roles, in order of decreasing power.
pub const BUILTIN_ROLES: [&str; 5] = ["admin", "manager", "sales", "support", "read-only"];

/// The objects sales and support work with every day.
const CRM_OBJECTS: [&str; 4] = ["company", "contact", "deal", "activity"];

impl Role {
    fn builtin(name: &str, description: &str, default: ObjectGrant) -> Role {
        Role {
            name: name.into(),
            description: description.into(),
            admin: false,
            actions: false,
            default,
            objects: BTreeMap::new(),
            fields: BTreeMap::new(),
            builtin: true,
        }
    }

    /// A built-in role by name.
    pub fn find_builtin(name: &str) -> Option<Role> {
        let role = match name {
            "admin" => Role {
                admin: true,
                actions: true,
                ..Role::builtin("admin", "Everything, including users, roles, keys and plugins.", ObjectGrant::FULL)
            },
            "manager" => Role {
                actions: true,
                ..Role::builtin("manager", "Every record of every object; no administration.", ObjectGrant::FULL)
            },
            "sales" => {
                let mut role = Role::builtin(
                    "sales",
                    "Reads every customer record; creates them; changes and deletes their own. Cannot reassign owners or teams.",
                    ObjectGrant::READ,
                );
                let own = ObjectGrant { read: Some(Scope::All), create: true, update: Some(Scope::Own), delete: Some(Scope::Own) };
                for object in CRM_OBJECTS {
                    role.objects.insert(object.into(), own);
                    role.fields.insert(format!("{object}.owner_id"), FieldAccess::Read);
                    role.fields.insert(format!("{object}.team_id"), FieldAccess::Read);
                }
                role.objects.insert("outbound_message".into(), ObjectGrant::NONE);
                role
            }
            "support" => {
                let mut role = Role::builtin(
                    "support",
                    "Reads companies and contacts, works on their team's records and activities; no deals; revenue hidden.",
                    ObjectGrant::READ,
                );
                let team = ObjectGrant { read: Some(Scope::All), create: true, update: Some(Scope::Team), delete: None };
                role.objects.insert("company".into(), ObjectGrant::READ);
                role.objects.insert("contact".into(), team);
                role.objects.insert("activity".into(), ObjectGrant { delete: Some(Scope::Own), ..team });
                role.objects.insert("deal".into(), ObjectGrant::NONE);
                role.fields.insert("company.annual_revenue".into(), FieldAccess::Hidden);
                for object in CRM_OBJECTS {
                    role.fields.insert(format!("{object}.owner_id"), FieldAccess::Read);
                    role.fields.insert(format!("{object}.team_id"), FieldAccess::Read);
                }
                role
            }
            "read-only" => Role::builtin("read-only", "Reads every record; changes nothing.", ObjectGrant::READ),
            _ => return None,
        };
        Some(role)
    }

    /// Every built-in role.
    pub fn builtins() -> Vec<Role> {
        BUILTIN_ROLES.iter().filter_map(|name| Role::find_builtin(name)).collect()
    }

    /// The grant for an object.
    pub fn grant(&self, object: &str) -> ObjectGrant {
        self.objects.get(object).copied().unwrap_or(self.default)
    }

    /// The access to a field (`write` unless a rule says otherwise).
    pub fn field_access(&self, object: &str, field: &str) -> FieldAccess {
        if self.fields.is_empty() {
            return FieldAccess::Write;
        }
        self.fields.get(&format!("{object}.{field}")).copied().unwrap_or(FieldAccess::Write)
    }

    /// Checks a custom role before it is stored: a free name, known objects
    /// and fields.
    pub fn validate(&self, metadata: &Metadata) -> Result<()> {
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 40
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(Error::invalid_field("name", "must be 1-40 characters of a-z, 0-9, '-' and '_'"));
        }
        if BUILTIN_ROLES.contains(&self.name.as_str()) {
            return Err(Error::conflict(format!("'{}' is a built-in role and cannot be redefined", self.name)));
        }
        for object in self.objects.keys() {
            if metadata.object(object).is_none() {
                return Err(Error::invalid_field("objects", format!("unknown object '{object}'")));
            }
        }
        for key in self.fields.keys() {
            let known = key
                .split_once('.')
                .and_then(|(object, field)| metadata.object(object).map(|object| object.field(field).is_some()))
                .unwrap_or(false);
            if !known {
                return Err(Error::invalid_field("fields", format!("unknown field '{key}' (write object.field)")));
            }
        }
        Ok(())
    }
}

/// Who is calling, as far as record scope is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The user id (`owner_id` of the records they own); none for an API
    /// key that is not tied to a user.
    pub user: Option<RecordId>,
    pub team: Option<RecordId>,
}

/// A role bound to a caller.
#[derive(Debug, Clone)]
pub struct Access {
    pub role: Arc<Role>,
    pub principal: Principal,
    unrestricted: bool,
}

fn forbidden(message: String) -> Error {
    Error::new(ErrorKind::Forbidden, message)
}

impl Access {
    pub fn new(role: Role, principal: Principal) -> Access {
        let unrestricted = role.default == ObjectGrant::FULL
            && role.objects.values().all(|grant| *grant == ObjectGrant::FULL)
            && role.fields.is_empty();
        Access { role: Arc::new(role), principal, unrestricted }
    }

    /// Full access, for the kernel's own work and the command line.
    pub fn system() -> Access {
        Access::new(Role::find_builtin("admin").expect("admin is built in"), Principal::default())
    }

    pub fn is_admin(&self) -> bool {
        self.role.admin
    }

    /// Everything allowed on every object and field: no checks needed.
    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    pub fn require_admin(&self) -> Result<()> {
        if self.role.admin {
            Ok(())
        } else {
            Err(forbidden(format!("this operation needs an admin role; role '{}' is not one", self.role.name)))
        }
    }

    /// The scope of an operation on an object, or `FORBIDDEN`.
    pub fn require(&self, object: &str, operation: Operation) -> Result<Scope> {
        self.role.grant(object).scope(operation).ok_or_else(|| {
            forbidden(format!("role '{}' may not {} {object} records", self.role.name, operation.as_str()))
        })
    }

    pub fn can_read_field(&self, object: &str, field: &str) -> bool {
        self.role.field_access(object, field) != FieldAccess::Hidden
    }

    pub fn require_field_read(&self, object: &str, field: &str) -> Result<()> {
        if self.can_read_field(object, field) {
            Ok(())
        } else {
            Err(forbidden(format!("role '{}' may not read {object}.{field}", self.role.name)))
        }
    }

    pub fn require_field_write(&self, object: &str, field: &str) -> Result<()> {
        match self.role.field_access(object, field) {
            FieldAccess::Write => Ok(()),
            _ => Err(forbidden(format!("role '{}' may not write {object}.{field}", self.role.name))),
        }
    }

    /// Whether a record lies within a scope for this caller.
    pub fn in_scope(&self, metadata: &Metadata, object: &str, scope: Scope, record: &Record) -> bool {
        if scope == Scope::All || !is_owned(metadata, object) {
            return true;
        }
        let [owner_field, team_field] = SCOPE_FIELDS;
        let owner = record.get(owner_field);
        let is_mine = matches!((owner, &self.principal.user), (Value::Id(owner), Some(user)) if owner == user);
        match scope {
            Scope::Own => is_mine,
            Scope::Team => {
                is_mine
                    || matches!((record.get(team_field), &self.principal.team), (Value::Id(team), Some(mine)) if team == mine)
            }
            Scope::All => true,
        }
    }

    /// Checks one record against the scope of an operation.
    pub fn check_record(&self, metadata: &Metadata, object: &str, operation: Operation, record: &Record) -> Result<()> {
        let scope = self.require(object, operation)?;
        if self.in_scope(metadata, object, scope, record) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "role '{}' may {} only {} {object} records; {} is not one",
                self.role.name,
                operation.as_str(),
                scope.as_str(),
                record.id
            )))
        }
    }

    /// The filter that restricts a list to the records the caller may read,
    /// or `None` when every record is readable.
    pub fn read_filter(&self, metadata: &Metadata, object: &str) -> Result<Option<Filter>> {
        let scope = self.require(object, Operation::Read)?;
        Ok(scope_filter(metadata, object, scope, &self.principal))
    }

    /// Refuses a filter, sort or grouping over a field the caller cannot
    /// read: filtering on it would reveal its values.
    pub fn check_fields_readable<'a>(&self, object: &str, fields: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for field in fields {
            self.require_field_read(object, field)?;
        }
        Ok(())
    }

    /// The guard the writer applies to a request of this caller: none for
    /// an unrestricted caller who is nobody in particular.
    pub fn write_guard(&self, metadata: Arc<Metadata>) -> Option<WriteGuard> {
        if self.is_unrestricted() && self.principal.user.is_none() {
            return None;
        }
        Some(WriteGuard { access: self.clone(), metadata })
    }

    /// Checks mutations against the role before they are written: object
    /// operations and writable fields (record scope is the writer's check,
    /// through [`Access::write_guard`]). Records the caller creates get
    /// them as owner and their team as team when the input names none.
    pub fn authorize_write(&self, metadata: &Metadata, mutations: &mut [Mutation]) -> Result<()> {
        let check_fields = |object: &str, fields: &Fields| -> Result<()> {
            if !self.is_unrestricted() {
                for name in fields.keys() {
                    self.require_field_write(object, name)?;
                }
            }
            Ok(())
        };
        for mutation in mutations.iter_mut() {
            match mutation {
                Mutation::Create { object, fields } => {
                    self.require(object, Operation::Create)?;
                    check_fields(object, fields)?;
                    self.fill_owner(metadata, object, fields);
                }
                Mutation::Update { object, fields, .. } => {
                    self.require(object, Operation::Update)?;
                    check_fields(object, fields)?;
                }
                Mutation::Upsert { object, fields, .. } => {
                    self.require(object, Operation::Create)?;
                    self.require(object, Operation::Update)?;
                    check_fields(object, fields)?;
                }
                Mutation::Delete { object, .. } | Mutation::Restore { object, .. } => {
                    self.require(object, Operation::Delete)?;
                }
            }
        }
        Ok(())
    }

    /// Makes the caller the owner, and their team the team, of a record
    /// they create whose input names neither.
    pub fn fill_owner(&self, metadata: &Metadata, object: &str, fields: &mut Fields) {
        if let Some(def) = metadata.object(object).filter(|def| def.field("owner_id").is_some()) {
            for (field, value) in [("owner_id", self.principal.user), ("team_id", self.principal.team)] {
                if let Some(id) = value
                    && def.field(field).is_some()
                {
                    fields.entry(field.to_string()).or_insert(Value::Id(id));
                }
            }
        }
    }

    /// Removes the fields the caller cannot read from a field map.
    pub fn redact(&self, object: &str, fields: &mut BTreeMap<String, Value>) {
        if !self.role.fields.is_empty() {
            fields.retain(|name, _| self.can_read_field(object, name));
        }
    }
}

/// Whether records of an object have an owner.
pub fn is_owned(metadata: &Metadata, object: &str) -> bool {
    metadata.object(object).is_some_and(|object| object.field("owner_id").is_some())
}

fn scope_filter(metadata: &Metadata, object: &str, scope: Scope, principal: &Principal) -> Option<Filter> {
    if scope == Scope::All || !is_owned(metadata, object) {
        return None;
    }
    let eq = |field: &str, value: &Option<RecordId>| match value {
        Some(value) => Filter::field(field, Condition::Eq(Value::Id(*value))),
        // Nobody: an impossible condition.
        None => Filter::field("id", Condition::In(Vec::new())),
    };
    let own = eq("owner_id", &principal.user);
    Some(match scope {
        Scope::Own => own,
        Scope::Team => Filter::Or(vec![own, eq("team_id", &principal.team)]),
        Scope::All => unreachable!("handled above"),
    })
}

/// What the writer checks, inside the write transaction, for one caller:
/// the existing record of an update, upsert, delete or restore must lie
/// within the caller's scope for that operation, as stored at that moment.
#[derive(Clone)]
pub struct WriteGuard {
    access: Access,
    metadata: Arc<Metadata>,
}

impl std::fmt::Debug for WriteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGuard").field("role", &self.access.role.name).finish()
    }
}

impl WriteGuard {
    /// Before changing `existing` by `operation`.
    pub fn check_existing(&self, object: &str, operation: Operation, existing: &Record) -> Result<()> {
        if self.access.is_unrestricted() {
            return Ok(());
        }
        self.access.check_record(&self.metadata, object, operation, existing)
    }

    /// Owner defaults for a record an upsert creates (known only once the
    /// writer has looked the key up).
    pub fn fill_owner(&self, object: &str, fields: &mut Fields) {
        self.access.fill_owner(&self.metadata, object, fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> RecordId {
        RecordId::parse(&format!("01JAAAAAAAAAAAAAAAAAAAAA{n:02}")).unwrap()
    }

    fn record(owner: Option<RecordId>, team: Option<RecordId>) -> Record {
        let mut record = Record { id: RecordId::generate(), version: 1, created_at: 0, updated_at: 0, deleted_at: None, fields: BTreeMap::new() };
        if let Some(owner) = owner {
            record.fields.insert("owner_id".into(), Value::Id(owner));
        }
        if let Some(team) = team {
            record.fields.insert("team_id".into(), Value::Id(team));
        }
        record
    }

    fn access(role: &str, user: RecordId, team: RecordId) -> Access {
        Access::new(Role::find_builtin(role).unwrap(), Principal { user: Some(user), team: Some(team) })
    }

    #[test]
    fn scopes_admit_own_team_and_all() {
        let metadata = Metadata::standard();
        let (east, west) = (id(50), id(51));
        let sales = access("sales", id(1), east);
        let mine = record(Some(id(1)), Some(west));
        let teammates = record(Some(id(2)), Some(east));
        let others = record(Some(id(3)), Some(west));
        assert!(sales.check_record(&metadata, "contact", Operation::Update, &mine).is_ok());
        let refused = sales.check_record(&metadata, "contact", Operation::Update, &teammates).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Forbidden);
        assert!(sales.check_record(&metadata, "contact", Operation::Read, &others).is_ok());

        let support = access("support", id(9), east);
        assert!(support.check_record(&metadata, "contact", Operation::Update, &teammates).is_ok());
        assert!(support.check_record(&metadata, "contact", Operation::Update, &others).is_err());
        assert!(support.require("deal", Operation::Read).is_err());
        // Unowned objects: any scope admits their records.
        assert!(sales.check_record(&metadata, "pipeline", Operation::Read, &record(None, None)).is_ok());
    }

    #[test]
    fn an_api_key_without_a_user_owns_nothing() {
        let metadata = Metadata::standard();
        let key = Access::new(Role::find_builtin("sales").unwrap(), Principal::default());
        assert!(key.check_record(&metadata, "contact", Operation::Update, &record(None, None)).is_err());
        let filter = key.read_filter(&metadata, "contact").unwrap();
        assert!(filter.is_none(), "sales reads every contact");
        let scoped = Access::new(
            Role { objects: [("contact".to_string(), ObjectGrant { read: Some(Scope::Own), ..ObjectGrant::NONE })].into(), ..Role::find_builtin("read-only").unwrap() },
            Principal::default(),
        );
        let filter = scoped.read_filter(&metadata, "contact").unwrap().unwrap();
        assert!(!filter.matches(&record(None, None)));
    }

    #[test]
    fn field_rules() {
        let sales = access("sales", id(1), id(50));
        assert!(sales.require_field_write("contact", "owner_id").is_err());
        assert!(sales.require_field_write("contact", "email").is_ok());
        let support = access("support", id(1), id(50));
        assert!(!support.can_read_field("company", "annual_revenue"));
        let admin = access("admin", id(1), id(50));
        assert!(admin.is_unrestricted());
        assert!(!sales.is_unrestricted());
    }

    #[test]
    fn custom_roles_are_checked() {
        let metadata = Metadata::standard();
        let mut role = Role::find_builtin("read-only").unwrap();
        role.builtin = false;
        role.name = "auditor".into();
        assert!(role.validate(&metadata).is_ok());
        role.fields.insert("contact.nope".into(), FieldAccess::Hidden);
        assert_eq!(role.validate(&metadata).unwrap_err().kind, ErrorKind::Validation);
        role.fields.clear();
        role.name = "admin".into();
        assert_eq!(role.validate(&metadata).unwrap_err().kind, ErrorKind::Conflict);
    }
}
