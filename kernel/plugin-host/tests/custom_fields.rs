//! The bundled custom-fields plugin (plugins/custom-fields, embedded by
//! crm-plugin-artifacts) in the real wasmtime sandbox, against a kernel on
//! a temporary data directory: fields defined through its actions become
//! typed kernel fields of one tenant, and its before-write hook enforces
//! their rules.

use std::sync::Arc;

use crm_core::plugin::{EnableOptions, PluginRuntime};
use crm_core::query::ListQuery;
use crm_core::{
    Actor, ErrorKind, FieldType, Fields, Kernel, Mutation, Record, RecordId, StoreOptions, TenantId, Value, WriteRequest,
};
use crm_plugin_host::PluginHost;

const PLUGIN: &str = "custom-fields";

struct Fixture {
    _dir: tempfile::TempDir,
    kernel: Arc<Kernel>,
    host: Arc<PluginHost>,
    a: TenantId,
    b: TenantId,
}

/// A kernel with tenants A and B and custom-fields enabled for A only.
async fn fixture() -> Fixture {
    let bundled = crm_plugin_artifacts::bundled(PLUGIN).expect("custom-fields is bundled");
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Arc::new(Kernel::open(dir.path(), StoreOptions::default()).expect("kernel"));
    let host = PluginHost::new(&kernel, Some(&dir.path().join("plugin-cache"))).expect("host");
    kernel.set_runtime(host.clone());
    host.start_delivery().expect("delivery");
    let (a, _) = kernel.create_tenant("a").expect("tenant a");
    let (b, _) = kernel.create_tenant("b").expect("tenant b");
    let (installed, _) = kernel.install_plugin(bundled.wasm).expect("install");
    assert_eq!(installed.manifest.id, PLUGIN);
    kernel.enable_plugin(&a.id, PLUGIN, EnableOptions::default()).await.expect("enable for A");
    Fixture { _dir: dir, kernel, host, a: a.id, b: b.id }
}

fn text(value: &str) -> Value {
    Value::Text(value.into())
}

fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs.iter().map(|(name, value)| (name.to_string(), value.clone())).collect()
}

impl Fixture {
    async fn invoke(&self, action: &str, input: &[(&str, Value)]) -> crm_core::Result<Fields> {
        let (host, tenant, action, input) = (self.host.clone(), self.a.clone(), action.to_string(), fields(input));
        tokio::task::spawn_blocking(move || host.invoke(&tenant, PLUGIN, &action, input, &Actor::cli(), None)).await.unwrap()
    }

    async fn define(&self, object: &str, name: &str, field_type: &str, rest: &[(&str, Value)]) -> crm_core::Result<Fields> {
        let mut input = vec![("object", text(object)), ("name", text(name)), ("type", text(field_type))];
        input.extend(rest.iter().cloned());
        self.invoke("define-field", &input).await
    }

    async fn write(&self, tenant: &TenantId, mutation: Mutation) -> crm_core::Result<Record> {
        let store = self.kernel.tenant(tenant)?;
        let applied = store.write(WriteRequest::new(Actor::cli(), vec![mutation])).await?;
        Ok(applied[0].record.clone())
    }

    async fn create(&self, tenant: &TenantId, object: &str, values: &[(&str, Value)]) -> crm_core::Result<Record> {
        self.write(tenant, Mutation::Create { object: object.into(), fields: fields(values) }).await
    }

    async fn update(&self, object: &str, id: RecordId, values: &[(&str, Value)]) -> crm_core::Result<Record> {
        self.write(&self.a, Mutation::Update { object: object.into(), id, fields: fields(values), expected_version: None }).await
    }

    fn stored(&self, object: &str, id: RecordId) -> Record {
        self.kernel.tenant(&self.a).unwrap().get(object, id).unwrap().expect("stored")
    }

    fn count(&self, object: &str) -> u64 {
        self.kernel.tenant(&self.a).unwrap().count(&ListQuery::new(object)).unwrap()
    }

    /// The kernel type of `object.field` in tenant A's metadata, if any.
    fn field_type(&self, tenant: &TenantId, object: &str, field: &str) -> Option<FieldType> {
        let metadata = self.kernel.tenant(tenant).unwrap().metadata();
        metadata.object(object).and_then(|object| object.field(field)).map(|field| field.ty.clone())
    }

    /// The standard test fields: shoe size, tier, VIP code and budget.
    async fn define_the_test_fields(&self) {
        self.define("contact", "shoe_size", "integer", &[("min", Value::Int(30)), ("max", Value::Int(50))])
            .await
            .expect("shoe_size");
        self.define("contact", "tier", "single_select", &[("options", text("gold:Gold:#ffd700, silver:Silver"))])
            .await
            .expect("tier");
        self.define("contact", "vip_code", "text", &[("unique", Value::Bool(true)), ("regex", text("^[A-Z]{3}$"))])
            .await
            .expect("vip_code");
        self.define("company", "budget", "currency", &[]).await.expect("budget");
    }
}

/// A write refused by a custom field's rule: VALIDATION naming the field,
/// the message naming the rule.
fn assert_rejected(result: crm_core::Result<Record>, field: &str, rule: &str) {
    let error = result.expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Validation, "{error:?}");
    assert_eq!(error.field.as_deref(), Some(field), "{error:?}");
    assert!(error.message.contains(rule), "expected '{rule}' in {error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_fields_are_typed_for_one_tenant_and_their_rules_hold() {
    let f = fixture().await;
    f.define_the_test_fields().await;

    // Tenant A's metadata has the fields with their kernel types; B's not.
    assert_eq!(f.field_type(&f.a, "contact", "shoe_size"), Some(FieldType::Int));
    assert_eq!(f.field_type(&f.a, "contact", "tier"), Some(FieldType::Enum(vec!["gold".into(), "silver".into()])));
    assert_eq!(f.field_type(&f.a, "contact", "vip_code"), Some(FieldType::Text));
    assert_eq!(f.field_type(&f.a, "company", "budget"), Some(FieldType::Float));
    assert_eq!(f.field_type(&f.a, "company", "budget_currency"), Some(FieldType::Text));
    let metadata = f.kernel.tenant(&f.a).unwrap().metadata();
    let vip_code = metadata.object("contact").unwrap().field("vip_code").unwrap().clone();
    assert!(vip_code.unique && vip_code.has_index(), "{vip_code:?}");
    assert!(metadata.object("contact").unwrap().field("tier").unwrap().indexed);
    for (object, field) in [("contact", "shoe_size"), ("contact", "tier"), ("contact", "vip_code"), ("company", "budget")] {
        assert_eq!(f.field_type(&f.b, object, field), None, "{object}.{field} is not B's");
    }
    let error = f.create(&f.b, "contact", &[("first_name", text("Bob")), ("shoe_size", Value::Int(40))]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Validation, "B has no such field: {error:?}");

    // Valid values round-trip.
    let ada = f
        .create(
            &f.a,
            "contact",
            &[("first_name", text("Ada")), ("shoe_size", Value::Int(42)), ("tier", text("GOLD")), ("vip_code", text("ABC"))],
        )
        .await
        .expect("valid contact");
    let stored = f.stored("contact", ada.id);
    assert_eq!(
        (stored.get("shoe_size"), stored.get("tier"), stored.get("vip_code")),
        (&Value::Int(42), &text("gold"), &text("ABC"))
    );
    let acme = f
        .create(&f.a, "company", &[("name", text("Acme")), ("budget", Value::Float(1250.5)), ("budget_currency", text("eur"))])
        .await
        .expect("valid company");
    let stored = f.stored("company", acme.id);
    assert_eq!(
        (stored.get("budget"), stored.get("budget_currency")),
        (&Value::Float(1250.5), &text("EUR")),
        "the code is patched to upper case"
    );

    // A relation is a kernel reference: its target must exist.
    f.define("contact", "partner_id", "relation", &[("target", text("company"))]).await.expect("partner_id");
    assert_eq!(f.field_type(&f.a, "contact", "partner_id"), Some(FieldType::Ref("company".into())));
    let linked = f.update("contact", ada.id, &[("partner_id", Value::Id(acme.id))]).await.expect("linked");
    assert_eq!(linked.get("partner_id"), &Value::Id(acme.id));
    let nowhere = Value::Id(RecordId::generate());
    let error = f.update("contact", ada.id, &[("partner_id", nowhere)]).await.unwrap_err();
    assert_eq!(error.field.as_deref(), Some("partner_id"), "refused like a standard reference: {error:?}");

    // Each rule rejects, names the field and writes nothing.
    let contacts = f.count("contact");
    let contact = |field: &'static str, value: Value| vec![("first_name", text("Eve")), (field, value)];
    assert_rejected(
        f.create(&f.a, "contact", &contact("shoe_size", Value::Int(29))).await,
        "shoe_size",
        "min: must be at least 30",
    );
    assert_rejected(
        f.create(&f.a, "contact", &contact("shoe_size", Value::Int(51))).await,
        "shoe_size",
        "max: must be at most 50",
    );
    assert_rejected(
        f.create(&f.a, "contact", &contact("vip_code", text("ab1"))).await,
        "vip_code",
        "regex: must match ^[A-Z]{3}$",
    );
    // The kernel itself refuses a value outside an enumeration.
    assert_rejected(f.create(&f.a, "contact", &contact("tier", text("bronze"))).await, "tier", "bronze");
    assert_eq!(f.count("contact"), contacts, "nothing written");
    assert_rejected(
        f.create(&f.a, "company", &[("name", text("Initech")), ("budget", Value::Float(10.0))]).await,
        "budget_currency",
        "currency: budget needs a currency code",
    );
    assert_rejected(
        f.create(
            &f.a,
            "company",
            &[("name", text("Initech")), ("budget", Value::Float(10.0)), ("budget_currency", text("EURO"))],
        )
        .await,
        "budget_currency",
        "currency: 'EURO' is not an ISO 4217 code",
    );
    assert_eq!(f.count("company"), 1, "nothing written");

    // An update is held to the same rules; the stored record stays.
    assert_rejected(f.update("contact", ada.id, &[("shoe_size", Value::Int(99))]).await, "shoe_size", "max: must be at most 50");
    assert_eq!(f.stored("contact", ada.id).get("shoe_size"), &Value::Int(42));
    let updated = f.update("contact", ada.id, &[("shoe_size", Value::Int(44))]).await.expect("valid update");
    assert_eq!(updated.get("shoe_size"), &Value::Int(44));

    // A duplicate VIP code is a CONFLICT from the kernel's unique index.
    let error = f.create(&f.a, "contact", &[("first_name", text("Eve")), ("vip_code", text("ABC"))]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict, "{error:?}");
    assert_eq!(f.count("contact"), contacts);

    // list-fields shows the definitions as JSON.
    let listed = f.invoke("list-fields", &[]).await.expect("list");
    let listed: serde_json::Value = serde_json::from_str(listed["fields"].as_text().unwrap()).unwrap();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|field| field["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["budget", "partner_id", "shoe_size", "tier", "vip_code"]);
    assert_eq!(listed[3]["options"][0]["color"], "#ffd700");
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_fields_leave_the_metadata_and_their_values_stay() {
    let f = fixture().await;
    f.define_the_test_fields().await;
    let ada = f.create(&f.a, "contact", &[("first_name", text("Ada")), ("vip_code", text("XYZ"))]).await.unwrap();

    let archived = f.invoke("archive-field", &[("object", text("contact")), ("name", text("vip_code"))]).await.expect("archive");
    let archived: serde_json::Value = serde_json::from_str(archived["field"].as_text().unwrap()).unwrap();
    assert_eq!(archived["archived"], true);
    assert_eq!(f.field_type(&f.a, "contact", "vip_code"), None, "gone from the metadata");
    assert_eq!(f.stored("contact", ada.id).get("vip_code"), &text("XYZ"), "the stored value stays");
    // Its rules are off too: another contact needs no VIP code check.
    f.create(&f.a, "contact", &[("first_name", text("Bob"))]).await.expect("no rule of an archived field");

    f.invoke("restore-field", &[("object", text("contact")), ("name", text("vip_code"))]).await.expect("restore");
    assert_eq!(f.field_type(&f.a, "contact", "vip_code"), Some(FieldType::Text));
    let stored = f.stored("contact", ada.id);
    assert_eq!(stored.get("vip_code"), &text("XYZ"));
    // The unique index was rebuilt over the kept value.
    let error = f.create(&f.a, "contact", &[("first_name", text("Eve")), ("vip_code", text("XYZ"))]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict, "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn definitions_the_kernel_would_refuse_are_refused_first() {
    let f = fixture().await;
    // A field another plugin adds to contact (the patcher's plugin_score).
    let patcher = std::fs::read(crm_plugin_artifacts::test_plugin("patcher")).expect("patcher built");
    f.kernel.install_plugin(&patcher).unwrap();
    f.kernel.enable_plugin(&f.a, "patcher", EnableOptions::default()).await.unwrap();

    let refusals = [
        ("plugin_score", "integer", vec![], "contact already has a field 'plugin_score' (from another plugin)"),
        ("email", "text", vec![], "name: contact.email is a standard field"),
        ("code", "text", vec![("regex", text("("))], "regex: '(' is invalid"),
        ("size", "integer", vec![("min", Value::Int(5)), ("max", Value::Int(1))], "min: 5 is greater than max 1"),
    ];
    for (name, field_type, rest, expected) in refusals {
        let error = f.define("contact", name, field_type, &rest).await.unwrap_err();
        assert!(error.message.contains(expected), "expected '{expected}' in {error:?}");
    }
    // The input type is checked by the kernel before the plugin runs.
    let error = f.define("contact", "x", "number", &[]).await.unwrap_err();
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::Validation, Some("type")), "{error:?}");

    // Making a field unique over duplicate values is refused before the
    // kernel's index build would refuse it.
    f.define("contact", "code", "text", &[]).await.expect("code");
    for name in ["Ada", "Bob"] {
        f.create(&f.a, "contact", &[("first_name", text(name)), ("code", text("X"))]).await.unwrap();
    }
    let error = f
        .invoke("change-field", &[("object", text("contact")), ("name", text("code")), ("unique", Value::Bool(true))])
        .await
        .unwrap_err();
    assert!(error.message.contains("unique: contact.code holds 'X' more than once"), "{error:?}");
    let metadata = f.kernel.tenant(&f.a).unwrap().metadata();
    assert!(!metadata.object("contact").unwrap().field("code").unwrap().unique);

    // Nothing refused was stored: the next change applies cleanly.
    let listed = f.invoke("list-fields", &[("object", text("contact"))]).await.expect("list");
    let listed: serde_json::Value = serde_json::from_str(listed["fields"].as_text().unwrap()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    f.define("contact", "nickname", "text", &[("max_length", Value::Int(5))]).await.expect("a later definition applies");
    assert_eq!(f.field_type(&f.a, "contact", "nickname"), Some(FieldType::Text));
}
