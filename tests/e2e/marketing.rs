//! The bundled marketing plugin over GraphQL, its public routes and the
//! SMTP path: a campaign reaches exactly the consenting members of its
//! segment, tracking links are signed and feed activities and the lead
//! score, a sequence stops on a reply, attribution matches a worked example.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{MailSink, Server, eventually};

const MINUTE: i64 = 60_000;

async fn create(server: &Server, object: &str, input: Value) -> String {
    let pascal: String = object.split('_').map(|part| part[..1].to_uppercase() + &part[1..]).collect();
    let query = format!("mutation($input: Create{pascal}Input!) {{ create{pascal}(input: $input) {{ id }} }}");
    let created = server.ok(&query, json!({"input": input})).await;
    created[format!("create{pascal}")]["id"].as_str().expect("an id").to_string()
}

async fn contact(server: &Server, name: &str, email: &str, stage: &str, consent: bool) -> String {
    create(server, "contact", json!({"firstName": name, "email": email, "lifecycleStage": stage.to_uppercase(), "emailOptIn": consent})).await
}

/// A template with a tracked link, and a campaign of it to `segment`.
async fn campaign(server: &Server, name: &str, segment: &str) -> String {
    let template = create(
        server,
        "email_template",
        json!({"name": name, "subject": format!("{name} for {{{{contact.first_name}}}}"),
               "html": "<p>Hi {{contact.first_name|there}}, see <a href=\"https://example.com/offer\">the offer</a>.</p>"}),
    )
    .await;
    create(server, "campaign", json!({"name": name, "segmentId": segment, "templateId": template})).await
}

async fn send(server: &Server, campaign: &str) {
    server.ok("mutation($id: ID!) { marketingSend(input: {campaignId: $id}) { status } }", json!({"id": campaign})).await;
    eventually("the campaign to be sent", || async {
        let state = server.ok("query($id: ID!) { campaign(id: $id) { status } }", json!({"id": campaign})).await;
        (state["campaign"]["status"] == "SENT").then_some(())
    })
    .await;
}

/// The messages the plugin queued, as `(recipient, html)`.
async fn mailbox(server: &Server) -> Vec<(String, String)> {
    let body = server
        .ok("{ outboundMessages(filter: {source: {eq: \"marketing\"}}, first: 100) { edges { node { recipient html } } } }", json!({}))
        .await;
    body["outboundMessages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| (edge["node"]["recipient"].as_str().unwrap().to_string(), edge["node"]["html"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The path and query of the first tracking link of `kind` (`open`, `click`, `unsubscribe`) in `html`.
fn link(html: &str, kind: &str) -> String {
    let marker = format!("/marketing/{kind}?t=");
    let at = html.find(&marker).unwrap_or_else(|| panic!("no {kind} link in {html}"));
    let start = html[..at].rfind("/hooks/").expect("a hooks path");
    let end = at + html[at..].find('"').expect("a closing quote");
    html[start..end].replace("&amp;", "&")
}

/// One character of the token changed.
fn tampered(path: &str) -> String {
    let at = path.find("t=").unwrap() + 5;
    let mut out = path.to_string();
    let swap = if out.as_bytes()[at] == b'A' { "B" } else { "A" };
    out.replace_range(at..at + 1, swap);
    out
}

async fn activity_subjects(server: &Server, contact: &str) -> Vec<String> {
    let body = server
        .ok("query($id: ID) { activities(filter: {contactId: {eq: $id}}) { edges { node { subject } } } }", json!({"id": contact}))
        .await;
    body["activities"]["edges"].as_array().unwrap().iter().filter_map(|e| e["node"]["subject"].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn a_campaign_reaches_exactly_the_consenting_members_of_its_segment() {
    let sink = MailSink::start(&["--reject", "bounce"]).await;
    let server = Server::start(&["--smtp-url", &sink.url]).await;
    contact(&server, "Ada", "ada@example.com", "lead", true).await;
    contact(&server, "Bob", "bounce@example.com", "lead", true).await;
    contact(&server, "Cy", "cy@example.com", "lead", false).await;
    contact(&server, "Di", "di@example.com", "customer", true).await;
    create(&server, "contact", json!({"firstName": "Ed", "lifecycleStage": "LEAD", "emailOptIn": true})).await;
    let leads = create(&server, "segment", json!({"name": "Leads", "filter": "{\"lifecycle_stage\": {\"eq\": \"lead\"}}"})).await;
    let launch = campaign(&server, "Launch", &leads).await;
    send(&server, &launch).await;

    let mut recipients: Vec<String> = mailbox(&server).await.into_iter().map(|(to, _)| to).collect();
    recipients.sort();
    assert_eq!(recipients, ["ada@example.com", "bounce@example.com"], "consenting leads with an address, no one else");

    // Through SMTP: one accepted, one refused permanently, and the
    // campaign's counters follow the transport's reports.
    let counters = eventually("delivery reports", || async {
        let state = server
            .ok("query($id: ID!) { campaign(id: $id) { eligibleCount sentCount deliveredCount bouncedCount } }", json!({"id": launch}))
            .await;
        let campaign = state["campaign"].clone();
        (campaign["deliveredCount"] == 1 && campaign["bouncedCount"] == 1).then_some(campaign)
    })
    .await;
    assert_eq!((counters["eligibleCount"].as_i64(), counters["sentCount"].as_i64()), (Some(2), Some(2)), "{counters}");
    let received = sink.messages();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert!(received[0].contains("X-Envelope-To: ada@example.com") && received[0].contains("Subject: Launch for Ada"), "{}", received[0]);

    // Sending again reaches no one twice.
    server.ok("mutation($id: ID!) { marketingSend(input: {campaignId: $id}) { status } }", json!({"id": launch})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mailbox(&server).await.len(), 2);
}

#[tokio::test]
async fn tracking_links_are_signed_and_opens_and_clicks_raise_the_lead_score() {
    let server = Server::start(&[]).await;
    let ada = contact(&server, "Ada", "ada@example.com", "lead", true).await;
    let everyone = create(&server, "segment", json!({"name": "Everyone", "filter": "{}"})).await;
    let news = campaign(&server, "News", &everyone).await;
    send(&server, &news).await;
    let (_, html) = mailbox(&server).await.pop().expect("a message");
    let (open, click, unsubscribe) = (link(&html, "open"), link(&html, "click"), link(&html, "unsubscribe"));
    let score = || async {
        let body = server.ok("query($id: ID!) { contact(id: $id) { engagementScore emailOptIn } }", json!({"id": ada})).await;
        body["contact"].clone()
    };
    let before = score().await["engagementScore"].as_f64().unwrap_or(0.0);

    // Forged and tampered links are refused and record nothing.
    for forged in [tampered(&open), tampered(&click), tampered(&unsubscribe), open.replace("/open?", "/click?")] {
        assert_eq!(server.request("GET", &forged, None, "").await.status, 404, "{forged}");
    }
    assert_eq!(server.request("GET", "/hooks/x/marketing/open?t=bm90aGluZw.AAAA", None, "").await.status, 404);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(activity_subjects(&server, &ada).await.is_empty(), "nothing recorded");
    assert_eq!(score().await["emailOptIn"], true);

    let pixel = server.request("GET", &open, None, "").await;
    assert_eq!((pixel.status, pixel.content_type.as_str()), (200, "image/gif"));
    let redirect = server.request("GET", &click, None, "").await;
    assert_eq!((redirect.status, redirect.location.as_deref()), (302, Some("https://example.com/offer")));

    let subjects = eventually("tracking activities", || async {
        let subjects = activity_subjects(&server, &ada).await;
        (subjects.len() >= 2).then_some(subjects)
    })
    .await;
    assert!(subjects.contains(&"Opened email: News for Ada".to_string()), "{subjects:?}");
    assert!(subjects.iter().any(|subject| subject.starts_with("Clicked https://example.com/offer")), "{subjects:?}");
    // Lead scoring (enabled with its defaults): an email activity is 3
    // points and an `email_clicked` event 3 more.
    let after = eventually("the lead score", || async {
        let now = score().await["engagementScore"].as_f64().unwrap_or(0.0);
        (now >= before + 9.0).then_some(now)
    })
    .await;
    assert_eq!(after, before + 9.0);

    let unsubscribed = server.request("GET", &unsubscribe, None, "").await;
    assert_eq!(unsubscribed.status, 200);
    assert_eq!(score().await["emailOptIn"], false);

    // The web-to-lead form creates a contact by email; bad input is refused.
    let tenant = &open["/hooks/".len()..open["/hooks/".len()..].find('/').unwrap() + "/hooks/".len()];
    let form = format!("/hooks/{tenant}/marketing/lead");
    let created = server.request("POST", &form, Some("application/x-www-form-urlencoded"), "email=Lee%40Example.com&first_name=Lee").await;
    assert_eq!(created.status, 201, "{}", created.text);
    let bad = server.request("POST", &form, Some("application/x-www-form-urlencoded"), "email=not-an-address").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let leads = server.ok("{ contacts(filter: {email: {eq: \"lee@example.com\"}}) { totalCount } }", json!({})).await;
    assert_eq!(leads["contacts"]["totalCount"], 1);
}

#[tokio::test]
async fn a_sequence_stops_when_the_contact_replies() {
    let server = Server::start(&["--dev-clock"]).await;
    let ada = contact(&server, "Ada", "ada@example.com", "lead", true).await;
    let template = create(&server, "email_template", json!({"name": "Nudge", "subject": "Hello {{contact.first_name}}", "html": "<p>Still there?</p>"})).await;
    let sequence = create(&server, "sequence", json!({"name": "Onboarding"})).await;
    create(&server, "sequence_step", json!({"sequenceId": sequence, "position": 1, "kind": "EMAIL", "templateId": template})).await;
    create(&server, "sequence_step", json!({"sequenceId": sequence, "position": 2, "kind": "EMAIL", "templateId": template, "delayMinutes": 60})).await;
    let enrolled = server
        .ok("mutation($s: ID!, $c: ID!) { marketingEnroll(input: {sequenceId: $s, contactId: $c}) { enrollmentId } }", json!({"s": sequence, "c": ada}))
        .await;
    let enrollment = enrolled["marketingEnroll"]["enrollmentId"].as_str().unwrap().to_string();
    eventually("the first step's email", || async { (mailbox(&server).await.len() == 1).then_some(()) }).await;

    // The contact answers: an inbound email on their timeline.
    create(&server, "activity", json!({"kind": "EMAIL", "direction": "INBOUND", "subject": "Re: Hello Ada", "contactId": ada})).await;
    let ended = eventually("the enrolment to end", || async {
        let state = server.ok("query($id: ID!) { sequenceEnrollment(id: $id) { status exitReason } }", json!({"id": enrollment})).await;
        (state["sequenceEnrollment"]["status"] != "ACTIVE").then(|| state["sequenceEnrollment"].clone())
    })
    .await;
    assert_eq!(ended, json!({"status": "EXITED", "exitReason": "REPLIED"}));
    server.ok("mutation { advanceClock(ms: 3700000) }", json!({})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(mailbox(&server).await.len(), 1, "no step after the reply");
}

#[tokio::test]
async fn attribution_splits_won_amounts_between_engaged_campaigns() {
    let server = Server::start(&["--dev-clock"]).await;
    let ada = contact(&server, "Ada", "ada@example.com", "lead", true).await;
    let bob = contact(&server, "Bob", "bob@example.com", "lead", true).await;
    let everyone = create(&server, "segment", json!({"name": "Everyone", "filter": "{}"})).await;
    let x = campaign(&server, "X", &everyone).await;
    send(&server, &x).await;
    let y = campaign(&server, "Y", &everyone).await;
    send(&server, &y).await;
    // Each message is found through the send log.
    let sends = server
        .ok("{ campaignSends(first: 10) { edges { node { campaignId contactId messageId } } } }", json!({}))
        .await;
    let message_html = |campaign: &str, contact: &str| {
        let sends = sends.clone();
        let server = &server;
        let (campaign, contact) = (campaign.to_string(), contact.to_string());
        async move {
            let send = sends["campaignSends"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["node"]["campaignId"] == campaign.as_str() && e["node"]["contactId"] == contact.as_str())
                .expect("a send")["node"]
                .clone();
            let message = server.ok("query($id: ID!) { outboundMessage(id: $id) { html } }", json!({"id": send["messageId"]})).await;
            message["outboundMessage"]["html"].as_str().unwrap().to_string()
        }
    };

    // Day 0: Ada and Bob open X. Day 5: Ada clicks Y. Day 38: Bob opens Y.
    assert_eq!(server.request("GET", &link(&message_html(&x, &ada).await, "open"), None, "").await.status, 200);
    assert_eq!(server.request("GET", &link(&message_html(&x, &bob).await, "open"), None, "").await.status, 200);
    server.ok("mutation($ms: Int!) { advanceClock(ms: $ms) }", json!({"ms": 5 * 24 * 60 * MINUTE})).await;
    assert_eq!(server.request("GET", &link(&message_html(&y, &ada).await, "click"), None, "").await.status, 302);
    server.ok("mutation($ms: Int!) { advanceClock(ms: $ms) }", json!({"ms": 33 * 24 * 60 * MINUTE})).await;
    assert_eq!(server.request("GET", &link(&message_html(&y, &bob).await, "open"), None, "").await.status, 200);
    server.ok("mutation($ms: Int!) { advanceClock(ms: $ms) }", json!({"ms": 2 * 24 * 60 * MINUTE})).await;
    // Day 40: both deals are won today.
    eventually("tracking recorded", || async {
        let opened = server.ok("{ campaignSends(filter: {openedAt: {isNull: false}}) { totalCount } }", json!({})).await;
        (opened["campaignSends"]["totalCount"] == 4).then_some(())
    })
    .await;
    let today = server.ok("mutation { advanceClock(ms: 0) }", json!({})).await["advanceClock"].as_str().unwrap()[..10].to_string();
    for (contact, amount) in [(&ada, 1000.0), (&bob, 300.0)] {
        create(&server, "deal", json!({"name": "Deal", "contactId": contact, "amount": amount, "stage": "closedwon", "closeDate": today})).await;
    }

    let attribution = |days: i64| {
        let server = &server;
        async move {
            let body = server
                .ok("mutation($d: Int) { marketingAttribution(input: {windowDays: $d}) { wonAmount attributedAmount campaigns } }", json!({"d": days}))
                .await;
            let out = body["marketingAttribution"].clone();
            let campaigns: Vec<Value> = serde_json::from_str(out["campaigns"].as_str().unwrap()).unwrap();
            let by_name: Vec<(String, f64)> = campaigns.iter().map(|c| (c["name"].as_str().unwrap().to_string(), c["amount"].as_f64().unwrap())).collect();
            (out["wonAmount"].as_f64().unwrap(), out["attributedAmount"].as_f64().unwrap(), by_name)
        }
    };
    // Engagements in days before the win (the end of today): Ada X 40 and
    // Y 35, Bob X 40 and Y 2. Ada's deal is 1000, Bob's 300.
    // 30 days: Ada none; Bob Y only → Y 300.
    assert_eq!(attribution(30).await, (1300.0, 300.0, vec![("Y".to_string(), 300.0)]));
    // 36 days: Ada Y (1000), Bob Y (300) → Y 1300.
    assert_eq!(attribution(36).await, (1300.0, 1300.0, vec![("Y".to_string(), 1300.0)]));
    // 45 days: Ada X+Y (500 each), Bob X+Y (150 each) → X 650, Y 650, sorted by amount then id.
    let (won, attributed, mut split) = attribution(45).await;
    split.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!((won, attributed, split), (1300.0, 1300.0, vec![("X".to_string(), 650.0), ("Y".to_string(), 650.0)]));
}
