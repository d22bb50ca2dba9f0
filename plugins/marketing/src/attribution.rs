//! Attribution of won deals to campaigns.
//!
//! The rule, exactly:
//!
//! 1. A deal is **won** when its `stage` is the key of a pipeline stage with
//!    `is_won` true — of the deal's own pipeline when it has a
//!    `pipeline_id`, of any pipeline otherwise.
//! 2. It was won at the end of its `close_date` (23:59:59.999 UTC) when it
//!    has one, else at its `updated_at`.
//! 3. Its contact (`contact_id`) **engaged** with a campaign when a send
//!    record of that campaign to that contact has its first open
//!    (`opened_at`) or first click (`clicked_at`) within the window: at or
//!    after `won at − window_days × 24 h` and at or before `won at`.
//! 4. The deal's `amount` (none counts as 0) is split **equally** between
//!    the campaigns its contact engaged with; a deal without any gets
//!    nothing attributed.
//!
//! Sums are rounded to cents only in the answer. Sequence emails are not
//! campaigns and are not attributed.

use std::collections::{BTreeMap, BTreeSet};

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{Value as Json, json};

use crate::objects::{CAMPAIGN, SEND};
use crate::sends::CHUNK;

pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The last millisecond (UTC) of a `YYYY-MM-DD` date.
pub fn end_of_day(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some((days_from_civil(year, month, day) + 1) * DAY_MS - 1)
}

/// When a deal was won (rule 2).
pub fn won_at(deal: &Record) -> i64 {
    deal.text("close_date").and_then(end_of_day).unwrap_or(deal.updated_at)
}

/// What the action may narrow the deals to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scope {
    pub window_days: i64,
    /// Only deals won at or after this time.
    pub won_from: Option<i64>,
    /// Only deals won at or before this time.
    pub won_to: Option<i64>,
}

/// The won stages: keys per pipeline, and keys of any pipeline.
struct WonStages {
    by_pipeline: BTreeSet<(String, String)>,
    keys: BTreeSet<String>,
}

impl WonStages {
    fn read() -> Result<WonStages> {
        let filter = json!({"is_won": {"eq": true}}).to_string();
        let mut stages = WonStages { by_pipeline: BTreeSet::new(), keys: BTreeSet::new() };
        let mut after = None;
        loop {
            let page = records::query("pipeline_stage", &filter, &[], 500, after.as_deref())?;
            for stage in &page.records {
                let Some(key) = stage.text("key") else { continue };
                stages.keys.insert(key.to_owned());
                if let Some(pipeline) = stage.id("pipeline_id") {
                    stages.by_pipeline.insert((pipeline.to_owned(), key.to_owned()));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(stages),
            }
        }
    }

    fn won(&self, deal: &Record) -> bool {
        let Some(stage) = deal.text("stage") else { return false };
        match deal.id("pipeline_id") {
            Some(pipeline) => self.by_pipeline.contains(&(pipeline.to_owned(), stage.to_owned())),
            None => self.keys.contains(stage),
        }
    }
}

/// The campaigns a contact engaged with between `from` and `to` (rule 3).
fn engaged(sends: &[Record], from: i64, to: i64) -> BTreeSet<String> {
    let within = |time: Option<i64>| time.is_some_and(|time| (from..=to).contains(&time));
    sends
        .iter()
        .filter(|send| within(send.int("opened_at")) || within(send.int("clicked_at")))
        .filter_map(|send| send.id("campaign_id").map(str::to_owned))
        .collect()
}

/// The campaign sends of a contact that were opened or clicked.
fn engaged_sends(contact_id: &str) -> Result<Vec<Record>> {
    let filter = json!({
        "contact_id": {"eq": contact_id},
        "campaign_id": {"isNull": false},
        "or": [{"opened_at": {"isNull": false}}, {"clicked_at": {"isNull": false}}],
    })
    .to_string();
    let mut sends = Vec::new();
    let mut after = None;
    loop {
        let page = records::query(SEND, &filter, &[], 500, after.as_deref())?;
        sends.extend(page.records);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(sends),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Credit {
    deals: i64,
    amount: f64,
}

fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// Runs the attribution (the `attribution` action).
pub fn attribute(scope: &Scope) -> Result<Fields> {
    let stages = WonStages::read()?;
    let keys: Vec<&String> = stages.keys.iter().collect();
    let window = scope.window_days.saturating_mul(DAY_MS);
    let mut won_deals = 0i64;
    let mut won_amount = 0.0;
    let mut attributed_deals = 0i64;
    let mut attributed_amount = 0.0;
    let mut credit: BTreeMap<String, Credit> = BTreeMap::new();
    let mut sends_of: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for chunk in keys.chunks(CHUNK) {
        let filter = json!({"stage": {"in": chunk}}).to_string();
        let mut after = None;
        loop {
            let page = records::query("deal", &filter, &[], 500, after.as_deref())?;
            for deal in page.records.iter().filter(|deal| stages.won(deal)) {
                let won = won_at(deal);
                if scope.won_from.is_some_and(|from| won < from) || scope.won_to.is_some_and(|to| won > to) {
                    continue;
                }
                let amount = deal.float("amount").unwrap_or(0.0);
                won_deals += 1;
                won_amount += amount;
                let Some(contact) = deal.id("contact_id") else { continue };
                if !sends_of.contains_key(contact) {
                    sends_of.insert(contact.to_owned(), engaged_sends(contact)?);
                }
                let campaigns = engaged(&sends_of[contact], won - window, won);
                if campaigns.is_empty() {
                    continue;
                }
                attributed_deals += 1;
                attributed_amount += amount;
                let share = amount / campaigns.len() as f64;
                for campaign in campaigns {
                    let entry = credit.entry(campaign).or_default();
                    entry.deals += 1;
                    entry.amount += share;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    let mut campaigns: Vec<(String, Credit)> = credit.into_iter().collect();
    campaigns.sort_by(|a, b| b.1.amount.total_cmp(&a.1.amount).then_with(|| a.0.cmp(&b.0)));
    let mut listed = Vec::with_capacity(campaigns.len());
    for (id, credit) in campaigns {
        let name = records::get(CAMPAIGN, &id)?.and_then(|campaign| campaign.text("name").map(str::to_owned));
        listed.push(json!({"campaign_id": id, "name": name, "deals": credit.deals, "amount": cents(credit.amount)}));
    }
    Ok(Fields::new()
        .with("won_deals", won_deals)
        .with("won_amount", cents(won_amount))
        .with("attributed_deals", attributed_deals)
        .with("attributed_amount", cents(attributed_amount))
        .with("window_days", scope.window_days)
        .with("campaigns", Json::Array(listed).to_string()))
}
