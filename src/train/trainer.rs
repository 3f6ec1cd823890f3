//! The training loop. Everything random is derived from the config's seed and the position in
//! training (epoch, example, step), so a resumed run replays exactly what an uninterrupted run
//! would have done: the checkpoint stores weights, optimizer moments and the position. The
//! loop writes its output directory (see [`crate::train::run_dir`]) and tells the caller how
//! it goes through [`TrainEvent`]s; it prints nothing.

use crate::batch::Batch;
use crate::config::TrainConfig;
use crate::data::example::{Example, SkipReport};
use crate::data::labels::label_key;
use crate::error::input_error;
use crate::model::checkpoint::{self, ModelSource};
use crate::rng::Rng;
use crate::tokenizer::{EncodedLabels, LabelTokenizer, SequenceEncoding};
use crate::train::distill::{Row, Teacher};
use crate::train::loss::{masked_soft_cross_entropy, training_loss};
use crate::train::optim::{clip_scale, lr_factor};
use crate::train::run_dir::{append_line, RunDir, Start, STATE_FILE};
use crate::train::setup::{encode_validation, trainable_model, training_data, TrainableModel};
use crate::train::validation::{validate, Validation};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

const OPTIMIZER_FILE: &str = "optimizer.safetensors";

pub struct TrainOptions {
    /// Continue from the output directory's checkpoint.
    pub resume: bool,
    /// Save a checkpoint and return after this optimizer step (to continue later with resume).
    pub stop_after_steps: Option<usize>,
    /// Set by the Ctrl-C handler: save a checkpoint and return at the next step boundary.
    pub interrupted: Arc<AtomicBool>,
    /// Start a new run in a directory that holds other files or an earlier run (see
    /// [`Start::Fresh`]).
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished { best: Option<Best> },
    EarlyStopped { best: Option<Best> },
    Paused { step: usize },
    Interrupted { step: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: usize,
    pub metric: f64,
}

/// What happens during a run, in order, for the caller to show.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// Invalid examples skipped from a file (`invalid_examples: "skip"`); `split` is
    /// "training" or "validation".
    Skipped {
        split: &'static str,
        report: &'a SkipReport,
    },
    /// Everything is loaded; the first step comes next.
    Started {
        train_examples: usize,
        validation_examples: usize,
        parameters: usize,
        tensors: usize,
    },
    /// A resumed run had already finished; nothing was done.
    AlreadyFinished,
    /// An optimizer step was taken. `loss` is the mean since the last [`TrainEvent::Logged`].
    Step {
        step: usize,
        total_steps: usize,
        loss: f64,
        encoder_lr: f64,
        examples_per_second: f64,
    },
    /// A training line went to the metrics log (every 10 steps and at the end of an epoch).
    Logged {
        step: usize,
        total_steps: usize,
        epoch: usize,
        loss: f64,
        encoder_lr: f64,
        examples_per_second: f64,
    },
    /// A validation ran; `saved` when it was the best so far and the model was written.
    Validated {
        step: usize,
        validation: &'a Validation,
        saved: bool,
    },
    /// The loop ended (the outcome follows as the return value).
    Stopped,
}

/// Where training stands; saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    config: TrainConfig,
    epoch: usize,
    /// Optimizer steps already taken within `epoch`.
    step_in_epoch: usize,
    step: usize,
    best: Option<Best>,
    evals_without_improvement: usize,
    finished: bool,
    /// Training loss summed over the steps since the last log line, and their number.
    unlogged_loss: f64,
    unlogged_steps: usize,
}

impl TrainerState {
    fn new(config: TrainConfig) -> Self {
        Self {
            config,
            epoch: 0,
            step_in_epoch: 0,
            step: 0,
            best: None,
            evals_without_improvement: 0,
            finished: false,
            unlogged_loss: 0.0,
            unlogged_steps: 0,
        }
    }
}

struct Trainer<'e> {
    config: TrainConfig,
    device: Device,
    parts: TrainableModel,
    train: Vec<Example>,
    validation: Vec<(Example, EncodedLabels)>,
    state: TrainerState,
    metrics_log: std::fs::File,
    /// The frozen backbone that the distillation term follows (`distill_weight` > 0).
    teacher: Option<Teacher>,
    /// Held (locked) for the whole run.
    run_dir: RunDir,
    events: &'e mut dyn FnMut(TrainEvent),
}

/// Trains as `config` says on `device`, reporting through `events`.
pub fn train(
    config: TrainConfig,
    device: Device,
    options: &TrainOptions,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<Outcome> {
    let mut trainer = Trainer::new(config, device, options, events)?;
    trainer.run(options)
}

/// A seed for one position in training, mixed so that nearby positions are unrelated.
fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut rng = Rng::new(seed);
    let mut out = rng.next_u64();
    for &p in parts {
        out = Rng::new(out ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
    }
    out
}

impl<'e> Trainer<'e> {
    fn new(
        config: TrainConfig,
        device: Device,
        options: &TrainOptions,
        events: &'e mut dyn FnMut(TrainEvent),
    ) -> Result<Self> {
        let start = if options.resume {
            Start::Resume
        } else {
            Start::Fresh {
                force: options.force,
            }
        };
        let mut run_dir = RunDir::open(&config.output_dir, start)?;
        let resumed = if options.resume {
            let dir = run_dir.latest_checkpoint()?;
            let state: TrainerState = read_json(&dir.join(STATE_FILE))?;
            // Where the run lives and what it runs on may change between sessions.
            let saved = TrainConfig {
                output_dir: config.output_dir.clone(),
                device: config.device.clone(),
                ..state.config.clone()
            };
            if saved != config {
                return Err(input_error(format!(
                    "the config differs from the one saved in {} in {}; resume with the same \
                     config",
                    dir.display(),
                    saved.differing_keys(&config).join(", ")
                )));
            }
            Some((state, dir))
        } else {
            None
        };
        let source = match &resumed {
            Some((_, dir)) => ModelSource::Dir(dir.clone()),
            None => ModelSource::resolve(config.backbone.as_deref())
                .map_err(|e| input_error(format!("backbone {e}")))?,
        };
        let mut parts = trainable_model(&config, &source, &device)?;
        let teacher = Teacher::load(&config, &device)?;
        let data = training_data(&config)?;
        for (split, report) in [
            ("training", &data.skipped_train),
            ("validation", &data.skipped_validation),
        ] {
            if report.total() > 0 {
                events(TrainEvent::Skipped { split, report });
            }
        }
        let validation = encode_validation(data.validation, &parts.tokenizer)?;
        let state = match resumed {
            Some((mut state, dir)) => {
                state.config = config.clone();
                let moments = candle_core::safetensors::load(dir.join(OPTIMIZER_FILE), &device)
                    .with_context(|| {
                        format!("cannot read {}", dir.join(OPTIMIZER_FILE).display())
                    })?;
                parts.optimizer.load_state(&moments, state.step)?;
                run_dir.truncate_metrics_log(state.step)?;
                state
            }
            None => TrainerState::new(config.clone()),
        };
        // Everything the run starts from is read: an earlier run's model (with --force) goes
        // now, not when the new run first validates.
        run_dir.remove_earlier_model()?;
        let metrics_log = run_dir.open_metrics_log()?;
        let params = parts.optimizer.params();
        events(TrainEvent::Started {
            train_examples: data.train.len(),
            validation_examples: validation.len(),
            parameters: params.iter().map(|p| p.var.elem_count()).sum(),
            tensors: params.len(),
        });
        Ok(Self {
            config,
            device,
            parts,
            train: data.train,
            validation,
            state,
            metrics_log,
            teacher,
            run_dir,
            events,
        })
    }

    fn examples_per_step(&self) -> usize {
        self.config.batch_size * self.config.gradient_accumulation
    }

    fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.examples_per_step())
    }

    fn total_steps(&self) -> usize {
        let full = self.steps_per_epoch() * self.config.epochs;
        self.config.max_steps.map_or(full, |max| max.min(full))
    }

    fn run(&mut self, options: &TrainOptions) -> Result<Outcome> {
        if self.state.finished {
            (self.events)(TrainEvent::AlreadyFinished);
            return Ok(Outcome::Finished {
                best: self.state.best,
            });
        }
        let steps_per_epoch = self.steps_per_epoch();
        let total_steps = self.total_steps();
        let warmup_steps = (self.config.warmup_fraction * total_steps as f64).round() as usize;
        let mut window = LogWindow::default();

        while self.state.epoch < self.config.epochs {
            let epoch = self.state.epoch;
            let mut order: Vec<usize> = (0..self.train.len()).collect();
            Rng::new(derive_seed(self.config.seed, &[1, epoch as u64])).shuffle(&mut order);
            while self.state.step_in_epoch < steps_per_epoch {
                let start = self.state.step_in_epoch * self.examples_per_step();
                let end = (start + self.examples_per_step()).min(order.len());
                let lr = lr_factor(self.state.step, total_steps, warmup_steps);
                let (loss, grad_norm) = self.step(&order[start..end], epoch, lr)?;
                self.state.step += 1;
                self.state.step_in_epoch += 1;
                window.examples += end - start;
                self.state.unlogged_loss += loss;
                self.state.unlogged_steps += 1;
                let mean_loss = self.state.unlogged_loss / self.state.unlogged_steps as f64;
                let step = self.state.step;
                let last_step = step == total_steps;
                let epoch_done = self.state.step_in_epoch == steps_per_epoch || last_step;
                (self.events)(TrainEvent::Step {
                    step,
                    total_steps,
                    loss: mean_loss,
                    encoder_lr: lr * self.config.encoder_lr,
                    examples_per_second: window.examples_per_second(),
                });
                if step.is_multiple_of(10) || epoch_done {
                    let line = serde_json::json!({
                        "event": "train", "step": step, "epoch": epoch,
                        "loss": mean_loss, "encoder_lr": lr * self.config.encoder_lr,
                        "grad_norm": grad_norm, "examples_per_second": window.examples_per_second(),
                    });
                    append_line(&mut self.metrics_log, &line)?;
                    (self.events)(TrainEvent::Logged {
                        step,
                        total_steps,
                        epoch,
                        loss: mean_loss,
                        encoder_lr: lr * self.config.encoder_lr,
                        examples_per_second: window.examples_per_second(),
                    });
                    window = LogWindow::default();
                    self.state.unlogged_loss = 0.0;
                    self.state.unlogged_steps = 0;
                }
                let mut stop_early = false;
                if step.is_multiple_of(self.config.eval_every) || epoch_done {
                    stop_early = self.validate()?;
                }
                let interrupted = options.interrupted.load(Ordering::SeqCst);
                let paused = options.stop_after_steps == Some(step);
                if epoch_done {
                    self.state.epoch += 1;
                    self.state.step_in_epoch = 0;
                }
                if step.is_multiple_of(self.config.save_every)
                    || epoch_done
                    || stop_early
                    || interrupted
                    || paused
                {
                    self.state.finished = stop_early || last_step;
                    self.save_checkpoint()?;
                }
                if stop_early {
                    (self.events)(TrainEvent::Stopped);
                    return Ok(Outcome::EarlyStopped {
                        best: self.state.best,
                    });
                }
                if interrupted {
                    (self.events)(TrainEvent::Stopped);
                    return Ok(Outcome::Interrupted { step });
                }
                if paused {
                    (self.events)(TrainEvent::Stopped);
                    return Ok(Outcome::Paused { step });
                }
                if last_step {
                    (self.events)(TrainEvent::Stopped);
                    return Ok(Outcome::Finished {
                        best: self.state.best,
                    });
                }
                if epoch_done {
                    break;
                }
            }
        }
        (self.events)(TrainEvent::Stopped);
        Ok(Outcome::Finished {
            best: self.state.best,
        })
    }

    /// One optimizer step over `examples` (indices into the training set), split into
    /// `gradient_accumulation` micro-batches. Returns the mean loss and the gradient norm.
    fn step(&mut self, examples: &[usize], epoch: usize, lr: f64) -> Result<(f64, f64)> {
        let params: Vec<Tensor> = self
            .parts
            .optimizer
            .params()
            .iter()
            .map(|p| p.var.as_tensor().clone())
            .collect();
        let mut grads: Vec<Option<Tensor>> = vec![None; params.len()];
        let micro_batches: Vec<&[usize]> = examples.chunks(self.config.batch_size).collect();
        let mut total_loss = 0.0;
        for (micro, indices) in micro_batches.iter().enumerate() {
            let extra_negatives = in_batch_negatives(
                &self.train,
                indices,
                self.config.in_batch_negatives,
                derive_seed(self.config.seed, &[4, epoch as u64]),
            );
            // (example index, sequence)
            let mut sequences = Vec::new();
            for (&i, extra) in indices.iter().zip(&extra_negatives) {
                let mut rng = Rng::new(derive_seed(self.config.seed, &[2, epoch as u64, i as u64]));
                let example_sequences = training_sequences(
                    &self.train[i],
                    extra,
                    &self.parts.tokenizer,
                    self.config.max_labels_per_example,
                    &mut rng,
                )
                .with_context(|| format!("training example {}", i + 1))?;
                sequences.extend(example_sequences.into_iter().map(|s| (i, s)));
            }
            let seqs: Vec<&SequenceEncoding> = sequences.iter().map(|(_, s)| &s.encoding).collect();
            let batch = Batch::collate(&seqs, self.parts.tokenizer.pad_id(), &self.device)?;
            let mut targets = vec![0f32; seqs.len() * batch.max_labels];
            for (row, (_, s)) in sequences.iter().enumerate() {
                targets[row * batch.max_labels..row * batch.max_labels + s.targets.len()]
                    .copy_from_slice(&s.targets);
            }
            let targets = Tensor::from_vec(targets, (seqs.len(), batch.max_labels), &self.device)?;
            let mut dropout_rng = Rng::new(derive_seed(
                self.config.seed,
                &[3, self.state.step as u64, micro as u64],
            ));
            let step = self.parts.model.forward_train(&batch, &mut dropout_rng)?;
            let mut loss =
                training_loss(self.config.loss, &step.logits, &targets, &batch.label_mask)?;
            if let Some(teacher) = &mut self.teacher {
                let rows: Vec<Row> = sequences
                    .iter()
                    .map(|(i, s)| Row {
                        text: &self.train[*i].text,
                        labels: &s.labels,
                    })
                    .collect();
                let teacher_targets = teacher.targets(&rows, batch.max_labels, &self.device)?;
                let distill =
                    masked_soft_cross_entropy(&step.logits, &teacher_targets, &batch.label_mask)?;
                loss = (loss + (distill * self.config.distill_weight)?)?;
            }
            let weight = indices.len() as f64 / examples.len() as f64;
            total_loss += loss.to_scalar::<f32>()? as f64 * weight;
            let backward = step.backward(&(loss * weight)?)?;
            for (g, p) in grads.iter_mut().zip(&params) {
                if let Some(d) = backward.get(p) {
                    // Detached: a gradient still linked to this step's graph would keep the
                    // whole graph alive through the optimizer's moments.
                    let d = d.detach();
                    *g = Some(match g.take() {
                        Some(sum) => (sum + d)?,
                        None => d,
                    });
                }
            }
        }
        let grads: Vec<Tensor> = grads
            .into_iter()
            .zip(&params)
            .map(|(g, p)| g.map_or_else(|| p.zeros_like(), Ok))
            .collect::<candle_core::Result<_>>()?;
        let (grad_norm, grad_scale) =
            clip_scale(&grads, self.config.max_grad_norm.unwrap_or(f64::INFINITY))?;
        self.parts.optimizer.step(&grads, lr, grad_scale)?;
        Ok((total_loss, grad_norm))
    }

    /// Validates, logs, keeps the best model; returns true when early stopping triggers.
    fn validate(&mut self) -> Result<bool> {
        let validation = validate(
            &self.parts.model,
            &self.parts.tokenizer,
            &self.device,
            &self.validation,
            self.config.batch_size,
        )?;
        let metric = self.config.early_stopping_metric;
        let score = validation.score(metric);
        let improved = self.state.best.is_none_or(|b| score > b.metric);
        let mut line = serde_json::to_value(&validation)?;
        if let Some(object) = line.as_object_mut() {
            object.insert("event".into(), "validation".into());
            object.insert("step".into(), self.state.step.into());
            object.insert("improved".into(), improved.into());
        }
        append_line(&mut self.metrics_log, &line)?;
        if improved {
            self.state.best = Some(Best {
                step: self.state.step,
                metric: score,
            });
            self.state.evals_without_improvement = 0;
            // Said only once it is true: a failed save (a full disk) is reported instead.
            self.save_model(&self.config.output_dir)?;
        } else {
            self.state.evals_without_improvement += 1;
        }
        (self.events)(TrainEvent::Validated {
            step: self.state.step,
            validation: &validation,
            saved: improved,
        });
        Ok(
            !improved
                && self.state.evals_without_improvement >= self.config.early_stopping_patience,
        )
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        checkpoint::save(
            dir,
            &self.parts.encoder_config,
            &self.parts.model_config,
            &self.parts.tensors(),
            self.parts.tokenizer.inner(),
        )
    }

    fn save_checkpoint(&self) -> Result<()> {
        self.run_dir.save_checkpoint(|tmp| {
            self.save_model(tmp)?;
            candle_core::safetensors::save(&self.parts.optimizer.state(), tmp.join(OPTIMIZER_FILE))
                .with_context(|| format!("cannot write {}", tmp.join(OPTIMIZER_FILE).display()))?;
            std::fs::write(
                tmp.join(STATE_FILE),
                serde_json::to_string_pretty(&self.state)?,
            )
            .with_context(|| format!("cannot write {}", tmp.join(STATE_FILE).display()))
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input_error(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| input_error(format!("{}: {e}", path.display())))
}

/// For each example of a micro-batch (`indices` into `train`), up to `n` negatives drawn from
/// the other examples' positives: labels the example does not name itself, positive or
/// negative ([`label_key`]). Seeded per micro-batch; empty lists when `n` is 0.
fn in_batch_negatives(
    train: &[Example],
    indices: &[usize],
    n: usize,
    seed: u64,
) -> Vec<Vec<String>> {
    if n == 0 {
        return vec![Vec::new(); indices.len()];
    }
    let mut rng = Rng::new(seed ^ indices.first().map_or(0, |&i| i as u64));
    indices
        .iter()
        .map(|&i| {
            let own: HashSet<String> = train[i]
                .labels
                .iter()
                .chain(&train[i].not_labels)
                .map(|l| label_key(l))
                .collect();
            let mut seen = HashSet::new();
            let mut candidates: Vec<&String> = indices
                .iter()
                .filter(|&&j| j != i)
                .flat_map(|&j| &train[j].labels)
                .filter(|l| {
                    let key = label_key(l);
                    !own.contains(&key) && seen.insert(key)
                })
                .collect();
            rng.shuffle(&mut candidates);
            candidates.into_iter().take(n).cloned().collect()
        })
        .collect()
}

/// One packed sequence of a training example: its labels (in slot order) and their targets.
struct TrainingSequence {
    encoding: SequenceEncoding,
    targets: Vec<f32>,
    labels: Vec<String>,
}

/// The training sequences of one example: labels shuffled and subsampled, then packed; labels
/// that do not fit in one sequence go to further sequences with the same text.
fn training_sequences(
    example: &Example,
    extra_negatives: &[String],
    tokenizer: &LabelTokenizer,
    max_labels: usize,
    rng: &mut Rng,
) -> Result<Vec<TrainingSequence>> {
    let mut targets = example.sample_targets(max_labels, rng);
    if !extra_negatives.is_empty() {
        targets.extend(extra_negatives.iter().map(|l| (l.clone(), false)));
        rng.shuffle(&mut targets);
    }
    let names: Vec<String> = targets.iter().map(|(l, _)| l.clone()).collect();
    let encoding = tokenizer.encode(&example.text, &names)?;
    Ok(encoding
        .chunks
        .into_iter()
        .map(|chunk| TrainingSequence {
            targets: chunk
                .label_indices
                .iter()
                .map(|&i| if targets[i].1 { 1.0 } else { 0.0 })
                .collect(),
            labels: chunk
                .label_indices
                .iter()
                .map(|&i| names[i].clone())
                .collect(),
            encoding: chunk,
        })
        .collect())
}

/// Throughput since the last log line.
struct LogWindow {
    examples: usize,
    started: Instant,
}

impl Default for LogWindow {
    fn default() -> Self {
        Self {
            examples: 0,
            started: Instant::now(),
        }
    }
}

impl LogWindow {
    fn examples_per_second(&self) -> f64 {
        self.examples as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::example;

    /// Negatives come only from the other examples' positives, never a label the example names
    /// itself (by `label_key`), at most `n`, no repeats, the same for the same seed.
    #[test]
    fn in_batch_negatives_come_from_the_others_positives() {
        let train = vec![
            example(&["sports"], &["news"]),
            example(&["Sports", "cooking"], &["bank"]),
            example(&["news", "travel"], &[]),
            example(&["weather"], &[]),
        ];
        let indices = [0, 1, 2, 3];
        assert!(in_batch_negatives(&train, &indices, 0, 7)
            .iter()
            .all(Vec::is_empty));
        let drawn = in_batch_negatives(&train, &indices, 10, 7);
        let sorted = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v
        };
        assert_eq!(sorted(&drawn[0]), vec!["cooking", "travel", "weather"]);
        assert_eq!(sorted(&drawn[1]), vec!["news", "travel", "weather"]);
        assert_eq!(sorted(&drawn[2]), vec!["cooking", "sports", "weather"]);
        assert_eq!(
            sorted(&drawn[3]),
            vec!["cooking", "news", "sports", "travel"]
        );
        let two = in_batch_negatives(&train, &indices, 2, 7);
        assert!(two.iter().all(|v| v.len() == 2));
        assert_eq!(two, in_batch_negatives(&train, &indices, 2, 7));
        for (negatives, &i) in two.iter().zip(&indices) {
            for n in negatives {
                assert!(!train[i].labels.iter().any(|l| label_key(l) == label_key(n)));
            }
        }
    }
}
