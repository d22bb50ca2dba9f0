//! Sequences: steps run one after another for each enrolled contact, each
//! after its delay, by a timer per enrolment (`enrollment:<id>`).
//!
//! - An email step sends its template (one send record per step and
//!   enrolment, as campaigns do); a contact without an email address or
//!   consent ends the enrolment (`unsubscribed` when `email_opt_in` is
//!   false, `not_emailable` otherwise).
//! - A task step creates an activity of kind `task` for the contact's
//!   owner, due `task_due_minutes` later.
//! - A wait step only waits its delay.
//!
//! Steps without a delay run in the same timer call. An enrolment ends
//! early when the contact replies (an activity of kind `email` with
//! direction `inbound` is created for it), unsubscribes (`email_opt_in`
//! becomes false) or gets a deal (a deal with its `contact_id` is created):
//! after-commit hooks end it at once, and each run checks the same before
//! its step, so a step never runs after a reply that was committed first.

use std::collections::BTreeSet;

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::{Deserialize, Serialize};
use crm_plugin_sdk::serde_json::{self, json};

use crate::config::Config;
use crate::merge::{self, Catalog, Values, with_system_fields};
use crate::objects::{ACTIVE, COMPLETED, ENROLLMENT, EXITED, SEQUENCE, STEP};
use crate::segments::{self, Segment};
use crate::sends::{self, CHUNK, Sender, Target};
use crate::templates::Template;
use crate::tracking::Links;

pub const TIMER_PREFIX: &str = "enrollment:";
/// How long due steps of a paused sequence, or a step that cannot run,
/// wait before they are looked at again.
pub const RECHECK_MS: i64 = 60 * 60 * 1000;
/// Steps one timer call runs at most (steps without a delay run together).
const STEPS_PER_RUN: usize = 20;
const MINUTE_MS: i64 = 60 * 1000;
pub const DEFAULT_TASK_SUBJECT: &str = "Follow up with {{contact.first_name|the contact}}";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default)]
struct Due {
    /// When the timer was scheduled (a new one must differ from it).
    at: i64,
}

fn schedule(enrollment_id: &str, at: i64) -> Result<()> {
    let payload = serde_json::to_vec(&Due { at })?;
    timers::schedule(&format!("{TIMER_PREFIX}{enrollment_id}"), at, payload)
}

fn delay_ms(step: &Record) -> i64 {
    step.int("delay_minutes").unwrap_or(0).max(0).saturating_mul(MINUTE_MS)
}

/// `<sequence id>:<contact id>`, unique among active enrolments.
pub fn active_key(sequence_id: &str, contact_id: &str) -> String {
    format!("{sequence_id}:{contact_id}")
}

/// The steps of a sequence in the order they run.
pub fn steps(sequence_id: &str) -> Result<Vec<Record>> {
    let filter = json!({"sequence_id": {"eq": sequence_id}}).to_string();
    let mut steps = Vec::new();
    let mut after = None;
    loop {
        let page = records::query(STEP, &filter, &["position", "id"], 500, after.as_deref())?;
        steps.extend(page.records);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(steps),
        }
    }
}

/// The step after `last_position` (the first one when none ran yet).
fn next_step(steps: &[Record], last_position: Option<i64>) -> Option<&Record> {
    steps.iter().find(|step| last_position.is_none_or(|last| step.int("position").unwrap_or(i64::MIN) > last))
}

fn live(object: &str, id: &str) -> Result<Option<Record>> {
    Ok(records::get(object, id)?.filter(|record| !record.deleted))
}

/// Enrols a contact. A contact already active in the sequence keeps that
/// enrolment: the answer is it, with `false`.
pub fn enroll(sequence_id: &str, contact_id: &str, source: &str) -> Result<(Record, bool)> {
    let sequence =
        live(SEQUENCE, sequence_id)?.ok_or_else(|| Error::msg(format!("sequence_id: there is no sequence {sequence_id}")))?;
    if sequence.text("status") == Some("archived") {
        return Err(Error::msg(format!("sequence_id: sequence {sequence_id} is archived")));
    }
    live("contact", contact_id)?.ok_or_else(|| Error::msg(format!("contact_id: there is no contact {contact_id}")))?;
    let key = active_key(sequence_id, contact_id);
    let by_key = json!({"active_key": {"eq": key}}).to_string();
    if let Some(existing) = records::first(ENROLLMENT, &by_key)? {
        return Ok((existing, false));
    }
    let now = clock::now();
    let at = now + steps(sequence_id)?.first().map_or(0, delay_ms);
    let enrollment = Fields::new()
        .with("sequence_id", Value::Id(sequence_id.to_owned()))
        .with("contact_id", Value::Id(contact_id.to_owned()))
        .with("status", ACTIVE)
        .with("active_key", key.as_str())
        .with("enrolled_at", now)
        .with("next_run_at", at)
        .with("source", source);
    let created = match records::create(ENROLLMENT, enrollment) {
        Ok(created) => created,
        Err(error) if error.is(ErrorCode::Conflict) => {
            return records::first(ENROLLMENT, &by_key)?.map(|existing| (existing, false)).ok_or(error);
        }
        Err(error) => return Err(error),
    };
    schedule(&created.id, at)?;
    Ok((created, true))
}

/// Ends an active enrolment (`completed`, or `exited` with a reason) and
/// emits `sequence_completed` or `sequence_exited`. Returns false if it was
/// not active any more.
pub fn finish(enrollment_id: &str, reason: Option<&str>) -> Result<bool> {
    for _ in 0..8 {
        let Some(enrollment) = live(ENROLLMENT, enrollment_id)? else { return Ok(false) };
        if enrollment.text("status") != Some(ACTIVE) {
            return Ok(false);
        }
        let update = Fields::new()
            .with("status", if reason.is_some() { EXITED } else { COMPLETED })
            .with("exit_reason", reason)
            .with("finished_at", clock::now())
            .with("next_run_at", Value::Null)
            .with("active_key", Value::Null);
        match records::update(ENROLLMENT, enrollment_id, update, Some(enrollment.version)) {
            Ok(_) => {}
            Err(error) if error.is(ErrorCode::Conflict) => continue,
            Err(error) if error.is_not_found() => return Ok(false),
            Err(error) => return Err(error),
        }
        timers::cancel(&format!("{TIMER_PREFIX}{enrollment_id}"))?;
        let payload = json!({
            "contact_id": enrollment.id("contact_id"),
            "sequence_id": enrollment.id("sequence_id"),
            "enrollment_id": enrollment_id,
            "reason": reason,
        });
        events::emit(if reason.is_some() { "sequence_exited" } else { "sequence_completed" }, &payload.to_string())?;
        return Ok(true);
    }
    Err(Error::msg(format!("sequence_enrollment {enrollment_id} kept changing; try again")))
}

/// Ends every active enrolment of a contact with `reason`; returns how many.
pub fn exit_contact(contact_id: &str, reason: &str) -> Result<usize> {
    let filter = json!({"contact_id": {"eq": contact_id}, "status": {"eq": ACTIVE}}).to_string();
    let active = records::query(ENROLLMENT, &filter, &[], 500, None)?.records;
    let mut ended = 0;
    for enrollment in active {
        if finish(&enrollment.id, Some(reason))? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Why the enrolment must end now, if it must: checked before each step,
/// so a reply or a deal committed before the step stops it even when the
/// hooks have not seen it yet.
fn exit_reason(enrollment: &Record, contact: &Record) -> Result<Option<&'static str>> {
    if contact.bool("email_opt_in") == Some(false) {
        return Ok(Some("unsubscribed"));
    }
    let since = enrollment.int("enrolled_at").unwrap_or(enrollment.created_at);
    let replies = json!({
        "contact_id": {"eq": contact.id},
        "kind": {"eq": "email"},
        "direction": {"eq": "inbound"},
        "created_at": {"gte": since},
    });
    if records::count("activity", &replies.to_string())? > 0 {
        return Ok(Some("replied"));
    }
    let deals = json!({"contact_id": {"eq": contact.id}, "created_at": {"gte": since}});
    if records::count("deal", &deals.to_string())? > 0 {
        return Ok(Some("deal_created"));
    }
    Ok(None)
}

/// Sets fields on an active enrolment; false if it stopped being active.
fn advance(enrollment_id: &str, fields: &Fields) -> Result<bool> {
    for _ in 0..8 {
        let Some(enrollment) = live(ENROLLMENT, enrollment_id)? else { return Ok(false) };
        if enrollment.text("status") != Some(ACTIVE) {
            return Ok(false);
        }
        match records::update(ENROLLMENT, enrollment_id, fields.clone(), Some(enrollment.version)) {
            Ok(_) => return Ok(true),
            Err(error) if error.is(ErrorCode::Conflict) => continue,
            Err(error) if error.is_not_found() => return Ok(false),
            Err(error) => return Err(error),
        }
    }
    Err(Error::msg(format!("sequence_enrollment {enrollment_id} kept changing; try again")))
}

/// What a step did.
enum Done {
    /// Go on with the next step.
    Next,
    /// The enrolment ended.
    Ended,
}

/// One timer run of an enrolment: its due step, and the steps after it
/// that have no delay.
pub fn run(ctx: &Ctx, config: &Config, enrollment_id: &str, payload: &[u8]) -> Result<()> {
    let fired: Due = if payload.is_empty() { Due::default() } else { serde_json::from_slice(payload).unwrap_or_default() };
    let Some(enrollment) = live(ENROLLMENT, enrollment_id)? else { return Ok(()) };
    if enrollment.text("status") != Some(ACTIVE) {
        return Ok(());
    }
    let (Some(sequence_id), Some(contact_id)) = (enrollment.id("sequence_id"), enrollment.id("contact_id")) else {
        finish(enrollment_id, Some("manual"))?;
        return Ok(());
    };
    let now = clock::now();
    if let Some(next) = enrollment.int("next_run_at")
        && next > now
    {
        // An early or repeated call (a replay): the step is not due yet.
        return schedule(enrollment_id, next);
    }
    let Some(sequence) = live(SEQUENCE, sequence_id)? else {
        finish(enrollment_id, Some("sequence_archived"))?;
        return Ok(());
    };
    match sequence.text("status").unwrap_or(ACTIVE) {
        "archived" => {
            finish(enrollment_id, Some("sequence_archived"))?;
            return Ok(());
        }
        "paused" => {
            let at = (now + RECHECK_MS).max(fired.at + 1);
            if advance(enrollment_id, &Fields::new().with("next_run_at", at))? {
                schedule(enrollment_id, at)?;
            }
            return Ok(());
        }
        _ => {}
    }
    let Some(contact) = live("contact", contact_id)? else {
        finish(enrollment_id, Some("contact_deleted"))?;
        return Ok(());
    };
    if let Some(reason) = exit_reason(&enrollment, &contact)? {
        finish(enrollment_id, Some(reason))?;
        return Ok(());
    }
    let steps = steps(sequence_id)?;
    let links = Links { base: config.routes_base(ctx) };
    let mut sender = Sender::new(config, &links, ctx.plugin());
    let mut last = enrollment.int("last_position");
    let mut since = enrollment.updated_at;
    for _ in 0..STEPS_PER_RUN {
        let Some(step) = next_step(&steps, last) else {
            finish(enrollment_id, None)?;
            return Ok(());
        };
        let done = match perform(&mut sender, step, &enrollment, &contact, since) {
            Ok(done) => done,
            Err(error) if error.code().is_none() => {
                // The step cannot run as configured (its template is gone or
                // names unknown fields): wait for a fix instead of failing
                // the timer over and over.
                warn!("enrolment {enrollment_id}: step {} cannot run: {error}", step.id);
                let at = (now + RECHECK_MS).max(fired.at + 1);
                let fields = Fields::new().with("next_run_at", at).with("last_error", error.to_string());
                if advance(enrollment_id, &fields)? {
                    schedule(enrollment_id, at)?;
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if let Done::Ended = done {
            return Ok(());
        }
        let position = step.int("position").unwrap_or(0);
        last = Some(position);
        let Some(following) = next_step(&steps, last) else {
            advance(enrollment_id, &Fields::new().with("last_position", position))?;
            finish(enrollment_id, None)?;
            return Ok(());
        };
        let delay = delay_ms(following);
        let at = (clock::now() + delay).max(fired.at + 1);
        let fields = Fields::new().with("last_position", position).with("next_run_at", at).with("last_error", Value::Null);
        if !advance(enrollment_id, &fields)? {
            return Ok(());
        }
        since = clock::now();
        if delay > 0 {
            return schedule(enrollment_id, at);
        }
    }
    // Many steps without delay: go on in the next call.
    let at = clock::now().max(fired.at + 1);
    schedule(enrollment_id, at)
}

/// Runs one step for the contact. `since` is when the enrolment last
/// moved: a task of the same subject created since then is this step's,
/// made by a run that did not finish.
fn perform(sender: &mut Sender<'_>, step: &Record, enrollment: &Record, contact: &Record, since: i64) -> Result<Done> {
    let sequence_id = enrollment.id("sequence_id").unwrap_or_default();
    match step.text("kind").unwrap_or("wait") {
        "email" => {
            if contact.text("email").is_none() || contact.bool("email_opt_in") != Some(true) {
                let reason = if contact.bool("email_opt_in") == Some(false) { "unsubscribed" } else { "not_emailable" };
                finish(&enrollment.id, Some(reason))?;
                return Ok(Done::Ended);
            }
            let template_id =
                step.id("template_id").ok_or_else(|| Error::msg(format!("step {}: template_id is empty", step.id)))?;
            let template = Template::load("template_id", template_id, &mut Catalog::default())?;
            let target = Target::step(sequence_id, &step.id, &enrollment.id);
            let key = target.key(&contact.id);
            let existing = sends::by_keys(std::slice::from_ref(&key))?.remove(&key);
            sender.send(&template, contact, &target, existing)?;
            Ok(Done::Next)
        }
        "task" => {
            create_task(step, contact, since)?;
            Ok(Done::Next)
        }
        _ => Ok(Done::Next),
    }
}

fn create_task(step: &Record, contact: &Record, since: i64) -> Result<()> {
    let fields = with_system_fields(contact);
    let values = Values { contact: &fields, company: None, unsubscribe_url: "" };
    let render = |text: &str| merge::parse(text).map(|parsed| parsed.render(&values, false)).map_err(Error::msg);
    let subject = render(step.text("task_subject").filter(|text| !text.trim().is_empty()).unwrap_or(DEFAULT_TASK_SUBJECT))?;
    let body = step.text("task_body").map(render).transpose()?;
    let earlier = json!({
        "contact_id": {"eq": contact.id},
        "kind": {"eq": "task"},
        "subject": {"eq": subject},
        "created_at": {"gte": since},
    });
    if records::count("activity", &earlier.to_string())? > 0 {
        return Ok(());
    }
    let due = clock::now() + step.int("task_due_minutes").unwrap_or(0).max(0).saturating_mul(MINUTE_MS);
    let task = Fields::new()
        .with("kind", "task")
        .with("subject", subject)
        .with("body", body)
        .with("due_at", due)
        .with("done", false)
        .with("contact_id", Value::Id(contact.id.clone()))
        .with("owner_id", contact.id("owner_id").map(|owner| Value::Id(owner.to_owned())));
    records::create("activity", task)?;
    Ok(())
}

/// Enrols the contacts of committed creates and updates that match a
/// segment flagged for automatic enrolment and were never enrolled in its
/// sequence.
pub fn enroll_from_segments(contact_ids: &[String]) -> Result<usize> {
    if contact_ids.is_empty() {
        return Ok(0);
    }
    let segments = segments::auto_enrolling()?;
    let mut enrolled = 0;
    for segment in &segments {
        let Some(sequence_id) = &segment.auto_enroll_sequence_id else { continue };
        for member in members(segment, contact_ids)? {
            let ever = json!({"contact_id": {"eq": member}, "sequence_id": {"eq": sequence_id}}).to_string();
            if records::count(ENROLLMENT, &ever)? > 0 {
                continue;
            }
            match enroll(sequence_id, &member, &format!("segment:{}", segment.id)) {
                Ok((_, true)) => enrolled += 1,
                Ok((_, false)) => {}
                // An archived or deleted sequence: nothing to enrol in.
                Err(error) if error.code().is_none() => {
                    debug!("segment {} does not enrol: {error}", segment.id);
                    break;
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(enrolled)
}

/// The contacts among `ids` that match the segment now.
fn members(segment: &Segment, ids: &[String]) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    for chunk in ids.chunks(CHUNK) {
        let filter = segments::all_of(&segment.filter, vec![json!({"id": {"in": chunk}})]).to_string();
        let page = match records::query("contact", &filter, &[], CHUNK as u32, None) {
            Ok(page) => page,
            Err(error) => {
                let error = segment.refused(error);
                if error.code().is_some() {
                    return Err(error);
                }
                // A filter that no longer runs enrols nobody; the other
                // segments still do.
                warn!("{error}; nobody is enrolled through it");
                return Ok(BTreeSet::new());
            }
        };
        found.extend(page.records.into_iter().map(|contact| contact.id));
    }
    Ok(found)
}

/// The before-write decision for a client's write of a step: an email step
/// needs a template; delays are not negative; the task texts' merge fields
/// exist.
pub fn judge_step(change: &Change, catalog: &mut Catalog) -> Result<Decision> {
    let after = change.after();
    if after.text("kind") == Some("email") && after.id("template_id").is_none() {
        return Ok(Decision::reject_field("template_id", "an email step needs a template"));
    }
    for field in ["delay_minutes", "task_due_minutes"] {
        if after.int(field).is_some_and(|minutes| minutes < 0) {
            return Ok(Decision::reject_field(field, "must be 0 or more"));
        }
    }
    let texts = [
        ("task_subject", after.text("task_subject").unwrap_or_default()),
        ("task_body", after.text("task_body").unwrap_or_default()),
    ];
    Ok(match merge::check_texts(&texts, catalog)? {
        Ok(_) => Decision::accept(),
        Err((field, message)) => Decision::reject_field(field, message),
    })
}
