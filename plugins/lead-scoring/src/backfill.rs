//! Re-scoring every contact of the tenant, one batch per timer run.
//!
//! The state (cursor, counts, times) lives in kv under [`STATE_KEY`] and is
//! written at the end of each batch; the timer re-arms itself until the
//! last page. A timer that fails is retried by the kernel and repeats its
//! batch from the stored cursor (scoring twice is harmless); a restarted
//! server fires the pending timer and goes on from there.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::scoring;

pub const STATE_KEY: &str = "backfill";
pub const TIMER_KEY: &str = "backfill";
pub const DEFAULT_BATCH: u32 = 200;
pub const MAX_BATCH: u32 = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde")]
pub struct State {
    pub running: bool,
    /// Contacts when the backfill started.
    pub total: u64,
    /// Contacts scored so far.
    pub done: u64,
    /// Where the next batch starts; `None` before the first.
    pub cursor: Option<String>,
    pub batch_size: u32,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Timer runs so far.
    pub batches: u64,
}

pub fn load() -> Result<Option<State>> {
    kv::get_json(STATE_KEY)
}

/// Starts a backfill. Refuses while one is running unless `restart`.
pub fn start(batch_size: Option<i64>, restart: bool) -> Result<State> {
    let batch_size = match batch_size {
        None => DEFAULT_BATCH,
        Some(size) if (1..=i64::from(MAX_BATCH)).contains(&size) => size as u32,
        Some(size) => return Err(Error::msg(format!("batch_size: {size} is not between 1 and {MAX_BATCH}"))),
    };
    if let Some(state) = load()?
        && state.running
        && !restart
    {
        return Err(Error::msg(format!(
            "a backfill is running ({} of {} contacts done); pass restart: true to start over",
            state.done, state.total
        )));
    }
    let now = clock::now();
    let state = State {
        running: true,
        total: records::count("contact", "{}")?,
        done: 0,
        cursor: None,
        batch_size,
        started_at: now,
        finished_at: None,
        batches: 0,
    };
    kv::set_json(STATE_KEY, &state)?;
    timers::schedule(TIMER_KEY, now, now.to_string())?;
    Ok(state)
}

/// One timer run: scores the next batch, stores the cursor, re-arms.
pub fn run_batch(config: &Config, plugin: &str, payload: &[u8]) -> Result<()> {
    let Some(mut state) = load()? else { return Ok(()) };
    if !state.running {
        return Ok(());
    }
    let page = records::query("contact", "{}", &[], state.batch_size, state.cursor.as_deref())?;
    for contact in page.records.iter().filter(|record| !record.deleted) {
        scoring::refresh(config, plugin, &contact.id, "backfill")?;
        state.done += 1;
    }
    state.batches += 1;
    let now = clock::now();
    match page.next {
        Some(next) => state.cursor = Some(next),
        None => {
            state.running = false;
            state.finished_at = Some(now);
            // Contacts created meanwhile were scored as they were written.
            state.total = state.total.max(state.done);
        }
    }
    kv::set_json(STATE_KEY, &state)?;
    if state.running {
        // The kernel removes the fired timer only if it still has the time
        // it fired at, so the next one must differ from it.
        let fired_at: i64 = std::str::from_utf8(payload).ok().and_then(|text| text.parse().ok()).unwrap_or(0);
        let at = now.max(fired_at + 1);
        timers::schedule(TIMER_KEY, at, at.to_string())?;
    }
    Ok(())
}

/// The state as action output.
pub fn output(state: Option<&State>) -> Fields {
    let Some(state) = state else { return Fields::new().with("running", false).with("done", 0).with("total", 0) };
    Fields::new()
        .with("running", state.running)
        .with("done", state.done as i64)
        .with("total", state.total as i64)
        .with("batches", state.batches as i64)
        .with("batch_size", i64::from(state.batch_size))
        .with("started_at", state.started_at)
        .with("finished_at", state.finished_at)
}
