//! The scoring rules as pure functions: fit points, engagement with decay,
//! grades and the round-robin pick. No host calls here, so every rule is
//! tested natively with plain values.

use crm_plugin_sdk::Fields;

use crate::config::{Config, FitRule, Grades};

pub const DAY_MS: f64 = 86_400_000.0;

/// The fit score of a contact and the rules that matched (their indexes in
/// the configuration). `company` is the contact's company, when it has one.
pub fn fit(config: &Config, contact: &Fields, company: Option<&Fields>) -> (i64, Vec<usize>) {
    let mut score = 0;
    let mut matched = Vec::new();
    for (index, rule) in config.fit.iter().enumerate() {
        if matches(rule, contact, company) {
            score += rule.points;
            matched.push(index);
        }
    }
    (score, matched)
}

/// Whether every condition of `rule` holds; a missing value fails its
/// condition.
pub fn matches(rule: &FitRule, contact: &Fields, company: Option<&Fields>) -> bool {
    if let Some(needles) = &rule.title_contains {
        let title = contact.text("title").unwrap_or_default().to_lowercase();
        if title.is_empty() || !needles.iter().any(|needle| title.contains(&needle.to_lowercase())) {
            return false;
        }
    }
    if rule.employees_min.is_some() || rule.employees_max.is_some() {
        let Some(employees) = company.and_then(|company| company.int("employees")) else { return false };
        if rule.employees_min.is_some_and(|min| employees < min) || rule.employees_max.is_some_and(|max| employees > max) {
            return false;
        }
    }
    if let Some(industries) = &rule.industry_in {
        let industry = company.and_then(|company| company.text("industry"));
        if !industry.is_some_and(|industry| one_of(industries, industry)) {
            return false;
        }
    }
    if let Some(countries) = &rule.country_in {
        let country = contact.text("country").or_else(|| company.and_then(|company| company.text("country")));
        if !country.is_some_and(|country| one_of(countries, country)) {
            return false;
        }
    }
    true
}

fn one_of(set: &[String], value: &str) -> bool {
    let value = value.trim();
    set.iter().any(|item| item.trim().eq_ignore_ascii_case(value))
}

/// `points` after `age_ms` with the given half-life: halved every
/// `half_life_days`. Something dated in the future counts in full.
pub fn decay(points: f64, age_ms: i64, half_life_days: f64) -> f64 {
    let age_days = age_ms.max(0) as f64 / DAY_MS;
    points * 0.5f64.powf(age_days / half_life_days)
}

/// One activity or event that earns engagement points.
#[derive(Debug, Clone, PartialEq)]
pub struct Touch {
    pub points: f64,
    /// When it happened, epoch milliseconds.
    pub at: i64,
}

/// The decayed sum of `touches` at `now`, rounded to hundredths.
pub fn engagement(touches: &[Touch], now: i64, half_life_days: f64) -> f64 {
    let sum: f64 = touches.iter().map(|touch| decay(touch.points, now - touch.at, half_life_days)).sum();
    round2(sum)
}

pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The total of a fit score and an engagement score, rounded.
pub fn total(fit: i64, engagement: f64) -> i64 {
    fit + engagement.round() as i64
}

/// The grade of a total: `a`, `b`, `c` or `d`.
pub fn grade(grades: &Grades, total: i64) -> &'static str {
    if total >= grades.a {
        "a"
    } else if total >= grades.b {
        "b"
    } else if total >= grades.c {
        "c"
    } else {
        "d"
    }
}

/// The owner at rotation `position` of `owners` and the position after it.
/// The position keeps growing; it wraps by the team's current size, so a
/// team that gains or loses owners goes on from where it was.
pub fn round_robin(owners: &[String], position: u64) -> Option<(&str, u64)> {
    if owners.is_empty() {
        return None;
    }
    let index = (position % owners.len() as u64) as usize;
    Some((owners[index].as_str(), position + 1))
}

/// Whether moving from `current` to `target` goes forward in the lifecycle.
/// A contact without a stage, or with one outside the standard order
/// (`other`), is never moved by a threshold unless it has none.
pub fn moves_forward(current: Option<&str>, target: &str) -> bool {
    let position = |stage: &str| crate::config::STAGES.iter().position(|known| *known == stage);
    match (current, position(target)) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(current), Some(target)) => position(current).is_some_and(|current| current < target),
    }
}
