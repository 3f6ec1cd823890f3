//! Binary cross-entropy on logits, stable for any logit, averaged over each sequence's real
//! labels and then over the batch.

use anyhow::Result;
use candle_core::Tensor;

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
    fn is_finite_with_the_right_gradient_for_huge_logits() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1000f32, -1000.0]], &dev).unwrap();
        let targets = Tensor::new(&[[0f32, 1.0]], &dev).unwrap();
        let mask = Tensor::new(&[[1f32, 1.0]], &dev).unwrap();
        let loss = masked_bce_with_logits(x.as_tensor(), &targets, &mask).unwrap();
        let value: f32 = loss.to_scalar().unwrap();
        assert!((value - 1000.0).abs() < 1e-3, "{value}");
        let grad = loss
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // d/dx = (sigmoid(x) − y) / labels
        assert!(
            (grad[0][0] - 0.5).abs() < 1e-6 && (grad[0][1] + 0.5).abs() < 1e-6,
            "{grad:?}"
        );
        assert!(bce_with_logit(-1000.0, true).is_finite());
    }
}
