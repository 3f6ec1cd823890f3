//! Training configuration: JSON, typed, validated on load. Unknown keys are rejected with the
//! key named. `--set key=value` overrides are applied to the JSON before it is typed, so they
//! get the same checks.

use crate::data::example::InvalidExamples;
use crate::error::input_error;
use crate::model::config::LabelAttention;
use crate::model::head::{Readout, Similarity};
use crate::tokenizer::{split_label_template, PackingLimits};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MAX_PROJECTION_DIM: usize = 16_384;
const MAX_BATCH_SIZE: usize = 4_096;
const MAX_LABELS_PER_EXAMPLE: usize = 4_096;

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file.
    File(PathBuf),
    /// A `key=value` override, as given.
    Override(String),
}

/// A bad key or value in a config, with the key (when known) and where its value came from.
/// The CLI words the origin with its flag names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            Origin::File(path) => write!(f, "{}: ", path.display())?,
            Origin::Override(item) => write!(f, "override {item:?}: ")?,
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Deserializes a config object. serde names neither the key of a bad value nor where it came
/// from, so on failure the first key that fails on its own (every other key taking its
/// default) is named, with its origin from `origin_of`; `path` is the origin otherwise.
pub fn deserialize_naming_key<T: serde::de::DeserializeOwned>(
    json: &serde_json::Value,
    path: &Path,
    origin_of: impl Fn(&str) -> Origin,
) -> Result<T, ConfigError> {
    serde_json::from_value(json.clone()).map_err(|e| {
        let culprit = json.as_object().and_then(|object| {
            object.iter().find_map(|(key, value)| {
                let single = serde_json::json!({ key.as_str(): value });
                serde_json::from_value::<T>(single)
                    .err()
                    .map(|e| (key.clone(), e.to_string()))
            })
        });
        match culprit {
            Some((key, message)) => ConfigError {
                origin: origin_of(&key),
                key: Some(key),
                message,
            },
            None => ConfigError {
                origin: Origin::File(path.to_path_buf()),
                key: None,
                message: e.to_string(),
            },
        }
    })
}

/// The validation score that early stopping follows and that picks the best model.
///
/// The default is `loss` (validation binary cross-entropy): it depends on no decision
/// threshold, so it cannot be gamed the way the F1 and accuracy scores at the fixed 0.5
/// threshold can (predicting every label scores a high macro-F1 on data with few negatives,
/// and a model drifting towards that looks like it improves). `auc_roc` is threshold-free
/// too. `macro_f1`, `micro_f1` and `accuracy` stay selectable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppingMetric {
    Loss,
    Accuracy,
    MicroF1,
    MacroF1,
    AucRoc,
}

/// The training loss (`loss`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// [`crate::train::loss::masked_bce_with_logits`].
    #[default]
    Bce,
    /// [`crate::train::loss::masked_softmax_against_negatives`].
    Softmax,
    /// The sum of the two.
    BceSoftmax,
}

/// Where the negatives of the training examples come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Negatives {
    /// Each example's own `not_labels`.
    #[default]
    Hard,
    /// As many labels as the example has `not_labels`, drawn from the positives of the whole
    /// training file, never one the example names itself ([`crate::data::labels::label_key`]).
    Random,
    /// None: positives only.
    None,
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
    /// Number every label from the same position, so that scores do not depend on label order.
    pub shared_label_positions: bool,
    /// What each token attends to: `full` (every token), `isolated` (the text to itself, each
    /// label to the text and itself) or `separate` (the text and each label to themselves).
    pub label_attention: LabelAttention,
    /// The phrase each label is read in, `{label}` replaced by the label (e.g. "This text is
    /// about {label}."); null reads labels as they are. Saved with the model.
    pub label_template: Option<String>,
    /// `bce` (a sigmoid per label), `softmax` (each positive against the sequence's negatives)
    /// or `bce_softmax` (their sum).
    pub loss: LossKind,
    /// Weight of the distillation term (0: off): the cross-entropy between the softmax of each
    /// sequence's logits and that of the frozen backbone's bi-encoder cosines (the text against
    /// each label in `distill_label_template`) at `distill_temperature`.
    pub distill_weight: f64,
    pub distill_temperature: f64,
    /// The teacher's wording of a label; `{label}` is replaced by the label.
    pub distill_label_template: String,
    /// Negatives added to each training example from the positives of the other examples in
    /// its micro-batch (labels it does not name itself), at most this many; 0 for none.
    pub in_batch_negatives: usize,
    /// The embeddings and the first N encoder layers stay as the backbone has them (not
    /// trained); 0 trains every layer.
    pub frozen_layers: usize,
    /// Where each training example's negatives come from: `hard` (its own `not_labels`),
    /// `random` (as many labels drawn from the other examples' positives, fixed per run) or
    /// `none` (positives only).
    pub negatives: Negatives,
    /// Projection width shared by text and labels; null for none.
    pub projection_dim: Option<usize>,
    pub max_length: usize,
    pub max_label_tokens: usize,
    pub min_text_tokens: usize,
    /// Labels per training example; more are subsampled each epoch (positives and
    /// negatives in proportion).
    pub max_labels_per_example: usize,
    pub train_file: PathBuf,
    /// Sentence pairs in the training format (`scripts/fetch-snli.py`: a premise as the text,
    /// its hypotheses as labels) mixed into the training examples; null for none.
    pub nli_file: Option<PathBuf>,
    /// The share of the mixed training examples that come from `nli_file`, in (0, 1): as many
    /// of its examples are drawn (by `seed`, at most all of them) as make this share.
    pub nli_share: f64,
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
            shared_label_positions: false,
            label_attention: LabelAttention::Full,
            label_template: None,
            loss: LossKind::Bce,
            distill_weight: 0.0,
            distill_temperature: 0.05,
            distill_label_template: "This text is about {label}.".into(),
            in_batch_negatives: 0,
            frozen_layers: 0,
            negatives: Negatives::Hard,
            projection_dim: Some(256),
            max_length: limits.max_length,
            max_label_tokens: limits.max_label_tokens,
            min_text_tokens: limits.min_text_tokens,
            max_labels_per_example: 16,
            train_file: PathBuf::new(),
            nli_file: None,
            nli_share: 0.5,
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
            early_stopping_metric: StoppingMetric::Loss,
            seed: 42,
            output_dir: PathBuf::new(),
            device: "auto".into(),
        }
    }
}

impl TrainConfig {
    /// Reads a config file and applies `key=value` overrides (values parsed as JSON when they
    /// parse, as strings otherwise; `lr` sets both learning rates). An unreadable file is an
    /// input error; a bad key or value is a [`ConfigError`] naming the key and where its value
    /// came from (the file or the override).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| input_error(format!("cannot read config {}: {e}", path.display())))?;
        let mut json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| input_error(format!("{} is not valid JSON: {e}", path.display())))?;
        let object = json
            .as_object_mut()
            .ok_or_else(|| input_error(format!("{}: expected a JSON object", path.display())))?;
        // The override that set each key last.
        let mut overridden: Vec<(String, String)> = Vec::new();
        for item in overrides {
            let (key, value) = item.split_once('=').ok_or_else(|| ConfigError {
                origin: Origin::Override(item.clone()),
                key: None,
                message: "expected key=value".into(),
            })?;
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
            let keys = if key == "lr" {
                vec!["encoder_lr", "head_lr"]
            } else {
                vec![key]
            };
            for key in keys {
                object.insert(key.to_string(), value.clone());
                overridden.retain(|(k, _)| k != key);
                overridden.push((key.to_string(), item.clone()));
            }
        }
        let origin_of = |key: &str| match overridden.iter().find(|(k, _)| k == key) {
            Some((_, item)) => Origin::Override(item.clone()),
            None => Origin::File(path.to_path_buf()),
        };
        let config: Self = deserialize_naming_key(&json, path, origin_of)?;
        config.validate().map_err(|message| {
            // Validation messages start with the key they are about.
            let key = json.as_object().and_then(|object| {
                object
                    .keys()
                    .filter(|k| message.starts_with(k.as_str()))
                    .max_by_key(|k| k.len())
                    .cloned()
            });
            ConfigError {
                origin: key
                    .as_deref()
                    .map_or(Origin::File(path.to_path_buf()), origin_of),
                key: None,
                message,
            }
        })?;
        Ok(config)
    }

    /// The keys whose values differ between two configs, sorted.
    pub fn differing_keys(&self, other: &Self) -> Vec<String> {
        let (Ok(a), Ok(b)) = (serde_json::to_value(self), serde_json::to_value(other)) else {
            return Vec::new();
        };
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return Vec::new();
        };
        let mut keys: Vec<String> = a
            .iter()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
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
            return Err("output_dir is required".into());
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
        if !(self.nli_share > 0.0 && self.nli_share < 1.0) {
            return Err(format!("nli_share = {} must be in (0, 1)", self.nli_share));
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
        if !(self.distill_weight >= 0.0 && self.distill_weight.is_finite()) {
            return Err("distill_weight must be a non-negative number".into());
        }
        if !(self.distill_temperature > 0.0 && self.distill_temperature.is_finite()) {
            return Err("distill_temperature must be positive".into());
        }
        if let Some(template) = &self.label_template {
            split_label_template(template)?;
        }
        if !self.distill_label_template.contains("{label}") {
            return Err("distill_label_template must contain {label}".into());
        }
        if self.max_steps == Some(0) {
            return Err("max_steps must be at least 1 (or null)".into());
        }
        if self.projection_dim == Some(0) {
            return Err("projection_dim must be positive (or null)".into());
        }
        // Sizes that set allocations: bounded far above any useful value, so that a typo is
        // a message rather than an allocation failure.
        let bounded = [
            (
                "projection_dim",
                self.projection_dim.unwrap_or(0),
                MAX_PROJECTION_DIM,
            ),
            ("batch_size", self.batch_size, MAX_BATCH_SIZE),
            (
                "max_labels_per_example",
                self.max_labels_per_example,
                MAX_LABELS_PER_EXAMPLE,
            ),
            (
                "in_batch_negatives",
                self.in_batch_negatives,
                MAX_LABELS_PER_EXAMPLE,
            ),
        ];
        if let Some((key, value, max)) = bounded.iter().find(|(_, v, max)| v > max) {
            return Err(format!("{key} = {value} is over the limit of {max}"));
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
        let err = load(MINIMAL, &["label_template=about the label"]).unwrap_err();
        assert!(err.to_string().contains("label_template"), "{err}");
        assert!(crate::error::is_input_error(&load("[1]", &[]).unwrap_err()));
    }

    fn config_error(err: anyhow::Error) -> ConfigError {
        err.downcast_ref::<ConfigError>()
            .unwrap_or_else(|| panic!("not a ConfigError: {err}"))
            .clone()
    }

    #[test]
    fn type_errors_name_the_key_and_where_the_value_came_from() {
        let err = config_error(
            load(
                r#"{"train_file": "t", "output_dir": "o", "batch_size": "16"}"#,
                &[],
            )
            .unwrap_err(),
        );
        assert_eq!(err.key.as_deref(), Some("batch_size"));
        assert!(matches!(err.origin, Origin::File(_)));
        assert!(err.message.contains("invalid type: string \"16\""), "{err}");

        let err = config_error(load(MINIMAL, &["epochs=2", "batch_size=abc"]).unwrap_err());
        assert_eq!(err.key.as_deref(), Some("batch_size"));
        assert_eq!(err.origin, Origin::Override("batch_size=abc".into()));
        let err = config_error(load(MINIMAL, &["lr=fast"]).unwrap_err());
        assert_eq!(err.origin, Origin::Override("lr=fast".into()));
        let err = config_error(load(MINIMAL, &["batch_size=0"]).unwrap_err());
        assert_eq!(err.origin, Origin::Override("batch_size=0".into()));
        let err = config_error(load(MINIMAL, &["nokey"]).unwrap_err());
        assert_eq!(err.origin, Origin::Override("nokey".into()));
        let err = config_error(
            load(
                r#"{"train_file": "t", "output_dir": "o", "epochs": 0}"#,
                &["batch_size=2"],
            )
            .unwrap_err(),
        );
        assert!(matches!(err.origin, Origin::File(_)), "{err}");
    }

    #[test]
    fn sizes_that_set_allocations_are_bounded() {
        for item in [
            "projection_dim=1000000000000",
            "batch_size=1000000000",
            "max_labels_per_example=99999999",
        ] {
            let err = config_error(load(MINIMAL, &[item]).unwrap_err());
            assert!(err.message.contains("is over the limit"), "{err}");
            assert_eq!(err.origin, Origin::Override(item.into()));
        }
        load(MINIMAL, &["batch_size=4096", "projection_dim=1024"]).unwrap();
    }

    #[test]
    fn early_stopping_follows_a_score_the_threshold_cannot_game() {
        let config = load(MINIMAL, &[]).unwrap();
        assert_eq!(config.early_stopping_metric, StoppingMetric::Loss);
        let config = load(MINIMAL, &["early_stopping_metric=macro_f1"]).unwrap();
        assert_eq!(config.early_stopping_metric, StoppingMetric::MacroF1);
    }
}
