//! Rate limits per API key: a burst is refused with 429, RATE_LIMITED and
//! a retry hint; other tenants are unaffected; the key recovers in time.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{Reply, Server, TIMEOUT, codes, create_tenant, data_dir};

const QUERY: &str = "{ contacts(first: 1) { totalCount } }";

/// Sends QUERY with `key` until a request is refused; panics if none is
/// within `tries`.
async fn until_refused(server: &Server, key: &str, tries: usize) -> Reply {
    for _ in 0..tries {
        let reply = server.post_gql(Some(key), QUERY, json!({})).await;
        if reply.status == 429 {
            return reply;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    panic!("no request of {tries} was rate limited");
}

fn retry_hint(body: &Value) -> u64 {
    body["errors"][0]["extensions"]["retryAfterSeconds"].as_u64().unwrap_or_else(|| panic!("no retryAfterSeconds in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_refused_with_a_retry_hint_and_other_tenants_are_unaffected() {
    let dir = data_dir();
    let other_key = create_tenant(dir.path(), "other").await;
    // One token per 2 s, 3 at once, per key; the tenant limit stays out of the way.
    let server = Server::start_in(dir.path(), &["--rate-limit-key", "0.5:3", "--rate-limit-tenant", "100"]).await;

    let refused = until_refused(&server, &server.key, 10).await;
    let body = refused.json();
    assert_eq!(codes(&body), ["RATE_LIMITED"], "{body}");
    let hint = retry_hint(&body);
    assert!((1..=2).contains(&hint), "retry in {hint} s");
    assert_eq!(refused.retry_after.as_deref(), Some(hint.to_string().as_str()));
    let refused_at = Instant::now();

    // Another tenant's key has its own bucket.
    for _ in 0..3 {
        assert_eq!(server.count_as(&other_key, "contacts").await, 0);
    }

    // The refused key gets through again once the hinted time has passed.
    let deadline = refused_at + Duration::from_secs(hint) + TIMEOUT;
    loop {
        let reply = server.post_gql(Some(&server.key), QUERY, json!({})).await;
        if reply.status == 200 {
            assert!(reply.json().get("errors").is_none(), "{}", reply.text);
            break;
        }
        assert_eq!(reply.status, 429, "{}", reply.text);
        assert!(Instant::now() < deadline, "still refused after the hinted {hint} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_operations_are_rate_limited() {
    // One token per 10 s: the bucket cannot refill while the test runs.
    let server = Server::start(&["--rate-limit-key", "0.1:3"]).await;
    let mut ws = server.websocket().await;
    ws.init(&server.key).await;
    for n in 0..10 {
        let id = format!("q{n}");
        ws.subscribe(&id, QUERY, json!({})).await;
        let payload = ws.next_of(&id).await;
        let complete = ws.message().await;
        assert_eq!((&complete["type"], &complete["id"]), (&json!("complete"), &json!(id)), "{complete}");
        if payload.get("errors").is_some() {
            assert_eq!(codes(&payload), ["RATE_LIMITED"], "{payload}");
            assert!(retry_hint(&payload) >= 1, "{payload}");
            // The HTTP side shares the key's bucket.
            assert_eq!(server.post_gql(Some(&server.key), QUERY, json!({})).await.status, 429);
            return;
        }
        assert_eq!(payload["data"]["contacts"]["totalCount"], 0, "{payload}");
    }
    panic!("no WebSocket operation of 10 was rate limited");
}
