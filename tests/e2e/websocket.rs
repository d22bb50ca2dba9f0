//! Subscriptions over WebSocket with the graphql-transport-ws protocol.


use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Server, TIMEOUT, WsEvent};

const CHANGES: &str = "subscription($objects: [ObjectName!], $ids: [ID!]) {
    recordChanges(objects: $objects, ids: $ids) { object operation id version data } }";

async fn create_contact(server: &Server, first_name: &str, email: Option<&str>) -> String {
    let data = server
        .ok(
            "mutation($f: String!, $e: String) { createContact(input: {firstName: $f, email: $e}) { id } }",
            json!({ "f": first_name, "e": email }),
        )
        .await;
    data["createContact"]["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_receives_committed_changes() {
    let server = Server::start(&[]).await;
    let mut ws = server.websocket().await;
    ws.init(&server.key).await;
    ws.subscribe("1", CHANGES, json!({ "objects": ["CONTACT"] })).await;
    let probe = ws.wait_live("1", || async { create_contact(&server, "probe", None).await; }).await;
    assert_eq!(probe["data"]["recordChanges"]["operation"], "CREATED");
    assert_eq!(probe["data"]["recordChanges"]["data"]["firstName"], "probe");

    // Messages of subscription 1 that are not late probes.
    async fn next_real(ws: &mut crate::support::Ws) -> Value {
        loop {
            let payload = ws.next_of("1").await;
            assert!(payload.get("errors").is_none(), "subscription error: {payload}");
            let change = payload["data"]["recordChanges"].clone();
            if change["data"]["firstName"] != "probe" {
                return change;
            }
        }
    }

    let ada = create_contact(&server, "Ada", Some("ada@example.com")).await;
    let created = next_real(&mut ws).await;
    assert_eq!(created["object"], "CONTACT");
    assert_eq!(created["operation"], "CREATED");
    assert_eq!(created["id"], ada.as_str());
    assert_eq!(created["version"], 1);
    assert_eq!(created["data"]["email"], "ada@example.com");
    assert_eq!(created["data"]["id"], ada.as_str());

    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {title: \"Countess\"}) { id } }", json!({ "id": ada })).await;
    let updated = next_real(&mut ws).await;
    assert_eq!((&updated["operation"], &updated["version"], &updated["data"]["title"]), (&json!("UPDATED"), &json!(2), &json!("Countess")));

    // A company is not a contact: filtered out; the delete comes next, as a tombstone.
    server.ok("mutation { createCompany(input: {name: \"Not a contact\"}) { id } }", json!({})).await;
    server.ok("mutation($id: ID!) { deleteContact(id: $id) { id } }", json!({ "id": ada })).await;
    let deleted = next_real(&mut ws).await;
    assert_eq!(deleted["object"], "CONTACT", "a company change leaked through the objects filter: {deleted}");
    assert_eq!(deleted["operation"], "DELETED");
    assert_eq!(deleted["id"], ada.as_str());
    assert_eq!(deleted["version"], 3);
    assert_eq!(deleted["data"], Value::Null);

    // A bulk write arrives as one change per record, in order.
    server.ok("mutation { createContacts(inputs: [{firstName: \"B1\"}, {firstName: \"B2\"}, {firstName: \"B3\"}]) { id } }", json!({})).await;
    let names: Vec<Value> = [next_real(&mut ws).await, next_real(&mut ws).await, next_real(&mut ws).await]
        .into_iter()
        .map(|change| change["data"]["firstName"].clone())
        .collect();
    assert_eq!(names, [json!("B1"), json!("B2"), json!("B3")]);

    // The client completes the subscription; the server confirms.
    ws.send(json!({ "id": "1", "type": "complete" })).await;
    loop {
        let message = ws.message().await;
        if message["type"] == "complete" {
            assert_eq!(message["id"], "1");
            break;
        }
        assert_eq!(message["type"], "next", "unexpected message: {message}");
    }
}

/// Reads until the server closes the socket, failing on an ack or data;
/// returns the close code and reason.
async fn assert_refused(ws: &mut crate::support::Ws) -> (Option<u16>, String) {
    loop {
        match ws.next_within(TIMEOUT).await {
            Some(WsEvent::Closed { code, reason }) => return (code, reason),
            Some(WsEvent::Message(message)) => {
                assert_ne!(message["type"], "connection_ack", "an unauthenticated connection was acknowledged");
                assert_ne!(message["type"], "next", "an unauthenticated connection received data: {message}");
            }
            None => panic!("the server neither acknowledged nor closed the connection"),
        }
    }
}

/// A refused connection_init: closed with an error code naming the key.
/// graphql-transport-ws suggests 4403; async-graphql closes with 1002.
fn assert_auth_close((code, reason): (Option<u16>, String)) {
    assert!(matches!(code, Some(1002 | 4401 | 4403)), "unexpected close code {code:?}: {reason}");
    assert!(reason.contains("API key"), "the close reason should name the problem: {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_init_without_a_valid_key_is_refused() {
    let server = Server::start(&[]).await;

    // No key in the payload.
    let mut ws = server.websocket().await;
    ws.send(json!({ "type": "connection_init", "payload": {} })).await;
    assert_auth_close(assert_refused(&mut ws).await);

    // A wrong key.
    let mut ws = server.websocket().await;
    ws.send(json!({ "type": "connection_init", "payload": { "Authorization": "Bearer crm_not_a_real_key" } })).await;
    assert_auth_close(assert_refused(&mut ws).await);

    // The right key without the "Bearer " scheme.
    let mut ws = server.websocket().await;
    ws.send(json!({ "type": "connection_init", "payload": { "Authorization": server.key.clone() } })).await;
    assert_auth_close(assert_refused(&mut ws).await);

    // Subscribing without connection_init is refused too (4401 in the
    // protocol; async-graphql uses 1011).
    let mut ws = server.websocket().await;
    ws.subscribe("1", CHANGES, json!({})).await;
    let (code, reason) = assert_refused(&mut ws).await;
    assert!(matches!(code, Some(1011 | 4401)), "unexpected close code {code:?}: {reason}");

    // A bad key in the upgrade request's header is refused before the upgrade.
    let mut request = format!("ws://{}/graphql", server.addr).into_client_request().expect("request");
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().expect("header"));
    request.headers_mut().insert("authorization", "Bearer crm_wrong".parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("expected HTTP 401 for a bad key in the upgrade request, got {other:?}"),
    }

    // Nothing was written by any of it, and a good key still works.
    let mut ws = server.websocket().await;
    ws.init(&server.key).await;
    assert_eq!(server.count("contacts").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_filtered_by_ids_sees_only_those_records() {
    let server = Server::start(&[]).await;
    let watched = create_contact(&server, "Watched", None).await;
    let other = create_contact(&server, "Other", None).await;
    let mut ws = server.websocket().await;
    ws.init(&server.key).await;
    ws.subscribe("1", CHANGES, json!({ "ids": [watched] })).await;
    let mut probes = 0;
    let probe = ws
        .wait_live("1", || {
            probes += 1;
            let source = format!("probe-{probes}");
            let server = &server;
            let watched = watched.clone();
            async move {
                server
                    .ok("mutation($id: ID!, $s: String) { updateContact(id: $id, input: {source: $s}) { id } }", json!({ "id": watched, "s": source }))
                    .await;
            }
        })
        .await;
    assert_eq!(probe["data"]["recordChanges"]["id"], watched.as_str());

    // Changes to another record (and another object) are not delivered; the
    // watched record's next change is.
    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {title: \"Not watched\"}) { id } }", json!({ "id": other })).await;
    server.ok("mutation($id: ID!) { deleteContact(id: $id) { id } }", json!({ "id": other })).await;
    server.ok("mutation { createCompany(input: {name: \"Elsewhere\"}) { id } }", json!({})).await;
    server.ok("mutation($id: ID!) { updateContact(id: $id, input: {title: \"Final\"}) { id } }", json!({ "id": watched })).await;
    loop {
        let payload = ws.next_of("1").await;
        let change = &payload["data"]["recordChanges"];
        assert_eq!(change["id"], watched.as_str(), "a change of another record was delivered: {change}");
        if change["data"]["title"] == "Final" {
            assert_eq!(change["operation"], "UPDATED");
            break;
        }
        assert!(change["data"]["source"].as_str().is_some_and(|source| source.starts_with("probe-")), "{change}");
    }
}
