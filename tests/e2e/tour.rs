//! The README tour, run verbatim with bash and curl against a fresh server.

use serde_json::{Value, json};

use crate::support::{Server, TIMEOUT, assert_close};

/// The bash block between the tour markers of README.md.
fn tour_script() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("read README.md");
    let start = readme.find("<!-- tour:start -->").expect("tour start marker") + "<!-- tour:start -->".len();
    let end = readme.find("<!-- tour:end -->").expect("tour end marker");
    let block = readme[start..end].trim();
    let block = block.strip_prefix("```bash").expect("tour opens with ```bash");
    let block = block.strip_suffix("```").expect("tour closes with ```");
    block.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tour_runs_against_a_fresh_server() {
    let server = Server::start(&[]).await;
    // First start: the default tenant's admin key is readable by its owner only.
    assert!(server.startup.iter().any(|line| line.contains("admin-key")), "{:?}", server.startup);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(server.dir.join("admin-key")).expect("admin-key written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "admin-key mode is {:o}", mode & 0o777);
    }
    let script = tour_script();
    assert!(script.contains("createCompany"), "the extracted tour looks wrong:\n{script}");
    let run = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("URL", server.url())
        .env("CRM_DATA_DIR", &server.dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT, run).await.expect("tour timed out").expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "tour failed with {}:\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let lines: Vec<Value> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("tour line is not JSON ({error}): {line}")))
        .collect();
    // Two captured requests (company, contact) print nothing; eight print one line each.
    assert_eq!(lines.len(), 8, "unexpected tour output:\n{stdout}");
    let failed: Vec<&Value> = lines.iter().filter(|line| line.get("errors").is_some()).collect();
    assert_eq!(failed.len(), 1, "exactly one request should fail:\n{stdout}");
    assert_eq!(failed[0]["errors"][0]["extensions"]["code"], "CONFLICT");
    assert!(stdout.contains(r#""code":"CONFLICT""#));
    assert!(stdout.contains("Initech"));

    // The deals: expectedAmount = amount × the stage's probability.
    let deals = lines[0]["data"]["createDeals"].as_array().expect("createDeals output");
    assert_eq!(deals.len(), 2);
    assert_eq!(deals[0]["name"], "Printers");
    assert_eq!(deals[0]["stage"], "qualifiedtobuy");
    assert_close(&deals[0]["probability"], 0.4);
    assert_close(&deals[0]["expectedAmount"], 4800.0);
    assert_eq!(deals[1]["name"], "Staplers");
    assert_close(&deals[1]["probability"], 0.9);
    assert_close(&deals[1]["expectedAmount"], 2700.0);

    // Leads with company and deals.
    let contacts = &lines[1]["data"]["contacts"];
    assert_eq!(contacts["totalCount"], 1);
    assert_eq!(contacts["nodes"][0]["email"], "peter@initech.example");
    assert_eq!(contacts["nodes"][0]["company"]["name"], "Initech");
    assert_eq!(contacts["nodes"][0]["deals"]["totalCount"], 2);

    // The first update moves to version 2; the second carries the stale version.
    assert_eq!(lines[2]["data"]["updateContact"]["version"], 2);
    assert_eq!(lines[2]["data"]["updateContact"]["lifecycleStage"], "SALESQUALIFIEDLEAD");
    assert_eq!(lines[3]["errors"][0]["extensions"]["code"], "CONFLICT");

    // The pipeline dashboard.
    let aggregate = &lines[4]["data"]["dealsAggregate"];
    assert_eq!(aggregate["count"], 2);
    assert_close(&aggregate["sum"]["amount"], 15000.0);
    assert_close(&aggregate["sum"]["expectedAmount"], 7500.0);
    let groups = aggregate["groups"].as_array().expect("groups");
    let by_stage = |stage: &str| groups.iter().find(|group| group["key"]["stage"] == stage).expect("stage group").clone();
    assert_close(&by_stage("qualifiedtobuy")["sum"]["expectedAmount"], 4800.0);
    assert_close(&by_stage("contractsent")["sum"]["expectedAmount"], 2700.0);
    assert_eq!(groups.len(), 2);

    // The upsert matched the contact case-insensitively by email.
    let contact_id = server
        .ok("{ contacts { nodes { id } } }", json!({}))
        .await["contacts"]["nodes"][0]["id"]
        .as_str()
        .expect("contact id")
        .to_string();
    let upserted = &lines[5]["data"]["upsertContact"];
    assert_eq!(upserted["id"], contact_id.as_str());
    assert_eq!(upserted["title"], "Team lead");
    assert_eq!(upserted["version"], 3);

    // The change feed: the seeded pipeline, then the tour's writes in order.
    let changes = lines[6]["data"]["changes"]["changes"].as_array().expect("changes");
    let operations: Vec<(&str, &str)> = changes
        .iter()
        .map(|change| (change["object"].as_str().unwrap_or_default(), change["operation"].as_str().unwrap_or_default()))
        .collect();
    let tour: Vec<(&str, &str)> = operations.iter().copied().filter(|(object, _)| !matches!(*object, "PIPELINE" | "PIPELINE_STAGE" | "SCORE_CHANGE")).collect();
    assert_eq!(
        tour,
        vec![
            ("COMPANY", "CREATED"),
            ("CONTACT", "CREATED"),
            ("DEAL", "CREATED"),
            ("DEAL", "CREATED"),
            ("CONTACT", "UPDATED"),
            ("CONTACT", "UPDATED"),
        ]
    );
    assert_eq!(lines[6]["data"]["changes"]["hasMore"], false);

    // The audit trail: created, then two updates, by the API key.
    let history = lines[7]["data"]["recordHistory"].as_array().expect("history");
    let operations: Vec<&str> = history.iter().map(|entry| entry["operation"].as_str().unwrap_or_default()).collect();
    assert_eq!(operations, ["CREATED", "UPDATED", "UPDATED"]);
    assert!(history.iter().all(|entry| entry["actor"].as_str().is_some_and(|actor| actor.starts_with("api-key:"))));
    let title = history[2]["changes"].as_array().expect("changes").iter().find(|change| change["field"] == "title").expect("title change");
    assert_eq!(title["before"], Value::Null);
    assert_eq!(title["after"], "Team lead");
}
