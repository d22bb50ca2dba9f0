//! The actions, exposed as GraphQL mutations `helpdesk<Action>`:
//! `applyCannedReply`, `searchKb`, `assign`, `sendNpsSurvey`, `npsScore`
//! and `csatScore`.

use crm_plugin_sdk::prelude::*;

use crate::assignment;
use crate::canned;
use crate::config::Config;
use crate::kb;
use crate::objects::{CANNED, TICKET, ticket::*};
use crate::surveys;
use crate::tickets;

/// The actions the manifest declares.
pub fn decls() -> Vec<ActionDecl> {
    let period = |action: ActionDecl| {
        action
            .input(FieldDecl::datetime("from").description("Answers given at or after this time (default: all)"))
            .input(FieldDecl::datetime("to").description("Answers given at or before this time (default: all)"))
    };
    vec![
        ActionDecl::new("apply-canned-reply")
            .description("Renders a canned reply for a ticket and adds it as a public agent reply (emailed to the requester)")
            .input(FieldDecl::reference("ticket_id", TICKET).required())
            .input(FieldDecl::reference("canned_reply_id", CANNED).required())
            .input(FieldDecl::external_id("author_id").description("The agent replying (a user id); {{agent.id}} in the body"))
            .output(FieldDecl::reference("comment_id", crate::objects::COMMENT))
            .output(FieldDecl::long_text("body").description("The reply as sent"))
            .output(FieldDecl::enumeration("status", crate::objects::STATUSES).description("The ticket's status afterwards")),
        ActionDecl::new("search-kb")
            .description("Searches published knowledge-base articles, best matches first")
            .input(FieldDecl::text("query").required())
            .input(FieldDecl::text("category").description("Only articles of this category"))
            .input(FieldDecl::integer("limit").description("Results to return, 1 to 50 (default 10)"))
            .output(FieldDecl::integer("count").description("Articles matching, before the limit"))
            .output(FieldDecl::tags("article_ids").description("The ids of the results, best first"))
            .output(FieldDecl::long_text("results").description("JSON: [{id, title, category, matched_terms, score, snippet}]")),
        ActionDecl::new("assign")
            .description("Assigns a ticket to the next member of its team (or of the team given) by the team's strategy")
            .input(FieldDecl::reference("ticket_id", TICKET).required())
            .input(FieldDecl::text("team").description("Move the ticket to this team first"))
            .output(FieldDecl::external_id("assignee_id"))
            .output(FieldDecl::text("team")),
        ActionDecl::new("send-nps-survey")
            .description("Emails an NPS survey (0-10) with signed answer links to a contact")
            .input(FieldDecl::reference("contact_id", "contact").required())
            .output(FieldDecl::reference("survey_response_id", crate::objects::SURVEY))
            .output(FieldDecl::text("message_id").description("The outbound message carrying the survey")),
        period(ActionDecl::new("nps-score").description("Net promoter score over NPS answers given in a period"))
            .output(
                FieldDecl::float("score").description("Promoters minus detractors in percent of answers; empty without answers"),
            )
            .output(FieldDecl::integer("responses"))
            .output(FieldDecl::integer("promoters").description("Scores 9-10"))
            .output(FieldDecl::integer("passives").description("Scores 7-8"))
            .output(FieldDecl::integer("detractors").description("Scores 0-6")),
        period(ActionDecl::new("csat-score").description("Customer satisfaction over CSAT answers given in a period"))
            .input(FieldDecl::text("team").description("Only surveys of this team's tickets"))
            .output(FieldDecl::float("score").description("Ratings 4-5 in percent of answers; empty without answers"))
            .output(FieldDecl::float("average_rating"))
            .output(FieldDecl::integer("responses"))
            .output(FieldDecl::integer("satisfied").description("Ratings 4-5"))
            .output(FieldDecl::integer("dissatisfied").description("Ratings 1-2")),
    ]
}

/// Action output without its empty values: an absent output field reads as
/// `null` in GraphQL, whatever its type.
fn present(mut output: Fields) -> Fields {
    output.retain(|_, value| !value.is_null());
    output
}

pub fn invoke(ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
    let config = Config::load(ctx)?;
    let now = clock::now();
    let output = match action {
        "apply-canned-reply" => canned::apply(&config, input, now)?,
        "search-kb" => kb::search(input)?,
        "assign" => assign(&config, input, now)?,
        "send-nps-survey" => {
            let contact = input.id("contact_id").ok_or("contact_id: is required")?;
            surveys::send_nps(ctx, &config, contact, now)?
        }
        "nps-score" => surveys::nps_score(input.int("from"), input.int("to"))?,
        "csat-score" => surveys::csat_score(input.int("from"), input.int("to"), input.text("team"))?,
        other => return Err(Error::unknown_action(other)),
    };
    Ok(present(output))
}

fn assign(config: &Config, input: &Fields, now: i64) -> Result<Fields> {
    let id = input.id("ticket_id").ok_or("ticket_id: is required")?;
    let ticket = tickets::get(id)?.ok_or_else(|| Error::msg(format!("ticket_id: there is no ticket {id}")))?;
    let team = match input.text("team").filter(|team| !team.is_empty()) {
        Some(team) => team.to_owned(),
        None => ticket.text(TEAM).map(str::to_owned).ok_or("team: the ticket has no team; give one")?,
    };
    if !config.teams.contains_key(&team) {
        return Err(Error::msg(format!("team: '{team}' is not a team in the helpdesk configuration")));
    }
    let choice = assignment::choose(config, &team)?.ok_or_else(|| Error::msg(format!("team: '{team}' has no members")))?;
    let user = choice.user.clone();
    let stored = tickets::update(config, ticket, now, |_| {
        Ok(Some(Fields::new().with(TEAM, team.as_str()).with(ASSIGNEE, Value::Id(user.clone()))))
    })?
    .ok_or_else(|| Error::msg(format!("ticket_id: there is no ticket {id}")))?;
    assignment::commit(&choice)?;
    assignment::assigned(&stored, &choice)?;
    Ok(Fields::new().with("assignee_id", Value::Id(choice.user)).with("team", team))
}
