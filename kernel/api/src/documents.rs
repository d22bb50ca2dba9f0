//! Parsed GraphQL documents by query text. Clients send the same few
//! operations over and over with different variables; parsing the text is
//! a third of the work of a small read, so a parsed document is kept and
//! handed to the engine as a copy. Parsing does not depend on the tenant's
//! schema: validation still runs on every request, against the caller's
//! schema.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Queries longer than this are parsed every time rather than kept.
const MAX_QUERY_BYTES: usize = 16 * 1024;

pub(crate) struct Documents {
    capacity: usize,
    parsed: Mutex<HashMap<String, Arc<ExecutableDocument>>>,
}

impl Documents {
    pub(crate) fn new(capacity: usize) -> Self {
        Documents { capacity, parsed: Mutex::new(HashMap::new()) }
    }

    /// Gives `request` its parsed document: a copy of the kept one, or
    /// parsed now and kept. A query that does not parse is left to the
    /// engine, which reports the error.
    pub(crate) fn attach(&self, request: &mut async_graphql::Request) {
        if self.capacity == 0 || request.query.len() > MAX_QUERY_BYTES {
            return;
        }
        let kept = self.lock().get(&request.query).cloned();
        if let Some(document) = kept {
            request.set_parsed_query(ExecutableDocument::clone(&document));
            return;
        }
        let Ok(document) = request.parsed_query() else { return };
        let document = Arc::new(document.clone());
        let mut parsed = self.lock();
        if parsed.len() >= self.capacity {
            // Full: drop an eighth, in the map's own (unordered) order, so
            // documents sent with literal values instead of variables
            // cannot pin it.
            let doomed: Vec<String> = parsed.keys().take(self.capacity.div_ceil(8)).cloned().collect();
            for key in doomed {
                parsed.remove(&key);
            }
        }
        parsed.insert(request.query.clone(), document);
    }

    /// The kept document of a query text.
    pub(crate) fn get(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.lock().get(query).cloned()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ExecutableDocument>>> {
        self.parsed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_document_is_the_parse_of_its_text() {
        let documents = Documents::new(4);
        let mut first = async_graphql::Request::new("query Q($id: ID!) { contact(id: $id) { id } }");
        documents.attach(&mut first);
        assert_eq!(documents.len(), 1);
        let mut second = async_graphql::Request::new("query Q($id: ID!) { contact(id: $id) { id } }");
        documents.attach(&mut second);
        assert_eq!(documents.len(), 1);
        let expected = async_graphql::parser::parse_query("query Q($id: ID!) { contact(id: $id) { id } }").unwrap();
        assert_eq!(format!("{:?}", second.parsed_query().unwrap()), format!("{expected:?}"));
    }

    #[test]
    fn bad_and_oversized_queries_are_not_kept() {
        let documents = Documents::new(4);
        let mut bad = async_graphql::Request::new("{ contact(id: ");
        documents.attach(&mut bad);
        assert_eq!(documents.len(), 0);
        assert!(bad.parsed_query().is_err());
        let mut big = async_graphql::Request::new(format!("{{ {} }}", "id ".repeat(MAX_QUERY_BYTES)));
        documents.attach(&mut big);
        assert_eq!(documents.len(), 0);
    }

    #[test]
    fn a_full_cache_makes_room() {
        let documents = Documents::new(8);
        for n in 0..50 {
            let mut request = async_graphql::Request::new(format!("{{ contact(id: \"{n}\") {{ id }} }}"));
            documents.attach(&mut request);
            assert!(documents.len() <= 8);
        }
        let mut request = async_graphql::Request::new("{ contact(id: \"49\") { id } }");
        documents.attach(&mut request);
        assert!(request.parsed_query().is_ok());
    }
}
