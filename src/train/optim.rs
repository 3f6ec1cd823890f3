//! AdamW with two learning rates (encoder, head), weight decay only where it belongs (not on
//! biases, LayerNorm weights or the logit scale), linear warmup then linear decay, and
//! clipping by global gradient norm. candle's own `AdamW` has none of these.

use crate::model::kernels::cpu_f32;
use anyhow::{Context, Result};
use candle_core::{Tensor, Var};
use rayon::prelude::*;
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

    /// Applies one update with `grads` aligned to `params()`, at the base rates times
    /// `lr_factor`; every gradient is first multiplied by `grad_scale` (clipping's factor).
    pub fn step(&mut self, grads: &[Tensor], lr_factor: f64, grad_scale: f64) -> Result<()> {
        anyhow::ensure!(
            grads.len() == self.params.len(),
            "one gradient per parameter"
        );
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let (bias1, bias2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (i, (param, grad)) in self.params.iter().zip(grads).enumerate() {
            let lr = lr_factor
                * if param.is_head() {
                    c.head_lr
                } else {
                    c.encoder_lr
                };
            let update = Update {
                lr,
                decay: if param.decays() {
                    1.0 - lr * c.weight_decay
                } else {
                    1.0
                },
                grad_scale,
                beta1: c.beta1,
                beta2: c.beta2,
                bias1,
                bias2,
                eps: c.eps,
            };
            let value = param.var.as_tensor();
            let (m, v) = (&self.first_moment[i], &self.second_moment[i]);
            let (value, m, v) = match update.fused_cpu(value, grad, m, v)? {
                Some(updated) => updated,
                None => update.with_tensor_ops(value, grad, m, v)?,
            };
            param.var.set(&value)?;
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

/// One AdamW update of one tensor: w ← w·decay − lr·m̂/(√v̂ + eps), with g scaled first.
struct Update {
    lr: f64,
    decay: f64,
    grad_scale: f64,
    beta1: f64,
    beta2: f64,
    bias1: f64,
    bias2: f64,
    eps: f64,
}

impl Update {
    /// New (value, first moment, second moment) from tensor ops: any device.
    fn with_tensor_ops(
        &self,
        value: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let grad = (grad * self.grad_scale)?;
        let m = ((m * self.beta1)? + (&grad * (1.0 - self.beta1))?)?;
        let v = ((v * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?;
        let step = ((&m / self.bias1)? / ((&v / self.bias2)?.sqrt()? + self.eps)?)?;
        let value = ((value.detach() * self.decay)? - (step * self.lr)?)?;
        Ok((value, m, v))
    }

    /// The same update in one pass over contiguous f32 CPU tensors (the tensor-op form makes
    /// about a dozen passes, each allocating a tensor the size of the parameter); `None` for
    /// anything else.
    fn fused_cpu(
        &self,
        value: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let (value_storage, value_layout) = value.storage_and_layout();
        let (grad_storage, grad_layout) = grad.storage_and_layout();
        let (m_storage, m_layout) = m.storage_and_layout();
        let (v_storage, v_layout) = v.storage_and_layout();
        let (Some(w), Some(g), Some(m), Some(v)) = (
            cpu_f32(&value_storage, value_layout),
            cpu_f32(&grad_storage, grad_layout),
            cpu_f32(&m_storage, m_layout),
            cpu_f32(&v_storage, v_layout),
        ) else {
            return Ok(None);
        };
        let n = w.len();
        if g.len() != n || m.len() != n || v.len() != n {
            return Ok(None);
        }
        let [lr, decay, grad_scale, beta1, beta2, bias1, bias2, eps] = [
            self.lr,
            self.decay,
            self.grad_scale,
            self.beta1,
            self.beta2,
            self.bias1,
            self.bias2,
            self.eps,
        ]
        .map(|x| x as f32);
        // Written in full below, so not zero-filled first.
        let (mut new_w, mut new_m, mut new_v) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        new_w.spare_capacity_mut()[..n]
            .par_chunks_mut(CHUNK)
            .zip(new_m.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .zip(new_v.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(chunk, ((new_w, new_m), new_v))| {
                let start = chunk * CHUNK;
                for j in 0..new_w.len() {
                    let g = g[start + j] * grad_scale;
                    let m = beta1 * m[start + j] + (1.0 - beta1) * g;
                    let v = beta2 * v[start + j] + (1.0 - beta2) * g * g;
                    new_w[j].write(
                        w[start + j] * decay - lr * ((m / bias1) / ((v / bias2).sqrt() + eps)),
                    );
                    new_m[j].write(m);
                    new_v[j].write(v);
                }
            });
        // SAFETY: the chunks above cover all n elements of each vector and wrote every one.
        unsafe {
            new_w.set_len(n);
            new_m.set_len(n);
            new_v.set_len(n);
        }
        let shape = value.shape();
        let device = value.device();
        Ok(Some((
            Tensor::from_vec(new_w, shape, device)?,
            Tensor::from_vec(new_m, shape, device)?,
            Tensor::from_vec(new_v, shape, device)?,
        )))
    }
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// Σ g² over a tensor: in one parallel pass for contiguous f32 CPU tensors, summed in fixed
/// chunks in order (so the result does not depend on scheduling); tensor ops otherwise.
fn sum_of_squares(grad: &Tensor) -> Result<f64> {
    let (storage, layout) = grad.storage_and_layout();
    if let Some(values) = cpu_f32(&storage, layout) {
        let partials: Vec<f64> = values
            .par_chunks(CHUNK)
            .map(|chunk| chunk.iter().map(|&x| (x as f64) * (x as f64)).sum())
            .collect();
        return Ok(partials.iter().sum());
    }
    drop(storage);
    Ok(grad
        .sqr()?
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?)
}

/// The global L2 norm of `grads`, and the factor that brings it down to `max_norm` (1 when it
/// is already within).
pub fn clip_scale(grads: &[Tensor], max_norm: f64) -> Result<(f64, f64)> {
    let mut total = 0f64;
    for g in grads {
        total += sum_of_squares(g)?;
    }
    let norm = total.sqrt();
    let scale = if norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    };
    Ok((norm, scale))
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
        opt.step(&grads, 1.0, 1.0).unwrap();
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
            opt.step(&[grad], 1.0, 1.0).unwrap();
        }
        assert!((value(&opt.params()[0]) - 2.0).abs() < 0.05);
    }

    #[test]
    fn clipping_scales_the_global_norm_down_to_the_maximum() {
        let grads = vec![
            Tensor::new(&[3f32], &Device::Cpu).unwrap(),
            Tensor::new(&[4f32], &Device::Cpu).unwrap(),
        ];
        let (norm, scale) = clip_scale(&grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((norm * scale - 1.0).abs() < 1e-6);
        let small = vec![Tensor::new(&[0.3f32], &Device::Cpu).unwrap()];
        assert_eq!(clip_scale(&small, 1.0).unwrap().1, 1.0);
    }

    #[test]
    fn fused_update_matches_tensor_ops() {
        let device = Device::Cpu;
        let random = |seed: u64| {
            let mut rng = crate::rng::Rng::new(seed);
            let values: Vec<f32> = (0..1000).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
            Tensor::from_vec(values, (20, 50), &device).unwrap()
        };
        let (value, grad, m) = (random(1), random(2), random(3));
        let v = random(4).abs().unwrap();
        let update = Update {
            lr: 0.01,
            decay: 0.999,
            grad_scale: 0.5,
            beta1: 0.9,
            beta2: 0.999,
            bias1: 0.19,
            bias2: 0.002,
            eps: 1e-8,
        };
        let fused = update.fused_cpu(&value, &grad, &m, &v).unwrap().unwrap();
        let plain = update.with_tensor_ops(&value, &grad, &m, &v).unwrap();
        for (a, b) in [
            (&fused.0, &plain.0),
            (&fused.1, &plain.1),
            (&fused.2, &plain.2),
        ] {
            let diff = crate::testing::max_abs_diff(a, b);
            assert!(diff < 1e-6, "{diff}");
        }
        let transposed = value.t().unwrap();
        assert!(update
            .fused_cpu(&transposed, &grad.t().unwrap(), &m, &v)
            .unwrap()
            .is_none());
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
