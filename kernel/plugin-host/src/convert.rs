//! Conversions between the WIT wire types and the core's domain types.
//! Everything a plugin returns is untrusted: conversions that can fail
//! return a message that names what was wrong.

use crm_core::audit::ChangeOp;
use crm_core::metadata::{FieldDef, FieldType, ObjectDef};
use crm_core::plugin::{
    ActionDecl, Capabilities, FailurePolicy, FieldExtension, HookDecl, HookKind, Limits, ObjectAccess, PluginManifest, RouteDecl,
};
use crm_core::{Record, RecordId, Value};

use crate::bindings::crm::plugin::types as wit;

pub fn value_to_wit(value: &Value) -> wit::Value {
    match value {
        Value::Null => wit::Value::Null,
        Value::Bool(b) => wit::Value::Boolean(*b),
        Value::Int(i) => wit::Value::Integer(*i),
        Value::Float(f) => wit::Value::Float(*f),
        Value::Text(t) => wit::Value::Text(t.clone()),
        Value::Id(id) => wit::Value::Id(id.to_string()),
        Value::List(items) => wit::Value::Texts(items.clone()),
    }
}

pub fn value_from_wit(value: wit::Value) -> Result<Value, String> {
    Ok(match value {
        wit::Value::Null => Value::Null,
        wit::Value::Boolean(b) => Value::Bool(b),
        wit::Value::Integer(i) => Value::Int(i),
        wit::Value::Float(f) => Value::Float(f),
        wit::Value::Text(t) => Value::Text(t),
        wit::Value::Id(id) => Value::Id(RecordId::parse(&id).map_err(|_| format!("'{id}' is not a record id"))?),
        wit::Value::Texts(items) => Value::List(items),
    })
}

/// The fields of a record that `visible` lets through.
pub fn fields_to_wit<'a>(
    fields: impl IntoIterator<Item = (&'a String, &'a Value)>,
    visible: impl Fn(&str) -> bool,
) -> Vec<wit::Field> {
    fields
        .into_iter()
        .filter(|(name, _)| visible(name))
        .map(|(name, value)| wit::Field { name: name.clone(), value: value_to_wit(value) })
        .collect()
}

pub fn fields_from_wit(fields: Vec<wit::Field>) -> Result<crm_core::Fields, String> {
    let mut out = crm_core::Fields::new();
    for field in fields {
        let value = value_from_wit(field.value).map_err(|error| format!("{}: {error}", field.name))?;
        out.insert(field.name, value);
    }
    Ok(out)
}

pub fn record_to_wit(object: &str, record: &Record, visible: impl Fn(&str) -> bool) -> wit::Record {
    wit::Record {
        object: object.to_string(),
        id: record.id.to_string(),
        version: record.version,
        created_at: record.created_at,
        updated_at: record.updated_at,
        deleted: record.deleted_at.is_some(),
        fields: fields_to_wit(&record.fields, visible),
    }
}

pub fn op_to_wit(op: ChangeOp) -> wit::Operation {
    match op {
        ChangeOp::Created => wit::Operation::Create,
        ChangeOp::Updated => wit::Operation::Update,
        ChangeOp::Deleted => wit::Operation::Delete,
        ChangeOp::Restored => wit::Operation::Restore,
    }
}

fn op_from_wit(op: wit::Operation) -> ChangeOp {
    match op {
        wit::Operation::Create => ChangeOp::Created,
        wit::Operation::Update => ChangeOp::Updated,
        wit::Operation::Delete => ChangeOp::Deleted,
        wit::Operation::Restore => ChangeOp::Restored,
    }
}

fn field_from_wit(decl: wit::FieldDecl) -> Result<FieldDef, String> {
    use wit::FieldKind as K;
    let ty = match decl.kind {
        K::Text => FieldType::Text,
        K::LongText => FieldType::LongText,
        K::Email => FieldType::Email,
        K::Phone => FieldType::Phone,
        K::Url => FieldType::Url,
        K::Integer => FieldType::Int,
        K::Float => FieldType::Float,
        K::Boolean => FieldType::Bool,
        K::Datetime => FieldType::DateTime,
        K::Date => FieldType::Date,
        K::Enumeration => FieldType::Enum(decl.options.iter().map(|key| key.to_lowercase()).collect()),
        K::Reference => FieldType::Ref(decl.target.clone().ok_or_else(|| format!("reference field '{}' has no target", decl.name))?),
        K::ExternalId => FieldType::ExternalId,
        K::Tags => FieldType::Tags,
    };
    Ok(FieldDef {
        name: decl.name,
        ty,
        required: decl.required,
        unique: decl.unique,
        indexed: decl.indexed || decl.unique,
        computed: false,
        description: decl.description,
    })
}

fn fields_of(decls: Vec<wit::FieldDecl>) -> Result<Vec<FieldDef>, String> {
    decls.into_iter().map(field_from_wit).collect()
}

fn plural(name: &str) -> String {
    if let Some(stem) = name.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else if name.ends_with('s') || name.ends_with('x') || name.ends_with("ch") || name.ends_with("sh") {
        format!("{name}es")
    } else {
        format!("{name}s")
    }
}

fn objects_from_wit(objects: Vec<wit::ObjectDecl>) -> Result<Vec<ObjectDef>, String> {
    objects
        .into_iter()
        .map(|object| {
            Ok(ObjectDef {
                plural: plural(&object.name),
                name: object.name,
                description: object.description,
                fields: fields_of(object.fields)?,
            })
        })
        .collect()
}

fn extensions_from_wit(fields: Vec<wit::FieldExtension>) -> Result<Vec<FieldExtension>, String> {
    fields.into_iter().map(|extension| Ok(FieldExtension { object: extension.object, field: field_from_wit(extension.field)? })).collect()
}

pub fn schema_extension_from_wit(extension: wit::SchemaExtension) -> Result<crm_core::plugin::SchemaExtension, String> {
    Ok(crm_core::plugin::SchemaExtension { objects: objects_from_wit(extension.objects)?, fields: extensions_from_wit(extension.fields)? })
}

pub fn manifest_from_wit(manifest: wit::PluginManifest) -> Result<PluginManifest, String> {
    let objects = objects_from_wit(manifest.objects)?;
    let fields = extensions_from_wit(manifest.fields)?;
    let hooks = manifest
        .hooks
        .into_iter()
        .map(|hook| HookDecl {
            kind: match hook.kind {
                wit::HookKind::BeforeWrite => HookKind::BeforeWrite,
                wit::HookKind::AfterCommit => HookKind::AfterCommit,
            },
            object: hook.object,
            ops: hook.ops.into_iter().map(op_from_wit).collect(),
            failure: match hook.failure {
                wit::FailurePolicy::FailClosed => FailurePolicy::FailClosed,
                wit::FailurePolicy::FailOpen => FailurePolicy::FailOpen,
            },
        })
        .collect();
    let actions = manifest
        .actions
        .into_iter()
        .map(|action| {
            Ok(ActionDecl {
                name: action.name,
                description: action.description,
                input: fields_of(action.input)?,
                output: fields_of(action.output)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let capabilities = Capabilities {
        records: manifest
            .capabilities
            .records
            .into_iter()
            .map(|access| ObjectAccess {
                object: access.object,
                fields: access.fields,
                read: access.read,
                create: access.create,
                update: access.update,
                delete: access.delete,
            })
            .collect(),
        outbound: manifest.capabilities.outbound,
        timers: manifest.capabilities.timers,
        kv: manifest.capabilities.kv,
        events: manifest.capabilities.events,
        schema: manifest.capabilities.schema,
    };
    let limits = Limits {
        fuel: manifest.limits.fuel,
        timeout_ms: manifest.limits.timeout_ms,
        memory_bytes: manifest.limits.memory_bytes,
        host_calls: manifest.limits.host_calls,
        output_bytes: manifest.limits.output_bytes,
        log_bytes: manifest.limits.log_bytes,
    };
    Ok(PluginManifest {
        id: manifest.id,
        version: manifest.version,
        api: manifest.api,
        description: manifest.description,
        objects,
        fields,
        hooks,
        actions,
        routes: manifest.routes.into_iter().map(|route| RouteDecl { method: route.method.to_uppercase(), path: route.path }).collect(),
        capabilities,
        limits,
        config_schema: if manifest.config_schema.trim().is_empty() { "{}".into() } else { manifest.config_schema },
    })
}

/// Approximate size in bytes of values a plugin returned, for the output cap.
pub fn value_size(value: &wit::Value) -> usize {
    match value {
        wit::Value::Text(text) | wit::Value::Id(text) => text.len(),
        wit::Value::Texts(items) => items.iter().map(String::len).sum(),
        _ => 8,
    }
}

pub fn fields_size(fields: &[wit::Field]) -> usize {
    fields.iter().map(|field| field.name.len() + value_size(&field.value)).sum()
}
