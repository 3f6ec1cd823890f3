//! One encoder block for CPU training as a single differentiable op: attention, its output
//! projection, dropout, residual and LayerNorm, then the GELU feed-forward with the same.
//! candle's autograd would hold a dozen nodes per block and, for each, fill and add a
//! zero gradient buffer the size of the activations; here the backward pass is written
//! out, keeps its intermediate buffers, and sums the three q/k/v input gradients in place.
//! The op's candle input is the block's input (and the attention bias, where that is trained:
//! MPNet's relative position bias); the parameters' gradients go to a
//! [`ParamGrads`] store, which the model merges into candle's `GradStore` after
//! `backward` (see `TrainStep::backward` in `model::gliznet`).

use super::attention::{Attention, AttentionGrads, Bias};
use super::layer_norm::NormValues;
use super::linear::DenseValues;
use super::residual::{dropout_add_values, multiply_values};
use super::{
    contiguous_f32, gelu_derivative_kernel, gelu_kernel, kernel_values, map_values,
    uses_cpu_kernels,
};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// A dense layer's or a LayerNorm's weight and bias.
pub struct Affine {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// The parameters of one block, with Hugging Face BERT's structure.
pub struct BlockParams {
    pub query: Affine,
    pub key: Affine,
    pub value: Affine,
    pub attention_output: Affine,
    pub attention_norm: Affine,
    pub intermediate: Affine,
    pub output: Affine,
    pub output_norm: Affine,
    pub heads: usize,
    pub eps: f32,
}

impl BlockParams {
    fn affines(&self) -> [&Affine; 8] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_output,
            &self.attention_norm,
            &self.intermediate,
            &self.output,
            &self.output_norm,
        ]
    }
}

/// The dropout factors (0 or 1/keep) of one block in training: on the attention
/// probabilities [batch, heads, seq, seq], and on the attention and feed-forward outputs
/// [batch, seq, hidden].
pub struct BlockDropout {
    pub attention: Option<Vec<f32>>,
    pub attention_output: Option<Vec<f32>>,
    pub output: Option<Vec<f32>>,
}

/// Parameter gradients from [`encoder_block`]'s backward passes, kept apart from candle's
/// `GradStore` until [`ParamGrads::merge_into`].
#[derive(Clone, Default)]
pub struct ParamGrads(Arc<Mutex<Vec<(Tensor, Tensor)>>>);

impl ParamGrads {
    fn push(&self, param: &Tensor, grad: Tensor) {
        let mut grads = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        grads.push((param.clone(), grad));
    }

    /// Adds the gradients gathered so far to `store` (summing with any it already holds for
    /// the same tensor) and forgets them.
    pub fn merge_into(&self, store: &mut GradStore) -> candle_core::Result<()> {
        let grads = std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for (param, grad) in grads {
            let sum = match store.get(&param) {
                Some(existing) => (existing + grad)?,
                None => grad,
            };
            store.insert(&param, sum);
        }
        Ok(())
    }
}

/// The block's activations that its backward pass reads.
struct Saved {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// The attention probabilities before dropout, [batch, heads, seq, seq].
    probs: Vec<f32>,
    context: Vec<f32>,
    attention_sum: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
    gelu: Vec<f32>,
    output_sum: Vec<f32>,
}

struct EncoderBlock {
    params: BlockParams,
    attention: Attention,
    attention_output_dropout: Option<Vec<f32>>,
    output_dropout: Option<Vec<f32>>,
    saved: Mutex<Option<Saved>>,
    grads: ParamGrads,
    /// The attention bias's shape, where its gradient is wanted (the op's second input).
    bias_shape: Option<Shape>,
}

/// The parameter values, read from their tensors' storage.
struct Values<'a> {
    query: DenseValues<'a>,
    key: DenseValues<'a>,
    value: DenseValues<'a>,
    attention_output: DenseValues<'a>,
    attention_norm: NormValues<'a>,
    intermediate: DenseValues<'a>,
    output: DenseValues<'a>,
    output_norm: NormValues<'a>,
}

impl EncoderBlock {
    /// Runs `f` with the parameter values (the tensors' storage stays read-locked meanwhile).
    fn with_values<R>(
        &self,
        f: impl FnOnce(&Values) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let tensors = self.params.affines().map(|a| [&a.weight, &a.bias]);
        let guards: Vec<_> = tensors
            .iter()
            .flatten()
            .map(|t| t.storage_and_layout())
            .collect();
        let slices = guards
            .iter()
            .map(|(storage, layout)| kernel_values(storage, layout))
            .collect::<candle_core::Result<Vec<&[f32]>>>()?;
        let dense = |i: usize| -> candle_core::Result<DenseValues> {
            let (outputs, inputs) = tensors[i][0].dims2()?;
            Ok(DenseValues {
                weight: slices[2 * i],
                bias: slices[2 * i + 1],
                inputs,
                outputs,
            })
        };
        let norm = |i: usize| NormValues {
            weight: slices[2 * i],
            bias: slices[2 * i + 1],
            eps: self.params.eps,
        };
        f(&Values {
            query: dense(0)?,
            key: dense(1)?,
            value: dense(2)?,
            attention_output: dense(3)?,
            attention_norm: norm(4),
            intermediate: dense(5)?,
            output: dense(6)?,
            output_norm: norm(7),
        })
    }
}

impl CustomOp1 for EncoderBlock {
    fn name(&self) -> &'static str {
        "encoder-block"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward(storage, layout)
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.backward(x, grad)?.0))
    }
}

/// The block with a trained attention bias: its second input, which gets its gradient.
impl CustomOp2 for EncoderBlock {
    fn name(&self) -> &'static str {
        "encoder-block-with-bias"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        _bias: &CpuStorage,
        _bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        // The bias's values are in `self.attention` already.
        self.forward(storage, layout)
    }

    fn bwd(
        &self,
        x: &Tensor,
        _bias: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, d_attention_bias) = self.backward(x, grad)?;
        Ok((Some(dx), d_attention_bias))
    }
}

impl EncoderBlock {
    fn forward(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let shape = layout.shape();
        self.with_values(|p| {
            let (q, k, v) = (p.query.forward(x), p.key.forward(x), p.value.forward(x));
            let (context, probs) = self.attention.forward(shape, (&q, &k, &v), true)?;
            let probs = probs.unwrap_or_default();
            let attention_sum = dropout_add_values(
                &p.attention_output.forward(&context),
                x,
                self.attention_output_dropout.as_deref(),
            );
            let attended = p.attention_norm.forward(&attention_sum);
            let inner = p.intermediate.forward(&attended);
            let gelu = map_values(&inner, gelu_kernel);
            let output_sum = dropout_add_values(
                &p.output.forward(&gelu),
                &attended,
                self.output_dropout.as_deref(),
            );
            let y = p.output_norm.forward(&output_sum);
            *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Saved {
                q,
                k,
                v,
                probs,
                context,
                attention_sum,
                attended,
                inner,
                gelu,
                output_sum,
            });
            Ok((CpuStorage::F32(y), shape.clone()))
        })
    }

    /// The input's gradient, and the bias's where it is wanted.
    fn backward(&self, x: &Tensor, grad: &Tensor) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = saved.as_ref() else {
            candle_core::bail!("encoder block: backward before forward");
        };
        let (x_storage, x_layout) = x.storage_and_layout();
        let (grad_storage, grad_layout) = grad.storage_and_layout();
        let x_values = kernel_values(&x_storage, x_layout)?;
        let dy = kernel_values(&grad_storage, grad_layout)?;
        let (dx, d_attention_bias) = self.with_values(|p| {
            let (d_output_sum, d_output, output_norm) = residual_norm_backward(
                &p.output_norm,
                &s.output_sum,
                dy,
                self.output_dropout.as_deref(),
            );
            let mut d_gelu = vec![0.0; s.inner.len()];
            let output = p.output.backward(&s.gelu, &d_output, &mut d_gelu, false);
            let derivative = map_values(&s.inner, gelu_derivative_kernel);
            let d_inner = multiply_values(&d_gelu, &derivative);
            let mut d_attended = d_output_sum;
            let intermediate =
                p.intermediate
                    .backward(&s.attended, &d_inner, &mut d_attended, true);
            let (d_attention_sum, d_attention_output, attention_norm) = residual_norm_backward(
                &p.attention_norm,
                &s.attention_sum,
                &d_attended,
                self.attention_output_dropout.as_deref(),
            );
            let mut d_context = vec![0.0; s.context.len()];
            let attention_output =
                p.attention_output
                    .backward(&s.context, &d_attention_output, &mut d_context, false);
            let AttentionGrads {
                q: dq,
                k: dk,
                v: dv,
                bias: d_attention_bias,
            } = self.attention.backward(
                x.shape(),
                (&s.q, &s.k, &s.v),
                Some(&s.probs),
                &d_context,
                self.bias_shape.is_some(),
            )?;
            let mut dx = d_attention_sum;
            let query = p.query.backward(x_values, &dq, &mut dx, true);
            let key = p.key.backward(x_values, &dk, &mut dx, true);
            let value = p.value.backward(x_values, &dv, &mut dx, true);
            // In the order of `BlockParams::affines`.
            let param_grads = [
                query,
                key,
                value,
                attention_output,
                attention_norm,
                intermediate,
                output,
                output_norm,
            ];
            for (affine, (d_weight, d_bias)) in self.params.affines().into_iter().zip(param_grads) {
                let device = affine.weight.device();
                let d_weight = Tensor::from_vec(d_weight, affine.weight.shape(), device)?;
                self.grads.push(&affine.weight, d_weight);
                let d_bias = Tensor::from_vec(d_bias, affine.bias.shape(), device)?;
                self.grads.push(&affine.bias, d_bias);
            }
            Ok((dx, d_attention_bias))
        })?;
        let d_attention_bias = match (d_attention_bias, &self.bias_shape) {
            (Some(values), Some(shape)) => {
                let (batch, seq, _) = x.dims3()?;
                let full =
                    Tensor::from_vec(values, (batch, self.params.heads, seq, seq), x.device())?;
                Some(sum_to_shape(&full, shape)?)
            }
            _ => None,
        };
        Ok((
            Tensor::from_vec(dx, x.shape(), x.device())?,
            d_attention_bias,
        ))
    }
}

/// `grad` summed over the dimensions where `shape` has 1 (a broadcast bias's gradient).
fn sum_to_shape(grad: &Tensor, shape: &Shape) -> candle_core::Result<Tensor> {
    let mut grad = grad.clone();
    for (dim, (&want, &have)) in shape
        .dims()
        .iter()
        .zip(grad.dims().to_vec().iter())
        .enumerate()
    {
        if want == 1 && have != 1 {
            grad = grad.sum_keepdim(dim)?;
        }
    }
    grad.reshape(shape)
}

/// The gradients (weight, bias) of one [`Affine`].
type AffineGrads = (Vec<f32>, Vec<f32>);

/// Back through `norm(branch ∘ factors + residual)` for the output gradient `grad`: the
/// gradient of the sum (which is also the residual's), the branch's, and the norm's
/// parameter gradients.
fn residual_norm_backward(
    norm: &NormValues,
    sum: &[f32],
    grad: &[f32],
    factors: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, AffineGrads) {
    let (d_sum, d_weight, d_bias) = norm.backward(sum, grad);
    let d_branch = match factors {
        Some(factors) => multiply_values(&d_sum, factors),
        None => d_sum.clone(),
    };
    (d_sum, d_branch, (d_weight, d_bias))
}

/// One encoder block in training mode on the CPU (f32 tensors; GELU with erf), for x
/// [batch, seq, hidden] and the attention's additive `bias` (see `attention::Bias`). The
/// parameters' gradients go to `grads` when the result is differentiated; a bias that tracks
/// gradients (MPNet's relative position bias) gets its own through candle's graph.
pub fn encoder_block(
    x: &Tensor,
    params: BlockParams,
    bias: &Tensor,
    dropout: BlockDropout,
    grads: &ParamGrads,
) -> candle_core::Result<Tensor> {
    let tensors = params.affines().map(|a| [&a.weight, &a.bias]);
    if !uses_cpu_kernels(x) || !tensors.iter().flatten().all(|t| uses_cpu_kernels(t)) {
        candle_core::bail!("the encoder block kernel takes CPU f32 tensors");
    }
    let trains_params = tensors.iter().flatten().any(|t| t.is_variable());
    let hidden = x.dim(candle_core::D::Minus1)?;
    let head_dim = hidden / params.heads.max(1);
    let op = EncoderBlock {
        attention: Attention {
            heads: params.heads,
            scale: (1.0 / (head_dim as f64).sqrt()) as f32,
            bias: Bias::from_tensor(bias)?,
            dropout: dropout.attention,
        },
        params: BlockParams {
            query: contiguous(params.query)?,
            key: contiguous(params.key)?,
            value: contiguous(params.value)?,
            attention_output: contiguous(params.attention_output)?,
            attention_norm: contiguous(params.attention_norm)?,
            intermediate: contiguous(params.intermediate)?,
            output: contiguous(params.output)?,
            output_norm: contiguous(params.output_norm)?,
            ..params
        },
        attention_output_dropout: dropout.attention_output,
        output_dropout: dropout.output,
        saved: Mutex::new(None),
        grads: grads.clone(),
        bias_shape: bias.track_op().then(|| bias.shape().clone()),
    };
    // candle records the op, and so runs its backward, only for an input that tracks
    // gradients; after frozen blocks the input tracks none, so it becomes a leaf here.
    let x = x.contiguous()?;
    if op.bias_shape.is_some() {
        if !uses_cpu_kernels(bias) {
            candle_core::bail!("the encoder block kernel takes a CPU f32 bias");
        }
        return x.apply_op2(&bias.contiguous()?, op);
    }
    if trains_params && !x.track_op() {
        candle_core::Var::from_tensor(&x)?
            .into_inner()
            .apply_op1(op)
    } else {
        x.apply_op1(op)
    }
}

/// Parameters are contiguous as loaded; `contiguous` returns the same tensor then, so the
/// gradients stay keyed by the parameters' own ids.
fn contiguous(affine: Affine) -> candle_core::Result<Affine> {
    Ok(Affine {
        weight: affine.weight.contiguous()?,
        bias: affine.bias.contiguous()?,
    })
}
