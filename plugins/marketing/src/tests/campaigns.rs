//! Campaigns: who is sent to, once each, in throttled batches.

use crm_plugin_sdk::testing::Timer;

use super::*;
use crate::campaigns::Progress;

struct World {
    host: TestHost,
    campaign: Record,
    ada: Record,
    gus: Record,
}

/// Seven contacts of whom two may be emailed: Ada and Gus.
fn world(throttle: Option<i64>) -> World {
    let host = TestHost::new();
    let ada = contact(&host, "Ada", Some("ada@example.com"), Some(true));
    contact(&host, "Bob", Some("bob@example.com"), Some(false)); // unsubscribed
    contact(&host, "Cy", None, Some(true)); // no address
    contact(&host, "Dee", Some("dee@example.com"), None); // never consented
    host.insert(
        "contact",
        [("first_name", Value::from("Eve")), ("email", "eve@example.com".into()), ("email_opt_in", true.into())],
    ); // not a lead
    let fay = contact(&host, "Fay", Some("fay@example.com"), Some(true));
    host.insert(
        "campaign_send",
        [("key", Value::from("c:old:fay")), ("contact_id", Value::Id(fay.id.clone())), ("status", "bounced".into())],
    );
    let gus = contact(&host, "Gus", Some("gus@example.com"), Some(true));
    let segment = segment(&host, json!({"lifecycle_stage": {"eq": "lead"}}));
    let template = template(
        &host,
        "Spring news for {{contact.first_name}}",
        "<p>Hi {{contact.first_name|there}}</p><a href=\"https://example.com/spring\">See</a>",
    );
    let campaign = campaign(&host, &segment, &template, throttle);
    World { host, campaign, ada, gus }
}

fn send(world: &World) -> Fields {
    world.host.invoke(&Marketing, "send", [("campaign_id", Value::Id(world.campaign.id.clone()))]).unwrap()
}

fn stored(world: &World) -> Record {
    world.host.record("campaign", &world.campaign.id).unwrap()
}

fn recipients(host: &TestHost) -> Vec<String> {
    host.sent().into_iter().map(|sent| sent.message.to).collect()
}

#[test]
fn a_campaign_reaches_exactly_the_consenting_members_with_an_email() {
    let world = world(None);
    let host = &world.host;
    assert_eq!(world.campaign.text("status"), Some("draft"));
    let started = send(&world);
    assert_eq!(started.text("status"), Some("sending"));
    assert_eq!(started.int("segment_count"), Some(6));
    assert_eq!(started.int("eligible_count"), Some(3), "Ada, Fay and Gus have an address and consent");
    assert!(host.sent().is_empty(), "batches run by timer");
    assert_eq!(host.timers()[0].key, format!("campaign:{}", world.campaign.id));

    run_timers(host, 1);
    assert_eq!(recipients(host), ["ada@example.com", "gus@example.com"], "Fay bounced before and is left out");
    let message = &host.sent()[0].message;
    assert_eq!(message.subject, "Spring news for Ada");
    assert!(message.html.as_deref().unwrap().contains("<p>Hi Ada</p>"));
    assert!(message.body.starts_with("Hi Ada\n\nSee ("), "{}", message.body);

    let campaign = stored(&world);
    assert_eq!(campaign.text("status"), Some("sent"));
    assert_eq!(campaign.int("sent_count"), Some(2));
    assert_eq!(campaign.int("finished_at"), Some(host.now()));
    let sends: Vec<Record> = host
        .records("campaign_send")
        .into_iter()
        .filter(|send| send.id("campaign_id") == Some(world.campaign.id.as_str()))
        .collect();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].id("contact_id"), Some(world.ada.id.as_str()));
    assert_eq!(sends[0].text("key"), Some(format!("c:{}:{}", world.campaign.id, world.ada.id).as_str()));
    assert_eq!(sends[0].text("status"), Some("queued"));
    assert_eq!(sends[0].text("message_id"), Some(host.sent()[0].id.as_str()));
    assert_eq!(sends[0].text("email"), Some("ada@example.com"));
    assert_eq!(sends[0].int("sent_at"), Some(host.now()));
    assert_eq!(sends[1].id("contact_id"), Some(world.gus.id.as_str()));
}

#[test]
fn without_skip_bounced_a_contact_with_a_bounce_is_sent_to() {
    let world = world(None);
    world.host.set_config(json!({"skip_bounced": false}));
    send(&world);
    run_timers(&world.host, 1);
    assert_eq!(recipients(&world.host), ["ada@example.com", "fay@example.com", "gus@example.com"]);
}

#[test]
fn sending_again_or_retrying_a_batch_sends_nobody_twice() {
    let world = world(None);
    let host = &world.host;
    send(&world);
    let first_run: Timer = host.timers()[0].clone();
    // `send` while sending schedules nothing new.
    host.advance(5);
    assert_eq!(send(&world).text("status"), Some("sending"));
    assert_eq!(host.timers(), std::slice::from_ref(&first_run));
    run_timers(host, 1);
    assert_eq!(host.sent().len(), 2);

    // The kernel delivers a timer at least once: the same run again.
    host.on_timer(&Marketing, &first_run.key, &first_run.payload).unwrap();
    // A run replayed from the dead-letter list comes without payload.
    host.on_timer(&Marketing, &first_run.key, b"").unwrap();
    assert_eq!(host.sent().len(), 2);

    // Sending a sent campaign again reaches only members who joined since.
    let hal = contact(host, "Hal", Some("hal@example.com"), Some(true));
    assert_eq!(send(&world).text("status"), Some("sending"));
    run_timers(host, 1);
    assert_eq!(recipients(host), ["ada@example.com", "gus@example.com", "hal@example.com"]);
    assert_eq!(stored(&world).int("sent_count"), Some(3));
    assert_eq!(host.records("campaign_send").iter().filter(|send| send.id("contact_id") == Some(hal.id.as_str())).count(), 1);
}

#[test]
fn a_reservation_left_pending_is_resolved_without_sending_twice() {
    let world = world(None);
    let host = &world.host;
    let key = |contact: &Record| format!("c:{}:{}", world.campaign.id, contact.id);
    // A run ended after reserving Ada and handing her message over...
    let ada_send = host.insert(
        "campaign_send",
        [
            ("key", Value::from(key(&world.ada))),
            ("contact_id", Value::Id(world.ada.id.clone())),
            ("campaign_id", Value::Id(world.campaign.id.clone())),
            ("email", "ada@example.com".into()),
            ("subject", "Spring news for Ada".into()),
            ("status", "pending".into()),
        ],
    );
    let handed = host.insert(
        "outbound_message",
        [("recipient", "ada@example.com"), ("source", "marketing"), ("subject", "Spring news for Ada"), ("status", "queued")],
    );
    // ...and after reserving Gus, before handing his over.
    host.insert(
        "campaign_send",
        [
            ("key", Value::from(key(&world.gus))),
            ("contact_id", Value::Id(world.gus.id.clone())),
            ("campaign_id", Value::Id(world.campaign.id.clone())),
            ("email", "gus@example.com".into()),
            ("subject", "Spring news for Gus".into()),
            ("status", "pending".into()),
        ],
    );
    send(&world);
    run_timers(host, 1);
    assert_eq!(recipients(host), ["gus@example.com"], "Ada's message was found, Gus's was sent");
    let ada_send = host.record("campaign_send", &ada_send.id).unwrap();
    assert_eq!(ada_send.text("status"), Some("queued"));
    assert_eq!(ada_send.text("message_id"), Some(handed.id.as_str()));
    assert_eq!(stored(&world).int("sent_count"), Some(2));
}

#[test]
fn a_throttled_campaign_sends_batches_paced_by_the_clock() {
    let world = world(Some(1));
    let host = &world.host;
    send(&world);
    let start = host.now();
    run_timers(host, 0);
    assert_eq!(recipients(host), ["ada@example.com"], "one a minute");
    assert_eq!(host.timers()[0].at, start + 60_000);
    let progress: Progress = serde_json::from_slice(&host.timers()[0].payload).unwrap();
    assert!(progress.after.is_some());
    assert_eq!(stored(&world).int("sent_count"), Some(1));
    assert_eq!(stored(&world).text("status"), Some("sending"));

    host.advance(59_999);
    assert_eq!(run_timers(host, 0), 0);
    host.advance(1);
    // Fay's turn is skipped (she bounced before) without waiting a minute
    // for it, then Gus is sent to, and his page is the last.
    run_timers(host, 1);
    assert_eq!(recipients(host), ["ada@example.com", "gus@example.com"]);
    assert_eq!(stored(&world).text("status"), Some("sent"));
    assert!(host.timers().is_empty());
}

#[test]
fn the_batch_size_caps_each_run() {
    let world = world(Some(0));
    let host = &world.host;
    host.set_config(json!({"batch_size": 1, "default_throttle_per_minute": 1}));
    send(&world);
    assert_eq!(drain(host), 1);
    assert_eq!(host.sent().len(), 1);
    let next = host.timers()[0].at;
    assert_eq!(next, host.now() + 1, "throttle 0 on the campaign means no limit, whatever the default");
    run_timers(host, 1);
    assert_eq!(host.sent().len(), 2);
    assert_eq!(stored(&world).text("status"), Some("sent"));
}

#[test]
fn the_default_throttle_applies_to_campaigns_without_one() {
    let world = world(None);
    world.host.set_config(json!({"default_throttle_per_minute": 2}));
    send(&world);
    drain(&world.host);
    // A page of two: Ada, and Fay who is skipped; half a minute for one.
    assert_eq!(world.host.sent().len(), 1);
    assert_eq!(world.host.timers()[0].at, world.host.now() + 30_000);
}

#[test]
fn a_cancelled_campaign_sends_no_further_batch() {
    let world = world(Some(1));
    let host = &world.host;
    send(&world);
    drain(host);
    let cancelled = host.invoke(&Marketing, "cancel", [("campaign_id", Value::Id(world.campaign.id.clone()))]).unwrap();
    assert_eq!(cancelled.text("status"), Some("cancelled"));
    assert!(host.timers().is_empty());
    host.advance(600_000);
    run_timers(host, 0);
    assert_eq!(host.sent().len(), 1);
    let refused = host.invoke(&Marketing, "send", [("campaign_id", Value::Id(world.campaign.id.clone()))]).unwrap_err();
    assert!(refused.message().contains("is cancelled"), "{refused}");
}

#[test]
fn a_client_cancelling_through_an_update_stops_the_next_batch() {
    let world = world(Some(1));
    let host = &world.host;
    send(&world);
    drain(host);
    let campaign = stored(&world);
    host.write(
        &Marketing,
        Change::update("campaign", &campaign.id, campaign.fields.clone(), campaign.fields.clone().with("status", "cancelled")),
    )
    .unwrap();
    host.advance(60_000);
    run_timers(host, 0);
    assert_eq!(host.sent().len(), 1);
}

#[test]
fn clients_cannot_move_the_status_or_write_counters() {
    let world = world(None);
    let host = &world.host;
    let campaign = world.campaign.clone();
    let update = |fields: Fields| {
        host.write(&Marketing, Change::update("campaign", &campaign.id, campaign.fields.clone(), fields))
            .map_err(|error| error.to_string())
    };
    assert_eq!(
        update(campaign.fields.clone().with("status", "sending")).unwrap_err(),
        "invalid: status: changes through the send and cancel actions (clients may set cancelled)"
    );
    assert_eq!(
        update(campaign.fields.clone().with("sent_count", 9)).unwrap_err(),
        "invalid: sent_count: is written by the marketing plugin"
    );
    assert_eq!(
        update(campaign.fields.clone().with("throttle_per_minute", -1)).unwrap_err(),
        "invalid: throttle_per_minute: must be 0 (no limit) or more"
    );
    update(campaign.fields.clone().with("name", "Renamed")).unwrap();
    let created = host.write(&Marketing, Change::create("campaign", [("name", "X"), ("status", "sent")])).unwrap_err();
    assert_eq!(created.message(), "status: a new campaign is a draft; send it with the send action");
    // The plugin's own writes are not held to these rules.
    host.set_actor("plugin:marketing@0.1.0");
    update(campaign.fields.clone().with("status", "sent").with("sent_count", 3)).unwrap();
}

#[test]
fn send_refuses_an_incomplete_campaign() {
    let host = TestHost::new();
    let bare = host.write(&Marketing, Change::create("campaign", [("name", "Bare")])).unwrap();
    let error = host.invoke(&Marketing, "send", [("campaign_id", Value::Id(bare.id.clone()))]).unwrap_err();
    assert_eq!(error.message(), "segment_id: the campaign needs a segment");
    let missing = host.invoke(&Marketing, "send", [("campaign_id", Value::Id("01HZZZZZZZZZZZZZZZZZZZZZZZ".into()))]).unwrap_err();
    assert_eq!(missing.message(), "campaign_id: there is no campaign 01HZZZZZZZZZZZZZZZZZZZZZZZ");
    // A template with a merge field that no longer parses is reported by send.
    let segment = segment(&host, json!({}));
    let broken = host.insert("email_template", [("name", "B"), ("subject", "Hi {{contact.first_name"), ("html", "<p/>")]);
    let campaign = campaign(&host, &segment, &broken, None);
    let error = host.invoke(&Marketing, "send", [("campaign_id", Value::Id(campaign.id.clone()))]).unwrap_err();
    assert!(error.message().starts_with(&format!("template_id: template {}: subject: merge field", broken.id)), "{error}");
    assert_eq!(host.record("campaign", &campaign.id).unwrap().text("status"), Some("draft"));
}

#[test]
fn a_template_removed_while_sending_stops_the_campaign_with_the_reason() {
    let world = world(Some(1));
    let host = &world.host;
    send(&world);
    drain(host);
    let template_id = stored(&world).id("template_id").unwrap().to_owned();
    host.make_current();
    records::delete("email_template", &template_id).unwrap();
    host.advance(60_000);
    run_timers(host, 0);
    let campaign = stored(&world);
    assert_eq!(campaign.text("status"), Some("draft"));
    assert_eq!(campaign.text("last_error"), Some(format!("template_id: there is no email template {template_id}").as_str()));
    assert_eq!(host.sent().len(), 1);
    assert!(host.timers().is_empty());
}

#[test]
fn log_sent_adds_an_activity_and_an_event_per_message() {
    let world = world(None);
    world.host.set_config(json!({"log_sent": true}));
    send(&world);
    run_timers(&world.host, 1);
    let sent = emitted(&world.host, "email_sent");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["contact_id"], world.ada.id.as_str());
    assert_eq!(sent[0]["campaign_id"], world.campaign.id.as_str());
    let activities = world.host.records("activity");
    assert_eq!(activities.len(), 2);
    assert_eq!(activities[0].text("subject"), Some("Sent email: Spring news for Ada"));
    assert_eq!(activities[0].text("direction"), Some("outbound"));
}

#[test]
fn a_segment_filter_the_host_refuses_stops_the_campaign_with_the_reason() {
    let world = world(Some(1));
    let host = &world.host;
    send(&world);
    drain(host);
    // The filter stopped running (say a custom field it used was removed).
    let segment_id = stored(&world).id("segment_id").unwrap().to_owned();
    host.make_current();
    records::update("segment", &segment_id, [("filter", r#"{"email": {"near": "x"}}"#)], None).unwrap();
    host.advance(60_000);
    run_timers(host, 0);
    let campaign = stored(&world);
    assert_eq!(campaign.text("status"), Some("draft"));
    let reason = campaign.text("last_error").unwrap();
    assert!(reason.starts_with(&format!("segment_id: segment {segment_id}: filter: ")) && reason.contains("near"), "{reason}");
    // send reports the same before starting again.
    let refused = host.invoke(&Marketing, "send", [("campaign_id", Value::Id(world.campaign.id.clone()))]).unwrap_err();
    assert!(refused.message().starts_with(&format!("segment_id: segment {segment_id}: filter: ")), "{refused}");
}
