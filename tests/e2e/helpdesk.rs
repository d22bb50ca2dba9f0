//! The bundled helpdesk plugin over GraphQL and its public routes, with the
//! kernel's clock moved by `advanceClock`: SLA breaches at the due time and
//! not before, escalation, assignment in turn, CSAT answered by link.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, eventually};

/// User ids of the test teams (ULIDs; the plugin does not look them up).
const ANNA: &str = "01HZY00000000000000000000A";
const BORIS: &str = "01HZY00000000000000000000B";
const CARLA: &str = "01HZY00000000000000000000C";

const MINUTE: i64 = 60_000;

async fn advance(server: &Server, ms: i64) {
    server.ok("mutation($ms: Int!) { advanceClock(ms: $ms) }", json!({"ms": ms})).await;
}

async fn contact(server: &Server, email: &str) -> String {
    let created = server
        .ok("mutation($email: String) { createContact(input: {firstName: \"Dana\", email: $email}) { id } }", json!({"email": email}))
        .await;
    created["createContact"]["id"].as_str().expect("contact id").to_string()
}

async fn ticket(server: &Server, input: Value) -> Value {
    let created = server
        .ok(
            "mutation($input: CreateTicketInput!) { createTicket(input: $input) { id createdAt slaPolicy firstReplyDueAt priority } }",
            json!({"input": input}),
        )
        .await;
    created["createTicket"].clone()
}

async fn read_ticket(server: &Server, id: &str) -> Value {
    let query = "query($id: ID!) { ticket(id: $id) { status priority team assigneeId firstReplyBreached slaBreached escalationCount lastEscalation csatRating } }";
    server.ok(query, json!({"id": id})).await["ticket"].clone()
}

/// Payloads of the custom events of this name, oldest first.
async fn events(server: &Server, name: &str) -> Vec<Value> {
    let body = server
        .ok("query($name: String) { customEvents(filter: {name: {eq: $name}}) { edges { node { payload } } } }", json!({"name": name}))
        .await;
    body["customEvents"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| serde_json::from_str(edge["node"]["payload"].as_str().expect("payload")).expect("payload is JSON"))
        .collect()
}

fn millis(text: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.as_str().expect("a date-time")).expect("RFC 3339").timestamp_millis()
}

#[tokio::test]
async fn an_sla_breaches_at_its_due_time_and_not_before() {
    let server = Server::start(&["--dev-clock"]).await;
    let requester = contact(&server, "dana@example.com").await;
    let created = ticket(&server, json!({"subject": "Checkout is down", "priority": "URGENT", "requesterId": requester})).await;
    let id = created["id"].as_str().unwrap().to_string();
    // Default policies: urgent tickets get a first reply within 60 minutes
    // around the clock, and a warning 30 minutes before.
    assert_eq!(created["slaPolicy"], "urgent");
    // Counted from when the plugin saw the write, within moments of createdAt.
    let target = millis(&created["firstReplyDueAt"]) - millis(&created["createdAt"]);
    assert!((60 * MINUTE..60 * MINUTE + 1000).contains(&target), "first reply due {target} ms after creation");

    advance(&server, 25 * MINUTE).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(events(&server, "helpdesk.sla_warning").await.is_empty(), "warned too early");

    advance(&server, 10 * MINUTE).await;
    let warning = eventually("the near-breach warning", || async { events(&server, "helpdesk.sla_warning").await.pop() }).await;
    assert_eq!((warning["ticket_id"].as_str(), warning["metric"].as_str()), (Some(id.as_str()), Some("first_reply")), "{warning}");

    // Two minutes before the due time (real seconds also pass): no breach.
    advance(&server, 23 * MINUTE).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(events(&server, "helpdesk.sla_breached").await.is_empty(), "breached too early");
    assert_eq!(read_ticket(&server, &id).await["firstReplyBreached"], false);

    advance(&server, 3 * MINUTE).await;
    let breach = eventually("the breach", || async { events(&server, "helpdesk.sla_breached").await.pop() }).await;
    assert_eq!(breach["ticket_id"], id.as_str());
    assert_eq!(breach["metric"], "first_reply");
    assert_eq!(breach["contact_id"], requester.as_str());
    let now = read_ticket(&server, &id).await;
    assert_eq!((now["firstReplyBreached"].as_bool(), now["slaBreached"].as_bool()), (Some(true), Some(true)), "{now}");
    assert_eq!(events(&server, "helpdesk.sla_breached").await.len(), 1);
}

#[tokio::test]
async fn assignment_rotates_and_a_breach_escalates() {
    let server = Server::start(&["--dev-clock"]).await;
    let config = json!({
        "teams": {"support": {"members": [ANNA, BORIS]}, "tier2": {"members": [CARLA]}},
        "escalations": [{"name": "late", "on": "breach", "metrics": ["first_reply"], "assign_team": "tier2",
                         "raise_priority": true, "notify": ["leads@example.com"]}]
    });
    let enabled = server.ok("mutation($config: JSON) { enablePlugin(id: \"helpdesk\", config: $config) { status } }", json!({"config": config})).await;
    assert_eq!(enabled["enablePlugin"]["status"], "ENABLED");

    // Round robin within the team, in creation order.
    let mut assignees = Vec::new();
    for n in 0..4 {
        let priority = if n == 3 { "HIGH" } else { "NORMAL" };
        let created = ticket(&server, json!({"subject": format!("Question {n}"), "team": "support", "priority": priority})).await;
        let id = created["id"].as_str().unwrap().to_string();
        let assignee = eventually("the assignment", || async { read_ticket(&server, &id).await["assigneeId"].as_str().map(String::from) }).await;
        assignees.push((id, assignee));
    }
    let order: Vec<&str> = assignees.iter().map(|(_, assignee)| assignee.as_str()).collect();
    assert_eq!(order, [ANNA, BORIS, ANNA, BORIS]);

    // The high-priority ticket breaches its 120-minute first reply: the rule
    // moves it to tier2, raises its priority and tells the leads.
    let (escalated, _) = &assignees[3];
    advance(&server, 121 * MINUTE).await;
    let after = eventually("the escalation", || async {
        let now = read_ticket(&server, escalated).await;
        (now["escalationCount"] == 1).then_some(now)
    })
    .await;
    assert_eq!(after["team"], "tier2", "{after}");
    assert_eq!(after["assigneeId"], CARLA, "{after}");
    assert_eq!(after["priority"], "URGENT", "{after}");
    assert_eq!(after["lastEscalation"], "late", "{after}");
    // The notice and the event follow the ticket change (retried on their own).
    let subjects = eventually("the escalation notice", || async {
        let notified = server
            .ok("{ outboundMessages(filter: {recipient: {eq: \"leads@example.com\"}}) { edges { node { subject } } } }", json!({}))
            .await;
        let subjects: Vec<String> =
            notified["outboundMessages"]["edges"].as_array()?.iter().filter_map(|e| e["node"]["subject"].as_str().map(String::from)).collect();
        (!subjects.is_empty()).then_some(subjects)
    })
    .await;
    assert_eq!(subjects, [format!("[Escalation] late: Question 3 [#{escalated}]")]);
    let escalations = eventually("the escalation event", || async {
        let found = events(&server, "helpdesk.ticket_escalated").await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0]["ticket_id"], escalated.as_str());
    // The other tickets have hours left and were not touched.
    for (id, _) in &assignees[..3] {
        assert_eq!(read_ticket(&server, id).await["escalationCount"], 0);
    }
}

#[tokio::test]
async fn a_csat_rating_is_recorded_through_the_signed_public_link() {
    let server = Server::start(&[]).await;
    let requester = contact(&server, "erin@example.com").await;
    let id = ticket(&server, json!({"subject": "Invoice copy", "requesterId": requester})).await["id"].as_str().unwrap().to_string();
    server.ok("mutation($id: ID!) { updateTicket(id: $id, input: {status: SOLVED}) { status } }", json!({"id": id})).await;

    let survey = eventually("the survey email", || async {
        let mailbox = server
            .ok(
                "{ outboundMessages(filter: {source: {eq: \"helpdesk\"}, subject: {startsWith: \"How did we do?\"}}) { edges { node { recipient body } } } }",
                json!({}),
            )
            .await;
        mailbox["outboundMessages"]["edges"].as_array().and_then(|edges| edges.first()).map(|edge| edge["node"].clone())
    })
    .await;
    assert_eq!(survey["recipient"], "erin@example.com");
    let body = survey["body"].as_str().unwrap();
    let link = body.split_whitespace().find(|word| word.contains("/hooks/") && word.ends_with("&rating=4")).expect("a rating link");
    let path = &link[link.find("/hooks/").unwrap()..];

    // A link changed in one character of its token is refused and records nothing.
    let token_at = path.find("token=").unwrap() + "token=".len() + 3;
    let mut forged = path.to_string();
    let original = forged.as_bytes()[token_at];
    forged.replace_range(token_at..token_at + 1, if original == b'A' { "B" } else { "A" });
    assert_eq!(server.request("GET", &forged, None, "").await.status, 404);
    assert_eq!(server.request("GET", &path.replace("rating=4", "rating=9"), None, "").await.status, 400);
    assert_eq!(server.request("PUT", path, None, "").await.status, 405);
    assert!(read_ticket(&server, &id).await["csatRating"].is_null(), "nothing recorded yet");

    let answered = server.request("GET", path, None, "").await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    assert_eq!(read_ticket(&server, &id).await["csatRating"], 4);
    let responses = server
        .ok("query($id: ID) { surveyResponses(filter: {ticketId: {eq: $id}}) { edges { node { kind rating category } } } }", json!({"id": id}))
        .await;
    assert_eq!(responses["surveyResponses"]["edges"][0]["node"], json!({"kind": "CSAT", "rating": 4, "category": "SATISFIED"}));
}
