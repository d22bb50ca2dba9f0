//! Templates: merge fields checked on save, recorded, and rendered into
//! messages.

use crate::compose;
use crate::merge::{Catalog, with_system_fields};
use crate::templates::Template;
use crate::tracking::Links;

use super::*;

#[test]
fn saving_a_template_records_its_merge_fields() {
    let host = TestHost::new();
    let saved = template(
        &host,
        "Hi {{contact.first_name|there}}",
        "<p>{{contact.company.name}}</p><a href=\"{{unsubscribe_url}}\">x</a>",
    );
    assert_eq!(
        saved.texts("merge_fields"),
        Some(&["contact.company.name".to_owned(), "contact.first_name".to_owned(), "unsubscribe_url".to_owned()][..])
    );
    let edited = Change::update(
        "email_template",
        &saved.id,
        saved.fields.clone(),
        saved.fields.clone().with("subject", "Plain subject").with("html", "<p>Hi</p>").with("text", "Hi {{contact.last_name}}"),
    );
    let stored = host.write(&Marketing, edited).unwrap();
    assert_eq!(stored.texts("merge_fields"), Some(&["contact.last_name".to_owned()][..]));
}

#[test]
fn an_unknown_or_broken_merge_field_is_refused_with_its_field() {
    let host = TestHost::new();
    let save = |subject: &str, html: &str, text: &str| {
        let fields = [("name", "T"), ("subject", subject), ("html", html), ("text", text)];
        host.write(&Marketing, Change::create("email_template", fields)).unwrap_err().to_string()
    };
    assert!(save("Hi {{lead.name}}", "<p/>", "").starts_with("invalid: subject: unknown merge field {{lead.name}}"));
    assert!(save("Hi", "<p>{{contact.first_name</p>", "").starts_with("invalid: html: merge field"));
    assert!(save("Hi", "<p/>", "{{ unsubscribe }}").starts_with("invalid: text: unknown merge field {{unsubscribe}}"));
    assert!(host.records("email_template").is_empty(), "nothing saved");
}

#[test]
fn a_template_renders_for_a_recipient_with_tracking_and_an_unsubscribe_footer() {
    let host = TestHost::new();
    let company = host.insert("company", [("name", "Analytical Engines")]);
    let ada = contact_with(
        &host,
        "Ada",
        Some("ada@example.com"),
        Some(true),
        Fields::new().with("company_id", Value::Id(company.id.clone())),
    );
    let record = template(
        &host,
        "Hello\n{{contact.first_name}}",
        "<html><body><p>Hi {{contact.first_name}} of {{contact.company.name}}</p><a href=\"https://example.com/offer?a=1&amp;b=2\">Offer</a> <a href=\"mailto:sales@example.com\">Mail us</a></body></html>",
    );
    host.make_current();
    let template = Template::load("template_id", &record.id, &mut Catalog::default()).unwrap();
    assert!(template.needs_company());
    let links = Links { base: BASE.into() };
    let company_fields = with_system_fields(&company);
    let message = compose::compose(&template, &with_system_fields(&ada), Some(&company_fields), Some((&links, "SEND1"))).unwrap();
    assert_eq!(message.subject, "Hello Ada", "subjects are one line");
    let long = with_system_fields(&ada).with("first_name", "x".repeat(5000));
    let subject = compose::subject(&template, &long, None);
    assert_eq!(subject.chars().count(), compose::MAX_SUBJECT_CHARS);
    assert!(subject.ends_with('…'));
    assert!(message.html.contains("Hi Ada of Analytical Engines"), "{}", message.html);
    assert!(message.html.contains("href=\"mailto:sales@example.com\""), "mailto links are left alone");
    assert!(!message.html.contains("href=\"https://example.com/offer"), "tracked links do not show the target");
    let click = link(&message.html, "/click");
    let unsubscribe = link(&message.html, "/unsubscribe");
    let pixel = link(&message.html, "/open");
    assert!(
        message.html.find(&crate::html::escape(&pixel)).unwrap() < message.html.find("</body>").unwrap(),
        "pixel inside the body"
    );
    // The text part is derived from the HTML, links included.
    assert!(message.text.starts_with("Hi Ada of Analytical Engines\n\nOffer ("), "{}", message.text);
    assert!(message.text.contains(&format!("({click})")));
    assert!(message.text.contains(&format!("Unsubscribe ({unsubscribe})")), "{}", message.text);
    // Without tracking (a preview) nothing points at the routes.
    let preview = compose::compose(&template, &with_system_fields(&ada), Some(&company_fields), None).unwrap();
    assert!(!preview.html.contains(BASE) && preview.html.contains("https://example.com/offer?a=1&amp;b=2"));
}

#[test]
fn an_explicit_text_part_is_used_with_the_unsubscribe_link_once() {
    let host = TestHost::new();
    let ada = contact(&host, "Ada", Some("ada@example.com"), Some(true));
    let fields = [
        ("name", "T"),
        ("subject", "S"),
        ("html", "<p>Bye: <a href=\"{{unsubscribe_url}}\">here</a></p>"),
        ("text", "Hi {{contact.first_name}}"),
    ];
    let record = host.write(&Marketing, Change::create("email_template", fields)).unwrap();
    host.make_current();
    let template = Template::load("template_id", &record.id, &mut Catalog::default()).unwrap();
    let links = Links { base: BASE.into() };
    let message = compose::compose(&template, &with_system_fields(&ada), None, Some((&links, "SEND1"))).unwrap();
    let unsubscribe = link(&message.html, "/unsubscribe");
    assert_eq!(message.html.matches("/unsubscribe?").count(), 1, "the template's own link, no footer: {}", message.html);
    assert!(!message.html.contains("/click?"), "the unsubscribe link is not wrapped in a click redirect");
    assert_eq!(message.text, format!("Hi Ada\n\nUnsubscribe: {unsubscribe}"));
}
