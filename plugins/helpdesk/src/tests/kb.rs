//! Knowledge-base articles and search.

use crm_plugin_sdk::serde_json;

use crate::kb::{score, terms};
use crate::tests::*;

fn article(host: &TestHost, title: &str, body: &str, category: &str, status: &str) -> Record {
    host.write(
        &Helpdesk,
        Change::create("kb_article", [("title", title), ("body", body), ("category", category), ("status", status)]),
    )
    .unwrap()
}

#[test]
fn articles_are_drafts_until_published() {
    let host = TestHost::new();
    let draft = host.write(&Helpdesk, Change::create("kb_article", [("title", "Reset a password")])).unwrap();
    assert_eq!((draft.text("status"), draft.int("published_at")), (Some("draft"), None));
    host.advance(MINUTE);
    let after = draft.fields.clone().with("status", "published");
    let published = host.write(&Helpdesk, Change::update("kb_article", &draft.id, draft.fields.clone(), after)).unwrap();
    assert_eq!(published.int("published_at"), Some(host.now()));
}

#[test]
fn terms_and_scores_follow_the_documented_rules() {
    assert_eq!(terms("How do I reset my printer? a printer!"), ["how", "do", "reset", "my", "printer"]);
    // Prefix matches; a title word counts three times a body word.
    assert_eq!(score(&terms("print reset"), "Printer setup", "Reset the printer. Printers jam."), (2, 3 + 2 + 1));
    assert_eq!(score(&terms("fax"), "Printer", "paper"), (0, 0));
}

#[test]
fn search_ranks_published_articles_by_matches() {
    let host = TestHost::new();
    let both = article(&host, "Printer jams", "Open the tray and remove the paper.", "hardware", "published");
    let title = article(&host, "Printer drivers", "Download them from the vendor.", "software", "published");
    let body = article(&host, "Office tour", "The printer is next to the kitchen.", "general", "published");
    article(&host, "Printer jams (draft)", "Printer printer printer paper jams", "hardware", "draft");
    article(&host, "Coffee", "Beans.", "general", "published");
    let search = |input: Fields| host.invoke(&Helpdesk, "search-kb", input).unwrap();
    let found = search(Fields::new().with("query", "printer jams"));
    assert_eq!(found.int("count"), Some(3));
    let ids = found.texts("article_ids").unwrap().to_vec();
    assert_eq!(ids, [both.id.clone(), title.id.clone(), body.id.clone()]);
    let results: serde_json::Value = serde_json::from_str(found.text("results").unwrap()).unwrap();
    assert_eq!((results[0]["matched_terms"].as_i64(), results[0]["score"].as_i64()), (Some(2), Some(6)));
    assert_eq!(results[0]["snippet"], "Open the tray and remove the paper.");
    let limited = search(Fields::new().with("query", "printer").with("limit", 1));
    assert_eq!((limited.int("count"), limited.texts("article_ids").map(<[String]>::len)), (Some(3), Some(1)));
    let software = search(Fields::new().with("query", "printer").with("category", "software"));
    assert_eq!(software.texts("article_ids").unwrap(), std::slice::from_ref(&title.id));
    assert_eq!(search(Fields::new().with("query", "fax")).int("count"), Some(0));
    let error = host.invoke(&Helpdesk, "search-kb", [("query", "?")]).unwrap_err();
    assert_eq!(error.message(), "query: needs a word of two or more letters or digits");
    let error = host.invoke(&Helpdesk, "search-kb", Fields::new().with("query", "printer").with("limit", 51)).unwrap_err();
    assert_eq!(error.message(), "limit: 51 is not between 1 and 50");
}
