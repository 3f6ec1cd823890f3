//! A BERT-family encoder that is differentiable end to end, with Hugging Face parameter names
//! (no `bert.` prefix): BERT (MiniLM included) and MPNet (`model_type: mpnet`), whose layers
//! compute the same thing under other names, and which adds a relative position bias to the
//! attention scores (see `model::mpnet`). On the CPU, dense layers, LayerNorm and attention
//! are single kernels with their own backward passes (`kernels`), and in training each block
//! is one kernel whose parameter gradients go to the pass's [`ParamGrads`], not to candle's
//! `GradStore` (`GliZNet::forward_train` returns both halves together);
//! elsewhere they are built from candle's ops (candle's fused LayerNorm and softmax in
//! inference mode, which have no backward pass). Training mode applies dropout.

use crate::error::input_error;
use crate::model::kernels;
use crate::model::mpnet::{self, RelativePositionBias};
use crate::model::params::Params;
use crate::model::{ParamGrads, Quantization};
use crate::rng::Rng;
use crate::tokenizer::SpecialTokens;
use anyhow::Result;
use candle_core::{DType, Module, Tensor, D};
use candle_nn::Embedding;
use rayon::prelude::*;
use serde::Deserialize;

/// The encoder family a `config.json` describes: its `model_type` (absent: BERT).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    #[default]
    Bert,
    Mpnet,
}

impl ModelType {
    /// The `model_type` values this build reads.
    pub const NAMES: [&'static str; 2] = ["bert", "mpnet"];

    pub fn name(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Mpnet => "mpnet",
        }
    }

    /// The tokens the vocabulary spells `[CLS]`, `[SEP]` and `[PAD]` with.
    pub fn special_tokens(self) -> SpecialTokens {
        match self {
            Self::Bert => SpecialTokens::BERT,
            Self::Mpnet => SpecialTokens::MPNET,
        }
    }

    /// What is added to a position (0, 1, 2, …) to make its position id.
    fn position_offset(self) -> usize {
        match self {
            Self::Bert => 0,
            Self::Mpnet => mpnet::POSITION_OFFSET,
        }
    }

    pub(crate) fn layer_names(self) -> &'static LayerNames {
        match self {
            Self::Bert => &BERT_LAYER,
            Self::Mpnet => &MPNET_LAYER,
        }
    }
}

/// The fields of a Hugging Face BERT or MPNet `config.json` that the encoder uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BertConfig {
    #[serde(default)]
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f32,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f32,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// MPNet: rows of the relative position bias table.
    #[serde(default = "default_relative_buckets")]
    pub relative_attention_num_buckets: usize,
}

fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f32 {
    0.1
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_relative_buckets() -> usize {
    mpnet::RELATIVE_BUCKETS
}

impl BertConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Activation::parse(&self.hidden_act)?;
        if self.max_position_embeddings <= self.model_type.position_offset() {
            return Err(format!(
                "max_position_embeddings {} leaves no position",
                self.max_position_embeddings
            ));
        }
        if self.model_type == ModelType::Mpnet
            && self.relative_attention_num_buckets != mpnet::RELATIVE_BUCKETS
        {
            return Err(format!(
                "relative_attention_num_buckets {} is not supported (only {}, the buckets \
                 transformers' MPNet computes)",
                self.relative_attention_num_buckets,
                mpnet::RELATIVE_BUCKETS
            ));
        }
        Ok(())
    }

    /// The longest sequence the position embeddings number: `max_position_embeddings`, less
    /// MPNet's offset of 2.
    pub fn max_positions(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.model_type.position_offset())
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "gelu" => Ok(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => Err(format!("unsupported hidden_act {other:?}")),
        }
    }

    fn forward(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::GeluErf => kernels::gelu_erf(x),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
        }
    }
}

/// Inverted-dropout factors (0 or 1/keep) for `len` values, drawn from the project's seeded
/// generator; `None` outside training or when `p` is 0.
fn dropout_factors(len: usize, p: f32, rng: Option<&mut Rng>) -> Option<Vec<f32>> {
    const CHUNK: usize = 1 << 16;
    let rng = rng.filter(|_| p > 0.0)?;
    let keep = 1.0 - p;
    let start = rng.clone();
    rng.skip(len as u64);
    let mut factors = vec![0.0; len];
    factors
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, factors)| {
            let mut rng = start.clone();
            rng.skip((chunk * CHUNK) as u64);
            for factor in factors {
                *factor = if rng.next_f32() < keep {
                    1.0 / keep
                } else {
                    0.0
                };
            }
        });
    Some(factors)
}

fn dropout(x: &Tensor, p: f32, rng: Option<&mut Rng>) -> Result<Tensor> {
    let Some(factors) = dropout_factors(x.elem_count(), p, rng) else {
        return Ok(x.clone());
    };
    let mask = Tensor::from_vec(factors, x.shape(), x.device())?.to_dtype(x.dtype())?;
    Ok(x.mul(&mask)?)
}

/// `dropout(y) + residual`.
fn dropout_add(y: &Tensor, residual: &Tensor, p: f32, rng: Option<&mut Rng>) -> Result<Tensor> {
    if kernels::uses_cpu_kernels(y) {
        let factors = dropout_factors(y.elem_count(), p, rng);
        return Ok(kernels::dropout_add(y, residual, factors)?);
    }
    Ok((dropout(y, p, rng)? + residual)?)
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn affine(&self) -> kernels::Affine {
        kernels::Affine {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
        }
    }

    fn load(params: &Params, prefix: &str, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: params.get(&format!("{prefix}.weight"), size)?,
            bias: params.get(&format!("{prefix}.bias"), size)?,
            eps,
        })
    }

    /// LayerNorm(dropout(`y`) + `residual`), dropout only with `rng` (training). In inference
    /// on the CPU one pass, which never writes the sum out.
    fn forward_sum(
        &self,
        y: &Tensor,
        residual: &Tensor,
        p: f32,
        rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let training = rng.is_some();
        let tensors = [y, residual, &self.weight, &self.bias];
        if !training
            && tensors
                .iter()
                .all(|t| kernels::uses_cpu_kernels(t) && !t.track_op())
        {
            return Ok(kernels::add_layer_norm(
                y,
                residual,
                &self.weight,
                &self.bias,
                self.eps,
            )?);
        }
        self.forward(&dropout_add(y, residual, p, rng)?, training)
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if [x, &self.weight, &self.bias]
            .iter()
            .all(|t| kernels::uses_cpu_kernels(t))
        {
            return Ok(kernels::layer_norm(x, &self.weight, &self.bias, self.eps)?);
        }
        if !training {
            let x = x.contiguous()?;
            return Ok(candle_nn::ops::layer_norm(
                &x,
                &self.weight,
                &self.bias,
                self.eps as f32,
            )?);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// A dense layer, `x·Wᵀ + bias`, with f32 weights or int8 or bf16 ones (`quantize`,
/// inference only).
struct Dense {
    weight: DenseWeight,
    bias: Tensor,
}

enum DenseWeight {
    Float(Tensor),
    Int8(kernels::Int8Dense),
    Bf16(kernels::Bf16Dense),
}

impl Dense {
    fn load(params: &Params, prefix: &str, inputs: usize, outputs: usize) -> Result<Self> {
        Ok(Self {
            weight: DenseWeight::Float(params.get(&format!("{prefix}.weight"), (outputs, inputs))?),
            bias: params.get(&format!("{prefix}.bias"), outputs)?,
        })
    }

    /// Int8 or bf16 weights (see `kernels::Int8Dense`, `kernels::Bf16Dense`), with
    /// `activation` fused where the kernel has it: CPU only.
    fn quantize(&mut self, to: Quantization, activation: Option<Activation>) -> Result<()> {
        if let DenseWeight::Float(weight) = &self.weight {
            if !kernels::uses_cpu_kernels(weight) {
                return Err(input_error(format!(
                    "{} weights run on the CPU only; this model is on a GPU",
                    to.name()
                )));
            }
            let (outputs, inputs) = weight.dims2()?;
            let weight = weight.flatten_all()?.to_vec1::<f32>()?;
            let bias = self.bias.to_vec1::<f32>()?;
            let gelu = matches!(activation, Some(Activation::GeluErf));
            self.weight = match to {
                Quantization::Int8 => DenseWeight::Int8(kernels::Int8Dense::new(
                    &weight, &bias, inputs, outputs, gelu,
                )),
                Quantization::Bf16 => DenseWeight::Bf16(kernels::Bf16Dense::new(
                    &weight, &bias, inputs, outputs, gelu,
                )),
            };
        }
        Ok(())
    }

    /// One layer computing `parts`' outputs side by side (weights stacked by output); `None`
    /// unless all have f32 weights.
    fn stacked(parts: &[&Dense]) -> Result<Option<Dense>> {
        let weights: Option<Vec<Tensor>> = parts
            .iter()
            .map(|part| match &part.weight {
                DenseWeight::Float(weight) => Some(weight.clone()),
                DenseWeight::Int8(_) | DenseWeight::Bf16(_) => None,
            })
            .collect();
        let Some(weights) = weights else {
            return Ok(None);
        };
        let biases: Vec<&Tensor> = parts.iter().map(|part| &part.bias).collect();
        Ok(Some(Dense {
            weight: DenseWeight::Float(Tensor::cat(&weights, 0)?),
            bias: Tensor::cat(&biases, 0)?,
        }))
    }

    /// The f32 weight and bias (`None` once quantized).
    fn affine(&self) -> Option<kernels::Affine> {
        match &self.weight {
            DenseWeight::Float(weight) => Some(kernels::Affine {
                weight: weight.clone(),
                bias: self.bias.clone(),
            }),
            DenseWeight::Int8(_) | DenseWeight::Bf16(_) => None,
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weight {
            DenseWeight::Float(weight) => {
                if self.on_cpu_kernels(x, weight) {
                    return kernels::linear(x, weight, &self.bias);
                }
                let Some((&inputs, batch_dims)) = x.dims().split_last() else {
                    candle_core::bail!("linear: a scalar input")
                };
                let mut shape = batch_dims.to_vec();
                shape.push(weight.dim(0)?);
                x.reshape((x.elem_count() / inputs.max(1), inputs))?
                    .matmul(&weight.t()?)?
                    .reshape(shape)?
                    .broadcast_add(&self.bias)
            }
            DenseWeight::Int8(weight) => x.contiguous()?.apply_op1_no_bwd(weight),
            DenseWeight::Bf16(weight) => x.contiguous()?.apply_op1_no_bwd(weight),
        }
    }

    /// Whether `x`, the f32 `weight` and the bias are where the CPU kernels run.
    fn on_cpu_kernels(&self, x: &Tensor, weight: &Tensor) -> bool {
        [x, weight, &self.bias]
            .iter()
            .all(|t| kernels::uses_cpu_kernels(t))
    }

    /// `activation(x·Wᵀ + bias)`.
    fn forward_activated(&self, x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
        match &self.weight {
            DenseWeight::Int8(weight) if weight.has_gelu() => self.forward(x),
            DenseWeight::Bf16(weight) if weight.has_gelu() => self.forward(x),
            // In inference (nothing tracked for a backward pass) the GELU runs in the product's
            // op, in place.
            DenseWeight::Float(weight)
                if matches!(activation, Activation::GeluErf)
                    && !x.track_op()
                    && !weight.track_op()
                    && self.on_cpu_kernels(x, weight) =>
            {
                kernels::linear_gelu(x, weight, &self.bias)
            }
            _ => activation.forward(&self.forward(x)?),
        }
    }
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    /// BERT's; MPNet has none.
    token_type: Option<Embedding>,
    /// Added to each position to make its id (MPNet: 2).
    position_offset: u32,
    norm: LayerNorm,
    dropout: f32,
}

impl Embeddings {
    fn load(params: &Params, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let table = |name: &str, rows: usize| -> Result<Embedding> {
            Ok(Embedding::new(
                params.get(&format!("embeddings.{name}.weight"), (rows, h))?,
                h,
            ))
        };
        Ok(Self {
            word: table("word_embeddings", cfg.vocab_size)?,
            position: table("position_embeddings", cfg.max_position_embeddings)?,
            token_type: match cfg.model_type {
                ModelType::Bert => Some(table("token_type_embeddings", cfg.type_vocab_size)?),
                ModelType::Mpnet => None,
            },
            position_offset: cfg.model_type.position_offset() as u32,
            norm: LayerNorm::load(params, "embeddings.LayerNorm", h, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// `positions`: [batch, seq] u32 positions; `None` numbers every sequence 0, 1, 2, … The
    /// position ids are these plus the family's offset (MPNet's 2).
    fn forward(
        &self,
        input_ids: &Tensor,
        positions: Option<&Tensor>,
        rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let (_, seq_len) = input_ids.dims2()?;
        let device = input_ids.device();
        let token_type = match &self.token_type {
            Some(table) => Some(table.forward(&Tensor::zeros(seq_len, DType::U32, device)?)?),
            None => None,
        };
        let words = self.word.forward(input_ids)?;
        let offset = self.position_offset;
        let x = match positions {
            None => {
                let positions = Tensor::arange(offset, seq_len as u32 + offset, device)?;
                let position = self.position.forward(&positions)?;
                match token_type {
                    Some(token_type) => words.broadcast_add(&(position + token_type)?)?,
                    None => words.broadcast_add(&position)?,
                }
            }
            Some(positions) => {
                let ids = match offset {
                    0 => positions.clone(),
                    _ => positions.broadcast_add(&Tensor::new(offset, device)?)?,
                };
                let x = (words + self.position.forward(&ids)?)?;
                match token_type {
                    Some(token_type) => x.broadcast_add(&token_type)?,
                    None => x,
                }
            }
        };
        let training = rng.is_some();
        let x = self.norm.forward(&x, training)?;
        dropout(&x, self.dropout, rng)
    }
}

/// Where a layer's tensors sit under `encoder.layer.{i}.`, by the role BERT gives them.
pub(crate) struct LayerNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attention_output: &'static str,
    pub attention_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    pub output_norm: &'static str,
}

const BERT_LAYER: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
};

/// MPNet's names for the same tensors.
const MPNET_LAYER: LayerNames = LayerNames {
    query: "attention.attn.q",
    key: "attention.attn.k",
    value: "attention.attn.v",
    attention_output: "attention.attn.o",
    attention_norm: "attention.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
};

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    /// Query, key and value as one layer, once quantized: inference over all rows takes them
    /// from one product, its input rounded or quantized once.
    query_key_value: Option<Dense>,
    attention_output: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
    activation: Activation,
    heads: usize,
    hidden_dropout: f32,
    attention_dropout: f32,
}

impl Layer {
    fn load(params: &Params, cfg: &BertConfig, index: usize) -> Result<Self> {
        let names = cfg.model_type.layer_names();
        let name = |role: &str| format!("encoder.layer.{index}.{role}");
        let h = cfg.hidden_size;
        let i = cfg.intermediate_size;
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            query: Dense::load(params, &name(names.query), h, h)?,
            key: Dense::load(params, &name(names.key), h, h)?,
            value: Dense::load(params, &name(names.value), h, h)?,
            query_key_value: None,
            attention_output: Dense::load(params, &name(names.attention_output), h, h)?,
            attention_norm: LayerNorm::load(params, &name(names.attention_norm), h, eps)?,
            intermediate: Dense::load(params, &name(names.intermediate), h, i)?,
            output: Dense::load(params, &name(names.output), i, h)?,
            output_norm: LayerNorm::load(params, &name(names.output_norm), h, eps)?,
            activation: Activation::parse(&cfg.hidden_act).map_err(input_error)?,
            heads: cfg.num_attention_heads,
            hidden_dropout: cfg.hidden_dropout_prob,
            attention_dropout: cfg.attention_probs_dropout_prob,
        })
    }

    fn quantize(&mut self, to: Quantization) -> Result<()> {
        if let Some(mut stacked) = Dense::stacked(&[&self.query, &self.key, &self.value])? {
            stacked.quantize(to, None)?;
            self.query_key_value = Some(stacked);
        }
        for dense in [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attention_output,
            &mut self.output,
        ] {
            dense.quantize(to, None)?;
        }
        self.intermediate.quantize(to, Some(self.activation))
    }

    /// The scores' scale, 1/√head_dim, for a layer `hidden` wide.
    fn attention_scale(&self, hidden: usize) -> f64 {
        1.0 / ((hidden / self.heads) as f64).sqrt()
    }

    /// Multi-head attention for q [batch, queries, hidden] over k, v [batch, seq, hidden];
    /// returns [batch, queries, hidden]. `bias`: see [`BertEncoder::attention_bias`].
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: &Tensor,
        rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let (batch, queries, hidden) = q.dims3()?;
        let seq_len = k.dim(1)?;
        let head_dim = hidden / self.heads;
        let scale = self.attention_scale(hidden);
        let probs_len = batch * self.heads * queries * seq_len;
        // The kernel gives the bias no gradient: a trained one (MPNet's relative position bias)
        // takes candle's ops in training.
        if kernels::uses_cpu_kernels(q) && !(rng.is_some() && bias.track_op()) {
            let dropout = dropout_factors(probs_len, self.attention_dropout, rng);
            let scale = scale as f32;
            return Ok(kernels::attention(
                (q, k, v),
                self.heads,
                scale,
                bias,
                dropout,
            )?);
        }
        let split_heads = |t: &Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, t.dim(1)?, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split_heads(q)?, split_heads(k)?, split_heads(v)?);
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(bias)?;
        let probs = if rng.is_some() {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let context = dropout(&probs, self.attention_dropout, rng)?.matmul(&v)?;
        Ok(context.transpose(1, 2)?.reshape((batch, queries, hidden))?)
    }

    /// The block's parameters for `kernels::encoder_block`, where it applies: CPU f32
    /// tensors, f32 weights, GELU with erf.
    fn block_params(&self, x: &Tensor) -> Option<kernels::BlockParams> {
        if !kernels::uses_cpu_kernels(x) || !matches!(self.activation, Activation::GeluErf) {
            return None;
        }
        Some(kernels::BlockParams {
            query: self.query.affine()?,
            key: self.key.affine()?,
            value: self.value.affine()?,
            attention_output: self.attention_output.affine()?,
            attention_norm: self.attention_norm.affine(),
            intermediate: self.intermediate.affine()?,
            output: self.output.affine()?,
            output_norm: self.output_norm.affine(),
            heads: self.heads,
            eps: self.attention_norm.eps as f32,
        })
    }

    /// `bias`: see [`BertEncoder::attention_bias`].
    /// In CPU training the block is one kernel whose parameter gradients go to the pass's
    /// store.
    fn forward(&self, x: &Tensor, bias: &Tensor, train: Option<&mut Training>) -> Result<Tensor> {
        let Some(train) = train else {
            return self.forward_inference(x, bias);
        };
        let Some(params) = self.block_params(x) else {
            return self.forward_queries(x, x, bias, Some(&mut *train.rng));
        };
        let (batch, seq_len, _) = x.dims3()?;
        let probs_len = batch * self.heads * seq_len * seq_len;
        let rng = &mut *train.rng;
        let dropout = kernels::BlockDropout {
            attention: dropout_factors(probs_len, self.attention_dropout, Some(&mut *rng)),
            attention_output: dropout_factors(x.elem_count(), self.hidden_dropout, Some(&mut *rng)),
            output: dropout_factors(x.elem_count(), self.hidden_dropout, Some(rng)),
        };
        Ok(kernels::encoder_block(
            x,
            params,
            bias,
            dropout,
            train.grads,
        )?)
    }

    /// `output(activation(intermediate(x)))`: one op where both layers are int8 with the
    /// activation fused, whose intermediate values then never leave the cache in f32.
    fn feed_forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let (DenseWeight::Int8(first), DenseWeight::Int8(second)) =
            (&self.intermediate.weight, &self.output.weight)
        {
            if first.has_gelu() {
                return x
                    .contiguous()?
                    .apply_op1_no_bwd(&kernels::Int8Chain { first, second });
            }
        }
        let inner = self.intermediate.forward_activated(x, self.activation)?;
        self.output.forward(&inner)
    }

    /// The block's output for every row of `x` in inference: with quantized weights on the
    /// CPU, q, k and v come from one product and the attention reads them where it wrote them.
    fn forward_inference(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        match &self.query_key_value {
            Some(stacked) if kernels::uses_cpu_kernels(x) => {
                let context = kernels::attention_packed(
                    &stacked.forward(x)?,
                    self.heads,
                    self.attention_scale(x.dim(D::Minus1)?) as f32,
                    bias,
                )?;
                self.after_attention(&context, x, None)
            }
            _ => self.forward_queries(x, x, bias, None),
        }
    }

    /// The block's output for the rows `queries` [batch, queries, hidden] of `x` [batch, seq,
    /// hidden], which attend over all of `x` (all rows: the plain forward pass).
    fn forward_queries(
        &self,
        x: &Tensor,
        queries: &Tensor,
        bias: &Tensor,
        mut rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let (q, k, v) = (
            self.query.forward(queries)?,
            self.key.forward(x)?,
            self.value.forward(x)?,
        );
        let context = self.attention(&q, &k, &v, bias, rng.as_deref_mut())?;
        self.after_attention(&context, queries, rng)
    }

    /// The rest of the block after the attention's `context` for the rows `queries`: output
    /// projection, residual and LayerNorm, feed-forward, residual and LayerNorm.
    fn after_attention(
        &self,
        context: &Tensor,
        queries: &Tensor,
        mut rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let attended = self.attention_norm.forward_sum(
            &self.attention_output.forward(context)?,
            queries,
            self.hidden_dropout,
            rng.as_deref_mut(),
        )?;
        self.output_norm.forward_sum(
            &self.feed_forward(&attended)?,
            &attended,
            self.hidden_dropout,
            rng,
        )
    }
}

/// The additive attention bias: for a padding mask [batch, seq] (1 on tokens), [batch, 1, 1,
/// seq]; for a mask per query [batch, seq, seq] (1 where query row i may attend to key j),
/// [batch, 1, seq, seq]. 0 where attended, a large negative value elsewhere.
fn mask_bias(attention_mask: &Tensor) -> Result<Tensor> {
    let bias = ((attention_mask.ones_like()? - attention_mask)? * -1e9)?;
    Ok(match *attention_mask.dims() {
        [batch, seq_len] => bias.reshape((batch, 1, 1, seq_len))?,
        [batch, queries, seq_len] => bias.reshape((batch, 1, queries, seq_len))?,
        ref dims => {
            return Err(input_error(format!(
                "attention mask of shape {dims:?}: expected [batch, seq] or [batch, seq, seq]"
            )))
        }
    })
}

pub struct BertEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// MPNet's relative position bias, which every layer adds to its attention scores.
    position_bias: Option<RelativePositionBias>,
}

/// What a training pass threads through the layers: the dropout randomness, and the store for
/// the parameter gradients of blocks that run as one kernel.
struct Training<'a> {
    rng: &'a mut Rng,
    grads: &'a ParamGrads,
}

impl BertEncoder {
    /// Loads every encoder tensor the config calls for. Encoder tensors the config does not
    /// use (weights of more layers than `num_hidden_layers`, say) are an error, as missing
    /// ones are: the weights and the config disagree, and the scores would be wrong.
    pub fn load(params: &Params, cfg: &BertConfig) -> Result<Self> {
        cfg.validate().map_err(input_error)?;
        let encoder = Self {
            embeddings: Embeddings::load(params, cfg)?,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::load(params, cfg, i))
                .collect::<Result<_>>()?,
            position_bias: match cfg.model_type {
                ModelType::Bert => None,
                ModelType::Mpnet => Some(RelativePositionBias::load(
                    params,
                    cfg.relative_attention_num_buckets,
                    cfg.num_attention_heads,
                )?),
            },
        };
        let unused = params.unused(&["embeddings.", "encoder."]);
        if let Some(first) = unused.first() {
            return Err(input_error(format!(
                "{}: {} encoder tensor(s) are not used by the config (num_hidden_layers {}), \
                 e.g. {first}; the weights and config.json disagree",
                params.source(),
                unused.len(),
                cfg.num_hidden_layers
            )));
        }
        Ok(encoder)
    }

    /// Int8 or bf16 weights for every dense layer of every block (embeddings and LayerNorms
    /// stay f32). Inference only: a quantized encoder has no gradients.
    pub fn quantize(&mut self, to: Quantization) -> Result<()> {
        self.layers
            .par_iter_mut()
            .try_for_each(|layer| layer.quantize(to))
    }

    /// Inference. `input_ids`: [batch, seq] u32; `attention_mask`: [batch, seq] f32 of 0/1
    /// (padding), or [batch, seq, seq] (which token sees which, see [`mask_bias`]);
    /// `positions`: [batch, seq] u32 positions, or `None` for 0, 1, 2, … (numbered from 0 for
    /// every family: MPNet's offset of 2 is added here, and its relative position bias follows
    /// them). Returns the last hidden states, [batch, seq, hidden].
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.run(input_ids, attention_mask, positions, None)
    }

    /// [`BertEncoder::forward`] in training mode: dropout from `rng`, and the gradients of the
    /// blocks that run as one kernel sent to `grads` by the backward pass (candle's
    /// `GradStore` holds the rest).
    pub fn forward_train(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: Option<&Tensor>,
        rng: &mut Rng,
        grads: &ParamGrads,
    ) -> Result<Tensor> {
        let train = Training { rng, grads };
        self.run(input_ids, attention_mask, positions, Some(train))
    }

    fn run(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: Option<&Tensor>,
        mut train: Option<Training>,
    ) -> Result<Tensor> {
        let bias = self.attention_bias(attention_mask, positions)?;
        let rng = train.as_mut().map(|t| &mut *t.rng);
        let mut x = self.embeddings.forward(input_ids, positions, rng)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, train.as_mut())?;
        }
        Ok(x)
    }

    /// What every layer adds to its attention scores: the mask's bias (see [`mask_bias`]),
    /// [batch, 1, 1 or seq, seq], and for MPNet the relative position bias of `positions` (as
    /// numbered from 0; `None`: 0, 1, 2, …) with it, [batch, heads, seq, seq].
    fn attention_bias(
        &self,
        attention_mask: &Tensor,
        positions: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mask = mask_bias(attention_mask)?;
        let Some(position_bias) = &self.position_bias else {
            return Ok(mask);
        };
        let seq_len = attention_mask.dim(D::Minus1)?;
        Ok(position_bias
            .bias(positions, seq_len, attention_mask.device())?
            .broadcast_add(&mask)?)
    }

    /// Inference: the last hidden states of `rows` only, [batch, queries, hidden]. `rows`
    /// holds `queries` row indices per sequence into the flattened [batch·seq] states,
    /// sequence by sequence (row `b·seq + position`). The last layer computes just those rows
    /// (its keys and values still come from every token), which is exact and saves most of
    /// that layer when the rows are few.
    pub fn forward_rows(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: Option<&Tensor>,
        rows: &Tensor,
        queries: usize,
    ) -> Result<Tensor> {
        let (batch, seq_len) = input_ids.dims2()?;
        let bias = self.attention_bias(attention_mask, positions)?;
        let mut x = self.embeddings.forward(input_ids, positions, None)?;
        let select = |x: &Tensor| -> Result<Tensor> {
            let width = x.dim(D::Minus1)?;
            Ok(x.reshape((batch * seq_len, width))?
                .index_select(rows, 0)?
                .reshape((batch, queries, width))?)
        };
        let Some((last, rest)) = self.layers.split_last() else {
            return select(&x);
        };
        for layer in rest {
            x = layer.forward(&x, &bias, None)?;
        }
        // A bias per query keeps only the rows of the queries computed: [batch, heads, seq,
        // seq] → [batch, seq, heads·seq] → the rows → [batch, heads, queries, seq].
        let query_bias = match bias.dims4()? {
            (_, _, 1, _) => bias,
            (_, heads, _, _) => select(
                &bias
                    .broadcast_as((batch, heads, seq_len, seq_len))?
                    .transpose(1, 2)?
                    .reshape((batch, seq_len, heads * seq_len))?,
            )?
            .reshape((batch, queries, heads, seq_len))?
            .transpose(1, 2)?
            .contiguous()?,
        };
        last.forward_queries(&x, &select(&x)?, &query_bias, None)
    }
}
