//! `gliznet eval`: score a labelled JSONL file and report the metrics practitioners read.

use super::{progress_bar, shared_labels};
use crate::cli::model_args::{ClassifierArgs, MethodArg};
use crate::cli::output::{check_outputs, check_stdout};
use anyhow::{Context, Result};
use clap::Args;
use gliznet::classifier::{LabelSet, Method};
use gliznet::data::example::{split_candidates, Example, ExampleReader};
use gliznet::data::labels::{label_key, label_names, Label};
use gliznet::error::input_error;
use gliznet::eval::report::{evaluate, EvalMode, Evaluated, Report};
use gliznet::files::write_atomically;
use gliznet::scoring::ScoreMode;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    gliznet eval --model runs/a --data dev.jsonl --report report.json\n  \
    gliznet eval --model models/all-MiniLM-L6-v2 --method bi-encoder --data dev.jsonl\n\n\
    Data lines: {\"text\", \"labels\", \"not_labels\"}, {\"text\", \"labels\", \"candidates\"} or GLiClass\n\
    {\"text\", \"all_labels\", \"true_labels\"}. With --labels, every example is scored against that\n\
    list, its gold labels positive and the rest negative.")]
pub struct EvalArgs {
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

    #[command(flatten)]
    classifier: ClassifierArgs,

    #[arg(long, value_enum, default_value_t = MethodArg::Gliznet)]
    method: MethodArg,

    /// Write the full report (JSON) here
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Write per-example scores (JSONL) here
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,

    /// Encoder sequences per forward pass at most, or more while they fit in N × 128 tokens
    /// (short texts share a pass with more of their kind); a pass ends sooner where padding
    /// the next, longer texts would cost more than a pass of their own
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=crate::cli::MAX_BATCH_SIZE))]
    batch_size: u32,
}

/// Texts scored per call: the progress bar moves between calls, and a call sorts its texts by
/// length before batching them (as predict's `--window`), so that batches pad little.
const CHUNK: usize = 1024;

pub fn run(args: EvalArgs) -> Result<()> {
    check_stdout()?;
    let method = Method::from(args.method);
    if let Some(t) = args.threshold {
        crate::cli::predict::check_threshold(t, method)?;
    }
    check_files(&args)?;
    let shared = shared_labels(args.labels.as_deref(), args.labels_file.as_deref())?;
    let shared_names = shared
        .as_ref()
        .map(|(labels, flag)| (*flag, label_names(labels)));
    let (examples, lines) = read_eval_examples(
        &args.data,
        shared_names
            .as_ref()
            .map(|(flag, names)| (*flag, names.as_slice())),
        args.multi_label,
    )?;
    // The candidates' descriptions, found by name as gold labels are.
    let descriptions: HashMap<String, Label> = shared
        .into_iter()
        .flat_map(|(labels, _)| labels)
        .map(|l| (label_key(l.name()), l))
        .collect();
    let mode = eval_mode(&args, &examples)?;
    let classifier = args.classifier.open(method)?;
    let threshold = args
        .threshold
        .unwrap_or_else(|| classifier.default_threshold(method));
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
            let labels: Vec<Label> = e
                .targets()
                .iter()
                .map(|(name, _)| match descriptions.get(&label_key(name)) {
                    Some(Label::Described { description, .. }) => Label::Described {
                        label: name.to_string(),
                        description: description.clone(),
                    },
                    _ => Label::Name(name.to_string()),
                })
                .collect();
            classifier.described_label_set(&labels).with_context(place)
        })
        .collect::<Result<Vec<LabelSet>>>()?;
    let progress = Some(examples.len())
        .filter(|&n| n >= CHUNK * 4)
        .and_then(|n| {
            progress_bar(
                n as u64,
                "{bar:40} {pos}/{len} examples [{elapsed} < {eta}]",
            )
        });
    let mut scored = Vec::with_capacity(examples.len());
    let mut sequences = 0;
    for (chunk_examples, chunk_labels) in examples.chunks(CHUNK).zip(label_sets.chunks(CHUNK)) {
        let items: Vec<(&str, &LabelSet)> = chunk_examples
            .iter()
            .map(|e| e.text.as_str())
            .zip(chunk_labels)
            .collect();
        for result in classifier.scores(&items, score_mode, method, args.batch_size as usize)? {
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
        method,
        head_trained: classifier.loaded.head_trained,
        data: args.data.display().to_string(),
        sequences,
        ..evaluate(&evaluated, mode, threshold)
    };
    write_results(&args, &report, &evaluated)
}

/// Input and output files checked before any work.
fn check_files(args: &EvalArgs) -> Result<()> {
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
    check_outputs(&outputs, &inputs)
}

/// Single- or multi-label, as asked or as the gold labels suggest (said on stderr).
fn eval_mode(args: &EvalArgs, examples: &[Example]) -> Result<EvalMode> {
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
    Ok(mode)
}

/// The table on standard output, and the report and predictions files where asked.
fn write_results(args: &EvalArgs, report: &Report, evaluated: &[Evaluated]) -> Result<()> {
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
            for e in evaluated {
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
            (example.labels, example.not_labels) = split_candidates(&example.labels, candidates)
                .map_err(|missing| {
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
