//! `gliznet eval`: score a labelled JSONL file and report the metrics practitioners read.

use crate::classifier::{Classifier, LabelSet, Method};
use crate::cli::output::{check_outputs, check_stdout};
use crate::data::example::{others, Example, ExampleReader};
use crate::data::labels::{parse_label_list, read_label_file};
use crate::error::input_error;
use crate::eval::report::{evaluate, EvalMode, Evaluated, Report};
use crate::files::write_atomically;
use crate::scoring::ScoreMode;
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    gliznet eval --model runs/a --data dev.jsonl --report report.json\n  \
    gliznet eval --model models/all-MiniLM-L6-v2 --method bi-encoder --data dev.jsonl\n\n\
    Data lines: {\"text\", \"labels\", \"not_labels\"}, {\"text\", \"labels\", \"candidates\"} or GLiClass\n\
    {\"text\", \"all_labels\", \"true_labels\"}. With --labels, every example is scored against that\n\
    list, its gold labels positive and the rest negative.")]
pub struct EvalArgs {
    /// Model directory, or a Hugging Face repo id already in the local hub cache [default:
    /// the model built into gliznet]
    #[arg(long, value_name = "DIR|REPO")]
    model: Option<String>,

    /// Labelled JSONL file
    #[arg(long, value_name = "FILE")]
    data: PathBuf,

    /// Candidate labels for every example, comma-separated
    #[arg(long, value_name = "A,B,C", conflicts_with = "labels_file")]
    labels: Option<String>,

    /// Candidate labels for every example, one per line (blank lines and lines starting
    /// with # are skipped)
    #[arg(long, value_name = "FILE")]
    labels_file: Option<PathBuf>,

    /// Argmax over candidates (default when every example has exactly one gold label)
    #[arg(long, conflicts_with = "multi_label")]
    single_label: bool,

    /// Per-label decisions at --threshold (default otherwise)
    #[arg(long)]
    multi_label: bool,

    /// Decision threshold for multi-label metrics [default: the model's calibrated threshold,
    /// or 0.5]
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f32>,

    #[arg(long, value_enum, default_value_t = Method::Gliznet)]
    method: Method,

    /// Write the full report (JSON) here
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Write per-example scores (JSONL) here
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,

    /// Encoder sequences per forward pass
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=crate::cli::MAX_BATCH_SIZE))]
    batch_size: u32,

    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,

    /// Int8 encoder weights (CPU only): scores differ slightly from f32; see BENCHMARKS.md
    /// for the speed and MODEL.md for the accuracy change
    #[arg(long)]
    quantize: bool,

    /// Subtract from each label's logit its logit with no text (the label's prior), so that a
    /// label the model favours whatever the text says does not win by default (GliZNet
    /// method; in multi-label mode the threshold then applies to the corrected score)
    #[arg(long)]
    subtract_label_prior: bool,
}

/// Texts scored per call, so that the progress bar moves.
const CHUNK: usize = 64;

pub fn run(args: EvalArgs) -> Result<()> {
    check_stdout()?;
    if let Some(t) = args.threshold {
        crate::cli::predict::check_threshold(t, args.method)?;
    }
    let mut inputs = vec![("--data", args.data.as_path())];
    if let Some(path) = &args.labels_file {
        inputs.push(("--labels-file", path.as_path()));
    }
    let mut outputs = Vec::new();
    if let Some(path) = &args.report {
        outputs.push(("--report", path.as_path()));
    }
    if let Some(path) = &args.predictions {
        outputs.push(("--predictions", path.as_path()));
    }
    check_outputs(&outputs, &inputs)?;
    let shared = match (&args.labels, &args.labels_file) {
        (Some(list), _) => Some(parse_label_list(list)?),
        (None, Some(path)) => Some(read_label_file(path)?),
        (None, None) => None,
    };
    let flag = if args.labels.is_some() {
        "--labels"
    } else {
        "--labels-file"
    };
    let (examples, lines) = read_eval_examples(
        &args.data,
        shared.as_deref().map(|labels| (flag, labels)),
        args.multi_label,
    )?;
    let mode = if args.single_label {
        EvalMode::SingleLabel
    } else if args.multi_label {
        EvalMode::MultiLabel
    } else if examples.iter().all(|e| e.labels.len() == 1) {
        eprintln!("mode: single-label (every example has one gold label; --multi-label to change)");
        EvalMode::SingleLabel
    } else {
        eprintln!("mode: multi-label");
        EvalMode::MultiLabel
    };
    if mode == EvalMode::SingleLabel {
        if let Some(e) = examples.iter().find(|e| e.labels.len() != 1) {
            return Err(input_error(format!(
                "--single-label needs exactly one gold label per example; {:?} has {}",
                e.text.chars().take(60).collect::<String>(),
                e.labels.len()
            )));
        }
    }

    let mut classifier = Classifier::open(
        args.model.as_deref(),
        super::device_for(&args.device, args.quantize)?,
        args.method,
    )?;
    classifier.subtract_label_prior = args.subtract_label_prior;
    if args.quantize {
        classifier.quantize()?;
    }
    let threshold = args
        .threshold
        .unwrap_or_else(|| classifier.default_threshold(args.method));
    let score_mode = match mode {
        EvalMode::SingleLabel => ScoreMode::SingleLabel,
        EvalMode::MultiLabel => ScoreMode::MultiLabel { threshold },
    };
    let label_sets = examples
        .iter()
        .zip(&lines)
        .map(|(e, &line)| {
            let place = || format!("{}:{line}", args.data.display());
            classifier.check_text(&e.text).with_context(place)?;
            let names: Vec<String> = e.targets().iter().map(|(l, _)| l.to_string()).collect();
            classifier.label_set(names).with_context(place)
        })
        .collect::<Result<Vec<LabelSet>>>()?;
    let progress = progress_bar(examples.len());
    let mut scored = Vec::with_capacity(examples.len());
    let mut sequences = 0;
    for (chunk_examples, chunk_labels) in examples.chunks(CHUNK).zip(label_sets.chunks(CHUNK)) {
        let items: Vec<(&str, &LabelSet)> = chunk_examples
            .iter()
            .map(|e| e.text.as_str())
            .zip(chunk_labels)
            .collect();
        for result in
            classifier.scores(&items, score_mode, args.method, args.batch_size as usize)?
        {
            sequences += result.encoding.as_ref().map_or(1, |e| e.chunks.len());
            scored.push(result.scores);
        }
        if let Some(bar) = &progress {
            bar.inc(chunk_examples.len() as u64);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    let evaluated: Vec<Evaluated> = examples
        .iter()
        .zip(&scored)
        .map(|(e, s)| Evaluated::new(e, s))
        .collect();
    let report = Report {
        model: classifier.loaded.name.clone(),
        method: args.method,
        head_trained: classifier.loaded.head_trained,
        data: args.data.display().to_string(),
        sequences,
        ..evaluate(&evaluated, mode, threshold)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(report.table().as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")?;
    if let Some(path) = &args.report {
        write_atomically(path, |file| {
            let json = serde_json::to_string_pretty(&report.to_json())? + "\n";
            Ok(file.write_all(json.as_bytes())?)
        })
        .with_context(|| format!("--report {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(path) = &args.predictions {
        write_atomically(path, |file| {
            let mut out = std::io::BufWriter::new(file);
            for e in &evaluated {
                writeln!(out, "{}", serde_json::to_string(&e.to_json())?)?;
            }
            Ok(out.flush()?)
        })
        .with_context(|| format!("--predictions {}", path.display()))?;
        eprintln!("predictions written to {}", path.display());
    }
    Ok(())
}

/// The examples and the line each came from. Examples without a gold label are allowed only
/// with `--multi-label` (`allow_no_gold`): a text that has none of its candidate labels.
fn read_eval_examples(
    path: &std::path::Path,
    shared: Option<(&str, &[String])>,
    allow_no_gold: bool,
) -> Result<(Vec<Example>, Vec<usize>)> {
    let mut reader = ExampleReader::open(path)?;
    let mut examples = Vec::new();
    let mut lines = Vec::new();
    while let Some(item) = reader.next() {
        let (line, parsed) = item?;
        let location = reader.location(line);
        let mut example = parsed.map_err(|reason| input_error(format!("{location}: {reason}")))?;
        if example.labels.is_empty() && !allow_no_gold {
            return Err(input_error(format!(
                "{location}: no gold label (with --multi-label a text may have none)"
            )));
        }
        if let Some((flag, candidates)) = shared {
            example.not_labels = others(&example.labels, candidates).map_err(|missing| {
                input_error(format!(
                    "{location}: gold label {missing:?} is not among the {flag} candidates"
                ))
            })?;
        }
        examples.push(example);
        lines.push(line);
    }
    if examples.is_empty() {
        return Err(input_error(format!("{}: no examples", path.display())));
    }
    Ok((examples, lines))
}

fn progress_bar(total: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || total < CHUNK * 4 {
        return None;
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} examples [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}
