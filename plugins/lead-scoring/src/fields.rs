//! The fields the plugin adds to contacts and the object it declares for
//! score history.

use crm_plugin_sdk::prelude::*;

pub const FIT: &str = "fit_score";
pub const ENGAGEMENT: &str = "engagement_score";
pub const TOTAL: &str = "total_score";
pub const GRADE: &str = "score_grade";
pub const SCORED_AT: &str = "scored_at";
pub const PREDICTIVE: &str = "predictive_score";
pub const REASON: &str = "score_reason";
pub const PREVIOUS: &str = "score_previous";
pub const THRESHOLD: &str = "score_threshold";
pub const ACTED: &str = "score_threshold_acted";

/// The history object.
pub const HISTORY: &str = "score_change";

/// Contact fields whose change calls for a new score: those the fit rules
/// read, and the engagement that after-commit and the backfill write.
pub const INPUTS: [&str; 5] = ["title", "country", "company_id", ENGAGEMENT, SCORED_AT];

/// Every field the plugin adds to `contact`.
pub fn contact_fields() -> Vec<FieldDecl> {
    vec![
        FieldDecl::integer(FIT).indexed().description("Points from the fit rules"),
        FieldDecl::float(ENGAGEMENT).description("Points from activities and events, decayed by age, as of scored_at"),
        FieldDecl::integer(TOTAL).indexed().description("Fit plus engagement, rounded"),
        FieldDecl::enumeration(GRADE, ["a", "b", "c", "d"]).indexed().description("The grade band of the total score"),
        FieldDecl::datetime(SCORED_AT).description("When the scores were last computed"),
        FieldDecl::integer(PREDICTIVE)
            .indexed()
            .description("Chance of winning in percent, from the trained model; empty while no usable model exists"),
        FieldDecl::text(REASON).description("Why the score last changed"),
        FieldDecl::integer(PREVIOUS).description("The total score before the last scoring"),
        FieldDecl::text(THRESHOLD).description("The highest threshold the total score reaches"),
        FieldDecl::text(ACTED).description("The highest threshold whose owner assignment and event were done"),
    ]
}

/// The score history object: one record per change of a contact's total.
pub fn history_object() -> ObjectDecl {
    ObjectDecl::new(HISTORY)
        .description("A change of a contact's lead score")
        .field(FieldDecl::reference("contact_id", "contact").required())
        .field(FieldDecl::integer("old_score"))
        .field(FieldDecl::integer("new_score").required())
        .field(FieldDecl::integer(FIT))
        .field(FieldDecl::float(ENGAGEMENT))
        .field(FieldDecl::enumeration("grade", ["a", "b", "c", "d"]))
        .field(FieldDecl::text("reason"))
        .field(FieldDecl::datetime(SCORED_AT).indexed())
        .field(FieldDecl::text("key").unique().description("contact id and scoring time: one record per scoring"))
}

/// The contact fields the plugin writes (its own, and the stage and owner
/// thresholds set).
pub fn writable() -> Vec<&'static str> {
    vec![FIT, ENGAGEMENT, TOTAL, GRADE, SCORED_AT, PREDICTIVE, REASON, PREVIOUS, THRESHOLD, ACTED, "lifecycle_stage", "owner_id"]
}
