//! The predictive model: logistic regression on standardised features,
//! trained by full-batch gradient descent with a small L2 penalty, judged
//! by the AUC on a held-out split chosen by a hash of the record id (the
//! same data always gives the same split and the same model).
//!
//! A model earns `usable` only if it saw enough examples of both classes
//! and its held-out AUC is at least [`MIN_AUC`] even at the low end of its
//! confidence interval (AUC − 1.96 standard errors, Hanley and McNeil), so
//! a small held-out part that looks good by chance does not count; an
//! unusable model is stored for inspection but never applied.

use crm_plugin_sdk::serde::{Deserialize, Serialize};

/// Held-out AUC below which a model is not applied.
pub const MIN_AUC: f64 = 0.6;
/// Fewest examples of each class in training, and in the held-out part.
pub const MIN_TRAIN_PER_CLASS: usize = 10;
pub const MIN_TEST_PER_CLASS: usize = 3;
/// One in this many examples is held out.
pub const HOLD_OUT_EVERY: u64 = 4;

const ITERATIONS: usize = 500;
const LEARNING_RATE: f64 = 0.3;
const L2: f64 = 0.001;

/// One labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The record id: decides the split.
    pub id: String,
    pub features: Vec<f64>,
    /// Won (`true`) or lost.
    pub won: bool,
}

/// A trained model and how well it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde")]
pub struct Model {
    pub features: Vec<String>,
    pub weights: Vec<f64>,
    pub bias: f64,
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    /// Held-out AUC; `None` when the held-out part lacks a class.
    pub auc: Option<f64>,
    /// The low end of the AUC's 95% confidence interval.
    pub auc_low: Option<f64>,
    pub usable: bool,
    /// Why the model is not usable, when it is not.
    pub reason: Option<String>,
    pub train_examples: usize,
    pub test_examples: usize,
    pub won: usize,
    pub lost: usize,
    pub trained_at: i64,
}

/// Whether `id` falls in the held-out part: FNV-1a of the id.
pub fn held_out(id: &str) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.is_multiple_of(HOLD_OUT_EVERY)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Trains on the examples outside the held-out part and measures the AUC
/// on the others.
pub fn train(names: &[&str], examples: &[Example], now: i64) -> Model {
    let width = names.len();
    let (test, train): (Vec<&Example>, Vec<&Example>) = examples.iter().partition(|example| held_out(&example.id));
    let won = examples.iter().filter(|example| example.won).count();
    let lost = examples.len() - won;

    let mut means = vec![0.0; width];
    let mut scales = vec![1.0; width];
    if !train.is_empty() {
        for example in &train {
            for (mean, value) in means.iter_mut().zip(&example.features) {
                *mean += value / train.len() as f64;
            }
        }
        for (index, scale) in scales.iter_mut().enumerate() {
            let variance =
                train.iter().map(|example| (example.features[index] - means[index]).powi(2)).sum::<f64>() / train.len() as f64;
            *scale = if variance > 1e-12 { variance.sqrt() } else { 1.0 };
        }
    }
    let standard = |features: &[f64]| -> Vec<f64> {
        features.iter().enumerate().map(|(index, value)| (value - means[index]) / scales[index]).collect()
    };
    let train_x: Vec<Vec<f64>> = train.iter().map(|example| standard(&example.features)).collect();
    let train_y: Vec<f64> = train.iter().map(|example| if example.won { 1.0 } else { 0.0 }).collect();

    let mut weights = vec![0.0; width];
    let mut bias = 0.0;
    if !train_x.is_empty() {
        let n = train_x.len() as f64;
        for _ in 0..ITERATIONS {
            let mut gradient = vec![0.0; width];
            let mut gradient_bias = 0.0;
            for (x, y) in train_x.iter().zip(&train_y) {
                let error = sigmoid(dot(&weights, x) + bias) - y;
                for (g, value) in gradient.iter_mut().zip(x) {
                    *g += error * value;
                }
                gradient_bias += error;
            }
            for (weight, g) in weights.iter_mut().zip(&gradient) {
                *weight -= LEARNING_RATE * (g / n + L2 * *weight);
            }
            bias -= LEARNING_RATE * gradient_bias / n;
        }
    }

    let scored: Vec<(f64, bool)> =
        test.iter().map(|example| (sigmoid(dot(&weights, &standard(&example.features)) + bias), example.won)).collect();
    let auc = auc(&scored);
    let positives = scored.iter().filter(|(_, won)| *won).count();
    let auc_low = auc.map(|auc| auc - 1.96 * auc_standard_error(auc, positives, scored.len() - positives));
    let count = |set: &[&Example], won: bool| set.iter().filter(|example| example.won == won).count();
    let reason = if count(&train, true) < MIN_TRAIN_PER_CLASS || count(&train, false) < MIN_TRAIN_PER_CLASS {
        Some(format!("too few examples: training needs at least {MIN_TRAIN_PER_CLASS} won and {MIN_TRAIN_PER_CLASS} lost"))
    } else if count(&test, true) < MIN_TEST_PER_CLASS || count(&test, false) < MIN_TEST_PER_CLASS {
        Some(format!("too few examples: the held-out part needs at least {MIN_TEST_PER_CLASS} won and {MIN_TEST_PER_CLASS} lost"))
    } else if auc_low.is_none_or(|low| low < MIN_AUC) {
        Some(format!(
            "held-out AUC {} (95% interval from {}) is not clearly above {MIN_AUC}: the features do not predict the outcome",
            auc.map_or("n/a".into(), |auc| format!("{auc:.3}")),
            auc_low.map_or("n/a".into(), |low| format!("{low:.3}"))
        ))
    } else {
        None
    };
    Model {
        features: names.iter().map(|name| (*name).to_owned()).collect(),
        weights,
        bias,
        means,
        scales,
        auc,
        auc_low,
        usable: reason.is_none(),
        reason,
        train_examples: train.len(),
        test_examples: test.len(),
        won,
        lost,
        trained_at: now,
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

impl Model {
    fn standard(&self, features: &[f64]) -> Vec<f64> {
        features.iter().enumerate().map(|(index, value)| (value - self.means[index]) / self.scales[index]).collect()
    }

    /// The probability of winning for these features.
    pub fn predict(&self, features: &[f64]) -> f64 {
        sigmoid(dot(&self.weights, &self.standard(features)) + self.bias)
    }

    /// Each feature's contribution to the log-odds (standardised value ×
    /// weight), largest magnitude first.
    pub fn contributions(&self, features: &[f64]) -> Vec<(String, f64, f64)> {
        let standard = self.standard(features);
        let mut parts: Vec<(String, f64, f64)> = self
            .features
            .iter()
            .zip(features)
            .zip(standard.iter().zip(&self.weights))
            .map(|((name, raw), (value, weight))| (name.clone(), *raw, value * weight))
            .collect();
        parts.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
        parts
    }
}

/// The standard error of an AUC from `positives` and `negatives`
/// examples (Hanley and McNeil, 1982).
pub fn auc_standard_error(auc: f64, positives: usize, negatives: usize) -> f64 {
    let (n1, n2) = (positives as f64, negatives as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return f64::INFINITY;
    }
    let q1 = auc / (2.0 - auc);
    let q2 = 2.0 * auc * auc / (1.0 + auc);
    let variance = (auc * (1.0 - auc) + (n1 - 1.0) * (q1 - auc * auc) + (n2 - 1.0) * (q2 - auc * auc)) / (n1 * n2);
    variance.max(0.0).sqrt()
}

/// The area under the ROC curve of `(score, positive)` pairs: the chance
/// that a random positive scores above a random negative, ties counting
/// half. `None` without both classes.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|(_, positive)| *positive).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mann–Whitney: sum of the positives' ranks, ties given their mean rank.
    let mut rank_sum = 0.0;
    let mut index = 0;
    while index < sorted.len() {
        let mut end = index;
        while end + 1 < sorted.len() && sorted[end + 1].0 == sorted[index].0 {
            end += 1;
        }
        let mean_rank = (index + end) as f64 / 2.0 + 1.0;
        rank_sum += sorted[index..=end].iter().filter(|(_, positive)| *positive).count() as f64 * mean_rank;
        index = end + 1;
    }
    let positives = positives as f64;
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives as f64))
}
