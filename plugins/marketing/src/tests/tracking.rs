//! Tracking links: signed tokens, the open pixel, click redirects and the
//! unsubscribe link.

use crm_plugin_sdk::signed;

use super::*;
use crate::tracking::Token;

struct Sent {
    host: TestHost,
    campaign: Record,
    ada: Record,
    send: Record,
    html: String,
}

/// One campaign message to Ada, with lead scoring's view of events.
fn sent() -> Sent {
    let host = TestHost::new();
    let ada = contact(&host, "Ada", Some("ada@example.com"), Some(true));
    let segment = segment(&host, json!({}));
    let template = template(&host, "News", "<p>Hi</p><a href=\"https://example.com/a?x=1&amp;y=2\">A</a>");
    let campaign = campaign(&host, &segment, &template, None);
    host.invoke(&Marketing, "send", [("campaign_id", Value::Id(campaign.id.clone()))]).unwrap();
    run_timers(&host, 1);
    let send = host.records("campaign_send").pop().unwrap();
    let html = host.sent()[0].message.html.clone().unwrap();
    Sent { host, campaign, ada, send, html }
}

fn status(host: &TestHost, request: HttpRequest) -> u16 {
    host.http(&Marketing, request).unwrap().status
}

#[test]
fn tokens_round_trip_and_refuse_anything_changed() {
    let host = TestHost::new();
    host.make_current();
    let token = Token::Click { send: "S1".into(), url: "https://example.com/a:b".into() };
    let signed = token.sign().unwrap();
    assert_eq!(Token::verify(&signed).unwrap(), Some(token));
    assert_eq!(
        Token::verify(&Token::Open { send: "S1".into() }.sign().unwrap()).unwrap(),
        Some(Token::Open { send: "S1".into() })
    );
    // Signed by this key but not a token of ours, or a click to a non-web URL.
    assert_eq!(Token::verify(&signed::sign("x:S1").unwrap()).unwrap(), None);
    assert_eq!(Token::verify(&signed::sign("c:S1:javascript:alert(1)").unwrap()).unwrap(), None);
    assert_eq!(Token::verify(&signed::sign("o:").unwrap()).unwrap(), None);
    let (data, tag) = signed.split_once('.').unwrap();
    let mut changed = data.as_bytes().to_vec();
    changed[3] ^= 1;
    assert_eq!(Token::verify(&format!("{}.{tag}", String::from_utf8(changed).unwrap())).unwrap(), None);
}

#[test]
fn an_open_is_recorded_once_on_the_timeline_and_counted() {
    let Sent { host, campaign, ada, send, html } = sent();
    let pixel = link(&html, "/open");
    let response = host.http(&Marketing, get(&pixel)).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("image/gif"));
    assert!(response.body.starts_with(b"GIF89a"));
    host.advance(1000);
    assert_eq!(status(&host, get(&pixel)), 200);

    let send = host.record("campaign_send", &send.id).unwrap();
    assert_eq!(send.int("opened_at"), Some(host.now() - 1000), "the first open");
    assert_eq!(send.int("last_opened_at"), Some(host.now()));
    assert_eq!(send.int("open_count"), Some(2));
    assert_eq!(host.record("campaign", &campaign.id).unwrap().int("opened_count"), Some(1), "contacts, not loads");
    let activities = host.records("activity");
    assert_eq!(activities.len(), 1);
    assert_eq!(activities[0].id("contact_id"), Some(ada.id.as_str()));
    assert_eq!(activities[0].text("kind"), Some("email"));
    assert_eq!(activities[0].text("direction"), Some("outbound"), "never inbound: that would be a reply");
    assert_eq!(activities[0].text("subject"), Some("Opened email: News"));
    let opened = emitted(&host, "email_opened");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["contact_id"], ada.id.as_str());
    assert_eq!(opened[0]["campaign_id"], campaign.id.as_str());
    assert_eq!(opened[0]["send_id"], send.id.as_str());
}

#[test]
fn a_click_redirects_to_the_original_url_and_counts_as_an_open() {
    let Sent { host, campaign, ada, send, html } = sent();
    let click = link(&html, "/click");
    let response = host.http(&Marketing, get(&click)).unwrap();
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("https://example.com/a?x=1&y=2"));
    assert_eq!(status(&host, get(&click)), 302);
    let send = host.record("campaign_send", &send.id).unwrap();
    assert_eq!((send.int("click_count"), send.int("open_count")), (Some(2), Some(1)));
    assert!(send.int("clicked_at").is_some() && send.int("opened_at").is_some());
    let campaign = host.record("campaign", &campaign.id).unwrap();
    assert_eq!((campaign.int("clicked_count"), campaign.int("opened_count")), (Some(1), Some(1)));
    let clicked = emitted(&host, "email_clicked");
    assert_eq!(clicked.len(), 1, "the first click of a message");
    assert_eq!(clicked[0]["url"], "https://example.com/a?x=1&y=2");
    assert_eq!(clicked[0]["contact_id"], ada.id.as_str());
    assert!(emitted(&host, "email_opened").is_empty());
    assert_eq!(host.records("activity")[0].text("subject"), Some("Clicked https://example.com/a?x=1&y=2 in email: News"));
}

#[test]
fn forged_or_tampered_links_get_404_and_record_nothing() {
    let Sent { host, send, html, .. } = sent();
    let before = (host.records("campaign_send"), host.emitted().len());
    let click = link(&html, "/click");
    let token = click.split_once("t=").unwrap().1.to_owned();
    let (data, tag) = token.split_once('.').unwrap();

    // The redirect target swapped for another, under the old tag.
    let evil = format!("c:{}:https://evil.example", send.id);
    let forged = format!("{}.{tag}", base64url(evil.as_bytes()));
    assert_eq!(status(&host, HttpRequest::get("/click").with_query(format!("t={forged}"))), 404);
    // One character of the tag changed.
    let mut bent = tag.to_owned();
    let last = bent.pop().unwrap();
    bent.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(status(&host, HttpRequest::get("/click").with_query(format!("t={data}.{bent}"))), 404);
    // Made up; a valid token on the wrong route; another tenant's token.
    assert_eq!(status(&host, HttpRequest::get("/open").with_query("t=bm90LmEudG9rZW4.AAAA")), 404);
    assert_eq!(status(&host, HttpRequest::get("/open").with_query(format!("t={token}"))), 404);
    let elsewhere = TestHost::new();
    elsewhere.make_current();
    let foreign = Token::Open { send: send.id.clone() }.sign().unwrap();
    assert_eq!(status(&host, HttpRequest::get("/open").with_query(format!("t={foreign}"))), 404);
    assert_eq!(status(&host, HttpRequest::get("/unsubscribe").with_query(format!("t={foreign}"))), 404);
    // No token at all.
    assert_eq!(status(&host, HttpRequest::get("/open")), 400);

    assert_eq!((host.records("campaign_send"), host.emitted().len()), before, "nothing recorded");
    assert!(host.records("activity").is_empty());
    assert_eq!(host.record("contact", &host.records("contact")[0].id).unwrap().bool("email_opt_in"), Some(true));
}

/// URL-safe base64 without padding, written out so the test does not lean
/// on the SDK's internals.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (index, byte)| n | (u32::from(*byte) << (16 - 8 * index)));
        for index in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * index)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn a_token_for_a_deleted_send_gets_404() {
    let Sent { host, send, html, .. } = sent();
    host.make_current();
    records::delete("campaign_send", &send.id).unwrap();
    assert_eq!(status(&host, get(&link(&html, "/open"))), 404);
    assert_eq!(status(&host, get(&link(&html, "/click"))), 404);
    assert_eq!(status(&host, get(&link(&html, "/unsubscribe"))), 404);
}

#[test]
fn unsubscribing_withdraws_consent_marks_the_message_and_answers_a_page() {
    let Sent { host, campaign, ada, send, html } = sent();
    let unsubscribe = link(&html, "/unsubscribe");
    let response = host.http(&Marketing, get(&unsubscribe)).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    let page = response.body_text().unwrap();
    assert!(page.contains("You are unsubscribed") && page.contains("ada@example.com"), "{page}");

    let contact = host.record("contact", &ada.id).unwrap();
    assert_eq!(contact.bool("email_opt_in"), Some(false));
    assert_eq!(contact.text("email_opt_in_source"), Some(format!("unsubscribe link (campaign {})", campaign.id).as_str()));
    let send = host.record("campaign_send", &send.id).unwrap();
    assert!(send.int("unsubscribed_at").is_some());
    assert_eq!(host.record("campaign", &campaign.id).unwrap().int("unsubscribed_count"), Some(1));
    assert_eq!(emitted(&host, "email_unsubscribed").len(), 1);

    // Again (or by one-click POST): the same page, nothing recorded twice.
    let again = get(&unsubscribe);
    let post = HttpRequest::post("/unsubscribe").with_query(again.query.clone());
    assert_eq!(status(&host, post), 200);
    assert_eq!(emitted(&host, "email_unsubscribed").len(), 1);
    assert_eq!(host.records("activity").len(), 1);

    // The next campaign leaves Ada out.
    let next = campaign_to_all(&host);
    assert!(host.sent().iter().skip(1).all(|sent| sent.message.to != "ada@example.com"), "{next:?}");
}

fn campaign_to_all(host: &TestHost) -> Vec<String> {
    let segment = segment(host, json!({}));
    let template = template(host, "Again", "<p>x</p>");
    let campaign = campaign(host, &segment, &template, None);
    host.invoke(&Marketing, "send", [("campaign_id", Value::Id(campaign.id.clone()))]).unwrap();
    run_timers(host, 1);
    host.sent().into_iter().map(|sent| sent.message.to).collect()
}

#[test]
fn routes_answer_405_for_other_methods() {
    let host = TestHost::new();
    let response = host.http(&Marketing, HttpRequest::post("/open")).unwrap();
    assert_eq!(response.status, 405);
    assert_eq!(host.http(&Marketing, HttpRequest::get("/lead")).unwrap().status, 405);
    assert_eq!(host.http(&Marketing, HttpRequest::get("/nothing")).unwrap().status, 404);
}
