//! Merge fields: parsing, rendering with defaults and escaping, and
//! telling known fields from unknown ones.

use crate::merge::{self, Catalog, Part, Path, Values, display, parse, probe_answer};

use super::*;

#[test]
fn parses_fields_defaults_and_text() {
    let parsed = parse("Hi {{ contact.first_name | there }}, {{contact.company.name}}!{{unsubscribe_url}}").unwrap();
    assert_eq!(
        parsed.0,
        [
            Part::Text("Hi ".into()),
            Part::Merge { path: Path::Contact("first_name".into()), default: Some("there".into()) },
            Part::Text(", ".into()),
            Part::Merge { path: Path::Company("name".into()), default: None },
            Part::Text("!".into()),
            Part::Merge { path: Path::UnsubscribeUrl, default: None },
        ]
    );
    assert!(parsed.needs_company());
    assert!(parsed.uses(&Path::UnsubscribeUrl));
    assert_eq!(parse("no fields").unwrap().0, [Part::Text("no fields".into())]);
    assert_eq!(parse("").unwrap().0, []);
}

#[test]
fn malformed_or_unknown_merge_fields_are_errors_naming_them() {
    assert_eq!(parse("Hi {{contact.first_name").unwrap_err(), "merge field '{{contact.first_name' is not closed with '}}'");
    let unknown = parse("{{ deal.amount }}").unwrap_err();
    assert!(unknown.starts_with("unknown merge field {{deal.amount}}: use contact."), "{unknown}");
    assert!(parse("{{}}").unwrap_err().starts_with("unknown merge field {{}}"));
    assert!(parse("{{contact.First}}").is_err(), "field names are lower case");
    assert!(parse("{{contact.company.a.b}}").is_err());
    assert!(parse("{{contact}}").is_err());
}

#[test]
fn renders_values_defaults_and_escapes_html() {
    let contact = Fields::new().with("first_name", "Ada & <Bob>").with("lead_score", 42).with("tags", vec!["a", "b"]);
    let company = Fields::new().with("name", "Analytical Engines");
    let values = Values { contact: &contact, company: Some(&company), unsubscribe_url: "https://x/u?t=1&2" };
    let parsed = parse("{{contact.first_name}}|{{contact.last_name|friend}}|{{contact.title}}|{{contact.lead_score}}|{{contact.tags}}|{{contact.company.name}}|{{unsubscribe_url}}").unwrap();
    assert_eq!(parsed.render(&values, false), "Ada & <Bob>|friend||42|a, b|Analytical Engines|https://x/u?t=1&2");
    assert_eq!(parsed.render(&values, true), "Ada &amp; &lt;Bob&gt;|friend||42|a, b|Analytical Engines|https://x/u?t=1&amp;2");
    let no_company = Values { contact: &contact, company: None, unsubscribe_url: "" };
    assert_eq!(parse("{{contact.company.name|your team}}").unwrap().render(&no_company, false), "your team");
}

#[test]
fn values_display_as_text() {
    assert_eq!(display(&Value::Null), None);
    assert_eq!(display(&Value::from("")), None);
    assert_eq!(display(&Value::Float(1200.0)).as_deref(), Some("1200"));
    assert_eq!(display(&Value::Float(2.5)).as_deref(), Some("2.5"));
    assert_eq!(display(&Value::Bool(true)).as_deref(), Some("true"));
    assert_eq!(display(&Value::Texts(vec![])), None);
}

#[test]
fn standard_fields_are_known_without_asking_and_probes_read_the_hosts_answer() {
    let host = TestHost::new();
    host.make_current();
    let mut catalog = Catalog::default();
    assert!(catalog.has("contact", "first_name").unwrap());
    assert!(catalog.has("company", "annual_revenue").unwrap());
    // The kernel refuses a filter on a field it does not have (`invalid`)
    // or may not show the plugin (`forbidden`): such a field is unknown.
    let refused = |code| Err(Error::host(code, "contact has no field 'favourite_color'"));
    assert!(!probe_answer(refused(ErrorCode::Invalid)).unwrap());
    assert!(!probe_answer(refused(ErrorCode::Forbidden)).unwrap());
    assert!(probe_answer(Ok(crm_plugin_sdk::Page::default())).unwrap());
    assert!(probe_answer(refused(ErrorCode::Unavailable)).is_err(), "a host failure is not an answer");
}

#[test]
fn check_texts_reports_the_first_problem_with_its_field() {
    let host = TestHost::new();
    host.make_current();
    let mut catalog = Catalog::default();
    let ok = merge::check_texts(
        &[("subject", "Hi {{contact.first_name}}"), ("html", "{{contact.company.name}} {{unsubscribe_url}}")],
        &mut catalog,
    )
    .unwrap()
    .unwrap();
    assert_eq!(ok, ["contact.company.name", "contact.first_name", "unsubscribe_url"]);
    let (field, message) =
        merge::check_texts(&[("subject", "ok"), ("html", "{{contact.first_name")], &mut catalog).unwrap().unwrap_err();
    assert_eq!(field, "html");
    assert!(message.contains("not closed"), "{message}");
}
