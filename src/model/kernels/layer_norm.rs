//! LayerNorm over the last axis as one differentiable op. The backward pass recomputes each
//! row's mean and deviation and uses the closed form
//! dx = (ĝ − mean(ĝ) − x̂·mean(ĝ∘x̂)) / σ with ĝ = g∘w, where candle's autograd would chain
//! eight broadcast ops and their gradients.

use super::{
    contiguous_f32, fold_lanes, kernel_values, rows_per_task, sum_in_order, uses_cpu_kernels,
};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

struct LayerNorm {
    eps: f32,
}

/// The row's mean and 1/σ.
#[inline(always)]
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let width = row.len() as f32;
    let mean = fold_lanes(row, 0.0, |a, b| a + b) / width;
    let mut squares = [0.0f32; 8];
    let chunks = row.chunks_exact(8);
    let mut rest = 0.0;
    for &x in chunks.remainder() {
        rest += (x - mean) * (x - mean);
    }
    for chunk in chunks {
        for (s, &x) in squares.iter_mut().zip(chunk) {
            *s += (x - mean) * (x - mean);
        }
    }
    let variance = (squares.iter().sum::<f32>() + rest) / width;
    (mean, 1.0 / (variance + eps).sqrt())
}

#[inline(always)]
fn normalize_rows(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, y: &mut [f32]) {
    let width = weight.len();
    for (x, y) in x.chunks(width).zip(y.chunks_mut(width)) {
        let (mean, inverse_std) = moments(x, eps);
        for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(weight).zip(bias) {
            *y = (x - mean) * inverse_std * w + b;
        }
    }
}

/// dx for the rows of `x` and `grad`; adds Σ g∘x̂ to `dweight` and Σ g to `dbias`.
#[inline(always)]
fn backward_rows(
    (x, grad, weight): (&[f32], &[f32], &[f32]),
    eps: f32,
    dx: &mut [f32],
    (dweight, dbias): (&mut [f32], &mut [f32]),
) {
    let width = weight.len();
    let inverse_width = 1.0 / width as f32;
    for ((x, g), dx) in x
        .chunks(width)
        .zip(grad.chunks(width))
        .zip(dx.chunks_mut(width))
    {
        let (mean, inverse_std) = moments(x, eps);
        let mut sum_g = 0.0;
        let mut sum_gx = 0.0;
        for (((&x, &g), &w), (dw, db)) in x
            .iter()
            .zip(g)
            .zip(weight)
            .zip(dweight.iter_mut().zip(dbias.iter_mut()))
        {
            let normed = (x - mean) * inverse_std;
            let scaled = g * w;
            sum_g += scaled;
            sum_gx += scaled * normed;
            *dw += g * normed;
            *db += g;
        }
        let (mean_g, mean_gx) = (sum_g * inverse_width, sum_gx * inverse_width);
        for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(weight) {
            let normed = (x - mean) * inverse_std;
            *dx = (g * w - mean_g - normed * mean_gx) * inverse_std;
        }
    }
}

/// A LayerNorm's weight and bias.
#[derive(Clone, Copy)]
pub(super) struct NormValues<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub eps: f32,
}

impl NormValues<'_> {
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (weight, bias, eps) = (self.weight, self.bias, self.eps);
        let chunk = weight.len() * rows_per_task(weight.len());
        let mut y = vec![0.0; x.len()];
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(y, x)| {
                with_simd!(normalize_avx2(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, y: &mut [f32]) {
                    normalize_rows(x, weight, bias, eps, y)
                })
            });
        y
    }

    /// `forward` of `y + residual`, each row's sum made in a buffer and normalized from there
    /// (the sum is never written out): what adding, then normalizing give, bit for bit.
    pub fn forward_sum(&self, y: &[f32], residual: &[f32]) -> Vec<f32> {
        let (weight, bias, eps) = (self.weight, self.bias, self.eps);
        let width = weight.len();
        let chunk = width * rows_per_task(width);
        let mut out = vec![0.0; residual.len()];
        out.par_chunks_mut(chunk)
            .zip(y.par_chunks(chunk).zip(residual.par_chunks(chunk)))
            .for_each(|(out, (y, residual))| {
                with_simd!(add_normalize_avx2(y: &[f32], residual: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
                    let mut sum = vec![0.0; weight.len()];
                    for ((y, residual), out) in y
                        .chunks(weight.len())
                        .zip(residual.chunks(weight.len()))
                        .zip(out.chunks_mut(weight.len()))
                    {
                        for ((s, &r), &y) in sum.iter_mut().zip(residual).zip(y) {
                            *s = r + y;
                        }
                        normalize_rows(&sum, weight, bias, eps, out);
                    }
                })
            });
        out
    }

    /// (dx, dW, db) for output gradient `grad`.
    pub fn backward(&self, x: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (w, eps) = (self.weight, self.eps);
        let width = w.len();
        let chunk = width * rows_per_task(width);
        let mut dx = vec![0.0; x.len()];
        // Partial parameter gradients per fixed chunk of rows, summed in order afterwards.
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(grad.par_chunks(chunk)))
            .map(|(dx, (x, g))| {
                let (mut dweight, mut dbias) = (vec![0.0; width], vec![0.0; width]);
                let (dw, db) = (&mut dweight[..], &mut dbias[..]);
                with_simd!(backward_avx2(x: &[f32], g: &[f32], w: &[f32], eps: f32, dx: &mut [f32], dw: &mut [f32], db: &mut [f32]) {
                    backward_rows((x, g, w), eps, dx, (dw, db))
                });
                (dweight, dbias)
            })
            .collect();
        let dweight = sum_in_order(partials.iter().map(|(w, _)| w.as_slice()), width);
        let dbias = sum_in_order(partials.iter().map(|(_, b)| b.as_slice()), width);
        (dx, dweight, dbias)
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, weight, bias) = (
            contiguous_f32(x, x_layout)?,
            contiguous_f32(weight, weight_layout)?,
            contiguous_f32(bias, bias_layout)?,
        );
        let width = weight.len();
        if bias.len() != width || x_layout.shape().dims().last() != Some(&width) {
            candle_core::bail!("layer norm: {:?} with {width} weights", x_layout.shape());
        }
        let norm = NormValues {
            weight,
            bias,
            eps: self.eps,
        };
        Ok((CpuStorage::F32(norm.forward(x)), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (x_storage, x_layout) = x.storage_and_layout();
        let (weight_storage, weight_layout) = weight.storage_and_layout();
        let (bias_storage, bias_layout) = bias.storage_and_layout();
        let (grad_storage, grad_layout) = grad.storage_and_layout();
        let norm = NormValues {
            weight: kernel_values(&weight_storage, weight_layout)?,
            bias: kernel_values(&bias_storage, bias_layout)?,
            eps: self.eps,
        };
        let (dx, dweight, dbias) = norm.backward(
            kernel_values(&x_storage, x_layout)?,
            kernel_values(&grad_storage, grad_layout)?,
        );
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dweight, weight.shape(), x.device())?),
            Some(Tensor::from_vec(dbias, bias.shape(), x.device())?),
        ))
    }
}

/// LayerNorm of `x` over its last axis with `weight` and `bias`, differentiable, for CPU f32
/// tensors (see [`uses_cpu_kernels`]).
pub fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    if !(uses_cpu_kernels(x) && uses_cpu_kernels(weight) && uses_cpu_kernels(bias)) {
        candle_core::bail!("the layer norm kernel takes CPU f32 tensors");
    }
    let op = LayerNorm { eps: eps as f32 };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// Inference: LayerNorm(`y` + `residual`) over the last axis with `weight` and `bias`, for CPU
/// f32 tensors that track no gradient: [`super::dropout_add`] without dropout, then
/// [`layer_norm`], in one pass that never writes the sum out.
pub fn add_layer_norm(
    y: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let tensors = [y, residual, weight, bias];
    if !tensors.iter().all(|t| uses_cpu_kernels(t) && !t.track_op()) {
        candle_core::bail!("add-layer-norm takes CPU f32 tensors in inference");
    }
    let width = weight.elem_count();
    if y.shape() != residual.shape()
        || y.dims().last() != Some(&width)
        || bias.elem_count() != width
    {
        candle_core::bail!(
            "add-layer-norm: {:?} + {:?} with {width} weights",
            y.shape(),
            residual.shape()
        );
    }
    let [y, residual, weight, bias] = tensors.map(|t| t.contiguous());
    let (y, residual, weight, bias) = (y?, residual?, weight?, bias?);
    let (y_storage, y_layout) = y.storage_and_layout();
    let (residual_storage, residual_layout) = residual.storage_and_layout();
    let (weight_storage, weight_layout) = weight.storage_and_layout();
    let (bias_storage, bias_layout) = bias.storage_and_layout();
    let norm = NormValues {
        weight: kernel_values(&weight_storage, weight_layout)?,
        bias: kernel_values(&bias_storage, bias_layout)?,
        eps: eps as f32,
    };
    let out = norm.forward_sum(
        kernel_values(&y_storage, y_layout)?,
        kernel_values(&residual_storage, residual_layout)?,
    );
    Tensor::from_vec(out, y.shape(), y.device())
}
