//! The bundled custom-fields plugin over GraphQL and the CLI: formula
//! fields, type changes that convert stored values, and custom fields
//! through export and import.


use serde_json::{Value, json};

use crate::support::{Server, assert_close, crm, data_dir, eventually, single_code, stderr, stdout};

const DEFINE: &str = "mutation($input: CustomFieldsDefineFieldInput!) { customFieldsDefineField(input: $input) { field } }";
const CHANGE: &str = "mutation($input: CustomFieldsChangeFieldInput!) { customFieldsChangeField(input: $input) { field } }";
const LIST: &str = "mutation { customFieldsListFields(input: {object: \"contact\"}) { fields } }";

/// Defines a custom field; panics with the server's answer if refused.
async fn define(server: &Server, input: Value) {
    server.ok(DEFINE, json!({ "input": input })).await;
}

/// The message of a request that fails with exactly one VALIDATION error.
async fn validation(server: &Server, query: &str, variables: Value) -> String {
    let body = server.gql(query, variables).await;
    assert_eq!(single_code(&body), "VALIDATION", "{body}");
    body["errors"][0]["message"].as_str().unwrap_or_default().to_string()
}

/// The stored definitions of contact fields, by name.
async fn contact_definitions(server: &Server) -> Vec<Value> {
    let body = server.ok(LIST, json!({})).await;
    serde_json::from_str(body["customFieldsListFields"]["fields"].as_str().expect("fields")).expect("fields are JSON")
}


/// Contact fields of the formula tests: a shoe size and two formulas over
/// it and the standard lead score.
async fn define_formulas(server: &Server) {
    define(server, json!({ "object": "contact", "name": "shoe_size", "type": "INTEGER", "max": 60 })).await;
    define(
        server,
        json!({ "object": "contact", "name": "size_band", "type": "FORMULA", "formulaType": "TEXT",
                "formula": "if(shoe_size >= 44, 'large', 'regular') & ' ' & first_name" }),
    )
    .await;
    define(
        server,
        json!({ "object": "contact", "name": "score_per_size", "type": "FORMULA", "formulaType": "NUMBER",
                "formula": "lead_score / shoe_size" }),
    )
    .await;
}

#[tokio::test]
async fn a_formula_computes_on_create_and_on_update_of_what_it_reads() {
    let server = Server::start(&[]).await;
    define_formulas(&server).await;
    let created = server
        .ok(
            "mutation { createContact(input: {firstName: \"Ada\", email: \"ada@example.com\", shoeSize: 45, leadScore: 90}) { id sizeBand scorePerSize } }",
            json!({}),
        )
        .await;
    let ada = created["createContact"]["id"].clone();
    assert_eq!(created["createContact"]["sizeBand"], "large Ada");
    assert_close(&created["createContact"]["scorePerSize"], 2.0);

    let update =
        "mutation($id: ID!, $input: UpdateContactInput!) { updateContact(id: $id, input: $input) { sizeBand scorePerSize } }";
    let updated = server.ok(update, json!({ "id": ada, "input": { "shoeSize": 40 } })).await;
    assert_eq!(updated["updateContact"]["sizeBand"], "regular Ada");
    assert_close(&updated["updateContact"]["scorePerSize"], 2.25);
    // A standard field the formula reads recomputes it as well.
    let renamed = server.ok(update, json!({ "id": ada, "input": { "firstName": "Ada L.", "leadScore": 20 } })).await;
    assert_eq!(renamed["updateContact"]["sizeBand"], "regular Ada L.");
    assert_close(&renamed["updateContact"]["scorePerSize"], 0.5);
    // Division by zero is null, not a failed write.
    let zero = server.ok(update, json!({ "id": ada, "input": { "shoeSize": 0 } })).await;
    assert_eq!(zero["updateContact"]["scorePerSize"], Value::Null);

    // Formula fields are ordinary fields for filters and sorting.
    server.ok("mutation { createContact(input: {firstName: \"Bo\", shoeSize: 46, leadScore: 92}) { id } }", json!({})).await;
    let large = server
        .ok("{ contacts(filter: {sizeBand: {startsWith: \"large\"}}, orderBy: [{field: SCORE_PER_SIZE}]) { totalCount nodes { firstName scorePerSize } } }", json!({}))
        .await;
    assert_eq!(large["contacts"]["totalCount"], 1);
    assert_close(&large["contacts"]["nodes"][0]["scorePerSize"], 2.0);
}

#[tokio::test]
async fn a_new_formula_is_computed_for_the_records_stored_before_it() {
    let server = Server::start(&[]).await;
    server.ok("mutation { createContact(input: {firstName: \"Old\", leadScore: 30}) { id } }", json!({})).await;
    define(
        &server,
        json!({ "object": "contact", "name": "double_score", "type": "FORMULA", "formulaType": "NUMBER", "formula": "lead_score * 2" }),
    )
    .await;
    let doubled = eventually("the condition", || async {
        let body = server.ok("{ contacts { nodes { doubleScore } } }", json!({})).await;
        let value = body["contacts"]["nodes"][0]["doubleScore"].clone();
        (!value.is_null()).then_some(value)
    })
    .await;
    assert_close(&doubled, 60.0);
    server.ok(CHANGE, json!({ "input": { "object": "contact", "name": "double_score", "formula": "lead_score * 3" } })).await;
    eventually("the condition", || async {
        let body = server.ok("{ contacts { nodes { doubleScore } } }", json!({})).await;
        (body["contacts"]["nodes"][0]["doubleScore"] == json!(90.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_bad_formula_is_refused_when_defined_naming_the_field_and_position() {
    let server = Server::start(&[]).await;
    define_formulas(&server).await;
    let unclosed = json!({ "object": "contact", "name": "bad", "type": "FORMULA", "formulaType": "NUMBER", "formula": "lead_score * (shoe_size" });
    let message = validation(&server, DEFINE, json!({ "input": unclosed })).await;
    assert_eq!(message, "formula: contact.bad at position 24: expected ')', found the end of the formula");
    let unknown =
        json!({ "object": "contact", "name": "bad", "type": "FORMULA", "formulaType": "NUMBER", "formula": "shoe_sise * 2" });
    let message = validation(&server, DEFINE, json!({ "input": unknown })).await;
    assert!(message.starts_with("formula: contact.bad at position 1: unknown field 'shoe_sise'"), "{message}");
    let mistyped =
        json!({ "object": "contact", "name": "bad", "type": "FORMULA", "formulaType": "NUMBER", "formula": "first_name * 2" });
    let message = validation(&server, DEFINE, json!({ "input": mistyped })).await;
    assert_eq!(message, "formula: contact.bad at position 1: '*' needs a number, not a text");
    let wrong_type = json!({ "object": "contact", "name": "score_per_size", "formula": "size_band" });
    let message = validation(&server, CHANGE, json!({ "input": wrong_type })).await;
    assert_eq!(message, "formula: contact.score_per_size at position 1: the formula gives a text, but formula_type is number");
    let reads_band = json!({ "object": "contact", "name": "score_per_size", "formula": "lead_score / len(size_band)" });
    server.ok(CHANGE, json!({ "input": reads_band })).await;
    let cycle = json!({ "object": "contact", "name": "size_band", "formula": "'x' & score_per_size" });
    let message = validation(&server, CHANGE, json!({ "input": cycle })).await;
    assert_eq!(message, "formula: contact.size_band is part of a cycle: size_band -> score_per_size -> size_band");
    let cycle = json!({ "object": "contact", "name": "score_per_size", "formula": "score_per_size + 1" });
    let message = validation(&server, CHANGE, json!({ "input": cycle })).await;
    assert_eq!(message, "formula: contact.score_per_size refers to itself");
    // Nothing of it was stored or entered the schema.
    let names: Vec<Value> = contact_definitions(&server).await.into_iter().map(|field| field["name"].clone()).collect();
    assert_eq!(names, [json!("score_per_size"), json!("shoe_size"), json!("size_band")]);
    let body = server.gql("{ contacts { nodes { bad } } }", json!({})).await;
    assert_eq!(single_code(&body), "VALIDATION", "{body}");
}

#[tokio::test]
async fn a_client_cannot_write_a_formula_field() {
    let server = Server::start(&[]).await;
    define_formulas(&server).await;
    let message = validation(
        &server,
        "mutation { createContact(input: {firstName: \"Ada\", shoeSize: 40, sizeBand: \"tiny\"}) { id } }",
        json!({}),
    )
    .await;
    assert!(message.starts_with("sizeBand: formula: is computed from its formula"), "{message}");
    assert_eq!(server.count("contacts").await, 0, "nothing was written");
    let created = server.ok("mutation { createContact(input: {firstName: \"Ada\", shoeSize: 40}) { id } }", json!({})).await;
    let message = validation(
        &server,
        "mutation($id: ID!) { updateContact(id: $id, input: {scorePerSize: 99}) { id } }",
        json!({ "id": created["createContact"]["id"] }),
    )
    .await;
    assert!(message.starts_with("scorePerSize: formula:"), "{message}");
}

/// `shoeSize` of every contact, by first name.
async fn shoe_sizes(server: &Server) -> Option<Vec<(String, Value)>> {
    let body = server.gql("{ contacts(orderBy: [{field: FIRST_NAME}]) { nodes { firstName shoeSize } } }", json!({})).await;
    if body.get("errors").is_some() {
        return None;
    }
    Some(
        body["data"]["contacts"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|node| (node["firstName"].as_str().unwrap_or_default().to_string(), node["shoeSize"].clone()))
            .collect(),
    )
}

#[tokio::test]
async fn a_type_change_converts_stored_values_or_is_refused_with_a_count() {
    let server = Server::start(&[]).await;
    define(&server, json!({ "object": "contact", "name": "shoe_size", "type": "TEXT" })).await;
    for (name, size) in [("Ada", "42"), ("Bo", "41"), ("Cy", "forty"), ("Di", "39.5")] {
        server
            .ok(
                "mutation($n: String!, $s: String!) { createContact(input: {firstName: $n, shoeSize: $s}) { id } }",
                json!({ "n": name, "s": size }),
            )
            .await;
    }
    server.ok("mutation { createContact(input: {firstName: \"Ed\"}) { id } }", json!({})).await;

    let to_integer = json!({ "input": { "object": "contact", "name": "shoe_size", "type": "INTEGER" } });
    let message = validation(&server, CHANGE, to_integer.clone()).await;
    assert_eq!(
        message,
        "type: cannot change contact.shoe_size from TEXT to INTEGER: 2 records hold values that are not integers"
    );
    // Refused: the definition, the schema and the values are as they were.
    assert_eq!(contact_definitions(&server).await[0]["type"], "text");
    let sizes = shoe_sizes(&server).await.expect("readable");
    assert_eq!(sizes[0], ("Ada".to_string(), json!("42")));

    // Decimal takes every value but one.
    let to_decimal = json!({ "input": { "object": "contact", "name": "shoe_size", "type": "DECIMAL" } });
    let message = validation(&server, CHANGE, to_decimal.clone()).await;
    assert_eq!(message, "type: cannot change contact.shoe_size from TEXT to DECIMAL: 1 record holds values that are not numbers");
    let cy = server.ok("{ contacts(filter: {firstName: {eq: \"Cy\"}}) { nodes { id } } }", json!({})).await;
    server
        .ok(
            "mutation($id: ID!) { updateContact(id: $id, input: {shoeSize: \"40\"}) { id } }",
            json!({ "id": cy["contacts"]["nodes"][0]["id"] }),
        )
        .await;
    let changed = server.ok(CHANGE, to_decimal).await;
    assert!(changed["customFieldsChangeField"]["field"].as_str().unwrap().contains(r#""type":"decimal""#), "{changed}");

    // The stored values are converted: numbers in GraphQL, compared as numbers.
    let expected = vec![
        ("Ada".to_string(), json!(42.0)),
        ("Bo".to_string(), json!(41.0)),
        ("Cy".to_string(), json!(40.0)),
        ("Di".to_string(), json!(39.5)),
        ("Ed".to_string(), Value::Null),
    ];
    eventually("the condition", || async { shoe_sizes(&server).await.filter(|sizes| *sizes == expected) }).await;
    let definitions = eventually("the condition", || async {
        let definitions = contact_definitions(&server).await;
        definitions[0].get("converting_from").is_none().then_some(definitions)
    })
    .await;
    assert_eq!(definitions[0]["type"], "decimal");
    let big = server.ok("{ contacts(filter: {shoeSize: {gt: 40.5}}) { totalCount } }", json!({})).await;
    assert_eq!(big["contacts"]["totalCount"], 2);
    let written =
        server.ok("mutation { createContact(input: {firstName: \"Fay\", shoeSize: 38.5}) { shoeSize } }", json!({})).await;
    assert_close(&written["createContact"]["shoeSize"], 38.5);

    // Decimal back to integer: refused while a value has a fraction.
    let message = validation(&server, CHANGE, to_integer).await;
    assert_eq!(
        message,
        "type: cannot change contact.shoe_size from DECIMAL to INTEGER: 2 records hold values that are not integers"
    );
}

/// Contacts with their custom fields, by email, as GraphQL shows them.
async fn contacts_with_custom_fields(server: &Server) -> Value {
    server
        .ok(
            "{ contacts(orderBy: [{field: EMAIL}]) { nodes { email firstName leadScore shoeSize budget budgetCurrency sizeBand scorePerSize } } }",
            json!({}),
        )
        .await["contacts"]["nodes"]
        .clone()
}

async fn define_round_trip_fields(server: &Server) {
    define_formulas(server).await;
    define(server, json!({ "object": "contact", "name": "budget", "type": "CURRENCY", "min": 0 })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_fields_round_trip_through_export_and_import() {
    let files = tempfile::tempdir().expect("temp dir");
    let source_dir = data_dir();
    let source = Server::start_in(source_dir.path(), &[]).await;
    define_round_trip_fields(&source).await;
    for input in [
        json!({ "firstName": "Ada", "email": "ada@example.com", "shoeSize": 45, "leadScore": 90, "budget": 1200.5, "budgetCurrency": "eur" }),
        json!({ "firstName": "Bo", "email": "bo@example.com", "shoeSize": 0, "leadScore": 10, "budget": 99 , "budgetCurrency": "USD" }),
        json!({ "firstName": "Cy", "email": "cy@example.com" }),
    ] {
        source
            .ok("mutation($input: CreateContactInput!) { createContact(input: $input) { id } }", json!({ "input": input }))
            .await;
    }
    let exported = contacts_with_custom_fields(&source).await;
    assert_eq!(exported[0]["budgetCurrency"], "EUR");
    assert_eq!(exported[0]["sizeBand"], "large Ada");
    assert_eq!(exported[1]["scorePerSize"], Value::Null, "10 / 0");
    source.kill9().await;

    let file = files.path().join("source.jsonl");
    let output = crm(source_dir.path(), &["export", "--tenant", "default", "--out", file.to_str().expect("path")]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&file).expect("read export");
    let ada: Value = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line"))
        .find(|line| line["fields"]["email"] == "ada@example.com")
        .expect("Ada is exported");
    assert_eq!(
        (&ada["fields"]["shoe_size"], &ada["fields"]["budget"], &ada["fields"]["budget_currency"], &ada["fields"]["size_band"]),
        (&json!(45), &json!(1200.5), &json!("EUR"), &json!("large Ada"))
    );
    assert_close(&ada["fields"]["score_per_size"], 2.0);

    // The same fields in another data directory, then the import.
    let target_dir = data_dir();
    let target = Server::start_in(target_dir.path(), &[]).await;
    define_round_trip_fields(&target).await;
    target.kill9().await;
    let broken = json!({ "object": "contact", "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "deleted_at": null,
                         "fields": { "first_name": "Dee", "email": "dee@example.com", "shoe_size": 75 } });
    let lines = text.lines().count();
    std::fs::write(&file, format!("{text}{broken}\n")).expect("append a bad row");
    let output = crm(target_dir.path(), &["import", "contacts", file.to_str().expect("path"), "--tenant", "default"]).await;
    let report = stdout(&output);
    assert!(output.status.success(), "{report}{}", stderr(&output));
    let report_lines: Vec<&str> = report.lines().collect();
    assert!(report_lines.iter().any(|line| line.starts_with("skipped ")), "{report}");
    assert!(
        report_lines.contains(&format!("line {}: rejected: shoe_size: max: must be at most 60", lines + 1).as_str()),
        "{report}"
    );
    assert_eq!(report_lines.last(), Some(&"imported into tenant 'default': 3 created, 0 updated, 0 unchanged, 1 rejected"));

    let target = Server::start_in(target_dir.path(), &[]).await;
    assert_eq!(contacts_with_custom_fields(&target).await, exported, "the imported contacts read as the exported ones");
    // Importing the same file again upserts the same contacts: the formula
    // values it carries are what the formulas give, so they are accepted.
    target.kill9().await;
    let output = crm(target_dir.path(), &["import", "contacts", file.to_str().expect("path"), "--tenant", "default"]).await;
    let report = stdout(&output);
    assert!(report.contains(": 0 created, ") && report.trim_end().ends_with(", 1 rejected"), "{report}");
    assert!(!report.contains("formula"), "{report}");
    let target = Server::start_in(target_dir.path(), &[]).await;
    assert_eq!(contacts_with_custom_fields(&target).await, exported);

    // CSV names custom fields by column, stored or GraphQL name.
    target.kill9().await;
    let csv = files.path().join("more.csv");
    std::fs::write(
        &csv,
        "first_name,email,shoeSize,budget,budget_currency,size_band\n\
         Eve,eve@example.com,44,10,gbp,\n\
         Fay,fay@example.com,61,,,\n\
         Gus,gus@example.com,40,,,large Gus\n",
    )
    .expect("write CSV");
    let output = crm(target_dir.path(), &["import", "contacts", csv.to_str().expect("path"), "--tenant", "default"]).await;
    let report = stdout(&output);
    let report_lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        report_lines,
        [
            "line 3: rejected: shoe_size: max: must be at most 60",
            "line 4: rejected: size_band: formula: is computed from its formula (regular Gus here) and cannot be written",
            "imported into tenant 'default': 1 created, 0 updated, 0 unchanged, 2 rejected",
        ],
        "{report}"
    );
    let target = Server::start_in(target_dir.path(), &[]).await;
    let eve = target
        .ok(
            "{ contacts(filter: {email: {eq: \"eve@example.com\"}}) { nodes { shoeSize budget budgetCurrency sizeBand } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        eve["contacts"]["nodes"][0],
        json!({ "shoeSize": 44, "budget": 10.0, "budgetCurrency": "GBP", "sizeBand": "large Eve" })
    );
}

/// Custom fields on an object another plugin declares (the test plugin
/// `follow-up` declares `follow_up_rule`): typed in the schema, validated,
/// refused when the name is taken, dormant while that plugin is disabled.
#[tokio::test]
async fn custom_fields_go_on_objects_other_plugins_declare() {
    let server = Server::start(&[]).await;
    crate::plugins::install_enable(&server, &server.key, "follow-up", json!({})).await;

    let unknown = validation(&server, DEFINE, json!({"input": {"object": "follow_up_rul", "name": "x", "type": "TEXT"}})).await;
    assert!(unknown.contains("object: 'follow_up_rul' is not an object of this tenant"), "{unknown}");
    let taken = validation(&server, DEFINE, json!({"input": {"object": "follow_up_rule", "name": "delay_ms", "type": "INTEGER"}})).await;
    assert!(taken.contains("follow_up_rule already has a field 'delay_ms'"), "{taken}");

    define(&server, json!({"object": "follow_up_rule", "name": "channel", "type": "SINGLE_SELECT", "required": true, "options": "call:Call, email:Email"})).await;
    define(&server, json!({"object": "follow_up_rule", "name": "days", "type": "INTEGER", "min": 1, "max": 30})).await;

    let created = server
        .ok("mutation { createFollowUpRule(input: {name: \"Call back\", channel: CALL, days: 3}) { id channel days } }", json!({}))
        .await;
    assert_eq!(created["createFollowUpRule"]["channel"], "CALL");
    assert_eq!(created["createFollowUpRule"]["days"], 3);
    let id = created["createFollowUpRule"]["id"].as_str().unwrap().to_string();
    let missing = validation(&server, "mutation { createFollowUpRule(input: {name: \"No channel\"}) { id } }", json!({})).await;
    assert!(missing.contains("channel") && missing.contains("required"), "{missing}");
    let too_many = validation(&server, "mutation { createFollowUpRule(input: {name: \"Later\", channel: EMAIL, days: 90}) { id } }", json!({})).await;
    assert!(too_many.starts_with("days: max"), "{too_many}");
    let filtered = server.ok("{ followUpRules(filter: {channel: {eq: CALL}, days: {lte: 5}}) { totalCount } }", json!({})).await;
    assert_eq!(filtered["followUpRules"]["totalCount"], 1);

    // With follow-up disabled its object is gone and the custom fields on it
    // are dormant: the tenant keeps working, and the fields come back with
    // their values when the plugin does.
    server.ok("mutation { disablePlugin(id: \"follow-up\") { status } }", json!({})).await;
    assert_eq!(single_code(&server.gql("{ followUpRules { totalCount } }", json!({})).await), "VALIDATION");
    server.ok("mutation { createContact(input: {firstName: \"Still\"}) { id } }", json!({})).await;
    let enabled = server.ok("mutation { enablePlugin(id: \"follow-up\") { status } }", json!({})).await;
    assert_eq!(enabled["enablePlugin"]["status"], "ENABLED");
    let back = server.ok("query($id: ID!) { followUpRule(id: $id) { channel days } }", json!({"id": id})).await;
    assert_eq!((back["followUpRule"]["channel"].as_str(), back["followUpRule"]["days"].as_i64()), (Some("CALL"), Some(3)), "{back}");
}

/// The server keeps parsed documents by query text across tenants; each
/// request is still validated against its own tenant's schema.
#[tokio::test]
async fn one_query_text_is_validated_against_each_tenants_own_schema() {
    let dir = data_dir();
    let key_beta = crate::support::create_tenant(dir.path(), "beta").await;
    let server = Server::start_in(dir.path(), &[]).await;
    define(&server, json!({ "object": "contact", "name": "shoe_size", "type": "INTEGER" })).await;
    server.ok("mutation { createContact(input: {firstName: \"Ada\", shoeSize: 41}) { id } }", json!({})).await;
    let query = "{ contacts { nodes { firstName shoeSize } } }";
    for _ in 0..2 {
        let body = server.ok(query, json!({})).await;
        assert_eq!(body["contacts"]["nodes"][0]["shoeSize"], json!(41), "{body}");
        // Tenant beta has no custom-fields plugin: the same text is refused there.
        let refused = server.gql_as(&key_beta, query, json!({})).await;
        assert_eq!(single_code(&refused), "VALIDATION", "{refused}");
        assert!(refused["errors"][0]["message"].as_str().unwrap_or_default().contains("shoeSize"), "{refused}");
    }
    // A text that does not parse is still reported, first time or not.
    for _ in 0..2 {
        let broken = server.gql("{ contacts { nodes { firstName ", json!({})).await;
        assert_eq!(single_code(&broken), "VALIDATION", "{broken}");
    }
}
