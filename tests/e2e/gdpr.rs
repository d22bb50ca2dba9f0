//! Personal data over the real server: `exportPerson` returns everything
//! held about a person; `erasePerson` (admins only) removes it so that no
//! query, export or audit entry shows it any more, while the audit chain
//! keeps every entry and still verifies.

use serde_json::{Value, json};

use crate::support::{Server, crm, data_dir, stderr, stdout};

const EMAIL: &str = "Zelphina.Quarrington@Example.org";
const FIRST: &str = "Zelphina";
const LAST: &str = "Quarrington";
const PHONE: &str = "+1 555 0142 7781";
const NEW_PHONE: &str = "+1 555 0199 3364";
const MOBILE: &str = "+44 7700 900461";
const NOTE: &str = "prefers calls after her physiotherapy sessions";

/// Every string that identifies the person, lowercased.
fn personal() -> Vec<String> {
    [EMAIL, FIRST, LAST, PHONE, NEW_PHONE, MOBILE, NOTE].iter().map(|text| text.to_lowercase()).collect()
}

/// The personal strings found in `text` (case-insensitive).
fn found_in(text: &str) -> Vec<String> {
    let text = text.to_lowercase();
    personal().into_iter().filter(|needle| text.contains(needle.as_str())).collect()
}

fn assert_clean(what: &str, value: &Value) {
    let found = found_in(&value.to_string());
    assert!(found.is_empty(), "{what} still shows {found:?}: {value}");
}

const HISTORY: &str = "query($o: ObjectName!, $id: ID!) { recordHistory(object: $o, id: $id) { seq actor operation changes { field before after erased } } }";

async fn history(server: &Server, object: &str, id: &str) -> Value {
    server.ok(HISTORY, json!({ "o": object, "id": id })).await["recordHistory"].clone()
}

/// Every entry of the audit log, page by page.
async fn audit_log(server: &Server) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = server
            .ok(
                "query($after: String) { auditLog(first: 1000, after: $after) { cursor hasMore entries { seq recordId operation actor changes { field before after erased } } } }",
                json!({ "after": after }),
            )
            .await;
        let page = &data["auditLog"];
        entries.extend(page["entries"].as_array().expect("entries").iter().cloned());
        if !page["hasMore"].as_bool().expect("hasMore") {
            return entries;
        }
        after = Some(page["cursor"].as_str().expect("cursor").to_string());
    }
}

async fn export(server: &Server, email: &str) -> Value {
    server.ok("query($e: String!) { exportPerson(email: $e) }", json!({ "e": email })).await["exportPerson"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_exported_then_erased_everywhere_and_the_chain_still_verifies() {
    let dir = data_dir();
    // Without plugins, so every audit entry of the person is one this test made.
    let server = Server::start_in(dir.path(), &["--no-bundled-plugins"]).await;

    // A person with a company, updated a few times, with activities and a deal.
    let company =
        server.ok("mutation { createCompany(input: {name: \"Initech\"}) { id } }", json!({})).await["createCompany"]["id"]
            .as_str()
            .expect("company id")
            .to_string();
    let created = server
        .ok(
            "mutation($c: ID!, $e: String!, $f: String!, $l: String!, $p: String!) { createContact(input: {firstName: $f, lastName: $l, email: $e, phone: $p, companyId: $c, emailOptIn: true}) { id email } }",
            json!({ "c": company, "e": EMAIL, "f": FIRST, "l": LAST, "p": PHONE }),
        )
        .await;
    let contact = created["createContact"]["id"].as_str().expect("contact id").to_string();
    assert_eq!(created["createContact"]["email"], EMAIL.to_lowercase());
    for input in [
        json!({ "phone": NEW_PHONE, "title": "Head of Procurement" }),
        json!({ "mobile": MOBILE, "lifecycleStage": "CUSTOMER" }),
        json!({ "smsOptIn": false, "tags": ["vip", "renewal"] }),
    ] {
        server
            .ok(
                "mutation($id: ID!, $input: UpdateContactInput!) { updateContact(id: $id, input: $input) { version } }",
                json!({ "id": contact, "input": input }),
            )
            .await;
    }
    let mut activities = Vec::new();
    for (subject, body) in [
        (format!("Call with {FIRST}"), format!("{FIRST} {LAST} {NOTE}; reach her on {MOBILE}")),
        ("Renewal meeting".to_string(), format!("Agenda sent to {}", EMAIL.to_lowercase())),
    ] {
        let data = server
            .ok(
                "mutation($c: ID!, $s: String!, $b: String!) { createActivity(input: {kind: CALL, subject: $s, body: $b, contactId: $c}) { id } }",
                json!({ "c": contact, "s": subject, "b": body }),
            )
            .await;
        activities.push(data["createActivity"]["id"].as_str().expect("activity id").to_string());
    }
    server
        .ok(
            "mutation($id: ID!) { updateActivity(id: $id, input: {subject: \"Follow-up call\"}) { version } }",
            json!({ "id": activities[0] }),
        )
        .await;
    // A deleted activity still holds what was written; erasure clears it too.
    server.ok("mutation($id: ID!) { deleteActivity(id: $id) { id } }", json!({ "id": activities[1] })).await;
    let deal = server
        .ok(
            "mutation($c: ID!) { createDeal(input: {name: \"Renewal 2027\", contactId: $c, amount: 5000}) { id } }",
            json!({ "c": contact }),
        )
        .await["createDeal"]["id"]
        .as_str()
        .expect("deal id")
        .to_string();
    // Someone else, who must be left alone.
    let other = server
        .ok("mutation { createContact(input: {firstName: \"Grace\", lastName: \"Hopper\", email: \"grace@navy.example\", phone: \"+1 555 0100 0001\"}) { id } }", json!({}))
        .await["createContact"]["id"]
        .as_str()
        .expect("other id")
        .to_string();

    // Before erasure, history and the audit log read the values back.
    let contact_history = history(&server, "CONTACT", &contact).await;
    assert_eq!(contact_history.as_array().map(Vec::len), Some(4), "{contact_history}");
    let phone_change = contact_history[1]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|change| change["field"] == "phone")
        .cloned()
        .expect("a phone change");
    assert_eq!(phone_change, json!({ "field": "phone", "before": PHONE, "after": NEW_PHONE, "erased": false }));
    let log = audit_log(&server).await;
    let logged =
        log.iter().find(|entry| entry["recordId"] == contact.as_str() && entry["operation"] == "CREATED").expect("created entry");
    assert!(
        logged["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|change| change["field"] == "email" && change["after"] == EMAIL.to_lowercase())
    );

    // The export holds everything: contact, consent, activities, deal, audit.
    let exported = export(&server, EMAIL).await;
    assert_eq!(exported["email"], EMAIL.to_lowercase());
    let contacts = exported["contacts"].as_array().expect("contacts");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["id"], contact.as_str());
    assert_eq!(contacts[0]["firstName"], FIRST);
    assert_eq!(contacts[0]["phone"], NEW_PHONE);
    assert_eq!(contacts[0]["mobile"], MOBILE);
    assert_eq!(exported["consent"][0]["emailOptIn"], true);
    assert_eq!(exported["consent"][0]["smsOptIn"], false);
    assert!(exported["consent"][0]["emailOptInAt"].is_string());
    assert!(exported["consent"][0]["emailOptInSource"].as_str().is_some_and(|source| source.starts_with("api-key:")));
    let exported_activities = exported["related"]["activities"].as_array().expect("activities");
    assert_eq!(exported_activities.len(), 2);
    assert!(exported_activities.iter().any(|activity| activity["body"].as_str().is_some_and(|body| body.contains(NOTE))));
    assert_eq!(exported["related"]["deals"][0]["id"], deal.as_str());
    assert_eq!(exported["related"]["deals"][0]["referencedBy"], "contactId");
    let exported_audit = exported["audit"].as_array().expect("audit");
    // Contact 4, activities 2 + 2, deal 1.
    assert_eq!(exported_audit.len(), 9, "{exported_audit:?}");
    let text = exported.to_string().to_lowercase();
    for needle in personal() {
        assert!(text.contains(&needle), "the export lacks {needle}");
    }
    assert!(text.contains(&PHONE.to_lowercase()), "the export shows old values from the audit");
    assert!(!text.contains("grace"), "the export shows someone else");

    // Only admins erase; bad and unknown emails are refused; nothing changes.
    let sales =
        server.ok("mutation { createApiKey(input: {name: \"desk\", role: \"sales\"}) { key } }", json!({})).await["createApiKey"]
            ["key"]
            .as_str()
            .expect("sales key")
            .to_string();
    let erase = "mutation($e: String!) { erasePerson(email: $e) { contacts activities auditEntries } }";
    assert_eq!(server.code_as(&sales, erase, json!({ "e": EMAIL })).await, "FORBIDDEN");
    assert_eq!(
        server.code_as(&sales, "query($e: String!) { exportPerson(email: $e) }", json!({ "e": EMAIL })).await,
        "FORBIDDEN"
    );
    assert_eq!(server.code(erase, json!({ "e": "not an email" })).await, "VALIDATION");
    assert_eq!(server.code(erase, json!({ "e": "\u{0}sealed:1:AAAA@example.org" })).await, "VALIDATION");
    assert_eq!(server.code(erase, json!({ "e": "nobody@example.org" })).await, "NOT_FOUND");
    assert_eq!(export(&server, EMAIL).await["contacts"], exported["contacts"], "a refused erasure changes nothing");

    // The erasure.
    let report = server.ok(erase, json!({ "e": EMAIL })).await["erasePerson"].clone();
    assert_eq!(report["contacts"], 1);
    assert_eq!(report["activities"], 2);
    let contact_history = history(&server, "CONTACT", &contact).await;
    let first_history = history(&server, "ACTIVITY", &activities[0]).await;
    let second_history = history(&server, "ACTIVITY", &activities[1]).await;
    let entries =
        [&contact_history, &first_history, &second_history].iter().map(|h| h.as_array().map_or(0, Vec::len)).sum::<usize>();
    assert_eq!(report["auditEntries"], entries);
    // Contact: 4 changes, the erasing update and the delete; activities: their
    // changes and the erasing update, the deleted one restored for it and deleted again.
    assert_eq!(entries, 6 + 3 + 5);
    let operations: Vec<&str> =
        second_history.as_array().expect("history").iter().filter_map(|entry| entry["operation"].as_str()).collect();
    assert_eq!(operations, ["CREATED", "DELETED", "RESTORED", "UPDATED", "DELETED"]);

    // History keeps fields, actors, times and operations, not the values.
    let operations: Vec<&str> =
        contact_history.as_array().expect("history").iter().filter_map(|entry| entry["operation"].as_str()).collect();
    assert_eq!(operations, ["CREATED", "UPDATED", "UPDATED", "UPDATED", "UPDATED", "DELETED"]);
    for entry in contact_history.as_array().expect("history") {
        assert!(entry["actor"].as_str().is_some_and(|actor| actor.starts_with("api-key:")), "{entry}");
        for change in entry["changes"].as_array().expect("changes") {
            assert_eq!(change["erased"], true, "{change}");
            assert!(change["before"].is_null() && change["after"].is_null(), "{change}");
        }
    }
    assert!(contact_history[1]["changes"].as_array().expect("changes").iter().any(|change| change["field"] == "phone"));
    for (what, value) in
        [("contact history", &contact_history), ("activity history", &first_history), ("activity history", &second_history)]
    {
        assert_clean(what, value);
    }

    // No query shows the person any more.
    let by_email = server
        .ok(
            "query($e: String!) { contacts(filter: {email: {eq: $e}}, includeDeleted: true) { totalCount nodes { id } } }",
            json!({ "e": EMAIL }),
        )
        .await;
    assert_eq!(by_email["contacts"]["totalCount"], 0);
    let all = server
        .ok(
            "{ contacts(includeDeleted: true, first: 500) { nodes { id firstName lastName email phone mobile title tags deletedAt emailOptIn emailOptInSource ownerId } } }",
            json!({}),
        )
        .await;
    assert_clean("contacts", &all);
    let nodes = all["contacts"]["nodes"].as_array().expect("nodes");
    let erased = nodes.iter().find(|node| node["id"] == contact.as_str()).expect("the erased contact is kept, deleted");
    assert!(erased["deletedAt"].is_string());
    assert!(erased["email"].is_null() && erased["phone"].is_null() && erased["lastName"].is_null());
    let activities_now = server
        .ok("{ activities(first: 500, includeDeleted: true) { nodes { id subject body contactId deletedAt } } }", json!({}))
        .await;
    assert_clean("activities", &activities_now);
    assert!(
        activities_now["activities"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|node| node["contactId"] == contact.as_str())
            .count()
            == 2
    );
    let nodes = activities_now["activities"]["nodes"].as_array().expect("nodes");
    let deleted_activity = nodes.iter().find(|node| node["id"] == activities[1].as_str()).expect("the deleted activity");
    assert!(deleted_activity["deletedAt"].is_string(), "it stays deleted: {deleted_activity}");
    assert!(deleted_activity["subject"].is_null() && deleted_activity["body"].is_null());
    let (changes, _) = server.changes_since(None).await;
    assert_clean("change feed", &Value::Array(changes));
    let log = audit_log(&server).await;
    assert_clean("audit log", &Value::Array(log.clone()));
    let erased_entries = log.iter().filter(|entry| entry["recordId"] == contact.as_str()).count();
    assert_eq!(erased_entries, 6, "every entry of the contact stays in the log");
    assert_eq!(export(&server, EMAIL).await["contacts"], json!([]), "nothing is held under the email");
    let deal_export =
        server.ok("query($id: ID!) { deal(id: $id) { name contact { id firstName } } }", json!({ "id": deal })).await;
    assert_eq!(deal_export["deal"]["contact"], Value::Null, "a deleted contact is not shown through the deal");

    // The other contact is untouched, values and history alike.
    let grace = server.ok("query($id: ID!) { contact(id: $id) { email phone lastName } }", json!({ "id": other })).await;
    assert_eq!(grace["contact"], json!({ "email": "grace@navy.example", "phone": "+1 555 0100 0001", "lastName": "Hopper" }));
    let grace_history = history(&server, "CONTACT", &other).await;
    assert!(
        grace_history[0]["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|change| change["field"] == "email" && change["after"] == "grace@navy.example" && change["erased"] == false)
    );
    assert_eq!(export(&server, "grace@navy.example").await["contacts"][0]["lastName"], "Hopper");

    // Offline: the whole export and the chain.
    server.kill9().await;
    let output = crm(dir.path(), &["export", "--tenant", "default"]).await;
    assert!(output.status.success(), "export failed: {}", stderr(&output));
    let exported_file = stdout(&output);
    assert!(exported_file.contains(&contact), "the export lists the erased contact's record");
    assert!(exported_file.contains("grace@navy.example"));
    let found = found_in(&exported_file);
    assert!(found.is_empty(), "crm export still shows {found:?}");
    let verify = crm(dir.path(), &["audit", "verify", "--tenant", "default"]).await;
    assert!(verify.status.success(), "audit verify failed after erasure: {} {}", stdout(&verify), stderr(&verify));
    assert!(stdout(&verify).contains("intact"), "{}", stdout(&verify));
}
