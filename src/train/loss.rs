//! Training losses on logits, stable for any logit: binary cross-entropy per label, and a
//! softmax that sets each positive against the sequence's negatives.

use crate::config::LossKind;
use anyhow::Result;
use candle_core::{Tensor, D};

/// The training loss of `kind`; `logits`, `targets`, `mask`: [batch, labels].
pub fn training_loss(
    kind: LossKind,
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    Ok(match kind {
        LossKind::Bce => masked_bce_with_logits(logits, targets, mask)?,
        LossKind::Softmax => masked_softmax_against_negatives(logits, targets, mask)?,
        LossKind::BceSoftmax => {
            (masked_bce_with_logits(logits, targets, mask)?
                + masked_softmax_against_negatives(logits, targets, mask)?)?
        }
    })
}

/// `softplus(x) = log(1 + exp(x))` without overflow.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// A logit far below any real one: slots set to it vanish from a log-sum-exp.
const ABSENT: f64 = -1e4;

/// `log Σ exp(x)` over the last axis, kept as [batch, 1], without overflow.
fn log_sum_exp(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + &max
}

/// For each positive `p` of a sequence, the cross-entropy of a softmax over `p` and the
/// sequence's negatives: `softplus(logsumexp(negatives) − x_p)`. Averaged over the sequence's
/// positives, then over the sequences that have a positive. A sequence without negatives adds
/// nothing. `logits`, `targets`, `mask`: [batch, labels].
pub fn masked_softmax_against_negatives(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    let positives = (targets * mask)?;
    let negatives = (mask - &positives)?;
    // Non-negatives pushed far down, so that they vanish from the log-sum-exp.
    let negative_logits = ((logits * &negatives)? + ((1.0 - &negatives)? * ABSENT)?)?;
    let lse = log_sum_exp(&negative_logits)?;
    let per_positive = (softplus(&lse.broadcast_sub(logits)?)? * &positives)?;
    let positives_per_sequence = positives.sum(1)?;
    let has_positive = positives_per_sequence.gt(0.0)?.to_dtype(logits.dtype())?;
    let per_sequence = (per_positive.sum(1)? / positives_per_sequence.maximum(1.0)?)?;
    let sequences = has_positive.sum_all()?.maximum(1.0)?;
    Ok((per_sequence.sum_all()? / sequences)?)
}

/// The cross-entropy `−Σ q·log softmax(x)` over each sequence's labels, for target
/// distributions `q` (each row summing to 1 over its labels), averaged over the sequences with
/// at least two labels (a softmax over one label teaches nothing). `logits`, `targets`,
/// `mask`: [batch, labels].
pub fn masked_soft_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    let masked = ((logits * mask)? + ((1.0 - mask)? * ABSENT)?)?;
    let lse = log_sum_exp(&masked)?;
    let log_probs = masked.broadcast_sub(&lse)?;
    let per_sequence = ((targets * mask)? * log_probs)?.sum(1)?.neg()?;
    let counted = mask.sum(1)?.gt(1.0)?.to_dtype(logits.dtype())?;
    Ok(((per_sequence * &counted)?.sum_all()? / counted.sum_all()?.maximum(1.0)?)?)
}

/// `logits`, `targets`, `mask`: [batch, labels]. Uses
/// `relu(x) − x·y + log(1 + exp(−|x|))`, which neither overflows nor loses precision.
pub fn masked_bce_with_logits(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let elementwise = ((logits.relu()? - (logits * targets)?)? + softplus_neg_abs)?;
    let per_sequence = (elementwise * mask)?.sum(1)?;
    let labels_per_sequence = mask.sum(1)?.maximum(1.0)?;
    Ok((per_sequence / labels_per_sequence)?.mean_all()?)
}

/// The same loss for one logit, in f64, for validation.
pub fn bce_with_logit(logit: f32, target: bool) -> f64 {
    let x = logit as f64;
    let y = if target { 1.0 } else { 0.0 };
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_naive_formula_and_ignores_padding() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[0.5f32, -1.0, 3.0], [2.0, 99.0, -99.0]], &dev).unwrap();
        let targets = Tensor::new(&[[1f32, 0.0, 1.0], [0.0, 0.0, 0.0]], &dev).unwrap();
        let mask = Tensor::new(&[[1f32, 1.0, 1.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        let loss: f32 = masked_bce_with_logits(&logits, &targets, &mask)
            .unwrap()
            .to_scalar()
            .unwrap();
        let naive = |x: f64, y: f64| {
            -(y * (1.0 / (1.0 + (-x).exp())).ln() + (1.0 - y) * (1.0 / (1.0 + x.exp())).ln())
        };
        let first = (naive(0.5, 1.0) + naive(-1.0, 0.0) + naive(3.0, 1.0)) / 3.0;
        let second = naive(2.0, 0.0);
        assert!(
            (loss as f64 - (first + second) / 2.0).abs() < 1e-5,
            "{loss}"
        );
        assert!((bce_with_logit(0.5, true) - naive(0.5, 1.0)).abs() < 1e-12);
    }

    #[test]
    fn softmax_matches_the_naive_formula_and_ignores_padding() {
        let dev = Device::Cpu;
        // Two positives and two negatives; one positive and no negative; padding everywhere.
        let logits = Tensor::new(
            &[[2.0f32, 0.5, -1.0, 1.5, 80.0], [3.0, 50.0, -50.0, 0.0, 0.0]],
            &dev,
        )
        .unwrap();
        let targets = Tensor::new(
            &[[1f32, 0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]],
            &dev,
        )
        .unwrap();
        let mask = Tensor::new(
            &[[1f32, 1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]],
            &dev,
        )
        .unwrap();
        let loss: f32 = masked_softmax_against_negatives(&logits, &targets, &mask)
            .unwrap()
            .to_scalar()
            .unwrap();
        let ce = |pos: f64, negs: &[f64]| {
            let sum: f64 = negs.iter().map(|n| n.exp()).sum::<f64>() + pos.exp();
            -(pos.exp() / sum).ln()
        };
        // The second sequence has a positive but no negative: it counts with zero loss.
        let expected = (ce(2.0, &[0.5, -1.0]) + ce(1.5, &[0.5, -1.0])) / 2.0 / 2.0;
        assert!(
            (loss as f64 - expected).abs() < 1e-5,
            "{loss} vs {expected}"
        );
        let both: f32 = training_loss(LossKind::BceSoftmax, &logits, &targets, &mask)
            .unwrap()
            .to_scalar()
            .unwrap();
        let bce: f32 = masked_bce_with_logits(&logits, &targets, &mask)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((both - bce - loss).abs() < 1e-5);
    }

    /// A loss over one row of logits with every label real, and its gradient by the logits.
    fn value_and_gradient<const N: usize>(
        loss: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
        logits: &[[f32; N]; 1],
        targets: &[[f32; N]; 1],
    ) -> (f32, Vec<Vec<f32>>) {
        let dev = Device::Cpu;
        let x = Var::new(logits, &dev).unwrap();
        let targets = Tensor::new(targets, &dev).unwrap();
        let mask = Tensor::ones((1, N), candle_core::DType::F32, &dev).unwrap();
        let loss = loss(x.as_tensor(), &targets, &mask).unwrap();
        let grad = loss
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .to_vec2()
            .unwrap();
        (loss.to_scalar().unwrap(), grad)
    }

    #[test]
    fn softmax_is_finite_with_the_right_gradient_for_huge_logits() {
        let (value, grad) = value_and_gradient(
            masked_softmax_against_negatives,
            &[[-500f32, 500.0, 0.0]],
            &[[1f32, 0.0, 0.0]],
        );
        assert!((value - 1000.0).abs() < 1e-2, "{value}");
        // d/dx_pos = p_pos − 1 ≈ −1, d/dx_neg = p_neg ≈ 1 for the dominant negative.
        assert!((grad[0][0] + 1.0).abs() < 1e-4, "{grad:?}");
        assert!((grad[0][1] - 1.0).abs() < 1e-4, "{grad:?}");
        assert!(grad[0][2].abs() < 1e-4, "{grad:?}");
    }

    #[test]
    fn is_finite_with_the_right_gradient_for_huge_logits() {
        let (value, grad) = value_and_gradient(
            masked_bce_with_logits,
            &[[1000f32, -1000.0]],
            &[[0f32, 1.0]],
        );
        assert!((value - 1000.0).abs() < 1e-3, "{value}");
        // d/dx = (sigmoid(x) − y) / labels
        assert!(
            (grad[0][0] - 0.5).abs() < 1e-6 && (grad[0][1] + 0.5).abs() < 1e-6,
            "{grad:?}"
        );
        assert!(bce_with_logit(-1000.0, true).is_finite());
    }

    /// Against the formula by hand: padding ignored, a one-label sequence not counted, and
    /// the loss at its minimum (the entropy of q) when the logits' softmax is q.
    #[test]
    fn soft_cross_entropy_matches_the_formula() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[1.0f32, 2.0, 50.0], [0.3, 7.0, -2.0]], &dev).unwrap();
        let targets = Tensor::new(&[[0.25f32, 0.75, 0.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        let mask = Tensor::new(&[[1f32, 1.0, 0.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        let loss: f32 = masked_soft_cross_entropy(&logits, &targets, &mask)
            .unwrap()
            .to_scalar()
            .unwrap();
        let lse = (1f64.exp() + 2f64.exp()).ln();
        let want = -(0.25 * (1.0 - lse) + 0.75 * (2.0 - lse));
        assert!((loss as f64 - want).abs() < 1e-5, "{loss} vs {want}");

        let q = [0.2f64, 0.3, 0.5];
        let logits = Tensor::new(&[q.map(|p| p.ln() as f32 + 4.0)], &dev).unwrap();
        let targets = Tensor::new(&[q.map(|p| p as f32)], &dev).unwrap();
        let mask = Tensor::ones((1, 3), candle_core::DType::F32, &dev).unwrap();
        let loss: f32 = masked_soft_cross_entropy(&logits, &targets, &mask)
            .unwrap()
            .to_scalar()
            .unwrap();
        let entropy: f64 = -q.iter().map(|p| p * p.ln()).sum::<f64>();
        assert!((loss as f64 - entropy).abs() < 1e-5, "{loss} vs {entropy}");
    }
}
