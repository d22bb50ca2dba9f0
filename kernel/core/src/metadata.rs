//! Metadata: the objects of a tenant and their typed fields. Standard objects
//! are metadata too, so the store, the query engine and the GraphQL schema
//! treat every object the same way.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Names of the fields every record has and the kernel alone writes.
pub const SYSTEM_FIELDS: [&str; 5] = ["id", "version", "created_at", "updated_at", "deleted_at"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldType {
    Text,
    LongText,
    Email,
    Phone,
    Url,
    Int,
    Float,
    Bool,
    DateTime,
    Date,
    /// One of a fixed set of lowercase keys.
    Enum(Vec<String>),
    /// A reference to a record of the named object in the same tenant.
    Ref(String),
    /// An opaque id of something outside the record store (owner, team).
    ExternalId,
    Tags,
}

impl FieldType {
    pub fn is_numeric(&self) -> bool {
        matches!(self, FieldType::Int | FieldType::Float)
    }
    pub fn is_textual(&self) -> bool {
        matches!(
            self,
            FieldType::Text | FieldType::LongText | FieldType::Email | FieldType::Phone | FieldType::Url | FieldType::Date
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    pub name: String,
    pub ty: FieldType,
    pub required: bool,
    pub unique: bool,
    pub indexed: bool,
    /// Written by the kernel only (for example a deal's expected amount).
    pub computed: bool,
    pub description: String,
}

impl FieldDef {
    pub(crate) fn new(name: &str, ty: FieldType) -> Self {
        FieldDef {
            name: name.to_string(),
            ty,
            required: false,
            unique: false,
            indexed: false,
            computed: false,
            description: String::new(),
        }
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn unique(mut self) -> Self {
        self.unique = true;
        self.indexed = true;
        self
    }
    fn indexed(mut self) -> Self {
        self.indexed = true;
        self
    }
    fn computed(mut self) -> Self {
        self.computed = true;
        self
    }
    fn describe(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }
    /// Whether the store keeps a secondary index on this field. References
    /// are always indexed so the reverse side of a relation is a range scan.
    pub fn has_index(&self) -> bool {
        self.indexed || self.unique || matches!(self.ty, FieldType::Ref(_))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectDef {
    /// snake_case singular, e.g. `pipeline_stage`.
    pub name: String,
    /// snake_case plural, e.g. `pipeline_stages`.
    pub plural: String,
    pub description: String,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|field| field.name == name)
    }
    pub fn unique_fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|field| field.unique)
    }
}

/// The definition of a system field (`id`, `version`, timestamps) of an
/// object, for filters and sorting.
pub fn system_field(object: &ObjectDef, name: &str) -> Option<FieldDef> {
    let ty = match name {
        "id" => FieldType::Ref(object.name.clone()),
        "created_at" | "updated_at" | "deleted_at" => FieldType::DateTime,
        "version" => FieldType::Int,
        _ => return None,
    };
    Some(FieldDef {
        name: name.to_string(),
        ty,
        required: true,
        unique: name == "id",
        indexed: true,
        computed: true,
        description: String::new(),
    })
}

/// The metadata of one tenant, shared read-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub objects: Vec<ObjectDef>,
    /// Actions of the tenant's enabled plugins, exposed as mutations.
    pub actions: Vec<PluginAction>,
}

/// An action a plugin offers, with typed input and output fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginAction {
    pub plugin: String,
    pub name: String,
    pub description: String,
    pub input: Vec<FieldDef>,
    pub output: Vec<FieldDef>,
}

impl Metadata {
    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.objects.iter().find(|object| object.name == name)
    }

    /// A content hash: tenants with equal metadata share one GraphQL schema.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// Every reference from another object to `target`: (object, field).
    pub fn references_to(&self, target: &str) -> Vec<(&ObjectDef, &FieldDef)> {
        let mut out = Vec::new();
        for object in &self.objects {
            for field in &object.fields {
                if field.ty == FieldType::Ref(target.to_string()) {
                    out.push((object, field));
                }
            }
        }
        out
    }

    /// The standard objects every tenant starts with.
    pub fn standard() -> Arc<Metadata> {
        use FieldType::*;
        let lifecycle = Enum(
            ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"]
                .map(String::from)
                .to_vec(),
        );
        let lead_status = Enum(
            ["new", "open", "in_progress", "open_deal", "unqualified", "attempted_to_contact", "connected", "bad_timing"]
                .map(String::from)
                .to_vec(),
        );
        let activity_kind = Enum(["note", "call", "email", "meeting", "task"].map(String::from).to_vec());
        let direction = Enum(["inbound", "outbound"].map(String::from).to_vec());
        let objects = vec![
            ObjectDef {
                name: "company".into(),
                plural: "companies".into(),
                description: "An organisation: a customer, prospect or partner.".into(),
                fields: vec![
                    FieldDef::new("name", Text).required().indexed(),
                    FieldDef::new("domain", Text).indexed(),
                    FieldDef::new("industry", Text).indexed(),
                    FieldDef::new("employees", Int),
                    FieldDef::new("annual_revenue", Float),
                    FieldDef::new("phone", Phone),
                    FieldDef::new("website", Url),
                    FieldDef::new("street", Text),
                    FieldDef::new("city", Text),
                    FieldDef::new("postal_code", Text),
                    FieldDef::new("country", Text).indexed(),
                    FieldDef::new("owner_id", ExternalId).indexed().describe("The user who owns the record."),
                    FieldDef::new("team_id", ExternalId).indexed().describe("The team the record belongs to."),
                ],
            },
            ObjectDef {
                name: "contact".into(),
                plural: "contacts".into(),
                description: "A person the tenant is in touch with.".into(),
                fields: vec![
                    FieldDef::new("first_name", Text).required(),
                    FieldDef::new("last_name", Text),
                    FieldDef::new("email", Email).unique().describe("Unique per tenant, stored lowercase."),
                    FieldDef::new("phone", Phone),
                    FieldDef::new("mobile", Phone),
                    FieldDef::new("title", Text),
                    FieldDef::new("company_id", Ref("company".into())),
                    FieldDef::new("lifecycle_stage", lifecycle).indexed(),
                    FieldDef::new("lead_status", lead_status).indexed(),
                    FieldDef::new("owner_id", ExternalId).indexed().describe("The user who owns the record."),
                    FieldDef::new("team_id", ExternalId).indexed().describe("The team the record belongs to."),
                    FieldDef::new("source", Text),
                    FieldDef::new("lead_score", Int),
                    FieldDef::new("email_opt_in", Bool).describe("Consent to email; set with its time and source."),
                    FieldDef::new("email_opt_in_at", DateTime).describe("When email consent was given or withdrawn."),
                    FieldDef::new("email_opt_in_source", Text).describe("Where email consent was given or withdrawn (form, import, user)."),
                    FieldDef::new("sms_opt_in", Bool).describe("Consent to text messages; set with its time and source."),
                    FieldDef::new("sms_opt_in_at", DateTime).describe("When SMS consent was given or withdrawn."),
                    FieldDef::new("sms_opt_in_source", Text).describe("Where SMS consent was given or withdrawn."),
                    FieldDef::new("country", Text).indexed(),
                    FieldDef::new("tags", Tags),
                ],
            },
            ObjectDef {
                name: "pipeline".into(),
                plural: "pipelines".into(),
                description: "A sales pipeline: an ordered list of stages.".into(),
                fields: vec![FieldDef::new("name", Text).required(), FieldDef::new("is_default", Bool)],
            },
            ObjectDef {
                name: "pipeline_stage".into(),
                plural: "pipeline_stages".into(),
                description: "A stage of a pipeline with its win probability (0 to 1).".into(),
                fields: vec![
                    FieldDef::new("pipeline_id", Ref("pipeline".into())).required(),
                    FieldDef::new("key", Text).required().indexed(),
                    FieldDef::new("name", Text).required(),
                    FieldDef::new("position", Int).required(),
                    FieldDef::new("probability", Float).required(),
                    FieldDef::new("is_closed", Bool),
                    FieldDef::new("is_won", Bool),
                ],
            },
            ObjectDef {
                name: "deal".into(),
                plural: "deals".into(),
                description: "A sales opportunity moving through a pipeline.".into(),
                fields: vec![
                    FieldDef::new("name", Text).required(),
                    FieldDef::new("company_id", Ref("company".into())),
                    FieldDef::new("contact_id", Ref("contact".into())).describe("The primary contact."),
                    FieldDef::new("pipeline_id", Ref("pipeline".into()))
                        .describe("Defaults to the tenant's default pipeline."),
                    FieldDef::new("stage", Text)
                        .indexed()
                        .describe("The key of a stage of the deal's pipeline; defaults to its first stage."),
                    FieldDef::new("amount", Float),
                    FieldDef::new("currency", Text),
                    FieldDef::new("close_date", Date).indexed(),
                    FieldDef::new("probability", Float)
                        .describe("Win probability 0..1; follows the stage unless set explicitly."),
                    FieldDef::new("expected_amount", Float).computed().describe("amount × probability"),
                    FieldDef::new("owner_id", ExternalId).indexed().describe("The user who owns the record."),
                    FieldDef::new("team_id", ExternalId).indexed().describe("The team the record belongs to."),
                    FieldDef::new("close_reason", Text).describe("Why the deal was won or lost."),
                ],
            },
            ObjectDef {
                name: "activity".into(),
                plural: "activities".into(),
                description: "An interaction on the timeline: note, call, email, meeting or task.".into(),
                fields: vec![
                    FieldDef::new("kind", activity_kind).required().indexed(),
                    FieldDef::new("subject", Text),
                    FieldDef::new("body", LongText),
                    FieldDef::new("occurred_at", DateTime).indexed(),
                    FieldDef::new("due_at", DateTime).indexed(),
                    FieldDef::new("done", Bool),
                    FieldDef::new("direction", direction),
                    FieldDef::new("company_id", Ref("company".into())),
                    FieldDef::new("contact_id", Ref("contact".into())),
                    FieldDef::new("deal_id", Ref("deal".into())),
                    FieldDef::new("owner_id", ExternalId).indexed().describe("The user who owns the record."),
                    FieldDef::new("team_id", ExternalId).indexed().describe("The team the record belongs to."),
                ],
            },
            ObjectDef {
                name: "custom_event".into(),
                plural: "custom_events".into(),
                description: "An event a plugin emitted (tracking, web forms, integrations).".into(),
                fields: vec![
                    FieldDef::new("name", Text).required().indexed(),
                    FieldDef::new("payload", LongText),
                    FieldDef::new("source", Text).indexed().describe("The plugin that emitted it."),
                ],
            },
            ObjectDef {
                name: "outbound_message".into(),
                plural: "outbound_messages".into(),
                description: "A message sent through the kernel's outbound channel; without a transport it stays in this mailbox.".into(),
                fields: vec![
                    FieldDef::new("channel", Enum(["email", "sms", "webhook"].map(String::from).to_vec())).required().indexed(),
                    FieldDef::new("recipient", Text).required().indexed(),
                    FieldDef::new("subject", Text),
                    FieldDef::new("body", LongText),
                    FieldDef::new("html", LongText),
                    FieldDef::new("status", Enum(["queued", "sent", "delivered", "failed", "bounced"].map(String::from).to_vec()))
                        .indexed(),
                    FieldDef::new("source", Text).indexed().describe("The plugin that sent it."),
                    FieldDef::new("sent_at", DateTime).describe("When the transport handed it over (the SMTP server accepted it)."),
                    FieldDef::new("error", Text).describe("Why the last attempt failed or the message bounced."),
                    FieldDef::new("attempts", Int).describe("Delivery attempts so far."),
                    FieldDef::new("retry_at", DateTime).describe("When a message kept queued after a transient failure is tried again."),
                ],
            },
        ];
        Arc::new(Metadata { objects, actions: Vec::new() })
    }
}
