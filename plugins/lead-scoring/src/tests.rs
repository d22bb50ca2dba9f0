//! Rules, decay, grades, round robin and the model as plain functions; the
//! hooks, timers and actions through the SDK's test host with the
//! manifest's grants enforced.

use crm_plugin_sdk::serde_json::{self, json};
use crm_plugin_sdk::testing::{DEFAULT_NOW, TestHost};

use super::*;
use crate::config::{FitRule, Grades};
use crate::model::{Example, auc, held_out};
use crate::rules::{DAY_MS, Touch};

const DAY: i64 = DAY_MS as i64;
const U1: &str = "01HZY00000000000000000000A";
const U2: &str = "01HZY00000000000000000000B";

fn rule(points: i64) -> FitRule {
    FitRule { title_contains: None, employees_min: None, employees_max: None, industry_in: None, country_in: None, points }
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|item| (*item).to_owned()).collect())
}

/// A small deterministic generator (xorshift64*), so datasets are the same
/// on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn the_manifest_is_valid_and_asks_for_what_it_uses() {
    let manifest = LeadScoring.manifest();
    manifest.validate().unwrap();
    assert_eq!(manifest.id, "lead-scoring");
    assert!(manifest.capabilities.kv && manifest.capabilities.timers && manifest.capabilities.events);
    assert!(manifest.capabilities.outbound.is_empty() && !manifest.capabilities.schema);
    let names: Vec<&str> = manifest.fields.iter().map(|extension| extension.field.name.as_str()).collect();
    for name in ["fit_score", "engagement_score", "total_score", "score_grade", "scored_at", "predictive_score"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(manifest.objects[0].name, "score_change");
    let schema: serde_json::Value = serde_json::from_str(&manifest.config_schema).unwrap();
    assert_eq!(schema["properties"]["thresholds"]["items"]["properties"]["lifecycle_stage"]["enum"][2], "marketingqualifiedlead");
}

#[test]
fn fit_rules_match_title_employees_industry_and_country() {
    let mut config = Config { fit: Vec::new(), ..Config::default() };
    config.fit.push(FitRule { title_contains: strings(&["VP", "director"]), ..rule(20) });
    config.fit.push(FitRule { employees_min: Some(100), employees_max: Some(1000), ..rule(15) });
    config.fit.push(FitRule { industry_in: strings(&["Software", "saas"]), ..rule(10) });
    config.fit.push(FitRule { country_in: strings(&["de", "FR"]), ..rule(5) });
    config.fit.push(FitRule { title_contains: strings(&["intern"]), ..rule(-30) });

    let contact = Fields::new().with("title", "Sales Director").with("country", "DE");
    let company = Fields::new().with("employees", 250).with("industry", "software");
    assert_eq!(rules::fit(&config, &contact, Some(&company)), (50, vec![0, 1, 2, 3]));

    // Bounds are inclusive; outside them the rule does not match.
    let edge = Fields::new().with("employees", 1000);
    assert_eq!(rules::fit(&config, &Fields::new(), Some(&edge)).0, 15);
    let big = Fields::new().with("employees", 1001).with("industry", "Retail").with("country", "fr");
    // The company's country counts when the contact has none.
    assert_eq!(rules::fit(&config, &Fields::new(), Some(&big)), (5, vec![3]));
    // Missing values fail their condition; negative points subtract.
    assert_eq!(rules::fit(&config, &Fields::new().with("title", "Marketing Intern"), None), (-30, vec![4]));
    assert_eq!(rules::fit(&config, &Fields::new(), None), (0, vec![]));

    // A rule naming several conditions needs all of them.
    config.fit = vec![FitRule { title_contains: strings(&["vp"]), country_in: strings(&["us"]), ..rule(7) }];
    assert_eq!(rules::fit(&config, &Fields::new().with("title", "VP").with("country", "US"), None).0, 7);
    assert_eq!(rules::fit(&config, &Fields::new().with("title", "VP").with("country", "GB"), None).0, 0);
}

#[test]
fn decay_halves_points_every_half_life() {
    assert_eq!(rules::decay(10.0, 0, 30.0), 10.0);
    assert!((rules::decay(10.0, 30 * DAY, 30.0) - 5.0).abs() < 1e-9);
    assert!((rules::decay(10.0, 60 * DAY, 30.0) - 2.5).abs() < 1e-9);
    assert!((rules::decay(8.0, 7 * DAY, 7.0) - 4.0).abs() < 1e-9);
    // A date in the future counts in full.
    assert_eq!(rules::decay(10.0, -DAY, 30.0), 10.0);
    let touches = [Touch { points: 10.0, at: DEFAULT_NOW }, Touch { points: 4.0, at: DEFAULT_NOW - 30 * DAY }];
    assert_eq!(rules::engagement(&touches, DEFAULT_NOW, 30.0), 12.0);
    // Decaying a stored sum forward equals summing the decayed parts later.
    let later = DEFAULT_NOW + 10 * DAY;
    let stored = rules::engagement(&touches, DEFAULT_NOW, 30.0);
    let forward = rules::decay(stored, later - DEFAULT_NOW, 30.0);
    assert!((forward - rules::engagement(&touches, later, 30.0)).abs() < 0.01);
}

#[test]
fn grades_follow_the_bands() {
    let grades = Grades { a: 80, b: 50, c: 25 };
    let graded: Vec<&str> = [100, 80, 79, 50, 49, 25, 24, 0, -5].into_iter().map(|total| rules::grade(&grades, total)).collect();
    assert_eq!(graded, ["a", "a", "b", "b", "c", "c", "d", "d", "d"]);
    assert_eq!(rules::total(20, 12.49), 32);
    assert_eq!(rules::total(20, 12.5), 33);
}

#[test]
fn round_robin_cycles_through_the_team() {
    let team: Vec<String> = ["u1", "u2", "u3"].into_iter().map(String::from).collect();
    let mut position = 0;
    let mut picked = Vec::new();
    for _ in 0..7 {
        let (owner, next) = rules::round_robin(&team, position).unwrap();
        picked.push(owner.to_owned());
        position = next;
    }
    assert_eq!(picked, ["u1", "u2", "u3", "u1", "u2", "u3", "u1"]);
    assert!(rules::round_robin(&[], 0).is_none());
    // A smaller team goes on from the stored position.
    assert_eq!(rules::round_robin(&team[..2], 7).unwrap().0, "u2");
}

#[test]
fn stages_only_move_forward() {
    assert!(rules::moves_forward(None, "marketingqualifiedlead"));
    assert!(rules::moves_forward(Some("lead"), "marketingqualifiedlead"));
    assert!(!rules::moves_forward(Some("customer"), "marketingqualifiedlead"));
    assert!(!rules::moves_forward(Some("marketingqualifiedlead"), "marketingqualifiedlead"));
    assert!(!rules::moves_forward(Some("other"), "salesqualifiedlead"));
    assert!(!rules::moves_forward(None, "nonsense"));
}

#[test]
fn config_checks_name_the_part_at_fault() {
    Config::default().check().unwrap();
    let error = |config: serde_json::Value| {
        let config: Config = serde_json::from_value(config).unwrap();
        config.check().unwrap_err().to_string()
    };
    assert!(error(json!({"fit": [{"points": 3}]})).starts_with("fit[0]: needs a condition"));
    assert!(error(json!({"fit": [{"employees_min": 9, "employees_max": 2, "points": 3}]})).contains("employees_min 9"));
    assert!(error(json!({"grades": {"a": 10, "b": 20, "c": 5}})).starts_with("grades:"));
    assert!(error(json!({"engagement": {"activities": {"fax": 3}}})).contains("'fax' is not an activity kind"));
    assert!(error(json!({"thresholds": [{"name": "mql", "min_score": 5, "team": "inbound"}]})).contains("thresholds[0].team"));
    assert!(error(json!({"thresholds": [{"name": "x", "min_score": 5, "lifecycle_stage": "mql"}]})).contains("lifecycle_stage"));
    assert!(
        error(json!({"teams": {"inbound": [U1, "u2"]}})).starts_with("teams.inbound[1]: 'u2' is not a user id"),
        "owners are user ids"
    );
    let parsed: std::result::Result<Config, _> = serde_json::from_value(json!({"fit": [{"title": "vp", "points": 1}]}));
    assert!(parsed.is_err(), "unknown keys are refused");
}

#[test]
fn auc_counts_ordered_pairs_and_ties() {
    assert_eq!(auc(&[(0.9, true), (0.8, true), (0.2, false), (0.1, false)]), Some(1.0));
    assert_eq!(auc(&[(0.1, true), (0.9, false)]), Some(0.0));
    assert_eq!(auc(&[(0.5, true), (0.5, false)]), Some(0.5));
    assert_eq!(auc(&[(0.3, true), (0.7, true), (0.5, false)]), Some(0.5));
    assert_eq!(auc(&[(0.3, true)]), None);
    // The interval narrows with more examples and is zero-width at 1.
    let small = model::auc_standard_error(0.8, 10, 10);
    let large = model::auc_standard_error(0.8, 100, 100);
    assert!(small > large && large > 0.0, "{small} {large}");
    assert!(model::auc_standard_error(1.0, 10, 10) < 1e-9);
}

#[test]
fn the_split_is_deterministic_and_holds_out_about_a_quarter() {
    let ids: Vec<String> = (0..4000).map(|index| format!("01J{index:023}")).collect();
    let held: usize = ids.iter().filter(|id| held_out(id)).count();
    assert!((800..1200).contains(&held), "{held} of 4000 held out");
    assert!(ids.iter().all(|id| held_out(id) == held_out(id)));
}

/// `n` examples whose label depends on the second feature (and noise), or
/// on nothing at all.
fn dataset(n: usize, signal: bool, seed: u64) -> Vec<Example> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|index| {
            let features: Vec<f64> = (0..3).map(|_| rng.next() * 4.0).collect();
            let won = if signal { features[1] + rng.next() * 1.5 > 2.75 } else { rng.next() < 0.5 };
            Example { id: format!("contact-{index}"), features, won }
        })
        .collect()
}

#[test]
fn a_model_finds_a_known_signal_on_held_out_data() {
    let model = model::train(&["a", "b", "c"], &dataset(400, true, 7), DEFAULT_NOW);
    let auc = model.auc.unwrap();
    assert!(auc > 0.75, "held-out AUC {auc}");
    assert!(model.usable, "{:?}", model.reason);
    assert!(model.test_examples > 60 && model.train_examples > 250, "{model:?}");
    // The informative feature carries the largest weight, and the top
    // contribution names it for an extreme example.
    assert!(model.weights[1].abs() > model.weights[0].abs() && model.weights[1] > 0.0, "{:?}", model.weights);
    assert_eq!(model.contributions(&[2.0, 4.0, 2.0])[0].0, "b");
    assert!(model.predict(&[2.0, 4.0, 2.0]) > 0.8 && model.predict(&[2.0, 0.0, 2.0]) < 0.2);
    // Same data, same model.
    assert_eq!(model, model::train(&["a", "b", "c"], &dataset(400, true, 7), DEFAULT_NOW));
}

#[test]
fn a_model_of_noise_says_so_and_is_not_usable() {
    for seed in [1, 2, 3, 4, 5] {
        let model = model::train(&["a", "b", "c"], &dataset(400, false, seed), DEFAULT_NOW);
        let auc = model.auc.unwrap();
        assert!(auc < 0.75, "seed {seed}: noise reached AUC {auc}");
        assert!(!model.usable && model.reason.as_deref().unwrap().contains("not clearly above"), "{model:?}");
    }
    let few = model::train(&["a", "b", "c"], &dataset(12, true, 3), DEFAULT_NOW);
    assert!(!few.usable && few.reason.unwrap().contains("too few"));
}

#[test]
fn before_write_scores_creates_and_relevant_updates() {
    let host = TestHost::new();
    let company = host.insert("company", [("name", Value::from("Acme")), ("employees", Value::Int(120))]);
    let ada = host
        .write(
            &LeadScoring,
            Change::create("contact", [("first_name", Value::from("Ada")), ("company_id", Value::Id(company.id.clone()))]),
        )
        .unwrap();
    assert_eq!((ada.int("fit_score"), ada.int("total_score"), ada.text("score_grade")), (Some(15), Some(15), Some("d")));
    assert_eq!(ada.int("scored_at"), Some(DEFAULT_NOW));
    assert!(ada.text("score_reason").unwrap().contains("fit[1]"), "{:?}", ada.text("score_reason"));

    host.advance(1000);
    let before = ada.fields.clone();
    let after = before.clone().with("title", "VP Engineering");
    let promoted = host.write(&LeadScoring, Change::update("contact", &ada.id, before, after)).unwrap();
    assert_eq!((promoted.int("fit_score"), promoted.int("total_score")), (Some(35), Some(35)));
    assert_eq!(promoted.int("score_previous"), Some(15));
    assert_eq!(promoted.text("score_grade"), Some("c"));
    assert!(promoted.text("score_reason").unwrap().starts_with("changed title"));

    // A change of a field no score reads leaves the scores alone.
    let before = promoted.fields.clone();
    let after = before.clone().with("phone", "+49 30 1234");
    let decisions = host.before_write(&LeadScoring, vec![Change::update("contact", &ada.id, before, after)]).unwrap();
    assert_eq!(decisions, [Decision::Accept]);
}

#[test]
fn crossing_a_threshold_sets_the_stage_then_assigns_an_owner_and_emits_once() {
    let host = TestHost::new();
    host.set_config(json!({
        "fit": [{"title_contains": ["vp"], "points": 30}, {"country_in": ["de"], "points": 30}],
        "thresholds": [
            {"name": "mql", "min_score": 30, "lifecycle_stage": "marketingqualifiedlead", "team": "inbound", "event": "lead.mql"},
            {"name": "sql", "min_score": 60, "lifecycle_stage": "salesqualifiedlead", "event": "lead.sql"}
        ],
        "teams": {"inbound": [U1, U2]}
    }));
    let mut owners = Vec::new();
    for name in ["Ada", "Grace", "Alan"] {
        let contact = host
            .write(&LeadScoring, Change::create("contact", [("first_name", name), ("title", "VP"), ("lifecycle_stage", "lead")]))
            .unwrap();
        assert_eq!(contact.text("lifecycle_stage"), Some("marketingqualifiedlead"));
        assert_eq!(contact.text("score_threshold"), Some("mql"));
        host.after_commit(&LeadScoring, host.take_events()).unwrap();
        let stored = host.record("contact", &contact.id).unwrap();
        assert_eq!(stored.text("score_threshold_acted"), Some("mql"));
        owners.push(stored.text("owner_id").unwrap().to_owned());
        // The history record of the change from nothing to 30.
        let history: Vec<Record> =
            host.records("score_change").into_iter().filter(|change| change.id("contact_id") == Some(&contact.id)).collect();
        assert_eq!(history.len(), 1);
        assert_eq!((history[0].int("old_score"), history[0].int("new_score")), (None, Some(30)));
        // Delivering the same events again does nothing more.
        host.after_commit(&LeadScoring, host.take_events()).unwrap();
        host.after_commit(&LeadScoring, vec![Event::new("contact", &contact.id, Op::Update, stored.fields.clone())]).unwrap();
    }
    assert_eq!(owners, [U1, U2, U1]);
    assert_eq!(host.kv_get("round-robin:inbound"), Some(b"3".to_vec()));
    assert_eq!(host.emitted().iter().filter(|event| event.name == "lead.mql").count(), 3);
    assert_eq!(host.records("score_change").len(), 3);

    // Past the next threshold: the later stage and its event, the owner kept.
    let ada = host.records("contact").remove(0);
    let before = ada.fields.clone();
    let after = before.clone().with("country", "DE");
    let sql = host.write(&LeadScoring, Change::update("contact", &ada.id, before, after)).unwrap();
    assert_eq!((sql.text("lifecycle_stage"), sql.int("total_score")), (Some("salesqualifiedlead"), Some(60)));
    host.after_commit(&LeadScoring, host.take_events()).unwrap();
    let emitted = host.emitted();
    let last = emitted.last().unwrap();
    assert_eq!(last.name, "lead.sql");
    let payload: serde_json::Value = serde_json::from_str(&last.payload).unwrap();
    assert_eq!((payload["contact_id"].as_str(), payload["owner_id"].as_str()), (Some(ada.id.as_str()), Some(U1)));
    assert_eq!(host.record("contact", &ada.id).unwrap().text("owner_id"), Some(U1));
}

#[test]
fn activities_and_events_raise_engagement_with_decay() {
    let host = TestHost::new();
    let ada = host.write(&LeadScoring, Change::create("contact", [("first_name", "Ada")])).unwrap();
    host.take_events();
    host.insert(
        "activity",
        [("kind", Value::from("meeting")), ("contact_id", Value::Id(ada.id.clone())), ("occurred_at", Value::Int(DEFAULT_NOW))],
    );
    host.insert(
        "activity",
        [
            ("kind", Value::from("call")),
            ("contact_id", Value::Id(ada.id.clone())),
            ("occurred_at", Value::Int(DEFAULT_NOW - 30 * DAY)),
        ],
    );
    host.insert(
        "custom_event",
        [("name", "form_submitted"), ("payload", &json!({"contact_id": ada.id}).to_string()), ("source", "web-form")],
    );
    // Not linked, and this plugin's own events do not count.
    host.insert("custom_event", [("name", "form_submitted"), ("payload", "{}"), ("source", "web-form")]);
    host.insert(
        "custom_event",
        [("name", "form_submitted"), ("payload", &json!({"contact_id": ada.id}).to_string()), ("source", "lead-scoring")],
    );
    host.after_commit(&LeadScoring, host.take_events()).unwrap();
    let stored = host.record("contact", &ada.id).unwrap();
    // 10 (meeting) + 5 halved (call a half-life ago) + 10 (form).
    assert_eq!(stored.float("engagement_score"), Some(22.5));
    assert_eq!(stored.text("score_reason"), Some("event form_submitted"));
}

#[test]
fn the_backfill_runs_in_batches_by_timer_and_reports_progress() {
    let host = TestHost::new();
    for index in 0..5 {
        host.insert("contact", [("first_name", format!("C{index}"))]);
    }
    let first = host.records("contact").remove(0);
    host.insert("activity", [("kind", Value::from("email")), ("contact_id", Value::Id(first.id.clone()))]);
    let started = host.invoke(&LeadScoring, "backfill", [("batch_size", 2)]).unwrap();
    assert_eq!((started.bool("running"), started.int("total"), started.int("done")), (Some(true), Some(5), Some(0)));
    let refused = host.invoke(&LeadScoring, "backfill", Fields::new()).unwrap_err();
    assert!(refused.message().contains("a backfill is running"), "{refused}");
    assert!(host.invoke(&LeadScoring, "backfill", [("batch_size", 0)]).unwrap_err().message().starts_with("batch_size"));

    assert_eq!(host.fire_due_timers(&LeadScoring).unwrap(), 1);
    let status = host.invoke(&LeadScoring, "backfill-status", Fields::new()).unwrap();
    assert_eq!((status.int("done"), status.bool("running")), (Some(2), Some(true)));
    // Re-armed at a later time than it fired.
    assert_eq!(host.timers()[0].at, DEFAULT_NOW + 1);
    host.advance(1);
    let mut runs = 1;
    while host.fire_due_timers(&LeadScoring).unwrap() > 0 {
        runs += 1;
        host.advance(1);
    }
    assert_eq!(runs, 3);
    let status = host.invoke(&LeadScoring, "backfill-status", Fields::new()).unwrap();
    assert_eq!((status.int("done"), status.int("total"), status.bool("running")), (Some(5), Some(5), Some(false)));
    assert!(status.int("finished_at").is_some() && status.int("batches") == Some(3));
    assert!(host.records("contact").iter().all(|contact| contact.text("score_reason") == Some("backfill")));
    assert_eq!(host.record("contact", &first.id).unwrap().float("engagement_score"), Some(3.0));
    assert!(host.timers().is_empty());
}

#[test]
fn train_and_predict_through_the_host() {
    let host = TestHost::new();
    let pipeline = host.insert("pipeline", [("name", "Sales")]);
    for (key, won) in [("closedwon", true), ("closedlost", false), ("demo", false)] {
        host.insert(
            "pipeline_stage",
            [
                ("pipeline_id", Value::Id(pipeline.id.clone())),
                ("key", Value::from(key)),
                ("is_closed", Value::Bool(key != "demo")),
                ("is_won", Value::Bool(won)),
            ],
        );
    }
    let mut rng = Rng(11);
    for index in 0..160 {
        let contact = host.insert("contact", [("first_name", format!("C{index}"))]);
        let calls = (rng.next() * 8.0) as usize;
        for _ in 0..calls {
            host.insert("activity", [("kind", Value::from("call")), ("contact_id", Value::Id(contact.id.clone()))]);
        }
        let won = calls as f64 + rng.next() * 3.0 > 5.5;
        host.insert(
            "deal",
            [
                ("contact_id", Value::Id(contact.id.clone())),
                ("pipeline_id", Value::Id(pipeline.id.clone())),
                ("stage", Value::from(if won { "closedwon" } else { "closedlost" })),
            ],
        );
    }
    // An open deal is no example.
    let open = host.insert("contact", [("first_name", "Open")]);
    host.insert(
        "deal",
        [
            ("contact_id", Value::Id(open.id.clone())),
            ("pipeline_id", Value::Id(pipeline.id.clone())),
            ("stage", Value::from("demo")),
        ],
    );
    let trained = host.invoke(&LeadScoring, "train", Fields::new()).unwrap();
    assert_eq!(trained.int("won").unwrap() + trained.int("lost").unwrap(), 160);
    assert!(trained.float("auc").unwrap() > 0.75, "{trained:?}");
    assert_eq!(trained.bool("usable"), Some(true));

    let predicted = host.invoke(&LeadScoring, "predict", [("contact_id", Value::Id(open.id.clone()))]).unwrap();
    assert!(predicted.int("score").is_some_and(|score| (0..=100).contains(&score)));
    let top: serde_json::Value = serde_json::from_str(predicted.text("top_features").unwrap()).unwrap();
    assert_eq!(top[0]["feature"], "calls");
    let missing = host.invoke(&LeadScoring, "predict", [("contact_id", Value::Id("01HZZZZZZZZZZZZZZZZZZZZZZZ".into()))]);
    assert!(missing.unwrap_err().message().starts_with("contact_id: there is no contact"));

    // A usable model scores contacts as they are written.
    let scored = host.write(&LeadScoring, Change::create("contact", [("first_name", "New")])).unwrap();
    assert!(scored.int("predictive_score").is_some());
}
