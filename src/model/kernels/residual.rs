//! A sublayer's output with inverted dropout, added to the sublayer's input, as one
//! differentiable op: candle would make a multiply (also differentiating the constant
//! dropout mask) and an add, each with its own zero-filled gradient buffers.

use super::{contiguous_f32, rows_per_task, uses_cpu_kernels};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

struct DropoutAdd {
    /// One factor (0 or 1/keep) per element of the output; `None`: no dropout.
    factors: Option<Vec<f32>>,
}

/// `y ∘ factors + residual` (`y + residual` without factors).
pub(super) fn dropout_add_values(y: &[f32], residual: &[f32], factors: Option<&[f32]>) -> Vec<f32> {
    assert!(
        y.len() == residual.len() && factors.is_none_or(|f| f.len() == y.len()),
        "dropout-add: lengths differ"
    );
    let chunk = rows_per_task(1);
    let mut out = Vec::with_capacity(residual.len());
    let slots = &mut out.spare_capacity_mut()[..residual.len()];
    match factors {
        Some(factors) => slots
            .par_chunks_mut(chunk)
            .zip(residual.par_chunks(chunk))
            .zip(y.par_chunks(chunk).zip(factors.par_chunks(chunk)))
            .for_each(|((out, residual), (y, factors))| {
                for (((o, r), y), f) in out.iter_mut().zip(residual).zip(y).zip(factors) {
                    o.write(r + y * f);
                }
            }),
        None => slots
            .par_chunks_mut(chunk)
            .zip(residual.par_chunks(chunk))
            .zip(y.par_chunks(chunk))
            .for_each(|((out, residual), y)| {
                for ((o, r), y) in out.iter_mut().zip(residual).zip(y) {
                    o.write(r + y);
                }
            }),
    }
    // SAFETY: every slot was written above (the lengths agree).
    unsafe { out.set_len(residual.len()) };
    out
}

/// `values ∘ factors`, in parallel.
pub(super) fn multiply_values(values: &[f32], factors: &[f32]) -> Vec<f32> {
    let chunk = rows_per_task(1);
    let mut out = values.to_vec();
    out.par_chunks_mut(chunk)
        .zip(factors.par_chunks(chunk))
        .for_each(|(out, factors)| out.iter_mut().zip(factors).for_each(|(o, f)| *o *= f));
    out
}

impl CustomOp2 for DropoutAdd {
    fn name(&self) -> &'static str {
        "dropout-add"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        y_layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (y, residual) = (
            contiguous_f32(y, y_layout)?,
            contiguous_f32(residual, residual_layout)?,
        );
        if y.len() != residual.len() || self.factors.as_ref().is_some_and(|f| f.len() != y.len()) {
            candle_core::bail!(
                "dropout-add: {:?} + {:?}",
                y_layout.shape(),
                residual_layout.shape()
            );
        }
        let out = dropout_add_values(y, residual, self.factors.as_deref());
        Ok((CpuStorage::F32(out), y_layout.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _residual: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_y = match &self.factors {
            Some(factors) => {
                grad.mul(&Tensor::from_slice(factors, grad.shape(), grad.device())?)?
            }
            None => grad.clone(),
        };
        Ok((Some(grad_y), Some(grad.clone())))
    }
}

/// `y ∘ factors + residual` (`y + residual` without factors), differentiable, for CPU f32
/// tensors (see [`uses_cpu_kernels`]).
pub fn dropout_add(
    y: &Tensor,
    residual: &Tensor,
    factors: Option<Vec<f32>>,
) -> candle_core::Result<Tensor> {
    if !(uses_cpu_kernels(y) && uses_cpu_kernels(residual)) {
        candle_core::bail!("the dropout-add kernel takes CPU f32 tensors");
    }
    y.contiguous()?
        .apply_op2(&residual.contiguous()?, DropoutAdd { factors })
}
