//! Segments: filters checked and counted on save, counts on demand.

use super::*;

#[test]
fn saving_a_segment_counts_its_members() {
    let host = TestHost::new();
    contact(&host, "Ada", Some("ada@example.com"), Some(true));
    contact(&host, "Bob", Some("bob@example.com"), None);
    host.insert("contact", [("first_name", "Cy"), ("lifecycle_stage", "customer")]);
    let saved = segment(&host, json!({"lifecycle_stage": {"eq": "lead"}}));
    assert_eq!(saved.int("member_count"), Some(2));
    assert_eq!(saved.int("counted_at"), Some(host.now()));

    // Unchanged filter: no recount; changed: recount.
    host.insert("contact", [("first_name", "Di"), ("lifecycle_stage", "lead")]);
    let renamed = host
        .write(
            &Marketing,
            Change::update("segment", &saved.id, saved.fields.clone(), saved.fields.clone().with("name", "Renamed")),
        )
        .unwrap();
    assert_eq!(renamed.int("member_count"), Some(2));
    let widened = host
        .write(
            &Marketing,
            Change::update("segment", &saved.id, renamed.fields.clone(), renamed.fields.clone().with("filter", "{}")),
        )
        .unwrap();
    assert_eq!(widened.int("member_count"), Some(4));
}

#[test]
fn a_filter_that_is_not_an_object_or_is_refused_by_the_host_is_rejected() {
    let host = TestHost::new();
    // The test host judges operators on the values it meets.
    contact(&host, "Ada", Some("ada@example.com"), Some(true));
    let save = |filter: &str| {
        host.write(&Marketing, Change::create("segment", [("name", "S"), ("filter", filter)])).unwrap_err().to_string()
    };
    assert!(save("[1]").starts_with("invalid: filter: is not a JSON object"));
    assert!(save("{oops").starts_with("invalid: filter: is not JSON"));
    let refused = save(r#"{"email": {"near": "x"}}"#);
    assert!(refused.starts_with("invalid: filter: ") && refused.contains("near"), "{refused}");
    assert!(host.records("segment").is_empty());
}

#[test]
fn segment_count_counts_members_and_eligible_ones_by_id_or_filter() {
    let host = TestHost::new();
    contact(&host, "Ada", Some("ada@example.com"), Some(true));
    contact(&host, "Bob", Some("bob@example.com"), Some(false));
    contact(&host, "Cy", None, Some(true));
    let saved = segment(&host, json!({}));
    contact(&host, "Di", Some("di@example.com"), Some(true));
    let counted = host.invoke(&Marketing, "segment-count", [("segment_id", Value::Id(saved.id.clone()))]).unwrap();
    assert_eq!((counted.int("count"), counted.int("eligible")), (Some(4), Some(2)));
    assert_eq!(host.record("segment", &saved.id).unwrap().int("member_count"), Some(4), "stored on the segment");

    let by_filter = host.invoke(&Marketing, "segment-count", [("filter", r#"{"first_name": {"in": ["Ada", "Bob"]}}"#)]).unwrap();
    assert_eq!((by_filter.int("count"), by_filter.int("eligible")), (Some(2), Some(1)));
    let bad = host.invoke(&Marketing, "segment-count", [("filter", "[]")]).unwrap_err();
    assert_eq!(bad.message(), "filter: is not a JSON object");
    let neither = host.invoke(&Marketing, "segment-count", Fields::new()).unwrap_err();
    assert_eq!(neither.message(), "segment_id or filter: give exactly one");
}
