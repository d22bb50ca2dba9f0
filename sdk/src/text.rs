//! Small text helpers plugins meet again and again when they write emails
//! and pages or read form input.

/// Text safe inside HTML elements and quoted attribute values.
///
/// ```
/// assert_eq!(crm_plugin_sdk::text::escape_html(r#"<a href="x">Tom & 'Jerry'</a>"#),
///            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
/// ```
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A plausible email address: something before one `@`, a dot inside the
/// domain, no spaces, at most 320 bytes. A shape check for input; the
/// kernel checks addresses again when it stores and delivers them.
pub fn is_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !text.contains(char::is_whitespace)
                && text.len() <= 320
        }
        None => false,
    }
}

/// Whether `text` has the shape of a kernel id (a ULID: 26 characters of
/// Crockford's base 32, the first at most 7), as record ids and the user ids
/// in `owner_id` and similar fields are.
pub fn is_id(text: &str) -> bool {
    text.len() == 26
        && text.starts_with(|first: char| ('0'..='7').contains(&first))
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || (c.is_ascii_alphabetic() && !matches!(c.to_ascii_uppercase(), 'I' | 'L' | 'O' | 'U')))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_ulids() {
        assert!(is_id("01HZY00000000000000000000A"));
        for bad in ["", "01HZY0000000000000000000A", "81HZY00000000000000000000A", "01HZY0000000000000000000IA", "01HZY00000000000000000000-"] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn addresses_need_a_local_part_and_a_dotted_domain() {
        for good in ["ada@example.com", "a.b+c@mail.example.co.uk"] {
            assert!(is_email(good), "{good}");
        }
        let long = format!("{}@example.com", "a".repeat(320));
        for bad in ["", "ada", "@example.com", "ada@example", "ada@.example.com", "ada@example.com.", "a@b@c.d", "ada @example.com", long.as_str()] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
