//! The `gliznet` section of a model directory's `config.json`.

pub use crate::batch::LabelAttention;
use crate::model::bert::BertConfig;
use crate::model::head::{HeadShape, Readout, Similarity};
use crate::tokenizer::{split_label_template, PackingLimits};
use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GliznetConfig {
    pub format_version: u32,
    pub similarity: Similarity,
    /// Width of the projection shared by text and labels; `None` scores the encoder's vectors.
    pub projection_dim: Option<usize>,
    pub max_length: usize,
    pub max_label_tokens: usize,
    pub min_text_tokens: usize,
    /// The token between the text and each label, and after each label: the encoder's
    /// separator (`[SEP]` for BERT, `</s>` for MPNet).
    pub label_separator: String,
    /// Which token states make the text and label vectors; models saved before this key
    /// existed read `[CLS]` and each label's first token.
    #[serde(default)]
    pub readout: Readout,
    /// Every label numbered from the same position (`Batch::shared_label_positions`), so that
    /// scores do not depend on the order of the labels; absent in older models: false.
    #[serde(default)]
    pub shared_label_positions: bool,
    /// Which tokens each token attends to; absent in older models: `full`.
    #[serde(default)]
    pub label_attention: LabelAttention,
    /// The phrase each label is read in, `{label}` replaced by the label (e.g. "This text is
    /// about {label}."); absent: the label alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_template: Option<String>,
    /// Multi-label decision threshold calibrated on dev data (the default of `predict` and
    /// `eval`); absent means 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
}

impl GliznetConfig {
    /// What a plain BERT / sentence-transformers backbone gets: cosine over the encoder's own
    /// vectors, which is meaningful before any training, and limits that its positions allow
    /// (`max_positions`: [`BertConfig::max_positions`]). The separator is BERT's; see
    /// [`GliznetConfig::untrained_for`] for any encoder.
    pub fn untrained_default(max_positions: usize) -> Self {
        let limits = PackingLimits::default();
        Self {
            format_version: FORMAT_VERSION,
            similarity: Similarity::Cosine,
            projection_dim: None,
            max_length: limits.max_length.min(max_positions),
            max_label_tokens: limits.max_label_tokens,
            min_text_tokens: limits.min_text_tokens,
            label_separator: "[SEP]".into(),
            readout: Readout::Mean,
            shared_label_positions: false,
            label_attention: LabelAttention::Full,
            label_template: None,
            threshold: None,
        }
    }

    /// [`GliznetConfig::untrained_default`] for the encoder of `encoder`, its separator included.
    pub fn untrained_for(encoder: &BertConfig) -> Self {
        Self {
            label_separator: encoder.model_type.special_tokens().sep.into(),
            ..Self::untrained_default(encoder.max_positions())
        }
    }

    /// The multi-label threshold to use when the user gives none.
    pub fn default_threshold(&self) -> f32 {
        self.threshold.unwrap_or(0.5)
    }

    pub fn limits(&self) -> PackingLimits {
        PackingLimits {
            max_length: self.max_length,
            max_label_tokens: self.max_label_tokens,
            min_text_tokens: self.min_text_tokens,
        }
    }

    pub fn head_shape(&self, model_dim: usize) -> HeadShape {
        HeadShape {
            similarity: self.similarity,
            model_dim,
            projection_dim: self.projection_dim,
        }
    }

    /// Checks the section against the encoder it comes with.
    pub fn validate(&self, encoder: &BertConfig) -> Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        let separator = encoder.model_type.special_tokens().sep;
        if self.label_separator != separator {
            return Err(format!(
                "label_separator {:?} is not supported (only {separator:?}, the separator of a \
                 {} encoder)",
                self.label_separator,
                encoder.model_type.name()
            ));
        }
        if matches!(self.threshold, Some(t) if !(0.0..=1.0).contains(&t)) {
            return Err("threshold must be in [0, 1]".into());
        }
        if self.projection_dim == Some(0) {
            return Err("projection_dim must be positive".into());
        }
        if let Some(template) = &self.label_template {
            split_label_template(template)?;
        }
        if self.max_length > encoder.max_positions() {
            return Err(match encoder.max_positions() {
                max if max == encoder.max_position_embeddings => format!(
                    "max_length {} exceeds the encoder's max_position_embeddings {max}",
                    self.max_length
                ),
                max => format!(
                    "max_length {} exceeds the {max} positions of the encoder \
                     (max_position_embeddings {} less {}'s offset)",
                    self.max_length,
                    encoder.max_position_embeddings,
                    encoder.model_type.name()
                ),
            });
        }
        self.limits().validate()
    }
}
