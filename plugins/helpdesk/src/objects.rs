//! The objects the plugin declares, the field it adds to companies, and the
//! stored names of their fields, so every other module spells them once.
//!
//! GraphQL sees these names in camelCase (`first_reply_due_at` is
//! `firstReplyDueAt`) and enumeration keys in upper case (`pending` is
//! `PENDING`).

use crm_plugin_sdk::prelude::*;

pub const TICKET: &str = "ticket";
pub const COMMENT: &str = "ticket_comment";
pub const CANNED: &str = "canned_reply";
pub const ARTICLE: &str = "kb_article";
pub const SURVEY: &str = "survey_response";

/// The field added to `company` that SLA policies match on.
pub const SUPPORT_TIER: &str = "support_tier";

pub const STATUSES: [&str; 5] = ["new", "open", "pending", "solved", "closed"];
pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
pub const CHANNELS: [&str; 5] = ["email", "chat", "phone", "web", "social"];

/// Ticket field names.
pub mod ticket {
    pub const SUBJECT: &str = "subject";
    pub const DESCRIPTION: &str = "description";
    pub const STATUS: &str = "status";
    pub const PRIORITY: &str = "priority";
    pub const CHANNEL: &str = "channel";
    pub const REQUESTER: &str = "requester_id";
    pub const COMPANY: &str = "company_id";
    pub const ASSIGNEE: &str = "assignee_id";
    pub const TEAM: &str = "team";
    pub const TAGS: &str = "tags";
    pub const POLICY: &str = "sla_policy";
    pub const FIRST_REPLY_DUE: &str = "first_reply_due_at";
    pub const NEXT_REPLY_DUE: &str = "next_reply_due_at";
    pub const RESOLUTION_DUE: &str = "resolution_due_at";
    pub const FIRST_REPLY_BREACHED: &str = "first_reply_breached";
    pub const NEXT_REPLY_BREACHED: &str = "next_reply_breached";
    pub const RESOLUTION_BREACHED: &str = "resolution_breached";
    pub const SLA_BREACHED: &str = "sla_breached";
    pub const FIRST_REPLY_AT: &str = "first_reply_at";
    pub const FIRST_REPLY_MINUTES: &str = "first_reply_minutes";
    pub const LAST_AGENT_REPLY_AT: &str = "last_agent_reply_at";
    pub const LAST_REQUESTER_REPLY_AT: &str = "last_requester_reply_at";
    pub const AWAITING_SINCE: &str = "awaiting_reply_since";
    pub const SOLVED_AT: &str = "solved_at";
    pub const CLOSED_AT: &str = "closed_at";
    pub const RESOLUTION_MINUTES: &str = "resolution_minutes";
    pub const CSAT_RATING: &str = "csat_rating";
    pub const CSAT_COMMENT: &str = "csat_comment";
    pub const CSAT_SENT_AT: &str = "csat_sent_at";
    pub const CSAT_RATED_AT: &str = "csat_rated_at";
    pub const ESCALATION_COUNT: &str = "escalation_count";
    pub const ESCALATED_AT: &str = "escalated_at";
    pub const LAST_ESCALATION: &str = "last_escalation";
    pub const CLOCK_MS: &str = "sla_clock_ms";
    pub const CLOCK_AT: &str = "sla_clock_at";
    pub const NEXT_REPLY_CLOCK_MS: &str = "next_reply_clock_ms";
}

/// Ticket comment field names.
pub mod comment {
    pub const TICKET: &str = "ticket_id";
    pub const BODY: &str = "body";
    pub const VISIBILITY: &str = "visibility";
    pub const AUTHOR_KIND: &str = "author_kind";
    pub const AUTHOR: &str = "author_id";
    pub const MESSAGE: &str = "outbound_message_id";
}

/// Survey response field names.
pub mod survey {
    pub const KIND: &str = "kind";
    pub const TICKET: &str = "ticket_id";
    pub const CONTACT: &str = "contact_id";
    pub const TEAM: &str = "team";
    pub const ASSIGNEE: &str = "assignee_id";
    pub const SENT_AT: &str = "sent_at";
    pub const MESSAGE: &str = "message_id";
    pub const RESPONDED_AT: &str = "responded_at";
    pub const RATING: &str = "rating";
    pub const SCORE: &str = "score";
    pub const CATEGORY: &str = "category";
    pub const COMMENT: &str = "comment";
}

fn ticket_object() -> ObjectDecl {
    use ticket::*;
    ObjectDecl::new(TICKET)
        .description("A customer request worked by agents, with its SLA clock, due times and breach flags")
        .field(FieldDecl::text(SUBJECT).required())
        .field(FieldDecl::long_text(DESCRIPTION))
        .field(
            FieldDecl::enumeration(STATUS, STATUSES)
                .indexed()
                .description("new, open, pending (SLA clocks paused), solved, closed"),
        )
        .field(FieldDecl::enumeration(PRIORITY, PRIORITIES).indexed())
        .field(FieldDecl::enumeration(CHANNEL, CHANNELS).indexed().description("Where the request came in"))
        .field(
            FieldDecl::reference(REQUESTER, "contact")
                .description("The contact who asked; public replies and surveys go to their email"),
        )
        .field(FieldDecl::reference(COMPANY, "company").description("Defaults to the requester's company"))
        .field(FieldDecl::external_id(ASSIGNEE).indexed().description("The agent (a user id)"))
        .field(FieldDecl::text(TEAM).indexed().description("A team key from the plugin configuration"))
        .field(FieldDecl::tags(TAGS))
        .field(FieldDecl::text(POLICY).indexed().description("The SLA policy that applies (maintained by the plugin)"))
        .field(
            FieldDecl::datetime(FIRST_REPLY_DUE)
                .indexed()
                .description("When the first-reply target breaches; empty when met or paused"),
        )
        .field(
            FieldDecl::datetime(NEXT_REPLY_DUE)
                .indexed()
                .description("When the next-reply target breaches; empty unless the requester awaits a reply"),
        )
        .field(
            FieldDecl::datetime(RESOLUTION_DUE)
                .indexed()
                .description("When the resolution target breaches; empty when solved or paused"),
        )
        .field(FieldDecl::boolean(FIRST_REPLY_BREACHED).indexed())
        .field(FieldDecl::boolean(NEXT_REPLY_BREACHED).indexed().description("Whether any next-reply wait breached"))
        .field(FieldDecl::boolean(RESOLUTION_BREACHED).indexed())
        .field(FieldDecl::boolean(SLA_BREACHED).indexed().description("Whether any SLA target of the ticket breached"))
        .field(FieldDecl::datetime(FIRST_REPLY_AT).description("The first public reply of an agent"))
        .field(
            FieldDecl::integer(FIRST_REPLY_MINUTES)
                .description("SLA-clock minutes (business hours, pending excluded) to the first reply"),
        )
        .field(FieldDecl::datetime(LAST_AGENT_REPLY_AT))
        .field(FieldDecl::datetime(LAST_REQUESTER_REPLY_AT))
        .field(
            FieldDecl::datetime(AWAITING_SINCE).indexed().description("Since when the requester's message awaits the next reply"),
        )
        .field(FieldDecl::datetime(SOLVED_AT).indexed())
        .field(FieldDecl::datetime(CLOSED_AT))
        .field(
            FieldDecl::integer(RESOLUTION_MINUTES).description("SLA-clock minutes (business hours, pending excluded) to solved"),
        )
        .field(FieldDecl::integer(CSAT_RATING).indexed().description("The requester's satisfaction rating, 1 to 5"))
        .field(FieldDecl::long_text(CSAT_COMMENT))
        .field(FieldDecl::datetime(CSAT_SENT_AT))
        .field(FieldDecl::datetime(CSAT_RATED_AT))
        .field(FieldDecl::integer(ESCALATION_COUNT).description("Escalation rules applied so far"))
        .field(FieldDecl::datetime(ESCALATED_AT))
        .field(FieldDecl::text(LAST_ESCALATION).description("The name of the last escalation rule applied"))
        .field(FieldDecl::integer(CLOCK_MS).description("Bookkeeping: SLA-clock milliseconds run as of sla_clock_at"))
        .field(FieldDecl::datetime(CLOCK_AT).description("Bookkeeping: when sla_clock_ms was taken"))
        .field(
            FieldDecl::integer(NEXT_REPLY_CLOCK_MS)
                .description("Bookkeeping: the SLA clock when the current next-reply wait began"),
        )
}

fn comment_object() -> ObjectDecl {
    use comment::*;
    ObjectDecl::new(COMMENT)
        .description("A public reply or an internal note on a ticket's timeline")
        .field(FieldDecl::reference(TICKET, super::TICKET).required())
        .field(FieldDecl::long_text(BODY).required())
        .field(FieldDecl::enumeration(VISIBILITY, ["public", "internal"]).indexed().description("Defaults to internal"))
        .field(FieldDecl::enumeration(AUTHOR_KIND, ["agent", "requester", "system"]).indexed().description("Defaults to agent"))
        .field(FieldDecl::external_id(AUTHOR).indexed().description("The agent's user id"))
        .field(FieldDecl::text(MESSAGE).description("The outbound message that emailed a public agent reply"))
}

fn canned_object() -> ObjectDecl {
    ObjectDecl::new(CANNED)
        .description("A reusable reply with merge fields such as {{ticket.subject}} and {{requester.first_name}}")
        .field(FieldDecl::text("name").required().unique())
        .field(FieldDecl::long_text("body").required())
        .field(FieldDecl::text("category").indexed())
        .field(
            FieldDecl::enumeration("set_status", ["open", "pending", "solved"])
                .description("Status the ticket gets when the reply is applied"),
        )
}

fn article_object() -> ObjectDecl {
    ObjectDecl::new(ARTICLE)
        .description("A knowledge-base article; only published ones are found by search")
        .field(FieldDecl::text("title").required())
        .field(FieldDecl::long_text("body"))
        .field(FieldDecl::text("category").indexed())
        .field(FieldDecl::enumeration("status", ["draft", "published"]).indexed().description("Defaults to draft"))
        .field(FieldDecl::datetime("published_at").indexed())
        .field(FieldDecl::tags("tags"))
}

fn survey_object() -> ObjectDecl {
    use survey::*;
    ObjectDecl::new(SURVEY)
        .description("A CSAT or NPS survey sent to a contact, and the answer once given")
        .field(FieldDecl::enumeration(KIND, ["csat", "nps"]).required().indexed())
        .field(FieldDecl::reference(TICKET, super::TICKET).description("The solved ticket a CSAT survey asks about"))
        .field(FieldDecl::reference(CONTACT, "contact").required())
        .field(FieldDecl::text(TEAM).indexed().description("The ticket's team when the survey was sent"))
        .field(FieldDecl::external_id(ASSIGNEE).indexed().description("The ticket's agent when the survey was sent"))
        .field(FieldDecl::datetime(SENT_AT).indexed())
        .field(FieldDecl::text(MESSAGE).description("The outbound message that carried the survey"))
        .field(FieldDecl::datetime(RESPONDED_AT).indexed())
        .field(FieldDecl::integer(RATING).description("CSAT rating, 1 to 5"))
        .field(FieldDecl::integer(SCORE).description("NPS score, 0 to 10"))
        .field(
            FieldDecl::enumeration(CATEGORY, ["satisfied", "neutral", "dissatisfied", "promoter", "passive", "detractor"])
                .indexed()
                .description("CSAT 4-5 satisfied, 3 neutral, 1-2 dissatisfied; NPS 9-10 promoter, 7-8 passive, 0-6 detractor"),
        )
        .field(FieldDecl::long_text(COMMENT))
}

/// Every object the plugin declares.
pub fn declared() -> Vec<ObjectDecl> {
    vec![ticket_object(), comment_object(), canned_object(), article_object(), survey_object()]
}

/// The field added to companies.
pub fn company_tier() -> FieldDecl {
    FieldDecl::text(SUPPORT_TIER).indexed().description("Support tier (e.g. gold) that helpdesk SLA policies match on")
}
