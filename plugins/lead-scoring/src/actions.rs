//! The actions, exposed as GraphQL mutations `leadScoring<Action>`:
//! `rescore` (one contact now), `train`, `predict`, `backfill` and
//! `backfillStatus`.

use crm_plugin_sdk::prelude::*;

use crate::backfill;
use crate::config::Config;
use crate::predictive;
use crate::scoring;

fn backfill_output(action: ActionDecl) -> ActionDecl {
    action
        .output(FieldDecl::boolean("running"))
        .output(FieldDecl::integer("done").description("Contacts scored so far"))
        .output(FieldDecl::integer("total").description("Contacts when the backfill started"))
        .output(FieldDecl::integer("batches").description("Timer runs so far"))
        .output(FieldDecl::integer("batch_size"))
        .output(FieldDecl::datetime("started_at"))
        .output(FieldDecl::datetime("finished_at"))
}

/// The actions the manifest declares.
pub fn decls() -> Vec<ActionDecl> {
    vec![
        ActionDecl::new("rescore")
            .description("Scores one contact now from its fields, activities and events")
            .input(FieldDecl::reference("contact_id", "contact").required())
            .output(FieldDecl::boolean("scored")),
        ActionDecl::new("train")
            .description("Trains the predictive model on the contacts of won and lost deals; reports its held-out AUC")
            .input(FieldDecl::integer("max_examples").description("Contacts to learn from, at most (default and ceiling 5000)"))
            .output(FieldDecl::float("auc").description("Area under the ROC curve on the held-out quarter"))
            .output(FieldDecl::float("auc_low").description("The low end of the AUC's 95% confidence interval"))
            .output(FieldDecl::boolean("usable").description("Whether the model is good enough to be applied"))
            .output(FieldDecl::text("reason").description("Why it is not usable"))
            .output(FieldDecl::integer("train_examples"))
            .output(FieldDecl::integer("test_examples"))
            .output(FieldDecl::integer("won"))
            .output(FieldDecl::integer("lost"))
            .output(FieldDecl::long_text("weights").description("Weight per standardised feature, as JSON"))
            .output(FieldDecl::datetime("trained_at")),
        ActionDecl::new("predict")
            .description("The predictive score of a contact and the features contributing most to it")
            .input(FieldDecl::reference("contact_id", "contact").required())
            .output(FieldDecl::integer("score").description("Chance of winning in percent; empty when the model is not usable"))
            .output(FieldDecl::boolean("usable"))
            .output(FieldDecl::float("auc"))
            .output(FieldDecl::text("reason"))
            .output(FieldDecl::long_text("top_features").description("JSON: [{feature, value, contribution}], largest first")),
        backfill_output(
            ActionDecl::new("backfill")
                .description("Starts re-scoring every contact, in batches run by a timer")
                .input(FieldDecl::integer("batch_size").description("Contacts per timer run, 1 to 500 (default 200)"))
                .input(FieldDecl::boolean("restart").description("Start over even if a backfill is running")),
        ),
        backfill_output(ActionDecl::new("backfill-status").description("Progress of the last backfill")),
    ]
}

/// Action output without its empty values: an absent output field reads as
/// `null` in GraphQL, whatever its type.
pub fn present(mut output: Fields) -> Fields {
    output.retain(|_, value| !value.is_null());
    output
}

pub fn invoke(ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
    answer(ctx, action, input).map(present)
}

fn answer(ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
    let config = Config::load(ctx)?;
    match action {
        "rescore" => {
            let id = input.id("contact_id").ok_or("contact_id: is required")?;
            let scored = scoring::refresh(&config, ctx.plugin(), id, "rescored on request")?;
            if !scored {
                return Err(Error::msg(format!("contact_id: there is no contact {id}")));
            }
            Ok(Fields::new().with("scored", true))
        }
        "train" => {
            let max = match input.int("max_examples") {
                None => predictive::MAX_EXAMPLES,
                Some(max) if max >= 1 => (max as usize).min(predictive::MAX_EXAMPLES),
                Some(max) => return Err(Error::msg(format!("max_examples: {max} is below 1"))),
            };
            Ok(predictive::model_output(&predictive::train(&config, ctx.plugin(), max)?))
        }
        "predict" => {
            let id = input.id("contact_id").ok_or("contact_id: is required")?;
            predictive::predict(&config, ctx.plugin(), id)
        }
        "backfill" => {
            let state = backfill::start(input.int("batch_size"), input.bool("restart").unwrap_or(false))?;
            Ok(backfill::output(Some(&state)))
        }
        "backfill-status" => Ok(backfill::output(backfill::load()?.as_ref())),
        other => Err(Error::unknown_action(other)),
    }
}
