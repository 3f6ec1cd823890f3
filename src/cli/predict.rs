//! `gliznet predict`: score labels for texts given on the command line or in a JSONL file.

use super::{progress_bar, shared_labels};
use crate::cli::model_args::{ClassifierArgs, MethodArg};
use crate::cli::output::{check_outputs, check_stdout, FormatArg};
use anyhow::{Context, Result};
use clap::Args;
use gliznet::classifier::{Classifier, LabelSet, Method};
use gliznet::data::jsonl::JsonlReader;
use gliznet::data::labels::Label;
use gliznet::data::parquet::{is_parquet, ParquetRows, RowBatch, RowScores, ScoredCopy};
use gliznet::data::text::cap_text;
use gliznet::error::input_error;
use gliznet::files::write_atomically;
use gliznet::results::ResultWriter;
use gliznet::scoring::ScoreMode;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    gliznet predict --model models/all-MiniLM-L6-v2 --text \"The bank raised rates\" --labels economy,sports\n  \
    gliznet predict --model DIR --input texts.jsonl --labels-file labels.txt --format jsonl\n  \
    gliznet predict --input rows.parquet --text-column body --labels a,b,c --output scored.parquet\n\n\
    Input lines are JSON objects: {\"text\": \"…\", \"labels\": [\"…\", …]} (labels optional when\n\
    --labels or --labels-file is given). A label may carry a description that the model reads\n\
    with it: {\"label\": \"…\", \"description\": \"…\"} in a list, `name: description` in a labels file.\n\n\
    An --input ending in .parquet is read a record batch at a time: texts from --text-column,\n\
    labels from --labels/--labels-file or a list-of-strings --labels-column. With an --output\n\
    ending in .parquet, every input row is written back, its columns and row groups as they\n\
    were (copied, not decoded), with two columns added: scores (list<float32>, in the order of\n\
    the row's labels) and predicted (list<string>).")]
#[command(group(clap::ArgGroup::new("texts").args(["text", "input"]).required(true)))]
pub struct PredictArgs {
    /// Text to classify (repeat for several)
    #[arg(long, value_name = "TEXT", conflicts_with = "input")]
    text: Vec<String>,

    /// JSONL file of texts (and optional per-line labels), - for standard input, or a Parquet
    /// file (by its .parquet extension)
    #[arg(long, value_name = "FILE|-")]
    input: Option<PathBuf>,

    /// Parquet input: the column of texts [default: text]
    #[arg(long, value_name = "NAME")]
    text_column: Option<String>,

    /// Parquet input: a column holding each row's list of labels
    #[arg(long, value_name = "NAME", conflicts_with_all = ["labels", "labels_file"])]
    labels_column: Option<String>,

    /// Write the results to FILE (whole, atomically) instead of standard output; a FILE
    /// ending in .parquet gets the Parquet input's rows with `scores` and `predicted` added
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Candidate labels, comma-separated
    #[arg(long, value_name = "A,B,C", conflicts_with = "labels_file")]
    labels: Option<String>,

    /// File with one candidate label per line, `name` or `name: description` (blank lines and
    /// lines starting with # are skipped)
    #[arg(long, value_name = "FILE")]
    labels_file: Option<PathBuf>,

    /// Score each label independently with a sigmoid (the default)
    #[arg(long, conflicts_with = "single_label")]
    multi_label: bool,

    /// Softmax over each text's labels; the top label is predicted
    #[arg(long)]
    single_label: bool,

    /// Score at or above which a label is predicted (multi-label mode) [default: the model's
    /// calibrated threshold, or 0.5]
    #[arg(long, conflicts_with = "single_label", allow_negative_numbers = true)]
    threshold: Option<f32>,

    /// Output format (of standard output, or of an --output that is not .parquet)
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    format: FormatArg,

    /// Encoder sequences per forward pass at most, or more while they fit in N × 128 tokens
    /// (short texts share a pass with more of their kind); a pass ends sooner where padding
    /// the next, longer texts would cost more than a pass of their own
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=crate::cli::MAX_BATCH_SIZE))]
    batch_size: u32,

    /// Texts read ahead and sorted by length before they are cut into batches, so that a
    /// batch pads little (results keep the input's order; a window also ends at 8 MiB of
    /// text). 1 scores each batch as its lines arrive
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,

    #[command(flatten)]
    classifier: ClassifierArgs,

    /// gliznet (joint encoding) or bi-encoder (cosine of mean-pooled embeddings; its scores
    /// are cosines, and --threshold applies to them)
    #[arg(long, value_enum, default_value_t = MethodArg::Gliznet)]
    method: MethodArg,
}

const NO_LABELS: &str = "give the candidate labels with --labels or --labels-file";

#[derive(Deserialize)]
struct InputLine {
    text: String,
    labels: Option<Vec<Label>>,
}

/// A text waiting to be scored, with the labels it is scored against.
struct Pending {
    text: String,
    labels: Rc<LabelSet>,
    /// The text was longer than what is read of a text (`MAX_TEXT_CHARS`) and was cut there.
    cut: bool,
}

/// Scores texts in batches and writes each result as it comes.
struct Scorer<'a, W: std::io::Write> {
    classifier: &'a Classifier,
    mode: ScoreMode,
    method: Method,
    batch_size: usize,
    /// Texts held before scoring (at least one batch).
    window: usize,
    writer: ResultWriter<W>,
    notes: Notes,
    pending: Vec<Pending>,
    /// The bytes of the pending texts.
    pending_bytes: usize,
}

/// The most text a window holds, whatever its count.
const WINDOW_BYTES: usize = 8 << 20;

impl<W: std::io::Write> Scorer<'_, W> {
    fn push(&mut self, text: String, labels: Rc<LabelSet>, cut: bool) {
        self.pending_bytes += text.len();
        self.pending.push(Pending { text, labels, cut });
    }

    fn is_full(&self) -> bool {
        self.pending.len() >= self.window.max(self.batch_size) || self.pending_bytes >= WINDOW_BYTES
    }

    /// Scores and writes what is pending (nothing when nothing is).
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let items: Vec<(&str, &LabelSet)> = self
            .pending
            .iter()
            .map(|p| (p.text.as_str(), p.labels.as_ref()))
            .collect();
        let results = self
            .classifier
            .scores(&items, self.mode, self.method, self.batch_size)?;
        for (p, result) in self.pending.iter().zip(results) {
            self.notes.record(result.encoding.as_ref(), p.cut);
            self.writer
                .write(&p.text, &p.labels.names, &result.scores)?;
        }
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.writer.finish()?;
        self.notes.report();
        Ok(())
    }
}

/// What every text is scored with, and how.
struct Job {
    classifier: Classifier,
    mode: ScoreMode,
    method: Method,
    batch_size: usize,
    window: usize,
    /// `--labels` / `--labels-file`, for texts that bring no labels of their own.
    shared: Option<Rc<LabelSet>>,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let method = Method::from(args.method);
    if let Some(t) = args.threshold {
        check_threshold(t, method)?;
    }
    let parquet_input = args.input.as_deref().filter(|p| is_parquet(p));
    check_parquet_flags(&args, parquet_input.is_some())?;
    match &args.output {
        Some(output) => {
            let inputs: Vec<(&str, &Path)> = args
                .input
                .iter()
                .map(|p| ("--input", p.as_path()))
                .collect();
            check_outputs(&[("--output", output)], &inputs)?;
        }
        None => check_stdout()?,
    }
    let shared_labels = shared_labels(args.labels.as_deref(), args.labels_file.as_deref())?;
    if shared_labels.is_none() && args.input.is_none() {
        return Err(input_error(NO_LABELS));
    }
    if shared_labels.is_none() && parquet_input.is_some() && args.labels_column.is_none() {
        return Err(input_error(format!("{NO_LABELS} or --labels-column")));
    }
    let classifier = args.classifier.open(method)?;
    let mode = if args.single_label {
        ScoreMode::SingleLabel
    } else {
        ScoreMode::MultiLabel {
            threshold: args
                .threshold
                .unwrap_or_else(|| classifier.default_threshold(method)),
        }
    };
    let shared: Option<Rc<LabelSet>> = match shared_labels {
        Some((labels, flag)) => Some(Rc::new(label_set(&classifier, labels, flag)?)),
        None => None,
    };
    let job = Job {
        classifier,
        mode,
        method,
        batch_size: args.batch_size as usize,
        window: args.window as usize,
        shared,
    };
    let format = args.format.into();
    let model = job.classifier.loaded.name.clone();
    match &args.output {
        None => {
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            job.write_results(&args, ResultWriter::new(out, format, model))
        }
        Some(output) if is_parquet(output) => {
            let input = parquet_input.expect("checked by check_parquet_flags");
            let rows = ParquetRows::open(
                input,
                args.text_column.as_deref().unwrap_or(DEFAULT_TEXT_COLUMN),
                args.labels_column.as_deref(),
                PARQUET_BATCH_ROWS,
            )?;
            write_atomically(output, |file| {
                job.write_parquet(&rows, std::io::BufWriter::new(file))
            })
        }
        Some(output) => write_atomically(output, |file| {
            let out = std::io::BufWriter::new(file);
            job.write_results(&args, ResultWriter::new(out, format, model))
        }),
    }
}

const DEFAULT_TEXT_COLUMN: &str = "text";
/// Rows read from Parquet at a time: a few encoder batches, little memory.
const PARQUET_BATCH_ROWS: usize = 256;

/// The Parquet flags go with a Parquet input, and a Parquet output with a Parquet input.
fn check_parquet_flags(args: &PredictArgs, parquet_input: bool) -> Result<()> {
    if parquet_input {
        return Ok(());
    }
    for (flag, given) in [
        ("--text-column", args.text_column.is_some()),
        ("--labels-column", args.labels_column.is_some()),
        (
            "--output FILE.parquet",
            args.output.as_deref().is_some_and(is_parquet),
        ),
    ] {
        if given {
            return Err(input_error(format!(
                "{flag} needs a Parquet input (an --input FILE ending in .parquet)"
            )));
        }
    }
    Ok(())
}

impl Job {
    /// Scores every text given and writes each result as it comes.
    fn write_results<W: std::io::Write>(
        &self,
        args: &PredictArgs,
        writer: ResultWriter<W>,
    ) -> Result<()> {
        let mut scorer = Scorer {
            classifier: &self.classifier,
            mode: self.mode,
            method: self.method,
            batch_size: self.batch_size,
            window: self.window,
            writer,
            notes: Notes::default(),
            pending: Vec::new(),
            pending_bytes: 0,
        };
        match &args.input {
            None => {
                let Some(labels) = &self.shared else {
                    return Err(input_error(NO_LABELS));
                };
                for (i, text) in args.text.iter().enumerate() {
                    let mut text = text.clone();
                    let cut = cap_text(&mut text);
                    scorer
                        .classifier
                        .check_text(&text)
                        .map_err(|e| input_error(format!("--text #{}: {e}", i + 1)))?;
                    scorer.push(text, Rc::clone(labels), cut);
                }
            }
            Some(path) if is_parquet(path) => {
                let rows = ParquetRows::open(
                    path,
                    args.text_column.as_deref().unwrap_or(DEFAULT_TEXT_COLUMN),
                    args.labels_column.as_deref(),
                    PARQUET_BATCH_ROWS,
                )?;
                let progress = progress_bar(rows.total_rows(), ROWS_PROGRESS);
                for batch in rows.batches() {
                    let batch = batch?;
                    for row in self.parquet_rows(&rows, &batch)? {
                        scorer.push(row.text, row.labels, row.cut);
                        if scorer.is_full() {
                            scorer.flush()?;
                        }
                    }
                    if let Some(bar) = &progress {
                        bar.set_position(batch.first_row + batch.batch.num_rows() as u64);
                    }
                }
                if let Some(bar) = progress {
                    bar.finish_and_clear();
                }
            }
            Some(path) => score_file(path, self.shared.as_ref(), &mut scorer)?,
        }
        scorer.finish()
    }

    /// Scores every row of a Parquet input and writes it back with its scores added, row
    /// group by row group.
    fn write_parquet<W: std::io::Write + Send>(&self, rows: &ParquetRows, out: W) -> Result<()> {
        let mut writer = ScoredCopy::new(out, rows)?;
        let mut notes = Notes::default();
        let progress = progress_bar(rows.total_rows(), ROWS_PROGRESS);
        for group in 0..rows.row_groups() {
            let mut scores = writer.row_group(group)?;
            for batch in rows.row_group(group)? {
                let batch = batch?;
                let pending = self.parquet_rows(rows, &batch)?;
                let items: Vec<(&str, &LabelSet)> = pending
                    .iter()
                    .map(|p| (p.text.as_str(), p.labels.as_ref()))
                    .collect();
                let results = self
                    .classifier
                    .scores(&items, self.mode, self.method, self.batch_size)
                    .with_context(|| format!("rows from {}", batch.first_row))?;
                let scored: Vec<RowScores> = pending
                    .iter()
                    .zip(&results)
                    .map(|(p, result)| {
                        notes.record(result.encoding.as_ref(), p.cut);
                        RowScores {
                            scores: result.scores.iter().map(|s| s.score).collect(),
                            predicted: p
                                .labels
                                .names
                                .iter()
                                .zip(&result.scores)
                                .filter(|(_, s)| s.predicted)
                                .map(|(name, _)| name.as_str())
                                .collect(),
                        }
                    })
                    .collect();
                scores.write(&scored)?;
                if let Some(bar) = &progress {
                    bar.set_position(batch.first_row + batch.batch.num_rows() as u64);
                }
            }
            writer.write_row_group(scores)?;
        }
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        writer.finish()?;
        notes.report();
        Ok(())
    }

    /// The rows of one Parquet batch, each text checked and capped, with its labels: the row's
    /// own list (a row with the same list as the row before shares its tokenized labels), or
    /// the shared one.
    fn parquet_rows(&self, rows: &ParquetRows, batch: &RowBatch) -> Result<Vec<Pending>> {
        let texts = rows.texts(batch)?;
        let lists = rows.label_lists(batch)?;
        let mut pending = Vec::with_capacity(texts.len());
        let mut previous: Option<(Vec<String>, Rc<LabelSet>)> = None;
        for (i, mut text) in texts.into_iter().enumerate() {
            let row = batch.first_row + i as u64;
            let cut = cap_text(&mut text);
            self.classifier.check_text(&text).map_err(|e| {
                let place = rows.location(row, rows.text_column_name());
                input_error(format!("{place}: {e}"))
            })?;
            let labels = match &lists {
                Some(lists) => {
                    let list = &lists[i];
                    match &previous {
                        Some((names, set)) if names == list => Rc::clone(set),
                        _ => {
                            let place = rows.location(row, rows.labels_column_name().unwrap_or(""));
                            let given = list.iter().cloned().map(Label::Name).collect();
                            let set = Rc::new(label_set(&self.classifier, given, &place)?);
                            previous = Some((list.clone(), Rc::clone(&set)));
                            set
                        }
                    }
                }
                None => Rc::clone(self.shared.as_ref().expect("checked in run")),
            };
            pending.push(Pending { text, labels, cut });
        }
        Ok(pending)
    }
}

const ROWS_PROGRESS: &str = "{bar:40} {pos}/{len} rows {elapsed} (eta {eta})";

/// Queues every line of a JSONL input (scoring each full batch), with a progress bar by bytes.
fn score_file<W: std::io::Write>(
    path: &std::path::Path,
    shared: Option<&Rc<LabelSet>>,
    scorer: &mut Scorer<W>,
) -> Result<()> {
    let mut reader = JsonlReader::<InputLine>::open(path)?;
    let progress = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|m| {
            progress_bar(
                m.len(),
                "{bar:40} {bytes}/{total_bytes} {elapsed} (eta {eta})",
            )
        });
    while let Some(record) = reader.next() {
        let (line_number, line) = record?;
        let location = reader.location(line_number);
        scorer
            .classifier
            .check_text(&line.text)
            .map_err(|e| input_error(format!("{location}: {e}")))?;
        let labels = match (line.labels, shared) {
            (Some(labels), _) => Rc::new(label_set(scorer.classifier, labels, &location)?),
            (None, Some(shared)) => Rc::clone(shared),
            (None, None) => {
                return Err(input_error(format!(
                    "{location}: no \"labels\" field, and no --labels or --labels-file"
                )))
            }
        };
        scorer.push(line.text, labels, reader.last_text_cut());
        if scorer.is_full() {
            scorer
                .flush()
                .with_context(|| format!("texts up to {location}"))?;
        }
        if let Some(bar) = &progress {
            bar.set_position(reader.bytes_read());
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(())
}

fn label_set(classifier: &Classifier, labels: Vec<Label>, place: &str) -> Result<LabelSet> {
    classifier
        .described_label_set(&labels)
        .map_err(|e| input_error(format!("{place}: {e}")))
}

/// What packing did to the inputs, reported once at the end on stderr.
#[derive(Default)]
struct Notes {
    truncated_texts: usize,
    chunked_texts: usize,
    capped_labels: usize,
    max_length: usize,
}

impl Notes {
    /// What packing did to one text; `cut` says that the text was cut where reading stops
    /// (it is truncated whatever its encoding says).
    fn record(&mut self, encoding: Option<&gliznet::tokenizer::TextEncoding>, cut: bool) {
        self.truncated_texts += usize::from(cut || encoding.is_some_and(|e| e.text_truncated()));
        let Some(encoding) = encoding else {
            return;
        };
        self.chunked_texts += usize::from(encoding.chunks.len() > 1);
        self.capped_labels = self.capped_labels.max(encoding.capped_labels.len());
        self.max_length = self.max_length.max(
            encoding
                .chunks
                .iter()
                .map(|c| c.input_ids.len())
                .max()
                .unwrap_or(0),
        );
    }

    fn report(&self) {
        if self.truncated_texts > 0 {
            eprintln!(
                "note: {} text(s) were truncated to fit beside their labels",
                self.truncated_texts
            );
        }
        if self.chunked_texts > 0 {
            eprintln!(
                "note: {} text(s) had more labels than fit in one sequence; their labels were \
                 scored in several chunks",
                self.chunked_texts
            );
        }
        if self.capped_labels > 0 {
            eprintln!(
                "note: {} label(s) were longer than max_label_tokens and were capped",
                self.capped_labels
            );
        }
    }
}

/// A threshold outside the range of the method's scores would predict every label or none:
/// sigmoid scores lie in [0, 1], bi-encoder cosines in [-1, 1].
pub fn check_threshold(threshold: f32, method: Method) -> Result<()> {
    let (low, high) = match method {
        Method::Gliznet => (0.0, 1.0),
        Method::BiEncoder => (-1.0, 1.0),
    };
    if !(low..=high).contains(&threshold) {
        return Err(input_error(format!(
            "--threshold {threshold} is outside [{low}, {high}], the range of {} scores",
            match method {
                Method::Gliznet => "gliznet",
                Method::BiEncoder => "bi-encoder",
            }
        )));
    }
    Ok(())
}
