//! The objects custom fields may be added to and the names already taken
//! on them.

use crm_plugin_sdk::standard::{SYSTEM_FIELDS, fields as standard_fields};

use crate::formula::Kind;

/// The standard objects. Custom fields go on these and on every object
/// another plugin declares (ticket, campaign, …): the manifest asks for
/// every object (`*`), which an admin grants when enabling the plugin.
pub const OBJECTS: [&str; 6] = ["company", "contact", "deal", "activity", "pipeline", "pipeline_stage"];

/// Names the GraphQL schema uses beside the fields: a record's `history`
/// and the `and`, `or` and `not` of its filter input.
const GRAPHQL_NAMES: [&str; 4] = ["history", "and", "or", "not"];

/// The record a standard reference leads to in GraphQL (`company_id` is
/// also `company { … }`): a field of that name would hide it.
fn standard_relations(object: &str) -> &'static [&'static str] {
    match object {
        "contact" => &["company"],
        "deal" => &["company", "contact", "pipeline"],
        "activity" => &["company", "contact", "deal"],
        "pipeline_stage" => &["pipeline"],
        _ => &[],
    }
}

/// What a formula on `object` sees when it reads the standard or system
/// field `name`: `None` if there is no such field.
pub fn standard_kind(object: &str, name: &str) -> Option<Result<Kind, String>> {
    if SYSTEM_FIELDS.contains(&name) {
        return Some(Err(format!("{name} is a system field, which formulas cannot read")));
    }
    if !standard_fields(object).contains(&name) {
        return None;
    }
    Some(Ok(match (object, name) {
        ("company", "employees" | "annual_revenue")
        | ("contact", "lead_score")
        | ("pipeline_stage", "position" | "probability")
        | ("deal", "amount" | "probability" | "expected_amount") => Kind::Number,
        ("contact", "email_opt_in" | "sms_opt_in")
        | ("pipeline", "is_default")
        | ("pipeline_stage", "is_closed" | "is_won")
        | ("activity", "done") => Kind::Boolean,
        ("deal", "close_date") => Kind::Date,
        ("activity", "occurred_at" | "due_at") | ("contact", "email_opt_in_at" | "sms_opt_in_at") => Kind::Datetime,
        ("contact", "tags") => return Some(Err(format!("{name} is a list of tags, which formulas cannot read"))),
        _ => Kind::Text,
    }))
}

/// Longest field name the kernel accepts.
pub const MAX_NAME_LEN: usize = 63;

/// `[a-z][a-z0-9_]*`, at most 63 bytes: the kernel's rule for field names
/// and enumeration keys.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `object` is an object of this tenant custom fields may go on:
/// a standard one, or one the host knows (declared by an enabled plugin).
/// The kernel's channel objects are not offered. The SDK's test host has no
/// metadata and knows every object, so natively any name is accepted.
pub fn is_object(object: &str) -> Result<bool, crm_plugin_sdk::Error> {
    if OBJECTS.contains(&object) {
        return Ok(true);
    }
    if !is_name(object) || ["outbound_message", "custom_event"].contains(&object) {
        return Ok(false);
    }
    match crm_plugin_sdk::records::count(object, "{}") {
        Ok(_) => Ok(true),
        Err(error) if error.is(crm_plugin_sdk::ErrorCode::Invalid) || error.is(crm_plugin_sdk::ErrorCode::NotFound) => Ok(false),
        Err(error) => Err(error),
    }
}

/// What already takes `name` on `object`, if anything does: a system or
/// standard field, a standard relation or the GraphQL schema.
pub fn reserved(object: &str, name: &str) -> Option<&'static str> {
    if SYSTEM_FIELDS.contains(&name) {
        Some("a system field")
    } else if standard_fields(object).contains(&name) {
        Some("a standard field")
    } else if standard_relations(object).contains(&name) {
        Some("the GraphQL name of a standard relation")
    } else if GRAPHQL_NAMES.contains(&name) {
        Some("a name the GraphQL schema uses")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_field_of_the_kernels_standard_objects_is_taken() {
        // Team, consent time and source fields came to the kernel after the
        // first objects; the SDK's list follows the kernel's metadata.
        for (object, name) in [("contact", "team_id"), ("contact", "email_opt_in_at"), ("company", "team_id"), ("deal", "team_id"), ("activity", "team_id")] {
            assert_eq!(reserved(object, name), Some("a standard field"), "{object}.{name}");
        }
        assert!(matches!(standard_kind("contact", "sms_opt_in_at"), Some(Ok(Kind::Datetime))));
        assert!(matches!(standard_kind("contact", "email_opt_in_source"), Some(Ok(Kind::Text))));
    }

    #[test]
    fn names_follow_the_kernel() {
        assert!(is_name("shoe_size") && is_name("a1"));
        for bad in ["", "1a", "_a", "Shoe", "shoe-size", "shoe size", &"a".repeat(64)] {
            assert!(!is_name(bad), "{bad}");
        }
        assert_eq!(reserved("contact", "email"), Some("a standard field"));
        assert_eq!(reserved("deal", "id"), Some("a system field"));
        assert_eq!(reserved("contact", "company"), Some("the GraphQL name of a standard relation"));
        assert_eq!(reserved("company", "history"), Some("a name the GraphQL schema uses"));
        assert_eq!(reserved("company", "email"), None);
        assert!(is_object("pipeline_stage").unwrap() && !is_object("outbound_message").unwrap() && !is_object("Ticket").unwrap());
    }
}
