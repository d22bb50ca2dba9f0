//! Assignment within teams: round robin, least loaded, and the action.

use crm_plugin_sdk::serde_json::json;

use crate::tests::*;

#[test]
fn round_robin_rotates_through_the_team_and_skips_assigned_tickets() {
    let host = host_with(json!({"teams": {"support": {"members": [U1, U2, U3]}}}));
    let assignees: Vec<String> = (0..4)
        .map(|index| {
            ticket(&host, [("subject", format!("t{index}")), ("team", "support".into())]).id("assignee_id").unwrap().to_owned()
        })
        .collect();
    assert_eq!(assignees, [U1, U2, U3, U1]);
    let given =
        ticket(&host, Fields::new().with("subject", "mine").with("team", "support").with("assignee_id", Value::Id(U3.into())));
    assert_eq!(given.id("assignee_id"), Some(U3));
    assert_eq!(ticket(&host, [("subject", "next"), ("team", "support")]).id("assignee_id"), Some(U2));
    assert_eq!(host.kv_get("round-robin:support"), Some(b"5".to_vec()));
    let events = emitted(&host, "helpdesk.ticket_assigned");
    assert_eq!(events.len(), 5);
    assert_eq!((events[1]["assignee_id"].as_str(), events[1]["strategy"].as_str()), (Some(U2), Some("round_robin")));
    // No team, or solved: no assignment.
    assert_eq!(ticket(&host, [("subject", "loose")]).id("assignee_id"), None);
    assert_eq!(ticket(&host, [("subject", "done"), ("team", "support"), ("status", "solved")]).id("assignee_id"), None);
}

#[test]
fn least_loaded_picks_the_member_with_fewest_open_tickets() {
    let host = host_with(json!({"teams": {"support": {"members": [U1, U2], "strategy": "least_loaded"}}}));
    let first = ticket(&host, [("subject", "a"), ("team", "support")]);
    assert_eq!(first.id("assignee_id"), Some(U1), "a tie goes to the member listed first");
    assert_eq!(ticket(&host, [("subject", "b"), ("team", "support")]).id("assignee_id"), Some(U2));
    assert_eq!(ticket(&host, [("subject", "c"), ("team", "support")]).id("assignee_id"), Some(U1));
    // Solved tickets do not count as load.
    update(&host, &first.id, [("status", "solved")]);
    assert_eq!(ticket(&host, [("subject", "d"), ("team", "support")]).id("assignee_id"), Some(U1));
    assert_eq!(emitted(&host, "helpdesk.ticket_assigned")[0]["strategy"], "least_loaded");
}

#[test]
fn the_assign_action_reassigns_now_within_the_given_team() {
    let host = host_with(json!({"teams": {"support": {"members": [U1]}, "tier2": {"members": [U2, U3]}}}));
    let created = ticket(&host, [("subject", "a"), ("team", "support")]);
    assert_eq!(created.id("assignee_id"), Some(U1));
    let output = host
        .invoke(&Helpdesk, "assign", Fields::new().with("ticket_id", Value::Id(created.id.clone())).with("team", "tier2"))
        .unwrap();
    assert_eq!((output.id("assignee_id"), output.text("team")), (Some(U2), Some("tier2")));
    let stored = host.record("ticket", &created.id).unwrap();
    assert_eq!((stored.id("assignee_id"), stored.text("team")), (Some(U2), Some("tier2")));
    let again = host.invoke(&Helpdesk, "assign", [("ticket_id", Value::Id(created.id.clone()))]).unwrap();
    assert_eq!(again.id("assignee_id"), Some(U3));
    let error = host
        .invoke(&Helpdesk, "assign", Fields::new().with("ticket_id", Value::Id(created.id.clone())).with("team", "sales"))
        .unwrap_err();
    assert_eq!(error.message(), "team: 'sales' is not a team in the helpdesk configuration");
    let loose = ticket(&host, [("subject", "b")]);
    let error = host.invoke(&Helpdesk, "assign", [("ticket_id", Value::Id(loose.id.clone()))]).unwrap_err();
    assert_eq!(error.message(), "team: the ticket has no team; give one");
    let error = host.invoke(&Helpdesk, "assign", [("ticket_id", Value::Id(U1.into()))]).unwrap_err();
    assert_eq!(error.message(), format!("ticket_id: there is no ticket {U1}"));
}

#[test]
fn member_ids_are_compared_in_the_kernels_upper_case() {
    let host = host_with(json!({"teams": {"support": {"members": [U1.to_lowercase(), U2]}}}));
    assert_eq!(ticket(&host, [("subject", "a"), ("team", "support")]).id("assignee_id"), Some(U1));
    assert_eq!(ticket(&host, [("subject", "b"), ("team", "support")]).id("assignee_id"), Some(U2));
}
