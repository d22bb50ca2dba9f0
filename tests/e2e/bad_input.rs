//! Bad input over HTTP and on the command line: every refusal carries the
//! documented status and code, and nothing is written.

use serde_json::{Value, json};

use crate::support::{Reply, Server, create_tenant, crm, data_dir, single_code, stderr, stdout};

const JSON: (&str, &str) = ("content-type", "application/json");
const GRAPHQL_RESPONSE: (&str, &str) = ("accept", "application/graphql-response+json");

/// What a tenant holds: record counts and the end of the change feed.
async fn snapshot(server: &Server) -> (Vec<u64>, String) {
    let mut counts = Vec::new();
    for plural in ["contacts", "companies", "deals", "activities", "pipelines"] {
        counts.push(server.count(plural).await);
    }
    let (_, cursor) = server.changes_since(None).await;
    (counts, cursor)
}

#[track_caller]
fn expect(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "status of {}", reply.text);
    let body = reply.json();
    assert_eq!(single_code(&body), code, "{body}");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|message| !message.is_empty()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_documented_codes_and_write_nothing() {
    let server = Server::start(&[]).await;
    let existing = server.ok("mutation { createContact(input: {firstName: \"Existing\", email: \"e@example.com\"}) { id } }", json!({})).await;
    let existing = existing["createContact"]["id"].as_str().expect("id").to_string();
    server.ok("mutation { createCompany(input: {name: \"Existing\"}) { id } }", json!({})).await;
    let before = snapshot(&server).await;
    let auth = format!("Bearer {}", server.key);
    let auth = ("authorization", auth.as_str());
    let post = |body: Value, accept_graphql: bool| {
        let server = &server;
        async move {
            let mut headers = vec![JSON, auth];
            if accept_graphql {
                headers.push(GRAPHQL_RESPONSE);
            }
            server.post_raw(&headers, serde_json::to_vec(&body).expect("encode")).await
        }
    };

    // Requests the GraphQL engine refuses before executing: 200 with
    // application/json, 400 with application/graphql-response+json.
    let refused_before_execution = [
        json!({ "query": "{ contacts { " }),
        json!({ "variables": {} }),
        json!({ "query": "{ contacts { nodes { shoeSize } } }" }),
        json!({ "query": "{ nowhere }" }),
        json!({ "query": "query($n: Int) { contacts(first: $n) { totalCount } }", "variables": { "n": "ten" } }),
        json!({ "query": "query($id: ID!) { contact(id: $id) { id } }", "variables": {} }),
        json!({ "query": "mutation($s: Int) { createContact(input: {firstName: \"x\", leadScore: $s}) { id } }", "variables": { "s": "high" } }),
        json!({ "query": "mutation { createContact(input: {firstName: \"X\", shoeSize: 3}) { id } }" }),
        json!({ "query": "mutation($i: CreateContactInput!) { createContact(input: $i) { id } }", "variables": { "i": { "firstName": "X", "shoeSize": 3 } } }),
        json!({ "query": "mutation { createContact(input: {lastName: \"No first name\"}) { id } }" }),
        json!({ "query": "mutation { createContact(input: {firstName: \"X\", lifecycleStage: WIZARD}) { id } }" }),
        json!({ "query": "mutation($s: ContactLifecycleStage) { createContact(input: {firstName: \"X\", lifecycleStage: $s}) { id } }", "variables": { "s": "WIZARD" } }),
        json!({ "query": "{ contacts(filter: {lifecycleStage: {eq: WIZARD}}) { totalCount } }" }),
        json!({ "query": "mutation { createDeal(input: {name: \"X\", amount: 10, expectedAmount: 5}) { id } }" }),
        json!({ "query": "mutation($id: ID!) { updateDeal(id: $id, input: {expectedAmount: 5}) { id } }", "variables": { "id": existing } }),
        json!({ "query": "mutation { createContact(input: {firstName: \"X\", leadScore: 1.5}) { id } }" }),
        json!({ "query": "{ contacts(orderBy: [{field: SHOE_SIZE}]) { totalCount } }" }),
    ];
    for body in &refused_before_execution {
        let reply = post(body.clone(), false).await;
        expect(&reply, 200, "VALIDATION");
        assert_eq!(reply.json()["data"], Value::Null, "{body}");
        let reply = post(body.clone(), true).await;
        expect(&reply, 400, "VALIDATION");
        assert!(reply.content_type.starts_with("application/graphql-response+json"), "{}", reply.content_type);
    }

    // Requests refused by the resolvers: VALIDATION with status 200 either way.
    let long_title = "x".repeat(4 * 1024 + 1);
    let refused_by_resolvers = [
        json!({ "query": "{ contacts(after: \"garbage\") { totalCount } }" }),
        json!({ "query": "{ contacts(last: 2, before: \"garbage\") { totalCount } }" }),
        json!({ "query": "{ contacts(first: 501) { totalCount } }" }),
        json!({ "query": "{ contacts(last: 501) { totalCount } }" }),
        json!({ "query": "{ contacts(first: -1) { totalCount } }" }),
        json!({ "query": "{ companies { nodes { contacts(first: 501) { totalCount } } } }" }),
        json!({ "query": "{ changes(after: \"garbage\") { cursor } }" }),
        json!({ "query": "{ changes(first: 1001) { cursor } }" }),
        json!({ "query": "{ changes(first: 0) { cursor } }" }),
        json!({ "query": "{ contact(id: \"not-an-id\") { id } }" }),
        json!({ "query": "mutation { updateContact(id: \"not-an-id\", input: {title: \"x\"}) { id } }" }),
        json!({ "query": "mutation { deleteContact(id: \"\") { id } }" }),
        json!({ "query": "mutation { createContact(input: {firstName: \"X\", companyId: \"not-an-id\"}) { id } }" }),
        json!({ "query": "mutation { createContact(input: {firstName: \"X\", email: \"not-an-email\"}) { id } }" }),
        json!({ "query": "mutation { createContact(input: {firstName: \"X\", email: \"a@b\"}) { id } }" }),
        json!({ "query": "mutation { createCompany(input: {name: \"X\", website: \"ftp://example.com\"}) { id } }" }),
        json!({ "query": "mutation { createDeal(input: {name: \"X\", closeDate: \"31/01/2026\"}) { id } }" }),
        json!({ "query": "mutation { createActivity(input: {kind: CALL, occurredAt: \"yesterday\"}) { id } }" }),
        json!({ "query": "mutation($t: String) { createContact(input: {firstName: \"X\", title: $t}) { id } }", "variables": { "t": long_title } }),
        json!({ "query": "{ dealsAggregate(groupBy: [CREATED_AT]) { count } }" }),
    ];
    for body in &refused_by_resolvers {
        for accept_graphql in [false, true] {
            let reply = post(body.clone(), accept_graphql).await;
            assert_eq!(reply.status, 200, "{body}: {}", reply.text);
            let json = reply.json();
            assert_eq!(single_code(&json), "VALIDATION", "{body}: {json}");
        }
    }
    // The offending input field is named.
    let reply = post(json!({ "query": "mutation { createContact(input: {firstName: \"X\", email: \"nope\"}) { id } }" }), false).await;
    assert_eq!(reply.json()["errors"][0]["extensions"]["field"], "email");
    // A cursor of another ordering is refused too.
    let page = server.ok("{ contacts(first: 1) { pageInfo { endCursor } } }", json!({})).await;
    let cursor = page["contacts"]["pageInfo"]["endCursor"].clone();
    let reply = post(json!({ "query": "query($c: String) { contacts(after: $c, orderBy: [{field: LAST_NAME}]) { totalCount } }", "variables": { "c": cursor } }), false).await;
    expect(&reply, 200, "VALIDATION");

    // Transport errors.
    expect(&server.post_raw(&[JSON, auth], "this is not json").await, 400, "VALIDATION");
    let reply = server.post_raw(&[("content-type", "text/plain"), auth], r#"{"query":"{ contacts { totalCount } }"}"#).await;
    expect(&reply, 415, "VALIDATION");
    let reply = server.post_raw(&[auth], r#"{"query":"{ contacts { totalCount } }"}"#).await;
    expect(&reply, 415, "VALIDATION");

    // Authentication.
    let create = "mutation { createContact(input: {firstName: \"Anonymous\"}) { id } }";
    expect(&server.post_gql(None, create, json!({})).await, 401, "UNAUTHENTICATED");
    expect(&server.post_gql(Some("crm_wrong"), create, json!({})).await, 401, "UNAUTHENTICATED");
    expect(&server.post_gql(Some(""), create, json!({})).await, 401, "UNAUTHENTICATED");
    let tampered = format!("{}x", server.key);
    expect(&server.post_gql(Some(&tampered), create, json!({})).await, 401, "UNAUTHENTICATED");
    let basic = server.post_raw(&[JSON, ("authorization", "Basic dXNlcjpwYXNz")], serde_json::to_vec(&json!({ "query": create })).expect("encode")).await;
    assert_eq!(basic.status, 401, "{}", basic.text);

    // Nothing of it was written.
    assert_eq!(snapshot(&server).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_with_413() {
    let server = Server::start(&["--max-body-bytes", "4096"]).await;
    let before = snapshot(&server).await;
    let create = "mutation($t: String) { createContact(input: {firstName: \"Big\", title: $t}) { id } }";
    let too_big = server.post_gql(Some(&server.key), create, json!({ "t": "y".repeat(5000) })).await;
    expect(&too_big, 413, "VALIDATION");
    assert!(too_big.json()["errors"][0]["message"].as_str().is_some_and(|message| message.contains("4096")), "{}", too_big.text);
    // A body just under the limit is served.
    assert_eq!(snapshot(&server).await, before);
    let fine = server.ok(create, json!({ "t": "y".repeat(3900) })).await;
    assert!(fine["createContact"]["id"].is_string());
    assert_eq!(server.count("contacts").await, 1);
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write csv");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_bad_rows_and_the_cli_refuses_a_busy_data_dir() {
    let dir = data_dir();
    let files = tempfile::tempdir().expect("temp dir");
    let key = create_tenant(dir.path(), "acme").await;

    let mixed = write(
        files.path(),
        "mixed.csv",
        "first_name,last_name,email,lifecycle_stage,lead_score\n\
         Ada,Lovelace,ada@example.com,lead,10\n\
         Bob,,not-an-email,lead,5\n\
         Cy,,cy@example.com,wizard,5\n\
         Di,,di@example.com,lead,lots\n\
         ,,nofirst@example.com,lead,1\n\
         Eve,,EVE@example.com,Customer,7\n",
    );
    let output = crm(dir.path(), &["import", "contacts", mixed.to_str().expect("path"), "--tenant", "acme"]).await;
    let text = stdout(&output);
    assert!(output.status.success(), "import failed: {}{}", text, stderr(&output));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "four rejections and a summary:\n{text}");
    assert!(lines[0].starts_with("line 3: rejected: email:") && lines[0].contains("not-an-email"), "{text}");
    assert!(lines[1].starts_with("line 4: rejected: lifecycle_stage:") && lines[1].contains("wizard"), "{text}");
    assert!(lines[2].starts_with("line 5: rejected: lead_score:") && lines[2].contains("lots"), "{text}");
    assert!(lines[3].starts_with("line 6: rejected: first_name:") && lines[3].contains("required"), "{text}");
    assert_eq!(lines[4], "imported into tenant 'acme': 2 created, 0 updated, 0 unchanged, 4 rejected");

    // Known emails update; a missing first name is fine for an existing contact.
    let update = write(files.path(), "update.csv", "email,lifecycleStage,first_name\nada@example.com,customer,\neve@example.com,customer,Eve\n");
    let output = crm(dir.path(), &["import", "contacts", update.to_str().expect("path"), "--tenant", "acme"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "imported into tenant 'acme': 0 created, 1 updated, 1 unchanged, 0 rejected");

    // An unknown column: nothing is written and the command fails.
    let unknown = write(files.path(), "unknown.csv", "first_name,email,shoe_size\nZed,zed@example.com,44\n");
    let output = crm(dir.path(), &["import", "contacts", unknown.to_str().expect("path"), "--tenant", "acme"]).await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("unknown column 'shoe_size'"), "{}", stderr(&output));
    // No email column, and an unknown tenant, fail as well.
    let no_email = write(files.path(), "no-email.csv", "first_name\nZed\n");
    let output = crm(dir.path(), &["import", "contacts", no_email.to_str().expect("path"), "--tenant", "acme"]).await;
    assert!(!output.status.success() && stderr(&output).contains("email"), "{}", stderr(&output));
    let output = crm(dir.path(), &["import", "contacts", mixed.to_str().expect("path"), "--tenant", "nobody"]).await;
    assert!(!output.status.success());

    // The export holds exactly the imported contacts.
    let out = files.path().join("acme.jsonl");
    let output = crm(dir.path(), &["export", "--tenant", "acme", "--out", out.to_str().expect("path")]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let exported: Vec<Value> = std::fs::read_to_string(&out)
        .expect("read export")
        .lines()
        .map(|line| serde_json::from_str(line).expect("export line is JSON"))
        .collect();
    let contacts: Vec<&Value> = exported.iter().filter(|line| line["object"] == "contact").collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0]["fields"], json!({ "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "lifecycle_stage": "customer", "lead_score": 10 }));
    assert_eq!(contacts[0]["version"], 2);
    assert_eq!(contacts[1]["fields"]["email"], "eve@example.com");
    assert_eq!(contacts[1]["fields"]["lifecycle_stage"], "customer");
    assert_eq!(exported.iter().filter(|line| line["object"] == "pipeline_stage").count(), 7);

    // Served, the tenant's key sees the same, and the audit names the CLI.
    let server = Server::start_in(dir.path(), &[]).await;
    let data = server
        .ok_as(&key, "{ contacts(orderBy: [{field: EMAIL}]) { totalCount nodes { id email lifecycleStage leadScore } } }", json!({}))
        .await;
    assert_eq!(data["contacts"]["totalCount"], 2);
    assert_eq!(data["contacts"]["nodes"][0]["lifecycleStage"], "CUSTOMER");
    assert_eq!(data["contacts"]["nodes"][0]["leadScore"], 10);
    let ada = data["contacts"]["nodes"][0]["id"].clone();
    let history = server.ok_as(&key, "query($id: ID!) { recordHistory(object: CONTACT, id: $id) { actor operation } }", json!({ "id": ada })).await;
    assert_eq!(history["recordHistory"], json!([{ "actor": "cli", "operation": "CREATED" }, { "actor": "cli", "operation": "UPDATED" }]));
    assert_eq!(server.count("contacts").await, 0, "the default tenant is separate");

    // While the server holds the data directory, the CLI refuses to run.
    for args in [
        vec!["import", "contacts", update.to_str().expect("path"), "--tenant", "acme"],
        vec!["export", "--tenant", "acme"],
        vec!["tenant", "create", "another"],
        vec!["tenant", "list"],
    ] {
        let output = crm(dir.path(), &args).await;
        assert!(!output.status.success(), "{args:?} ran against a busy data directory");
        assert!(stderr(&output).contains("in use by another process"), "{args:?}: {}", stderr(&output));
    }
    // And nothing changed.
    let after = server.ok_as(&key, "{ contacts { totalCount } }", json!({})).await;
    assert_eq!(after["contacts"]["totalCount"], 2);
}

/// A file of several thousand-row chunks: the next chunk is read while the
/// writer applies the last, and rows still take effect in file order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_several_chunks_applies_rows_in_file_order() {
    let dir = data_dir();
    let files = tempfile::tempdir().expect("temp dir");
    create_tenant(dir.path(), "acme").await;
    let mut csv = String::from("first_name,email,lifecycle_stage\n");
    for row in 1..=3500 {
        let line = match row {
            // The same person again at the start of the second and of the
            // third chunk: chunks queued one right behind the other.
            1001 => "Ten,person10@example.com,customer".to_string(),
            2001 => "Ten,person10@example.com,subscriber".to_string(),
            2200 => "Bad,not-an-email,lead".to_string(),
            row => format!("P{row},person{row}@example.com,lead"),
        };
        csv.push_str(&line);
        csv.push('\n');
    }
    let file = write(files.path(), "many.csv", &csv);
    let output = crm(dir.path(), &["import", "contacts", file.to_str().expect("path"), "--tenant", "acme"]).await;
    let text = stdout(&output);
    assert!(output.status.success(), "import failed: {}{}", text, stderr(&output));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one rejection and a summary:\n{text}");
    assert!(lines[0].starts_with("line 2201: rejected: email:"), "{text}");
    assert_eq!(lines[1], "imported into tenant 'acme': 3497 created, 2 updated, 0 unchanged, 1 rejected");

    let out = files.path().join("acme.jsonl");
    let output = crm(dir.path(), &["export", "--tenant", "acme", "--out", out.to_str().expect("path")]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let contacts: Vec<Value> = std::fs::read_to_string(&out)
        .expect("read export")
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("export line is JSON"))
        .filter(|line| line["object"] == "contact")
        .collect();
    assert_eq!(contacts.len(), 3497);
    let ten: Vec<&Value> = contacts.iter().filter(|line| line["fields"]["email"] == "person10@example.com").collect();
    assert_eq!(ten.len(), 1);
    assert_eq!(ten[0]["fields"]["lifecycle_stage"], "subscriber", "the last row of the file wins");
    assert_eq!(ten[0]["fields"]["first_name"], "Ten");
    assert_eq!(ten[0]["version"], 3);
    assert!(contacts.iter().any(|line| line["fields"]["email"] == "person3500@example.com"), "the last chunk is written");
}

/// JSON lines that turn unreadable after more than a chunk: the lines
/// before the bad one are imported and reported, then the command fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_json_line_reports_what_was_imported_before_it() {
    let dir = data_dir();
    let files = tempfile::tempdir().expect("temp dir");
    create_tenant(dir.path(), "acme").await;
    let mut bytes = Vec::new();
    for row in 1..=1500 {
        let line = json!({ "object": "contact", "deleted_at": null, "fields": { "first_name": format!("J{row}"), "email": format!("j{row}@example.com") } });
        bytes.extend_from_slice(line.to_string().as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"{\"object\": \"contact\", \"fields\": {\"first_name\": \"\xff\xfe\"}}\n");
    let file = files.path().join("broken.jsonl");
    std::fs::write(&file, bytes).expect("write jsonl");
    let output = crm(dir.path(), &["import", "contacts", file.to_str().expect("path"), "--tenant", "acme"]).await;
    assert!(!output.status.success(), "an unreadable line fails the import");
    assert!(stderr(&output).contains("cannot read line 1501"), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "imported into tenant 'acme': 1500 created, 0 updated, 0 unchanged, 0 rejected");

    let out = files.path().join("acme.jsonl");
    let output = crm(dir.path(), &["export", "--tenant", "acme", "--out", out.to_str().expect("path")]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let contacts = std::fs::read_to_string(&out).expect("read export").lines().filter(|line| line.contains("\"object\":\"contact\"")).count();
    assert_eq!(contacts, 1500);
}
