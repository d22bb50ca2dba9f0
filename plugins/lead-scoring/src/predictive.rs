//! Training the predictive model on the tenant's own outcomes and using it.
//!
//! Examples are the primary contacts of closed deals: a contact with a won
//! deal is a positive, one whose closed deals were all lost a negative.
//! Whether a deal is closed and won comes from its pipeline's stages
//! (`pipeline_stage.is_closed`, `is_won`), matched by the deal's
//! `pipeline_id` and `stage` key.

use std::collections::{BTreeMap, BTreeSet};

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{self, json};

use crate::config::Config;
use crate::model::{self, Example, Model};
use crate::scoring::{self, Companies, FEATURES};

/// The most contacts one training reads.
pub const MAX_EXAMPLES: usize = 5000;
const PAGE: u32 = 500;

/// Every record of `object` matching `filter`, up to `max`.
fn all(object: &str, filter: &str, max: usize) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = records::query(object, filter, &[], PAGE, after.as_deref())?;
        out.extend(page.records.into_iter().filter(|record| !record.deleted));
        match page.next {
            Some(next) if out.len() < max => after = Some(next),
            _ => return Ok(out),
        }
    }
}

/// Won (`true`) or lost per contact, from the closed deals.
pub fn outcomes() -> Result<BTreeMap<String, bool>> {
    let stages = all("pipeline_stage", &json!({"is_closed": {"eq": true}}).to_string(), usize::MAX)?;
    let mut won_stages: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for stage in &stages {
        let (Some(pipeline), Some(key)) = (stage.id("pipeline_id"), stage.text("key")) else { continue };
        won_stages.insert((pipeline.to_owned(), key.to_owned()), stage.bool("is_won").unwrap_or(false));
        keys.insert(key.to_owned());
    }
    let mut outcomes = BTreeMap::new();
    if keys.is_empty() {
        return Ok(outcomes);
    }
    let deals = all("deal", &json!({"stage": {"in": keys}, "contact_id": {"isNull": false}}).to_string(), usize::MAX)?;
    for deal in &deals {
        let (Some(contact), Some(stage)) = (deal.id("contact_id"), deal.text("stage")) else { continue };
        let won = match deal.id("pipeline_id") {
            Some(pipeline) => won_stages.get(&(pipeline.to_owned(), stage.to_owned())).copied(),
            None => None,
        };
        let Some(won) = won else { continue };
        let entry = outcomes.entry(contact.to_owned()).or_insert(false);
        *entry |= won;
    }
    Ok(outcomes)
}

/// Trains a model on the tenant's outcomes and stores it (usable or not).
pub fn train(config: &Config, plugin: &str, max_examples: usize) -> Result<Model> {
    let outcomes = outcomes()?;
    let mut companies = Companies::default();
    let mut examples = Vec::new();
    for (contact_id, won) in outcomes.iter().take(max_examples) {
        let Some(contact) = records::get("contact", contact_id)?.filter(|record| !record.deleted) else { continue };
        let company = companies.of(&contact.fields)?.cloned();
        let linked = scoring::linked(config, plugin, contact_id)?;
        let features = scoring::features(config, &contact.fields, company.as_ref(), &linked);
        examples.push(Example { id: contact_id.clone(), features, won: *won });
    }
    let model = model::train(&FEATURES, &examples, clock::now());
    kv::set_json("model", &model)?;
    Ok(model)
}

/// The trained model as action output.
pub fn model_output(model: &Model) -> Fields {
    let weights: serde_json::Map<String, serde_json::Value> =
        model.features.iter().zip(&model.weights).map(|(name, weight)| (name.clone(), json!(weight))).collect();
    Fields::new()
        .with("auc", model.auc)
        .with("auc_low", model.auc_low)
        .with("usable", model.usable)
        .with("reason", model.reason.clone())
        .with("train_examples", model.train_examples as i64)
        .with("test_examples", model.test_examples as i64)
        .with("won", model.won as i64)
        .with("lost", model.lost as i64)
        .with("weights", serde_json::Value::Object(weights).to_string())
        .with("trained_at", model.trained_at)
}

/// The predictive score of one contact and the features that moved it most.
pub fn predict(config: &Config, plugin: &str, contact_id: &str) -> Result<Fields> {
    let model = scoring::stored_model()?.ok_or("no model yet: run the train action first")?;
    let contact = records::get("contact", contact_id)?
        .filter(|record| !record.deleted)
        .ok_or_else(|| Error::msg(format!("contact_id: there is no contact {contact_id}")))?;
    let mut companies = Companies::default();
    let company = companies.of(&contact.fields)?.cloned();
    let linked = scoring::linked(config, plugin, contact_id)?;
    let features = scoring::features(config, &contact.fields, company.as_ref(), &linked);
    let top: Vec<serde_json::Value> = model
        .contributions(&features)
        .into_iter()
        .take(5)
        .map(|(feature, value, contribution)| json!({"feature": feature, "value": value, "contribution": contribution}))
        .collect();
    let score = model.usable.then(|| (model.predict(&features) * 100.0).round() as i64);
    Ok(Fields::new()
        .with("score", score)
        .with("usable", model.usable)
        .with("auc", model.auc)
        .with("reason", model.reason.clone())
        .with("top_features", serde_json::Value::Array(top).to_string()))
}
