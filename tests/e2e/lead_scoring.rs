//! The bundled lead-scoring plugin end to end: enabled with a configuration
//! for one tenant and not another, scoring contacts as fields change
//! (before-write) and as activities and events arrive (after-commit),
//! acting on thresholds, learning a predictive model from won and lost
//! deals, and re-scoring everything with a backfill.


use serde_json::{Value, json};

use crate::support::{Server, create_tenant, data_dir, eventually, single_code};

const ENABLE: &str = "mutation($config: JSON) { enablePlugin(id: \"lead-scoring\", config: $config) { id status } }";
/// The inbound team's owners (user ids), in round-robin order.
const OWNERS: [&str; 3] = ["01HZY00000000000000000000A", "01HZY00000000000000000000B", "01HZY00000000000000000000C"];
const SCORES: &str = "fitScore engagementScore totalScore scoreGrade scoredAt scoreReason scoreThreshold lifecycleStage ownerId";

async fn enable(server: &Server, key: &str, config: Value) {
    let enabled = server.ok_as(key, ENABLE, json!({ "config": config })).await;
    assert_eq!(enabled["enablePlugin"]["status"], "ENABLED", "{enabled}");
}


async fn contact(server: &Server, key: &str, id: &str) -> Value {
    let query = format!("query($id: ID!) {{ contact(id: $id) {{ {SCORES} }} }}");
    server.ok_as(key, &query, json!({ "id": id })).await["contact"].clone()
}

async fn create_contact(server: &Server, key: &str, input: Value) -> Value {
    let query = format!("mutation($input: CreateContactInput!) {{ createContact(input: $input) {{ id {SCORES} }} }}");
    server.ok_as(key, &query, json!({ "input": input })).await["createContact"].clone()
}

async fn update_contact(server: &Server, key: &str, id: &str, input: Value) -> Value {
    let query =
        format!("mutation($id: ID!, $input: UpdateContactInput!) {{ updateContact(id: $id, input: $input) {{ {SCORES} }} }}");
    server.ok_as(key, &query, json!({ "id": id, "input": input })).await["updateContact"].clone()
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap_or_else(|| panic!("no id in {value}")).to_owned()
}

/// The `(oldScore, newScore)` pairs of a contact's score history, oldest first.
async fn history(server: &Server, key: &str, contact: &str) -> Vec<(Value, Value)> {
    let query = "query($id: ID!) { scoreChanges(filter: {contactId: {eq: $id}}, orderBy: [{field: SCORED_AT}], first: 100) { nodes { oldScore newScore reason } } }";
    let data = server.ok_as(key, query, json!({ "id": contact })).await;
    data["scoreChanges"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| (node["oldScore"].clone(), node["newScore"].clone()))
        .collect()
}

#[tokio::test]
async fn scores_follow_the_rules_and_thresholds_act_for_one_tenant_only() {
    let dir = data_dir();
    let acme = create_tenant(dir.path(), "acme").await;
    let other = create_tenant(dir.path(), "other").await;
    let server = Server::start_in(dir.path(), &["--dev-clock"]).await;
    enable(
        &server,
        &acme,
        json!({
            "fit": [
                {"title_contains": ["vp", "director"], "points": 30},
                {"employees_min": 100, "employees_max": 10000, "points": 10},
                {"country_in": ["DE"], "points": 5}
            ],
            "engagement": {"activities": {"call": 10, "meeting": 20}, "events": {"demo_requested": 15}, "half_life_days": 10},
            "grades": {"a": 70, "b": 45, "c": 20},
            "thresholds": [
                {"name": "mql", "min_score": 40, "lifecycle_stage": "marketingqualifiedlead", "team": "inbound", "event": "lead.mql"}
            ],
            "teams": {"inbound": OWNERS}
        }),
    )
    .await;

    // Before-write: the score is part of the write that changes a field.
    let ada = create_contact(&server, &acme, json!({"firstName": "Ada", "title": "Engineer", "lifecycleStage": "LEAD"})).await;
    let ada_id = id(&ada);
    assert_eq!((ada["fitScore"].as_i64(), ada["totalScore"].as_i64(), ada["scoreGrade"].as_str()), (Some(0), Some(0), Some("D")));
    let promoted = update_contact(&server, &acme, &ada_id, json!({"title": "VP Engineering"})).await;
    assert_eq!((promoted["fitScore"].as_i64(), promoted["scoreGrade"].as_str()), (Some(30), Some("C")), "{promoted}");
    assert_eq!(promoted["lifecycleStage"], "LEAD", "below the threshold");
    let company =
        server.ok_as(&acme, "mutation { createCompany(input: {name: \"Acme\", employees: 500}) { id } }", json!({})).await;
    let company_id = id(&company["createCompany"]);
    let crossed = update_contact(&server, &acme, &ada_id, json!({"companyId": company_id})).await;
    assert_eq!((crossed["fitScore"].as_i64(), crossed["totalScore"].as_i64()), (Some(40), Some(40)), "{crossed}");
    assert_eq!(
        (crossed["scoreThreshold"].as_str(), crossed["lifecycleStage"].as_str()),
        (Some("mql"), Some("MARKETINGQUALIFIEDLEAD"))
    );

    // Thresholds act after the commit: owners round robin, an event each.
    let grace = create_contact(&server, &acme, json!({"firstName": "Grace", "title": "Director", "companyId": company_id})).await;
    let alan = create_contact(&server, &acme, json!({"firstName": "Alan", "title": "VP Sales", "companyId": company_id})).await;
    let mut owners = Vec::new();
    for contact_id in [ada_id.clone(), id(&grace), id(&alan)] {
        let owner = eventually("owner assigned", || async {
            contact(&server, &acme, &contact_id).await["ownerId"].as_str().map(String::from)
        })
        .await;
        owners.push(owner);
    }
    assert_eq!(owners, OWNERS);
    let events = eventually("threshold events", || async {
        let data = server
            .ok_as(&acme, "{ customEvents(filter: {name: {eq: \"lead.mql\"}}) { nodes { payload source } } }", json!({}))
            .await;
        let nodes = data["customEvents"]["nodes"].as_array().unwrap().clone();
        (nodes.len() == 3).then_some(nodes)
    })
    .await;
    assert!(events.iter().all(|event| event["source"] == "lead-scoring"));
    let payload: Value = serde_json::from_str(events[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!((payload["contact_id"].as_str(), payload["threshold"].as_str()), (Some(ada_id.as_str()), Some("mql")));

    // After-commit: activities and events linked to a contact raise its
    // engagement; the total follows.
    let bob = create_contact(&server, &acme, json!({"firstName": "Bob", "title": "Analyst"})).await;
    let bob_id = id(&bob);
    server
        .ok_as(
            &acme,
            "mutation($id: ID!) { createActivity(input: {kind: CALL, subject: \"Intro\", contactId: $id}) { id } }",
            json!({ "id": bob_id }),
        )
        .await;
    let scored = eventually("engagement from a call", || async {
        let bob = contact(&server, &acme, &bob_id).await;
        (bob["engagementScore"].as_f64() == Some(10.0)).then_some(bob)
    })
    .await;
    assert_eq!((scored["totalScore"].as_i64(), scored["scoreGrade"].as_str()), (Some(10), Some("D")));
    let payload = json!({ "contact_id": bob_id, "page": "/pricing" }).to_string();
    server
        .ok_as(
            &acme,
            "mutation($p: String!) { createCustomEvent(input: {name: \"demo_requested\", payload: $p, source: \"web\"}) { id } }",
            json!({ "p": payload }),
        )
        .await;
    let scored = eventually("engagement from an event", || async {
        let bob = contact(&server, &acme, &bob_id).await;
        (bob["engagementScore"].as_f64() == Some(25.0)).then_some(bob)
    })
    .await;
    assert_eq!((scored["totalScore"].as_i64(), scored["scoreGrade"].as_str()), (Some(25), Some("C")));

    // Decay: ten days (one half-life) later the same activity and event
    // count half.
    server.ok("mutation { advanceClock(ms: 864000000) }", json!({})).await;
    let rescored = server
        .ok_as(&acme, "mutation($id: ID!) { leadScoringRescore(input: {contactId: $id}) { scored } }", json!({ "id": bob_id }))
        .await;
    assert_eq!(rescored["leadScoringRescore"]["scored"], true);
    let decayed = contact(&server, &acme, &bob_id).await;
    assert_eq!((decayed["engagementScore"].as_f64(), decayed["totalScore"].as_i64()), (Some(12.5), Some(13)), "{decayed}");

    // Every change of the total is in the history.
    let changes = eventually("score history", || async {
        let changes = history(&server, &acme, &bob_id).await;
        (changes.len() == 3).then_some(changes)
    })
    .await;
    assert_eq!(changes, [(json!(0), json!(10)), (json!(10), json!(25)), (json!(25), json!(13))]);

    // Bad input is refused with a code and changes nothing.
    let unknown = server
        .gql_as(
            &acme,
            "mutation { leadScoringRescore(input: {contactId: \"01HZZZZZZZZZZZZZZZZZZZZZZZ\"}) { scored } }",
            json!({}),
        )
        .await;
    assert_eq!(single_code(&unknown), "VALIDATION");
    let bad_config = server.gql_as(&acme, ENABLE, json!({ "config": {"grades": {"a": "high", "b": 1, "c": 0}} })).await;
    assert_eq!(single_code(&bad_config), "VALIDATION");
    let still = create_contact(&server, &acme, json!({"firstName": "Eve", "title": "VP"})).await;
    assert_eq!(still["fitScore"].as_i64(), Some(30), "the previous configuration still applies");

    // The other tenant has none of it.
    assert_eq!(single_code(&server.gql_as(&other, "{ contacts { nodes { fitScore } } }", json!({})).await), "VALIDATION");
    assert_eq!(single_code(&server.gql_as(&other, "{ scoreChanges { totalCount } }", json!({})).await), "VALIDATION");
    let action = server.gql_as(&other, "mutation { leadScoringBackfillStatus(input: {}) { done } }", json!({})).await;
    assert_eq!(single_code(&action), "VALIDATION");
    let plain =
        server.ok_as(&other, "mutation { createContact(input: {firstName: \"Zoe\", title: \"VP\"}) { id } }", json!({})).await;
    assert!(plain["createContact"]["id"].is_string());
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Creates `n` contacts, each with a random number of calls and one closed
/// deal: won when the calls (plus noise) are many, if `signal`, else by a
/// coin toss. Returns the contact ids.
async fn seed_outcomes(server: &Server, key: &str, n: usize, signal: bool, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let inputs: Vec<Value> = (0..n).map(|index| json!({"firstName": format!("P{index}")})).collect();
    let created = server
        .ok_as(
            key,
            "mutation($inputs: [CreateContactInput!]!) { createContacts(inputs: $inputs) { id } }",
            json!({ "inputs": inputs }),
        )
        .await;
    let ids: Vec<String> = created["createContacts"].as_array().unwrap().iter().map(id).collect();
    let mut activities = Vec::new();
    let mut deals = Vec::new();
    for contact_id in &ids {
        let calls = (rng.next() * 8.0) as usize;
        for call in 0..calls {
            activities.push(json!({"kind": "CALL", "subject": format!("Call {call}"), "contactId": contact_id}));
        }
        let won = if signal { calls as f64 + rng.next() * 3.0 > 5.5 } else { rng.next() < 0.5 };
        deals.push(json!({"name": "Deal", "contactId": contact_id, "stage": if won { "closedwon" } else { "closedlost" }}));
    }
    for chunk in activities.chunks(1000) {
        server
            .ok_as(
                key,
                "mutation($inputs: [CreateActivityInput!]!) { createActivities(inputs: $inputs) { id } }",
                json!({ "inputs": chunk }),
            )
            .await;
    }
    server
        .ok_as(key, "mutation($inputs: [CreateDealInput!]!) { createDeals(inputs: $inputs) { id } }", json!({ "inputs": deals }))
        .await;
    ids
}

const TRAIN: &str =
    "mutation { leadScoringTrain(input: {}) { auc aucLow usable reason trainExamples testExamples won lost weights } }";

#[tokio::test]
async fn the_predictive_model_learns_a_known_signal_and_admits_noise() {
    let dir = data_dir();
    let signal = create_tenant(dir.path(), "signal").await;
    let noise = create_tenant(dir.path(), "noise").await;
    let server = Server::start_in(dir.path(), &[]).await;
    enable(&server, &signal, json!({})).await;
    enable(&server, &noise, json!({})).await;

    let no_model = server
        .gql_as(
            &signal,
            "mutation { leadScoringPredict(input: {contactId: \"01HZZZZZZZZZZZZZZZZZZZZZZZ\"}) { score } }",
            json!({}),
        )
        .await;
    assert_eq!(single_code(&no_model), "VALIDATION");

    let ids = seed_outcomes(&server, &signal, 240, true, 42).await;
    let trained = server.ok_as(&signal, TRAIN, json!({})).await["leadScoringTrain"].clone();
    assert_eq!(trained["won"].as_i64().unwrap() + trained["lost"].as_i64().unwrap(), 240, "{trained}");
    assert!(trained["auc"].as_f64().unwrap() > 0.75, "{trained}");
    assert_eq!(trained["usable"], true, "{trained}");
    let weights: Value = serde_json::from_str(trained["weights"].as_str().unwrap()).unwrap();
    assert!(weights["calls"].as_f64().unwrap() > 0.0, "{weights}");

    let predict = "mutation($id: ID!) { leadScoringPredict(input: {contactId: $id}) { score usable auc topFeatures } }";
    let predicted = server.ok_as(&signal, predict, json!({ "id": ids[0] })).await["leadScoringPredict"].clone();
    assert!((0..=100).contains(&predicted["score"].as_i64().unwrap()), "{predicted}");
    let top: Value = serde_json::from_str(predicted["topFeatures"].as_str().unwrap()).unwrap();
    assert_eq!(top.as_array().unwrap().len(), 5);
    assert!(top[0]["contribution"].is_number() && top[0]["feature"].is_string(), "{top}");
    // A usable model scores contacts as they are written.
    let fresh =
        server.ok_as(&signal, "mutation { createContact(input: {firstName: \"New\"}) { predictiveScore } }", json!({})).await;
    assert!(fresh["createContact"]["predictiveScore"].is_i64(), "{fresh}");

    seed_outcomes(&server, &noise, 240, false, 43).await;
    let trained = server.ok_as(&noise, TRAIN, json!({})).await["leadScoringTrain"].clone();
    assert!(trained["auc"].is_number(), "the AUC is reported: {trained}");
    assert_eq!(trained["usable"], false, "{trained}");
    assert!(trained["reason"].as_str().unwrap().contains("do not predict"), "{trained}");
    let predicted = server.gql_as(&noise, predict, json!({ "id": ids[0] })).await;
    assert_eq!(single_code(&predicted), "VALIDATION", "the signal tenant's contact is unknown here");
}

const STATUS: &str =
    "mutation { leadScoringBackfillStatus(input: {}) { running done total batches batchSize startedAt finishedAt } }";

#[tokio::test]
async fn the_backfill_rescores_every_contact_and_survives_a_restart() {
    let dir = data_dir();
    let acme = create_tenant(dir.path(), "acme").await;
    let server = Server::start_in(dir.path(), &[]).await;
    // Contacts written before the plugin is enabled have no scores.
    let inputs: Vec<Value> = (0..45)
        .map(|index| json!({"firstName": format!("C{index}"), "title": if index % 3 == 0 { "VP Sales" } else { "Analyst" }}))
        .collect();
    server
        .ok_as(
            &acme,
            "mutation($inputs: [CreateContactInput!]!) { createContacts(inputs: $inputs) { id } }",
            json!({ "inputs": inputs }),
        )
        .await;
    enable(&server, &acme, json!({"fit": [{"title_contains": ["vp"], "points": 30}]})).await;
    let unscored = "{ contacts(filter: {scoredAt: {isNull: true}}) { totalCount } }";
    assert_eq!(server.ok_as(&acme, unscored, json!({})).await["contacts"]["totalCount"], 45);

    let bad = server.gql_as(&acme, "mutation { leadScoringBackfill(input: {batchSize: 0}) { running } }", json!({})).await;
    assert_eq!(single_code(&bad), "VALIDATION");
    let started = server
        .ok_as(
            &acme,
            "mutation { leadScoringBackfill(input: {batchSize: 4}) { running done total batchSize startedAt } }",
            json!({}),
        )
        .await;
    assert_eq!(started["leadScoringBackfill"]["total"], 45);
    assert_eq!(started["leadScoringBackfill"]["batchSize"], 4);
    assert!(started["leadScoringBackfill"]["startedAt"].is_string());

    // A restart in the middle: the pending timer goes on from the cursor.
    server.kill9().await;
    let server = Server::start_in(dir.path(), &[]).await;
    let status = eventually("backfill finished", || async {
        let status = server.ok_as(&acme, STATUS, json!({})).await["leadScoringBackfillStatus"].clone();
        assert!(status["done"].as_i64().unwrap() <= 45, "{status}");
        (status["running"] == false).then_some(status)
    })
    .await;
    assert_eq!(
        (status["done"].as_i64(), status["total"].as_i64(), status["batches"].as_i64()),
        (Some(45), Some(45), Some(12)),
        "{status}"
    );
    assert!(status["finishedAt"].is_string(), "{status}");
    assert_eq!(server.ok_as(&acme, unscored, json!({})).await["contacts"]["totalCount"], 0);
    let vps = "{ contacts(filter: {fitScore: {eq: 30}, scoreReason: {eq: \"backfill\"}}) { totalCount } }";
    assert_eq!(server.ok_as(&acme, vps, json!({})).await["contacts"]["totalCount"], 15);
}
