//! What the plugin remembers per ticket in its private kv store, one JSON
//! document under `ticket:<id>`: the timers it scheduled (so a ticket
//! update touches only timers that change), and which breach and warning
//! events and escalation rules were done (so a timer that fires twice, or
//! events delivered again, act once). An escalation's ticket changes and
//! its notifications are remembered apart: a retry after a failed email
//! sends the email without raising the priority twice.

use std::collections::{BTreeMap, BTreeSet};

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::{Deserialize, Serialize};

use crate::sla::Metric;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default)]
pub struct TicketState {
    /// Timer key → the instant it is scheduled for.
    pub timers: BTreeMap<String, i64>,
    /// Metric → the cycle whose breach was recorded.
    pub breached: BTreeMap<String, String>,
    /// Metric → the cycle whose warning was emitted.
    pub warned: BTreeMap<String, String>,
    /// Escalation rules whose ticket changes were made.
    pub escalated: BTreeSet<String>,
    /// Escalation rules whose emails and event went out.
    pub notified: BTreeSet<String>,
}

fn key(ticket: &str) -> String {
    format!("ticket:{ticket}")
}

impl TicketState {
    pub fn load(ticket: &str) -> Result<TicketState> {
        Ok(kv::get_json(&key(ticket))?.unwrap_or_default())
    }

    pub fn save(&self, ticket: &str) -> Result<()> {
        kv::set_json(&key(ticket), self)
    }

    pub fn delete(ticket: &str) -> Result<()> {
        kv::delete(&key(ticket))
    }

    pub fn breached_in(&self, metric: Metric, cycle: &str) -> bool {
        self.breached.get(metric.as_str()).is_some_and(|done| done == cycle)
    }

    pub fn warned_in(&self, metric: Metric, cycle: &str) -> bool {
        self.warned.get(metric.as_str()).is_some_and(|done| done == cycle)
    }
}
