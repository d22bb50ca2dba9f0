//! Plain conversions between the SDK's types and the generated WIT types.
//! Compiled on every target so native tests cover them.

use crate::__bindings::crm::plugin::types as wit;
use crate::ctx::Ctx;
use crate::error::{Error, ErrorCode};
use crate::http::{HttpRequest, HttpResponse};
use crate::log::Level;
use crate::manifest::{
    ActionDecl, Capabilities, Failure, FieldDecl, FieldExtension, FieldKind, HookDecl, HookKind, Limits, Manifest, ObjectAccess,
    ObjectDecl, RouteDecl,
};
use crate::message::Message;
use crate::record::{Change, Decision, Event, Op, Page, Record};
use crate::value::{Fields, Value};

impl From<wit::Value> for Value {
    fn from(value: wit::Value) -> Self {
        match value {
            wit::Value::Null => Value::Null,
            wit::Value::Boolean(bool) => Value::Bool(bool),
            wit::Value::Integer(int) => Value::Int(int),
            wit::Value::Float(float) => Value::Float(float),
            wit::Value::Text(text) => Value::Text(text),
            wit::Value::Id(id) => Value::Id(id),
            wit::Value::Texts(texts) => Value::Texts(texts),
        }
    }
}

impl From<Value> for wit::Value {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => wit::Value::Null,
            Value::Bool(bool) => wit::Value::Boolean(bool),
            Value::Int(int) => wit::Value::Integer(int),
            Value::Float(float) => wit::Value::Float(float),
            Value::Text(text) => wit::Value::Text(text),
            Value::Id(id) => wit::Value::Id(id),
            Value::Texts(texts) => wit::Value::Texts(texts),
        }
    }
}

impl From<Vec<wit::Field>> for Fields {
    fn from(fields: Vec<wit::Field>) -> Self {
        fields.into_iter().map(|field| (field.name, Value::from(field.value))).collect()
    }
}

impl From<Fields> for Vec<wit::Field> {
    fn from(fields: Fields) -> Self {
        fields.into_iter().map(|(name, value)| wit::Field { name, value: value.into() }).collect()
    }
}

impl From<wit::Operation> for Op {
    fn from(op: wit::Operation) -> Self {
        match op {
            wit::Operation::Create => Op::Create,
            wit::Operation::Update => Op::Update,
            wit::Operation::Delete => Op::Delete,
            wit::Operation::Restore => Op::Restore,
        }
    }
}

impl From<Op> for wit::Operation {
    fn from(op: Op) -> Self {
        match op {
            Op::Create => wit::Operation::Create,
            Op::Update => wit::Operation::Update,
            Op::Delete => wit::Operation::Delete,
            Op::Restore => wit::Operation::Restore,
        }
    }
}

impl From<wit::Record> for Record {
    fn from(record: wit::Record) -> Self {
        Record {
            object: record.object,
            id: record.id,
            version: record.version,
            created_at: record.created_at,
            updated_at: record.updated_at,
            deleted: record.deleted,
            fields: record.fields.into(),
        }
    }
}

impl From<wit::Page> for Page {
    fn from(page: wit::Page) -> Self {
        Page { records: page.records.into_iter().map(Record::from).collect(), next: page.next }
    }
}

impl From<wit::Change> for Change {
    fn from(change: wit::Change) -> Self {
        Change::new(change.object, change.op.into(), change.id, change.before.map(Fields::from), change.after.into())
    }
}

impl From<Decision> for wit::Decision {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Accept => wit::Decision::Accept,
            Decision::Patch(fields) => wit::Decision::Patch(fields.into()),
            Decision::Reject { field, message } => wit::Decision::Reject(wit::Rejection { field, message }),
        }
    }
}

impl From<wit::Event> for Event {
    fn from(event: wit::Event) -> Self {
        Event {
            seq: event.seq,
            at: event.at,
            object: event.object,
            id: event.id,
            op: event.op.into(),
            version: event.version,
            fields: event.fields.into(),
        }
    }
}

impl From<wit::Context> for Ctx {
    fn from(context: wit::Context) -> Self {
        let ctx =
            Ctx::new(context.tenant, context.plugin, context.version).with_actor(context.actor).with_config_text(&context.config);
        match context.request_id {
            Some(request_id) => ctx.with_request_id(request_id),
            None => ctx,
        }
    }
}

impl From<wit::ErrorCode> for ErrorCode {
    fn from(code: wit::ErrorCode) -> Self {
        match code {
            wit::ErrorCode::Forbidden => ErrorCode::Forbidden,
            wit::ErrorCode::NotFound => ErrorCode::NotFound,
            wit::ErrorCode::Invalid => ErrorCode::Invalid,
            wit::ErrorCode::Conflict => ErrorCode::Conflict,
            wit::ErrorCode::Limit => ErrorCode::Limit,
            wit::ErrorCode::Unavailable => ErrorCode::Unavailable,
        }
    }
}

impl From<wit::HostError> for Error {
    fn from(error: wit::HostError) -> Self {
        Error::host(error.code.into(), error.message)
    }
}

impl From<wit::HttpRequest> for HttpRequest {
    fn from(request: wit::HttpRequest) -> Self {
        HttpRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        }
    }
}

impl From<HttpResponse> for wit::HttpResponse {
    fn from(response: HttpResponse) -> Self {
        wit::HttpResponse { status: response.status, headers: response.headers, body: response.body }
    }
}

impl From<Message> for wit::Message {
    fn from(message: Message) -> Self {
        wit::Message {
            channel: message.channel,
            to: message.to,
            subject: message.subject,
            body: message.body,
            html: message.html,
        }
    }
}

impl From<Level> for wit::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        }
    }
}

impl From<FieldKind> for wit::FieldKind {
    fn from(kind: FieldKind) -> Self {
        match kind {
            FieldKind::Text => wit::FieldKind::Text,
            FieldKind::LongText => wit::FieldKind::LongText,
            FieldKind::Email => wit::FieldKind::Email,
            FieldKind::Phone => wit::FieldKind::Phone,
            FieldKind::Url => wit::FieldKind::Url,
            FieldKind::Integer => wit::FieldKind::Integer,
            FieldKind::Float => wit::FieldKind::Float,
            FieldKind::Boolean => wit::FieldKind::Boolean,
            FieldKind::Datetime => wit::FieldKind::Datetime,
            FieldKind::Date => wit::FieldKind::Date,
            FieldKind::Enumeration => wit::FieldKind::Enumeration,
            FieldKind::Reference => wit::FieldKind::Reference,
            FieldKind::ExternalId => wit::FieldKind::ExternalId,
            FieldKind::Tags => wit::FieldKind::Tags,
        }
    }
}

impl From<FieldDecl> for wit::FieldDecl {
    fn from(field: FieldDecl) -> Self {
        wit::FieldDecl {
            name: field.name,
            kind: field.kind.into(),
            required: field.required,
            unique: field.unique,
            indexed: field.indexed,
            description: field.description,
            options: field.options,
            target: field.target,
        }
    }
}

fn field_decls(fields: Vec<FieldDecl>) -> Vec<wit::FieldDecl> {
    fields.into_iter().map(Into::into).collect()
}

impl From<ObjectDecl> for wit::ObjectDecl {
    fn from(object: ObjectDecl) -> Self {
        wit::ObjectDecl { name: object.name, description: object.description, fields: field_decls(object.fields) }
    }
}

impl From<FieldExtension> for wit::FieldExtension {
    fn from(extension: FieldExtension) -> Self {
        wit::FieldExtension { object: extension.object, field: extension.field.into() }
    }
}

impl From<HookDecl> for wit::HookDecl {
    fn from(hook: HookDecl) -> Self {
        wit::HookDecl {
            kind: match hook.kind {
                HookKind::BeforeWrite => wit::HookKind::BeforeWrite,
                HookKind::AfterCommit => wit::HookKind::AfterCommit,
            },
            object: hook.object,
            ops: hook.ops.into_iter().map(Into::into).collect(),
            failure: match hook.failure {
                Failure::Closed => wit::FailurePolicy::FailClosed,
                Failure::Open => wit::FailurePolicy::FailOpen,
            },
        }
    }
}

impl From<ActionDecl> for wit::ActionDecl {
    fn from(action: ActionDecl) -> Self {
        wit::ActionDecl {
            name: action.name,
            description: action.description,
            input: field_decls(action.input),
            output: field_decls(action.output),
        }
    }
}

impl From<RouteDecl> for wit::RouteDecl {
    fn from(route: RouteDecl) -> Self {
        wit::RouteDecl { method: route.method, path: route.path }
    }
}

impl From<ObjectAccess> for wit::ObjectAccess {
    fn from(access: ObjectAccess) -> Self {
        wit::ObjectAccess {
            object: access.object,
            fields: access.fields,
            read: access.read,
            create: access.create,
            update: access.update,
            delete: access.delete,
        }
    }
}

impl From<Capabilities> for wit::Capabilities {
    fn from(capabilities: Capabilities) -> Self {
        wit::Capabilities {
            records: capabilities.records.into_iter().map(Into::into).collect(),
            outbound: capabilities.outbound,
            timers: capabilities.timers,
            kv: capabilities.kv,
            events: capabilities.events,
            schema: capabilities.schema,
        }
    }
}

impl From<Limits> for wit::Limits {
    fn from(limits: Limits) -> Self {
        wit::Limits {
            fuel: limits.fuel,
            timeout_ms: limits.timeout_ms,
            memory_bytes: limits.memory_bytes,
            host_calls: limits.host_calls,
            output_bytes: limits.output_bytes,
            log_bytes: limits.log_bytes,
        }
    }
}

impl From<Manifest> for wit::PluginManifest {
    fn from(manifest: Manifest) -> Self {
        wit::PluginManifest {
            id: manifest.id,
            version: manifest.version,
            api: manifest.api,
            description: manifest.description,
            objects: manifest.objects.into_iter().map(Into::into).collect(),
            fields: manifest.fields.into_iter().map(Into::into).collect(),
            hooks: manifest.hooks.into_iter().map(Into::into).collect(),
            actions: manifest.actions.into_iter().map(Into::into).collect(),
            routes: manifest.routes.into_iter().map(Into::into).collect(),
            capabilities: manifest.capabilities.into(),
            limits: manifest.limits.into(),
            config_schema: manifest.config_schema,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_fields_round_trip() {
        let fields = Fields::from([
            ("n", Value::Null),
            ("b", Value::Bool(true)),
            ("i", Value::Int(-3)),
            ("f", Value::Float(2.5)),
            ("t", Value::from("x")),
            ("id", Value::Id("01H".into())),
            ("l", Value::from(vec!["a"])),
        ]);
        let wire: Vec<wit::Field> = fields.clone().into();
        assert!(matches!(wire[1].value, wit::Value::Boolean(true)));
        assert_eq!(Fields::from(wire), fields);
    }

    #[test]
    fn context_carries_config_and_request() {
        let ctx = Ctx::from(wit::Context {
            tenant: "t".into(),
            plugin: "p".into(),
            version: "1.0.0".into(),
            request_id: Some("r".into()),
            actor: "api-key:1".into(),
            config: r#"{"a": 1}"#.into(),
        });
        assert_eq!(
            (ctx.tenant(), ctx.plugin(), ctx.version(), ctx.request_id(), ctx.actor()),
            ("t", "p", "1.0.0", Some("r"), "api-key:1")
        );
        assert_eq!(ctx.config_json()["a"], 1);
    }

    #[test]
    fn manifest_reaches_the_wire_intact() {
        let manifest = Manifest::new("x", "1.0.0")
            .extend("contact", FieldDecl::reference("boss_id", "contact").indexed())
            .hook(HookDecl::after_commit("contact", [Op::Create]))
            .access(ObjectAccess::new("contact").fields(["email"]).read())
            .limits(Limits::default().fuel(7));
        let wire = wit::PluginManifest::from(manifest);
        assert_eq!(wire.api, "0.1.0");
        assert_eq!(wire.fields[0].field.target.as_deref(), Some("contact"));
        assert!(matches!(wire.fields[0].field.kind, wit::FieldKind::Reference));
        assert!(matches!(wire.hooks[0].failure, wit::FailurePolicy::FailOpen));
        assert_eq!(wire.capabilities.records[0].fields, ["email"]);
        assert_eq!(wire.limits.fuel, 7);
        assert_eq!(wire.config_schema, "{}");
    }

    #[test]
    fn host_errors_keep_their_code() {
        let error = Error::from(wit::HostError { code: wit::ErrorCode::NotFound, message: "no such record".into() });
        assert!(error.is_not_found());
        assert_eq!(error.to_string(), "not-found: no such record");
    }
}

impl From<crate::manifest::TenantSchema> for wit::SchemaExtension {
    fn from(schema: crate::manifest::TenantSchema) -> Self {
        wit::SchemaExtension {
            objects: schema.objects.into_iter().map(Into::into).collect(),
            fields: schema.fields.into_iter().map(Into::into).collect(),
        }
    }
}
