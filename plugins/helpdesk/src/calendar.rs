//! Business-hours calendars: weekly opening hours in an IANA time zone,
//! minus holidays. SLA clocks run only while a calendar is open, so a
//! four-hour target set on Friday at 16:00 in a 09:00–17:00 calendar is
//! due on Monday at 12:00.
//!
//! Hours are local wall-clock times and are converted to instants day by
//! day with the zone's rules (chrono-tz, the IANA database), so a calendar
//! keeps its local hours across daylight-saving changes. A local opening
//! time that falls in a spring-forward gap opens at the first valid local
//! time after it; one that occurs twice in an autumn fold takes the
//! earlier instant.
//!
//! All times are epoch milliseconds.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, TimeZone};
use chrono_tz::Tz;

/// The name of the built-in calendar that is always open (wall-clock time).
pub const ALWAYS: &str = "24x7";

/// Days searched for open time before giving up: a calendar whose every day
/// for ten years is a holiday has no due times.
const MAX_DAYS: i64 = 3660;

pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A calendar: open hours per weekday (minutes after local midnight,
/// sorted, not overlapping) in a zone, and closed dates.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// `None` is the always-open calendar.
    zone: Option<Tz>,
    week: [Vec<(u32, u32)>; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// The calendar that is always open: business time is wall time.
    pub fn always() -> Calendar {
        Calendar { zone: None, week: Default::default(), holidays: BTreeSet::new() }
    }

    /// A calendar from its parts. `hours` maps a day (`mon` … `sun`) to
    /// intervals such as `09:00-17:00`; errors name the part at fault,
    /// relative to `path` (e.g. `calendars.emea`).
    pub fn parse(path: &str, time_zone: &str, hours: &[(String, Vec<String>)], holidays: &[String]) -> Result<Calendar, String> {
        let zone: Tz = time_zone.parse().map_err(|_| {
            format!("{path}.time_zone: '{time_zone}' is not an IANA time zone such as Europe/Berlin or America/New_York")
        })?;
        let mut week: [Vec<(u32, u32)>; 7] = Default::default();
        for (day, intervals) in hours {
            let index = DAYS
                .iter()
                .position(|known| known == day)
                .ok_or_else(|| format!("{path}.hours: '{day}' is not a day ({})", DAYS.join(", ")))?;
            let mut parsed = Vec::new();
            for (position, interval) in intervals.iter().enumerate() {
                let at = format!("{path}.hours.{day}[{position}]");
                parsed.push(parse_interval(interval).map_err(|reason| format!("{at}: {reason}"))?);
            }
            parsed.sort_unstable();
            if parsed.windows(2).any(|pair| pair[1].0 < pair[0].1) {
                return Err(format!("{path}.hours.{day}: intervals overlap"));
            }
            week[index] = parsed;
        }
        if week.iter().all(Vec::is_empty) {
            return Err(format!("{path}.hours: needs at least one open interval"));
        }
        let mut closed = BTreeSet::new();
        for (position, date) in holidays.iter().enumerate() {
            let parsed = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| format!("{path}.holidays[{position}]: '{date}' is not a date such as 2025-12-25"))?;
            closed.insert(parsed);
        }
        Ok(Calendar { zone: Some(zone), week, holidays: closed })
    }

    pub fn is_always(&self) -> bool {
        self.zone.is_none()
    }

    /// The instant `ms` of business time after `start`: `start` itself for
    /// zero, the end of an open interval when the time runs out exactly
    /// there. `None` when the calendar has no open time for ten years.
    pub fn add(&self, start: i64, ms: i64) -> Option<i64> {
        if ms <= 0 {
            return Some(start);
        }
        let Some(zone) = self.zone else { return start.checked_add(ms) };
        let mut remaining = ms;
        let mut cursor = start;
        let mut date = local_date(zone, start)?;
        for _ in 0..MAX_DAYS {
            for (open, close) in self.intervals(zone, date) {
                if close <= cursor {
                    continue;
                }
                let from = open.max(cursor);
                let available = close - from;
                if remaining <= available {
                    return Some(from + remaining);
                }
                remaining -= available;
                cursor = close;
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// Business time between `from` and `to` (zero if `to` is not later).
    pub fn between(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let Some(zone) = self.zone else { return to - from };
        let (Some(mut date), Some(last)) = (local_date(zone, from), local_date(zone, to)) else { return 0 };
        let mut total = 0;
        for _ in 0..MAX_DAYS {
            for (open, close) in self.intervals(zone, date) {
                let (start, end) = (open.max(from), close.min(to));
                if end > start {
                    total += end - start;
                }
            }
            if date >= last {
                break;
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        total
    }

    /// The open intervals of one local date as instants.
    fn intervals(&self, zone: Tz, date: NaiveDate) -> Vec<(i64, i64)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let day = date.weekday().num_days_from_monday() as usize;
        self.week[day]
            .iter()
            .filter_map(|&(open, close)| {
                let open = to_instant(zone, date, open)?;
                let close = to_instant(zone, date, close)?;
                (close > open).then_some((open, close))
            })
            .collect()
    }
}

/// `09:00-17:30` as minutes after midnight; `24:00` ends a day.
fn parse_interval(text: &str) -> Result<(u32, u32), String> {
    let (open, close) = text.split_once('-').ok_or_else(|| format!("'{text}' is not an interval such as 09:00-17:00"))?;
    let (open, close) = (parse_time(open.trim())?, parse_time(close.trim())?);
    if close <= open {
        return Err(format!("'{text}' closes before it opens"));
    }
    Ok((open, close))
}

fn parse_time(text: &str) -> Result<u32, String> {
    let invalid = || format!("'{text}' is not a time such as 09:00");
    let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(invalid());
    }
    let hours: u32 = hours.parse().map_err(|_| invalid())?;
    let minutes: u32 = minutes.parse().map_err(|_| invalid())?;
    if minutes >= 60 || hours > 24 || (hours == 24 && minutes > 0) {
        return Err(invalid());
    }
    Ok(hours * 60 + minutes)
}

fn local_date(zone: Tz, instant: i64) -> Option<NaiveDate> {
    let utc = DateTime::from_timestamp_millis(instant)?.naive_utc();
    Some(zone.from_utc_datetime(&utc).date_naive())
}

/// The instant of `minutes` after local midnight of `date` in `zone`.
fn to_instant(zone: Tz, date: NaiveDate, minutes: u32) -> Option<i64> {
    let local: NaiveDateTime = date.and_hms_opt(0, 0, 0)?.checked_add_signed(TimeDelta::minutes(i64::from(minutes)))?;
    // Gaps are at most a few hours; step past them in quarter hours.
    for step in 0..=16 {
        let candidate = local.checked_add_signed(TimeDelta::minutes(15 * step))?;
        if let Some(instant) = zone.from_local_datetime(&candidate).earliest() {
            return Some(instant.timestamp_millis());
        }
    }
    None
}
