//! The training loop. Everything random is derived from the config's seed and the position in
//! training (epoch, example, step), so a resumed run replays exactly what an uninterrupted run
//! would have done: the checkpoint stores weights, optimizer moments and the position. The
//! loop writes its output directory (see [`crate::train::run_dir`]) and tells the caller how
//! it goes through [`TrainEvent`]s; it prints nothing.

use crate::config::TrainConfig;
use crate::data::example::{Example, SkipReport};
use crate::error::input_error;
use crate::model::checkpoint::ModelSource;
use crate::model::on_kernel_threads;
use crate::rng::Rng;
use crate::tokenizer::EncodedLabels;
use crate::train::distill::{Row, Teacher};
use crate::train::loss::{masked_soft_cross_entropy, training_loss};
use crate::train::micro_batch::{derive_seed, MicroBatch};
use crate::train::optim::{clip_scale, lr_factor};
use crate::train::run_dir::{append_line, RunDir, Start};
use crate::train::setup::{encode_validation, trainable_model, training_data, TrainableModel};
use crate::train::state::{load_optimizer, save_model, Best, TrainerState};
use crate::train::validation::{validate, Validation};
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

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
    events: &'e mut (dyn FnMut(TrainEvent) + Send),
}

/// Trains as `config` says on `device`, reporting through `events`.
pub fn train(
    config: TrainConfig,
    device: Device,
    options: &TrainOptions,
    events: &mut (dyn FnMut(TrainEvent) + Send),
) -> Result<Outcome> {
    on_kernel_threads(&device.clone(), || {
        Trainer::new(config, device, options, events)?.run(options)
    })
}

impl<'e> Trainer<'e> {
    fn new(
        config: TrainConfig,
        device: Device,
        options: &TrainOptions,
        events: &'e mut (dyn FnMut(TrainEvent) + Send),
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
            Some(TrainerState::resume(&run_dir, &config)?)
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
                load_optimizer(&mut parts, &dir, state.step, &device)?;
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
                    self.state.save_checkpoint(&self.run_dir, &self.parts)?;
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
            let MicroBatch {
                sequences,
                batch,
                targets,
            } = MicroBatch::new(
                &self.train,
                indices,
                epoch,
                &self.parts.tokenizer,
                &self.config,
                &self.device,
            )?;
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
            save_model(&self.parts, &self.config.output_dir)?;
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
