//! The actions, exposed as GraphQL mutations `marketing<Action>`:
//! `marketingSend`, `marketingCancel`, `marketingStats`,
//! `marketingSegmentCount`, `marketingPreview`, `marketingEnroll`,
//! `marketingUnenroll` and `marketingAttribution`.

use crm_plugin_sdk::prelude::*;

use crate::attribution::{self, Scope};
use crate::campaigns;
use crate::compose;
use crate::config::Config;
use crate::counters;
use crate::merge::{Catalog, with_system_fields};
use crate::objects::{
    ACTIVE, CAMPAIGN, CANCELLED, COMPLETED, COUNTERS, DRAFT, ENROLLMENT, EXITED, SENDING, SENT, STEP, TEMPLATE,
};
use crate::segments::{self, Segment};
use crate::sequences;
use crate::templates::Template;

fn campaign_output(action: ActionDecl) -> ActionDecl {
    action
        .output(FieldDecl::reference("campaign_id", CAMPAIGN))
        .output(FieldDecl::enumeration("status", [DRAFT, SENDING, SENT, CANCELLED]))
        .output(FieldDecl::integer("segment_count").description("Segment members when the send started"))
        .output(
            FieldDecl::integer("eligible_count").description("Members with an email address and consent when the send started"),
        )
        .output(FieldDecl::integer("sent_count"))
}

/// The actions the manifest declares.
pub fn decls() -> Vec<ActionDecl> {
    let mut stats = ActionDecl::new("stats")
        .description("Recounts a campaign's or a sequence step's analytics from its send records, stores and returns them")
        .input(FieldDecl::reference("campaign_id", CAMPAIGN))
        .input(FieldDecl::reference("sequence_step_id", STEP));
    for counter in COUNTERS {
        stats = stats.output(FieldDecl::integer(counter));
    }
    vec![
        campaign_output(
            ActionDecl::new("send")
                .description("Starts sending a campaign to the consenting members of its segment, in throttled batches")
                .input(FieldDecl::reference("campaign_id", CAMPAIGN).required()),
        ),
        campaign_output(
            ActionDecl::new("cancel")
                .description("Stops a campaign: no further batch is sent")
                .input(FieldDecl::reference("campaign_id", CAMPAIGN).required()),
        ),
        stats,
        ActionDecl::new("segment-count")
            .description("Counts a segment's members now (and stores the count on it), or the contacts a filter matches")
            .input(FieldDecl::reference("segment_id", crate::objects::SEGMENT))
            .input(FieldDecl::long_text("filter").description("A filter to try without saving it"))
            .output(FieldDecl::integer("count").description("Contacts matching"))
            .output(FieldDecl::integer("eligible").description("Of those, with an email address and email_opt_in true")),
        ActionDecl::new("preview")
            .description("Renders a template for a contact, without tracking and without sending")
            .input(FieldDecl::reference("template_id", TEMPLATE).required())
            .input(FieldDecl::reference("contact_id", "contact").required())
            .output(FieldDecl::text("subject"))
            .output(FieldDecl::long_text("html"))
            .output(FieldDecl::long_text("text")),
        ActionDecl::new("enroll")
            .description("Enrols a contact in a sequence; a contact already active in it keeps that enrolment")
            .input(FieldDecl::reference("sequence_id", crate::objects::SEQUENCE).required())
            .input(FieldDecl::reference("contact_id", "contact").required())
            .output(FieldDecl::reference("enrollment_id", ENROLLMENT))
            .output(FieldDecl::boolean("created").description("false when the contact was already active in the sequence"))
            .output(FieldDecl::enumeration("status", [ACTIVE, COMPLETED, EXITED])),
        ActionDecl::new("unenroll")
            .description("Ends an enrolment (exit reason manual)")
            .input(FieldDecl::reference("enrollment_id", ENROLLMENT).required())
            .output(FieldDecl::boolean("ended").description("false when it had ended already"))
            .output(FieldDecl::enumeration("status", [ACTIVE, COMPLETED, EXITED])),
        ActionDecl::new("attribution")
            .description("Sums won deal amounts and splits each equally between the campaigns its contact opened or clicked within the window before it was won")
            .input(FieldDecl::integer("window_days").description("Days before the win that count (default: the configured attribution_window_days)"))
            .input(FieldDecl::datetime("won_from").description("Only deals won at or after this time"))
            .input(FieldDecl::datetime("won_to").description("Only deals won at or before this time"))
            .output(FieldDecl::integer("won_deals"))
            .output(FieldDecl::float("won_amount"))
            .output(FieldDecl::integer("attributed_deals").description("Won deals with at least one engaged campaign"))
            .output(FieldDecl::float("attributed_amount"))
            .output(FieldDecl::integer("window_days"))
            .output(FieldDecl::long_text("campaigns").description(
                "JSON: [{campaign_id, name, deals, amount}], largest amount first",
            )),
    ]
}

/// Action output without its empty values: an absent output field reads
/// as `null` in GraphQL, whatever its type.
fn present(mut output: Fields) -> Fields {
    output.retain(|_, value| !value.is_null());
    output
}

pub fn invoke(ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
    let config = Config::load(ctx)?;
    answer(&config, action, input).map(present)
}

fn required<'a>(input: &'a Fields, field: &str) -> Result<&'a str> {
    input.id(field).filter(|id| !id.is_empty()).ok_or_else(|| Error::msg(format!("{field}: is required")))
}

fn answer(config: &Config, action: &str, input: &Fields) -> Result<Fields> {
    match action {
        "send" => campaigns::send(required(input, "campaign_id")?),
        "cancel" => campaigns::cancel(required(input, "campaign_id")?),
        "stats" => match (input.id("campaign_id"), input.id("sequence_step_id")) {
            (Some(campaign), None) => {
                exists(CAMPAIGN, "campaign_id", campaign).and_then(|_| counters::recount(CAMPAIGN, campaign))
            }
            (None, Some(step)) => exists(STEP, "sequence_step_id", step).and_then(|_| counters::recount(STEP, step)),
            _ => Err(Error::msg("campaign_id or sequence_step_id: give exactly one")),
        },
        "segment-count" => match (input.id("segment_id"), input.text("filter")) {
            (Some(id), None) => {
                let segment = Segment::load("segment_id", id)?;
                let count = segment.refresh()?;
                Ok(Fields::new().with("count", count as i64).with("eligible", segment.count_eligible()? as i64))
            }
            (None, Some(filter)) => {
                let filter = segments::parse_filter(filter).map_err(|error| Error::msg(format!("filter: {error}")))?;
                let segment = Segment { id: String::new(), filter, auto_enroll_sequence_id: None };
                let count = segment.count().map_err(|error| Error::msg(format!("filter: {}", error.message())))?;
                Ok(Fields::new().with("count", count as i64).with("eligible", segment.count_eligible()? as i64))
            }
            _ => Err(Error::msg("segment_id or filter: give exactly one")),
        },
        "preview" => {
            let template = Template::load("template_id", required(input, "template_id")?, &mut Catalog::default())?;
            let contact_id = required(input, "contact_id")?;
            let contact = records::get("contact", contact_id)?
                .filter(|record| !record.deleted)
                .ok_or_else(|| Error::msg(format!("contact_id: there is no contact {contact_id}")))?;
            let company = match contact.id("company_id") {
                Some(id) => {
                    records::get("company", id)?.filter(|record| !record.deleted).map(|record| with_system_fields(&record))
                }
                None => None,
            };
            let message = compose::compose(&template, &with_system_fields(&contact), company.as_ref(), None)?;
            Ok(Fields::new().with("subject", message.subject).with("html", message.html).with("text", message.text))
        }
        "enroll" => {
            let (enrollment, created) =
                sequences::enroll(required(input, "sequence_id")?, required(input, "contact_id")?, "action")?;
            Ok(Fields::new()
                .with("enrollment_id", Value::Id(enrollment.id.clone()))
                .with("created", created)
                .with("status", enrollment.text("status").unwrap_or(ACTIVE)))
        }
        "unenroll" => {
            let id = required(input, "enrollment_id")?;
            exists(ENROLLMENT, "enrollment_id", id)?;
            let ended = sequences::finish(id, Some("manual"))?;
            let status = records::get(ENROLLMENT, id)?.and_then(|record| record.text("status").map(str::to_owned));
            Ok(Fields::new().with("ended", ended).with("status", status))
        }
        "attribution" => {
            let window_days = match input.int("window_days") {
                None => i64::from(config.attribution_window_days),
                Some(days) if (1..=3650).contains(&days) => days,
                Some(days) => return Err(Error::msg(format!("window_days: {days} is not between 1 and 3650"))),
            };
            attribution::attribute(&Scope { window_days, won_from: input.int("won_from"), won_to: input.int("won_to") })
        }
        other => Err(Error::unknown_action(other)),
    }
}

fn exists(object: &str, field: &str, id: &str) -> Result<Record> {
    records::get(object, id)?
        .filter(|record| !record.deleted)
        .ok_or_else(|| Error::msg(format!("{field}: there is no {object} {id}")))
}
