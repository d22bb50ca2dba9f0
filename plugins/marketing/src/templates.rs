//! Email templates: loading one for sending, and checking its merge fields
//! when it is saved (a before-write hook on `email_template`) and again
//! before a campaign or sequence step sends it.

use crm_plugin_sdk::prelude::*;

use crate::merge::{self, Catalog, Parsed};
use crate::objects::TEMPLATE;

/// A template parsed for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub subject: Parsed,
    pub html: Parsed,
    /// None when the template has no text part: it is derived from the HTML.
    pub text: Option<Parsed>,
}

impl Template {
    /// Parses a stored template; the error names the field at fault.
    pub fn from_record(record: &Record) -> std::result::Result<Template, String> {
        let parse =
            |field: &str| merge::parse(record.text(field).unwrap_or_default()).map_err(|error| format!("{field}: {error}"));
        let text = match record.text("text").map(str::trim) {
            Some(text) if !text.is_empty() => Some(parse("text")?),
            _ => None,
        };
        Ok(Template {
            id: record.id.clone(),
            name: record.text("name").unwrap_or_default().to_owned(),
            subject: parse("subject")?,
            html: parse("html")?,
            text,
        })
    }

    /// The live template `id`, checked against the fields that exist now.
    /// `what` names the input or field that referred to it in errors.
    pub fn load(what: &str, id: &str, catalog: &mut Catalog) -> Result<Template> {
        let record = records::get(TEMPLATE, id)?
            .filter(|record| !record.deleted)
            .ok_or_else(|| Error::msg(format!("{what}: there is no email template {id}")))?;
        let template = Template::from_record(&record).map_err(|error| Error::msg(format!("{what}: template {id}: {error}")))?;
        let mut unknown = Vec::new();
        for parsed in [Some(&template.subject), Some(&template.html), template.text.as_ref()].into_iter().flatten() {
            unknown.extend(catalog.unknown(parsed)?);
        }
        if !unknown.is_empty() {
            unknown.sort();
            unknown.dedup();
            let list: Vec<String> = unknown.iter().map(|name| format!("{{{{{name}}}}}")).collect();
            return Err(Error::msg(format!(
                "{what}: template {id} uses unknown merge fields {} (no such field, or not readable)",
                list.join(", ")
            )));
        }
        Ok(template)
    }

    pub fn needs_company(&self) -> bool {
        [Some(&self.subject), Some(&self.html), self.text.as_ref()].into_iter().flatten().any(Parsed::needs_company)
    }
}

/// The before-write decision for a template being created or updated:
/// refuses a text that does not parse or names an unknown field, and
/// records the merge fields it uses.
pub fn judge(change: &Change, catalog: &mut Catalog) -> Result<Decision> {
    let after = change.after();
    let texts: Vec<(&str, &str)> =
        ["subject", "html", "text"].into_iter().map(|field| (field, after.text(field).unwrap_or_default())).collect();
    Ok(match merge::check_texts(&texts, catalog)? {
        Err((field, message)) => Decision::reject_field(field, message),
        Ok(used) => {
            let current: Vec<String> = after.texts("merge_fields").map(<[String]>::to_vec).unwrap_or_default();
            if current == used { Decision::accept() } else { Decision::patch([("merge_fields", Value::Texts(used))]) }
        }
    })
}
