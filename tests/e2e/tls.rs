//! `crm serve --tls-cert --tls-key`: HTTPS and WSS with a certificate the
//! client trusts; plain HTTP on the TLS port gets no answer.

use serde_json::json;

use crate::support::{Server, TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_graphql_over_https_and_wss() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("generate a self-signed certificate");
    let cert_pem = certified.cert.pem();
    let files = tempfile::tempdir().expect("temp dir");
    let (cert_file, key_file) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&cert_file, &cert_pem).expect("write cert.pem");
    std::fs::write(&key_file, certified.signing_key.serialize_pem()).expect("write key.pem");

    let cert_arg = cert_file.to_str().expect("utf-8 path");
    let key_arg = key_file.to_str().expect("utf-8 path");
    let server = Server::start_tls(&["--tls-cert", cert_arg, "--tls-key", key_arg], &cert_pem).await;
    assert!(server.url().starts_with("https://"), "{}", server.url());

    let data = server.ok("mutation { createContact(input: {firstName: \"Ada\"}) { firstName } }", json!({})).await;
    assert_eq!(data["createContact"]["firstName"], "Ada");
    assert_eq!(server.count("contacts").await, 1);

    let mut ws = server.websocket().await;
    ws.init(&server.key).await;
    ws.subscribe("1", "{ contacts(first: 1) { totalCount } }", json!({})).await;
    assert_eq!(ws.next_of("1").await["data"]["contacts"]["totalCount"], 1);

    // The same port over plain HTTP: the TLS handshake fails, no GraphQL answer.
    let plain = reqwest::Client::builder().timeout(TIMEOUT).build().expect("client");
    let outcome = plain
        .post(format!("http://{}/graphql", server.addr))
        .bearer_auth(&server.key)
        .json(&json!({ "query": "{ contacts(first: 1) { totalCount } }" }))
        .send()
        .await;
    assert!(outcome.is_err(), "plain HTTP to the TLS port answered: {outcome:?}");

    // A client that does not trust the certificate is refused too.
    let untrusting = reqwest::Client::builder().use_rustls_tls().timeout(TIMEOUT).build().expect("client");
    assert!(untrusting.get(format!("https://{}/healthz", server.addr)).send().await.is_err());
}
