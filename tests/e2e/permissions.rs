//! Roles and permissions over the real server.
//!
//! The matrix: for each built-in role and a custom one, every CRM object ×
//! operation × record scope (the caller's own record, a teammate's, an
//! outsider's) is allowed or `FORBIDDEN` exactly as the role says, through
//! get, a filtered and sorted list, aggregate, the reverse relation from a
//! company, the change feed, update, bulk update, delete, restore and
//! create. The table of
//! expectations below is written from the documented role definitions, not
//! read from the server.
//!
//! Then field rules and escalation attempts through every other path:
//! filters, sorts, groupings, relations, bulk and upsert writes,
//! subscriptions, the change feed, record history, and ids of another
//! tenant.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::support::{Server, WsEvent, codes, create_tenant, data_dir};

#[derive(Clone, Copy, Debug, PartialEq)]
enum S {
    No,
    Own,
    Team,
    All,
}

#[derive(Clone, Copy, Debug)]
struct Grant {
    read: S,
    create: bool,
    update: S,
    delete: S,
}

const FULL: Grant = Grant { read: S::All, create: true, update: S::All, delete: S::All };
const READ: Grant = Grant { read: S::All, create: false, update: S::No, delete: S::No };
const NONE: Grant = Grant { read: S::No, create: false, update: S::No, delete: S::No };

/// What each role may do, per object, as documented.
fn expected(role: &str, object: &str) -> Grant {
    match (role, object) {
        ("admin" | "manager", _) => FULL,
        ("sales", _) => Grant { read: S::All, create: true, update: S::Own, delete: S::Own },
        ("support", "company") => READ,
        ("support", "contact") => Grant { read: S::All, create: true, update: S::Team, delete: S::No },
        ("support", "activity") => Grant { read: S::All, create: true, update: S::Team, delete: S::Own },
        ("support", "deal") => NONE,
        ("read-only", _) => READ,
        ("territory", "contact") => Grant { read: S::Team, create: true, update: S::Own, delete: S::No },
        ("territory", "company") => Grant { read: S::Own, create: false, update: S::No, delete: S::No },
        ("territory", "deal") => NONE,
        ("territory", _) => Grant { read: S::All, create: true, update: S::Team, delete: S::Team },
        _ => panic!("no expectation for {role}/{object}"),
    }
}

const ROLES: [&str; 6] = ["admin", "manager", "sales", "support", "read-only", "territory"];
const OBJECTS: [(&str, &str, &str, &str); 4] = [
    // object, GraphQL type name, plural, a required text field and its value
    ("company", "Company", "companies", "name"),
    ("contact", "Contact", "contacts", "firstName"),
    ("deal", "Deal", "deals", "name"),
    ("activity", "Activity", "activities", "subject"),
];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
enum Case {
    Own,
    Team,
    Other,
}

fn admits(scope: S, case: Case) -> bool {
    match scope {
        S::No => false,
        S::All => true,
        S::Team => case != Case::Other,
        S::Own => case == Case::Own,
    }
}

fn create_input(object: &str, field: &str, text: &str, owner: &str, team: &str) -> Value {
    let mut input = json!({ field: text, "ownerId": owner, "teamId": team });
    if object == "activity" {
        input["kind"] = json!("NOTE");
    }
    input
}

/// Allowed (no error) or the single error's code.
fn outcome(body: &Value) -> Result<(), String> {
    let codes = codes(body);
    if codes.is_empty() { Ok(()) } else { Err(codes.join(",")) }
}

fn check(allowed: bool, body: &Value, what: &str) {
    match (allowed, outcome(body)) {
        (true, Ok(())) => {}
        (false, Err(code)) if code == "FORBIDDEN" => {}
        (allowed, got) => panic!("{what}: expected {}, got {got:?}: {body}", if allowed { "allowed" } else { "FORBIDDEN" }),
    }
}

struct Fixture {
    server: Server,
    team_east: String,
    mate: String,
    outsider: String,
    users: HashMap<&'static str, String>,
    keys: HashMap<&'static str, String>,
    /// Per role, a company its user owns (readable by every role): the
    /// parent of that role's contacts, deals and activities.
    homes: HashMap<&'static str, String>,
}

async fn invite(server: &Server, email: &str, role: &str, team: &str) -> String {
    let data = server
        .ok(
            "mutation($input: InviteUserInput!) { inviteUser(input: $input) { user { id } } }",
            json!({ "input": { "email": email, "name": email, "role": role, "teamId": team } }),
        )
        .await;
    data["inviteUser"]["user"]["id"].as_str().expect("user id").to_string()
}

async fn key_for(server: &Server, role: &str, user: &str) -> String {
    let data = server
        .ok(
            "mutation($r: String!, $u: ID) { createApiKey(input: {name: \"test\", role: $r, userId: $u}) { key } }",
            json!({ "r": role, "u": user }),
        )
        .await;
    data["createApiKey"]["key"].as_str().expect("key").to_string()
}

async fn fixture(server: Server) -> Fixture {
    let team = |name: &'static str| {
        let server = &server;
        async move {
            let data = server.ok("mutation($n: String!) { createTeam(name: $n) { id } }", json!({ "n": name })).await;
            data["createTeam"]["id"].as_str().expect("team").to_string()
        }
    };
    let east = team("East").await;
    let west = team("West").await;
    // The custom role: contacts of the team, companies they own, no deals,
    // emails hidden, owners read-only.
    server
        .ok(
            r#"mutation { defineRole(input: {
                name: "territory", description: "Works a territory", default: {read: ALL, create: true, update: TEAM, delete: TEAM},
                objects: [{object: "contact", read: TEAM, create: true, update: OWN},
                          {object: "company", read: OWN},
                          {object: "deal"}],
                fields: [{object: "contact", field: "email", access: HIDDEN},
                         {object: "contact", field: "ownerId", access: READ}]
            }) { name } }"#,
            json!({}),
        )
        .await;
    let mate = invite(&server, "mate@example.com", "sales", &east).await;
    let outsider = invite(&server, "outsider@example.com", "sales", &west).await;
    let mut users = HashMap::new();
    let mut keys = HashMap::new();
    for role in ROLES {
        let user = invite(&server, &format!("{role}@example.com"), role, &east).await;
        keys.insert(role, key_for(&server, role, &user).await);
        users.insert(role, user);
    }
    let mut homes = HashMap::new();
    for role in ROLES {
        let data = server
            .ok("mutation($o: ID) { createCompany(input: {name: \"Home\", ownerId: $o}) { id } }", json!({ "o": users[role] }))
            .await;
        homes.insert(role, data["createCompany"]["id"].as_str().expect("id").to_string());
    }
    Fixture { server, team_east: east, mate, outsider, users, keys, homes }
}

impl Fixture {
    /// Three records of an object for a role's user: their own (in the
    /// other team), a teammate's, and an outsider's.
    async fn triple(&self, role: &str, object: &(&str, &str, &str, &str)) -> Vec<(Case, String)> {
        let (name, type_name, _, field) = *object;
        let west_team = self.outsider_team().await;
        let mut out = Vec::new();
        for (case, owner, team) in [
            (Case::Own, self.users[role].as_str(), west_team.as_str()),
            (Case::Team, self.mate.as_str(), self.team_east.as_str()),
            (Case::Other, self.outsider.as_str(), west_team.as_str()),
        ] {
            let mut input = create_input(name, field, &format!("{role} {case:?}"), owner, team);
            if name != "company" {
                input["companyId"] = json!(self.homes[role]);
            }
            let data = self
                .server
                .ok(&format!("mutation($i: Create{type_name}Input!) {{ create{type_name}(input: $i) {{ id }} }}"), json!({ "i": input }))
                .await;
            out.push((case, data[format!("create{type_name}")]["id"].as_str().expect("id").to_string()));
        }
        out
    }

    async fn outsider_team(&self) -> String {
        let me = self.server.ok("{ teams { id name } }", json!({})).await;
        me["teams"].as_array().expect("teams").iter().find(|t| t["name"] == "West").expect("west")["id"].as_str().expect("id").to_string()
    }

    async fn as_role(&self, role: &str, query: &str, variables: Value) -> Value {
        self.server.gql_as(&self.keys[role], query, variables).await
    }
}

/// Every record id in the change feed as a role sees it, all pages.
async fn change_ids(f: &Fixture, role: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let body = f
            .as_role(role, "query($a: String) { changes(after: $a, first: 1000) { changes { id } cursor hasMore } }", json!({ "a": after }))
            .await;
        let feed = &body["data"]["changes"];
        for change in feed["changes"].as_array().unwrap_or_else(|| panic!("no feed for {role}: {body}")) {
            ids.insert(change["id"].as_str().expect("id").to_string());
        }
        if feed["hasMore"] != true {
            return ids;
        }
        after = feed["cursor"].as_str().map(str::to_string);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_gets_exactly_its_permissions_on_every_object_and_scope() {
    let f = fixture(Server::start(&["--no-bundled-plugins"]).await).await;
    for role in ROLES {
        for object in &OBJECTS {
            let (name, type_name, plural, field) = *object;
            let grant = expected(role, name);
            let records = f.triple(role, object).await;
            let ids: Vec<&str> = records.iter().map(|(_, id)| id.as_str()).collect();
            let what = |op: &str, case: Option<Case>| format!("{role} {op} {name} {case:?}");

            // get by id
            for (case, id) in &records {
                let body = f.as_role(role, &format!("query($id: ID!) {{ {name}(id: $id) {{ id }} }}"), json!({ "id": id })).await;
                check(admits(grant.read, *case), &body, &what("get", Some(*case)));
            }
            // list (filtered and sorted) and aggregate: exactly the readable records
            let body = f
                .as_role(
                    role,
                    &format!("query($ids: [ID!]) {{ {plural}(filter: {{id: {{in: $ids}}}}, orderBy: [{{field: CREATED_AT, direction: DESC}}]) {{ totalCount nodes {{ id }} }} }}"),
                    json!({ "ids": ids }),
                )
                .await;
            // the reverse relation from the role's company: the same records
            let related = if name == "company" {
                None
            } else {
                Some(
                    f.as_role(
                        role,
                        &format!("query($c: ID!, $ids: [ID!]) {{ company(id: $c) {{ {plural}(filter: {{id: {{in: $ids}}}}) {{ nodes {{ id }} }} }} }}"),
                        json!({ "c": f.homes[role], "ids": ids }),
                    )
                    .await,
                )
            };
            let aggregate = f
                .as_role(role, &format!("query($ids: [ID!]) {{ {plural}Aggregate(filter: {{id: {{in: $ids}}}}) {{ count }} }}"), json!({ "ids": ids }))
                .await;
            if grant.read == S::No {
                check(false, &body, &what("list", None));
                check(false, &aggregate, &what("aggregate", None));
                if let Some(related) = &related {
                    check(false, related, &what("relation", None));
                }
            } else {
                let seen: BTreeSet<String> =
                    body["data"][plural]["nodes"].as_array().expect("nodes").iter().map(|n| n["id"].as_str().expect("id").to_string()).collect();
                let readable: BTreeSet<String> =
                    records.iter().filter(|(case, _)| admits(grant.read, *case)).map(|(_, id)| id.clone()).collect();
                assert_eq!(seen, readable, "{}", what("list", None));
                assert_eq!(body["data"][plural]["totalCount"], readable.len(), "{}", what("list count", None));
                assert_eq!(aggregate["data"][format!("{plural}Aggregate")]["count"], readable.len(), "{}", what("aggregate", None));
                if let Some(related) = &related {
                    let through: BTreeSet<String> = related["data"]["company"][plural]["nodes"]
                        .as_array()
                        .unwrap_or_else(|| panic!("{}: {related}", what("relation", None)))
                        .iter()
                        .map(|n| n["id"].as_str().expect("id").to_string())
                        .collect();
                    assert_eq!(through, readable, "{}", what("relation", None));
                }
            }
            // update, delete, restore
            for (case, id) in &records {
                let body = f
                    .as_role(
                        role,
                        &format!("mutation($id: ID!, $i: Update{type_name}Input!) {{ update{type_name}(id: $id, input: $i) {{ id }} }}"),
                        json!({ "id": id, "i": { field: format!("changed by {role}") } }),
                    )
                    .await;
                check(admits(grant.update, *case), &body, &what("update", Some(*case)));
            }
            // bulk update, one record per request so each case stands alone
            let plural_type = format!("{}{}", &plural[..1].to_uppercase(), &plural[1..]);
            for (case, id) in &records {
                let body = f
                    .as_role(
                        role,
                        &format!("mutation($items: [Update{type_name}Item!]!) {{ update{plural_type}(inputs: $items) {{ id }} }}"),
                        json!({ "items": [{ "id": id, "input": { field: format!("bulk by {role}") } }] }),
                    )
                    .await;
                check(admits(grant.update, *case), &body, &what("bulk update", Some(*case)));
            }
            // the change feed carries exactly the readable records
            let feed = change_ids(&f, role).await;
            for (case, id) in &records {
                assert_eq!(feed.contains(id), admits(grant.read, *case), "{}", what("change feed", Some(*case)));
            }
            for (case, id) in &records {
                let body = f.as_role(role, &format!("mutation($id: ID!) {{ delete{type_name}(id: $id) {{ id }} }}"), json!({ "id": id })).await;
                check(admits(grant.delete, *case), &body, &what("delete", Some(*case)));
                if admits(grant.delete, *case) {
                    let body =
                        f.as_role(role, &format!("mutation($id: ID!) {{ restore{type_name}(id: $id) {{ id }} }}"), json!({ "id": id })).await;
                    check(true, &body, &what("restore", Some(*case)));
                }
            }
            // create
            let mut input = json!({ field: format!("new by {role}") });
            if name == "activity" {
                input["kind"] = json!("CALL");
            }
            let body = f
                .as_role(role, &format!("mutation($i: Create{type_name}Input!) {{ create{type_name}(input: $i) {{ id ownerId }} }}"), json!({ "i": input }))
                .await;
            check(grant.create, &body, &what("create", None));
            if grant.create && grant.read != S::No {
                assert_eq!(body["data"][format!("create{type_name}")]["ownerId"], f.users[role].as_str(), "{}", what("create owner", None));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_rules_and_escalation_attempts_hold_in_every_path() {
    let dir = data_dir();
    let beta_key = create_tenant(dir.path(), "beta").await;
    let f = fixture(Server::start_in(dir.path(), &["--no-bundled-plugins"]).await).await;
    let server = &f.server;
    let contacts = f.triple("sales", &OBJECTS[1]).await;
    let (own, other) = (contacts[0].1.clone(), contacts[2].1.clone());

    // Sales cannot reassign owners or teams: not singly, in bulk or by upsert,
    // and a refused bulk write changes nothing.
    let reassign = server
        .code_as(&f.keys["sales"], "mutation($id: ID!, $o: ID) { updateContact(id: $id, input: {ownerId: $o}) { id } }", json!({ "id": own, "o": f.outsider }))
        .await;
    assert_eq!(reassign, "FORBIDDEN");
    let bulk = f
        .as_role(
            "sales",
            "mutation($a: ID!, $b: ID!) { updateContacts(inputs: [{id: $a, input: {lastName: \"Bulk\"}}, {id: $b, input: {lastName: \"Bulk\"}}]) { id } }",
            json!({ "a": own, "b": other }),
        )
        .await;
    assert_eq!(codes(&bulk), vec!["FORBIDDEN"], "a bulk write reaching another owner's record: {bulk}");
    let unchanged = server.ok("query($id: ID!) { contact(id: $id) { lastName } }", json!({ "id": own })).await;
    assert!(unchanged["contact"]["lastName"].is_null(), "the bulk write was all or nothing: {unchanged}");
    let bulk_field = f
        .as_role("sales", "mutation($t: ID) { createContacts(inputs: [{firstName: \"A\"}, {firstName: \"B\", teamId: $t}]) { id } }", json!({ "t": f.team_east }))
        .await;
    assert_eq!(codes(&bulk_field), vec!["FORBIDDEN"]);
    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {email: \"taken@example.com\"}) { id } }", json!({ "id": other })).await;
    let upsert_owner = f
        .as_role("sales", "mutation($o: ID) { upsertContact(input: {firstName: \"U\", email: \"new@example.com\", ownerId: $o}, onConflict: EMAIL) { id } }", json!({ "o": f.users["sales"] }))
        .await;
    assert_eq!(codes(&upsert_owner), vec!["FORBIDDEN"]);
    let upsert_other = f
        .as_role("sales", "mutation { upsertContact(input: {firstName: \"Mine now\", email: \"taken@example.com\"}, onConflict: EMAIL) { id } }", json!({}))
        .await;
    assert_eq!(codes(&upsert_other), vec!["FORBIDDEN"], "an upsert onto another owner's record: {upsert_other}");
    let still = server.ok("query($id: ID!) { contact(id: $id) { firstName } }", json!({ "id": other })).await;
    assert_ne!(still["contact"]["firstName"], "Mine now");

    // Support: revenue hidden wherever it could show, deals out of reach.
    let company = server.ok("mutation { createCompany(input: {name: \"Big\", annualRevenue: 5000000}) { id } }", json!({})).await["createCompany"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    server.ok("mutation($c: ID!) { createDeal(input: {name: \"D\", companyId: $c}) { id } }", json!({ "c": company })).await;
    for (query, what) in [
        ("query($c: ID!) { company(id: $c) { name annualRevenue } }", "select"),
        ("{ companies(filter: {annualRevenue: {gt: 1}}) { totalCount } }", "filter"),
        ("{ companies(orderBy: [{field: ANNUAL_REVENUE}]) { totalCount } }", "sort"),
        ("{ companiesAggregate { sum { annualRevenue } } }", "aggregate"),
        ("{ companiesAggregate(groupBy: [ANNUAL_REVENUE]) { count } }", "group"),
        ("query($c: ID!) { company(id: $c) { deals { totalCount } } }", "reverse relation to deals"),
        ("{ dealsAggregate { count } }", "deal aggregate"),
    ] {
        let body = f.as_role("support", query, json!({ "c": company })).await;
        assert!(codes(&body).contains(&"FORBIDDEN".to_string()), "support {what}: {body}");
    }
    let name_only = f.as_role("support", "query($c: ID!) { company(id: $c) { name } }", json!({ "c": company })).await;
    assert_eq!(name_only["data"]["company"]["name"], "Big");

    // The custom role: team contacts only, emails hidden, everywhere.
    let territory = f.triple("territory", &OBJECTS[1]).await;
    let hq = server
        .ok("mutation($o: ID) { createCompany(input: {name: \"HQ\", ownerId: $o}) { id } }", json!({ "o": f.users["territory"] }))
        .await["createCompany"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    for (_, id) in &territory {
        server
            .ok("mutation($id: ID!, $c: ID) { updateContact(id: $id, input: {companyId: $c, email: null}) { id } }", json!({ "id": id, "c": hq }))
            .await;
    }
    let through_company = f.as_role("territory", "query($c: ID!) { company(id: $c) { contacts { nodes { id } } } }", json!({ "c": hq })).await;
    let seen: BTreeSet<String> =
        through_company["data"]["company"]["contacts"]["nodes"].as_array().expect("nodes").iter().map(|n| n["id"].as_str().expect("id").to_string()).collect();
    let team_ids: BTreeSet<String> = territory.iter().filter(|(case, _)| *case != Case::Other).map(|(_, id)| id.clone()).collect();
    assert_eq!(seen, team_ids, "a relation shows only records within scope");
    for query in [
        "{ contacts { nodes { email } } }",
        "{ contacts(filter: {email: {eq: \"a@b.c\"}}) { totalCount } }",
        "{ contacts(orderBy: [{field: EMAIL}]) { totalCount } }",
        "mutation { createContact(input: {firstName: \"E\", email: \"e@example.com\"}) { id } }",
    ] {
        let body = f.as_role("territory", query, json!({})).await;
        assert!(codes(&body).contains(&"FORBIDDEN".to_string()), "territory: {query}: {body}");
    }

    // Record history and the change feed: in scope only, hidden fields absent.
    let (own_t, other_t) = (territory[0].1.clone(), territory[2].1.clone());
    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {email: \"secret@example.com\"}) { id } }", json!({ "id": own_t })).await;
    let history = f.as_role("territory", "query($id: ID!) { recordHistory(object: CONTACT, id: $id) { changes { field } } }", json!({ "id": own_t })).await;
    let fields: Vec<&str> = history["data"]["recordHistory"]
        .as_array()
        .expect("history")
        .iter()
        .flat_map(|entry| entry["changes"].as_array().expect("changes").iter().filter_map(|c| c["field"].as_str()))
        .collect();
    assert!(!fields.is_empty() && !fields.contains(&"email"), "{fields:?}");
    let foreign = f.as_role("territory", "query($id: ID!) { recordHistory(object: CONTACT, id: $id) { seq } }", json!({ "id": other_t })).await;
    assert_eq!(codes(&foreign), vec!["FORBIDDEN"]);
    let feed = f.as_role("territory", "{ changes(first: 1000) { changes { object id data } } }", json!({})).await;
    let feed = feed["data"]["changes"]["changes"].as_array().expect("changes").clone();
    assert!(!feed.is_empty());
    for change in &feed {
        assert_ne!(change["object"], "DEAL", "deals are not readable: {change}");
        if change["object"] == "CONTACT" {
            assert_ne!(change["id"], other_t.as_str(), "an out-of-scope contact in the feed");
            assert!(change["data"].is_null() || change["data"].get("email").is_none(), "a hidden field in the feed: {change}");
        }
    }

    // Subscriptions: only changes within scope arrive; unreadable objects are refused.
    let mut ws = server.websocket().await;
    ws.init(&f.keys["territory"]).await;
    ws.subscribe("deals", "subscription { recordChanges(objects: [DEAL]) { id } }", json!({})).await;
    match ws.next_within(std::time::Duration::from_secs(10)).await {
        Some(WsEvent::Message(message)) => {
            assert_eq!(message["id"], "deals", "{message}");
            assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{message}");
            assert!(message["payload"]["data"].is_null(), "{message}");
        }
        other => panic!("expected an error for an unreadable object, got {other:?}"),
    }
    // The refused subscription ends there.
    while let Some(WsEvent::Message(message)) = ws.next_within(std::time::Duration::from_millis(500)).await {
        assert_eq!(message["id"], "deals", "{message}");
        assert_ne!(message["type"], "next", "a refused subscription delivered data: {message}");
        if message["type"] == "complete" {
            break;
        }
    }
    ws.subscribe("contacts", "subscription { recordChanges(objects: [CONTACT]) { id data } }", json!({})).await;
    let mut n = 0;
    let first = ws
        .wait_live("contacts", || {
            n += 1;
            let body = json!({ "id": own_t, "i": { "lastName": format!("probe {n}") } });
            async move {
                server.ok("mutation($id: ID!, $i: UpdateContactInput!) { updateContact(id: $id, input: $i) { id } }", body).await;
            }
        })
        .await;
    assert_eq!(first["data"]["recordChanges"]["id"], own_t.as_str());
    assert!(first["data"]["recordChanges"]["data"].get("email").is_none(), "hidden in subscriptions too: {first}");
    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {lastName: \"unseen\"}) { id } }", json!({ "id": other_t })).await;
    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {lastName: \"seen\"}) { id } }", json!({ "id": own_t })).await;
    loop {
        let payload = ws.next_of("contacts").await;
        let id = payload["data"]["recordChanges"]["id"].as_str().expect("id").to_string();
        assert_ne!(id, other_t, "an out-of-scope change reached the subscriber");
        if payload["data"]["recordChanges"]["data"]["lastName"] == "seen" {
            break;
        }
    }

    // Another tenant's ids are unknown, whatever the role.
    for query in [
        "query($id: ID!) { contact(id: $id) { id } }",
        "mutation($id: ID!) { updateContact(id: $id, input: {lastName: \"x\"}) { id } }",
        "mutation($id: ID!) { deleteContact(id: $id) { id } }",
    ] {
        let body = server.gql_as(&beta_key, query, json!({ "id": own })).await;
        assert_eq!(codes(&body), vec!["NOT_FOUND"], "cross-tenant {query}: {body}");
    }
}

/// JSON lines of `crm export` as (object, fields) pairs.
fn exported(text: &str) -> Vec<(String, serde_json::Map<String, Value>)> {
    text.lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
            (entry["object"].as_str().expect("object").to_string(), entry["fields"].as_object().expect("fields").clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_import_and_export_as_a_user_follow_their_role() {
    use crate::identity::add_user;
    use crate::support::{crm, stderr, stdout};

    let dir = data_dir();
    let server = Server::start_in(dir.path(), &["--no-bundled-plugins"]).await;
    let sales = add_user(&server, "sam@example.com", "sales", None).await;
    add_user(&server, "sue@example.com", "support", None).await;
    add_user(&server, "rita@example.com", "read-only", None).await;
    server
        .ok("mutation { defineRole(input: {name: \"mine\", default: {read: ALL}, objects: [{object: \"contact\", read: OWN}]}) { name } }", json!({}))
        .await;
    let mine = add_user(&server, "milo@example.com", "mine", None).await;
    server.ok("mutation { createCompany(input: {name: \"Rich\", annualRevenue: 9000000}) { id } }", json!({})).await;
    server.ok("mutation { createDeal(input: {name: \"Secret deal\"}) { id } }", json!({})).await;
    server
        .ok("mutation($m: ID) { createContacts(inputs: [{firstName: \"Milo's\", ownerId: $m}, {firstName: \"Someone else's\"}]) { id } }", json!({ "m": mine }))
        .await;
    server.kill9().await;

    // Export as support: no deals, no revenue.
    let support = crm(dir.path(), &["export", "--tenant", "default", "--as-user", "sue@example.com"]).await;
    assert!(support.status.success(), "{}", stderr(&support));
    let lines = exported(&stdout(&support));
    assert!(lines.iter().all(|(object, _)| object != "deal"), "support cannot read deals");
    let company = lines.iter().find(|(object, _)| object == "company").expect("companies are readable");
    assert_eq!(company.1["name"], "Rich");
    assert!(!company.1.contains_key("annual_revenue"), "a hidden field is left out: {:?}", company.1);
    // As the operator, everything.
    let all = exported(&stdout(&crm(dir.path(), &["export", "--tenant", "default"]).await));
    assert!(all.iter().any(|(object, fields)| object == "company" && fields.contains_key("annual_revenue")));
    assert!(all.iter().any(|(object, _)| object == "deal"));
    // Own scope: only their contact.
    let own = exported(&stdout(&crm(dir.path(), &["export", "--tenant", "default", "--as-user", "milo@example.com"]).await));
    let contacts: Vec<&Value> = own.iter().filter(|(object, _)| object == "contact").map(|(_, fields)| &fields["first_name"]).collect();
    assert_eq!(contacts, vec!["Milo's"]);
    let nobody = crm(dir.path(), &["export", "--tenant", "default", "--as-user", "ghost@example.com"]).await;
    assert!(!nobody.status.success());

    // Import: a read-only user changes nothing; sales cannot set owners;
    // what sales imports is theirs.
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "email,first_name\nnew1@example.com,New One\nnew2@example.com,New Two\n").expect("write csv");
    let refused = crm(dir.path(), &["import", "contacts", csv.to_str().expect("path"), "--tenant", "default", "--as-user", "rita@example.com"]).await;
    let text = format!("{}{}", stdout(&refused), stderr(&refused));
    assert!(text.contains("FORBIDDEN"), "{text}");
    let owners = dir.path().join("owners.csv");
    std::fs::write(&owners, format!("email,first_name,owner_id\nsteal@example.com,Stolen,{mine}\n")).expect("write csv");
    let stolen = crm(dir.path(), &["import", "contacts", owners.to_str().expect("path"), "--tenant", "default", "--as-user", "sam@example.com"]).await;
    let text = format!("{}{}", stdout(&stolen), stderr(&stolen));
    assert!(text.contains("FORBIDDEN") && text.contains("owner_id"), "{text}");
    let imported = crm(dir.path(), &["import", "contacts", csv.to_str().expect("path"), "--tenant", "default", "--as-user", "sam@example.com"]).await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    let after = exported(&stdout(&crm(dir.path(), &["export", "--tenant", "default"]).await));
    let emails: Vec<&Value> = after.iter().filter(|(object, _)| object == "contact").filter_map(|(_, fields)| fields.get("email")).collect();
    assert!(!emails.contains(&&json!("steal@example.com")), "a refused row wrote nothing");
    for (_, fields) in after.iter().filter(|(object, fields)| object == "contact" && fields.get("email").is_some_and(|e| e.as_str().is_some_and(|e| e.starts_with("new")))) {
        assert_eq!(fields["owner_id"], sales.as_str(), "the importing user owns what they imported");
    }
    assert_eq!(emails.iter().filter(|email| email.as_str().is_some_and(|e| e.starts_with("new"))).count(), 2);
}
