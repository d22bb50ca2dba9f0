//! Tenant isolation: the API key decides the tenant, and nothing of one
//! tenant is visible to, or reachable from, another.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::{Server, create_tenant, data_dir, single_code};

fn id_of(data: &Value, field: &str) -> String {
    data[field]["id"].as_str().unwrap_or_else(|| panic!("no id in {data}")).to_string()
}

fn ids_in(changes: &[Value]) -> HashSet<String> {
    changes.iter().map(|change| change["id"].as_str().expect("change id").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_or_touch_each_other() {
    let dir = data_dir();
    // Tenants are created while no server holds the data directory.
    let key_b = create_tenant(dir.path(), "beta").await;
    let server = Server::start_in(dir.path(), &[]).await;
    assert!(
        server.startup.iter().any(|line| line.starts_with("created tenant 'default'")),
        "first start creates the default tenant: {:?}",
        server.startup
    );
    let key_a = server.key.clone();
    assert_ne!(key_a, key_b);

    // Tenant A: a company, a contact there, a deal.
    let a_company = id_of(&server.ok_as(&key_a, "mutation { createCompany(input: {name: \"Acme A\"}) { id } }", json!({})).await, "createCompany");
    let a_contact = id_of(
        &server
            .ok_as(&key_a, "mutation($c: ID!) { createContact(input: {firstName: \"Alice\", email: \"alice@a.example\", companyId: $c}) { id } }", json!({ "c": a_company }))
            .await,
        "createContact",
    );
    let a_deal = id_of(
        &server.ok_as(&key_a, "mutation($c: ID!) { createDeal(input: {name: \"A deal\", contactId: $c, amount: 500}) { id } }", json!({ "c": a_contact })).await,
        "createDeal",
    );
    // Tenant B: its own company and contact.
    let b_company = id_of(&server.ok_as(&key_b, "mutation { createCompany(input: {name: \"Beta B\"}) { id } }", json!({})).await, "createCompany");
    let b_contact = id_of(
        &server
            .ok_as(&key_b, "mutation($c: ID!) { createContact(input: {firstName: \"Bob\", email: \"bob@b.example\", companyId: $c}) { id } }", json!({ "c": b_company }))
            .await,
        "createContact",
    );
    let a_ids: HashSet<String> = [a_company.clone(), a_contact.clone(), a_deal.clone()].into();
    let (_, b_cursor) = server.changes_since_as(&key_b, None).await;

    // Get, update, delete, restore of A's records with B's key: NOT_FOUND.
    for (query, id) in [
        ("query($id: ID!) { contact(id: $id) { id } }", &a_contact),
        ("query($id: ID!) { company(id: $id) { id } }", &a_company),
        ("query($id: ID!) { deal(id: $id) { id } }", &a_deal),
        ("mutation($id: ID!) { updateContact(id: $id, input: {title: \"pwned\"}) { id } }", &a_contact),
        ("mutation($id: ID!) { updateContact(id: $id, expectedVersion: 1, input: {title: \"pwned\"}) { id } }", &a_contact),
        ("mutation($id: ID!) { updateContacts(inputs: [{id: $id, input: {title: \"pwned\"}}]) { id } }", &a_contact),
        ("mutation($id: ID!) { updateCompany(id: $id, input: {name: \"pwned\"}) { id } }", &a_company),
        ("mutation($id: ID!) { deleteContact(id: $id) { id } }", &a_contact),
        ("mutation($id: ID!) { deleteDeal(id: $id) { id } }", &a_deal),
        ("mutation($id: ID!) { restoreContact(id: $id) { id } }", &a_contact),
        // Referencing A's records from B.
        ("mutation($id: ID!) { createContact(input: {firstName: \"Mallory\", companyId: $id}) { id } }", &a_company),
        ("mutation($id: ID!) { createDeal(input: {name: \"Stolen\", contactId: $id}) { id } }", &a_contact),
        ("mutation($id: ID!) { createActivity(input: {kind: NOTE, dealId: $id}) { id } }", &a_deal),
        ("mutation($id: ID!) { updateContact(id: \"BCONTACT\", input: {companyId: $id}) { id } }", &a_company),
    ] {
        let query = query.replace("BCONTACT", &b_contact);
        let body = server.gql_as(&key_b, &query, json!({ "id": id })).await;
        assert_eq!(single_code(&body), "NOT_FOUND", "{query}: {body}");
        assert_eq!(body["data"], Value::Null, "{query}: {body}");
    }
    // None of that wrote anything in B.
    let (changes, _) = server.changes_since_as(&key_b, Some(&b_cursor)).await;
    assert!(changes.is_empty(), "refused requests wrote to B: {changes:?}");
    assert_eq!(server.count_as(&key_b, "contacts").await, 1);
    assert_eq!(server.count_as(&key_b, "deals").await, 0);
    assert_eq!(server.count_as(&key_b, "activities").await, 0);

    // B's lists, filters and aggregates hold only B's records.
    let data = server
        .ok_as(
            &key_b,
            "query($ids: [ID!]) { contacts { nodes { id company { id name } } }
                byId: contacts(filter: {id: {in: $ids}}) { totalCount }
                companies { nodes { id name contacts { totalCount } } }
                deals { totalCount }
                contactsAggregate { count }
                dealsAggregate { count sum { amount } }
                companiesAggregate { count } }",
            json!({ "ids": [a_contact, a_company] }),
        )
        .await;
    assert_eq!(data["contacts"]["nodes"], json!([{ "id": b_contact, "company": { "id": b_company, "name": "Beta B" } }]));
    assert_eq!(data["byId"]["totalCount"], 0);
    assert_eq!(data["companies"]["nodes"], json!([{ "id": b_company, "name": "Beta B", "contacts": { "totalCount": 1 } }]));
    assert_eq!(data["deals"]["totalCount"], 0);
    assert_eq!(data["contactsAggregate"]["count"], 1);
    assert_eq!(data["dealsAggregate"], json!({ "count": 0, "sum": { "amount": null } }));
    assert_eq!(data["companiesAggregate"]["count"], 1);
    let history = server.gql_as(&key_b, "query($id: ID!) { recordHistory(object: CONTACT, id: $id) { operation } }", json!({ "id": a_contact })).await;
    assert!(
        history["data"]["recordHistory"] == json!([]) || single_code(&history) == "NOT_FOUND",
        "B sees A's audit trail: {history}"
    );

    // B's change feed: its own seeded pipeline and records, nothing of A.
    let (b_changes, _) = server.changes_since_as(&key_b, None).await;
    let b_ids = ids_in(&b_changes);
    assert!(b_ids.contains(&b_contact) && b_ids.contains(&b_company));
    assert!(b_ids.is_disjoint(&a_ids), "A's changes in B's feed");
    let (a_changes, _) = server.changes_since_as(&key_a, None).await;
    assert!(ids_in(&a_changes).is_disjoint(&b_ids), "each tenant has its own seeded pipeline and records");

    // Unique values are per tenant: B may use A's email, and upserting it
    // in B creates B's own contact.
    let upserted = server
        .ok_as(&key_b, "mutation { upsertContact(onConflict: EMAIL, input: {firstName: \"Alice B\", email: \"alice@a.example\"}) { id version } }", json!({}))
        .await;
    assert_ne!(upserted["upsertContact"]["id"], a_contact.as_str());
    assert_eq!(upserted["upsertContact"]["version"], 1);

    // A's records are untouched, and A sees none of B's.
    let data = server
        .ok_as(
            &key_a,
            "query($id: ID!) { contact(id: $id) { version title firstName company { name contacts { totalCount } } deals { totalCount } } contacts { totalCount } }",
            json!({ "id": a_contact }),
        )
        .await;
    assert_eq!(
        data,
        json!({ "contact": { "version": 1, "title": null, "firstName": "Alice", "company": { "name": "Acme A", "contacts": { "totalCount": 1 } }, "deals": { "totalCount": 1 } },
                "contacts": { "totalCount": 1 } })
    );
    assert_eq!(single_code(&server.gql_as(&key_a, "query($id: ID!) { contact(id: $id) { id } }", json!({ "id": b_contact })).await), "NOT_FOUND");

    // Both tenants are open and counted separately.
    let metrics = server.get("/metrics", &[]).await;
    assert!(metrics.text.contains("crm_open_tenants 2"), "{}", metrics.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_only_carry_the_subscribers_tenant() {
    let dir = data_dir();
    let key_b = create_tenant(dir.path(), "beta").await;
    let server = Server::start_in(dir.path(), &[]).await;
    let key_a = server.key.clone();

    let mut ws = server.websocket().await;
    ws.init(&key_b).await;
    ws.subscribe("1", "subscription { recordChanges { object operation id data } }", json!({})).await;
    ws.wait_live("1", || async {
        server.ok_as(&key_b, "mutation { createCompany(input: {name: \"probe\"}) { id } }", json!({})).await;
    })
    .await;

    // Writes in A, then a marker in B: the marker is the next real change B sees.
    let a_company = server.ok_as(&key_a, "mutation { createCompany(input: {name: \"A only\"}) { id } }", json!({})).await;
    let a_company = a_company["createCompany"]["id"].as_str().expect("id").to_string();
    server.ok_as(&key_a, "mutation { createContacts(inputs: [{firstName: \"A1\"}, {firstName: \"A2\"}]) { id } }", json!({})).await;
    server.ok_as(&key_a, "mutation($id: ID!) { deleteCompany(id: $id) { id } }", json!({ "id": a_company })).await;
    let marker = server.ok_as(&key_b, "mutation { createContact(input: {firstName: \"B marker\"}) { id } }", json!({})).await;
    let marker = marker["createContact"]["id"].as_str().expect("id").to_string();
    loop {
        let payload = ws.next_of("1").await;
        let change = &payload["data"]["recordChanges"];
        assert_ne!(change["id"], a_company.as_str(), "A's change reached B's subscriber");
        if change["data"]["name"] == "probe" {
            continue;
        }
        assert_eq!(change["id"], marker.as_str(), "unexpected change for B's subscriber: {change}");
        assert_eq!(change["data"]["firstName"], "B marker");
        break;
    }
}
