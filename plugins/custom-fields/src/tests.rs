//! The plugin through the SDK's test host: actions, the tenant schema and
//! the before-write hook, with the manifest's grants enforced.

use crm_plugin_sdk::manifest::{Failure, FieldKind, HookKind};
use crm_plugin_sdk::serde_json::{self, Value as Json};
use crm_plugin_sdk::testing::TestHost;

use super::*;
use crate::definition::{Definition, FieldType};

fn define(host: &TestHost, object: &str, name: &str, field_type: &str, rest: Fields) -> Result<Json> {
    let input = Fields::new().with("object", object).with("name", name).with("type", field_type);
    let mut input = input;
    input.merge(&rest);
    let output = host.invoke(&CustomFields, "define-field", input)?;
    Ok(serde_json::from_str(output.text("field").unwrap()).unwrap())
}

fn change(host: &TestHost, object: &str, name: &str, rest: Fields) -> Result<Json> {
    let mut input = Fields::new().with("object", object).with("name", name);
    input.merge(&rest);
    let output = host.invoke(&CustomFields, "change-field", input)?;
    Ok(serde_json::from_str(output.text("field").unwrap()).unwrap())
}

fn named(host: &TestHost, action: &str, object: &str, name: &str) -> Result<Json> {
    let output = host.invoke(&CustomFields, action, [("object", object), ("name", name)])?;
    Ok(serde_json::from_str(output.text("field").unwrap()).unwrap())
}

fn list(host: &TestHost, object: Option<&str>) -> Vec<Json> {
    let input = Fields::new().with("object", object);
    let output = host.invoke(&CustomFields, "list-fields", input).unwrap();
    serde_json::from_str(output.text("fields").unwrap()).unwrap()
}

/// `object.field: kind` of what the tenant schema adds.
fn schema(host: &TestHost) -> Vec<String> {
    let schema = host.tenant_schema(&CustomFields).unwrap();
    assert!(schema.objects.is_empty());
    schema
        .fields
        .iter()
        .map(|extension| format!("{}.{}: {:?}", extension.object, extension.field.name, extension.field.kind))
        .collect()
}

fn refused(result: Result<Json>, expected: &str) {
    let error = result.unwrap_err().to_string();
    assert!(error.contains(expected), "expected '{expected}' in: {error}");
}

fn write_error(host: &TestHost, change: Change) -> String {
    host.write(&CustomFields, change).unwrap_err().message().to_owned()
}

/// The fields of the end-to-end test: shoe size, tier, VIP code, budget.
fn seed_definitions(host: &TestHost) {
    define(host, "contact", "shoe_size", "integer", Fields::new().with("min", 30.0).with("max", 50.0)).unwrap();
    define(host, "contact", "tier", "single_select", Fields::new().with("options", "gold:Gold:#ffd700, silver:Silver")).unwrap();
    define(host, "contact", "vip_code", "text", Fields::new().with("unique", true).with("regex", "^[A-Z]{3}$")).unwrap();
    define(host, "company", "budget", "currency", Fields::new()).unwrap();
}

#[test]
fn the_manifest_hooks_and_reads_every_object() {
    let manifest = CustomFields.manifest();
    manifest.validate().unwrap();
    assert_eq!(manifest.id, "custom-fields");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    assert!(manifest.capabilities.kv && manifest.capabilities.schema);
    assert!(manifest.capabilities.timers, "conversions and formula backfills run on timers");
    assert!(!manifest.capabilities.events && manifest.capabilities.outbound.is_empty());
    let [hook] = manifest.hooks.as_slice() else { panic!("one hook: {:?}", manifest.hooks) };
    assert_eq!(
        (hook.kind, hook.object.as_str(), hook.failure, hook.ops.as_slice()),
        (HookKind::BeforeWrite, "*", Failure::Closed, &[Op::Create, Op::Update][..])
    );
    for object in names::OBJECTS.iter().chain(&["ticket"]) {
        let access = manifest.access_to(object).next().unwrap();
        assert!(access.fields.is_empty() && access.read && access.create && access.update && !access.delete, "{access:?}");
    }
    assert!(manifest.access_to("outbound_message").next().is_none(), "the channel objects are not reached by '*'");
    let actions: Vec<&str> = manifest.actions.iter().map(|action| action.name.as_str()).collect();
    assert_eq!(actions, ["define-field", "change-field", "archive-field", "restore-field", "list-fields"]);
    let define = &manifest.actions[0];
    let field_type = define.input.iter().find(|input| input.name == "type").unwrap();
    assert!(field_type.required && field_type.kind == FieldKind::Enumeration && field_type.options.len() == 15);
    assert!(!manifest.actions[1].input.iter().find(|input| input.name == "type").unwrap().required, "change keeps the type");
}

#[test]
fn defined_fields_enter_the_tenant_schema_typed() {
    let host = TestHost::new();
    assert!(schema(&host).is_empty());
    seed_definitions(&host);
    assert!(host.take_schema_changed(), "every definition change tells the kernel");
    assert_eq!(
        schema(&host),
        [
            "company.budget: Float",
            "company.budget_currency: Text",
            "contact.shoe_size: Integer",
            "contact.tier: Enumeration",
            "contact.vip_code: Text",
        ]
    );
    let extensions = host.tenant_schema(&CustomFields).unwrap().fields;
    let vip = extensions.iter().find(|extension| extension.field.name == "vip_code").unwrap();
    assert!(vip.field.unique && vip.field.indexed);
    let tier = extensions.iter().find(|extension| extension.field.name == "tier").unwrap();
    assert_eq!(tier.field.options, ["gold", "silver"]);

    let stored = host.kv_get("field:contact:shoe_size").expect("one kv key per object and field");
    let stored: Json = serde_json::from_slice(&stored).unwrap();
    assert_eq!(
        (stored["type"].as_str(), stored["min"].as_f64(), stored["max"].as_f64()),
        (Some("integer"), Some(30.0), Some(50.0))
    );

    let all = list(&host, None);
    let names: Vec<String> =
        all.iter().map(|field| format!("{}.{}", field["object"].as_str().unwrap(), field["name"].as_str().unwrap())).collect();
    assert_eq!(names, ["company.budget", "contact.shoe_size", "contact.tier", "contact.vip_code"]);
    assert_eq!(list(&host, Some("company")).len(), 1);
    assert_eq!(all[2]["options"][0], serde_json::json!({"key": "gold", "label": "Gold", "color": "#ffd700"}));
}

#[test]
fn every_type_can_be_defined() {
    let host = TestHost::new();
    host.insert("company", [("name", "Acme")]);
    for (name, field_type, rest) in [
        ("a_text", "text", Fields::new().with("max_length", 10)),
        ("a_long_text", "long_text", Fields::new()),
        ("an_integer", "integer", Fields::new().with("default", "3")),
        ("a_decimal", "decimal", Fields::new().with("min", 0.5)),
        ("a_currency", "currency", Fields::new().with("currency", "EUR")),
        ("a_date", "date", Fields::new().with("default", "today")),
        ("a_datetime", "datetime", Fields::new().with("default", "now")),
        ("a_boolean", "boolean", Fields::new().with("default", "false")),
        ("a_single_select", "single_select", Fields::new().with("options", "x,y")),
        ("a_multi_select", "multi_select", Fields::new().with("options", r#"["x", "y"]"#)),
        ("an_email", "email", Fields::new().with("unique", true)),
        ("a_url", "url", Fields::new()),
        ("a_phone", "phone", Fields::new()),
        ("a_relation_id", "relation", Fields::new().with("target", "company")),
    ] {
        define(&host, "deal", name, field_type, rest).unwrap_or_else(|error| panic!("{field_type}: {error}"));
    }
    let kinds: Vec<String> = schema(&host).into_iter().map(|line| line.replace("deal.", "")).collect();
    assert_eq!(
        kinds,
        [
            "a_boolean: Boolean",
            "a_currency: Float",
            "a_currency_currency: Text",
            "a_date: Date",
            "a_datetime: Datetime",
            "a_decimal: Float",
            "a_long_text: LongText",
            "a_multi_select: Tags",
            "a_phone: Phone",
            "a_relation_id: Reference",
            "a_single_select: Enumeration",
            "a_text: Text",
            "a_url: Url",
            "an_email: Email",
            "an_integer: Integer",
        ]
    );
}

#[test]
fn definitions_are_checked_before_they_are_stored() {
    let host = TestHost::new();
    seed_definitions(&host);
    host.take_schema_changed();
    refused(define(&host, "contact", "shoe_size", "text", Fields::new()), "name: contact.shoe_size is already a custom field");
    refused(define(&host, "contact", "email", "text", Fields::new()), "name: contact.email is a standard field");
    refused(define(&host, "contact", "created_at", "datetime", Fields::new()), "name: contact.created_at is a system field");
    refused(define(&host, "company", "budget_currency", "text", Fields::new()), "is taken by the custom field budget");
    define(&host, "company", "fee_currency", "text", Fields::new()).unwrap();
    refused(
        define(&host, "company", "fee", "currency", Fields::new()),
        "name: company.fee_currency is taken by the custom field fee_currency",
    );
    refused(define(&host, "outbound_message", "x", "text", Fields::new()), "object: 'outbound_message' is not an object of this tenant");
    refused(define(&host, "Ticket", "x", "text", Fields::new()), "object: 'Ticket' is not an object of this tenant");
    refused(
        define(&host, "contact", "company", "text", Fields::new()),
        "name: contact.company is the GraphQL name of a standard relation",
    );
    refused(define(&host, "contact", "not", "boolean", Fields::new()), "name: contact.not is a name the GraphQL schema uses");
    define(&host, "contact", "partner", "text", Fields::new()).unwrap();
    refused(
        define(&host, "contact", "partner_id", "relation", Fields::new().with("target", "company")),
        "name: contact.partner is taken by the custom field partner",
    );
    refused(define(&host, "contact", "Shoe", "text", Fields::new()), "name: 'Shoe' must start with a-z");
    refused(define(&host, "contact", "x", "number", Fields::new()), "type: 'number' is not one of text, long_text");
    refused(define(&host, "contact", "x", "text", Fields::new().with("regex", "[")), "regex: '[' is invalid");
    refused(
        define(&host, "contact", "x", "integer", Fields::new().with("default", "12").with("min", 30.0)),
        "default: '12' breaks min",
    );
    refused(
        define(
            &host,
            "contact",
            "x_id",
            "relation",
            Fields::new().with("target", "company").with("default", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ),
        "default: there is no company with id 01ARZ3NDEKTSV4RRFFQ69G5FAV",
    );
    refused(
        host.invoke(&CustomFields, "define-field", [("object", "contact"), ("name", "x")]).map(|_| Json::Null),
        "type: is required",
    );
    assert_eq!(list(&host, None).len(), 6, "nothing refused was stored");
    host.take_schema_changed();
    refused(
        define(&host, "contact", "x", "integer", Fields::new().with("min", 60.0).with("max", 50.0)),
        "min: 60 is greater than max 50",
    );
    assert!(!host.take_schema_changed());
}

#[test]
fn a_tenant_has_at_most_so_many_fields() {
    let host = TestHost::new();
    for index in 0..store::MAX_FIELDS {
        host.kv_set(&format!("field:deal:f{index}"), Definition::new("deal", &format!("f{index}"), FieldType::Text, 0).to_json());
    }
    refused(define(&host, "contact", "one_more", "text", Fields::new()), "at most 500 custom fields");
}

#[test]
fn values_are_validated_and_rejections_name_field_and_rule() {
    let host = TestHost::new();
    seed_definitions(&host);
    define(&host, "contact", "nickname", "text", Fields::new().with("min_length", 2).with("max_length", 5)).unwrap();
    define(&host, "contact", "skills", "multi_select", Fields::new().with("options", "rust,go")).unwrap();
    define(&host, "contact", "badge", "text", Fields::new().with("required", true).with("default", "none")).unwrap();
    define(&host, "contact", "employee_no", "integer", Fields::new().with("required", true)).unwrap();
    let ada = || Fields::new().with("first_name", "Ada").with("employee_no", 1);

    for (field, value, expected) in [
        ("shoe_size", Value::Int(29), "shoe_size: min: must be at least 30"),
        ("shoe_size", Value::Int(51), "shoe_size: max: must be at most 50"),
        ("tier", Value::from("bronze"), "tier: options: 'bronze' is not one of gold, silver"),
        ("vip_code", Value::from("ab1"), "vip_code: regex: must match ^[A-Z]{3}$"),
        ("nickname", Value::from("A"), "nickname: min_length: must be at least 2 characters"),
        ("nickname", Value::from("Adaline"), "nickname: max_length: must be at most 5 characters"),
        ("skills", Value::from(vec!["rust", "cobol"]), "skills: options: 'cobol' is not one of rust, go"),
    ] {
        assert_eq!(write_error(&host, Change::create("contact", ada().with(field, value.clone()))), expected, "{field}");
    }
    assert_eq!(
        write_error(&host, Change::create("contact", [("first_name", "Ada")])),
        "employee_no: required: a value is required"
    );
    let budget = Change::create("company", [("name", Value::from("Acme")), ("budget", Value::Float(5.0))]);
    assert_eq!(write_error(&host, budget), "budget_currency: currency: budget needs a currency code (such as EUR)");
    assert!(host.records("contact").is_empty() && host.records("company").is_empty(), "nothing written");

    let stored = host
        .write(
            &CustomFields,
            Change::create(
                "contact",
                ada()
                    .with("shoe_size", 42)
                    .with("tier", "gold")
                    .with("vip_code", "ABC")
                    .with("nickname", "Ada")
                    .with("skills", vec!["go", "rust"]),
            ),
        )
        .unwrap();
    assert_eq!(stored.text("badge"), Some("none"), "the default was patched in");
    assert_eq!((stored.int("shoe_size"), stored.text("tier"), stored.text("vip_code")), (Some(42), Some("gold"), Some("ABC")));

    // Updates: only what changes is judged; a required value stays.
    let before = stored.fields.clone();
    let unchanged = Change::update("contact", &stored.id, before.clone(), before.clone().with("first_name", "Augusta"));
    host.write(&CustomFields, unchanged).unwrap();
    let cleared = Change::update("contact", &stored.id, before.clone(), before.clone().with("employee_no", Value::Null));
    assert_eq!(write_error(&host, cleared), "employee_no: required: cannot be cleared");
    let too_big = Change::update("contact", &stored.id, before.clone(), before.clone().with("shoe_size", 99));
    assert_eq!(write_error(&host, too_big), "shoe_size: max: must be at most 50");
    assert_eq!(host.record("contact", &stored.id).unwrap().int("shoe_size"), Some(42));

    let company = host
        .write(
            &CustomFields,
            Change::create(
                "company",
                [("name", Value::from("Acme")), ("budget", Value::Float(5.0)), ("budget_currency", Value::from("usd"))],
            ),
        )
        .unwrap();
    assert_eq!(company.text("budget_currency"), Some("USD"));
}

#[test]
fn change_field_changes_types_that_convert() {
    let host = TestHost::new();
    seed_definitions(&host);
    host.take_schema_changed();
    refused(
        change(&host, "company", "budget", Fields::new().with("type", "decimal")),
        "type: cannot change company.budget from CURRENCY to DECIMAL: a currency field stores an amount and a code",
    );
    refused(
        change(&host, "contact", "shoe_size", Fields::new().with("type", "date")),
        "type: cannot change contact.shoe_size from INTEGER to DATE: there is no conversion from integer to date",
    );
    refused(change(&host, "contact", "nope", Fields::new()), "name: contact.nope is not a custom field");

    let changed = change(&host, "contact", "tier", Fields::new().with("type", "text").with("max_length", 10)).unwrap();
    assert_eq!(
        (changed["type"].as_str(), changed.get("options"), changed["max_length"].as_u64()),
        (Some("text"), None, Some(10))
    );
    assert!(host.take_schema_changed());
    assert!(schema(&host).contains(&"contact.tier: Text".to_owned()));

    // Absent inputs keep their value, null clears one.
    let changed =
        change(&host, "contact", "shoe_size", Fields::new().with("max", Value::Null).with("label", "Shoe size")).unwrap();
    assert_eq!((changed["min"].as_f64(), changed.get("max"), changed["label"].as_str()), (Some(30.0), None, Some("Shoe size")));
    host.take_schema_changed();
    change(&host, "contact", "shoe_size", Fields::new().with("label", "Shoe size")).unwrap();
    assert!(!host.take_schema_changed(), "no change, no schema refresh");
    refused(change(&host, "contact", "shoe_size", Fields::new().with("regex", "x")), "regex: applies only to text");
    let error =
        host.write(&CustomFields, Change::create("contact", [("first_name", Value::from("A")), ("shoe_size", Value::Int(99))]));
    assert!(error.is_ok(), "max was cleared");
}

#[test]
fn a_type_change_converts_stored_values_or_counts_what_blocks_it() {
    let host = TestHost::new();
    define(&host, "contact", "shoe_size", "text", Fields::new()).unwrap();
    let ada = host.insert("contact", [("first_name", "Ada"), ("shoe_size", "42")]);
    let bea = host.insert("contact", [("first_name", "Bea"), ("shoe_size", "thirty")]);
    host.insert("contact", [("first_name", "Cy"), ("shoe_size", "39.5")]);
    host.insert("contact", [("first_name", "Di")]);
    host.take_schema_changed();
    refused(
        change(&host, "contact", "shoe_size", Fields::new().with("type", "integer")),
        "type: cannot change contact.shoe_size from TEXT to INTEGER: 2 records hold values that are not integers",
    );
    assert!(!host.take_schema_changed() && host.timers().is_empty(), "a refused change changes nothing");
    assert_eq!(list(&host, Some("contact"))[0]["type"], "text");

    // Decimal takes all three; min 40 is broken by one of them.
    refused(
        change(&host, "contact", "shoe_size", Fields::new().with("type", "decimal").with("min", 40.0)),
        "from TEXT to DECIMAL: 1 record holds values that are not numbers; 1 record holds values that would break min: must be at least 40",
    );
    host.write(&CustomFields, Change::update("contact", &bea.id, bea.fields.clone(), bea.fields.clone().with("shoe_size", "38")))
        .unwrap();
    refused(
        change(&host, "contact", "shoe_size", Fields::new().with("type", "decimal").with("min", 39.0)),
        "1 record holds values that would break min: must be at least 39",
    );
    let changed = change(&host, "contact", "shoe_size", Fields::new().with("type", "decimal")).unwrap();
    assert_eq!((changed["type"].as_str(), changed["converting_from"].as_str()), (Some("decimal"), Some("text")));
    assert!(host.take_schema_changed());
    host.advance(jobs::FIRST_RUN_AFTER_MS);
    assert_eq!(host.fire_due_timers(&CustomFields).unwrap(), 1, "the conversion runs on a timer");
    let sizes: Vec<Value> =
        host.records("contact").iter().map(|record| record.get("shoe_size").cloned().unwrap_or_default()).collect();
    assert_eq!(sizes, [Value::Float(42.0), Value::Float(38.0), Value::Float(39.5), Value::Null]);
    assert_eq!(list(&host, Some("contact"))[0].get("converting_from"), None, "done");
    assert_eq!(host.record("contact", &ada.id).unwrap().get("shoe_size"), Some(&Value::Float(42.0)));
}

#[test]
fn a_value_not_yet_converted_is_converted_when_its_record_is_written() {
    let host = TestHost::new();
    define(&host, "contact", "since", "text", Fields::new()).unwrap();
    let ada = host.insert("contact", [("first_name", "Ada"), ("since", "2026-01-31")]);
    let changed = change(&host, "contact", "since", Fields::new().with("type", "datetime")).unwrap();
    assert_eq!(changed["converting_from"], "text");
    let before = host.record("contact", &ada.id).unwrap().fields;
    let decision = host
        .before_write(
            &CustomFields,
            vec![Change::update("contact", &ada.id, before.clone(), before.with("first_name", "Ada L."))],
        )
        .unwrap();
    assert_eq!(decision, [Decision::patch([("since", Value::Int(1_769_817_600_000))])]);
}

#[test]
fn change_field_checks_stored_values() {
    let host = TestHost::new();
    define(&host, "contact", "code", "text", Fields::new()).unwrap();
    define(&host, "contact", "tier", "single_select", Fields::new().with("options", "gold,silver,bronze")).unwrap();
    host.insert("contact", [("first_name", "A"), ("code", "X"), ("tier", "gold")]);
    host.insert("contact", [("first_name", "B"), ("code", "X")]);
    refused(
        change(&host, "contact", "code", Fields::new().with("unique", true)),
        "unique: contact.code holds 'X' more than once",
    );
    refused(
        change(&host, "contact", "tier", Fields::new().with("options", "silver,bronze")),
        "options: cannot remove gold: 1 records still hold it",
    );
    let reordered = change(&host, "contact", "tier", Fields::new().with("options", "bronze,gold")).unwrap();
    let keys: Vec<&str> = reordered["options"].as_array().unwrap().iter().map(|option| option["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["bronze", "gold"], "an unused option goes, the order is the admin's");
}

#[test]
fn archived_fields_leave_the_schema_and_keep_their_definition() {
    let host = TestHost::new();
    seed_definitions(&host);
    define(&host, "contact", "badge", "text", Fields::new().with("required", true)).unwrap();
    host.take_schema_changed();
    let archived = named(&host, "archive-field", "contact", "vip_code").unwrap();
    assert_eq!(archived["archived"], true);
    assert!(host.take_schema_changed());
    assert!(!schema(&host).iter().any(|line| line.contains("vip_code")));
    let listed = list(&host, Some("contact"));
    assert!(listed.iter().any(|field| field["name"] == "vip_code" && field["archived"] == true), "archived fields are listed");

    named(&host, "archive-field", "contact", "badge").unwrap();
    host.write(&CustomFields, Change::create("contact", [("first_name", "Ada"), ("vip_code", "lowercase is fine now")]))
        .unwrap_or_else(|error| panic!("archived rules no longer apply: {error}"));
    refused(
        change(&host, "contact", "vip_code", Fields::new().with("label", "x")),
        "is archived; restore it with restore-field first",
    );
    refused(define(&host, "contact", "vip_code", "text", Fields::new()), "it is archived: restore it with restore-field");

    let restored = named(&host, "restore-field", "contact", "vip_code").unwrap();
    assert_eq!(restored["archived"], false);
    assert!(schema(&host).contains(&"contact.vip_code: Text".to_owned()));
    refused(named(&host, "archive-field", "contact", "nope"), "contact.nope is not a custom field");
}

#[test]
fn before_write_reads_definitions_only_of_objects_with_changes() {
    let host = TestHost::new();
    seed_definitions(&host);
    let decisions = host
        .before_write(
            &CustomFields,
            vec![
                Change::create("contact", [("first_name", Value::from("Ada")), ("shoe_size", Value::from("not a number"))]),
                Change::create("deal", [("name", "Big")]),
                Change::create("contact", [("first_name", Value::from("Bob")), ("shoe_size", Value::Int(40))]),
            ],
        )
        .unwrap();
    assert_eq!(decisions[0], Decision::reject_field("shoe_size", "type: expected a number, got 'not a number'"));
    assert!(decisions[1].is_accept() && decisions[2].is_accept());
}

#[test]
fn a_corrupt_definition_fails_the_hook_closed() {
    let host = TestHost::new();
    host.kv_set("field:contact:broken", "{not json");
    let error = host.write(&CustomFields, Change::create("contact", [("first_name", "Ada")])).unwrap_err();
    assert!(error.message().contains("field:contact:broken is unreadable"), "{error}");
}

fn define_formula(host: &TestHost, object: &str, name: &str, formula: &str, formula_type: &str) -> Result<Json> {
    define(host, object, name, "formula", Fields::new().with("formula", formula).with("formula_type", formula_type))
}

#[test]
fn formula_fields_compute_on_create_and_on_update_of_what_they_read() {
    let host = TestHost::new();
    define(&host, "deal", "quantity", "integer", Fields::new()).unwrap();
    define_formula(&host, "deal", "total", "amount * quantity", "number").unwrap();
    define_formula(&host, "deal", "size", "if(total >= 1000, 'large', 'small')", "text").unwrap();
    assert!(schema(&host).contains(&"deal.total: Float".to_owned()) && schema(&host).contains(&"deal.size: Text".to_owned()));

    let deal = host
        .write(
            &CustomFields,
            Change::create(
                "deal",
                [("name", Value::from("Printers")), ("amount", Value::Float(400.0)), ("quantity", Value::Int(2))],
            ),
        )
        .unwrap();
    assert_eq!((deal.get("total"), deal.text("size")), (Some(&Value::Float(800.0)), Some("small")));

    let before = deal.fields.clone();
    let updated =
        host.write(&CustomFields, Change::update("deal", &deal.id, before.clone(), before.clone().with("quantity", 3))).unwrap();
    assert_eq!((updated.get("total"), updated.text("size")), (Some(&Value::Float(1200.0)), Some("large")));

    let cleared = host
        .write(
            &CustomFields,
            Change::update("deal", &deal.id, updated.fields.clone(), updated.fields.clone().with("quantity", Value::Null)),
        )
        .unwrap();
    assert_eq!((cleared.get("total"), cleared.text("size")), (None, Some("small")), "null propagates; null >= 1000 is not true");
}

#[test]
fn a_formula_field_cannot_be_written() {
    let host = TestHost::new();
    define_formula(&host, "deal", "double", "amount * 2", "number").unwrap();
    assert_eq!(
        write_error(
            &host,
            Change::create("deal", [("name", Value::from("A")), ("amount", Value::Float(5.0)), ("double", Value::Float(7.0))])
        ),
        "double: formula: is computed from its formula (10 here) and cannot be written"
    );
    // The value the formula gives anyway is let through (an exported record imports unchanged).
    let same =
        Change::create("deal", [("name", Value::from("A")), ("amount", Value::Float(5.0)), ("double", Value::Float(10.0))]);
    assert_eq!(host.write(&CustomFields, same).unwrap().get("double"), Some(&Value::Float(10.0)));
}

#[test]
fn formulas_are_checked_when_defined_or_changed() {
    let host = TestHost::new();
    refused(
        define_formula(&host, "deal", "total", "amount * (quantity", "number"),
        "formula: deal.total at position 19: expected ')', found the end of the formula",
    );
    refused(
        define_formula(&host, "deal", "total", "amount * quantity", "number"),
        "formula: deal.total at position 10: unknown field 'quantity'",
    );
    refused(define_formula(&host, "deal", "total", "total + 1", "number"), "formula: deal.total refers to itself");
    refused(define_formula(&host, "deal", "label", "amount + 1", "text"), "the formula gives a number, but formula_type is text");
    define(&host, "deal", "quantity", "integer", Fields::new()).unwrap();
    define_formula(&host, "deal", "a", "quantity + 1", "number").unwrap();
    define_formula(&host, "deal", "b", "a * 2", "number").unwrap();
    refused(
        change(&host, "deal", "a", Fields::new().with("formula", "b + 1")),
        "formula: deal.a is part of a cycle: a -> b -> a",
    );
    refused(
        named(&host, "archive-field", "deal", "quantity"),
        "formula: deal.a at position 1: quantity is an archived custom field",
    );
    refused(
        change(&host, "deal", "quantity", Fields::new().with("type", "text")),
        "formula: deal.a at position 1: '+' needs a number, not a text",
    );
    assert_eq!(list(&host, Some("deal")).iter().filter(|field| field["type"] == "formula").count(), 2, "nothing stored");
}

#[test]
fn a_new_formula_is_computed_for_stored_records() {
    let host = TestHost::new();
    let old = host.insert("deal", [("name", Value::from("Old")), ("amount", Value::Float(10.0))]);
    define_formula(&host, "deal", "double", "amount * 2", "number").unwrap();
    host.advance(jobs::FIRST_RUN_AFTER_MS);
    assert_eq!(host.fire_due_timers(&CustomFields).unwrap(), 1);
    assert_eq!(host.record("deal", &old.id).unwrap().get("double"), Some(&Value::Float(20.0)));
    change(&host, "deal", "double", Fields::new().with("formula", "amount * 3")).unwrap();
    host.advance(jobs::FIRST_RUN_AFTER_MS);
    assert_eq!(host.fire_due_timers(&CustomFields).unwrap(), 1);
    assert_eq!(host.record("deal", &old.id).unwrap().get("double"), Some(&Value::Float(30.0)));
}
