//! The objects the plugin declares and the names of their fields. Every
//! object is stored, indexed, permissioned and exposed over GraphQL by the
//! kernel like a standard one (`campaign` becomes `campaign(id)`,
//! `campaigns(…)`, `createCampaign(…)`, …).
//!
//! Counters (`sent_count`, …) and times written by the plugin are plain
//! fields so clients filter and sort on them; a before-write hook keeps
//! clients from writing them (see `guards`).

use crm_plugin_sdk::prelude::*;

pub const SEGMENT: &str = "segment";
pub const TEMPLATE: &str = "email_template";
pub const CAMPAIGN: &str = "campaign";
pub const SEND: &str = "campaign_send";
pub const SEQUENCE: &str = "sequence";
pub const STEP: &str = "sequence_step";
pub const ENROLLMENT: &str = "sequence_enrollment";

/// The analytics counters of a campaign and of a sequence step, each the
/// number of messages (sends) that reached the state.
pub const COUNTERS: [&str; 7] =
    ["sent_count", "delivered_count", "opened_count", "clicked_count", "unsubscribed_count", "bounced_count", "failed_count"];

/// Campaign statuses.
pub const DRAFT: &str = "draft";
pub const SENDING: &str = "sending";
pub const SENT: &str = "sent";
pub const CANCELLED: &str = "cancelled";

/// Send statuses: reserved before the message is handed to the outbound
/// channel (`pending`), handed over (`queued`), then what the transport
/// reported.
pub const PENDING: &str = "pending";
pub const QUEUED: &str = "queued";
pub const DELIVERED: &str = "delivered";
pub const BOUNCED: &str = "bounced";
pub const FAILED: &str = "failed";

/// Enrolment statuses.
pub const ACTIVE: &str = "active";
pub const COMPLETED: &str = "completed";
pub const EXITED: &str = "exited";

/// Why an enrolment ended early.
pub const EXIT_REASONS: [&str; 7] =
    ["replied", "unsubscribed", "deal_created", "not_emailable", "contact_deleted", "manual", "sequence_archived"];

fn counters(object: ObjectDecl, what: &str) -> ObjectDecl {
    let descriptions = [
        "handed to the outbound channel",
        "accepted by the receiving mail server",
        "opened (tracking pixel loaded or a link clicked)",
        "with a link clicked",
        "whose recipient unsubscribed through the message",
        "rejected permanently by the receiving mail server",
        "given up by the outbound channel",
    ];
    COUNTERS.iter().zip(descriptions).fold(object, |object, (name, description)| {
        object
            .field(FieldDecl::integer(*name).description(format!("Messages of this {what} {description}; written by the plugin")))
    })
}

pub fn segment() -> ObjectDecl {
    ObjectDecl::new(SEGMENT)
        .description("A saved filter over contacts")
        .field(FieldDecl::text("name").required().indexed())
        .field(FieldDecl::long_text("description"))
        .field(FieldDecl::long_text("filter").required().description(
            "JSON in the kernel filter language over contacts, with stored field names, e.g. {\"lifecycle_stage\": {\"eq\": \"lead\"}}; {} is every contact",
        ))
        .field(FieldDecl::integer("member_count").description("Contacts matching the filter when last counted; written by the plugin"))
        .field(FieldDecl::datetime("counted_at").description("When member_count was computed"))
        .field(FieldDecl::reference("auto_enroll_sequence_id", "sequence").description(
            "Contacts that match the filter after a create or update are enrolled in this sequence (once per contact and sequence)",
        ))
}

pub fn template() -> ObjectDecl {
    ObjectDecl::new(TEMPLATE)
        .description("An email with merge fields such as {{contact.first_name|there}}")
        .field(FieldDecl::text("name").required().indexed())
        .field(FieldDecl::text("subject").required())
        .field(FieldDecl::long_text("html").required())
        .field(FieldDecl::long_text("text").description("The plain-text part; derived from html when empty"))
        .field(FieldDecl::tags("merge_fields").description("The merge fields the template uses; written by the plugin"))
}

pub fn campaign() -> ObjectDecl {
    let object =
        ObjectDecl::new(CAMPAIGN)
            .description("An email sent once to the consenting members of a segment")
            .field(FieldDecl::text("name").required().indexed())
            .field(FieldDecl::reference("segment_id", SEGMENT))
            .field(FieldDecl::reference("template_id", TEMPLATE))
            .field(
                FieldDecl::enumeration("status", [DRAFT, SENDING, SENT, CANCELLED])
                    .indexed()
                    .description("draft until sent; set by the send and cancel actions (clients may set cancelled)"),
            )
            .field(FieldDecl::integer("throttle_per_minute").description(
                "Messages per minute at most; empty uses the configured default_throttle_per_minute, 0 means no limit",
            ))
            .field(FieldDecl::integer("segment_count").description("Segment members when the send started"))
            .field(
                FieldDecl::integer("eligible_count")
                    .description("Segment members with an email address and email_opt_in true when the send started"),
            )
            .field(FieldDecl::datetime("started_at"))
            .field(FieldDecl::datetime("finished_at").description("When the last batch was handed to the outbound channel"))
            .field(FieldDecl::text("last_error").description("Why sending stopped, when it did"));
    counters(object, "campaign")
}

pub fn send() -> ObjectDecl {
    ObjectDecl::new(SEND)
        .description("One email of a campaign or a sequence step to one contact, with its delivery and engagement")
        .field(FieldDecl::text("key").required().unique().description(
            "c:<campaign id>:<contact id> or s:<step id>:<enrolment id>: one message per contact and campaign or step",
        ))
        .field(FieldDecl::reference("contact_id", "contact").required())
        .field(FieldDecl::reference("campaign_id", CAMPAIGN))
        .field(FieldDecl::reference("sequence_id", SEQUENCE))
        .field(FieldDecl::reference("sequence_step_id", STEP))
        .field(FieldDecl::reference("enrollment_id", ENROLLMENT))
        .field(FieldDecl::email("email").description("The address the message went to"))
        .field(FieldDecl::text("subject").description("The subject as sent, merge fields filled in"))
        .field(FieldDecl::text("message_id").indexed().description("The outbound_message record of the email"))
        .field(FieldDecl::enumeration("status", [PENDING, QUEUED, DELIVERED, BOUNCED, FAILED]).indexed())
        .field(FieldDecl::datetime("sent_at").description("When the message was handed to the outbound channel"))
        .field(FieldDecl::datetime("delivered_at"))
        .field(FieldDecl::datetime("opened_at").description("First open"))
        .field(FieldDecl::datetime("last_opened_at"))
        .field(FieldDecl::integer("open_count"))
        .field(FieldDecl::datetime("clicked_at").description("First click"))
        .field(FieldDecl::datetime("last_clicked_at"))
        .field(FieldDecl::integer("click_count"))
        .field(FieldDecl::datetime("unsubscribed_at"))
        .field(FieldDecl::datetime("bounced_at"))
        .field(FieldDecl::text("error").description("What the outbound channel reported for a bounce or failure"))
}

pub fn sequence() -> ObjectDecl {
    ObjectDecl::new(SEQUENCE)
        .description("Steps (emails, tasks, waits) run one after another for each enrolled contact")
        .field(FieldDecl::text("name").required().indexed())
        .field(FieldDecl::long_text("description"))
        .field(
            FieldDecl::enumeration("status", [ACTIVE, "paused", "archived"])
                .indexed()
                .description("active (the default), paused (due steps wait) or archived (enrolments end)"),
        )
}

pub fn step() -> ObjectDecl {
    let object = ObjectDecl::new(STEP)
        .description("One step of a sequence")
        .field(FieldDecl::reference("sequence_id", SEQUENCE).required())
        .field(FieldDecl::integer("position").required().indexed().description("Steps run in ascending position"))
        .field(FieldDecl::enumeration("kind", ["email", "task", "wait"]).required())
        .field(FieldDecl::integer("delay_minutes").description("Minutes to wait before this step, after the previous one (default 0)"))
        .field(FieldDecl::reference("template_id", TEMPLATE).description("The email of an email step"))
        .field(FieldDecl::text("task_subject").description(
            "The subject of a task step's task (merge fields allowed); default \"Follow up with {{contact.first_name|the contact}}\"",
        ))
        .field(FieldDecl::long_text("task_body"))
        .field(FieldDecl::integer("task_due_minutes").description("The task is due this many minutes after it is created (default 0)"));
    counters(object, "step")
}

pub fn enrollment() -> ObjectDecl {
    ObjectDecl::new(ENROLLMENT)
        .description("A contact going through a sequence")
        .field(FieldDecl::reference("sequence_id", SEQUENCE).required())
        .field(FieldDecl::reference("contact_id", "contact").required())
        .field(FieldDecl::enumeration("status", [ACTIVE, COMPLETED, EXITED]).indexed())
        .field(
            FieldDecl::text("active_key")
                .unique()
                .description("<sequence id>:<contact id> while active, so a contact is in a sequence at most once at a time"),
        )
        .field(FieldDecl::integer("last_position").description("The position of the last step done"))
        .field(FieldDecl::datetime("next_run_at").description("When the next step is due"))
        .field(FieldDecl::datetime("enrolled_at"))
        .field(FieldDecl::datetime("finished_at"))
        .field(FieldDecl::enumeration("exit_reason", EXIT_REASONS))
        .field(FieldDecl::text("source").description("action, or segment:<segment id> for an automatic enrolment"))
        .field(FieldDecl::text("last_error").description("Why the last due step could not run (it is tried again an hour later)"))
}

/// Every object, in declaration order (referenced objects may come later;
/// the kernel resolves references over the whole manifest).
pub fn all() -> Vec<ObjectDecl> {
    vec![segment(), template(), campaign(), send(), sequence(), step(), enrollment()]
}
