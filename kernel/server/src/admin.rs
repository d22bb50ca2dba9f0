//! `crm user`, `crm key`, `crm role` and the tenant lifecycle commands: the
//! command-line side of the admin API, for operators on the server's
//! machine while no server holds the data directory. Every change is
//! written to the tenant's audit chain with the actor `cli`.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use crm_core::audit::{ChangeOp, FieldChange};
use crm_core::identity::{NewUser, named_id};
use crm_core::normalize::{format_datetime, parse_datetime};
use crm_core::plugin_state::Effect;
use crm_core::{Actor, Kernel, RecordId, StoreOptions, TenantId, Value, WriteRequest};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user. With --password the account is active at once; without,
    /// an invitation token is printed (accept it at POST /auth/accept-invite).
    Add {
        #[arg(long)]
        tenant: String,
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "sales")]
        role: String,
        /// Read the password from this environment variable.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// List a tenant's users.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Disable a user: their sessions and keys stop working.
    Disable {
        #[arg(long)]
        tenant: String,
        email: String,
    },
    /// Turn a user's two-factor sign-in off (lost device).
    ResetTwoFactor {
        #[arg(long)]
        tenant: String,
        email: String,
    },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create an API key scoped to a role; printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// RFC 3339 time after which the key stops working.
        #[arg(long)]
        expires: Option<String>,
        /// The email of the user the key acts for.
        #[arg(long)]
        user: Option<String>,
    },
    /// List a tenant's keys with their last use.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by its prefix.
    Revoke {
        #[arg(long)]
        tenant: String,
        prefix: String,
    },
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// List built-in and custom roles.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Create or replace a custom role from a JSON file: {"name", "description",
    /// "admin", "actions", "default": {"read": "all", "create": true, "update":
    /// "own", "delete": null}, "objects": {"deal": {…}}, "fields":
    /// {"contact.email": "hidden"}}.
    Define {
        #[arg(long)]
        tenant: String,
        file: std::path::PathBuf,
    },
    /// Delete a custom role nobody holds.
    Delete {
        #[arg(long)]
        tenant: String,
        name: String,
    },
}

fn open(data_dir: &Path) -> Result<Kernel> {
    Kernel::open(data_dir, StoreOptions::default()).map_err(|error| anyhow!(error.message)).with_context(|| {
        format!("opening {} (a running server holds it: use the GraphQL admin API instead)", data_dir.display())
    })
}

fn core<T>(result: crm_core::Result<T>) -> Result<T> {
    result.map_err(|error| anyhow!("{} ({})", error.message, error.code()))
}

fn text_change(field: &str, before: Option<String>, after: Option<String>) -> Option<FieldChange> {
    (before != after).then(|| FieldChange {
        field: field.into(),
        before: before.map(Value::Text).unwrap_or(Value::Null),
        after: after.map(Value::Text).unwrap_or(Value::Null),
    })
}

/// Appends an admin change to a tenant's audit chain.
async fn audit(kernel: &Kernel, tenant: &TenantId, object: &str, record_id: RecordId, op: ChangeOp, diff: Vec<Option<FieldChange>>) -> Result<()> {
    let store = core(kernel.tenant(tenant))?;
    let diff = diff.into_iter().flatten().collect();
    core(store.write(WriteRequest::effects(Actor::cli(), vec![Effect::Audit { object: object.into(), record_id, op, diff }])).await)?;
    Ok(())
}

fn user_by_email(kernel: &Kernel, tenant: &TenantId, email: &str) -> Result<crm_core::identity::User> {
    core(kernel.system().user_by_email(tenant, email))?.ok_or_else(|| anyhow!("no user {email}"))
}

pub async fn user(data_dir: &Path, command: UserCommand) -> Result<()> {
    let kernel = open(data_dir)?;
    match command {
        UserCommand::Add { tenant, email, name, role, password_env } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            let password = match password_env {
                Some(variable) => Some(std::env::var(&variable).with_context(|| format!("reading the password from ${variable}"))?),
                None => None,
            };
            let new = NewUser { email, name, role, team: None, password };
            let (user, token) = core(kernel.system().create_user(&tenant, new))?;
            audit(&kernel, &tenant, "user", user.id, ChangeOp::Created, vec![
                text_change("email", None, Some(user.email.clone())),
                text_change("role", None, Some(user.role.clone())),
                text_change("status", None, Some(user.status.as_str().into())),
            ])
            .await?;
            println!("added user {} (id {}, role {}, {})", user.email, user.id, user.role, user.status.as_str());
            if let Some(token) = token {
                println!("invitation token (shown once): {token}");
            }
        }
        UserCommand::List { tenant } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            println!("{:<28} {:<32} {:<12} {:<9} 2FA", "ID", "EMAIL", "ROLE", "STATUS");
            for user in core(kernel.system().users(&tenant))? {
                let two_factor = if user.two_factor_enabled() { "on" } else { "off" };
                println!("{:<28} {:<32} {:<12} {:<9} {two_factor}", user.id, user.email, user.role, user.status.as_str());
            }
        }
        UserCommand::Disable { tenant, email } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            let before = user_by_email(&kernel, &tenant, &email)?;
            let user = core(kernel.system().disable_user(&tenant, before.id))?;
            audit(&kernel, &tenant, "user", user.id, ChangeOp::Updated, vec![text_change(
                "status",
                Some(before.status.as_str().into()),
                Some(user.status.as_str().into()),
            )])
            .await?;
            println!("disabled {}", user.email);
        }
        UserCommand::ResetTwoFactor { tenant, email } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            let before = user_by_email(&kernel, &tenant, &email)?;
            let user = core(kernel.system().reset_two_factor(&tenant, before.id))?;
            audit(&kernel, &tenant, "user", user.id, ChangeOp::Updated, vec![text_change(
                "two_factor",
                Some(before.two_factor_enabled().to_string()),
                Some(user.two_factor_enabled().to_string()),
            )])
            .await?;
            println!("two-factor sign-in is off for {}", user.email);
        }
    }
    Ok(())
}

pub async fn key(data_dir: &Path, command: KeyCommand) -> Result<()> {
    let kernel = open(data_dir)?;
    match command {
        KeyCommand::Create { tenant, name, role, expires, user } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            let expires = match expires {
                Some(text) => Some(parse_datetime(&text).ok_or_else(|| anyhow!("--expires '{text}' is not an RFC 3339 time"))?),
                None => None,
            };
            let user = match user {
                Some(email) => Some(user_by_email(&kernel, &tenant, &email)?.id),
                None => None,
            };
            let (info, key) = core(kernel.system().create_api_key_with(&tenant, &name, &role, expires, user))?;
            audit(&kernel, &tenant, "api_key", named_id("api_key", &info.prefix), ChangeOp::Created, vec![
                text_change("prefix", None, Some(info.prefix.clone())),
                text_change("role", None, Some(info.role.clone())),
                text_change("expires_at", None, info.expires_at.map(format_datetime)),
            ])
            .await?;
            println!("API key '{}' (prefix {}, role {})", info.name, info.prefix, info.role);
            println!("key (shown once): {key}");
        }
        KeyCommand::List { tenant } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            println!("{:<14} {:<20} {:<12} {:<26} STATE", "PREFIX", "NAME", "ROLE", "LAST USED");
            for key in core(kernel.system().api_keys(&tenant))? {
                let state = if key.revoked_at.is_some() {
                    "revoked".to_string()
                } else if let Some(at) = key.expires_at {
                    format!("expires {}", format_datetime(at))
                } else {
                    "active".to_string()
                };
                let used = key.last_used_at.map(format_datetime).unwrap_or_else(|| "never".into());
                println!("{:<14} {:<20} {:<12} {:<26} {state}", key.prefix, key.name, key.role, used);
            }
        }
        KeyCommand::Revoke { tenant, prefix } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            let info = core(kernel.system().revoke_api_key(&tenant, &prefix))?;
            audit(&kernel, &tenant, "api_key", named_id("api_key", &info.prefix), ChangeOp::Deleted, vec![text_change(
                "revoked_at",
                None,
                info.revoked_at.map(format_datetime),
            )])
            .await?;
            println!("revoked {}", info.prefix);
        }
    }
    Ok(())
}

pub async fn role(data_dir: &Path, command: RoleCommand) -> Result<()> {
    let kernel = open(data_dir)?;
    match command {
        RoleCommand::List { tenant } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            for role in core(kernel.system().roles(&tenant))? {
                let kind = if role.builtin { "built-in" } else { "custom" };
                println!("{:<12} {kind:<9} {}", role.name, role.description);
            }
        }
        RoleCommand::Define { tenant, file } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let role: crm_core::Role = serde_json::from_str(&text).with_context(|| format!("{} is not a role definition", file.display()))?;
            let metadata = core(kernel.metadata(&tenant))?;
            core(role.validate(&metadata))?;
            let before = kernel.system().role(&tenant, &role.name).ok();
            core(kernel.system().put_role(&tenant, &role))?;
            let json = |role: &crm_core::Role| serde_json::to_string(role).unwrap_or_default();
            let op = if before.is_some() { ChangeOp::Updated } else { ChangeOp::Created };
            audit(&kernel, &tenant, "role", named_id("role", &role.name), op, vec![text_change(
                "definition",
                before.as_ref().map(json),
                Some(json(&role)),
            )])
            .await?;
            println!("defined role '{}'", role.name);
        }
        RoleCommand::Delete { tenant, name } => {
            let tenant = core(kernel.system().find_tenant(&tenant))?.id;
            core(kernel.system().delete_role(&tenant, &name))?;
            audit(&kernel, &tenant, "role", named_id("role", &name), ChangeOp::Deleted, vec![]).await?;
            println!("deleted role '{name}'");
        }
    }
    Ok(())
}

/// `crm tenant suspend|resume|delete`.
pub async fn tenant_state(data_dir: &Path, name: &str, change: TenantChange<'_>) -> Result<()> {
    let kernel = open(data_dir)?;
    let info = core(kernel.system().find_tenant(name))?;
    let operators = core(kernel.system().find_tenant(crm_core::kernel::DEFAULT_TENANT)).ok();
    let after = match change {
        TenantChange::Suspend(suspend) => Some(core(kernel.suspend_tenant(&info.id, suspend))?),
        TenantChange::Delete { confirm } => {
            core(kernel.delete_tenant(&info.id, confirm))?;
            None
        }
    };
    // The operators' tenant keeps the record of tenant changes.
    if let Some(operators) = operators {
        let op = if after.is_none() { ChangeOp::Deleted } else { ChangeOp::Updated };
        audit(&kernel, &operators.id, "tenant", named_id("tenant", info.id.as_str()), op, vec![
            text_change("name", Some(info.name.clone()), after.as_ref().map(|t| t.name.clone())),
            text_change("suspended_at", info.suspended_at.map(format_datetime), after.as_ref().and_then(|t| t.suspended_at.map(format_datetime))),
        ])
        .await?;
    }
    match after {
        Some(after) if after.suspended_at.is_some() => println!("suspended tenant '{}'", after.name),
        Some(after) => println!("resumed tenant '{}'", after.name),
        None => println!("deleted tenant '{}' and its file", info.name),
    }
    Ok(())
}

pub enum TenantChange<'a> {
    Suspend(bool),
    Delete { confirm: &'a str },
}
