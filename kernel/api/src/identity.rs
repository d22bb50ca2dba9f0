//! Identity in a tenant's schema: who am I, sign-out and two-factor
//! enrolment for everyone; users, teams, roles, API keys and the audit log
//! for admins. Every admin change is written to the tenant's audit chain
//! (objects `user`, `team`, `role`, `api_key`).

use std::collections::BTreeMap;

use async_graphql::Value as Gql;
use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ObjectAccessor, ResolverContext, TypeRef,
    ValueAccessor,
};
use crm_core::access::{FieldAccess, ObjectGrant, Role, Scope};
use crm_core::audit::{ChangeOp, FieldChange};
use crm_core::identity::{Credential, NewUser, Team, User, named_id};
use crm_core::normalize::format_datetime;
use crm_core::plugin_state::Effect;
use crm_core::system::{ApiKeyInfo, TenantInfo};
use crm_core::{AuditEntry, Error, ErrorKind, RecordId, Value, WriteRequest};

use crate::context::RequestCtx;
use crate::resolver::{GqlResult, admin, fail, getter, request, text};
use crate::names::screaming;


/// Operators: admins of the `default` tenant, who manage every tenant.
async fn operator<'a>(ctx: &ResolverContext<'a>) -> GqlResult<&'a RequestCtx> {
    let rc = admin(ctx)?;
    let id = rc.store.id().clone();
    let info = blocking(rc, move |kernel| kernel.system().tenant(&id)).await?;
    if info.is_none_or(|info| info.name != crm_core::kernel::DEFAULT_TENANT) {
        let message = "managing tenants needs an admin of the default tenant";
        return Err(fail(rc, Error::new(ErrorKind::Forbidden, message)));
    }
    Ok(rc)
}


fn enum_value(name: &str) -> Gql {
    Gql::Enum(async_graphql::Name::new(name))
}


/// Runs blocking system-store work off the async threads.
async fn blocking<T: Send + 'static>(
    rc: &RequestCtx,
    work: impl FnOnce(&crm_core::Kernel) -> crm_core::Result<T> + Send + 'static,
) -> GqlResult<T> {
    let kernel = rc.kernel.clone();
    tokio::task::spawn_blocking(move || work(&kernel))
        .await
        .map_err(|e| fail(rc, Error::internal(e.to_string())))?
        .map_err(|e| fail(rc, e))
}

fn change(field: &str, before: Option<String>, after: Option<String>) -> Option<FieldChange> {
    (before != after).then(|| FieldChange {
        field: field.into(),
        before: before.map(Value::Text).unwrap_or(Value::Null),
        after: after.map(Value::Text).unwrap_or(Value::Null),
    })
}

/// Appends an admin action to the tenant's audit chain.
async fn audit(rc: &RequestCtx, object: &str, record_id: RecordId, op: ChangeOp, diff: Vec<Option<FieldChange>>) -> GqlResult<()> {
    let diff: Vec<FieldChange> = diff.into_iter().flatten().collect();
    let mut request = WriteRequest::effects(rc.actor.clone(), vec![Effect::Audit { object: object.into(), record_id, op, diff }]);
    request.request_id = Some(rc.request_id.clone());
    rc.store.write(request).await.map_err(|e| fail(rc, e))?;
    Ok(())
}

fn user_diff(before: Option<&User>, after: &User) -> Vec<Option<FieldChange>> {
    vec![
        change("email", before.map(|u| u.email.clone()), Some(after.email.clone())),
        change("name", before.map(|u| u.name.clone()), Some(after.name.clone())),
        change("role", before.map(|u| u.role.clone()), Some(after.role.clone())),
        change("team_id", before.and_then(|u| u.team.map(|t| t.to_string())), after.team.map(|t| t.to_string())),
        change("status", before.map(|u| u.status.as_str().to_string()), Some(after.status.as_str().to_string())),
        change(
            "two_factor",
            before.map(|u| u.two_factor_enabled().to_string()),
            Some(after.two_factor_enabled().to_string()),
        ),
    ]
}

fn scope_name(scope: Option<Scope>) -> Option<Gql> {
    scope.map(|scope| enum_value(&screaming(scope.as_str())))
}

/// One object grant as shown: the object (none for the default) and the grant.
struct GrantRow(Option<String>, ObjectGrant);
struct FieldRow(String, String, FieldAccess);

struct Me {
    user: Option<User>,
    key: Option<String>,
    role: String,
}

struct NewKey(ApiKeyInfo, String);
struct NewTenant(TenantInfo, String);
struct Invitation(User, Option<String>);
struct Enrolment(String, String);
struct AuditPage {
    entries: Vec<AuditEntry>,
    cursor: u64,
    has_more: bool,
}

pub fn types() -> Vec<async_graphql::dynamic::Type> {
    let scope = Enum::new("RecordScope").items(["OWN", "TEAM", "ALL"]).description("Which records an operation reaches.");
    let access = Enum::new("FieldAccessLevel").items(["HIDDEN", "READ", "WRITE"]);
    let status = Enum::new("UserStatus").items(["INVITED", "ACTIVE", "DISABLED"]);
    let user = Object::new("User")
        .description("A person who signs in to this tenant.")
        .field(getter!(User, "id", TypeRef::named_nn(TypeRef::ID), |u| text(u.id.to_string())))
        .field(getter!(User, "email", TypeRef::named_nn(TypeRef::STRING), |u| text(&u.email)))
        .field(getter!(User, "name", TypeRef::named_nn(TypeRef::STRING), |u| text(&u.name)))
        .field(getter!(User, "role", TypeRef::named_nn(TypeRef::STRING), |u| text(&u.role)))
        .field(getter!(User, "teamId", TypeRef::named(TypeRef::ID), |u| u.team.map(|t| Gql::String(t.to_string()))))
        .field(getter!(User, "status", TypeRef::named_nn("UserStatus"), |u| Some(enum_value(&screaming(u.status.as_str())))))
        .field(getter!(User, "twoFactor", TypeRef::named_nn(TypeRef::BOOLEAN), |u| Some(Gql::Boolean(u.two_factor_enabled()))))
        .field(getter!(User, "createdAt", TypeRef::named_nn("DateTime"), |u| text(format_datetime(u.created_at))));
    let team = Object::new("Team")
        .field(getter!(Team, "id", TypeRef::named_nn(TypeRef::ID), |t| text(t.id.to_string())))
        .field(getter!(Team, "name", TypeRef::named_nn(TypeRef::STRING), |t| text(&t.name)));
    let key = Object::new("ApiKey")
        .description("An API key; the secret is shown only when it is created.")
        .field(getter!(ApiKeyInfo, "prefix", TypeRef::named_nn(TypeRef::STRING), |k| text(&k.prefix)))
        .field(getter!(ApiKeyInfo, "name", TypeRef::named_nn(TypeRef::STRING), |k| text(&k.name)))
        .field(getter!(ApiKeyInfo, "role", TypeRef::named_nn(TypeRef::STRING), |k| text(&k.role)))
        .field(getter!(ApiKeyInfo, "userId", TypeRef::named(TypeRef::ID), |k| k.user.map(|u| Gql::String(u.to_string()))))
        .field(getter!(ApiKeyInfo, "createdAt", TypeRef::named_nn("DateTime"), |k| text(format_datetime(k.created_at))))
        .field(getter!(ApiKeyInfo, "expiresAt", TypeRef::named("DateTime"), |k| k.expires_at.map(|at| Gql::String(format_datetime(at)))))
        .field(getter!(ApiKeyInfo, "revokedAt", TypeRef::named("DateTime"), |k| k.revoked_at.map(|at| Gql::String(format_datetime(at)))))
        .field(getter!(ApiKeyInfo, "lastUsedAt", TypeRef::named("DateTime"), |k| k.last_used_at.map(|at| Gql::String(format_datetime(at)))));
    let new_key = Object::new("NewApiKey")
        .field(getter!(NewKey, "key", TypeRef::named_nn(TypeRef::STRING), |k| text(&k.1)))
        .field(Field::new("apiKey", TypeRef::named_nn("ApiKey"), |ctx| {
            FieldFuture::new(async move { Ok(Some(FieldValue::owned_any(ctx.parent_value.try_downcast_ref::<NewKey>()?.0.clone()))) })
        }));
    let invitation = Object::new("Invitation")
        .field(Field::new("user", TypeRef::named_nn("User"), |ctx| {
            FieldFuture::new(async move { Ok(Some(FieldValue::owned_any(ctx.parent_value.try_downcast_ref::<Invitation>()?.0.clone()))) })
        }))
        .field(getter!(Invitation, "token", TypeRef::named(TypeRef::STRING), |i| i.1.clone().map(Gql::String)))
        .description("The invitation token is shown once; the invited user sets a password with it at POST /auth/accept-invite.");
    let enrolment = Object::new("TwoFactorEnrolment")
        .field(getter!(Enrolment, "secret", TypeRef::named_nn(TypeRef::STRING), |e| text(&e.0)))
        .field(getter!(Enrolment, "uri", TypeRef::named_nn(TypeRef::STRING), |e| text(&e.1)));
    let grant = Object::new("ObjectGrant")
        .field(getter!(GrantRow, "object", TypeRef::named(TypeRef::STRING), |g| g.0.clone().map(Gql::String)))
        .field(getter!(GrantRow, "read", TypeRef::named("RecordScope"), |g| scope_name(g.1.read)))
        .field(getter!(GrantRow, "create", TypeRef::named_nn(TypeRef::BOOLEAN), |g| Some(Gql::Boolean(g.1.create))))
        .field(getter!(GrantRow, "update", TypeRef::named("RecordScope"), |g| scope_name(g.1.update)))
        .field(getter!(GrantRow, "delete", TypeRef::named("RecordScope"), |g| scope_name(g.1.delete)));
    let field_rule = Object::new("FieldRule")
        .field(getter!(FieldRow, "object", TypeRef::named_nn(TypeRef::STRING), |f| text(&f.0)))
        .field(getter!(FieldRow, "field", TypeRef::named_nn(TypeRef::STRING), |f| text(&f.1)))
        .field(getter!(FieldRow, "access", TypeRef::named_nn("FieldAccessLevel"), |f| Some(enum_value(match f.2 {
            FieldAccess::Hidden => "HIDDEN",
            FieldAccess::Read => "READ",
            FieldAccess::Write => "WRITE",
        }))));
    let role = Object::new("Role")
        .field(getter!(Role, "name", TypeRef::named_nn(TypeRef::STRING), |r| text(&r.name)))
        .field(getter!(Role, "description", TypeRef::named_nn(TypeRef::STRING), |r| text(&r.description)))
        .field(getter!(Role, "builtin", TypeRef::named_nn(TypeRef::BOOLEAN), |r| Some(Gql::Boolean(r.builtin))))
        .field(getter!(Role, "admin", TypeRef::named_nn(TypeRef::BOOLEAN), |r| Some(Gql::Boolean(r.admin))))
        .field(getter!(Role, "actions", TypeRef::named_nn(TypeRef::BOOLEAN), |r| Some(Gql::Boolean(r.actions))))
        .field(Field::new("default", TypeRef::named_nn("ObjectGrant"), |ctx| {
            FieldFuture::new(async move {
                let role = ctx.parent_value.try_downcast_ref::<Role>()?;
                Ok(Some(FieldValue::owned_any(GrantRow(None, role.default))))
            })
        }))
        .field(Field::new("objects", TypeRef::named_nn_list_nn("ObjectGrant"), |ctx| {
            FieldFuture::new(async move {
                let role = ctx.parent_value.try_downcast_ref::<Role>()?;
                Ok(Some(FieldValue::list(
                    role.objects.iter().map(|(object, grant)| FieldValue::owned_any(GrantRow(Some(object.clone()), *grant))),
                )))
            })
        }))
        .field(Field::new("fields", TypeRef::named_nn_list_nn("FieldRule"), |ctx| {
            FieldFuture::new(async move {
                let role = ctx.parent_value.try_downcast_ref::<Role>()?;
                Ok(Some(FieldValue::list(role.fields.iter().map(|(key, access)| {
                    let (object, field) = key.split_once('.').unwrap_or((key.as_str(), ""));
                    FieldValue::owned_any(FieldRow(object.into(), field.into(), *access))
                }))))
            })
        }));
    let me = Object::new("Me")
        .description("The caller: a signed-in user, or an API key (with the user it acts for, if any).")
        .field(Field::new("user", TypeRef::named("User"), |ctx| {
            FieldFuture::new(async move {
                Ok(ctx.parent_value.try_downcast_ref::<Me>()?.user.clone().map(FieldValue::owned_any))
            })
        }))
        .field(getter!(Me, "apiKey", TypeRef::named(TypeRef::STRING), |m| m.key.clone().map(Gql::String)))
        .field(getter!(Me, "role", TypeRef::named_nn(TypeRef::STRING), |m| text(&m.role)));
    let tenant = Object::new("Tenant")
        .field(getter!(TenantInfo, "id", TypeRef::named_nn(TypeRef::ID), |t| text(t.id.as_str())))
        .field(getter!(TenantInfo, "name", TypeRef::named_nn(TypeRef::STRING), |t| text(&t.name)))
        .field(getter!(TenantInfo, "createdAt", TypeRef::named_nn("DateTime"), |t| text(format_datetime(t.created_at))))
        .field(getter!(TenantInfo, "suspendedAt", TypeRef::named("DateTime"), |t| t.suspended_at.map(|at| Gql::String(format_datetime(at)))));
    let new_tenant = Object::new("NewTenant")
        .field(Field::new("tenant", TypeRef::named_nn("Tenant"), |ctx| {
            FieldFuture::new(async move { Ok(Some(FieldValue::owned_any(ctx.parent_value.try_downcast_ref::<NewTenant>()?.0.clone()))) })
        }))
        .field(getter!(NewTenant, "adminKey", TypeRef::named_nn(TypeRef::STRING), |t| text(&t.1)))
        .description("The new tenant's admin API key is shown once.");
    let audit_page = Object::new("AuditLogPage")
        .field(Field::new("entries", TypeRef::named_nn_list_nn("AuditEntry"), |ctx| {
            FieldFuture::new(async move {
                let page = ctx.parent_value.try_downcast_ref::<AuditPage>()?;
                Ok(Some(FieldValue::list(page.entries.iter().cloned().map(FieldValue::owned_any))))
            })
        }))
        .field(getter!(AuditPage, "cursor", TypeRef::named_nn(TypeRef::STRING), |p| text(p.cursor.to_string())))
        .field(getter!(AuditPage, "hasMore", TypeRef::named_nn(TypeRef::BOOLEAN), |p| Some(Gql::Boolean(p.has_more))));
    let grant_input = InputObject::new("ObjectGrantInput")
        .description("Omitted operations are not allowed.")
        .field(InputValue::new("object", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new("read", TypeRef::named("RecordScope")))
        .field(InputValue::new("create", TypeRef::named(TypeRef::BOOLEAN)))
        .field(InputValue::new("update", TypeRef::named("RecordScope")))
        .field(InputValue::new("delete", TypeRef::named("RecordScope")));
    let field_input = InputObject::new("FieldRuleInput")
        .field(InputValue::new("object", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("field", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("access", TypeRef::named_nn("FieldAccessLevel")));
    let role_input = InputObject::new("RoleInput")
        .field(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("description", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new("admin", TypeRef::named(TypeRef::BOOLEAN)))
        .field(InputValue::new("actions", TypeRef::named(TypeRef::BOOLEAN)))
        .field(InputValue::new("default", TypeRef::named("ObjectGrantInput")))
        .field(InputValue::new("objects", TypeRef::named_nn_list("ObjectGrantInput")))
        .field(InputValue::new("fields", TypeRef::named_nn_list("FieldRuleInput")));
    let invite_input = InputObject::new("InviteUserInput")
        .field(InputValue::new("email", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("role", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("teamId", TypeRef::named(TypeRef::ID)));
    let update_user_input = InputObject::new("UpdateUserInput")
        .field(InputValue::new("name", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new("role", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new("teamId", TypeRef::named(TypeRef::ID)));
    let key_input = InputObject::new("CreateApiKeyInput")
        .field(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("role", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("expiresAt", TypeRef::named("DateTime")))
        .field(InputValue::new("userId", TypeRef::named(TypeRef::ID)));
    let audit_filter = InputObject::new("AuditLogFilter")
        .field(InputValue::new("object", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new("recordId", TypeRef::named(TypeRef::ID)))
        .field(InputValue::new("actor", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new("operation", TypeRef::named("ChangeOperation")))
        .field(InputValue::new("from", TypeRef::named("DateTime")))
        .field(InputValue::new("to", TypeRef::named("DateTime")));
    vec![
        scope.into(),
        access.into(),
        status.into(),
        user.into(),
        team.into(),
        key.into(),
        new_key.into(),
        invitation.into(),
        enrolment.into(),
        grant.into(),
        field_rule.into(),
        role.into(),
        me.into(),
        tenant.into(),
        new_tenant.into(),
        audit_page.into(),
        grant_input.into(),
        field_input.into(),
        role_input.into(),
        invite_input.into(),
        update_user_input.into(),
        key_input.into(),
        audit_filter.into(),
    ]
}

fn parse_id(rc: &RequestCtx, value: &ValueAccessor<'_>, field: &str) -> GqlResult<RecordId> {
    let text = value.string()?;
    RecordId::parse(text).map_err(|_| fail(rc, Error::invalid_field(field, format!("'{text}' is not an id"))))
}

fn optional_id(rc: &RequestCtx, object: &ObjectAccessor<'_>, field: &str) -> GqlResult<Option<RecordId>> {
    match object.get(field).filter(|value| !value.is_null()) {
        Some(value) => parse_id(rc, &value, field).map(Some),
        None => Ok(None),
    }
}

fn optional_time(rc: &RequestCtx, object: &ObjectAccessor<'_>, field: &str) -> GqlResult<Option<i64>> {
    match object.get(field).filter(|value| !value.is_null()) {
        Some(value) => {
            let text = value.string()?;
            crm_core::normalize::parse_datetime(text)
                .map(Some)
                .ok_or_else(|| fail(rc, Error::invalid_field(field, format!("'{text}' is not a date-time"))))
        }
        None => Ok(None),
    }
}

fn parse_scope(value: Option<ValueAccessor<'_>>) -> GqlResult<Option<Scope>> {
    match value.filter(|value| !value.is_null()) {
        None => Ok(None),
        Some(value) => Ok(Some(match value.enum_name()? {
            "OWN" => Scope::Own,
            "TEAM" => Scope::Team,
            _ => Scope::All,
        })),
    }
}

fn parse_grant(input: &ObjectAccessor<'_>) -> GqlResult<ObjectGrant> {
    Ok(ObjectGrant {
        read: parse_scope(input.get("read"))?,
        create: input.get("create").map(|value| value.boolean()).transpose()?.unwrap_or(false),
        update: parse_scope(input.get("update"))?,
        delete: parse_scope(input.get("delete"))?,
    })
}

fn parse_role(rc: &RequestCtx, input: &ObjectAccessor<'_>) -> GqlResult<Role> {
    let mut role = Role {
        name: input.try_get("name")?.string()?.trim().to_string(),
        description: input.get("description").filter(|v| !v.is_null()).map(|v| v.string().map(str::to_string)).transpose()?.unwrap_or_default(),
        admin: input.get("admin").map(|v| v.boolean()).transpose()?.unwrap_or(false),
        actions: input.get("actions").map(|v| v.boolean()).transpose()?.unwrap_or(false),
        default: match input.get("default").filter(|v| !v.is_null()) {
            Some(value) => parse_grant(&value.object()?)?,
            None => ObjectGrant::NONE,
        },
        objects: BTreeMap::new(),
        fields: BTreeMap::new(),
        builtin: false,
    };
    if let Some(list) = input.get("objects").filter(|v| !v.is_null()) {
        for item in list.list()?.iter() {
            let item = item.object()?;
            let object = item
                .get("object")
                .filter(|v| !v.is_null())
                .ok_or_else(|| fail(rc, Error::invalid_field("objects", "every grant names its object")))?
                .string()?
                .to_string();
            role.objects.insert(object, parse_grant(&item)?);
        }
    }
    if let Some(list) = input.get("fields").filter(|v| !v.is_null()) {
        for item in list.list()?.iter() {
            let item = item.object()?;
            let object = item.try_get("object")?.string()?.to_string();
            let field = crate::names::snake(item.try_get("field")?.string()?);
            let access = match item.try_get("access")?.enum_name()? {
                "HIDDEN" => FieldAccess::Hidden,
                "READ" => FieldAccess::Read,
                _ => FieldAccess::Write,
            };
            role.fields.insert(format!("{object}.{field}"), access);
        }
    }
    Ok(role)
}

pub fn add_queries(query: Object) -> Object {
    query
        .field(
            Field::new("me", TypeRef::named_nn("Me"), |ctx| {
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let tenant = rc.store.id().clone();
                    let (user, key) = match rc.credential.clone() {
                        Credential::Session { user, .. } => (Some(user), None),
                        Credential::ApiKey { prefix } => (rc.access.principal.user, Some(prefix)),
                    };
                    let user = match user {
                        Some(id) => Some(blocking(rc, move |kernel| kernel.system().user(&tenant, id)).await?),
                        None => None,
                    };
                    Ok(Some(FieldValue::owned_any(Me { user, key, role: rc.access.role.name.clone() })))
                })
            })
            .description("Who is calling."),
        )
        .field(
            Field::new("users", TypeRef::named_nn_list_nn("User"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let tenant = rc.store.id().clone();
                    let users = blocking(rc, move |kernel| kernel.system().users(&tenant)).await?;
                    Ok(Some(FieldValue::list(users.into_iter().map(FieldValue::owned_any))))
                })
            })
            .description("The tenant's users (admin)."),
        )
        .field(
            Field::new("teams", TypeRef::named_nn_list_nn("Team"), |ctx| {
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let tenant = rc.store.id().clone();
                    let teams = blocking(rc, move |kernel| kernel.system().teams(&tenant)).await?;
                    Ok(Some(FieldValue::list(teams.into_iter().map(FieldValue::owned_any))))
                })
            })
            .description("The tenant's teams."),
        )
        .field(
            Field::new("roles", TypeRef::named_nn_list_nn("Role"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let tenant = rc.store.id().clone();
                    let roles = blocking(rc, move |kernel| kernel.system().roles(&tenant)).await?;
                    Ok(Some(FieldValue::list(roles.into_iter().map(FieldValue::owned_any))))
                })
            })
            .description("Built-in and custom roles (admin)."),
        )
        .field(
            Field::new("apiKeys", TypeRef::named_nn_list_nn("ApiKey"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let tenant = rc.store.id().clone();
                    let keys = blocking(rc, move |kernel| kernel.system().api_keys(&tenant)).await?;
                    Ok(Some(FieldValue::list(keys.into_iter().map(FieldValue::owned_any))))
                })
            })
            .description("The tenant's API keys, newest first (admin)."),
        )
        .field(
            Field::new("tenants", TypeRef::named_nn_list_nn("Tenant"), |ctx| {
                FieldFuture::new(async move {
                    let rc = operator(&ctx).await?;
                    let tenants = blocking(rc, |kernel| kernel.system().tenants()).await?;
                    Ok(Some(FieldValue::list(tenants.into_iter().map(FieldValue::owned_any))))
                })
            })
            .description("Every tenant of the instance (admins of the default tenant)."),
        )
        .field(
            Field::new("auditLog", TypeRef::named_nn("AuditLogPage"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let page = audit_log(rc, &ctx)?;
                    Ok(Some(FieldValue::owned_any(page)))
                })
            })
            .argument(InputValue::new("filter", TypeRef::named("AuditLogFilter")))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
            .description("The tenant's audit chain in order, filtered (admin). Pass `cursor` as `after` for the next page."),
        )
}

/// Most audit entries examined by one `auditLog` call, so a narrow filter
/// over a long log answers in bounded time (continue from `cursor`).
const AUDIT_SCAN: usize = 50_000;

fn audit_log(rc: &RequestCtx, ctx: &ResolverContext<'_>) -> GqlResult<AuditPage> {
    let first = ctx.args.get("first").map(|v| v.i64()).transpose()?.unwrap_or(100);
    if !(1..=1000).contains(&first) {
        return Err(fail(rc, Error::invalid("'first' must be between 1 and 1000")));
    }
    let mut after = match ctx.args.get("after").filter(|v| !v.is_null()) {
        Some(value) => value.string()?.parse::<u64>().map_err(|_| fail(rc, Error::invalid("'after' is not a cursor")))?,
        None => 0,
    };
    let (mut object, mut record, mut actor, mut operation, mut from, mut to) = (None, None, None, None, None, None);
    if let Some(filter) = ctx.args.get("filter").filter(|v| !v.is_null()) {
        let filter = filter.object()?;
        object = filter.get("object").filter(|v| !v.is_null()).map(|v| v.string().map(str::to_string)).transpose()?;
        record = optional_id(rc, &filter, "recordId")?;
        actor = filter.get("actor").filter(|v| !v.is_null()).map(|v| v.string().map(str::to_string)).transpose()?;
        operation = filter.get("operation").filter(|v| !v.is_null()).map(|v| v.enum_name().map(str::to_string)).transpose()?;
        from = optional_time(rc, &filter, "from")?;
        to = optional_time(rc, &filter, "to")?;
    }
    let reader = rc.store.reader().map_err(|e| fail(rc, e))?;
    let mut entries = Vec::new();
    let mut scanned = 0;
    let mut exhausted = false;
    while entries.len() <= first as usize && scanned < AUDIT_SCAN {
        let batch = reader.audit_entries(after, 1000).map_err(|e| fail(rc, e))?;
        if batch.is_empty() {
            exhausted = true;
            break;
        }
        for entry in batch {
            scanned += 1;
            let keep = object.as_deref().is_none_or(|object| entry.object == object)
                && record.is_none_or(|id| entry.record_id == id)
                && actor.as_deref().is_none_or(|actor| entry.actor.0 == actor)
                && operation.as_deref().is_none_or(|op| entry.op.as_str() == op)
                && from.is_none_or(|from| entry.at >= from)
                && to.is_none_or(|to| entry.at <= to);
            if keep {
                if entries.len() == first as usize {
                    return Ok(AuditPage { entries, cursor: after, has_more: true });
                }
                entries.push(entry.clone());
            }
            after = entry.seq;
        }
    }
    let has_more = !exhausted && scanned >= AUDIT_SCAN;
    Ok(AuditPage { entries, cursor: after, has_more })
}

fn tenant_id(rc: &RequestCtx, ctx: &ResolverContext<'_>) -> GqlResult<crm_core::TenantId> {
    let text = ctx.args.try_get("id")?.string()?;
    crm_core::TenantId::parse(text).map_err(|e| fail(rc, e))
}

fn tenant_diff(before: Option<&TenantInfo>, after: Option<&TenantInfo>) -> Vec<Option<FieldChange>> {
    vec![
        change("name", before.map(|t| t.name.clone()), after.map(|t| t.name.clone())),
        change("suspended_at", before.and_then(|t| t.suspended_at.map(format_datetime)), after.and_then(|t| t.suspended_at.map(format_datetime))),
    ]
}

/// Tenant administration, for operators.
fn tenant_mutations(mutation: Object) -> Object {
    mutation
        .field(
            Field::new("createTenant", TypeRef::named_nn("NewTenant"), |ctx| {
                FieldFuture::new(async move {
                    let rc = operator(&ctx).await?;
                    let name = ctx.args.try_get("name")?.string()?.to_string();
                    let (info, key) = blocking(rc, move |kernel| kernel.create_tenant(&name)).await?;
                    audit(rc, "tenant", named_id("tenant", info.id.as_str()), ChangeOp::Created, tenant_diff(None, Some(&info))).await?;
                    Ok(Some(FieldValue::owned_any(NewTenant(info, key))))
                })
            })
            .argument(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
            .description("Creates a tenant with its own database file; returns its admin key once."),
        )
        .field(tenant_state("suspendTenant", true, "Suspends a tenant: its keys and sessions are refused until it is resumed."))
        .field(tenant_state("resumeTenant", false, "Resumes a suspended tenant."))
        .field(
            Field::new("deleteTenant", TypeRef::named_nn("Tenant"), |ctx| {
                FieldFuture::new(async move {
                    let rc = operator(&ctx).await?;
                    let id = tenant_id(rc, &ctx)?;
                    let confirm = ctx.args.try_get("confirm")?.string()?.to_string();
                    let info = blocking(rc, move |kernel| kernel.delete_tenant(&id, &confirm)).await?;
                    audit(rc, "tenant", named_id("tenant", info.id.as_str()), ChangeOp::Deleted, tenant_diff(Some(&info), None)).await?;
                    Ok(Some(FieldValue::owned_any(info)))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("confirm", TypeRef::named_nn(TypeRef::STRING)))
            .description("Deletes a tenant and its database file; `confirm` repeats the tenant's name."),
        )
}

fn tenant_state(name: &'static str, suspend: bool, description: &'static str) -> Field {
    Field::new(name, TypeRef::named_nn("Tenant"), move |ctx| {
        FieldFuture::new(async move {
            let rc = operator(&ctx).await?;
            let id = tenant_id(rc, &ctx)?;
            let before = {
                let id = id.clone();
                blocking(rc, move |kernel| kernel.system().tenant(&id)).await?
            };
            let info = blocking(rc, move |kernel| kernel.suspend_tenant(&id, suspend)).await?;
            audit(rc, "tenant", named_id("tenant", info.id.as_str()), ChangeOp::Updated, tenant_diff(before.as_ref(), Some(&info))).await?;
            Ok(Some(FieldValue::owned_any(info)))
        })
    })
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    .description(description)
}

pub fn add_mutations(mutation: Object) -> Object {
    tenant_mutations(mutation)
        .field(
            Field::new("logout", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let Credential::Session { hash, .. } = rc.credential.clone() else {
                        return Err(fail(rc, Error::invalid("logout ends a session; API keys are revoked with revokeApiKey")));
                    };
                    blocking(rc, move |kernel| kernel.system().revoke_session(&hash)).await?;
                    Ok(Some(Gql::Boolean(true)))
                })
            })
            .description("Ends the caller's session."),
        )
        .field(
            Field::new("enrollTwoFactor", TypeRef::named_nn("TwoFactorEnrolment"), |ctx| {
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let user = signed_in(rc)?;
                    let tenant = rc.store.id().clone();
                    let (secret, uri) = blocking(rc, move |kernel| kernel.system().begin_totp(&tenant, user)).await?;
                    Ok(Some(FieldValue::owned_any(Enrolment(secret, uri))))
                })
            })
            .description("Starts TOTP enrolment; confirm with a code from the authenticator app."),
        )
        .field(
            Field::new("confirmTwoFactor", TypeRef::named_nn_list_nn(TypeRef::STRING), |ctx| {
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let user = signed_in(rc)?;
                    let code = ctx.args.try_get("code")?.string()?.to_string();
                    let tenant = rc.store.id().clone();
                    let codes = blocking(rc, move |kernel| kernel.system().confirm_totp(&tenant, user, &code)).await?;
                    let after = blocking(rc, {
                        let tenant = rc.store.id().clone();
                        move |kernel| kernel.system().user(&tenant, user)
                    })
                    .await?;
                    audit(rc, "user", user, ChangeOp::Updated, vec![change("two_factor", Some("false".into()), Some(after.two_factor_enabled().to_string()))]).await?;
                    Ok(Some(Gql::List(codes.into_iter().map(Gql::String).collect())))
                })
            })
            .argument(InputValue::new("code", TypeRef::named_nn(TypeRef::STRING)))
            .description("Turns two-factor sign-in on; returns one-time recovery codes (shown once)."),
        )
        .field(
            Field::new("inviteUser", TypeRef::named_nn("Invitation"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let input = ctx.args.try_get("input")?.object()?;
                    let new = NewUser {
                        email: input.try_get("email")?.string()?.to_string(),
                        name: input.try_get("name")?.string()?.to_string(),
                        role: input.try_get("role")?.string()?.to_string(),
                        team: optional_id(rc, &input, "teamId")?,
                        password: None,
                    };
                    let tenant = rc.store.id().clone();
                    let (user, token) = blocking(rc, move |kernel| kernel.system().create_user(&tenant, new)).await?;
                    audit(rc, "user", user.id, ChangeOp::Created, user_diff(None, &user)).await?;
                    Ok(Some(FieldValue::owned_any(Invitation(user, token))))
                })
            })
            .argument(InputValue::new("input", TypeRef::named_nn("InviteUserInput")))
            .description("Invites a user (admin); the token is shown once."),
        )
        .field(user_change("updateUser", "Changes a user's name, role or team (admin); their sessions end.", true))
        .field(user_change("disableUser", "Disables a user (admin): sessions and keys stop working.", false))
        .field(user_change("enableUser", "Enables a disabled user (admin).", false))
        .field(user_change("resetUserTwoFactor", "Turns a user's two-factor sign-in off (admin), e.g. after a lost device.", false))
        .field(user_change("revokeUserSessions", "Ends every session of a user (admin).", false))
        .field(
            Field::new("createTeam", TypeRef::named_nn("Team"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let name = ctx.args.try_get("name")?.string()?.to_string();
                    let tenant = rc.store.id().clone();
                    let team = blocking(rc, move |kernel| kernel.system().create_team(&tenant, &name)).await?;
                    audit(rc, "team", team.id, ChangeOp::Created, vec![change("name", None, Some(team.name.clone()))]).await?;
                    Ok(Some(FieldValue::owned_any(team)))
                })
            })
            .argument(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING))),
        )
        .field(
            Field::new("defineRole", TypeRef::named_nn("Role"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let input = ctx.args.try_get("input")?.object()?;
                    let role = parse_role(rc, &input)?;
                    role.validate(&rc.store.metadata()).map_err(|e| fail(rc, e))?;
                    let tenant = rc.store.id().clone();
                    let before = {
                        let tenant = tenant.clone();
                        let name = role.name.clone();
                        blocking(rc, move |kernel| Ok(kernel.system().role(&tenant, &name).ok())).await?
                    };
                    let stored = role.clone();
                    blocking(rc, move |kernel| kernel.system().put_role(&tenant, &stored)).await?;
                    let json = |role: &Role| serde_json::to_string(role).unwrap_or_default();
                    let op = if before.is_some() { ChangeOp::Updated } else { ChangeOp::Created };
                    audit(rc, "role", named_id("role", &role.name), op, vec![
                        change("name", before.as_ref().map(|r| r.name.clone()), Some(role.name.clone())),
                        change("definition", before.as_ref().map(json), Some(json(&role))),
                    ])
                    .await?;
                    Ok(Some(FieldValue::owned_any(role)))
                })
            })
            .argument(InputValue::new("input", TypeRef::named_nn("RoleInput")))
            .description("Creates or replaces a custom role (admin). Holders see the change on their next request."),
        )
        .field(
            Field::new("deleteRole", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let name = ctx.args.try_get("name")?.string()?.to_string();
                    let tenant = rc.store.id().clone();
                    let deleted = name.clone();
                    blocking(rc, move |kernel| kernel.system().delete_role(&tenant, &deleted)).await?;
                    audit(rc, "role", named_id("role", &name), ChangeOp::Deleted, vec![]).await?;
                    Ok(Some(Gql::Boolean(true)))
                })
            })
            .argument(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
            .description("Deletes a custom role nobody holds (admin)."),
        )
        .field(
            Field::new("createApiKey", TypeRef::named_nn("NewApiKey"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let input = ctx.args.try_get("input")?.object()?;
                    let name = input.try_get("name")?.string()?.to_string();
                    let role = input.try_get("role")?.string()?.to_string();
                    let expires = optional_time(rc, &input, "expiresAt")?;
                    let user = optional_id(rc, &input, "userId")?;
                    let tenant = rc.store.id().clone();
                    let (info, key) =
                        blocking(rc, move |kernel| kernel.system().create_api_key_with(&tenant, &name, &role, expires, user)).await?;
                    audit(rc, "api_key", named_id("api_key", &info.prefix), ChangeOp::Created, vec![
                        change("prefix", None, Some(info.prefix.clone())),
                        change("name", None, Some(info.name.clone())),
                        change("role", None, Some(info.role.clone())),
                        change("user_id", None, info.user.map(|u| u.to_string())),
                        change("expires_at", None, info.expires_at.map(format_datetime)),
                    ])
                    .await?;
                    Ok(Some(FieldValue::owned_any(NewKey(info, key))))
                })
            })
            .argument(InputValue::new("input", TypeRef::named_nn("CreateApiKeyInput")))
            .description("Creates an API key (admin); the key is shown once."),
        )
        .field(
            Field::new("revokeApiKey", TypeRef::named_nn("ApiKey"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let prefix = ctx.args.try_get("prefix")?.string()?.to_string();
                    let tenant = rc.store.id().clone();
                    let info = blocking(rc, move |kernel| kernel.system().revoke_api_key(&tenant, &prefix)).await?;
                    audit(rc, "api_key", named_id("api_key", &info.prefix), ChangeOp::Deleted, vec![change(
                        "revoked_at",
                        None,
                        info.revoked_at.map(format_datetime),
                    )])
                    .await?;
                    Ok(Some(FieldValue::owned_any(info)))
                })
            })
            .argument(InputValue::new("prefix", TypeRef::named_nn(TypeRef::STRING)))
            .description("Revokes an API key by its prefix (admin)."),
        )
}

fn signed_in(rc: &RequestCtx) -> GqlResult<RecordId> {
    match &rc.credential {
        Credential::Session { user, .. } => Ok(*user),
        Credential::ApiKey { .. } => Err(fail(rc, Error::new(ErrorKind::Forbidden, "this needs a signed-in user, not an API key"))),
    }
}

/// The admin mutations that change one user.
fn user_change(name: &'static str, description: &'static str, with_input: bool) -> Field {
    let mut field = Field::new(name, TypeRef::named_nn("User"), move |ctx| {
        FieldFuture::new(async move {
            let rc = admin(&ctx)?;
            let id = parse_id(rc, &ctx.args.try_get("id")?, "id")?;
            let tenant = rc.store.id().clone();
            let before = {
                let tenant = tenant.clone();
                blocking(rc, move |kernel| kernel.system().user(&tenant, id)).await?
            };
            let (new_name, new_role, new_team) = if with_input {
                let input = ctx.args.try_get("input")?.object()?;
                let text = |field: &str| -> GqlResult<Option<String>> {
                    input.get(field).filter(|v| !v.is_null()).map(|v| v.string().map(str::to_string)).transpose().map_err(Into::into)
                };
                (text("name")?, text("role")?, input.get("teamId").map(|v| if v.is_null() { Ok(None) } else { parse_id(rc, &v, "teamId").map(Some) }).transpose()?)
            } else {
                (None, None, None)
            };
            let user = blocking(rc, move |kernel| {
                let system = kernel.system();
                match name {
                    "updateUser" => system.update_user(&tenant, id, |user| {
                        if let Some(name) = new_name {
                            if name.trim().is_empty() {
                                return Err(Error::invalid_field("name", "cannot be empty"));
                            }
                            user.name = name.trim().to_string();
                        }
                        if let Some(role) = new_role {
                            user.role = role;
                        }
                        if let Some(team) = new_team {
                            user.team = team;
                        }
                        Ok(())
                    }),
                    "disableUser" => system.disable_user(&tenant, id),
                    "enableUser" => system.enable_user(&tenant, id),
                    "resetUserTwoFactor" => system.reset_two_factor(&tenant, id),
                    _ => {
                        system.revoke_user_sessions(&tenant, id)?;
                        system.user(&tenant, id)
                    }
                }
            })
            .await?;
            let mut diff = user_diff(Some(&before), &user);
            if name == "revokeUserSessions" {
                diff.push(change("sessions", None, Some("revoked".into())));
            }
            audit(rc, "user", user.id, ChangeOp::Updated, diff).await?;
            Ok(Some(FieldValue::owned_any(user)))
        })
    })
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    .description(description);
    if with_input {
        field = field.argument(InputValue::new("input", TypeRef::named_nn("UpdateUserInput")));
    }
    field
}
