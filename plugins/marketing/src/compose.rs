//! Building one recipient's message from a template: merge fields filled
//! in, the unsubscribe link (the template's `{{unsubscribe_url}}` or an
//! added footer), links rewritten through the click redirect, the open
//! pixel, and the plain-text part.

use crm_plugin_sdk::prelude::*;

use crate::html;
use crate::merge::{Path, Values};
use crate::templates::Template;
use crate::tracking::{self, Links};

/// A message ready for the outbound channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Longest subject sent: the line length email allows (RFC 5322).
pub const MAX_SUBJECT_CHARS: usize = 998;

/// The subject for a recipient, on one line and at most
/// [`MAX_SUBJECT_CHARS`] long (a merge field may hold anything).
pub fn subject(template: &Template, contact: &Fields, company: Option<&Fields>) -> String {
    let values = Values { contact, company, unsubscribe_url: "" };
    let subject = template.subject.render(&values, false);
    let line = subject.split(['\r', '\n']).map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ");
    crate::timeline::truncate(&line, MAX_SUBJECT_CHARS)
}

/// The body for a recipient. With `tracking` (the links and the send
/// record's id) links and the pixel are tracked; without, the message is a
/// preview whose unsubscribe link goes nowhere.
pub fn body(
    template: &Template,
    contact: &Fields,
    company: Option<&Fields>,
    tracking: Option<(&Links, &str)>,
) -> Result<(String, String)> {
    let unsubscribe_url = match tracking {
        Some((links, send)) => links.unsubscribe(send)?,
        None => "#unsubscribe".to_owned(),
    };
    let values = Values { contact, company, unsubscribe_url: &unsubscribe_url };
    let mut html = template.html.render(&values, true);
    if !template.html.uses(&Path::UnsubscribeUrl) {
        html = html::insert_before_body_end(&html, &tracking::unsubscribe_footer(&unsubscribe_url));
    }
    if let Some((links, send)) = tracking {
        html = links.instrument(&html, send)?;
    }
    let text = match &template.text {
        Some(text) => {
            let mut text = text.render(&values, false);
            if !template.text.as_ref().is_some_and(|parsed| parsed.uses(&Path::UnsubscribeUrl)) {
                text.push_str(&format!("\n\nUnsubscribe: {unsubscribe_url}"));
            }
            text
        }
        None => html::to_text(&html),
    };
    Ok((html, text))
}

/// Subject and body for a recipient.
pub fn compose(
    template: &Template,
    contact: &Fields,
    company: Option<&Fields>,
    tracking: Option<(&Links, &str)>,
) -> Result<Composed> {
    let (html, text) = body(template, contact, company, tracking)?;
    Ok(Composed { subject: subject(template, contact, company), html, text })
}
