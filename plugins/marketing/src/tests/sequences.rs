//! Sequences: steps with delays, tasks, exits and automatic enrolment.

use super::*;
use crate::sequences::RECHECK_MS;

const MINUTE: i64 = 60_000;
const OWNER: &str = "01HZY00000000000000000000A";

struct World {
    host: TestHost,
    ada: Record,
    sequence: Record,
    steps: Vec<Record>,
}

fn step(host: &TestHost, sequence: &Record, position: i64, kind: &str, delay: i64, extra: Fields) -> Record {
    let fields = Fields::new()
        .with("sequence_id", Value::Id(sequence.id.clone()))
        .with("position", position)
        .with("kind", kind)
        .with("delay_minutes", delay)
        .with_all(extra);
    host.write(&Marketing, Change::create("sequence_step", fields)).unwrap()
}

trait WithAll {
    fn with_all(self, other: Fields) -> Fields;
}

impl WithAll for Fields {
    fn with_all(mut self, other: Fields) -> Fields {
        self.merge(&other);
        self
    }
}

/// Email now, wait an hour, a task, then a second email a day later.
fn world() -> World {
    let host = TestHost::new();
    let ada =
        contact_with(&host, "Ada", Some("ada@example.com"), Some(true), Fields::new().with("owner_id", Value::Id(OWNER.into())));
    let sequence = host.write(&Marketing, Change::create("sequence", [("name", "Onboarding")])).unwrap();
    let first =
        template(&host, "Welcome {{contact.first_name}}", "<p>Welcome</p><a href=\"https://example.com/start\">Start</a>");
    let second = template(&host, "How is it going?", "<p>Checking in</p>");
    let steps = vec![
        step(&host, &sequence, 10, "email", 0, Fields::new().with("template_id", Value::Id(first.id.clone()))),
        step(&host, &sequence, 20, "wait", 60, Fields::new()),
        step(
            &host,
            &sequence,
            30,
            "task",
            0,
            Fields::new()
                .with("task_subject", "Call {{contact.first_name}}")
                .with("task_body", "About {{contact.email}}")
                .with("task_due_minutes", 30),
        ),
        step(&host, &sequence, 40, "email", 24 * 60, Fields::new().with("template_id", Value::Id(second.id.clone()))),
    ];
    World { host, ada, sequence, steps }
}

fn enroll(world: &World, contact: &Record) -> Fields {
    let input = [("sequence_id", Value::Id(world.sequence.id.clone())), ("contact_id", Value::Id(contact.id.clone()))];
    world.host.invoke(&Marketing, "enroll", input).unwrap()
}

fn enrollment(host: &TestHost) -> Record {
    let all = host.records("sequence_enrollment");
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

fn subjects(host: &TestHost) -> Vec<String> {
    host.sent().into_iter().map(|sent| sent.message.subject).collect()
}

#[test]
fn steps_run_in_order_after_their_delays() {
    let world = world();
    let host = &world.host;
    let enrolled = enroll(&world, &world.ada);
    assert_eq!(enrolled.bool("created"), Some(true));
    assert_eq!(enrolled.text("status"), Some("active"));
    let start = host.now();
    run_timers(host, 0);
    assert_eq!(subjects(host), ["Welcome Ada"]);
    let current = enrollment(host);
    assert_eq!(current.int("last_position"), Some(10));
    assert_eq!(current.int("next_run_at"), Some(start + 60 * MINUTE));
    assert!(host.records("activity").is_empty());

    host.advance(60 * MINUTE);
    run_timers(host, 0);
    let tasks = host.records("activity");
    assert_eq!(tasks.len(), 1, "the wait, then the task at once");
    assert_eq!(tasks[0].text("kind"), Some("task"));
    assert_eq!(tasks[0].text("subject"), Some("Call Ada"));
    assert_eq!(tasks[0].text("body"), Some("About ada@example.com"));
    assert_eq!(tasks[0].id("owner_id"), Some(OWNER), "for the contact's owner");
    assert_eq!(tasks[0].id("contact_id"), Some(world.ada.id.as_str()));
    assert_eq!(tasks[0].int("due_at"), Some(host.now() + 30 * MINUTE));
    assert_eq!(tasks[0].bool("done"), Some(false));
    assert_eq!(subjects(host).len(), 1);

    host.advance(24 * 60 * MINUTE - 1);
    run_timers(host, 0);
    assert_eq!(subjects(host).len(), 1);
    host.advance(1);
    run_timers(host, 0);
    assert_eq!(subjects(host), ["Welcome Ada", "How is it going?"]);
    let done = enrollment(host);
    assert_eq!(done.text("status"), Some("completed"));
    assert_eq!(done.int("finished_at"), Some(host.now()));
    assert_eq!(done.text("active_key"), None, "free for a later enrolment");
    assert!(host.timers().is_empty());
    let completed = emitted(host, "sequence_completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["contact_id"], world.ada.id.as_str());

    let sends = host.records("campaign_send");
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].id("sequence_step_id"), Some(world.steps[0].id.as_str()));
    assert_eq!(sends[0].id("sequence_id"), Some(world.sequence.id.as_str()));
    assert_eq!(sends[0].text("key"), Some(format!("s:{}:{}", world.steps[0].id, done.id).as_str()));
    assert_eq!(sends[0].id("campaign_id"), None);
    assert_eq!(host.record("sequence_step", &world.steps[0].id).unwrap().int("opened_count"), None);
}

#[test]
fn a_repeated_run_does_not_repeat_an_email_or_a_task() {
    let world = world();
    let host = &world.host;
    enroll(&world, &world.ada);
    let first = host.timers()[0].clone();
    run_timers(host, 0);
    // The same timer fired again, as a retry would (the enrolment moved on).
    host.on_timer(&Marketing, &first.key, &first.payload).unwrap();
    assert_eq!(subjects(host).len(), 1);

    // A run that created the task but did not record the step: the retry
    // finds the task.
    host.advance(60 * MINUTE);
    let due = host.timers()[0].clone();
    run_timers(host, 0);
    let current = enrollment(host);
    host.make_current();
    records::update("sequence_enrollment", &current.id, [("last_position", 20)], None).unwrap();
    host.on_timer(&Marketing, &due.key, &due.payload).unwrap();
    assert_eq!(host.records("activity").len(), 1, "{:#?}", host.records("activity"));
}

#[test]
fn a_reply_ends_the_enrolment() {
    let world = world();
    let host = &world.host;
    enroll(&world, &world.ada);
    run_timers(host, 0);
    host.take_events();
    host.insert(
        "activity",
        [("kind", Value::from("email")), ("direction", "inbound".into()), ("contact_id", Value::Id(world.ada.id.clone()))],
    );
    deliver(host);
    let ended = enrollment(host);
    assert_eq!(ended.text("status"), Some("exited"));
    assert_eq!(ended.text("exit_reason"), Some("replied"));
    assert!(host.timers().is_empty());
    host.advance(30 * 24 * 60 * MINUTE);
    run_timers(host, 0);
    assert_eq!(subjects(host).len(), 1);
    assert!(host.records("activity").iter().all(|activity| activity.text("kind") != Some("task")));
    let exited = emitted(host, "sequence_exited");
    assert_eq!(exited[0]["reason"], "replied");
}

#[test]
fn a_reply_not_yet_delivered_to_the_hook_still_stops_the_next_step() {
    let world = world();
    let host = &world.host;
    enroll(&world, &world.ada);
    run_timers(host, 0);
    host.advance(MINUTE);
    host.insert(
        "activity",
        [("kind", Value::from("email")), ("direction", "inbound".into()), ("contact_id", Value::Id(world.ada.id.clone()))],
    );
    host.advance(60 * MINUTE);
    run_timers(host, 0);
    assert_eq!(enrollment(host).text("exit_reason"), Some("replied"));
    assert!(host.records("activity").iter().all(|activity| activity.text("kind") != Some("task")));
}

#[test]
fn outbound_emails_and_other_activities_do_not_end_it() {
    let world = world();
    let host = &world.host;
    enroll(&world, &world.ada);
    run_timers(host, 0);
    host.take_events();
    for (kind, direction) in [("email", Some("outbound")), ("call", Some("inbound")), ("email", None)] {
        let fields =
            Fields::new().with("kind", kind).with("direction", direction).with("contact_id", Value::Id(world.ada.id.clone()));
        host.insert("activity", fields);
    }
    deliver(host);
    host.advance(60 * MINUTE);
    run_timers(host, 0);
    assert_eq!(enrollment(host).text("status"), Some("active"));
}

#[test]
fn a_new_deal_or_an_unsubscribe_ends_the_enrolment() {
    let world = world();
    let host = &world.host;
    enroll(&world, &world.ada);
    host.take_events();
    host.insert("deal", [("name", Value::from("Big")), ("contact_id", Value::Id(world.ada.id.clone()))]);
    deliver(host);
    assert_eq!(enrollment(host).text("exit_reason"), Some("deal_created"));

    let bob = contact(host, "Bob", Some("bob@example.com"), Some(true));
    enroll(&world, &bob);
    host.take_events();
    host.make_current();
    records::update("contact", &bob.id, [("email_opt_in", false)], None).unwrap();
    deliver(host);
    let bobs =
        host.records("sequence_enrollment").into_iter().find(|record| record.id("contact_id") == Some(bob.id.as_str())).unwrap();
    assert_eq!((bobs.text("status"), bobs.text("exit_reason")), (Some("exited"), Some("unsubscribed")));
}

#[test]
fn the_unsubscribe_link_of_a_sequence_email_ends_it_and_counts_on_the_step() {
    let world = world();
    let host = &world.host;
    enroll(&world, &world.ada);
    run_timers(host, 0);
    let html = host.sent()[0].message.html.clone().unwrap();
    assert_eq!(host.http(&Marketing, get(&link(&html, "/open"))).unwrap().status, 200);
    assert_eq!(host.http(&Marketing, get(&link(&html, "/unsubscribe"))).unwrap().status, 200);
    let ended = enrollment(host);
    assert_eq!(ended.text("exit_reason"), Some("unsubscribed"));
    let contact = host.record("contact", &world.ada.id).unwrap();
    assert_eq!(contact.text("email_opt_in_source"), Some(format!("unsubscribe link (sequence {})", world.sequence.id).as_str()));
    let step = host.record("sequence_step", &world.steps[0].id).unwrap();
    assert_eq!((step.int("opened_count"), step.int("unsubscribed_count")), (Some(1), Some(1)));
}

#[test]
fn a_contact_that_cannot_be_emailed_leaves_at_the_email_step() {
    let world = world();
    let host = &world.host;
    let dee = contact(host, "Dee", Some("dee@example.com"), None);
    enroll(&world, &dee);
    run_timers(host, 0);
    assert!(host.sent().is_empty());
    assert_eq!(enrollment(host).text("exit_reason"), Some("not_emailable"));
}

#[test]
fn enrolling_twice_keeps_one_active_enrolment_and_unenroll_ends_it() {
    let world = world();
    let host = &world.host;
    let first = enroll(&world, &world.ada);
    let second = enroll(&world, &world.ada);
    assert_eq!(second.bool("created"), Some(false));
    assert_eq!(second.id("enrollment_id"), first.id("enrollment_id"));
    let ended = host.invoke(&Marketing, "unenroll", [("enrollment_id", first.get("enrollment_id").unwrap().clone())]).unwrap();
    assert_eq!((ended.bool("ended"), ended.text("status")), (Some(true), Some("exited")));
    assert_eq!(enrollment(host).text("exit_reason"), Some("manual"));
    let again = host.invoke(&Marketing, "unenroll", [("enrollment_id", first.get("enrollment_id").unwrap().clone())]).unwrap();
    assert_eq!(again.bool("ended"), Some(false));
    // A finished enrolment does not stop a new one.
    assert_eq!(enroll(&world, &world.ada).bool("created"), Some(true));
}

#[test]
fn enroll_checks_the_sequence_and_contact() {
    let world = world();
    let host = &world.host;
    let missing =
        [("sequence_id", Value::Id(world.sequence.id.clone())), ("contact_id", Value::Id("01HZZZZZZZZZZZZZZZZZZZZZZZ".into()))];
    assert_eq!(
        host.invoke(&Marketing, "enroll", missing).unwrap_err().message(),
        "contact_id: there is no contact 01HZZZZZZZZZZZZZZZZZZZZZZZ"
    );
    host.make_current();
    records::update("sequence", &world.sequence.id, [("status", "archived")], None).unwrap();
    let archived = host.invoke(
        &Marketing,
        "enroll",
        [("sequence_id", Value::Id(world.sequence.id.clone())), ("contact_id", Value::Id(world.ada.id.clone()))],
    );
    assert!(archived.unwrap_err().message().ends_with("is archived"));
}

#[test]
fn a_paused_sequence_holds_due_steps_and_an_archived_one_ends_enrolments() {
    let world = world();
    let host = &world.host;
    host.make_current();
    records::update("sequence", &world.sequence.id, [("status", "paused")], None).unwrap();
    enroll(&world, &world.ada);
    run_timers(host, 0);
    assert!(host.sent().is_empty());
    assert_eq!(host.timers()[0].at, host.now() + RECHECK_MS);
    host.make_current();
    records::update("sequence", &world.sequence.id, [("status", "active")], None).unwrap();
    host.advance(RECHECK_MS);
    run_timers(host, 0);
    assert_eq!(subjects(host), ["Welcome Ada"]);
    host.make_current();
    records::update("sequence", &world.sequence.id, [("status", "archived")], None).unwrap();
    host.advance(60 * MINUTE);
    run_timers(host, 0);
    assert_eq!(enrollment(host).text("exit_reason"), Some("sequence_archived"));
}

#[test]
fn a_step_whose_template_is_gone_waits_with_the_reason() {
    let world = world();
    let host = &world.host;
    host.make_current();
    records::delete("email_template", world.steps[0].id("template_id").unwrap()).unwrap();
    enroll(&world, &world.ada);
    run_timers(host, 0);
    let waiting = enrollment(host);
    assert_eq!(waiting.text("status"), Some("active"));
    assert!(waiting.text("last_error").unwrap().contains("there is no email template"), "{waiting:?}");
    assert_eq!(host.timers()[0].at, host.now() + RECHECK_MS);
    assert!(host.logged("cannot run"));
}

#[test]
fn contacts_entering_a_flagged_segment_are_enrolled_once() {
    let world = world();
    let host = &world.host;
    let flagged = segment(host, json!({"title": {"contains": "founder"}}));
    host.make_current();
    records::update("segment", &flagged.id, [("auto_enroll_sequence_id", Value::Id(world.sequence.id.clone()))], None).unwrap();
    host.take_events();
    let zed = contact_with(host, "Zed", Some("zed@example.com"), Some(true), Fields::new().with("title", "Founder"));
    contact(host, "Yan", Some("yan@example.com"), Some(true));
    deliver(host);
    let enrolled = enrollment(host);
    assert_eq!(enrolled.id("contact_id"), Some(zed.id.as_str()));
    assert_eq!(enrolled.text("source"), Some(format!("segment:{}", flagged.id).as_str()));

    // Ended, then updated while still matching: not enrolled again.
    host.invoke(&Marketing, "unenroll", [("enrollment_id", Value::Id(enrolled.id.clone()))]).unwrap();
    host.take_events();
    host.make_current();
    records::update("contact", &zed.id, [("title", "Founder & CEO")], None).unwrap();
    deliver(host);
    assert_eq!(host.records("sequence_enrollment").len(), 1);
}

#[test]
fn clients_cannot_create_enrolments_or_incomplete_steps() {
    let world = world();
    let host = &world.host;
    let direct = host.write(
        &Marketing,
        Change::create(
            "sequence_enrollment",
            [("sequence_id", Value::Id(world.sequence.id.clone())), ("contact_id", Value::Id(world.ada.id.clone()))],
        ),
    );
    assert!(direct.unwrap_err().message().contains("marketingEnroll"));
    let save = |fields: Fields| host.write(&Marketing, Change::create("sequence_step", fields)).unwrap_err().message().to_owned();
    let base = Fields::new().with("sequence_id", Value::Id(world.sequence.id.clone())).with("position", 50);
    assert_eq!(save(base.clone().with("kind", "email")), "template_id: an email step needs a template");
    assert_eq!(save(base.clone().with("kind", "wait").with("delay_minutes", -5)), "delay_minutes: must be 0 or more");
    assert!(
        save(base.clone().with("kind", "task").with("task_subject", "Call {{deal.name}}"))
            .starts_with("task_subject: unknown merge field")
    );
}

#[test]
fn a_flagged_segment_whose_filter_no_longer_runs_enrols_nobody_and_fails_nothing() {
    let world = world();
    let host = &world.host;
    host.insert(
        "segment",
        Fields::new()
            .with("name", "Broken")
            .with("filter", r#"{"first_name": {"near": "x"}}"#)
            .with("auto_enroll_sequence_id", Value::Id(world.sequence.id.clone())),
    );
    host.take_events();
    contact(host, "Zed", Some("zed@example.com"), Some(true));
    deliver(host);
    assert!(host.records("sequence_enrollment").is_empty());
    assert!(host.logged("nobody is enrolled through it"));
}
