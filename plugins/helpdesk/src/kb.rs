//! The knowledge base: `kb_article` records (draft or published) and the
//! `search-kb` action.
//!
//! Search splits the query into words (letters and digits, two or more,
//! lowercased; at most [`MAX_TERMS`]) and looks at published articles
//! only. A query word matches an article word that starts with it
//! (`print` matches `printer`). Ranking, best first: more distinct query
//! words matched; then the weighted match count (a title word counts 3, a
//! body word 1); then the most recently published; then the title. The
//! candidates come from the kernel's case-insensitive `contains` filter,
//! at most [`SCAN_LIMIT`] articles per search.

use std::cmp::Reverse;

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{self, json};

use crate::objects::ARTICLE;
use crate::text::snippet;

pub const MAX_TERMS: usize = 10;
pub const SCAN_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: i64 = 10;
pub const MAX_LIMIT: i64 = 50;

/// The decision on an article change: drafts by default, and the time an
/// article was first published.
pub fn before_write(change: &Change, now: i64) -> Decision {
    let after = change.after();
    let mut patch = Fields::new();
    if after.text("status").is_none() {
        patch.set("status", "draft");
    }
    if after.text("status") == Some("published") && after.int("published_at").is_none() {
        patch.set("published_at", now);
    }
    Decision::patch(patch)
}

/// Lowercase words of two or more letters or digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|word| word.chars().count() >= 2).map(str::to_lowercase).collect()
}

/// The distinct query words, in order.
pub fn terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in words(query) {
        if !terms.contains(&word) && terms.len() < MAX_TERMS {
            terms.push(word);
        }
    }
    terms
}

/// (distinct terms matched, weighted matches) of an article.
pub fn score(terms: &[String], title: &str, body: &str) -> (usize, usize) {
    let (title, body) = (words(title), words(body));
    let mut matched = 0;
    let mut weight = 0;
    for term in terms {
        let in_title = title.iter().filter(|word| word.starts_with(term.as_str())).count();
        let in_body = body.iter().filter(|word| word.starts_with(term.as_str())).count();
        if in_title + in_body > 0 {
            matched += 1;
            weight += 3 * in_title + in_body;
        }
    }
    (matched, weight)
}

struct Hit {
    record: Record,
    matched: usize,
    weight: usize,
}

/// The `search-kb` action.
pub fn search(input: &Fields) -> Result<Fields> {
    let query = input.text("query").unwrap_or_default();
    let terms = terms(query);
    if terms.is_empty() {
        return Err(Error::msg("query: needs a word of two or more letters or digits"));
    }
    let limit = match input.int("limit") {
        None => DEFAULT_LIMIT,
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(limit) => return Err(Error::msg(format!("limit: {limit} is not between 1 and {MAX_LIMIT}"))),
    };
    let any: Vec<serde_json::Value> =
        terms.iter().flat_map(|term| [json!({"title": {"contains": term}}), json!({"body": {"contains": term}})]).collect();
    let mut all = vec![json!({"status": {"eq": "published"}}), json!({"or": any})];
    if let Some(category) = input.text("category").filter(|category| !category.is_empty()) {
        all.push(json!({"category": {"eq": category}}));
    }
    let filter = json!({"and": all}).to_string();
    let mut hits = Vec::new();
    let mut after: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = records::query(ARTICLE, &filter, &["-published_at"], 500, after.as_deref())?;
        for record in page.records {
            scanned += 1;
            let (matched, weight) =
                score(&terms, record.text("title").unwrap_or_default(), record.text("body").unwrap_or_default());
            if matched > 0 {
                hits.push(Hit { record, matched, weight });
            }
        }
        match page.next {
            Some(next) if scanned < SCAN_LIMIT => after = Some(next),
            _ => break,
        }
    }
    hits.sort_by(|a, b| {
        let key = |hit: &Hit| (Reverse(hit.matched), Reverse(hit.weight), Reverse(hit.record.int("published_at").unwrap_or(0)));
        key(a)
            .cmp(&key(b))
            .then_with(|| a.record.text("title").unwrap_or_default().cmp(b.record.text("title").unwrap_or_default()))
            .then_with(|| a.record.id.cmp(&b.record.id))
    });
    let count = hits.len() as i64;
    hits.truncate(limit as usize);
    let ids: Vec<String> = hits.iter().map(|hit| hit.record.id.clone()).collect();
    let results: Vec<serde_json::Value> = hits
        .iter()
        .map(|hit| {
            json!({
                "id": hit.record.id,
                "title": hit.record.text("title"),
                "category": hit.record.text("category"),
                "matched_terms": hit.matched,
                "score": hit.weight,
                "snippet": snippet(hit.record.text("body").unwrap_or_default(), 160),
            })
        })
        .collect();
    Ok(Fields::new()
        .with("count", count)
        .with("article_ids", Value::Texts(ids))
        .with("results", serde_json::Value::Array(results).to_string()))
}
