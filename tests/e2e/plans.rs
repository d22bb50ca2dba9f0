//! Query plans: a server that answers repeated query texts from plans must
//! give the answers of a server that runs every request through the
//! GraphQL engine, errors included, on the same data. Plans write the keys
//! of an object in the order of the selection, as the GraphQL spec asks;
//! the engine writes fields that waited for a load after the others.

use serde_json::{Value, json};

use crate::support::{Server, data_dir};

const ONE_WITH_COMPANY: &str = "query One($id: ID!) { contact(id: $id) { id company { id name } } }";
const PAGE: &str = "query Page($stage: ContactLifecycleStage!) { contacts(first: 50, filter: { lifecycleStage: { eq: $stage } }, orderBy: [{ field: CREATED_AT, direction: ASC }]) { nodes { id firstName lastName email lifecycleStage leadScore createdAt company { name } } } }";
const PAGED: &str = "query Paged($after: String) { contacts(first: 2, after: $after, orderBy: [{ field: LAST_NAME }]) { __typename totalCount pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor } edges { __typename cursor node { id lastName } } } }";

/// The requests both servers answer, each sent three times in a row: a
/// text is planned when it comes the second time, and the third request is
/// answered by its plan.
fn requests(ids: &Ids) -> Vec<(&'static str, Value)> {
    vec![
        // One contact by id, every kind of field, aliases and __typename.
        (
            "query One($id: ID!) { contact(id: $id) { __typename id version firstName lastName email phone title lifecycleStage leadScore source tags emailOptIn createdAt updatedAt deletedAt companyId who: firstName company { __typename id name industry } } }",
            json!({ "id": ids.ada }),
        ),
        // A contact whose company was deleted: the relation is null.
        (ONE_WITH_COMPANY, json!({ "id": ids.orphan })),
        // A filtered, sorted page with its company.
        (PAGE, json!({ "stage": "LEAD" })),
        // Every part of a connection, and a second page through a cursor.
        (PAGED, json!({ "after": null })),
        // Nested: contacts → company, deals and activities, with counts.
        (
            "query Nested($stage: ContactLifecycleStage!) { contacts(first: 20, filter: { lifecycleStage: { eq: $stage } }, orderBy: [{ field: CREATED_AT, direction: DESC }]) { nodes { id firstName company { id name industry } deals(first: 10) { totalCount nodes { id name stage amount closeDate } } activities(first: 1, orderBy: [{ field: SUBJECT, direction: DESC }]) { totalCount pageInfo { hasNextPage endCursor } nodes { id kind subject occurredAt } } } } }",
            json!({ "stage": "CUSTOMER" }),
        ),
        // From the other side: a company's contacts and deals, two root fields.
        (
            "query Both($id: ID!) { company(id: $id) { name contacts(first: 5) { nodes { firstName } } deals { totalCount nodes { name contact { lastName } } } } all: companies(first: 10, orderBy: [{ field: NAME, direction: DESC }]) { nodes { name } } }",
            json!({ "id": ids.acme }),
        ),
        // A page size from a variable.
        ("query Sized($first: Int) { contacts(first: $first, orderBy: [{ field: LAST_NAME }]) { nodes { id } } }", json!({ "first": 2 })),
        // Errors through the texts above, now planned: no such record, a
        // deleted record, a value the enum does not have, a variable of the
        // wrong type, a missing variable, a page too large, a bad cursor.
        (ONE_WITH_COMPANY, json!({ "id": "01J00000000000000000000000" })),
        (ONE_WITH_COMPANY, json!({ "id": ids.deleted })),
        (PAGE, json!({ "stage": "SHOPPER" })),
        (PAGE, json!({ "stage": 3 })),
        (PAGE, json!({})),
        ("query Sized($first: Int) { contacts(first: $first, orderBy: [{ field: LAST_NAME }]) { nodes { id } } }", json!({ "first": 100000 })),
        (PAGED, json!({ "after": "not a cursor" })),
    ]
}

struct Ids {
    ada: String,
    orphan: String,
    deleted: String,
    acme: String,
}

async fn seed(server: &Server) -> Ids {
    let company = |name: &str, industry: &str| {
        let query = "mutation($name: String!, $industry: String) { createCompany(input: {name: $name, industry: $industry}) { id } }";
        let variables = json!({ "name": name, "industry": industry });
        async move { server.ok(query, variables).await["createCompany"]["id"].as_str().expect("id").to_string() }
    };
    let acme = company("Acme", "Manufacturing").await;
    let globex = company("Globex", "Energy").await;
    let contact = |input: Value| async move {
        let query = "mutation($input: CreateContactInput!) { createContact(input: $input) { id } }";
        server.ok(query, json!({ "input": input })).await["createContact"]["id"].as_str().expect("id").to_string()
    };
    let ada = contact(json!({ "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "phone": "+44 20 1234",
        "title": "Analyst", "lifecycleStage": "LEAD", "leadScore": 42, "source": "web", "tags": ["math", "vip"],
        "emailOptIn": true, "companyId": acme }))
    .await;
    let grace = contact(json!({ "firstName": "Grace", "lastName": "Hopper", "lifecycleStage": "CUSTOMER", "companyId": acme })).await;
    contact(json!({ "firstName": "Alan", "lastName": "Turing", "lifecycleStage": "LEAD" })).await;
    contact(json!({ "firstName": "Edsger", "lastName": "Dijkstra", "lifecycleStage": "CUSTOMER" })).await;
    let orphan = contact(json!({ "firstName": "Orphan", "lastName": "Annie", "lifecycleStage": "LEAD", "companyId": globex })).await;
    let deleted = contact(json!({ "firstName": "Gone", "lastName": "Away", "lifecycleStage": "LEAD" })).await;
    server.ok("mutation($id: ID!) { deleteContact(id: $id) { id } }", json!({ "id": deleted })).await;
    server.ok("mutation($id: ID!) { deleteCompany(id: $id) { id } }", json!({ "id": globex })).await;
    for (name, amount) in [("Printers", 100), ("Paper", 20)] {
        server
            .ok(
                "mutation($c: ID!, $p: ID!, $n: String!, $a: Float) { createDeal(input: {name: $n, companyId: $c, contactId: $p, amount: $a}) { id } }",
                json!({ "c": acme, "p": grace, "n": name, "a": amount }),
            )
            .await;
    }
    for subject in ["Call", "Demo", "Follow-up"] {
        server
            .ok(
                "mutation($p: ID!, $s: String!) { createActivity(input: {kind: CALL, subject: $s, contactId: $p, occurredAt: \"2026-01-02T03:04:05.000Z\"}) { id } }",
                json!({ "p": grace, "s": subject }),
            )
            .await;
    }
    Ids { ada, orphan, deleted, acme }
}

/// Each request three times in a row; the raw bodies.
async fn answers(server: &Server, requests: &[(&str, Value)]) -> Vec<String> {
    let mut out = Vec::new();
    for (query, variables) in requests {
        for _ in 0..3 {
            let reply = server.post_gql(Some(&server.key), query, variables.clone()).await;
            assert_eq!(reply.status, 200, "{query}: {}", reply.text);
            out.push(reply.text);
        }
    }
    out
}

/// A counter from `/metrics`.
async fn counter(server: &Server, name: &str) -> u64 {
    let metrics = server.get("/metrics", &[]).await.text;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_answers_are_the_engines() {
    let dir = data_dir();
    let engine = Server::start_in(dir.path(), &["--no-bundled-plugins", "--query-plans", "0"]).await;
    let ids = seed(&engine).await;
    let requests = requests(&ids);
    let expected = answers(&engine, &requests).await;
    assert_eq!(counter(&engine, "crm_graphql_planned_total").await, 0, "plans are off");
    engine.kill9().await;

    let planned = Server::start_in(dir.path(), &["--no-bundled-plugins"]).await;
    let got = answers(&planned, &requests).await;
    for (index, (expected, got)) in expected.iter().zip(&got).enumerate() {
        let (query, variables) = &requests[index / 3];
        let parse = |text: &str| serde_json::from_str::<Value>(text).expect("a JSON body");
        assert_eq!(parse(got), parse(expected), "request {} (sent {} times) {query} with {variables}", index / 3, index % 3 + 1);
    }
    // Seven texts answer without error; each is planned at its second
    // request, so plans answer the third. The seven error requests, three
    // times each, went through one of those plans and back to the engine.
    assert_eq!(counter(&planned, "crm_graphql_planned_total").await, 7);
    assert_eq!(counter(&planned, "crm_graphql_plan_fallbacks_total").await, 21);
    // The sanity of the comparison: errors really are errors.
    let not_found: Value = serde_json::from_str(&got[7 * 3 + 1]).expect("json");
    assert_eq!(not_found["errors"][0]["extensions"]["code"], "NOT_FOUND", "{not_found}");
    let too_many: Value = serde_json::from_str(&got[12 * 3 + 1]).expect("json");
    assert_eq!(too_many["errors"][0]["extensions"]["code"], "VALIDATION", "{too_many}");
    // Two root fields: the engine put the list that did not wait first, the
    // plan keeps the order of the query.
    assert!(expected[5 * 3].starts_with(r#"{"data":{"all":"#), "{}", expected[5 * 3]);
    assert!(got[5 * 3 + 2].starts_with(r#"{"data":{"company":"#), "{}", got[5 * 3 + 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_applies_the_callers_role() {
    let server = Server::start(&["--no-bundled-plugins"]).await;
    seed(&server).await;
    server
        .ok(
            r#"mutation { defineRole(input: { name: "no-email", default: {read: ALL},
                fields: [{object: "contact", field: "email", access: HIDDEN}] }) { name } }"#,
            json!({}),
        )
        .await;
    let key = server
        .ok(r#"mutation { createApiKey(input: {name: "reader", role: "no-email"}) { key } }"#, json!({}))
        .await["createApiKey"]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let with_email = "query Page { contacts(first: 50, orderBy: [{ field: LAST_NAME }]) { nodes { lastName email } } }";
    let without = "query Page { contacts(first: 50, orderBy: [{ field: LAST_NAME }]) { nodes { lastName } } }";
    // The admin teaches both plans and then reads through them.
    for _ in 0..3 {
        let data = server.ok(with_email, json!({})).await;
        assert_eq!(data["contacts"]["nodes"][0]["email"], Value::Null, "Annie has no email");
        assert_eq!(data["contacts"]["nodes"][3]["email"], "ada@example.com");
        server.ok(without, json!({})).await;
    }
    let before = counter(&server, "crm_graphql_planned_total").await;
    assert_eq!(before, 2);
    // The restricted key is refused the hidden field through the same text…
    for _ in 0..2 {
        let body = server.gql_as(&key, with_email, json!({})).await;
        let errors = body["errors"].as_array().expect("errors");
        assert!(!errors.is_empty() && errors.iter().all(|error| error["extensions"]["code"] == "FORBIDDEN"), "{body}");
    }
    // …and reads the rest through the plan.
    let data = server.ok_as(&key, without, json!({})).await;
    let names: Vec<&str> = data["contacts"]["nodes"].as_array().expect("nodes").iter().map(|n| n["lastName"].as_str().unwrap()).collect();
    assert_eq!(names, ["Annie", "Dijkstra", "Hopper", "Lovelace", "Turing"]);
    assert_eq!(counter(&server, "crm_graphql_planned_total").await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_are_dropped_when_the_tenants_metadata_changes() {
    // With the bundled plugins: custom-fields changes the contact object.
    let server = Server::start(&[]).await;
    let define = "mutation($input: CustomFieldsDefineFieldInput!) { customFieldsDefineField(input: $input) { field } }";
    server.ok(define, json!({ "input": { "object": "contact", "name": "shoe_size", "type": "TEXT" } })).await;
    server.ok("mutation { createContact(input: {firstName: \"Ada\", shoeSize: \"42\"}) { id } }", json!({})).await;
    let sizes = "query Sizes { contacts(first: 10) { nodes { firstName shoeSize } } }";
    for _ in 0..3 {
        let data = server.ok(sizes, json!({})).await;
        assert_eq!(data["contacts"]["nodes"][0]["shoeSize"], "42");
    }
    let planned = counter(&server, "crm_graphql_planned_total").await;
    assert!(planned >= 1, "the third request is planned: {planned}");

    // A new field: a new schema, and the text is learned again from the engine.
    server.ok(define, json!({ "input": { "object": "contact", "name": "hat_size", "type": "INTEGER" } })).await;
    let data = server.ok(sizes, json!({})).await;
    assert_eq!(data["contacts"]["nodes"][0]["shoeSize"], "42");
    assert_eq!(counter(&server, "crm_graphql_planned_total").await, planned, "the old plan is not used");
    let with_hat = "query Hats { contacts(first: 10) { nodes { firstName hatSize } } }";
    for _ in 0..3 {
        let data = server.ok(with_hat, json!({})).await;
        assert_eq!(data["contacts"]["nodes"][0]["hatSize"], Value::Null);
    }
    assert_eq!(counter(&server, "crm_graphql_planned_total").await, planned + 1, "the new field is planned");
}
