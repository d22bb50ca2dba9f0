//! The options of a select field: a stable key (what records store), a
//! label, an optional colour, in the order the admin gave them.
//!
//! The `options` input of `define-field` and `change-field` is text in one
//! of two forms:
//!
//! - compact: items separated by commas or new lines, each
//!   `key[:label[:#colour]]`, e.g. `gold:Gold:#ffd700, silver:Silver, bronze`;
//!   a label may contain `:` but not `,` (use JSON for that);
//! - JSON: an array of such strings or of objects
//!   `{"key": "gold", "label": "Gold", "color": "#ffd700"}`, which is also
//!   how `list-fields` shows them.
//!
//! Keys are lowercase `[a-z][a-z0-9_]*` (the kernel's enumeration keys);
//! the label defaults to the key; a colour is `#rgb` or `#rrggbb`.

use crm_plugin_sdk::serde::{Deserialize, Serialize};
use crm_plugin_sdk::serde_json;

use crate::names;

/// Most options one field may have.
pub const MAX_OPTIONS: usize = 200;
const MAX_LABEL_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde")]
pub struct SelectOption {
    pub key: String,
    #[serde(default)]
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

#[derive(Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", untagged)]
enum JsonOption {
    Compact(String),
    Full {
        key: String,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        color: Option<String>,
    },
}

/// Parses and checks the `options` input; an error names the rule.
pub fn parse(text: &str) -> Result<Vec<SelectOption>, String> {
    let text = text.trim();
    let options: Vec<SelectOption> = if text.starts_with('[') {
        let items: Vec<JsonOption> = serde_json::from_str(text)
            .map_err(|error| format!("options: not a JSON array of strings or {{key, label, color}} objects: {error}"))?;
        items
            .into_iter()
            .map(|item| match item {
                JsonOption::Compact(text) => compact(&text),
                JsonOption::Full { key, label, color } => Ok(SelectOption {
                    key: key.trim().to_owned(),
                    label: label.map(|label| label.trim().to_owned()).unwrap_or_default(),
                    color: color.map(|color| color.trim().to_owned()).filter(|color| !color.is_empty()),
                }),
            })
            .collect::<Result<_, _>>()?
    } else {
        text.split([',', '\n']).map(str::trim).filter(|item| !item.is_empty()).map(compact).collect::<Result<_, _>>()?
    };
    check(options)
}

/// `key[:label[:#colour]]`.
fn compact(item: &str) -> Result<SelectOption, String> {
    let item = item.trim();
    let (key, rest) = item.split_once(':').unwrap_or((item, ""));
    let (label, color) = match rest.rsplit_once(':') {
        Some((label, color)) if color.trim().starts_with('#') => (label, Some(color.trim().to_owned())),
        _ if rest.trim().starts_with('#') && is_color(rest.trim()) => ("", Some(rest.trim().to_owned())),
        _ => (rest, None),
    };
    Ok(SelectOption { key: key.trim().to_owned(), label: label.trim().to_owned(), color })
}

fn check(mut options: Vec<SelectOption>) -> Result<Vec<SelectOption>, String> {
    if options.is_empty() {
        return Err("options: a select field needs at least one option".into());
    }
    if options.len() > MAX_OPTIONS {
        return Err(format!("options: at most {MAX_OPTIONS} options"));
    }
    for option in &mut options {
        if !names::is_name(&option.key) {
            return Err(format!("options: key '{}' must be lowercase a-z, 0-9 and '_', starting with a letter", option.key));
        }
        if option.label.is_empty() {
            option.label = option.key.clone();
        }
        if option.label.chars().count() > MAX_LABEL_CHARS {
            return Err(format!("options: the label of '{}' is longer than {MAX_LABEL_CHARS} characters", option.key));
        }
        if let Some(color) = &option.color
            && !is_color(color)
        {
            return Err(format!("options: colour '{color}' of '{}' is not #rgb or #rrggbb", option.key));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for option in &options {
        if !seen.insert(option.key.as_str()) {
            return Err(format!("options: key '{}' is given twice", option.key));
        }
    }
    Ok(options)
}

fn is_color(text: &str) -> bool {
    text.strip_prefix('#').is_some_and(|hex| (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(key: &str, label: &str, color: Option<&str>) -> SelectOption {
        SelectOption { key: key.into(), label: label.into(), color: color.map(String::from) }
    }

    #[test]
    fn compact_form_keeps_order_labels_and_colours() {
        let parsed = parse("gold:Gold:#ffd700, silver:Silver\nbronze, ratio:Ratio 1:2:#abc, plain:#fff").unwrap();
        assert_eq!(
            parsed,
            [
                option("gold", "Gold", Some("#ffd700")),
                option("silver", "Silver", None),
                option("bronze", "bronze", None),
                option("ratio", "Ratio 1:2", Some("#abc")),
                option("plain", "plain", Some("#fff")),
            ]
        );
    }

    #[test]
    fn json_form_takes_strings_and_objects() {
        let parsed =
            parse(r##"["new:New:#00ff00", {"key": "won", "label": "Won, finally", "color": "#0f0"}, {"key": "lost"}]"##).unwrap();
        assert_eq!(
            parsed,
            [option("new", "New", Some("#00ff00")), option("won", "Won, finally", Some("#0f0")), option("lost", "lost", None)]
        );
    }

    #[test]
    fn bad_options_name_the_rule() {
        for (text, expected) in [
            ("", "at least one option"),
            ("Gold", "key 'Gold'"),
            ("a, b, a", "'a' is given twice"),
            ("a:A:#12", "colour '#12'"),
            ("[1, 2]", "not a JSON array"),
            ("[{\"label\": \"x\"}]", "not a JSON array"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.starts_with("options: ") && error.contains(expected), "{text}: {error}");
        }
        let many: Vec<String> = (0..=MAX_OPTIONS).map(|i| format!("o{i}")).collect();
        assert!(parse(&many.join(",")).unwrap_err().contains("at most"));
    }
}
