//! The training loop. Everything random is derived from the config's seed and the position in
//! training (epoch, example, step), so a resumed run replays exactly what an uninterrupted run
//! would have done: the checkpoint stores weights, optimizer moments and the position.
//!
//! Output directory:
//!
//! ```text
//! OUTPUT/                 the best model so far (config.json, model.safetensors, tokenizer.json)
//! OUTPUT/metrics.jsonl    one line per log and per validation
//! OUTPUT/checkpoint/      the latest resumable state: model files, optimizer.safetensors,
//!                         trainer_state.json (written to checkpoint.tmp, then swapped in)
//! ```

use crate::batch::Batch;
use crate::classifier;
use crate::config::{StoppingMetric, TrainConfig};
use crate::data::example::{read_examples, split_validation, Example};
use crate::device;
use crate::error::input_error;
use crate::eval::metrics::{binary_metrics, BinaryMetrics, ScoredPair};
use crate::model::checkpoint;
use crate::model::config::{GliznetConfig, FORMAT_VERSION};
use crate::model::gliznet::GliZNet;
use crate::model::head;
use crate::model::params::Params;
use crate::rng::Rng;
use crate::scoring::sigmoid;
use crate::tokenizer::{EncodedLabels, LabelTokenizer, SequenceEncoding};
use crate::train::loss::{bce_with_logit, training_loss};
use crate::train::optim::{clip_scale, lr_factor, AdamW, AdamWConfig, Param};
use crate::train::run_dir::{RunDir, Start};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const METRICS_FILE: &str = "metrics.jsonl";
const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

pub struct TrainOptions {
    /// Continue from `OUTPUT/checkpoint`.
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

#[derive(Serialize)]
struct Validation {
    loss: f64,
    #[serde(flatten)]
    metrics: BinaryMetrics,
}

impl Validation {
    /// The early-stopping metric, oriented so that larger is better.
    fn score(&self, metric: StoppingMetric) -> f64 {
        match metric {
            StoppingMetric::Loss => -self.loss,
            StoppingMetric::Accuracy => self.metrics.accuracy,
            StoppingMetric::MicroF1 => self.metrics.micro_f1,
            StoppingMetric::MacroF1 => self.metrics.macro_f1,
            StoppingMetric::AucRoc => self.metrics.auc_roc.unwrap_or(0.5),
        }
    }
}

struct Trainer {
    config: TrainConfig,
    device: Device,
    model: GliZNet,
    tokenizer: LabelTokenizer,
    optimizer: AdamW,
    /// Tensors saved with the model but not trained (e.g. the pooler).
    extras: HashMap<String, Tensor>,
    encoder_config: serde_json::Value,
    model_config: GliznetConfig,
    train: Vec<Example>,
    validation: Vec<(Example, EncodedLabels)>,
    state: TrainerState,
    metrics_log: std::fs::File,
    /// Held (locked) for the whole run.
    _run_dir: RunDir,
}

pub fn train(config: TrainConfig, options: &TrainOptions) -> Result<Outcome> {
    let mut trainer = Trainer::new(config, options.resume, options.force)?;
    trainer.run(options)
}

fn is_trainable(name: &str) -> bool {
    name.starts_with("embeddings.") || name.starts_with("encoder.") || name.starts_with("gliznet.")
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

impl Trainer {
    fn new(config: TrainConfig, resume: bool, force: bool) -> Result<Self> {
        let start = if resume {
            Start::Resume
        } else {
            Start::Fresh { force }
        };
        let run_dir = RunDir::open(&config.output_dir, start)?;
        let (config, state, checkpoint) = if resume {
            let dir = existing_checkpoint(&config.output_dir)?;
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
            (config, Some(state), Some(dir))
        } else {
            (config, None, None)
        };

        let device = device::choose(&config.device)?;
        let source = match &checkpoint {
            Some(dir) => Some(
                dir.to_str()
                    .context("checkpoint path is not UTF-8")?
                    .to_string(),
            ),
            None => config.backbone.clone(),
        };
        let files = checkpoint::open(source.as_deref(), &device)?;
        let mut bert = files.bert;
        let encoder_config = files.encoder_config;
        if let Some(p) = config.dropout {
            bert.hidden_dropout_prob = p;
            bert.attention_probs_dropout_prob = p;
        }
        let model_config = GliznetConfig {
            format_version: FORMAT_VERSION,
            similarity: config.similarity,
            projection_dim: config.projection_dim,
            max_length: config.max_length,
            max_label_tokens: config.max_label_tokens,
            min_text_tokens: config.min_text_tokens,
            label_separator: "[SEP]".into(),
            readout: config.readout,
            shared_label_positions: config.shared_label_positions,
            threshold: None,
        };
        model_config
            .validate(bert.max_position_embeddings)
            .map_err(|e| input_error(format!("config: {e}")))?;
        let tokenizer = LabelTokenizer::new(files.tokenizer, model_config.limits())?;
        let loaded = files.params;
        let fresh_head = head::init_params(
            &model_config.head_shape(bert.hidden_size),
            config.seed,
            &device,
        )?;
        let mut tensors: HashMap<String, Tensor> = loaded
            .into_tensors()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("gliznet.") || fresh_head.contains_key(name))
            .collect();
        for (name, init) in fresh_head {
            let reusable = tensors
                .get(&name)
                .is_some_and(|t| t.shape() == init.shape());
            if !reusable {
                tensors.insert(name, init);
            }
        }
        let (mut trainable, extras): (Vec<_>, Vec<_>) = tensors
            .into_iter()
            .partition(|(name, _)| is_trainable(name));
        let extras: HashMap<String, Tensor> = extras.into_iter().collect();
        trainable.sort_by(|a, b| a.0.cmp(&b.0));
        let params: Vec<Param> = trainable
            .into_iter()
            .map(|(name, t)| {
                Ok(Param {
                    name,
                    var: Var::from_tensor(&t)?,
                })
            })
            .collect::<Result<_>>()?;
        let model_params = Params::new(
            params
                .iter()
                .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
                .chain(extras.clone())
                .collect(),
            files.name.clone(),
        );
        let model = GliZNet::load(&model_params, &bert, &model_config)?;
        let mut optimizer = AdamW::new(
            params,
            AdamWConfig {
                encoder_lr: config.encoder_lr,
                head_lr: config.head_lr,
                beta1: config.adam_beta1,
                beta2: config.adam_beta2,
                eps: config.adam_eps,
                weight_decay: config.weight_decay,
            },
        )?;

        let (train, validation) = load_data(&config)?;
        let validation = validation
            .into_iter()
            .map(|example| {
                let names: Vec<String> = example
                    .targets()
                    .iter()
                    .map(|(l, _)| l.to_string())
                    .collect();
                let encoded = tokenizer.encode_labels(&names)?;
                Ok((example, encoded))
            })
            .collect::<Result<Vec<_>>>()
            .context("validation set")?;

        let state = match (state, &checkpoint) {
            (Some(mut state), Some(source_dir)) => {
                state.config = config.clone();
                let moments =
                    candle_core::safetensors::load(source_dir.join(OPTIMIZER_FILE), &device)
                        .with_context(|| {
                            format!("cannot read {}", source_dir.join(OPTIMIZER_FILE).display())
                        })?;
                optimizer.load_state(&moments, state.step)?;
                truncate_metrics_log(&config.output_dir.join(METRICS_FILE), state.step)?;
                state
            }
            _ => TrainerState {
                config: config.clone(),
                epoch: 0,
                step_in_epoch: 0,
                step: 0,
                best: None,
                evals_without_improvement: 0,
                finished: false,
                unlogged_loss: 0.0,
                unlogged_steps: 0,
            },
        };
        std::fs::create_dir_all(&config.output_dir)
            .with_context(|| format!("cannot create {}", config.output_dir.display()))?;
        let metrics_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.output_dir.join(METRICS_FILE))
            .with_context(|| {
                format!(
                    "cannot open {}",
                    config.output_dir.join(METRICS_FILE).display()
                )
            })?;
        eprintln!(
            "training on {} examples, validating on {}; {} parameters in {} tensors",
            train.len(),
            validation.len(),
            optimizer
                .params()
                .iter()
                .map(|p| p.var.elem_count())
                .sum::<usize>(),
            optimizer.params().len()
        );
        Ok(Self {
            config,
            device,
            model,
            tokenizer,
            optimizer,
            extras,
            encoder_config,
            model_config,
            train,
            validation,
            state,
            metrics_log,
            _run_dir: run_dir,
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
            eprintln!("this run already finished; nothing to resume");
            return Ok(Outcome::Finished {
                best: self.state.best,
            });
        }
        let steps_per_epoch = self.steps_per_epoch();
        let total_steps = self.total_steps();
        let warmup_steps = (self.config.warmup_fraction * total_steps as f64).round() as usize;
        let progress = Progress::new(total_steps, self.state.step);
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
                progress.update(
                    step,
                    mean_loss,
                    window.examples_per_second(),
                    lr * self.config.encoder_lr,
                );
                if step.is_multiple_of(10) || epoch_done {
                    let line = serde_json::json!({
                        "event": "train", "step": step, "epoch": epoch,
                        "loss": mean_loss, "encoder_lr": lr * self.config.encoder_lr,
                        "grad_norm": grad_norm, "examples_per_second": window.examples_per_second(),
                    });
                    self.log(&line)?;
                    progress.log(&format!(
                        "step {step}/{total_steps} epoch {epoch} loss {mean_loss:.4} lr {:.2e} {:.1} ex/s",
                        lr * self.config.encoder_lr,
                        window.examples_per_second()
                    ));
                    window = LogWindow::default();
                    self.state.unlogged_loss = 0.0;
                    self.state.unlogged_steps = 0;
                }
                let mut stop_early = false;
                if step.is_multiple_of(self.config.eval_every) || epoch_done {
                    stop_early = self.validate(&progress)?;
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
                    progress.finish();
                    return Ok(Outcome::EarlyStopped {
                        best: self.state.best,
                    });
                }
                if interrupted {
                    progress.finish();
                    return Ok(Outcome::Interrupted { step });
                }
                if paused {
                    progress.finish();
                    return Ok(Outcome::Paused { step });
                }
                if last_step {
                    progress.finish();
                    return Ok(Outcome::Finished {
                        best: self.state.best,
                    });
                }
                if epoch_done {
                    break;
                }
            }
        }
        progress.finish();
        Ok(Outcome::Finished {
            best: self.state.best,
        })
    }

    /// One optimizer step over `examples` (indices into the training set), split into
    /// `gradient_accumulation` micro-batches. Returns the mean loss and the gradient norm.
    fn step(&mut self, examples: &[usize], epoch: usize, lr: f64) -> Result<(f64, f64)> {
        let params: Vec<Tensor> = self
            .optimizer
            .params()
            .iter()
            .map(|p| p.var.as_tensor().clone())
            .collect();
        let mut grads: Vec<Option<Tensor>> = vec![None; params.len()];
        let micro_batches: Vec<&[usize]> = examples.chunks(self.config.batch_size).collect();
        let mut total_loss = 0.0;
        for (micro, indices) in micro_batches.iter().enumerate() {
            let mut sequences = Vec::new();
            for &i in indices.iter() {
                let mut rng = Rng::new(derive_seed(self.config.seed, &[2, epoch as u64, i as u64]));
                sequences.extend(
                    training_sequences(
                        &self.train[i],
                        &self.tokenizer,
                        self.config.max_labels_per_example,
                        &mut rng,
                    )
                    .with_context(|| format!("training example {}", i + 1))?,
                );
            }
            let seqs: Vec<&SequenceEncoding> = sequences.iter().map(|(s, _)| s).collect();
            let batch = Batch::collate(&seqs, self.tokenizer.pad_id(), &self.device)?;
            let mut targets = vec![0f32; seqs.len() * batch.max_labels];
            for (row, (_, t)) in sequences.iter().enumerate() {
                targets[row * batch.max_labels..row * batch.max_labels + t.len()]
                    .copy_from_slice(t);
            }
            let targets = Tensor::from_vec(targets, (seqs.len(), batch.max_labels), &self.device)?;
            let mut dropout_rng = Rng::new(derive_seed(
                self.config.seed,
                &[3, self.state.step as u64, micro as u64],
            ));
            let logits = self.model.forward(&batch, Some(&mut dropout_rng))?;
            let loss = training_loss(self.config.loss, &logits, &targets, &batch.label_mask)?;
            let weight = indices.len() as f64 / examples.len() as f64;
            total_loss += loss.to_scalar::<f32>()? as f64 * weight;
            let backward = self.model.backward(&(loss * weight)?)?;
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
        self.optimizer.step(&grads, lr, grad_scale)?;
        Ok((total_loss, grad_norm))
    }

    /// Validates, logs, keeps the best model; returns true when early stopping triggers.
    fn validate(&mut self, progress: &Progress) -> Result<bool> {
        let validation = evaluate(
            &self.model,
            &self.tokenizer,
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
        self.log(&line)?;
        let summary =
            format!(
            "validation at step {}: loss {:.4} accuracy {:.4} micro-F1 {:.4} macro-F1 {:.4} AUC {}",
            self.state.step,
            validation.loss,
            validation.metrics.accuracy,
            validation.metrics.micro_f1,
            validation.metrics.macro_f1,
            validation.metrics.auc_roc.map_or("n/a".into(), |a| format!("{a:.4}")),
        );
        if improved {
            self.state.best = Some(Best {
                step: self.state.step,
                metric: score,
            });
            self.state.evals_without_improvement = 0;
            // Said only once it is true: a failed save (a full disk) is reported instead.
            self.save_model(&self.config.output_dir)?;
            progress.log(&format!("{summary} (best so far, saved)"));
            Ok(false)
        } else {
            progress.log(&summary);
            self.state.evals_without_improvement += 1;
            Ok(self.state.evals_without_improvement >= self.config.early_stopping_patience)
        }
    }

    fn model_tensors(&self) -> HashMap<String, Tensor> {
        let mut tensors = self.extras.clone();
        for p in self.optimizer.params() {
            tensors.insert(p.name.clone(), p.var.as_tensor().detach());
        }
        tensors
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        checkpoint::save(
            dir,
            &self.encoder_config,
            &self.model_config,
            &self.model_tensors(),
            self.tokenizer.inner(),
        )
    }

    /// Writes the checkpoint to `checkpoint.tmp`, then swaps it in, so that a crash at any
    /// moment leaves a complete checkpoint (`checkpoint`, or `checkpoint.old` mid-swap).
    fn save_checkpoint(&self) -> Result<()> {
        let out = &self.config.output_dir;
        let tmp = out.join(format!("{CHECKPOINT_DIR}.tmp"));
        let old = out.join(format!("{CHECKPOINT_DIR}.old"));
        let current = out.join(CHECKPOINT_DIR);
        let removed = |dir: &Path| -> Result<()> {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            Ok(())
        };
        removed(&tmp)?;
        self.save_model(&tmp)?;
        candle_core::safetensors::save(&self.optimizer.state(), tmp.join(OPTIMIZER_FILE))
            .with_context(|| format!("cannot write {}", tmp.join(OPTIMIZER_FILE).display()))?;
        std::fs::write(
            tmp.join(STATE_FILE),
            serde_json::to_string_pretty(&self.state)?,
        )
        .with_context(|| format!("cannot write {}", tmp.join(STATE_FILE).display()))?;
        sync_dir(&tmp).with_context(|| format!("cannot sync {}", tmp.display()))?;
        if current.exists() {
            removed(&old)?;
            std::fs::rename(&current, &old).with_context(|| {
                format!("cannot move {} to {}", current.display(), old.display())
            })?;
        }
        std::fs::rename(&tmp, &current)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), current.display()))?;
        removed(&old)
    }

    fn log(&mut self, line: &serde_json::Value) -> Result<()> {
        writeln!(self.metrics_log, "{line}")?;
        self.metrics_log.flush()?;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    Ok(())
}

/// The checkpoint to resume from: `checkpoint`, or `checkpoint.old` if a swap was cut short.
fn existing_checkpoint(output_dir: &Path) -> Result<PathBuf> {
    for name in [CHECKPOINT_DIR.to_string(), format!("{CHECKPOINT_DIR}.old")] {
        let dir = output_dir.join(name);
        if dir.join(STATE_FILE).is_file() {
            return Ok(dir);
        }
    }
    Err(input_error(format!(
        "--resume: {} has no checkpoint to resume from",
        output_dir.display()
    )))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input_error(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| input_error(format!("{}: {e}", path.display())))
}

/// Drops log lines written after the checkpoint being resumed, so the log reads as one run.
fn truncate_metrics_log(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    checkpoint::write_atomically(path, |tmp| Ok(std::fs::write(tmp, kept)?))
}

fn load_data(config: &TrainConfig) -> Result<(Vec<Example>, Vec<Example>)> {
    let (train, skipped) = read_examples(&config.train_file, config.invalid_examples)?;
    if skipped.total() > 0 {
        eprintln!(
            "skipped {} invalid training examples: {}",
            skipped.total(),
            skipped.summary()
        );
    }
    match &config.validation_file {
        Some(path) => {
            let (validation, skipped) = read_examples(path, config.invalid_examples)?;
            if skipped.total() > 0 {
                eprintln!(
                    "skipped {} invalid validation examples: {}",
                    skipped.total(),
                    skipped.summary()
                );
            }
            Ok((train, validation))
        }
        None => {
            if train.len() < 2 {
                return Err(input_error(
                    "need at least 2 examples to split off a validation set",
                ));
            }
            Ok(split_validation(
                train,
                config.validation_fraction,
                config.seed,
            ))
        }
    }
}

/// The training sequences of one example: labels shuffled and subsampled, then packed; labels
/// that do not fit in one sequence go to further sequences with the same text.
fn training_sequences(
    example: &Example,
    tokenizer: &LabelTokenizer,
    max_labels: usize,
    rng: &mut Rng,
) -> Result<Vec<(SequenceEncoding, Vec<f32>)>> {
    let targets = example.sample_targets(max_labels, rng);
    let names: Vec<String> = targets.iter().map(|(l, _)| l.clone()).collect();
    let encoding = tokenizer.encode(&example.text, &names)?;
    Ok(encoding
        .chunks
        .into_iter()
        .map(|chunk| {
            let t = chunk
                .label_indices
                .iter()
                .map(|&i| if targets[i].1 { 1.0 } else { 0.0 })
                .collect();
            (chunk, t)
        })
        .collect())
}

/// Loss and metrics of a model on examples with all their labels (no subsampling).
fn evaluate(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    examples: &[(Example, EncodedLabels)],
    batch_size: usize,
) -> Result<Validation> {
    let items: Vec<(&str, &EncodedLabels)> =
        examples.iter().map(|(e, l)| (e.text.as_str(), l)).collect();
    let results = classifier::logits(model, tokenizer, device, &items, batch_size)?;
    let mut pairs = Vec::new();
    let mut loss = 0.0;
    for ((example, _), result) in examples.iter().zip(results) {
        let targets = example.targets();
        let mut example_loss = 0.0;
        for ((label, positive), &logit) in targets.iter().zip(&result.logits) {
            example_loss += bce_with_logit(logit, *positive);
            pairs.push(ScoredPair {
                label: label.to_string(),
                score: sigmoid(logit),
                positive: *positive,
            });
        }
        loss += example_loss / targets.len() as f64;
    }
    Ok(Validation {
        loss: loss / examples.len().max(1) as f64,
        metrics: binary_metrics(&pairs, 0.5),
    })
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

/// A progress bar on a terminal; plain log lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(total_steps: usize, done: usize) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::new(total_steps as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed} < {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(done as u64);
        Self { bar: Some(bar) }
    }

    fn update(&self, step: usize, loss: f64, examples_per_second: f64, lr: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!(
                "loss {loss:.4} lr {lr:.2e} {examples_per_second:.1} ex/s"
            ));
        }
    }

    fn log(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
