//! Training configuration: JSON, typed, validated on load. Unknown keys are rejected with the
//! key named. `--set key=value` overrides are applied to the JSON before it is typed, so they
//! get the same checks.

use crate::data::example::InvalidExamples;
use crate::error::input_error;
use crate::model::head::{Readout, Similarity};
use crate::tokenizer::PackingLimits;
use crate::train::loss::LossKind;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppingMetric {
    Loss,
    Accuracy,
    MicroF1,
    MacroF1,
    AucRoc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Model directory or Hugging Face repo id of the encoder to start from; null for the
    /// model built into gliznet.
    pub backbone: Option<String>,
    pub similarity: Similarity,
    /// `first_token` (`[CLS]` and each label's first token) or `mean` (the mean over the
    /// text's and each label's tokens).
    pub readout: Readout,
    /// `bce` (a sigmoid per label), `softmax` (each positive against the sequence's negatives)
    /// or `bce_softmax` (their sum).
    pub loss: LossKind,
    /// Projection width shared by text and labels; null for none.
    pub projection_dim: Option<usize>,
    pub max_length: usize,
    pub max_label_tokens: usize,
    pub min_text_tokens: usize,
    /// Labels per training example; more are subsampled each epoch (positives and
    /// negatives in proportion).
    pub max_labels_per_example: usize,
    pub train_file: PathBuf,
    /// When absent, `validation_fraction` of the training file is held out (split by seed).
    pub validation_file: Option<PathBuf>,
    pub validation_fraction: f64,
    pub invalid_examples: InvalidExamples,
    pub epochs: usize,
    /// Stop after this many optimizer steps (the schedule decays to zero there); null for
    /// whole epochs.
    pub max_steps: Option<usize>,
    pub batch_size: usize,
    pub gradient_accumulation: usize,
    pub encoder_lr: f64,
    pub head_lr: f64,
    pub warmup_fraction: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Clip gradients to this global L2 norm; null for no clipping.
    pub max_grad_norm: Option<f64>,
    /// Dropout in the encoder; null keeps the backbone's own.
    pub dropout: Option<f32>,
    /// Validate (and keep the best model) every N optimizer steps, and at each epoch's end.
    pub eval_every: usize,
    /// Write the resumable checkpoint every N optimizer steps, and at each epoch's end.
    pub save_every: usize,
    pub early_stopping_patience: usize,
    pub early_stopping_metric: StoppingMetric,
    pub seed: u64,
    pub output_dir: PathBuf,
    pub device: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        let limits = PackingLimits::default();
        Self {
            backbone: None,
            similarity: Similarity::Bilinear,
            readout: Readout::FirstToken,
            loss: LossKind::Bce,
            projection_dim: Some(256),
            max_length: limits.max_length,
            max_label_tokens: limits.max_label_tokens,
            min_text_tokens: limits.min_text_tokens,
            max_labels_per_example: 16,
            train_file: PathBuf::new(),
            validation_file: None,
            validation_fraction: 0.1,
            invalid_examples: InvalidExamples::Error,
            epochs: 3,
            max_steps: None,
            batch_size: 16,
            gradient_accumulation: 1,
            encoder_lr: 3e-5,
            head_lr: 1e-3,
            warmup_fraction: 0.1,
            weight_decay: 0.01,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            max_grad_norm: Some(1.0),
            dropout: None,
            eval_every: 200,
            save_every: 200,
            early_stopping_patience: 3,
            early_stopping_metric: StoppingMetric::MacroF1,
            seed: 42,
            output_dir: PathBuf::new(),
            device: "auto".into(),
        }
    }
}

impl TrainConfig {
    /// Reads a config file and applies `key=value` overrides (values parsed as JSON when they
    /// parse, as strings otherwise; `lr` sets both learning rates).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| input_error(format!("cannot read config {}: {e}", path.display())))?;
        let mut json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| input_error(format!("{} is not valid JSON: {e}", path.display())))?;
        let object = json
            .as_object_mut()
            .ok_or_else(|| input_error(format!("{}: expected a JSON object", path.display())))?;
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| input_error(format!("--set {item:?}: expected key=value")))?;
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
            if key == "lr" {
                object.insert("encoder_lr".into(), value.clone());
                object.insert("head_lr".into(), value);
            } else {
                object.insert(key.to_string(), value);
            }
        }
        let config: Self = serde_json::from_value(json)
            .map_err(|e| input_error(format!("{}: {e}", path.display())))?;
        config
            .validate()
            .map_err(|e| input_error(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    pub fn limits(&self) -> PackingLimits {
        PackingLimits {
            max_length: self.max_length,
            max_label_tokens: self.max_label_tokens,
            min_text_tokens: self.min_text_tokens,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("gradient_accumulation", self.gradient_accumulation),
            ("max_labels_per_example", self.max_labels_per_example),
            ("eval_every", self.eval_every),
            ("save_every", self.save_every),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{key} must be at least 1"));
        }
        if self.train_file.as_os_str().is_empty() {
            return Err("train_file is required".into());
        }
        if self.output_dir.as_os_str().is_empty() {
            return Err("output_dir is required (or pass --output DIR)".into());
        }
        for (key, lr) in [("encoder_lr", self.encoder_lr), ("head_lr", self.head_lr)] {
            if !(lr >= 0.0 && lr.is_finite()) {
                return Err(format!("{key} must be a non-negative number"));
            }
        }
        let unit = [
            ("validation_fraction", self.validation_fraction),
            ("warmup_fraction", self.warmup_fraction),
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ];
        if let Some((key, v)) = unit.iter().find(|(_, v)| !(0.0..1.0).contains(v)) {
            return Err(format!("{key} = {v} must be in [0, 1)"));
        }
        if self.validation_file.is_none() && self.validation_fraction <= 0.0 {
            return Err("give validation_file or a positive validation_fraction".into());
        }
        if self.weight_decay < 0.0 || self.adam_eps <= 0.0 {
            return Err("weight_decay must be ≥ 0 and adam_eps > 0".into());
        }
        if matches!(self.max_grad_norm, Some(n) if n <= 0.0) {
            return Err("max_grad_norm must be positive (or null)".into());
        }
        if matches!(self.dropout, Some(p) if !(0.0..1.0).contains(&p)) {
            return Err("dropout must be in [0, 1)".into());
        }
        if self.max_steps == Some(0) {
            return Err("max_steps must be at least 1 (or null)".into());
        }
        if self.projection_dim == Some(0) {
            return Err("projection_dim must be positive (or null)".into());
        }
        self.limits().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(json: &str, overrides: &[&str]) -> Result<TrainConfig> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(json.as_bytes()).unwrap();
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        TrainConfig::load(file.path(), &overrides)
    }

    const MINIMAL: &str = r#"{"train_file": "t.jsonl", "output_dir": "out"}"#;

    #[test]
    fn defaults_and_overrides() {
        let config = load(
            MINIMAL,
            &[
                "lr=1e-4",
                "epochs=5",
                "similarity=cosine",
                "projection_dim=null",
            ],
        )
        .unwrap();
        assert_eq!(config.encoder_lr, 1e-4);
        assert_eq!(config.head_lr, 1e-4);
        assert_eq!(config.epochs, 5);
        assert_eq!(config.similarity, Similarity::Cosine);
        assert_eq!(config.projection_dim, None);
        assert_eq!(config.weight_decay, 0.01);
        assert_eq!(config.early_stopping_patience, 3);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = load(
            r#"{"train_file": "t", "output_dir": "o", "learning_rate": 1}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `learning_rate`"),
            "{err}"
        );
        let err = load(MINIMAL, &["epocs=2"]).unwrap_err();
        assert!(err.to_string().contains("unknown field `epocs`"), "{err}");
        let err = load(MINIMAL, &["batch_size=0"]).unwrap_err();
        assert!(
            err.to_string().contains("batch_size must be at least 1"),
            "{err}"
        );
        let err = load(MINIMAL, &["warmup_fraction=1.5"]).unwrap_err();
        assert!(err.to_string().contains("warmup_fraction"), "{err}");
        let err = load(MINIMAL, &["similarity=euclid"]).unwrap_err();
        assert!(err.to_string().contains("euclid"), "{err}");
        let err = load(r#"{"output_dir": "o"}"#, &[]).unwrap_err();
        assert!(err.to_string().contains("train_file is required"), "{err}");
        let err = load(MINIMAL, &["max_length=20"]).unwrap_err();
        assert!(
            err.to_string().contains("max_length 20 is too small"),
            "{err}"
        );
        assert!(crate::error::is_input_error(&load("[1]", &[]).unwrap_err()));
    }
}
