//! The kernel's standard objects and their stored fields, known to a plugin
//! without asking the host (and the same under the SDK's test host, which
//! has no metadata). The kernel's test suite checks these lists against its
//! own metadata, so they follow it.

/// Names no plugin field may take: the fields every record has, kept by
/// the kernel, and `deleted`, the flag a record carries to plugins.
pub const SYSTEM_FIELDS: [&str; 6] = ["id", "version", "created_at", "updated_at", "deleted_at", "deleted"];

/// The standard objects a tenant always has.
pub const OBJECTS: [&str; 8] = ["company", "contact", "pipeline", "pipeline_stage", "deal", "activity", "custom_event", "outbound_message"];

/// The stored fields of standard `object`, in the kernel's order; empty for
/// any other object.
pub fn fields(object: &str) -> &'static [&'static str] {
    match object {
        "company" => &[
            "name",
            "domain",
            "industry",
            "employees",
            "annual_revenue",
            "phone",
            "website",
            "street",
            "city",
            "postal_code",
            "country",
            "owner_id",
            "team_id",
        ],
        "contact" => &[
            "first_name",
            "last_name",
            "email",
            "phone",
            "mobile",
            "title",
            "company_id",
            "lifecycle_stage",
            "lead_status",
            "owner_id",
            "team_id",
            "source",
            "lead_score",
            "email_opt_in",
            "email_opt_in_at",
            "email_opt_in_source",
            "sms_opt_in",
            "sms_opt_in_at",
            "sms_opt_in_source",
            "country",
            "tags",
        ],
        "pipeline" => &["name", "is_default"],
        "pipeline_stage" => &["pipeline_id", "key", "name", "position", "probability", "is_closed", "is_won"],
        "deal" => &[
            "name",
            "company_id",
            "contact_id",
            "pipeline_id",
            "stage",
            "amount",
            "currency",
            "close_date",
            "probability",
            "expected_amount",
            "owner_id",
            "team_id",
            "close_reason",
        ],
        "activity" => &[
            "kind",
            "subject",
            "body",
            "occurred_at",
            "due_at",
            "done",
            "direction",
            "company_id",
            "contact_id",
            "deal_id",
            "owner_id",
            "team_id",
        ],
        "custom_event" => &["name", "payload", "source"],
        "outbound_message" => &[
            "channel",
            "recipient",
            "subject",
            "body",
            "html",
            "status",
            "source",
            "sent_at",
            "error",
            "attempts",
            "retry_at",
        ],
        _ => &[],
    }
}
