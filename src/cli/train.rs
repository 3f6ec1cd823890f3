//! `gliznet train`: fine-tune a GliZNet model from a JSON config.

use anyhow::{Context, Result};
use clap::Args;
use gliznet::config::{ConfigError, Origin, TrainConfig};
use gliznet::error::input_error;
use gliznet::train::run_dir::{Refusal, CHECKPOINT_DIR};
use gliznet::train::trainer::{self, Outcome, TrainEvent, TrainOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    gliznet train --config configs/smoke.json\n  \
    gliznet train --config configs/minilm-bilinear.json --set lr=2e-5 --set epochs=2 --output runs/a\n  \
    gliznet train --config configs/minilm-bilinear.json --output runs/a --resume\n\n\
    The output directory holds the best model so far (load it with predict --model DIR),\n\
    metrics.jsonl, and checkpoint/ for --resume. Ctrl-C saves a checkpoint and exits (130).")]
pub struct TrainArgs {
    /// Training config (JSON); see configs/, and --print-config for every key
    #[arg(long, value_name = "FILE", required_unless_present = "print_config")]
    config: Option<PathBuf>,

    /// Print every config key with its default value as JSON, and exit (docs/config.md
    /// says what each key means)
    #[arg(long, exclusive = true)]
    print_config: bool,

    /// Override a config key (repeatable): --set lr=2e-5 --set similarity=cosine
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,

    /// Output directory (overrides the config's output_dir)
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,

    /// auto, cpu, cuda or cuda:N (overrides the config's device)
    #[arg(long)]
    device: Option<String>,

    /// Continue the run in the output directory from its last checkpoint
    #[arg(long)]
    resume: bool,

    /// Start a new run in a non-empty output directory: an earlier run's checkpoint, metrics
    /// and model are deleted, files of the names a run writes are replaced
    #[arg(long, conflicts_with = "resume")]
    force: bool,

    /// Save a checkpoint and stop after this optimizer step (continue later with --resume)
    #[arg(long, value_name = "STEP")]
    stop_after_steps: Option<usize>,
}

/// Returned when Ctrl-C stopped training (after saving a checkpoint); exit code 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

pub fn run(args: TrainArgs) -> Result<()> {
    let Some(config_path) = args.config.clone() else {
        // Without --config clap has made sure --print-config was given.
        let mut stdout = std::io::stdout().lock();
        let json = serde_json::to_string_pretty(&TrainConfig::default())? + "\n";
        stdout
            .write_all(json.as_bytes())
            .and_then(|()| stdout.flush())
            .context("cannot write to standard output")?;
        return Ok(());
    };
    let config = load_config(&args, &config_path)?;
    if args.stop_after_steps == Some(0) {
        return Err(input_error("--stop-after-steps must be at least 1"));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupt: saving a checkpoint after the current step (Ctrl-C again to quit now)"
        );
    })?;
    let output_dir = config.output_dir.clone();
    let options = TrainOptions {
        resume: args.resume,
        stop_after_steps: args.stop_after_steps,
        interrupted,
        force: args.force,
    };
    let resume_hint = format!("resume with: {}", resume_command(&args, &output_dir));
    let device_place = match &args.device {
        Some(_) => "--device".to_string(),
        None => format!("{}: device", config_path.display()),
    };
    let device = super::open_device(&config.device, &device_place)?;
    let mut progress = Progress::default();
    let outcome = trainer::train(config, device, &options, &mut |event| progress.show(event))
        .map_err(|err| match err.downcast_ref::<Refusal>() {
            Some(refusal @ Refusal::HoldsRun { .. }) => input_error(format!(
                "output directory {refusal}; pass --resume to continue it, --force to start over (its \
                 checkpoint, metrics and model are deleted), or choose another output directory"
            )),
            Some(refusal @ Refusal::NotEmpty { .. }) => input_error(format!(
                "output directory {refusal}; choose another output directory, or pass --force to \
                 write the run into it (files of the same names are replaced)"
            )),
            Some(refusal @ Refusal::NoCheckpoint { .. }) => {
                input_error(format!("--resume: {refusal}"))
            }
            Some(refusal) => input_error(format!("output directory {refusal}")),
            None => err,
        })?;
    match outcome {
        Outcome::Finished { best } | Outcome::EarlyStopped { best } => {
            match best {
                Some(best) => eprintln!(
                    "done: best model (step {}, validation score {:.4}) in {}",
                    best.step,
                    best.metric,
                    output_dir.display()
                ),
                None => eprintln!(
                    "done: no validation ran; the last checkpoint is in {}",
                    output_dir.join(CHECKPOINT_DIR).display()
                ),
            }
            Ok(())
        }
        Outcome::Paused { step } => {
            eprintln!("stopped after step {step} as asked; {resume_hint}");
            Ok(())
        }
        Outcome::Interrupted { step } => {
            eprintln!("checkpoint saved at step {step}; {resume_hint}");
            Err(Interrupted.into())
        }
    }
}

/// The config file with `--set` and the flags that override keys applied; errors name the
/// file, or the flag, and the key.
fn load_config(args: &TrainArgs, config_path: &std::path::Path) -> Result<TrainConfig> {
    let mut overrides = args.overrides.clone();
    // Overrides made from flags other than --set, and the flag to name in errors about them.
    let mut flag_overrides = Vec::new();
    if let Some(output) = &args.output {
        let item = format!("output_dir={}", serde_json::to_string(output)?);
        flag_overrides.push((item.clone(), format!("--output {}", output.display())));
        overrides.push(item);
    }
    if let Some(device) = &args.device {
        let item = format!("device={}", serde_json::to_string(device)?);
        flag_overrides.push((item.clone(), format!("--device {device}")));
        overrides.push(item);
    }
    TrainConfig::load(config_path, &overrides).map_err(|err| {
        let Some(e) = err.downcast_ref::<ConfigError>() else {
            return err;
        };
        let place = match &e.origin {
            Origin::File(path) => format!("{}", path.display()),
            Origin::Override(item) => flag_overrides
                .iter()
                .find(|(made, _)| made == item)
                .map_or_else(|| format!("--set {item}"), |(_, flag)| flag.clone()),
        };
        let key = e.key.as_ref().map_or(String::new(), |k| format!("{k}: "));
        let hint = if e.message.starts_with("output_dir is required") {
            " (or pass --output DIR)"
        } else {
            ""
        };
        input_error(format!("{place}: {key}{}{hint}", e.message))
    })
}

/// Shows training events on stderr: a progress bar on a terminal (log lines printed above
/// it), plain lines otherwise.
#[derive(Default)]
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn show(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Skipped { split, report } => self.line(&format!(
                "skipped {} invalid {split} examples: {}",
                report.total(),
                report.summary()
            )),
            TrainEvent::Started {
                train_examples,
                validation_examples,
                parameters,
                tensors,
            } => self.line(&format!(
                "training on {train_examples} examples, validating on {validation_examples}; \
                 {parameters} parameters in {tensors} tensors"
            )),
            TrainEvent::AlreadyFinished => {
                self.line("this run already finished; nothing to resume")
            }
            TrainEvent::Step {
                step,
                total_steps,
                loss,
                encoder_lr,
                examples_per_second,
            } => {
                if self.bar.is_none() && std::io::stderr().is_terminal() {
                    let bar = ProgressBar::new(total_steps as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{bar:30} step {pos}/{len} {msg} [{elapsed} < {eta}]",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    self.bar = Some(bar);
                }
                if let Some(bar) = &self.bar {
                    bar.set_position(step as u64);
                    bar.set_message(format!(
                        "loss {loss:.4} lr {encoder_lr:.2e} {examples_per_second:.1} ex/s"
                    ));
                }
            }
            TrainEvent::Logged {
                step,
                total_steps,
                epoch,
                loss,
                encoder_lr,
                examples_per_second,
            } => self.line(&format!(
                "step {step}/{total_steps} epoch {epoch} loss {loss:.4} lr {encoder_lr:.2e} \
                 {examples_per_second:.1} ex/s"
            )),
            TrainEvent::Validated {
                step,
                validation,
                saved,
            } => {
                let metrics = &validation.metrics;
                let summary = format!(
                    "validation at step {step}: loss {:.4} accuracy {:.4} micro-F1 {:.4} macro-F1 \
                     {:.4} AUC {}",
                    validation.loss,
                    metrics.accuracy,
                    metrics.micro_f1,
                    metrics.macro_f1,
                    metrics.auc_roc.map_or("n/a".into(), |a| format!("{a:.4}")),
                );
                if saved {
                    self.line(&format!("{summary} (best so far, saved)"));
                } else {
                    self.line(&summary);
                }
            }
            TrainEvent::Stopped => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }

    fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

/// The command that resumes this run: the same config, overrides and device, the output
/// directory, `--resume`; each argument quoted for a POSIX shell where it needs it.
fn resume_command(args: &TrainArgs, output_dir: &std::path::Path) -> String {
    let mut words = vec![
        "gliznet".to_string(),
        "train".into(),
        "--config".into(),
        args.config
            .as_deref()
            .map_or(String::new(), |p| p.display().to_string()),
    ];
    for item in &args.overrides {
        words.push("--set".into());
        words.push(item.clone());
    }
    if let Some(device) = &args.device {
        words.push("--device".into());
        words.push(device.clone());
    }
    words.push("--output".into());
    words.push(output_dir.display().to_string());
    words.push("--resume".into());
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_shell_only_where_needed() {
        assert_eq!(shell_quote("lr=2e-5"), "lr=2e-5");
        assert_eq!(shell_quote("runs/a b"), "'runs/a b'");
        assert_eq!(shell_quote("device=\"cpu\""), "'device=\"cpu\"'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
