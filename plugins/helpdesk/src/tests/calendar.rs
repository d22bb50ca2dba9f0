//! Business time across weekends, holidays, lunch breaks and daylight
//! saving time.

use chrono::NaiveDate;

use crate::calendar::Calendar;
use crate::tests::MINUTE;

/// Epoch milliseconds of a UTC time.
pub fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, day).unwrap().and_hms_opt(hour, minute, 0).unwrap().and_utc().timestamp_millis()
}

fn hours(days: &[&str], intervals: &[&str]) -> Vec<(String, Vec<String>)> {
    days.iter().map(|day| ((*day).to_owned(), intervals.iter().map(|interval| (*interval).to_owned()).collect())).collect()
}

fn office(zone: &str, holidays: &[&str]) -> Calendar {
    let holidays: Vec<String> = holidays.iter().map(|day| (*day).to_owned()).collect();
    Calendar::parse("calendars.office", zone, &hours(&["mon", "tue", "wed", "thu", "fri"], &["09:00-17:00"]), &holidays).unwrap()
}

#[test]
fn the_always_open_calendar_counts_wall_time() {
    let always = Calendar::always();
    assert!(always.is_always());
    assert_eq!(always.add(1_000, 5 * MINUTE), Some(1_000 + 5 * MINUTE));
    assert_eq!(always.between(1_000, 1_000 + 7 * MINUTE), 7 * MINUTE);
    assert_eq!(always.between(5_000, 1_000), 0);
}

#[test]
fn time_runs_only_in_opening_hours_and_crosses_weekends_with_dst() {
    let berlin = office("Europe/Berlin", &[]);
    // Friday 2025-03-28 16:00 CET (UTC+1): one hour left that day; the
    // clocks go forward on Sunday, so Monday 09:00 is 07:00 UTC.
    let friday = utc(2025, 3, 28, 15, 0);
    assert_eq!(berlin.add(friday, 120 * MINUTE), Some(utc(2025, 3, 31, 8, 0)));
    assert_eq!(berlin.between(friday, utc(2025, 3, 31, 8, 0)), 120 * MINUTE);
    // Exactly the rest of the day ends at closing time, not next morning.
    assert_eq!(berlin.add(friday, 60 * MINUTE), Some(utc(2025, 3, 28, 16, 0)));
    // From Saturday the clock starts on Monday's opening.
    assert_eq!(berlin.add(utc(2025, 3, 29, 10, 0), 30 * MINUTE), Some(utc(2025, 3, 31, 7, 30)));
    assert_eq!(berlin.between(utc(2025, 3, 29, 0, 0), utc(2025, 3, 30, 23, 0)), 0);
    // Zero is the start itself, even when closed.
    assert_eq!(berlin.add(utc(2025, 3, 29, 10, 0), 0), Some(utc(2025, 3, 29, 10, 0)));
    // In winter the same local hours are an hour later in UTC.
    assert_eq!(berlin.add(utc(2025, 1, 6, 7, 0), 60 * MINUTE), Some(utc(2025, 1, 6, 9, 0)));
}

#[test]
fn holidays_are_closed_and_breaks_are_skipped() {
    let berlin = office("Europe/Berlin", &["2025-12-25"]);
    // Wednesday 24 December 16:00 CET + 2 hours: one hour on Wednesday, the
    // holiday, then Friday 09:00-10:00.
    assert_eq!(berlin.add(utc(2025, 12, 24, 15, 0), 120 * MINUTE), Some(utc(2025, 12, 26, 9, 0)));
    let lunch = Calendar::parse("c", "UTC", &hours(&["mon"], &["13:00-17:00", "09:00-12:00"]), &[]).unwrap();
    let monday = utc(2025, 1, 6, 11, 30);
    assert_eq!(lunch.add(monday, 60 * MINUTE), Some(utc(2025, 1, 6, 13, 30)));
    assert_eq!(lunch.between(utc(2025, 1, 6, 0, 0), utc(2025, 1, 7, 0, 0)), 7 * 60 * MINUTE);
    // The next Monday follows after a closed week.
    assert_eq!(lunch.add(utc(2025, 1, 6, 16, 0), 2 * 60 * MINUTE), Some(utc(2025, 1, 13, 10, 0)));
}

#[test]
fn days_keep_their_local_length_across_dst_changes() {
    let always_open = |zone: &str| {
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        Calendar::parse("c", zone, &hours(&days, &["00:00-24:00"]), &[]).unwrap()
    };
    // New York falls back on Sunday 2025-11-02: that local day has 25 hours.
    let new_york = always_open("America/New_York");
    assert_eq!(new_york.between(utc(2025, 11, 2, 4, 0), utc(2025, 11, 3, 5, 0)), 25 * 60 * MINUTE);
    // Berlin springs forward on 2025-03-30: a 23-hour day.
    let berlin = always_open("Europe/Berlin");
    assert_eq!(berlin.between(utc(2025, 3, 29, 23, 0), utc(2025, 3, 30, 22, 0)), 23 * 60 * MINUTE);
    // An opening time in the gap (02:30 does not exist that night) opens
    // at the first valid time after it, 03:00 CEST.
    let gap = Calendar::parse("c", "Europe/Berlin", &hours(&["sun"], &["02:30-04:00"]), &[]).unwrap();
    assert_eq!(gap.between(utc(2025, 3, 29, 0, 0), utc(2025, 3, 31, 0, 0)), 60 * MINUTE);
    assert_eq!(gap.add(utc(2025, 3, 29, 0, 0), 1), Some(utc(2025, 3, 30, 1, 0) + 1));
}

#[test]
fn bad_calendars_are_refused_with_the_part_named() {
    let error = |zone: &str, hours: Vec<(String, Vec<String>)>, holidays: &[&str]| {
        let holidays: Vec<String> = holidays.iter().map(|day| (*day).to_owned()).collect();
        Calendar::parse("calendars.x", zone, &hours, &holidays).unwrap_err()
    };
    let weekdays = || hours(&["mon"], &["09:00-17:00"]);
    assert!(error("Mars/Olympus", weekdays(), &[]).starts_with("calendars.x.time_zone: 'Mars/Olympus' is not an IANA time zone"));
    assert_eq!(
        error("UTC", hours(&["monday"], &["09:00-17:00"]), &[]),
        "calendars.x.hours: 'monday' is not a day (mon, tue, wed, thu, fri, sat, sun)"
    );
    assert_eq!(
        error("UTC", hours(&["mon"], &["17:00-09:00"]), &[]),
        "calendars.x.hours.mon[0]: '17:00-09:00' closes before it opens"
    );
    assert_eq!(error("UTC", hours(&["mon"], &["9-17"]), &[]), "calendars.x.hours.mon[0]: '9' is not a time such as 09:00");
    assert_eq!(
        error("UTC", hours(&["mon"], &["09:00-24:30"]), &[]),
        "calendars.x.hours.mon[0]: '24:30' is not a time such as 09:00"
    );
    assert_eq!(error("UTC", hours(&["mon"], &["09:00-12:00", "11:00-13:00"]), &[]), "calendars.x.hours.mon: intervals overlap");
    assert_eq!(error("UTC", hours(&["mon"], &[]), &[]), "calendars.x.hours: needs at least one open interval");
    assert_eq!(
        error("UTC", weekdays(), &["25.12.2025"]),
        "calendars.x.holidays[0]: '25.12.2025' is not a date such as 2025-12-25"
    );
}
