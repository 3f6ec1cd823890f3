//! AdamW with two learning rates (encoder, head), weight decay only where it belongs (not on
//! biases, LayerNorm weights or the logit scale), linear warmup then linear decay, and
//! clipping by global gradient norm. candle's own `AdamW` has none of these.

use anyhow::{Context, Result};
use candle_core::{Tensor, Var};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub encoder_lr: f64,
    pub head_lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

pub struct Param {
    pub name: String,
    pub var: Var,
}

impl Param {
    pub fn is_head(&self) -> bool {
        self.name.starts_with("gliznet.")
    }

    pub fn decays(&self) -> bool {
        !(self.name.ends_with(".bias")
            || self.name.contains("LayerNorm")
            || self.name.ends_with("log_logit_scale"))
    }
}

pub struct AdamW {
    params: Vec<Param>,
    first_moment: Vec<Tensor>,
    second_moment: Vec<Tensor>,
    /// Updates applied so far.
    pub steps: usize,
    config: AdamWConfig,
}

impl AdamW {
    pub fn new(params: Vec<Param>, config: AdamWConfig) -> Result<Self> {
        let zeros = |p: &Param| p.var.as_tensor().zeros_like();
        Ok(Self {
            first_moment: params
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            second_moment: params
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            params,
            steps: 0,
            config,
        })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Applies one update with `grads` aligned to `params()`, at the base rates times `lr_factor`.
    pub fn step(&mut self, grads: &[Tensor], lr_factor: f64) -> Result<()> {
        anyhow::ensure!(
            grads.len() == self.params.len(),
            "one gradient per parameter"
        );
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (i, (param, grad)) in self.params.iter().zip(grads).enumerate() {
            let lr = lr_factor
                * if param.is_head() {
                    c.head_lr
                } else {
                    c.encoder_lr
                };
            let m = ((&self.first_moment[i] * c.beta1)? + (grad * (1.0 - c.beta1))?)?;
            let v = ((&self.second_moment[i] * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + c.eps)?)?;
            let mut value = param.var.as_tensor().detach();
            if param.decays() && c.weight_decay > 0.0 {
                value = (&value * (1.0 - lr * c.weight_decay))?;
            }
            param.var.set(&(value - (update * lr)?)?)?;
            self.first_moment[i] = m;
            self.second_moment[i] = v;
        }
        Ok(())
    }

    /// Moments by parameter name, for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut state = HashMap::new();
        for (i, p) in self.params.iter().enumerate() {
            state.insert(format!("m.{}", p.name), self.first_moment[i].clone());
            state.insert(format!("v.{}", p.name), self.second_moment[i].clone());
        }
        state
    }

    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for (i, p) in self.params.iter().enumerate() {
            let get = |kind: &str| {
                state
                    .get(&format!("{kind}.{}", p.name))
                    .cloned()
                    .with_context(|| format!("optimizer state has no {kind}.{}", p.name))
            };
            self.first_moment[i] = get("m")?;
            self.second_moment[i] = get("v")?;
        }
        self.steps = steps;
        Ok(())
    }
}

/// Scales `grads` in place so that their global L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter() {
        total += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

/// Learning-rate factor for update number `step` (0-based): linear warmup over
/// `warmup_steps`, then linear decay to 0 at `total_steps`.
pub fn lr_factor(step: usize, total_steps: usize, warmup_steps: usize) -> f64 {
    if step < warmup_steps {
        return (step + 1) as f64 / warmup_steps as f64;
    }
    let remaining = total_steps.saturating_sub(step) as f64;
    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
    (remaining / span).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn config(weight_decay: f64) -> AdamWConfig {
        AdamWConfig {
            encoder_lr: 0.1,
            head_lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    fn param(name: &str, value: f32) -> Param {
        Param {
            name: name.into(),
            var: Var::new(&[value], &Device::Cpu).unwrap(),
        }
    }

    fn value(p: &Param) -> f32 {
        p.var.as_tensor().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn first_step_moves_each_param_by_its_lr_and_decays_only_weights() {
        let params = vec![
            param("encoder.layer.0.output.dense.weight", 1.0),
            param("encoder.layer.0.output.dense.bias", 1.0),
            param("gliznet.bilinear.weight", 1.0),
            param("embeddings.LayerNorm.weight", 1.0),
        ];
        let mut opt = AdamW::new(params, config(0.5)).unwrap();
        let grads: Vec<Tensor> = (0..4)
            .map(|_| Tensor::new(&[2f32], &Device::Cpu).unwrap())
            .collect();
        opt.step(&grads, 1.0).unwrap();
        let p = opt.params();
        // Adam's first step is lr · sign(g); decay multiplies by (1 − lr · wd) first.
        assert!(
            (value(&p[0]) - (1.0 * (1.0 - 0.05) - 0.1)).abs() < 1e-6,
            "{}",
            value(&p[0])
        );
        assert!((value(&p[1]) - 0.9).abs() < 1e-6);
        assert!((value(&p[2]) - (1.0 * (1.0 - 0.005) - 0.01)).abs() < 1e-6);
        assert!((value(&p[3]) - 0.9).abs() < 1e-6);
        assert_eq!(opt.steps, 1);
    }

    #[test]
    fn minimises_a_quadratic() {
        let mut opt = AdamW::new(vec![param("w", 5.0)], config(0.0)).unwrap();
        for _ in 0..300 {
            let x = opt.params()[0].var.as_tensor().clone();
            let loss = (&x - 2.0).unwrap().sqr().unwrap().sum_all().unwrap();
            let grad = loss.backward().unwrap().get(&x).unwrap().clone();
            opt.step(&[grad], 1.0).unwrap();
        }
        assert!((value(&opt.params()[0]) - 2.0).abs() < 0.05);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let mut grads = vec![
            Tensor::new(&[3f32], &Device::Cpu).unwrap(),
            Tensor::new(&[4f32], &Device::Cpu).unwrap(),
        ];
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let a = grads[0].to_vec1::<f32>().unwrap()[0];
        let b = grads[1].to_vec1::<f32>().unwrap()[0];
        assert!(((a * a + b * b).sqrt() - 1.0).abs() < 1e-5);
        let mut small = vec![Tensor::new(&[0.3f32], &Device::Cpu).unwrap()];
        clip_grad_norm(&mut small, 1.0).unwrap();
        assert_eq!(small[0].to_vec1::<f32>().unwrap()[0], 0.3);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((lr_factor(0, 100, 10) - 0.1).abs() < 1e-12);
        assert!((lr_factor(9, 100, 10) - 1.0).abs() < 1e-12);
        assert!((lr_factor(10, 100, 10) - 1.0).abs() < 1e-12);
        assert!((lr_factor(55, 100, 10) - 0.5).abs() < 1e-12);
        assert_eq!(lr_factor(100, 100, 10), 0.0);
        assert!((lr_factor(0, 10, 0) - 1.0).abs() < 1e-12);
    }
}
