//! Assignment within a team: round robin (members in turn, the position
//! kept per team in kv under `round-robin:<team>`) or least loaded (the
//! member with the fewest `new`, `open` and `pending` tickets; ties go to
//! the member listed first). A ticket with a team and no assignee is
//! assigned after it is written, unless it is solved or closed.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;

use crate::config::{Config, Strategy};
use crate::objects::{TICKET, ticket::*};
use crate::sla;
use crate::tickets;

/// A member picked for a ticket, and the round-robin position to store
/// once the ticket is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub user: String,
    pub team: String,
    pub strategy: Strategy,
    next_position: Option<u64>,
}

fn position_key(team: &str) -> String {
    format!("round-robin:{team}")
}

/// The member of `team` who gets the next ticket; `None` if the team is not
/// configured.
pub fn choose(config: &Config, team: &str) -> Result<Option<Choice>> {
    let Some(settings) = config.teams.get(team) else { return Ok(None) };
    let members = &settings.members;
    if members.is_empty() {
        return Ok(None);
    }
    let (user, next_position) = match settings.strategy {
        Strategy::RoundRobin => {
            let position: u64 = kv::get_json(&position_key(team))?.unwrap_or(0);
            let index = (position % members.len() as u64) as usize;
            (members[index].clone(), Some(position + 1))
        }
        Strategy::LeastLoaded => {
            let mut best: Option<(u64, &String)> = None;
            for member in members {
                let filter = json!({"assignee_id": {"eq": member}, "status": {"in": ["new", "open", "pending"]}});
                let load = records::count(TICKET, &filter.to_string())?;
                if best.is_none_or(|(fewest, _)| load < fewest) {
                    best = Some((load, member));
                }
            }
            (best.map(|(_, member)| member.clone()).unwrap_or_else(|| members[0].clone()), None)
        }
    };
    Ok(Some(Choice { user, team: team.to_owned(), strategy: settings.strategy, next_position }))
}

/// Stores the round-robin position after the ticket got its assignee.
pub fn commit(choice: &Choice) -> Result<()> {
    match choice.next_position {
        Some(position) => kv::set_json(&position_key(&choice.team), &position),
        None => Ok(()),
    }
}

/// Assigns `ticket` within its team when it has a team but no assignee
/// and is not solved or closed; emits `helpdesk.ticket_assigned`.
pub fn auto_assign(config: &Config, ticket: Record, now: i64) -> Result<Record> {
    let needs = ticket.id(ASSIGNEE).is_none() && !sla::stopped(ticket.text(STATUS));
    let Some(team) = ticket.text(TEAM).filter(|_| needs).map(str::to_owned) else { return Ok(ticket) };
    let Some(choice) = choose(config, &team)? else { return Ok(ticket) };
    let user = choice.user.clone();
    let stored = tickets::update(config, ticket.clone(), now, |current| {
        let still = current.id(ASSIGNEE).is_none() && current.text(TEAM) == Some(team.as_str());
        Ok(still.then(|| Fields::new().with(ASSIGNEE, Value::Id(user.clone()))))
    })?;
    let Some(stored) = stored else { return Ok(ticket) };
    if stored.id(ASSIGNEE) == Some(choice.user.as_str()) {
        commit(&choice)?;
        assigned(&stored, &choice)?;
    }
    Ok(stored)
}

/// The `helpdesk.ticket_assigned` event.
pub fn assigned(ticket: &Record, choice: &Choice) -> Result<()> {
    let payload = json!({
        "ticket_id": ticket.id,
        "assignee_id": choice.user,
        "team": choice.team,
        "strategy": choice.strategy.as_str(),
        "contact_id": ticket.id(REQUESTER),
    });
    events::emit("helpdesk.ticket_assigned", &payload.to_string())
}
