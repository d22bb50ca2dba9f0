//! GraphQL names derived from metadata names, so every object — standard or
//! plugin-defined — reads the same (DESIGN §6).

/// `first_name` → `firstName`.
pub fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for ch in snake.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// `pipeline_stage` → `PipelineStage`.
pub fn pascal(snake: &str) -> String {
    let camel = camel(snake);
    let mut chars = camel.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `firstName` → `first_name`.
pub fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for ch in camel.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Enum item for a field or option key: `lead_score` → `LEAD_SCORE`.
pub fn screaming(snake: &str) -> String {
    snake.to_ascii_uppercase()
}

/// The relation name of a reference field: `company_id` → `company`.
pub fn relation_name(field: &str) -> String {
    camel(field.strip_suffix("_id").unwrap_or(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(camel("first_name"), "firstName");
        assert_eq!(pascal("pipeline_stage"), "PipelineStage");
        assert_eq!(snake("firstName"), "first_name");
        assert_eq!(snake(&camel("annual_revenue")), "annual_revenue");
        assert_eq!(relation_name("company_id"), "company");
        assert_eq!(screaming("in_progress"), "IN_PROGRESS");
    }
}
