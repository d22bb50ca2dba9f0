//! Which SLA policy applies to a ticket: the first policy, in
//! configuration order, whose conditions all hold. A condition is a list of
//! allowed values; an empty list allows any value. Deterministic by
//! construction: the same ticket values always select the same policy.

use crate::config::{Config, Policy};

/// The ticket values policies look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub priority: Option<&'a str>,
    pub channel: Option<&'a str>,
    /// The `support_tier` of the ticket's company.
    pub tier: Option<&'a str>,
    pub team: Option<&'a str>,
}

pub fn select<'c>(config: &'c Config, facts: Facts<'_>) -> Option<&'c Policy> {
    config.sla.policies.iter().find(|policy| matches(policy, facts))
}

fn matches(policy: &Policy, facts: Facts<'_>) -> bool {
    let listed = |allowed: &[String], value: Option<&str>| {
        allowed.is_empty() || value.is_some_and(|value| allowed.iter().any(|option| option == value))
    };
    let tier_ok = policy.company_tiers.is_empty()
        || facts
            .tier
            .is_some_and(|tier| policy.company_tiers.iter().any(|option| option.trim().eq_ignore_ascii_case(tier.trim())));
    listed(&policy.priorities, facts.priority)
        && listed(&policy.channels, facts.channel)
        && listed(&policy.teams, facts.team)
        && tier_ok
}
