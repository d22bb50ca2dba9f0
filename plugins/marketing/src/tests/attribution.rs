//! Attribution of won deals: a hand-computed example.

use super::*;
use crate::attribution::{DAY_MS, end_of_day};

const DAY: i64 = DAY_MS;
/// The end of 2023-11-20 (UTC), when the deals with that close date were won.
const WON: i64 = 1_700_524_799_999;

struct World {
    host: TestHost,
    a: Record,
    b: Record,
}

fn engaged(host: &TestHost, campaign: Option<&Record>, contact: &Record, opened: Option<i64>, clicked: Option<i64>) {
    let fields = Fields::new()
        .with("key", format!("c:{}:{}", campaign.map_or("none", |c| c.id.as_str()), contact.id))
        .with("contact_id", Value::Id(contact.id.clone()))
        .with("campaign_id", campaign.map(|campaign| Value::Id(campaign.id.clone())))
        .with("status", "delivered")
        .with("opened_at", opened)
        .with("clicked_at", clicked);
    host.insert("campaign_send", fields);
}

fn deal(host: &TestHost, contact: &Record, pipeline: &Record, stage: &str, amount: f64, close_date: Option<&str>) {
    let fields = Fields::new()
        .with("name", "Deal")
        .with("contact_id", Value::Id(contact.id.clone()))
        .with("pipeline_id", Value::Id(pipeline.id.clone()))
        .with("stage", stage)
        .with("amount", amount)
        .with("close_date", close_date);
    host.insert("deal", fields);
}

/// Campaigns A and B; deals:
/// - d1 (Ada, won, 1000): Ada opened A 5 days and clicked B 10 days before → A 500, B 500;
/// - d2 (Bob, won in the second pipeline's `closed`, 300): Bob opened A 40 days before
///   (outside 30 days) and B 2 days before → B 300;
/// - d3 (Cy, won, 200): no engagement → not attributed;
/// - d4 (Dee, won, 50, no close date, so won when last updated): Dee opened A
///   a day after, and a sequence email (no campaign) before → not attributed;
/// - d5 (Ada, stage `open`) and d6 (Ada, `won` of a pipeline where it is not
///   a won stage) are not won.
fn world() -> World {
    let host = TestHost::new();
    let sales = host.insert("pipeline", [("name", "Sales")]);
    let renewals = host.insert("pipeline", [("name", "Renewals")]);
    let odd = host.insert("pipeline", [("name", "Odd")]);
    for (pipeline, key, won) in
        [(&sales, "open", false), (&sales, "won", true), (&renewals, "closed", true), (&odd, "won", false)]
    {
        host.insert(
            "pipeline_stage",
            Fields::new().with("pipeline_id", Value::Id(pipeline.id.clone())).with("key", key).with("is_won", won),
        );
    }
    let a = host.insert("campaign", [("name", "A")]);
    let b = host.insert("campaign", [("name", "B")]);
    let ada = contact(&host, "Ada", Some("ada@example.com"), Some(true));
    let bob = contact(&host, "Bob", Some("bob@example.com"), Some(true));
    let cy = contact(&host, "Cy", Some("cy@example.com"), Some(true));
    let dee = contact(&host, "Dee", Some("dee@example.com"), Some(true));
    engaged(&host, Some(&a), &ada, Some(WON - 5 * DAY), None);
    engaged(&host, Some(&b), &ada, None, Some(WON - 10 * DAY));
    engaged(&host, Some(&a), &bob, Some(WON - 40 * DAY), None);
    engaged(&host, Some(&b), &bob, Some(WON - 2 * DAY), None);
    engaged(&host, Some(&a), &dee, Some(host.now() + DAY), None);
    engaged(&host, None, &dee, Some(host.now() - DAY), None);
    deal(&host, &ada, &sales, "won", 1000.0, Some("2023-11-20"));
    deal(&host, &bob, &renewals, "closed", 300.0, Some("2023-11-20"));
    deal(&host, &cy, &sales, "won", 200.0, Some("2023-11-20"));
    deal(&host, &dee, &sales, "won", 50.0, None);
    deal(&host, &ada, &sales, "open", 999.0, Some("2023-11-20"));
    deal(&host, &ada, &odd, "won", 777.0, Some("2023-11-20"));
    World { host, a, b }
}

fn campaigns(output: &Fields) -> Json {
    serde_json::from_str(output.text("campaigns").unwrap()).unwrap()
}

#[test]
fn won_amounts_are_split_equally_between_engaged_campaigns() {
    let World { host, a, b } = world();
    let output = host.invoke(&Marketing, "attribution", Fields::new()).unwrap();
    assert_eq!(output.int("window_days"), Some(30));
    assert_eq!(output.int("won_deals"), Some(4));
    assert_eq!(output.float("won_amount"), Some(1550.0));
    assert_eq!(output.int("attributed_deals"), Some(2));
    assert_eq!(output.float("attributed_amount"), Some(1300.0));
    assert_eq!(
        campaigns(&output),
        json!([
            {"campaign_id": b.id, "name": "B", "deals": 2, "amount": 800.0},
            {"campaign_id": a.id, "name": "A", "deals": 1, "amount": 500.0},
        ])
    );
}

#[test]
fn a_wider_window_takes_in_older_engagement() {
    let World { host, a, b } = world();
    let output = host.invoke(&Marketing, "attribution", [("window_days", 45)]).unwrap();
    assert_eq!(output.float("attributed_amount"), Some(1300.0));
    let mut expected = vec![
        json!({"campaign_id": a.id, "name": "A", "deals": 2, "amount": 650.0}),
        json!({"campaign_id": b.id, "name": "B", "deals": 2, "amount": 650.0}),
    ];
    expected.sort_by(|x, y| x["campaign_id"].as_str().cmp(&y["campaign_id"].as_str()));
    assert_eq!(campaigns(&output), Json::Array(expected), "equal amounts in id order");
    // The configured window is the default.
    host.set_config(json!({"attribution_window_days": 45}));
    let configured = host.invoke(&Marketing, "attribution", Fields::new()).unwrap();
    assert_eq!(configured.int("window_days"), Some(45));
}

#[test]
fn deals_can_be_narrowed_to_when_they_were_won() {
    let World { host, .. } = world();
    let output = host.invoke(&Marketing, "attribution", [("won_from", WON - DAY), ("won_to", WON)]).unwrap();
    assert_eq!(output.int("won_deals"), Some(3), "not Dee's, won at creation");
    assert_eq!(output.float("won_amount"), Some(1500.0));
    let bad = host.invoke(&Marketing, "attribution", [("window_days", 0)]).unwrap_err();
    assert_eq!(bad.message(), "window_days: 0 is not between 1 and 3650");
}

#[test]
fn a_close_date_ends_at_midnight_utc() {
    assert_eq!(end_of_day("2023-11-20"), Some(WON));
    assert_eq!(end_of_day("1970-01-01"), Some(DAY - 1));
    assert_eq!(end_of_day("2024-02-29"), Some(1_709_251_199_999));
    assert_eq!(end_of_day("2024-13-01"), None);
    assert_eq!(end_of_day("soon"), None);
}
