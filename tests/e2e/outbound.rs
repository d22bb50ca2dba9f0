//! The outbound channel's SMTP transport against a real SMTP server on
//! loopback (`crm mail-sink`), and the dev mailbox when none is configured.

use serde_json::{Value, json};

use crate::support::{MailSink, Server, eventually};

const CREATE: &str = "mutation($input: CreateOutboundMessageInput!) { createOutboundMessage(input: $input) { id status } }";
const MESSAGE: &str = "query($id: ID!) { outboundMessage(id: $id) { status attempts retryAt sentAt error } }";

async fn queue(server: &Server, recipient: &str, subject: &str, html: Option<&str>) -> String {
    let mut input = json!({"channel": "EMAIL", "recipient": recipient, "subject": subject, "body": format!("Hello {recipient}")});
    if let Some(html) = html {
        input["html"] = json!(html);
    }
    let created = server.ok(CREATE, json!({"input": input})).await;
    created["createOutboundMessage"]["id"].as_str().expect("an id").to_string()
}

async fn message(server: &Server, id: &str) -> Value {
    server.ok(MESSAGE, json!({"id": id})).await["outboundMessage"].clone()
}

/// Waits until the message has left `QUEUED` (or has been tried `attempts` times).
async fn settled(server: &Server, id: &str, attempts: i64) -> Value {
    eventually("the transport to try the message", || async {
        let message = message(server, id).await;
        (message["status"] != "QUEUED" || message["attempts"].as_i64() >= Some(attempts)).then_some(message)
    })
    .await
}

#[tokio::test]
async fn smtp_delivers_bounces_and_retries_by_the_kernel_clock() {
    let sink = MailSink::start(&["--reject", "bounce", "--defer", "later"]).await;
    let server = Server::start(&["--no-bundled-plugins", "--dev-clock", "--smtp-url", &sink.url, "--smtp-from", "Acme CRM <crm@acme.test>"]).await;

    let delivered = queue(&server, "ada@example.com", "Welcome aboard", Some("<p>Hello <b>Ada</b></p>")).await;
    let plain = queue(&server, "bob@example.com", "Plain only", None).await;
    let bounced = queue(&server, "bounce@example.com", "Nobody home", None).await;
    let deferred = queue(&server, "later@example.com", "Try again", None).await;
    let unusable = queue(&server, "not an address", "Nowhere", None).await;

    let ada = settled(&server, &delivered, 1).await;
    assert_eq!(ada["status"], "DELIVERED", "{ada}");
    assert!(ada["sentAt"].is_string() && ada["error"].is_null(), "{ada}");
    assert_eq!(settled(&server, &plain, 1).await["status"], "DELIVERED");

    let bounce = settled(&server, &bounced, 1).await;
    assert_eq!(bounce["status"], "BOUNCED", "{bounce}");
    assert!(bounce["error"].as_str().unwrap_or_default().contains("550"), "{bounce}");

    let unusable = settled(&server, &unusable, 1).await;
    assert_eq!(unusable["status"], "FAILED", "{unusable}");
    assert!(unusable["error"].as_str().unwrap_or_default().contains("not an email address"), "{unusable}");

    // A transient refusal keeps the message queued for a retry by the
    // kernel's clock, not by the wall clock.
    let later = settled(&server, &deferred, 1).await;
    assert_eq!((later["status"].as_str(), later["attempts"].as_i64()), (Some("QUEUED"), Some(1)), "{later}");
    assert!(later["error"].as_str().unwrap_or_default().contains("451") && later["retryAt"].is_string(), "{later}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(message(&server, &deferred).await["attempts"], 1, "retried before its time");
    server.ok("mutation { advanceClock(ms: 31000) }", json!({})).await;
    let again = settled(&server, &deferred, 2).await;
    assert_eq!((again["status"].as_str(), again["attempts"].as_i64()), (Some("QUEUED"), Some(2)), "{again}");

    // What the SMTP server received: the two accepted messages, once each,
    // from the configured sender, with the text and the HTML part.
    let received = sink.messages();
    assert_eq!(received.len(), 2, "{received:#?}");
    let to_ada = received.iter().find(|text| text.contains("X-Envelope-To: ada@example.com")).expect("Ada's message");
    for part in ["X-Envelope-From: crm@acme.test", "Subject: Welcome aboard", "From: \"Acme CRM\" <crm@acme.test>", "text/plain", "Hello ada@example.com", "text/html", "<b>Ada</b>"] {
        assert!(to_ada.contains(part), "missing {part:?} in {to_ada}");
    }
    assert!(to_ada.contains(&format!("Message-ID: <{delivered}@acme.test>")), "{to_ada}");
    assert!(received.iter().any(|text| text.contains("X-Envelope-To: bob@example.com") && !text.contains("text/html")));

    // Status changes are audited writes by the transport.
    let history = server
        .ok("query($id: ID!) { recordHistory(object: OUTBOUND_MESSAGE, id: $id) { actor operation } }", json!({"id": delivered}))
        .await;
    let actors: Vec<&str> = history["recordHistory"].as_array().unwrap().iter().filter_map(|entry| entry["actor"].as_str()).collect();
    assert!(actors.contains(&"outbound"), "{history}");
}

#[tokio::test]
async fn without_a_transport_messages_stay_in_the_dev_mailbox() {
    let server = Server::start(&["--no-bundled-plugins"]).await;
    let id = queue(&server, "ada@example.com", "Kept here", Some("<p>Hi</p>")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mailbox = server
        .ok("{ outboundMessages(filter: {status: {eq: QUEUED}}) { totalCount edges { node { id recipient subject html attempts } } } }", json!({}))
        .await;
    assert_eq!(mailbox["outboundMessages"]["totalCount"], 1, "{mailbox}");
    let node = &mailbox["outboundMessages"]["edges"][0]["node"];
    assert_eq!((node["id"].as_str(), node["subject"].as_str(), node["attempts"].as_i64()), (Some(id.as_str()), Some("Kept here"), None), "{node}");
}
