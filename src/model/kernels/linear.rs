//! A dense layer, `x·Wᵀ + b`, as one differentiable op: the bias is the product's starting
//! value, and the backward pass is two products and a column sum (candle's autograd would
//! build it from a reshape, a transpose, a matmul and a broadcast add, and fill and add a
//! zero gradient for each).

use super::matmul::{matmul, Matrix, MatrixMut, Threads};
use super::{
    column_sums, contiguous_f32, gelu_rows_in_place, kernel_values, rows_per_task, uses_cpu_kernels,
};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// A dense layer's weight [outputs, inputs] and bias [outputs].
#[derive(Clone, Copy)]
pub(super) struct DenseValues<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub inputs: usize,
    pub outputs: usize,
}

impl DenseValues<'_> {
    /// `x·Wᵀ + b` for the rows of `x`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (inputs, outputs) = (self.inputs, self.outputs);
        let rows = x.len() / inputs.max(1);
        // Every row starts as the bias, written once, in parallel (no zeroing pass first).
        let mut y = Vec::with_capacity(rows * outputs);
        y.spare_capacity_mut()[..rows * outputs]
            .par_chunks_mut(outputs * rows_per_task(outputs))
            .for_each(|chunk| {
                for row in chunk.chunks_mut(outputs) {
                    for (y, &b) in row.iter_mut().zip(self.bias) {
                        y.write(b);
                    }
                }
            });
        // SAFETY: every element of the first rows × outputs was written above.
        unsafe { y.set_len(rows * outputs) };
        matmul(
            MatrixMut::rows(&mut y, 0, (rows, outputs), outputs),
            Matrix::rows(x, 0, (rows, inputs), inputs),
            Matrix::rows(self.weight, 0, (outputs, inputs), inputs).t(),
            true,
            Threads::All,
        );
        y
    }

    /// The gradients for output gradient `grad`: `dx` is written to (or, with `accumulate`,
    /// added to) `dx`; returns (dW, db).
    pub fn backward(
        &self,
        x: &[f32],
        grad: &[f32],
        dx: &mut [f32],
        accumulate: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let (inputs, outputs) = (self.inputs, self.outputs);
        let rows = x.len() / inputs.max(1);
        let grad_matrix = Matrix::rows(grad, 0, (rows, outputs), outputs);
        matmul(
            MatrixMut::rows(dx, 0, (rows, inputs), inputs),
            grad_matrix,
            Matrix::rows(self.weight, 0, (outputs, inputs), inputs),
            accumulate,
            Threads::All,
        );
        let mut dweight = vec![0.0; outputs * inputs];
        matmul(
            MatrixMut::rows(&mut dweight, 0, (outputs, inputs), inputs),
            grad_matrix.t(),
            Matrix::rows(x, 0, (rows, inputs), inputs),
            false,
            Threads::All,
        );
        (dweight, column_sums(grad, outputs))
    }
}

/// `x·Wᵀ + b`, then, with `gelu`, GELU (erf form) in place as the op's last pass: inference
/// only (its backward pass is refused), where the differentiable pair would make a second
/// tensor.
struct Linear {
    gelu: bool,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
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
        let (outputs, inputs) = weight_layout.shape().dims2()?;
        let (x, weight, bias) = (
            contiguous_f32(x, x_layout)?,
            contiguous_f32(weight, weight_layout)?,
            contiguous_f32(bias, bias_layout)?,
        );
        if bias.len() != outputs || x_layout.shape().dims().last() != Some(&inputs) {
            candle_core::bail!(
                "linear: {:?} · {:?}",
                x_layout.shape(),
                weight_layout.shape()
            );
        }
        let dense = DenseValues {
            weight,
            bias,
            inputs,
            outputs,
        };
        let mut shape = x_layout.shape().dims().to_vec();
        *shape.last_mut().expect("checked above") = outputs;
        let mut y = dense.forward(x);
        if self.gelu {
            gelu_rows_in_place(&mut y, outputs);
        }
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if self.gelu {
            candle_core::bail!("linear with GELU is for inference: it has no backward pass");
        }
        let grad = grad.contiguous()?;
        let (outputs, inputs) = weight.dims2()?;
        let (x_storage, x_layout) = x.storage_and_layout();
        let (weight_storage, weight_layout) = weight.storage_and_layout();
        let (bias_storage, bias_layout) = bias.storage_and_layout();
        let (grad_storage, grad_layout) = grad.storage_and_layout();
        let x_values = kernel_values(&x_storage, x_layout)?;
        let dense = DenseValues {
            weight: kernel_values(&weight_storage, weight_layout)?,
            bias: kernel_values(&bias_storage, bias_layout)?,
            inputs,
            outputs,
        };
        let mut dx = vec![0.0; x_values.len()];
        let (dweight, dbias) = dense.backward(
            x_values,
            kernel_values(&grad_storage, grad_layout)?,
            &mut dx,
            false,
        );
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dweight, weight.shape(), x.device())?),
            Some(Tensor::from_vec(dbias, bias.shape(), x.device())?),
        ))
    }
}

/// `gelu(x·weightᵀ + bias)` for CPU f32 tensors, not differentiable: the same values as
/// [`linear`] then `gelu_erf`, in one op.
pub fn linear_gelu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    if !(uses_cpu_kernels(x) && uses_cpu_kernels(weight) && uses_cpu_kernels(bias)) {
        candle_core::bail!("the linear kernel takes CPU f32 tensors");
    }
    x.contiguous()?.apply_op3_no_bwd(
        &weight.contiguous()?,
        &bias.contiguous()?,
        &Linear { gelu: true },
    )
}

/// `x·weightᵀ + bias` for x [.., in], weight [out, in], bias [out]; differentiable, for CPU
/// f32 tensors (see [`uses_cpu_kernels`]).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    if !(uses_cpu_kernels(x) && uses_cpu_kernels(weight) && uses_cpu_kernels(bias)) {
        candle_core::bail!("the linear kernel takes CPU f32 tensors");
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        Linear { gelu: false },
    )
}
