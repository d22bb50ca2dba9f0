//! Campaigns: one template sent once to every consenting member of a
//! segment, in throttled batches run by a timer.
//!
//! `send` checks the campaign, its segment and its template (an unknown
//! merge field stops it here), marks it `sending` and schedules the timer
//! `campaign:<id>`. Each timer run walks the next page of eligible members
//! (the segment's filter with an email address and `email_opt_in` true, in
//! id order, the cursor in the timer's payload), sends to those without a
//! send record for the campaign (see [`crate::sends`]), counts what it sent
//! and schedules the next run: right away without a throttle, otherwise
//! when the throttle allows the next batch (`60 s × sent / per minute`
//! after this one). After the last page the campaign is `sent`.
//!
//! A run that fails is retried by the kernel from the same cursor and skips
//! whoever has a send record; a run replayed from the dead-letter list has
//! no payload and starts from the first page, skipping the same way.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::{Deserialize, Serialize};
use crm_plugin_sdk::serde_json;

use crate::config::Config;
use crate::counters;
use crate::merge::Catalog;
use crate::objects::{CAMPAIGN, CANCELLED, DRAFT, SENDING, SENT};
use crate::segments::{self, Segment};
use crate::sends::{self, Outcome, Sender, Target};
use crate::templates::Template;
use crate::tracking::Links;

pub const TIMER_PREFIX: &str = "campaign:";

/// Where the next run starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default)]
pub struct Progress {
    /// The query cursor after the last page sent; none for the first page.
    pub after: Option<String>,
    /// When this run was scheduled (the kernel removes a fired timer only
    /// if it still has that time, so the next must differ).
    pub at: i64,
}

fn live(id: &str) -> Result<Record> {
    records::get(CAMPAIGN, id)?
        .filter(|record| !record.deleted)
        .ok_or_else(|| Error::msg(format!("campaign_id: there is no campaign {id}")))
}

/// The throttle of a campaign in messages per minute; 0 is no limit.
pub fn throttle(config: &Config, campaign: &Record) -> u32 {
    match campaign.int("throttle_per_minute") {
        Some(per_minute) => per_minute.clamp(0, i64::from(u32::MAX)) as u32,
        None => config.default_throttle_per_minute,
    }
}

/// Sets `fields` on the campaign, retrying when it moved on meanwhile.
fn update(id: &str, fields: impl Fn(&Record) -> Option<Fields>) -> Result<Option<Record>> {
    for _ in 0..8 {
        let campaign = live(id)?;
        let Some(update) = fields(&campaign) else { return Ok(Some(campaign)) };
        match records::update(CAMPAIGN, id, update, Some(campaign.version)) {
            Ok(record) => return Ok(Some(record)),
            Err(error) if error.is(ErrorCode::Conflict) => continue,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        }
    }
    Err(Error::msg(format!("campaign {id} kept changing; try again")))
}

/// The `send` action. A draft starts sending; a campaign that is sending
/// keeps going (nothing is scheduled twice); a sent campaign is walked
/// again, which reaches members who joined since and nobody twice.
pub fn send(campaign_id: &str) -> Result<Fields> {
    let campaign = live(campaign_id)?;
    let status = campaign.text("status").unwrap_or(DRAFT);
    if status == CANCELLED {
        return Err(Error::msg(format!("campaign {campaign_id} is cancelled; a cancelled campaign is not sent")));
    }
    if status == SENDING {
        return Ok(output(&campaign));
    }
    let segment_id = campaign.id("segment_id").ok_or("segment_id: the campaign needs a segment")?;
    let template_id = campaign.id("template_id").ok_or("template_id: the campaign needs a template")?;
    let segment = Segment::load("segment_id", segment_id)?;
    Template::load("template_id", template_id, &mut Catalog::default())?;
    let segment_count = segment.count()? as i64;
    let eligible_count = segment.count_eligible()? as i64;
    let now = clock::now();
    // Set when this call starts the campaign (not a concurrent one).
    let starts = std::cell::Cell::new(false);
    let started = update(campaign_id, |campaign| {
        starts.set(campaign.text("status") != Some(SENDING));
        if !starts.get() {
            return None;
        }
        Some(
            Fields::new()
                .with("status", SENDING)
                .with("started_at", campaign.int("started_at").unwrap_or(now))
                .with("finished_at", Value::Null)
                .with("last_error", Value::Null)
                .with("segment_count", segment_count)
                .with("eligible_count", eligible_count),
        )
    })?
    .ok_or_else(|| Error::msg(format!("campaign_id: there is no campaign {campaign_id}")))?;
    if starts.get() && started.text("status") == Some(SENDING) {
        schedule(campaign_id, now, &Progress { after: None, at: now })?;
    }
    Ok(output(&started))
}

/// The `cancel` action: no further batch is sent.
pub fn cancel(campaign_id: &str) -> Result<Fields> {
    let cancelled = update(campaign_id, |campaign| {
        (campaign.text("status") != Some(SENT) && campaign.text("status") != Some(CANCELLED))
            .then(|| Fields::new().with("status", CANCELLED).with("finished_at", clock::now()))
    })?
    .ok_or_else(|| Error::msg(format!("campaign_id: there is no campaign {campaign_id}")))?;
    timers::cancel(&format!("{TIMER_PREFIX}{campaign_id}"))?;
    Ok(output(&cancelled))
}

fn schedule(campaign_id: &str, at: i64, progress: &Progress) -> Result<()> {
    let payload = serde_json::to_vec(&Progress { at, ..progress.clone() })?;
    timers::schedule(&format!("{TIMER_PREFIX}{campaign_id}"), at, payload)
}

/// What the send and cancel actions answer.
pub fn output(campaign: &Record) -> Fields {
    Fields::new()
        .with("campaign_id", Value::Id(campaign.id.clone()))
        .with("status", campaign.text("status").unwrap_or(DRAFT))
        .with("segment_count", campaign.int("segment_count"))
        .with("eligible_count", campaign.int("eligible_count"))
        .with("sent_count", campaign.int("sent_count"))
}

/// One timer run: the next batch.
pub fn run_batch(ctx: &Ctx, config: &Config, campaign_id: &str, payload: &[u8]) -> Result<()> {
    let progress: Progress =
        if payload.is_empty() { Progress::default() } else { serde_json::from_slice(payload).unwrap_or_default() };
    let Some(campaign) = records::get(CAMPAIGN, campaign_id)?.filter(|record| !record.deleted) else {
        info!("campaign {campaign_id} is gone; its sending stops");
        return Ok(());
    };
    if campaign.text("status") != Some(SENDING) {
        return Ok(());
    }
    // A segment or template that went away or broke stops the campaign
    // with the reason on it; `send` resumes once it is fixed.
    let prepared = (|| -> Result<(Segment, Template)> {
        let segment_id = campaign.id("segment_id").ok_or("segment_id: the campaign has no segment")?;
        let template_id = campaign.id("template_id").ok_or("template_id: the campaign has no template")?;
        Ok((Segment::load("segment_id", segment_id)?, Template::load("template_id", template_id, &mut Catalog::default())?))
    })();
    let (segment, template) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return stop_or_retry(campaign_id, error),
    };
    let per_minute = throttle(config, &campaign);
    let limit = if per_minute == 0 { config.batch_size } else { config.batch_size.min(per_minute) };
    let filter = segments::eligible(&segment.filter).to_string();
    let page = match records::query("contact", &filter, &[], limit, progress.after.as_deref()) {
        Ok(page) => page,
        Err(error) => return stop_or_retry(campaign_id, segment.refused(error)),
    };

    let target = Target::campaign(campaign_id);
    let keys: Vec<String> = page.records.iter().map(|contact| target.key(&contact.id)).collect();
    let mut existing = sends::by_keys(&keys)?;
    let ids: Vec<String> = page.records.iter().map(|contact| contact.id.clone()).collect();
    let bounced = if config.skip_bounced { sends::bounced(&ids)? } else { Default::default() };
    let links = Links { base: config.routes_base(ctx) };
    let mut sender = Sender::new(config, &links, ctx.plugin());
    let mut sent = 0i64;
    for (contact, key) in page.records.iter().zip(&keys) {
        let previous = existing.remove(key);
        if previous.is_none() && bounced.contains(&contact.id) {
            continue;
        }
        if let Outcome::Sent { .. } = sender.send(&template, contact, &target, previous)? {
            sent += 1;
        }
    }

    let now = clock::now();
    match page.next {
        Some(next) => {
            if sent > 0 {
                counters::bump(CAMPAIGN, campaign_id, &[("sent_count", sent)])?;
            }
            let pause = if per_minute == 0 { 0 } else { (60_000 * sent + i64::from(per_minute) - 1) / i64::from(per_minute) };
            let at = (now + pause).max(progress.at + 1);
            schedule(campaign_id, at, &Progress { after: Some(next), at })?;
        }
        None => {
            // The last page: the exact counts from the send records.
            let counts = counters::count("campaign_id", campaign_id)?;
            update(campaign_id, |campaign| {
                (campaign.text("status") == Some(SENDING)).then(|| counts.clone().with("status", SENT).with("finished_at", now))
            })?;
        }
    }
    Ok(())
}

/// Ends a run that cannot go on. The plugin's own errors (a segment or
/// template gone or broken) put the campaign back to `draft` with the
/// reason in `last_error`, where `send` resumes it once fixed; host errors
/// fail the run, so the kernel retries it.
fn stop_or_retry(campaign_id: &str, error: Error) -> Result<()> {
    if error.code().is_some() {
        return Err(error);
    }
    warn!("campaign {campaign_id} stopped: {error}");
    let message = error.to_string();
    update(campaign_id, |_| Some(Fields::new().with("status", DRAFT).with("last_error", message.as_str())))?;
    Ok(())
}

/// The campaign fields clients may not write: the plugin keeps them.
const MANAGED: [&str; 12] = [
    "segment_count",
    "eligible_count",
    "started_at",
    "finished_at",
    "last_error",
    "sent_count",
    "delivered_count",
    "opened_count",
    "clicked_count",
    "unsubscribed_count",
    "bounced_count",
    "failed_count",
];

/// The before-write decision for a client's write of a campaign: a new
/// campaign is a draft; the status moves only through `send` and `cancel`
/// (a client may set `cancelled`); counters and times are the plugin's;
/// the throttle is not negative.
pub fn judge(change: &Change) -> Decision {
    let after = change.after();
    if let Some(throttle) = after.int("throttle_per_minute")
        && throttle < 0
    {
        return Decision::reject_field("throttle_per_minute", "must be 0 (no limit) or more");
    }
    for field in MANAGED {
        if change.changed(field) {
            return Decision::reject_field(field, "is written by the marketing plugin");
        }
    }
    let before = change.before().and_then(|before| before.text("status")).unwrap_or(DRAFT);
    if change.op() != Op::Create && !change.changed("status") {
        return Decision::accept();
    }
    match (change.op(), after.text("status")) {
        (Op::Create, None) => Decision::patch([("status", DRAFT)]),
        (Op::Create, Some(DRAFT)) => Decision::accept(),
        (Op::Create, Some(_)) => Decision::reject_field("status", "a new campaign is a draft; send it with the send action"),
        (_, Some(CANCELLED)) if before != SENT => Decision::accept(),
        (_, Some(CANCELLED)) => Decision::reject_field("status", "a sent campaign cannot be cancelled"),
        _ => Decision::reject_field("status", "changes through the send and cancel actions (clients may set cancelled)"),
    }
}
