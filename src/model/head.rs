//! Projection and similarity head: turns the `[CLS]` vector and each label's first-token vector
//! into one logit per label.

use crate::model::params::Params;
use crate::rng::Rng;
use anyhow::Result;
use candle_core::{Device, Module, Tensor, D};
use candle_nn::Linear;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// Cosine times a learnable logit scale (stored as its logarithm).
    Cosine,
    Dot,
    /// `h_text^T W h_label`.
    Bilinear,
}

/// How the encoder's states become the text vector and each label's vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// `[CLS]` for the text, each label's first token for the label.
    #[default]
    FirstToken,
    /// The mean over `[CLS] text [SEP]` for the text and over each label's tokens for the
    /// label: the pooling sentence-transformers backbones were trained with.
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadShape {
    pub similarity: Similarity,
    pub model_dim: usize,
    pub projection_dim: Option<usize>,
}

impl HeadShape {
    fn output_dim(&self) -> usize {
        self.projection_dim.unwrap_or(self.model_dim)
    }
}

pub const PROJECTION_WEIGHT: &str = "gliznet.projection.weight";
pub const PROJECTION_BIAS: &str = "gliznet.projection.bias";
pub const LOG_SCALE: &str = "gliznet.log_logit_scale";
pub const BILINEAR_WEIGHT: &str = "gliznet.bilinear.weight";

/// Initial cosine logit scale: sigmoid(10 · cos) spans 4.5e-5 … 0.99995.
const INITIAL_LOGIT_SCALE: f32 = 10.0;

/// Fresh head parameters drawn from `seed`: projection uniform in ±1/√d_model (PyTorch's
/// `nn.Linear` default), bilinear starting at the identity (so it begins as a dot product).
pub fn init_params(
    shape: &HeadShape,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = Rng::new(seed);
    let mut params = HashMap::new();
    if let Some(out) = shape.projection_dim {
        let bound = 1.0 / (shape.model_dim as f32).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (2.0 * rng.next_f32() - 1.0) * bound)
                .collect()
        };
        let weight = uniform(out * shape.model_dim);
        let bias = uniform(out);
        params.insert(
            PROJECTION_WEIGHT.into(),
            Tensor::from_vec(weight, (out, shape.model_dim), device)?,
        );
        params.insert(PROJECTION_BIAS.into(), Tensor::from_vec(bias, out, device)?);
    }
    match shape.similarity {
        Similarity::Cosine => {
            params.insert(
                LOG_SCALE.into(),
                Tensor::new(&[INITIAL_LOGIT_SCALE.ln()], device)?,
            );
        }
        Similarity::Bilinear => {
            let dim = shape.output_dim();
            params.insert(
                BILINEAR_WEIGHT.into(),
                Tensor::eye(dim, candle_core::DType::F32, device)?,
            );
        }
        Similarity::Dot => {}
    }
    Ok(params)
}

/// The similarity with the parameters it needs.
enum Scorer {
    Cosine { log_scale: Tensor },
    Dot,
    Bilinear { weight: Tensor },
}

pub struct SimilarityHead {
    projection: Option<Linear>,
    scorer: Scorer,
}

impl SimilarityHead {
    pub fn load(params: &Params, shape: &HeadShape) -> Result<Self> {
        let projection = match shape.projection_dim {
            Some(out) => Some(Linear::new(
                params.get(PROJECTION_WEIGHT, (out, shape.model_dim))?,
                Some(params.get(PROJECTION_BIAS, out)?),
            )),
            None => None,
        };
        let dim = shape.output_dim();
        let scorer = match shape.similarity {
            Similarity::Cosine => Scorer::Cosine {
                log_scale: params.get(LOG_SCALE, 1)?,
            },
            Similarity::Dot => Scorer::Dot,
            Similarity::Bilinear => Scorer::Bilinear {
                weight: params.get(BILINEAR_WEIGHT, (dim, dim))?,
            },
        };
        Ok(Self { projection, scorer })
    }

    /// `text`: [batch, d_model]; `labels`: [batch, labels, d_model]. Returns [batch, labels].
    pub fn forward(&self, text: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let (text, labels) = match &self.projection {
            Some(p) => (p.forward(text)?, p.forward(labels)?),
            None => (text.clone(), labels.clone()),
        };
        let pairwise = |t: &Tensor, l: &Tensor| -> candle_core::Result<Tensor> {
            l.broadcast_mul(&t.unsqueeze(1)?)?.sum(D::Minus1)
        };
        let logits = match &self.scorer {
            Scorer::Dot => pairwise(&text, &labels)?,
            Scorer::Bilinear { weight } => pairwise(&text.matmul(weight)?, &labels)?,
            Scorer::Cosine { log_scale } => {
                let cos = pairwise(&l2_normalize(&text)?, &l2_normalize(&labels)?)?;
                cos.broadcast_mul(&log_scale.exp()?)?
            }
        };
        Ok(logits)
    }
}

fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}
