//! The GraphQL API over HTTP: CRUD, filters, ordering, pagination,
//! relations, soft delete, optimistic concurrency, upsert, bulk writes,
//! aggregates, the change feed and bounded reads.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::{Server, assert_close, single_code};

const CONTACT: &str = "id version firstName lastName email title leadScore lifecycleStage country tags emailOptIn companyId createdAt updatedAt deletedAt";

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

/// Creates one contact and returns it.
async fn create_contact(server: &Server, input: Value) -> Value {
    let data = server
        .ok(&format!("mutation($input: CreateContactInput!) {{ createContact(input: $input) {{ {CONTACT} }} }}"), json!({ "input": input }))
        .await;
    data["createContact"].clone()
}

async fn create_company(server: &Server, name: &str) -> String {
    let data = server
        .ok("mutation($name: String!) { createCompany(input: {name: $name}) { id name } }", json!({ "name": name }))
        .await;
    assert_eq!(data["createCompany"]["name"], name);
    text(&data["createCompany"]["id"]).to_string()
}

/// The first names of the contacts a filter matches, sorted.
async fn matching(server: &Server, filter: Value) -> Vec<String> {
    let data = server
        .ok("query($f: ContactFilter) { contacts(filter: $f, first: 500) { totalCount nodes { firstName } } }", json!({ "f": filter }))
        .await;
    let mut names: Vec<String> =
        data["contacts"]["nodes"].as_array().expect("nodes").iter().map(|node| text(&node["firstName"]).to_string()).collect();
    assert_eq!(data["contacts"]["totalCount"].as_u64(), Some(names.len() as u64), "totalCount disagrees with nodes");
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip() {
    let server = Server::start(&[]).await;
    let created = create_contact(
        &server,
        json!({
            "firstName": "Ada", "lastName": "Lovelace", "email": "  Ada@Example.COM ", "leadScore": 42,
            "lifecycleStage": "LEAD", "tags": ["math", "vip", "math"], "emailOptIn": true, "country": "UK",
        }),
    )
    .await;
    let id = text(&created["id"]).to_string();
    assert_eq!(id.len(), 26, "ids are ULIDs: {id}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["email"], "ada@example.com", "emails are stored trimmed and lowercase");
    assert_eq!(created["tags"], json!(["math", "vip"]), "tags are deduplicated and sorted");
    assert_eq!(created["lifecycleStage"], "LEAD");
    assert_eq!(created["deletedAt"], Value::Null);
    assert_eq!(created["createdAt"], created["updatedAt"]);

    let fetched = server.ok(&format!("query($id: ID!) {{ contact(id: $id) {{ {CONTACT} }} }}"), json!({ "id": id })).await;
    assert_eq!(fetched["contact"], created);

    let updated = server
        .ok(
            &format!("mutation($id: ID!) {{ updateContact(id: $id, input: {{title: \"Countess\", lastName: null, leadScore: 50}}) {{ {CONTACT} }} }}"),
            json!({ "id": id }),
        )
        .await["updateContact"]
        .clone();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["title"], "Countess");
    assert_eq!(updated["lastName"], Value::Null, "null clears a field");
    assert_eq!(updated["leadScore"], 50);
    assert_eq!(updated["firstName"], "Ada", "fields not given are kept");
    assert_eq!(updated["createdAt"], created["createdAt"]);

    // An update that changes nothing keeps the version.
    let same = server.ok("mutation($id: ID!) { updateContact(id: $id, input: {title: \"Countess\"}) { version } }", json!({ "id": id })).await;
    assert_eq!(same["updateContact"]["version"], 2);

    // A required field cannot be cleared.
    let code = server.code("mutation($id: ID!) { updateContact(id: $id, input: {firstName: null}) { id } }", json!({ "id": id })).await;
    assert_eq!(code, "VALIDATION");

    let deleted = server.ok("mutation($id: ID!) { deleteContact(id: $id) { id version deletedAt } }", json!({ "id": id })).await;
    assert_eq!(deleted["deleteContact"]["version"], 3);
    assert!(deleted["deleteContact"]["deletedAt"].is_string());
    let code = server.code("query($id: ID!) { contact(id: $id) { id } }", json!({ "id": id })).await;
    assert_eq!(code, "NOT_FOUND");

    let restored = server.ok("mutation($id: ID!) { restoreContact(id: $id) { id version deletedAt title } }", json!({ "id": id })).await;
    assert_eq!(restored["restoreContact"]["version"], 4);
    assert_eq!(restored["restoreContact"]["deletedAt"], Value::Null);
    assert_eq!(restored["restoreContact"]["title"], "Countess");
    let fetched = server.ok("query($id: ID!) { contact(id: $id) { version title } }", json!({ "id": id })).await;
    assert_eq!(fetched["contact"], json!({ "version": 4, "title": "Countess" }));

    // The audit trail records every step with its field changes.
    let history = server
        .ok("query($id: ID!) { recordHistory(object: CONTACT, id: $id) { operation changes { field before after } } }", json!({ "id": id }))
        .await;
    let operations: Vec<&str> =
        history["recordHistory"].as_array().expect("history").iter().map(|entry| text(&entry["operation"])).collect();
    assert_eq!(operations, ["CREATED", "UPDATED", "DELETED", "RESTORED"]);
    let changes = &history["recordHistory"][1]["changes"];
    let score = changes.as_array().expect("changes").iter().find(|change| change["field"] == "leadScore").expect("leadScore change");
    assert_eq!(score["before"], 42);
    assert_eq!(score["after"], 50);

    // Unknown ids are NOT_FOUND for every operation.
    let missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for query in [
        "query($id: ID!) { contact(id: $id) { id } }",
        "mutation($id: ID!) { updateContact(id: $id, input: {title: \"x\"}) { id } }",
        "mutation($id: ID!) { deleteContact(id: $id) { id } }",
        "mutation($id: ID!) { restoreContact(id: $id) { id } }",
    ] {
        assert_eq!(server.code(query, json!({ "id": missing })).await, "NOT_FOUND", "{query}");
    }
}

/// Five people with distinct, easy-to-filter fields.
async fn people(server: &Server) -> BTreeMap<&'static str, String> {
    let rows = [
        ("Ada", "Lovelace", "ada@math.example", Some(90), "LEAD", "UK", json!(["vip", "math"])),
        ("Grace", "Hopper", "grace@navy.example", Some(70), "CUSTOMER", "US", json!(["navy"])),
        ("Alan", "Turing", "alan@math.example", Some(80), "LEAD", "UK", json!([])),
        ("Linus", "Torvalds", "linus@kernel.example", None, "SUBSCRIBER", "FI", json!([])),
        ("Margaret", "Hamilton", "margaret@nasa.example", Some(60), "OPPORTUNITY", "US", json!(["vip"])),
    ];
    let mut ids = BTreeMap::new();
    for (first, last, email, score, stage, country, tags) in rows {
        let created = create_contact(
            server,
            json!({ "firstName": first, "lastName": last, "email": email, "leadScore": score,
                    "lifecycleStage": stage, "country": country, "tags": tags }),
        )
        .await;
        ids.insert(first, text(&created["id"]).to_string());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_cover_every_operator_and_composition() {
    let server = Server::start(&[]).await;
    let ids = people(&server).await;
    let cases = [
        (json!({ "leadScore": { "eq": 90 } }), vec!["Ada"]),
        (json!({ "country": { "neq": "UK" } }), vec!["Grace", "Linus", "Margaret"]),
        (json!({ "lifecycleStage": { "in": ["LEAD", "CUSTOMER"] } }), vec!["Ada", "Alan", "Grace"]),
        (json!({ "lifecycleStage": { "nin": ["LEAD"] } }), vec!["Grace", "Linus", "Margaret"]),
        (json!({ "leadScore": { "gt": 70 } }), vec!["Ada", "Alan"]),
        (json!({ "leadScore": { "gte": 70 } }), vec!["Ada", "Alan", "Grace"]),
        (json!({ "leadScore": { "lt": 70 } }), vec!["Margaret"]),
        (json!({ "leadScore": { "lte": 70 } }), vec!["Grace", "Margaret"]),
        (json!({ "leadScore": { "gt": 60, "lt": 90 } }), vec!["Alan", "Grace"]),
        (json!({ "email": { "contains": "MATH" } }), vec!["Ada", "Alan"]),
        (json!({ "lastName": { "startsWith": "ho" } }), vec!["Grace"]),
        (json!({ "email": { "endsWith": "@nasa.example" } }), vec!["Margaret"]),
        (json!({ "leadScore": { "isNull": true } }), vec!["Linus"]),
        (json!({ "leadScore": { "isNull": false } }), vec!["Ada", "Alan", "Grace", "Margaret"]),
        (json!({ "tags": { "contains": "VIP" } }), vec!["Ada", "Margaret"]),
        (json!({ "lastName": { "in": ["Turing", "Hopper", "Nobody"] } }), vec!["Alan", "Grace"]),
        (json!({ "email": { "eq": "GRACE@navy.example" } }), vec!["Grace"]),
        (json!({ "id": { "in": [ids["Ada"], ids["Linus"]] } }), vec!["Ada", "Linus"]),
        (json!({ "id": { "neq": ids["Ada"] } }), vec!["Alan", "Grace", "Linus", "Margaret"]),
        (json!({ "and": [{ "country": { "eq": "UK" } }, { "leadScore": { "gt": 85 } }] }), vec!["Ada"]),
        (json!({ "or": [{ "country": { "eq": "FI" } }, { "lifecycleStage": { "eq": "CUSTOMER" } }] }), vec!["Grace", "Linus"]),
        (json!({ "not": { "country": { "eq": "UK" } } }), vec!["Grace", "Linus", "Margaret"]),
        (
            json!({ "country": { "in": ["UK", "US"] },
                    "not": { "or": [{ "tags": { "contains": "vip" } }, { "leadScore": { "lt": 75 } }] } }),
            vec!["Alan"],
        ),
        (json!({ "and": [], "lifecycleStage": { "eq": "EVANGELIST" } }), vec![]),
    ];
    for (filter, expected) in cases {
        assert_eq!(matching(&server, filter.clone()).await, expected, "filter {filter}");
    }

    // Filters on the reverse side of a relation and on companies work the same way.
    let company = create_company(&server, "Analytical Engines").await;
    server
        .ok("mutation($id: ID!, $c: ID!) { updateContact(id: $id, input: {companyId: $c}) { id } }", json!({ "id": ids["Ada"], "c": company }))
        .await;
    assert_eq!(matching(&server, json!({ "companyId": { "eq": company } })).await, ["Ada"]);
    assert_eq!(matching(&server, json!({ "companyId": { "isNull": true } })).await, ["Alan", "Grace", "Linus", "Margaret"]);
}

async fn ordered(server: &Server, order_by: Value, filter: Value) -> Vec<String> {
    let data = server
        .ok(
            "query($o: [ContactOrderBy!], $f: ContactFilter) { contacts(orderBy: $o, filter: $f) { nodes { firstName } } }",
            json!({ "o": order_by, "f": filter }),
        )
        .await;
    data["contacts"]["nodes"].as_array().expect("nodes").iter().map(|node| text(&node["firstName"]).to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_plain_field_created_at_and_several_keys() {
    let server = Server::start(&[]).await;
    people(&server).await;
    let scored = json!({ "leadScore": { "isNull": false } });
    // leadScore and lastName have no index: the store sorts.
    assert_eq!(ordered(&server, json!([{ "field": "LEAD_SCORE" }]), scored.clone()).await, ["Margaret", "Grace", "Alan", "Ada"]);
    assert_eq!(
        ordered(&server, json!([{ "field": "LEAD_SCORE", "direction": "DESC" }]), scored.clone()).await,
        ["Ada", "Alan", "Grace", "Margaret"]
    );
    assert_eq!(
        ordered(&server, json!([{ "field": "LAST_NAME", "direction": "ASC" }]), Value::Null).await,
        ["Margaret", "Grace", "Ada", "Linus", "Alan"]
    );
    // Creation order, newest first, and the default order (oldest first).
    assert_eq!(
        ordered(&server, json!([{ "field": "CREATED_AT", "direction": "DESC" }]), Value::Null).await,
        ["Margaret", "Linus", "Alan", "Grace", "Ada"]
    );
    assert_eq!(ordered(&server, Value::Null, Value::Null).await, ["Ada", "Grace", "Alan", "Linus", "Margaret"]);
    // Several keys: country ascending, then score descending.
    assert_eq!(
        ordered(&server, json!([{ "field": "COUNTRY" }, { "field": "LEAD_SCORE", "direction": "DESC" }]), Value::Null).await,
        ["Linus", "Ada", "Alan", "Grace", "Margaret"]
    );
}

/// Walks a connection forward with first/after and backward with
/// last/before; returns the ids in order.
async fn walk(server: &Server, order_by: Value, total: u64, page_size: u64) -> Vec<String> {
    let query = "query($o: [ContactOrderBy!], $first: Int, $after: String, $last: Int, $before: String) {
        contacts(orderBy: $o, first: $first, after: $after, last: $last, before: $before) {
            totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let page_ids = |connection: &Value| -> Vec<String> {
        connection["edges"].as_array().expect("edges").iter().map(|edge| text(&edge["node"]["id"]).to_string()).collect()
    };
    let check_cursors = |connection: &Value| {
        let edges = connection["edges"].as_array().expect("edges");
        if let (Some(first), Some(last)) = (edges.first(), edges.last()) {
            assert_eq!(connection["pageInfo"]["startCursor"], first["cursor"]);
            assert_eq!(connection["pageInfo"]["endCursor"], last["cursor"]);
        }
        assert_eq!(connection["totalCount"].as_u64(), Some(total));
    };

    let mut forward = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let data = server.ok(query, json!({ "o": order_by, "first": page_size, "after": after })).await;
        let connection = &data["contacts"];
        check_cursors(connection);
        let ids = page_ids(connection);
        pages += 1;
        assert_eq!(connection["pageInfo"]["hasPreviousPage"], after.is_some(), "page {pages}");
        forward.extend(ids.iter().cloned());
        if !connection["pageInfo"]["hasNextPage"].as_bool().expect("hasNextPage") {
            assert!(ids.len() as u64 <= page_size);
            break;
        }
        assert_eq!(ids.len() as u64, page_size, "a page before the last is full");
        after = Some(text(&connection["pageInfo"]["endCursor"]).to_string());
        assert!(pages <= total, "pagination does not end");
    }
    assert_eq!(pages, total.div_ceil(page_size));
    assert_eq!(forward.len() as u64, total);

    let mut backward = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let data = server.ok(query, json!({ "o": order_by, "last": page_size, "before": before })).await;
        let connection = &data["contacts"];
        check_cursors(connection);
        assert_eq!(connection["pageInfo"]["hasNextPage"], before.is_some());
        let mut ids = page_ids(connection);
        ids.reverse();
        backward.extend(ids);
        if !connection["pageInfo"]["hasPreviousPage"].as_bool().expect("hasPreviousPage") {
            break;
        }
        before = Some(text(&connection["pageInfo"]["startCursor"]).to_string());
        assert!(backward.len() as u64 <= total, "backward pagination does not end");
    }
    backward.reverse();
    assert_eq!(backward, forward, "backward pages disagree with forward pages");
    forward
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_forward_and_backward_with_total_count() {
    let server = Server::start(&[]).await;
    let inputs: Vec<Value> = (0..23)
        .map(|i| {
            let country = ["NL", "BE", "LU"][i % 3];
            json!({ "firstName": format!("P{i:02}"), "email": format!("p{i}@page.example"), "leadScore": i % 4, "country": country })
        })
        .collect();
    let created = server
        .ok("mutation($inputs: [CreateContactInput!]!) { createContacts(inputs: $inputs) { id leadScore country } }", json!({ "inputs": inputs }))
        .await;
    let created = created["createContacts"].as_array().expect("created").clone();
    let ids: Vec<String> = created.iter().map(|record| text(&record["id"]).to_string()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids of one bulk write are in creation order");

    // Default order: by id, streamed from the table.
    assert_eq!(walk(&server, Value::Null, 23, 5).await, ids);
    assert_eq!(walk(&server, json!([{ "field": "CREATED_AT", "direction": "DESC" }]), 23, 7).await, ids.iter().rev().cloned().collect::<Vec<_>>());
    // Orders with ties, on a plain field (the store sorts) and on an indexed
    // one (streamed from the index forward, sorted backward): ties are broken
    // by id in the direction of the last key.
    let expected = |field: &str, descending: bool| -> Vec<String> {
        let mut keyed: Vec<(Value, String)> = created.iter().map(|record| (record[field].clone(), text(&record["id"]).to_string())).collect();
        keyed.sort_by(|a, b| {
            let by_value = match (&a.0, &b.0) {
                (Value::Number(x), Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
                (x, y) => text(x).cmp(text(y)),
            };
            by_value.then(a.1.cmp(&b.1))
        });
        if descending {
            keyed.reverse();
        }
        keyed.into_iter().map(|(_, id)| id).collect()
    };
    for (field, key, direction, page_size) in
        [("LEAD_SCORE", "leadScore", "DESC", 4), ("LEAD_SCORE", "leadScore", "ASC", 6), ("COUNTRY", "country", "ASC", 5), ("COUNTRY", "country", "DESC", 3)]
    {
        let order = json!([{ "field": field, "direction": direction }]);
        assert_eq!(walk(&server, order, 23, page_size).await, expected(key, direction == "DESC"), "{field} {direction}");
    }

    // An empty connection.
    let data = server.ok("{ contacts(filter: {firstName: {eq: \"nobody\"}}) { totalCount nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", json!({})).await;
    assert_eq!(
        data["contacts"],
        json!({ "totalCount": 0, "nodes": [], "pageInfo": { "hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_resolve_both_ways() {
    let server = Server::start(&[]).await;
    let initech = create_company(&server, "Initech").await;
    let globex = create_company(&server, "Globex").await;
    let peter = create_contact(&server, json!({ "firstName": "Peter", "email": "peter@initech.example", "companyId": initech })).await;
    let milton = create_contact(&server, json!({ "firstName": "Milton", "email": "milton@initech.example", "companyId": initech })).await;
    let hank = create_contact(&server, json!({ "firstName": "Hank", "email": "hank@globex.example", "companyId": globex })).await;
    let loner = create_contact(&server, json!({ "firstName": "Loner", "email": "loner@example.com" })).await;
    let (peter, milton, hank) = (text(&peter["id"]), text(&milton["id"]), text(&hank["id"]));
    let deal = server
        .ok(
            "mutation($c: ID!, $p: ID!) { createDeal(input: {name: \"Printers\", companyId: $c, contactId: $p, amount: 100}) { id stage probability } }",
            json!({ "c": initech, "p": peter }),
        )
        .await["createDeal"]
        .clone();
    assert_eq!(deal["stage"], "appointmentscheduled", "a deal starts in the first stage");
    assert_close(&deal["probability"], 0.2);
    let deal_id = text(&deal["id"]).to_string();
    server
        .ok(
            "mutation($p: ID!, $d: ID!) { createActivities(inputs: [
                {kind: CALL, subject: \"Intro\", contactId: $p},
                {kind: MEETING, subject: \"Demo\", contactId: $p, dealId: $d},
                {kind: NOTE, subject: \"Budget\", dealId: $d}]) { id kind } }",
            json!({ "p": peter, "d": deal_id }),
        )
        .await;

    // Forward: contact → company.
    let data = server
        .ok(
            "{ contacts { nodes { firstName companyId company { id name } } } }",
            json!({}),
        )
        .await;
    let nodes = data["contacts"]["nodes"].as_array().expect("nodes");
    let company_of = |name: &str| nodes.iter().find(|node| node["firstName"] == name).expect("contact")["company"].clone();
    assert_eq!(company_of("Peter")["name"], "Initech");
    assert_eq!(company_of("Peter")["id"], initech.as_str());
    assert_eq!(company_of("Hank")["name"], "Globex");
    assert_eq!(company_of("Loner"), Value::Null);
    assert_eq!(text(&loner["id"]).len(), 26);

    // Reverse: company → contacts, with filter and page arguments; company → deals.
    let data = server
        .ok(
            "query($id: ID!) { company(id: $id) { name
                contacts(orderBy: [{field: FIRST_NAME}]) { totalCount nodes { id firstName } }
                filtered: contacts(filter: {firstName: {startsWith: \"M\"}}) { totalCount nodes { firstName } }
                firstOne: contacts(first: 1) { totalCount nodes { firstName } pageInfo { hasNextPage } }
                deals { totalCount nodes { name contact { firstName } } } } }",
            json!({ "id": initech }),
        )
        .await;
    let company = &data["company"];
    assert_eq!(company["contacts"]["totalCount"], 2);
    assert_eq!(company["contacts"]["nodes"], json!([{ "id": milton, "firstName": "Milton" }, { "id": peter, "firstName": "Peter" }]));
    assert_eq!(company["filtered"], json!({ "totalCount": 1, "nodes": [{ "firstName": "Milton" }] }));
    assert_eq!(company["firstOne"]["totalCount"], 2);
    assert_eq!(company["firstOne"]["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(company["firstOne"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(company["deals"], json!({ "totalCount": 1, "nodes": [{ "name": "Printers", "contact": { "firstName": "Peter" } }] }));

    // contact → deals and activities; deal → activities.
    let data = server
        .ok(
            "query($id: ID!) { contact(id: $id) { deals { nodes { name activities { totalCount nodes { subject } } } }
                activities(orderBy: [{field: SUBJECT}]) { totalCount nodes { subject kind deal { name } } } } }",
            json!({ "id": peter }),
        )
        .await;
    let contact = &data["contact"];
    assert_eq!(contact["deals"]["nodes"][0]["name"], "Printers");
    assert_eq!(contact["deals"]["nodes"][0]["activities"]["totalCount"], 2);
    assert_eq!(
        contact["activities"],
        json!({ "totalCount": 2, "nodes": [
            { "subject": "Demo", "kind": "MEETING", "deal": { "name": "Printers" } },
            { "subject": "Intro", "kind": "CALL", "deal": null } ] })
    );
    let hank_data = server.ok("query($id: ID!) { contact(id: $id) { deals { totalCount } activities { totalCount } } }", json!({ "id": hank })).await;
    assert_eq!(hank_data["contact"], json!({ "deals": { "totalCount": 0 }, "activities": { "totalCount": 0 } }));

    // pipeline → pipelineStages: the seeded default pipeline.
    let data = server
        .ok("{ pipelines { nodes { name isDefault pipelineStages(orderBy: [{field: POSITION}]) { totalCount nodes { key probability } } } } }", json!({}))
        .await;
    let pipeline = &data["pipelines"]["nodes"][0];
    assert_eq!(pipeline["isDefault"], true);
    assert_eq!(pipeline["pipelineStages"]["totalCount"], 7);
    let keys: Vec<&str> = pipeline["pipelineStages"]["nodes"].as_array().expect("stages").iter().map(|stage| text(&stage["key"])).collect();
    assert_eq!(
        keys,
        ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin", "contractsent", "closedwon", "closedlost"]
    );

    // A deleted child leaves the reverse relation; a deleted parent leaves the forward one.
    server.ok("mutation($id: ID!) { deleteContact(id: $id) { id } }", json!({ "id": milton })).await;
    let data = server.ok("query($id: ID!) { company(id: $id) { contacts { totalCount nodes { firstName } } } }", json!({ "id": initech })).await;
    assert_eq!(data["company"]["contacts"], json!({ "totalCount": 1, "nodes": [{ "firstName": "Peter" }] }));
    server.ok("mutation($id: ID!) { deleteCompany(id: $id) { id } }", json!({ "id": globex })).await;
    let data = server.ok("query($id: ID!) { contact(id: $id) { companyId company { name } } }", json!({ "id": hank })).await;
    assert_eq!(data["contact"]["companyId"], globex.as_str());
    assert_eq!(data["contact"]["company"], Value::Null);
    // A reference to a deleted or missing record is refused.
    let code = server.code("mutation($c: ID!) { createContact(input: {firstName: \"New\", companyId: $c}) { id } }", json!({ "c": globex })).await;
    assert_eq!(code, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_hides_and_restore_brings_back() {
    let server = Server::start(&[]).await;
    let ids = people(&server).await;
    let grace = ids["Grace"].clone();
    let (_, start) = server.changes_since(None).await;
    server.ok("mutation($id: ID!) { deleteContact(id: $id, expectedVersion: 1) { id } }", json!({ "id": grace })).await;

    assert_eq!(server.code("query($id: ID!) { contact(id: $id) { id } }", json!({ "id": grace })).await, "NOT_FOUND");
    assert_eq!(server.count("contacts").await, 4);
    assert_eq!(matching(&server, json!({ "lifecycleStage": { "eq": "CUSTOMER" } })).await, Vec::<String>::new());
    let data = server.ok("{ contactsAggregate { count } }", json!({})).await;
    assert_eq!(data["contactsAggregate"]["count"], 4);
    let data = server.ok("{ contacts(includeDeleted: true) { totalCount nodes { id deletedAt } } }", json!({})).await;
    assert_eq!(data["contacts"]["totalCount"], 5);
    let deleted: Vec<&Value> =
        data["contacts"]["nodes"].as_array().expect("nodes").iter().filter(|node| node["deletedAt"].is_string()).collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["id"], grace.as_str());

    // A deleted record cannot be updated or deleted again; its email stays taken.
    assert_eq!(server.code("mutation($id: ID!) { updateContact(id: $id, input: {title: \"x\"}) { id } }", json!({ "id": grace })).await, "NOT_FOUND");
    assert_eq!(server.code("mutation($id: ID!) { deleteContact(id: $id) { id } }", json!({ "id": grace })).await, "NOT_FOUND");
    assert_eq!(
        server.code("mutation { createContact(input: {firstName: \"G\", email: \"grace@navy.example\"}) { id } }", json!({})).await,
        "CONFLICT"
    );

    let restored = server.ok("mutation($id: ID!) { restoreContact(id: $id) { id deletedAt lifecycleStage } }", json!({ "id": grace })).await;
    assert_eq!(restored["restoreContact"], json!({ "id": grace, "deletedAt": null, "lifecycleStage": "CUSTOMER" }));
    assert_eq!(server.count("contacts").await, 5);
    assert_eq!(matching(&server, json!({ "lifecycleStage": { "eq": "CUSTOMER" } })).await, ["Grace"]);
    let (changes, _) = server.changes_since(Some(&start)).await;
    let operations: Vec<&str> = changes.iter().map(|change| text(&change["operation"])).collect();
    assert_eq!(operations, ["DELETED", "RESTORED"]);
    assert!(changes.iter().all(|change| change["id"] == grace.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_version_conflicts_leave_the_record_unchanged() {
    let server = Server::start(&[]).await;
    let ids = people(&server).await;
    let ada = ids["Ada"].clone();
    let update = "mutation($id: ID!, $v: Int, $title: String) { updateContact(id: $id, expectedVersion: $v, input: {title: $title}) { version title } }";
    let first = server.ok(update, json!({ "id": ada, "v": 1, "title": "Countess" })).await;
    assert_eq!(first["updateContact"], json!({ "version": 2, "title": "Countess" }));
    let stale = server.gql(update, json!({ "id": ada, "v": 1, "title": "Stale" })).await;
    assert_eq!(single_code(&stale), "CONFLICT");
    assert_eq!(stale["data"], Value::Null);
    assert_eq!(server.code("mutation($id: ID!) { deleteContact(id: $id, expectedVersion: 7) { id } }", json!({ "id": ada })).await, "CONFLICT");
    let now = server.ok("query($id: ID!) { contact(id: $id) { version title deletedAt } }", json!({ "id": ada })).await;
    assert_eq!(now["contact"], json!({ "version": 2, "title": "Countess", "deletedAt": null }));

    // A bulk update with one stale version applies nothing.
    let bulk = "mutation($items: [UpdateContactItem!]!) { updateContacts(inputs: $items) { id version } }";
    let items = json!([
        { "id": ids["Grace"], "expectedVersion": 1, "input": { "title": "Admiral" } },
        { "id": ada, "expectedVersion": 1, "input": { "title": "Again" } },
    ]);
    assert_eq!(single_code(&server.gql(bulk, json!({ "items": items })).await), "CONFLICT");
    let grace = server.ok("query($id: ID!) { contact(id: $id) { version title } }", json!({ "id": ids["Grace"] })).await;
    assert_eq!(grace["contact"], json!({ "version": 1, "title": null }));
    let items = json!([
        { "id": ids["Grace"], "expectedVersion": 1, "input": { "title": "Admiral" } },
        { "id": ada, "expectedVersion": 2, "input": { "title": "Again" } },
    ]);
    let done = server.ok(bulk, json!({ "items": items })).await;
    assert_eq!(done["updateContacts"], json!([{ "id": ids["Grace"], "version": 2 }, { "id": ada, "version": 3 }]));

    // Two writers racing on one version: exactly one wins.
    let race = |title: &'static str| {
        let body = json!({ "id": ada, "v": 3, "title": title });
        let server = &server;
        async move { server.gql(update, body).await }
    };
    let (a, b) = tokio::join!(race("Left"), race("Right"));
    let outcomes = [a.get("errors").is_none(), b.get("errors").is_none()];
    assert_eq!(outcomes.iter().filter(|won| **won).count(), 1, "one of two racing updates wins: {a} {b}");
    let loser = if outcomes[0] { &b } else { &a };
    assert_eq!(single_code(loser), "CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_by_email_updates_or_creates() {
    let server = Server::start(&[]).await;
    let upsert = "mutation($input: CreateContactInput!) { upsertContact(onConflict: EMAIL, input: $input) { id version firstName lastName title email } }";
    let created = server.ok(upsert, json!({ "input": { "firstName": "Peter", "lastName": "Gibbons", "email": "peter@initech.example" } })).await;
    let created = &created["upsertContact"];
    assert_eq!(created["version"], 1);
    let id = text(&created["id"]).to_string();

    let updated = server.ok(upsert, json!({ "input": { "firstName": "Peter", "email": "PETER@Initech.example", "title": "Team lead" } })).await;
    assert_eq!(
        updated["upsertContact"],
        json!({ "id": id, "version": 2, "firstName": "Peter", "lastName": "Gibbons", "title": "Team lead", "email": "peter@initech.example" })
    );
    assert_eq!(server.count("contacts").await, 1);

    // Bulk: one existing, one new.
    let bulk = server
        .ok(
            "mutation($inputs: [CreateContactInput!]!) { upsertContacts(onConflict: EMAIL, inputs: $inputs) { id version email } }",
            json!({ "inputs": [
                { "firstName": "Peter", "email": "peter@initech.example", "title": "Manager" },
                { "firstName": "Joanna", "email": "joanna@chotchkies.example" } ] }),
        )
        .await;
    let rows = bulk["upsertContacts"].as_array().expect("rows");
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["version"], 3);
    assert_eq!(rows[1]["version"], 1);
    assert_ne!(rows[1]["id"], id.as_str());
    assert_eq!(server.count("contacts").await, 2);

    // Upserting a deleted contact's email restores it.
    server.ok("mutation($id: ID!) { deleteContact(id: $id) { id } }", json!({ "id": id })).await;
    assert_eq!(server.count("contacts").await, 1);
    let back = server.ok(upsert, json!({ "input": { "firstName": "Peter", "email": "peter@initech.example" } })).await;
    assert_eq!(back["upsertContact"]["id"], id.as_str());
    assert_eq!(server.count("contacts").await, 2);

    // The unique key is required to upsert.
    assert_eq!(server.code(upsert, json!({ "input": { "firstName": "NoEmail" } })).await, "VALIDATION");
    assert_eq!(server.count("contacts").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_writes_are_limited_and_all_or_nothing() {
    let server = Server::start(&[]).await;
    let create = "mutation($inputs: [CreateContactInput!]!) { createContacts(inputs: $inputs) { id } }";
    let inputs = |from: usize, count: usize| -> Vec<Value> {
        (from..from + count).map(|i| json!({ "firstName": format!("Bulk{i}"), "email": format!("bulk{i}@example.com") })).collect()
    };
    let (_, start) = server.changes_since(None).await;

    let done = server.ok(create, json!({ "inputs": inputs(0, 1000) })).await;
    assert_eq!(done["createContacts"].as_array().map(Vec::len), Some(1000));
    assert_eq!(server.count("contacts").await, 1000);
    let (changes, after_thousand) = server.changes_since(Some(&start)).await;
    assert_eq!(changes.len(), 1000);

    let too_many = server.gql(create, json!({ "inputs": inputs(1000, 1001) })).await;
    assert_eq!(single_code(&too_many), "VALIDATION");
    assert_eq!(server.count("contacts").await, 1000);

    // One bad email in the middle: nothing of the batch is written.
    let mut batch = inputs(5000, 10);
    batch[5]["email"] = json!("not-an-email");
    let bad = server.gql(create, json!({ "inputs": batch })).await;
    assert_eq!(single_code(&bad), "VALIDATION");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "email");
    assert_eq!(server.count("contacts").await, 1000);

    // A duplicate email inside the batch conflicts at commit: nothing is written.
    let mut batch = inputs(6000, 10);
    batch[9]["email"] = batch[0]["email"].clone();
    assert_eq!(single_code(&server.gql(create, json!({ "inputs": batch })).await), "CONFLICT");
    // A reference to a missing record: nothing is written.
    let mut batch = inputs(7000, 3);
    batch[2]["companyId"] = json!("01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert_eq!(single_code(&server.gql(create, json!({ "inputs": batch })).await), "NOT_FOUND");
    assert_eq!(server.count("contacts").await, 1000);
    let (changes, _) = server.changes_since(Some(&after_thousand)).await;
    assert!(changes.is_empty(), "failed bulk writes left changes: {changes:?}");

    // Bulk update: one missing id fails the whole batch.
    let first_id = text(&done["createContacts"][0]["id"]).to_string();
    let update = "mutation($items: [UpdateContactItem!]!) { updateContacts(inputs: $items) { id } }";
    let items = json!([
        { "id": first_id, "input": { "title": "Changed" } },
        { "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "input": { "title": "Changed" } },
    ]);
    assert_eq!(single_code(&server.gql(update, json!({ "items": items })).await), "NOT_FOUND");
    let data = server.ok("query($id: ID!) { contact(id: $id) { version title } }", json!({ "id": first_id })).await;
    assert_eq!(data["contact"], json!({ "version": 1, "title": null }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_by_stage_with_total_and_weighted_amount() {
    let server = Server::start(&[]).await;
    let deals = json!([
        { "name": "A", "amount": 1000, "stage": "appointmentscheduled" },
        { "name": "B", "amount": 2000, "stage": "appointmentscheduled" },
        { "name": "C", "amount": 5000, "stage": "presentationscheduled" },
        { "name": "D", "amount": 10000, "stage": "closedwon" },
        { "name": "E", "amount": 4000, "stage": "closedlost" },
        { "name": "F", "amount": 3000, "stage": "qualifiedtobuy", "probability": 0.5 },
        { "name": "G", "stage": "contractsent" },
    ]);
    let created = server
        .ok("mutation($d: [CreateDealInput!]!) { createDeals(inputs: $d) { name stage probability expectedAmount } }", json!({ "d": deals }))
        .await;
    let created = created["createDeals"].as_array().expect("deals");
    assert_close(&created[2]["expectedAmount"], 3000.0);
    assert_close(&created[5]["probability"], 0.5);
    assert_close(&created[5]["expectedAmount"], 1500.0);
    assert_eq!(created[6]["expectedAmount"], Value::Null, "no amount, no expected amount");
    assert_close(&created[6]["probability"], 0.9);

    let query = "query($f: DealFilter) { dealsAggregate(filter: $f, groupBy: [STAGE]) {
        count sum { amount expectedAmount } avg { amount } min { amount } max { amount }
        groups { key { stage } count sum { amount expectedAmount } avg { amount } } } }";
    let data = server.ok(query, json!({})).await;
    let aggregate = &data["dealsAggregate"];
    assert_eq!(aggregate["count"], 7);
    assert_close(&aggregate["sum"]["amount"], 25000.0);
    assert_close(&aggregate["sum"]["expectedAmount"], 200.0 + 400.0 + 3000.0 + 10000.0 + 0.0 + 1500.0);
    assert_close(&aggregate["avg"]["amount"], 25000.0 / 6.0);
    assert_close(&aggregate["min"]["amount"], 1000.0);
    assert_close(&aggregate["max"]["amount"], 10000.0);
    let groups = aggregate["groups"].as_array().expect("groups");
    let stages: Vec<&str> = groups.iter().map(|group| text(&group["key"]["stage"])).collect();
    assert_eq!(stages, ["appointmentscheduled", "closedlost", "closedwon", "contractsent", "presentationscheduled", "qualifiedtobuy"]);
    let expected = [
        ("appointmentscheduled", 2, Some(3000.0), Some(600.0)),
        ("closedlost", 1, Some(4000.0), Some(0.0)),
        ("closedwon", 1, Some(10000.0), Some(10000.0)),
        ("contractsent", 1, None, None),
        ("presentationscheduled", 1, Some(5000.0), Some(3000.0)),
        ("qualifiedtobuy", 1, Some(3000.0), Some(1500.0)),
    ];
    for (group, (stage, count, amount, weighted)) in groups.iter().zip(expected) {
        assert_eq!(group["key"]["stage"], stage);
        assert_eq!(group["count"], count, "{stage}");
        match (amount, weighted) {
            (Some(amount), Some(weighted)) => {
                assert_close(&group["sum"]["amount"], amount);
                assert_close(&group["sum"]["expectedAmount"], weighted);
            }
            _ => {
                assert_eq!(group["sum"]["amount"], Value::Null, "{stage}");
                assert_eq!(group["avg"]["amount"], Value::Null, "{stage}");
            }
        }
    }
    assert_close(&groups[0]["avg"]["amount"], 1500.0);

    // Open deals only.
    let data = server.ok(query, json!({ "f": { "stage": { "nin": ["closedwon", "closedlost"] } } })).await;
    assert_eq!(data["dealsAggregate"]["count"], 5);
    assert_close(&data["dealsAggregate"]["sum"]["amount"], 11000.0);
    assert_close(&data["dealsAggregate"]["sum"]["expectedAmount"], 5100.0);

    // Moving a deal recomputes its probability and expected amount.
    let c = server.ok("{ deals(filter: {name: {eq: \"C\"}}) { nodes { id } } }", json!({})).await;
    let c = text(&c["deals"]["nodes"][0]["id"]).to_string();
    let moved = server
        .ok("mutation($id: ID!) { updateDeal(id: $id, input: {stage: \"closedwon\"}) { probability expectedAmount } }", json!({ "id": c }))
        .await;
    assert_close(&moved["updateDeal"]["probability"], 1.0);
    assert_close(&moved["updateDeal"]["expectedAmount"], 5000.0);
    let data = server.ok("{ dealsAggregate(filter: {stage: {eq: \"closedwon\"}}) { count sum { expectedAmount } } }", json!({})).await;
    assert_eq!(data["dealsAggregate"]["count"], 2);
    assert_close(&data["dealsAggregate"]["sum"]["expectedAmount"], 15000.0);

    // A stage outside the pipeline is refused.
    let code = server.code("mutation { createDeal(input: {name: \"X\", stage: \"nowhere\"}) { id } }", json!({})).await;
    assert_eq!(code, "VALIDATION");

    // Group by an enum field of contacts.
    server
        .ok(
            "mutation { createContacts(inputs: [
                {firstName: \"a\", lifecycleStage: LEAD, leadScore: 10}, {firstName: \"b\", lifecycleStage: LEAD, leadScore: 30},
                {firstName: \"c\", lifecycleStage: CUSTOMER, leadScore: 5}, {firstName: \"d\"}]) { id } }",
            json!({}),
        )
        .await;
    let data = server
        .ok("{ contactsAggregate(groupBy: [LIFECYCLE_STAGE]) { count groups { key { lifecycleStage } count sum { leadScore } max { leadScore } } } }", json!({}))
        .await;
    let groups = &data["contactsAggregate"]["groups"];
    let by_stage: BTreeMap<String, (u64, Value, Value)> = groups
        .as_array()
        .expect("groups")
        .iter()
        .map(|group| {
            let key = group["key"]["lifecycleStage"].as_str().unwrap_or("null").to_string();
            (key, (group["count"].as_u64().expect("count"), group["sum"]["leadScore"].clone(), group["max"]["leadScore"].clone()))
        })
        .collect();
    assert_eq!(by_stage.len(), 3);
    assert_eq!(by_stage["LEAD"].0, 2);
    assert_close(&by_stage["LEAD"].1, 40.0);
    assert_eq!(by_stage["LEAD"].2, 30);
    assert_eq!(by_stage["CUSTOMER"].0, 1);
    assert_eq!(by_stage["null"].0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_continues_from_cursors_and_keeps_tombstones() {
    let server = Server::start(&[]).await;
    // A new tenant starts with its seeded pipeline in the feed.
    let (seeded, start) = server.changes_since(None).await;
    assert_eq!(seeded.len(), 8, "a pipeline and seven stages");
    assert!(seeded.iter().all(|change| change["operation"] == "CREATED"));

    let ids: Vec<String> = {
        let data = server
            .ok(
                "mutation { createContacts(inputs: [{firstName: \"one\"}, {firstName: \"two\"}, {firstName: \"three\"}]) { id } }",
                json!({}),
            )
            .await;
        data["createContacts"].as_array().expect("ids").iter().map(|row| text(&row["id"]).to_string()).collect()
    };
    let feed = "query($after: String, $first: Int) { changes(after: $after, first: $first) { cursor hasMore changes { cursor object operation id version data } } }";
    let page = server.ok(feed, json!({ "after": start, "first": 2 })).await;
    let page = &page["changes"];
    assert_eq!(page["hasMore"], true);
    let changes = page["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["id"], ids[0].as_str());
    assert_eq!(changes[0]["object"], "CONTACT");
    assert_eq!(changes[0]["operation"], "CREATED");
    assert_eq!(changes[0]["data"]["firstName"], "one");
    assert_eq!(changes[1]["id"], ids[1].as_str());
    assert_eq!(page["cursor"], changes[1]["cursor"]);

    let rest = server.ok(feed, json!({ "after": page["cursor"], "first": 2 })).await;
    let rest = &rest["changes"];
    assert_eq!(rest["hasMore"], false);
    assert_eq!(rest["changes"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["changes"][0]["id"], ids[2].as_str());
    let end = rest["cursor"].clone();

    // Caught up: no changes, the cursor stays.
    let idle = server.ok(feed, json!({ "after": end, "first": 10 })).await;
    assert_eq!(idle["changes"], json!({ "cursor": end, "hasMore": false, "changes": [] }));

    // Update, delete (a tombstone without data) and restore.
    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {title: \"Boss\"}) { id } }", json!({ "id": ids[0] })).await;
    server.ok("mutation($id: ID!) { deleteContact(id: $id) { id } }", json!({ "id": ids[1] })).await;
    let (changes, after_delete) = server.changes_since(end.as_str()).await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["operation"], "UPDATED");
    assert_eq!(changes[0]["version"], 2);
    assert_eq!(changes[0]["data"]["title"], "Boss");
    assert_eq!(changes[1]["operation"], "DELETED");
    assert_eq!(changes[1]["id"], ids[1].as_str());
    assert_eq!(changes[1]["version"], 2);
    assert_eq!(changes[1]["data"], Value::Null, "a deleted record is a tombstone");

    server.ok("mutation($id: ID!) { restoreContact(id: $id) { id } }", json!({ "id": ids[1] })).await;
    let (changes, _) = server.changes_since(Some(&after_delete)).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["operation"], "RESTORED");
    assert_eq!(changes[0]["version"], 3);
    assert_eq!(changes[0]["data"]["firstName"], "two");

    // Reading the whole feed from the start in small pages sees every change once.
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let data = server.ok(feed, json!({ "after": cursor, "first": 3 })).await;
        seen += data["changes"]["changes"].as_array().map(Vec::len).unwrap_or(0);
        cursor = Some(text(&data["changes"]["cursor"]).to_string());
        if data["changes"]["hasMore"] == false {
            break;
        }
    }
    assert_eq!(seen, 8 + 3 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_of_a_page_cost_a_bounded_number_of_reads() {
    let server = Server::start(&["--no-bundled-plugins"]).await;
    let tenant = server.only_tenant_id();
    let companies: Vec<Value> = (0..50).map(|i| json!({ "name": format!("Company {i:02}") })).collect();
    let companies = server.ok("mutation($c: [CreateCompanyInput!]!) { createCompanies(inputs: $c) { id } }", json!({ "c": companies })).await;
    let contacts: Vec<Value> = companies["createCompanies"]
        .as_array()
        .expect("companies")
        .iter()
        .enumerate()
        .map(|(i, company)| json!({ "firstName": format!("Contact {i:02}"), "companyId": company["id"] }))
        .collect();
    let contacts = server.ok("mutation($c: [CreateContactInput!]!) { createContacts(inputs: $c) { id } }", json!({ "c": contacts })).await;
    let deals: Vec<Value> = contacts["createContacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .enumerate()
        .flat_map(|(i, contact)| {
            [json!({ "name": format!("Deal {i:02}a"), "contactId": contact["id"] }), json!({ "name": format!("Deal {i:02}b"), "contactId": contact["id"] })]
        })
        .collect();
    server.ok("mutation($d: [CreateDealInput!]!) { createDeals(inputs: $d) { id } }", json!({ "d": deals })).await;

    // Two texts of one query: the first request of a text runs in the
    // GraphQL engine, the second too (and then once more as the text's
    // plan, to check it), later ones are answered by the plan.
    let query = "query($n: Int) { contacts(first: $n) { nodes { firstName company { name } deals { nodes { name } } } } }";
    let other = format!("{query} ");
    let reads_for = |query: &str, n: usize| {
        let server = &server;
        let tenant = tenant.clone();
        let query = query.to_string();
        async move {
            let before = server.reads(&tenant).await;
            let data = server.ok(&query, json!({ "n": n })).await;
            let after = server.reads(&tenant).await;
            let nodes = data["contacts"]["nodes"].as_array().expect("nodes").clone();
            assert_eq!(nodes.len(), n);
            for (i, node) in nodes.iter().enumerate() {
                assert_eq!(node["firstName"], format!("Contact {i:02}"));
                assert_eq!(node["company"]["name"], format!("Company {i:02}"));
                assert_eq!(node["deals"]["nodes"], json!([{ "name": format!("Deal {i:02}a") }, { "name": format!("Deal {i:02}b") }]));
            }
            after - before
        }
    };
    let fifty = reads_for(query, 50).await;
    let five = reads_for(&other, 5).await;
    assert!(fifty >= 1, "the read counter does not move: {fifty}");
    assert!(fifty <= 3, "50 contacts with company and deals took {fifty} read snapshots");
    assert_eq!(five, fifty, "reads depend on the page size: 5 → {five}, 50 → {fifty}");
    // The second request of each text is checked against its plan…
    assert_eq!(reads_for(query, 50).await, fifty + 1);
    assert_eq!(reads_for(&other, 5).await, fifty + 1);
    // …which then reads every level in one snapshot.
    assert_eq!(reads_for(query, 5).await, 1);
    assert_eq!(reads_for(&other, 50).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_health_metrics_and_graphiql() {
    let server = Server::start(&[]).await;
    let auth = format!("Bearer {}", server.key);
    let health = server.get("/healthz", &[]).await;
    assert_eq!((health.status, health.text.as_str()), (200, "ok"));

    let query = "/graphql?query=%7B%20pipelines%20%7B%20totalCount%20%7D%20%7D";
    let got = server.get(query, &[("authorization", &auth)]).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json(), json!({ "data": { "pipelines": { "totalCount": 1 } } }));

    let unauthenticated = server.get(query, &[]).await;
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(single_code(&unauthenticated.json()), "UNAUTHENTICATED");

    let mutation = "/graphql?query=mutation%20%7B%20createCompany(input%3A%20%7Bname%3A%20%22Via%20GET%22%7D)%20%7B%20id%20%7D%20%7D";
    let refused = server.get(mutation, &[("authorization", &auth)]).await;
    assert_eq!(refused.status, 405, "{}", refused.text);
    assert_eq!(single_code(&refused.json()), "VALIDATION");
    assert_eq!(server.count("companies").await, 0, "a mutation sent with GET wrote");

    let html = server.get("/graphql", &[("accept", "text/html")]).await;
    assert_eq!(html.status, 200);
    assert!(html.content_type.starts_with("text/html"), "{}", html.content_type);
    assert!(html.text.to_lowercase().contains("graphiql"));

    // The GraphQL-over-HTTP media type for a valid request.
    let reply = server
        .post_raw(
            &[("content-type", "application/json"), ("accept", "application/graphql-response+json"), ("authorization", &auth)],
            r#"{"query":"{ companies { totalCount } }"}"#,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("application/graphql-response+json"), "{}", reply.content_type);
    assert_eq!(reply.json(), json!({ "data": { "companies": { "totalCount": 0 } } }));

    let metrics = server.get("/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.text.contains("crm_open_tenants 1"), "{}", metrics.text);
    let tenant = server.only_tenant_id();
    assert!(server.reads(&tenant).await > 0);
}
