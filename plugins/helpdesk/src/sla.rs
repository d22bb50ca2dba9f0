//! The SLA clock of a ticket and everything derived from it: the policy,
//! the due times, the status timestamps and the reply and resolution
//! minutes.
//!
//! One clock per ticket counts business time (of the policy's calendar)
//! while the ticket is `new` or `open`; it stands still while `pending`,
//! `solved` or `closed`. Each target is a reading of that clock:
//!
//! - first reply: due when the clock reaches the target, until the first
//!   public agent reply;
//! - next reply: while the requester awaits an answer (a requester message
//!   after the last agent reply), due when the clock has run the target
//!   since that message;
//! - resolution: due when the clock reaches the target, until solved.
//!
//! The clock is stored as a checkpoint (`sla_clock_ms` run as of
//! `sla_clock_at`), taken again whenever it starts, stops or changes
//! calendar, so a due time is a pure function of the stored ticket:
//! computing it twice gives the same instant. [`derive`] is that function
//! for a change; the before-write hook applies it to every ticket write
//! and the plugin's own writes apply it too. A field the change itself
//! sets (an import giving `solved_at`, the plugin giving a new checkpoint)
//! is kept, which makes `derive` idempotent.

use crm_plugin_sdk::prelude::*;

use crate::calendar::Calendar;
use crate::config::{Config, Policy};
use crate::objects::ticket::*;
use crate::policy::{self, Facts};

/// The SLA targets a policy can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    FirstReply,
    NextReply,
    Resolution,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::FirstReply, Metric::NextReply, Metric::Resolution];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::FirstReply => "first_reply",
            Metric::NextReply => "next_reply",
            Metric::Resolution => "resolution",
        }
    }

    pub fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.as_str() == text)
    }

    pub fn due_field(self) -> &'static str {
        match self {
            Metric::FirstReply => FIRST_REPLY_DUE,
            Metric::NextReply => NEXT_REPLY_DUE,
            Metric::Resolution => RESOLUTION_DUE,
        }
    }

    pub fn breached_field(self) -> &'static str {
        match self {
            Metric::FirstReply => FIRST_REPLY_BREACHED,
            Metric::NextReply => NEXT_REPLY_BREACHED,
            Metric::Resolution => RESOLUTION_BREACHED,
        }
    }

    /// Which run of the target a ticket is on: first reply and resolution
    /// have one per ticket, next reply one per requester wait. Breach and
    /// warning events fire once per cycle.
    pub fn cycle(self, ticket: &Fields) -> String {
        match self {
            Metric::NextReply => format!("next@{}", ticket.int(NEXT_REPLY_CLOCK_MS).unwrap_or(0)),
            other => other.as_str().to_owned(),
        }
    }
}

/// Whether the SLA clock runs in this status.
pub fn running(status: Option<&str>) -> bool {
    matches!(status, Some("new" | "open"))
}

/// Whether the status ends the work on a ticket.
pub fn stopped(status: Option<&str>) -> bool {
    matches!(status, Some("solved" | "closed"))
}

/// A reading of the SLA clock: `ms` run as of the instant `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub ms: i64,
    pub at: i64,
}

impl Clock {
    /// The checkpoint stored on a ticket.
    pub fn of(ticket: &Fields) -> Option<Clock> {
        Some(Clock { ms: ticket.int(CLOCK_MS)?, at: ticket.int(CLOCK_AT)? })
    }

    /// The clock at instant `t`, given whether it runs from the checkpoint
    /// on (earlier instants count back, never below zero).
    pub fn reading(&self, running: bool, calendar: &Calendar, t: i64) -> i64 {
        if !running {
            return self.ms;
        }
        if t >= self.at { self.ms + calendar.between(self.at, t) } else { (self.ms - calendar.between(t, self.at)).max(0) }
    }
}

/// The calendar of a policy by name; around the clock without one.
pub fn calendar_of(config: &Config, policy: Option<&str>) -> Calendar {
    policy
        .and_then(|name| config.policy(name))
        .and_then(|policy| config.calendar(&policy.calendar).ok())
        .unwrap_or_else(Calendar::always)
}

/// A ticket as it will be written, and the patch that gets it there.
struct Draft<'a> {
    before: Option<&'a Fields>,
    given: &'a Fields,
    current: Fields,
    patch: Fields,
}

impl<'a> Draft<'a> {
    fn new(before: Option<&'a Fields>, given: &'a Fields) -> Draft<'a> {
        Draft { before, given, current: given.clone(), patch: Fields::new() }
    }

    fn set(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        if self.current.get(name).unwrap_or(&Value::Null) != &value {
            self.current.set(name, value.clone());
            self.patch.set(name, value);
        }
    }

    fn default(&mut self, name: &str, value: impl Into<Value>) {
        if self.current.get(name).is_none_or(Value::is_null) {
            self.set(name, value);
        }
    }

    /// Whether the change itself sets `name` to something new.
    fn given_here(&self, name: &str) -> bool {
        let before = self.before.and_then(|before| before.get(name)).unwrap_or(&Value::Null);
        self.given.get(name).unwrap_or(&Value::Null) != before
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.current.text(name)
    }
}

/// The fields to patch into a ticket change so that defaults, the policy,
/// the clock checkpoint, status timestamps and due times are right.
/// `before` is the stored ticket (`None` for a create), `after` the ticket
/// as the change would write it, `tier` the support tier of its company.
pub fn derive(config: &Config, before: Option<&Fields>, after: &Fields, now: i64, tier: Option<&str>) -> Fields {
    let mut draft = Draft::new(before, after);
    if before.is_none() {
        draft.default(STATUS, "new");
        draft.default(PRIORITY, config.default_priority.as_str());
        draft.default(CHANNEL, config.default_channel.as_str());
        if let Some(team) = &config.default_team {
            draft.default(TEAM, team.as_str());
        }
        for flag in [FIRST_REPLY_BREACHED, NEXT_REPLY_BREACHED, RESOLUTION_BREACHED] {
            draft.default(flag, false);
        }
        draft.default(ESCALATION_COUNT, 0);
    }
    let status_before = before.and_then(|before| before.text(STATUS));
    let status = draft.text(STATUS).unwrap_or("new").to_owned();
    let facts = Facts { priority: draft.text(PRIORITY), channel: draft.text(CHANNEL), tier, team: draft.text(TEAM) };
    let policy: Option<&Policy> = policy::select(config, facts);
    let policy_name = policy.map(|policy| policy.name.clone());

    // The checkpoint moves when the clock starts, stops or changes calendar.
    let old_policy = before.and_then(|before| before.text(POLICY));
    let old_clock = before.and_then(Clock::of);
    let reading = old_clock.map_or(0, |clock| clock.reading(running(status_before), &calendar_of(config, old_policy), now));
    let restart = old_clock.is_none() || running(status_before) != running(Some(&status)) || old_policy != policy_name.as_deref();
    if restart && !draft.given_here(CLOCK_AT) {
        draft.set(CLOCK_MS, reading);
        draft.set(CLOCK_AT, now);
    }
    draft.set(POLICY, policy_name.clone());
    let clock = Clock::of(&draft.current).unwrap_or(Clock { ms: reading, at: now });
    let calendar = calendar_of(config, policy_name.as_deref());

    // Status timestamps and the resolution minutes.
    let was_stopped = stopped(status_before);
    if status == "solved" && !was_stopped {
        if !draft.given_here(SOLVED_AT) {
            draft.set(SOLVED_AT, now);
        }
        if !draft.given_here(RESOLUTION_MINUTES) {
            draft.set(RESOLUTION_MINUTES, clock.ms / 60_000);
        }
    }
    if status == "closed" && status_before != Some("closed") {
        if !draft.given_here(CLOSED_AT) {
            draft.set(CLOSED_AT, now);
        }
        if draft.current.int(SOLVED_AT).is_none() {
            draft.set(SOLVED_AT, now);
            if !draft.given_here(RESOLUTION_MINUTES) {
                draft.set(RESOLUTION_MINUTES, clock.ms / 60_000);
            }
        }
    }
    if status_before == Some("solved") && !stopped(Some(&status)) {
        for field in [SOLVED_AT, RESOLUTION_MINUTES] {
            if !draft.given_here(field) {
                draft.set(field, Value::Null);
            }
        }
    }

    // A new requester wait starts the next-reply cycle at the clock's
    // reading of that moment.
    let awaiting = draft.current.int(AWAITING_SINCE);
    if let Some(since) = awaiting
        && awaiting != before.and_then(|before| before.int(AWAITING_SINCE))
        && !draft.given_here(NEXT_REPLY_CLOCK_MS)
    {
        draft.set(NEXT_REPLY_CLOCK_MS, clock.reading(running(Some(&status)), &calendar, since));
    }

    for metric in Metric::ALL {
        let due = policy.and_then(|policy| due_at(metric, policy, &calendar, clock, &draft.current, &status));
        draft.set(metric.due_field(), due);
    }
    let breached = [FIRST_REPLY_BREACHED, NEXT_REPLY_BREACHED, RESOLUTION_BREACHED]
        .iter()
        .any(|flag| draft.current.bool(flag) == Some(true));
    draft.set(SLA_BREACHED, breached);
    draft.patch
}

/// When a running target breaches; `None` when it is met, not running or
/// not set by the policy. A target already exceeded at the checkpoint is
/// due at the checkpoint.
fn due_at(metric: Metric, policy: &Policy, calendar: &Calendar, clock: Clock, ticket: &Fields, status: &str) -> Option<i64> {
    if !running(Some(status)) {
        return None;
    }
    let target = policy.target_ms(metric)?;
    let start = match metric {
        Metric::FirstReply if ticket.int(FIRST_REPLY_AT).is_some() => return None,
        Metric::FirstReply | Metric::Resolution => 0,
        Metric::NextReply => {
            ticket.int(FIRST_REPLY_AT)?;
            ticket.int(AWAITING_SINCE)?;
            ticket.int(NEXT_REPLY_CLOCK_MS).unwrap_or(clock.ms)
        }
    };
    let remaining = start.saturating_add(target) - clock.ms;
    if remaining <= 0 { Some(clock.at) } else { calendar.add(clock.at, remaining) }
}
