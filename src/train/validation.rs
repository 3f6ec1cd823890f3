//! Validation during training: loss and metrics on examples with all their labels.

use crate::classifier;
use crate::config::StoppingMetric;
use crate::data::example::Example;
use crate::eval::metrics::{binary_metrics, BinaryMetrics, ScoredPair};
use crate::model::gliznet::GliZNet;
use crate::scoring::sigmoid;
use crate::tokenizer::{EncodedLabels, LabelTokenizer};
use crate::train::loss::bce_with_logit;
use anyhow::Result;
use candle_core::Device;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Validation {
    /// Mean binary cross-entropy per example (each example's mean over its labels).
    pub loss: f64,
    #[serde(flatten)]
    pub metrics: BinaryMetrics,
}

impl Validation {
    /// The early-stopping metric, oriented so that larger is better.
    pub fn score(&self, metric: StoppingMetric) -> f64 {
        match metric {
            StoppingMetric::Loss => -self.loss,
            StoppingMetric::Accuracy => self.metrics.accuracy,
            StoppingMetric::MicroF1 => self.metrics.micro_f1,
            StoppingMetric::MacroF1 => self.metrics.macro_f1,
            StoppingMetric::AucRoc => self.metrics.auc_roc.unwrap_or(0.5),
        }
    }
}

/// Loss and metrics of a model on examples with all their labels (no subsampling), at the
/// threshold 0.5.
pub fn validate(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    examples: &[(Example, EncodedLabels)],
    batch_size: usize,
) -> Result<Validation> {
    let items: Vec<(&str, &EncodedLabels)> =
        examples.iter().map(|(e, l)| (e.text.as_str(), l)).collect();
    let results = classifier::logits(model, tokenizer, device, &items, batch_size, None)?;
    let mut pairs = Vec::new();
    let mut loss = 0.0;
    for ((example, _), result) in examples.iter().zip(results) {
        let targets = example.targets();
        let mut example_loss = 0.0;
        for ((label, positive), &logit) in targets.iter().zip(&result.logits) {
            example_loss += bce_with_logit(logit, *positive);
            pairs.push(ScoredPair {
                label: label.to_string(),
                score: sigmoid(logit),
                positive: *positive,
            });
        }
        loss += example_loss / targets.len() as f64;
    }
    Ok(Validation {
        loss: loss / examples.len().max(1) as f64,
        metrics: binary_metrics(&pairs, 0.5),
    })
}
