//! The admin part of a tenant's schema: plugins (install, enable, disable,
//! roll back, usage, logs, dead letters), the development clock, and the
//! actions of enabled plugins as typed mutations.

use std::sync::Arc;

use async_graphql::Value as Gql;
use async_graphql::dynamic::{Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, TypeRef};
use base64::Engine;
use crm_core::metadata::{FieldDef, FieldType, Metadata, PluginAction};
use crm_core::normalize::format_datetime;
use crm_core::plugin::{Capabilities, EnableOptions, Enablement, InstalledPlugin, Limits, PluginStatus, PluginUsage};
use crm_core::plugin_state::DeadLetter;
use crm_core::{Error, ErrorKind};

use crate::context::RequestCtx;
use crate::convert::{input, output};
use crate::resolver::{GqlResult, admin, fail, getter, request, text};
use crate::names::{camel, pascal, screaming, snake};


/// A tenant's plugin as the admin sees it.
struct TenantPlugin {
    enablement: Enablement,
    usage: PluginUsage,
    logs: Vec<crm_core::plugin::PluginLogLine>,
}


fn json(text: &str) -> Gql {
    serde_json::from_str::<serde_json::Value>(text).ok().and_then(|value| Gql::from_json(value).ok()).unwrap_or(Gql::Null)
}

fn json_arg(ctx: &ResolverContext<'_>, name: &str) -> GqlResult<Option<String>> {
    match ctx.args.get(name).filter(|value| !value.is_null()) {
        Some(value) => Ok(Some(value.as_value().clone().into_json()?.to_string())),
        None => Ok(None),
    }
}


pub fn types() -> Vec<async_graphql::dynamic::Type> {
    let plugin = Object::new("Plugin")
        .description("An installed plugin version.")
        .field(getter!(InstalledPlugin, "id", TypeRef::named_nn(TypeRef::STRING), |p| text(&p.id)))
        .field(getter!(InstalledPlugin, "version", TypeRef::named_nn(TypeRef::STRING), |p| text(&p.version)))
        .field(getter!(InstalledPlugin, "sha256", TypeRef::named_nn(TypeRef::STRING), |p| text(&p.hash)))
        .field(getter!(InstalledPlugin, "size", TypeRef::named_nn(TypeRef::INT), |p| Some(Gql::from(p.size))))
        .field(getter!(InstalledPlugin, "description", TypeRef::named_nn(TypeRef::STRING), |p| text(&p.manifest.description)))
        .field(getter!(InstalledPlugin, "api", TypeRef::named_nn(TypeRef::STRING), |p| text(&p.manifest.api)))
        .field(getter!(InstalledPlugin, "installedAt", TypeRef::named_nn("DateTime"), |p| text(format_datetime(p.installed_at))))
        .field(getter!(InstalledPlugin, "objects", TypeRef::named_nn_list_nn(TypeRef::STRING), |p| Some(Gql::List(
            p.manifest.objects.iter().map(|o| Gql::String(o.name.clone())).collect()
        ))))
        .field(getter!(InstalledPlugin, "actions", TypeRef::named_nn_list_nn(TypeRef::STRING), |p| Some(Gql::List(
            p.manifest.actions.iter().map(|a| Gql::String(a.name.clone())).collect()
        ))))
        .field(getter!(InstalledPlugin, "requests", TypeRef::named_nn("JSON"), |p| Gql::from_json(
            serde_json::to_value(&p.manifest.capabilities).unwrap_or_default()
        )
        .ok()))
        .field(getter!(InstalledPlugin, "configSchema", TypeRef::named_nn("JSON"), |p| Some(json(&p.manifest.config_schema))));
    let status = Enum::new("PluginStatus").items(["ENABLED", "DISABLED", "SUSPENDED"]);
    let line = Object::new("PluginLogLine")
        .field(getter!(crm_core::plugin::PluginLogLine, "at", TypeRef::named_nn("DateTime"), |l| text(format_datetime(l.at))))
        .field(getter!(crm_core::plugin::PluginLogLine, "level", TypeRef::named_nn(TypeRef::STRING), |l| text(&l.level)))
        .field(getter!(crm_core::plugin::PluginLogLine, "message", TypeRef::named_nn(TypeRef::STRING), |l| text(&l.message)));
    let failure = Object::new("PluginFailure")
        .field(getter!((i64, String), "at", TypeRef::named_nn("DateTime"), |f| text(format_datetime(f.0))))
        .field(getter!((i64, String), "message", TypeRef::named_nn(TypeRef::STRING), |f| text(&f.1)));
    let tenant_plugin = Object::new("TenantPlugin")
        .description("A plugin enabled (or once enabled) for this tenant, with its usage since the server started.")
        .field(getter!(TenantPlugin, "id", TypeRef::named_nn(TypeRef::STRING), |p| text(&p.enablement.plugin)))
        .field(getter!(TenantPlugin, "version", TypeRef::named_nn(TypeRef::STRING), |p| text(&p.enablement.version)))
        .field(getter!(TenantPlugin, "status", TypeRef::named_nn("PluginStatus"), |p| Some(Gql::Enum(async_graphql::Name::new(
            match p.enablement.status {
                PluginStatus::Enabled => "ENABLED",
                PluginStatus::Disabled => "DISABLED",
                PluginStatus::Suspended { .. } => "SUSPENDED",
            }
        )))))
        .field(getter!(TenantPlugin, "reason", TypeRef::named(TypeRef::STRING), |p| match &p.enablement.status {
            PluginStatus::Suspended { reason } => text(reason),
            _ => None,
        }))
        .field(getter!(TenantPlugin, "config", TypeRef::named_nn("JSON"), |p| Some(json(&p.enablement.config))))
        .field(getter!(TenantPlugin, "grants", TypeRef::named_nn("JSON"), |p| Gql::from_json(
            serde_json::to_value(&p.enablement.grants).unwrap_or_default()
        )
        .ok()))
        .field(getter!(TenantPlugin, "changedAt", TypeRef::named_nn("DateTime"), |p| text(format_datetime(p.enablement.changed_at))))
        .field(getter!(TenantPlugin, "previousVersions", TypeRef::named_nn_list_nn(TypeRef::STRING), |p| Some(Gql::List(
            p.enablement.previous.iter().map(|v| Gql::String(v.clone())).collect()
        ))))
        .field(getter!(TenantPlugin, "calls", TypeRef::named_nn(TypeRef::INT), |p| Some(Gql::from(p.usage.calls))))
        .field(getter!(TenantPlugin, "errors", TypeRef::named_nn(TypeRef::INT), |p| Some(Gql::from(p.usage.errors))))
        .field(getter!(TenantPlugin, "fuel", TypeRef::named_nn(TypeRef::FLOAT), |p| Some(Gql::from(p.usage.fuel as f64))))
        .field(
            Field::new("pendingEvents", TypeRef::named_nn(TypeRef::INT), |ctx| {
                FieldFuture::new(async move {
                    let rc = request(&ctx)?;
                    let plugin = ctx.parent_value.try_downcast_ref::<TenantPlugin>()?;
                    let enablement = &plugin.enablement;
                    let installed = rc.kernel.system().plugin(&enablement.plugin, &enablement.version).map_err(|e| fail(rc, e))?;
                    let delivers = installed.is_some_and(|installed| {
                        installed.manifest.hooks.iter().any(|hook| hook.kind == crm_core::plugin::HookKind::AfterCommit)
                    });
                    let reader = rc.store.reader().map_err(|e| fail(rc, e))?;
                    let pending = match reader.cursor(&enablement.plugin).map_err(|e| fail(rc, e))? {
                        Some(cursor) if delivers => reader.last_change().map_err(|e| fail(rc, e))?.saturating_sub(cursor),
                        _ => 0,
                    };
                    Ok(Some(Gql::from(pending)))
                })
            })
            .description("Committed changes its after-commit hooks have still to receive (0 for a plugin without them)."),
        )
        .field(Field::new("recentFailures", TypeRef::named_nn_list_nn("PluginFailure"), |ctx| {
            FieldFuture::new(async move {
                let plugin = ctx.parent_value.try_downcast_ref::<TenantPlugin>()?;
                Ok(Some(FieldValue::list(plugin.usage.recent_failures.iter().cloned().map(FieldValue::owned_any))))
            })
        }))
        .field(
            Field::new("logs", TypeRef::named_nn_list_nn("PluginLogLine"), |ctx| {
                FieldFuture::new(async move {
                    let plugin = ctx.parent_value.try_downcast_ref::<TenantPlugin>()?;
                    let last = ctx.args.get("last").and_then(|v| v.i64().ok()).unwrap_or(100).clamp(1, 500) as usize;
                    let skip = plugin.logs.len().saturating_sub(last);
                    Ok(Some(FieldValue::list(plugin.logs[skip..].iter().cloned().map(FieldValue::owned_any))))
                })
            })
            .argument(InputValue::new("last", TypeRef::named(TypeRef::INT)))
            .description("The plugin's most recent log lines (kept in memory, up to 500)."),
        );
    let dead = Object::new("DeadLetter")
        .description("A delivery that failed every retry; replay it once the plugin is fixed.")
        .field(getter!(DeadLetter, "seq", TypeRef::named_nn(TypeRef::INT), |d| Some(Gql::from(d.seq))))
        .field(getter!(DeadLetter, "plugin", TypeRef::named_nn(TypeRef::STRING), |d| text(&d.plugin)))
        .field(getter!(DeadLetter, "hook", TypeRef::named_nn(TypeRef::STRING), |d| text(&d.hook)))
        .field(getter!(DeadLetter, "events", TypeRef::named_nn_list_nn(TypeRef::INT), |d| Some(Gql::List(
            d.events.iter().map(|e| Gql::from(*e)).collect()
        ))))
        .field(getter!(DeadLetter, "timer", TypeRef::named(TypeRef::STRING), |d| d.timer.clone().map(Gql::String)))
        .field(getter!(DeadLetter, "error", TypeRef::named_nn(TypeRef::STRING), |d| text(&d.error)))
        .field(getter!(DeadLetter, "attempts", TypeRef::named_nn(TypeRef::INT), |d| Some(Gql::from(d.attempts))))
        .field(getter!(DeadLetter, "at", TypeRef::named_nn("DateTime"), |d| text(format_datetime(d.at))));
    vec![plugin.into(), status.into(), line.into(), failure.into(), tenant_plugin.into(), dead.into()]
}

fn tenant_plugins(rc: &RequestCtx) -> Result<Vec<TenantPlugin>, Error> {
    let runtime = rc.kernel.runtime().ok();
    let tenant = rc.store.id();
    Ok(rc
        .kernel
        .system()
        .enablements(tenant)?
        .into_iter()
        .map(|enablement| TenantPlugin {
            usage: runtime.map(|r| r.usage(tenant, &enablement.plugin)).unwrap_or_default(),
            logs: runtime.map(|r| r.logs(tenant, &enablement.plugin)).unwrap_or_default(),
            enablement,
        })
        .collect())
}

fn tenant_plugin(rc: &RequestCtx, id: &str) -> GqlResult<Option<FieldValue<'static>>> {
    let found = tenant_plugins(rc).map_err(|e| fail(rc, e))?.into_iter().find(|p| p.enablement.plugin == id);
    let found = found.ok_or_else(|| fail(rc, Error::not_found(format!("plugin {id} is not enabled for this tenant"))))?;
    Ok(Some(FieldValue::owned_any(found)))
}

pub fn add_queries(query: Object) -> Object {
    query
        .field(
            Field::new("plugins", TypeRef::named_nn_list_nn("Plugin"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let plugins = rc.kernel.system().plugins().map_err(|e| fail(rc, e))?;
                    Ok(Some(FieldValue::list(plugins.into_iter().map(FieldValue::owned_any))))
                })
            })
            .description("Every installed plugin version (admin)."),
        )
        .field(
            Field::new("tenantPlugins", TypeRef::named_nn_list_nn("TenantPlugin"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let plugins = tenant_plugins(rc).map_err(|e| fail(rc, e))?;
                    Ok(Some(FieldValue::list(plugins.into_iter().map(FieldValue::owned_any))))
                })
            })
            .description("This tenant's plugins with status, usage, recent failures and logs (admin)."),
        )
        .field(
            Field::new("deadLetters", TypeRef::named_nn_list_nn("DeadLetter"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let letters = rc.store.reader().and_then(|reader| reader.dead_letters(1000)).map_err(|e| fail(rc, e))?;
                    Ok(Some(FieldValue::list(letters.into_iter().map(FieldValue::owned_any))))
                })
            })
            .description("Deliveries that exhausted their retries (admin)."),
        )
        .field(
            Field::new("now", TypeRef::named_nn("DateTime"), |_ctx| {
                FieldFuture::new(async move { Ok(text(format_datetime(crm_core::clock::now_ms()))) })
            })
            .description("The kernel's clock."),
        )
}

pub fn add_mutations(mutation: Object, metadata: &Arc<Metadata>) -> Object {
    let mut mutation = mutation
        .field(
            Field::new("installPlugin", TypeRef::named_nn("Plugin"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let encoded = ctx.args.try_get("wasm")?.string()?;
                    let wasm = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map_err(|_| fail(rc, Error::invalid_field("wasm", "is not base64")))?;
                    let kernel = rc.kernel.clone();
                    let (plugin, _) = tokio::task::spawn_blocking(move || kernel.install_plugin(&wasm))
                        .await
                        .map_err(|e| fail(rc, Error::internal(e.to_string())))?
                        .map_err(|e| fail(rc, e))?;
                    Ok(Some(FieldValue::owned_any(plugin)))
                })
            })
            .argument(InputValue::new("wasm", TypeRef::named_nn(TypeRef::STRING)).description("The component, base64"))
            .description("Installs a plugin component (admin). Installing the same bytes again is a no-op."),
        )
        .field(
            Field::new("enablePlugin", TypeRef::named_nn("TenantPlugin"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?.to_string();
                    let version = ctx.args.get("version").filter(|v| !v.is_null()).map(|v| v.string().map(String::from)).transpose()?;
                    let config = json_arg(&ctx, "config")?;
                    let grants: Option<Capabilities> = json_arg(&ctx, "grants")?
                        .map(|text| serde_json::from_str(&text))
                        .transpose()
                        .map_err(|e| fail(rc, Error::invalid_field("grants", e.to_string())))?;
                    let limits: Limits = json_arg(&ctx, "limits")?
                        .map(|text| serde_json::from_str(&text))
                        .transpose()
                        .map_err(|e| fail(rc, Error::invalid_field("limits", e.to_string())))?
                        .unwrap_or_default();
                    rc.kernel
                        .enable_plugin(rc.store.id(), &id, EnableOptions { version, config, grants, limits })
                        .await
                        .map_err(|e| fail(rc, e))?;
                    tenant_plugin(rc, &id)
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::STRING)))
            .argument(InputValue::new("version", TypeRef::named(TypeRef::STRING)).description("Default: the newest installed"))
            .argument(InputValue::new("config", TypeRef::named("JSON")))
            .argument(InputValue::new("grants", TypeRef::named("JSON")).description("Default: everything the plugin requests"))
            .argument(InputValue::new("limits", TypeRef::named("JSON")))
            .description("Enables, upgrades or reconfigures a plugin for this tenant (admin)."),
        )
        .field(
            Field::new("disablePlugin", TypeRef::named_nn("TenantPlugin"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?.to_string();
                    rc.kernel.disable_plugin(rc.store.id(), &id, PluginStatus::Disabled).await.map_err(|e| fail(rc, e))?;
                    tenant_plugin(rc, &id)
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::STRING)))
            .description("Disables a plugin for this tenant; its data stays (admin)."),
        )
        .field(
            Field::new("rollbackPlugin", TypeRef::named_nn("TenantPlugin"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?.to_string();
                    let current = rc.kernel.system().enablement(rc.store.id(), &id).map_err(|e| fail(rc, e))?;
                    let current = current.ok_or_else(|| fail(rc, Error::not_found(format!("plugin {id} is not enabled for this tenant"))))?;
                    let previous = current
                        .previous
                        .last()
                        .cloned()
                        .ok_or_else(|| fail(rc, Error::invalid(format!("plugin {id} has no earlier version for this tenant"))))?;
                    let options = EnableOptions {
                        version: Some(previous),
                        config: Some(current.config.clone()),
                        grants: Some(current.grants.clone()),
                        limits: current.limits,
                    };
                    rc.kernel.enable_plugin(rc.store.id(), &id, options).await.map_err(|e| fail(rc, e))?;
                    tenant_plugin(rc, &id)
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::STRING)))
            .description("Goes back to the version enabled before the current one (admin)."),
        )
        .field(
            Field::new("replayDeadLetter", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let seq = ctx.args.try_get("seq")?.u64()?;
                    let letters = rc.store.reader().and_then(|reader| reader.dead_letters(100_000)).map_err(|e| fail(rc, e))?;
                    let letter = letters
                        .into_iter()
                        .find(|letter| letter.seq == seq)
                        .ok_or_else(|| fail(rc, Error::not_found(format!("no dead letter {seq}"))))?;
                    let runtime = rc.kernel.runtime().map_err(|e| fail(rc, e))?.clone();
                    let tenant = rc.store.id().clone();
                    tokio::task::spawn_blocking(move || runtime.replay(&tenant, &letter))
                        .await
                        .map_err(|e| fail(rc, Error::internal(e.to_string())))?
                        .map_err(|e| fail(rc, e))?;
                    Ok(Some(Gql::Boolean(true)))
                })
            })
            .argument(InputValue::new("seq", TypeRef::named_nn(TypeRef::INT)))
            .description("Delivers a dead letter again; removed when it succeeds (admin)."),
        )
        .field(
            Field::new("advanceClock", TypeRef::named_nn("DateTime"), |ctx| {
                FieldFuture::new(async move {
                    let rc = admin(&ctx)?;
                    let ms = ctx.args.try_get("ms")?.i64()?;
                    let now = crm_core::clock::advance(ms).map_err(|e| fail(rc, e))?;
                    Ok(text(format_datetime(now)))
                })
            })
            .argument(InputValue::new("ms", TypeRef::named_nn(TypeRef::INT)))
            .description("Moves the kernel's clock forward (admin; only on a server started with --dev-clock)."),
        );
    for action in &metadata.actions {
        mutation = mutation.field(action_field(action));
    }
    mutation
}

fn action_type_base(action: &PluginAction) -> String {
    format!("{}{}", pascal(&snake(&action.plugin.replace('-', "_"))), pascal(&action.name.replace('-', "_")))
}

/// The mutation name of an action: `<plugin><Action>` in camelCase.
pub fn action_field_name(action: &PluginAction) -> String {
    camel(&format!("{}_{}", action.plugin.replace('-', "_"), action.name.replace('-', "_")))
}

fn scalar_of(base: &str, field: &FieldDef) -> String {
    match &field.ty {
        FieldType::Text | FieldType::LongText | FieldType::Email | FieldType::Phone | FieldType::Url | FieldType::Tags => "String".into(),
        FieldType::Int => "Int".into(),
        FieldType::Float => "Float".into(),
        FieldType::Bool => "Boolean".into(),
        FieldType::DateTime => "DateTime".into(),
        FieldType::Date => "Date".into(),
        FieldType::Enum(_) => format!("{base}{}", pascal(&field.name)),
        FieldType::Ref(_) | FieldType::ExternalId => "ID".into(),
    }
}

fn type_of(base: &str, field: &FieldDef, non_null: bool) -> TypeRef {
    let name = scalar_of(base, field);
    match (&field.ty, non_null) {
        (FieldType::Tags, true) => TypeRef::named_nn_list_nn(name),
        (FieldType::Tags, false) => TypeRef::named_nn_list(name),
        (_, true) => TypeRef::named_nn(name),
        (_, false) => TypeRef::named(name),
    }
}

/// Input, result and enum types of every action.
pub fn action_types(metadata: &Metadata) -> Vec<async_graphql::dynamic::Type> {
    let mut out: Vec<async_graphql::dynamic::Type> = Vec::new();
    let mut enums = std::collections::HashSet::new();
    for action in &metadata.actions {
        let base = action_type_base(action);
        let mut input_type = InputObject::new(format!("{base}Input")).description(action.description.clone());
        for field in &action.input {
            input_type = input_type.field(InputValue::new(camel(&field.name), type_of(&base, field, field.required)).description(field.description.clone()));
        }
        let mut result = Object::new(format!("{base}Result"));
        for field in &action.output {
            let name = field.name.clone();
            let ty = field.ty.clone();
            result = result.field(
                Field::new(camel(&field.name), type_of(&base, field, false), move |ctx| {
                    let name = name.clone();
                    let ty = ty.clone();
                    FieldFuture::new(async move {
                        let fields = ctx.parent_value.try_downcast_ref::<crm_core::Fields>()?;
                        // None, not Some(Null): the engine refuses a null scalar it cannot type.
                        Ok(fields.get(&name).map(|value| output(&ty, value)).filter(|value| *value != Gql::Null))
                    })
                })
                .description(field.description.clone()),
            );
        }
        if action.output.is_empty() {
            result = result.field(Field::new("ok", TypeRef::named_nn(TypeRef::BOOLEAN), |_| FieldFuture::new(async { Ok(Some(Gql::Boolean(true))) })));
        }
        for field in action.input.iter().chain(&action.output) {
            if let FieldType::Enum(options) = &field.ty {
                let name = scalar_of(&base, field);
                if enums.insert(name.clone()) {
                    out.push(Enum::new(name).items(options.iter().map(|o| screaming(o))).into());
                }
            }
        }
        if action.input.is_empty() {
            input_type = input_type.field(InputValue::new("_unused", TypeRef::named(TypeRef::BOOLEAN)));
        }
        out.push(input_type.into());
        out.push(result.into());
    }
    out
}

fn action_field(action: &PluginAction) -> Field {
    let base = action_type_base(action);
    let plugin = action.plugin.clone();
    let name = action.name.clone();
    let decl = action.clone();
    Field::new(action_field_name(action), TypeRef::named_nn(format!("{base}Result")), move |ctx| {
        let plugin = plugin.clone();
        let name = name.clone();
        let decl = decl.clone();
        FieldFuture::new(async move {
            let rc = request(&ctx)?;
            if !rc.access.role.actions {
                let message = format!("role '{}' may not call plugin actions", rc.access.role.name);
                return Err(fail(rc, Error::new(ErrorKind::Forbidden, message)));
            }
            let input_value = ctx.args.try_get("input")?.object()?;
            let mut fields = crm_core::Fields::new();
            for (key, value) in input_value.iter() {
                let field = snake(key.as_str());
                if decl.input.iter().any(|f| f.name == field) {
                    fields.insert(field, input(value.as_value()));
                }
            }
            let runtime = rc.kernel.runtime().map_err(|e| fail(rc, e))?.clone();
            let tenant = rc.store.id().clone();
            let actor = rc.actor.clone();
            let request_id = rc.request_id.clone();
            let output = tokio::task::spawn_blocking(move || runtime.invoke(&tenant, &plugin, &name, fields, &actor, Some(&request_id)))
                .await
                .map_err(|e| fail(rc, Error::new(ErrorKind::Internal, e.to_string())))?
                .map_err(|e| fail(rc, e))?;
            Ok(Some(FieldValue::owned_any(output)))
        })
    })
    .argument(InputValue::new("input", TypeRef::named_nn(format!("{base}Input"))))
    .description(format!("Action '{}' of plugin {}. {}", action.name, action.plugin, action.description))
}
