//! `gliznet mine-negatives`: add hard (or random) negative labels to examples.

use crate::cli::model_args::ModelArgs;
use crate::cli::output::check_outputs;
use anyhow::Result;
use clap::Args;
use gliznet::data::example::{Example, ExampleReader};
use gliznet::data::labels::{label_key, read_label_pool};
use gliznet::data::text::MAX_TEXT_CHARS;
use gliznet::embed::Embedder;
use gliznet::error::input_error;
use gliznet::files::write_atomically;
use gliznet::mining::{Miner, MiningOptions, Strategy};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  \
    gliznet mine-negatives --model models/all-MiniLM-L6-v2 --input train.jsonl --output train.mined.jsonl --k 5\n\n\
    Input lines are examples with positive labels ({\"text\", \"labels\", \"not_labels\"} or GLiClass\n\
    {\"text\", \"all_labels\", \"true_labels\"}); output lines are {\"text\", \"labels\", \"not_labels\"}\n\
    with the mined labels appended to not_labels. The output file appears only when complete.")]
pub struct MineArgs {
    /// The encoder that embeds the labels (any BERT / sentence-transformers / GliZNet model)
    #[command(flatten)]
    model: ModelArgs,

    /// JSONL examples with positive labels
    #[arg(long, value_name = "FILE")]
    input: PathBuf,

    /// Where to write the examples with their new negatives
    #[arg(long, value_name = "FILE")]
    output: PathBuf,

    /// Candidate labels, one per line, # starting a comment line (default: every label of
    /// the input)
    #[arg(long, value_name = "FILE")]
    pool: Option<PathBuf>,

    /// Negatives to add per example
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=MAX_K))]
    k: u32,

    /// Skip candidates more similar than this to any positive (likely synonyms); a cosine, in
    /// [-1, 1]
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true, value_parser = parse_cosine)]
    max_similarity: f32,

    /// Skip the N most similar candidates after the ceiling (hard strategy)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(..=MAX_SKIP_TOP))]
    skip_top: u32,

    #[arg(long, value_enum, default_value_t = StrategyArg::Hard)]
    strategy: StrategyArg,

    /// Seed for the random strategy
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Strings per encoder pass when embedding labels
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=crate::cli::MAX_BATCH_SIZE))]
    batch_size: u32,
}

/// `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StrategyArg {
    /// The most similar labels first
    Hard,
    /// Uniformly random labels (for ablations)
    Random,
}

impl From<StrategyArg> for Strategy {
    fn from(strategy: StrategyArg) -> Self {
        match strategy {
            StrategyArg::Hard => Strategy::Hard,
            StrategyArg::Random => Strategy::Random,
        }
    }
}

/// A cosine given on the command line (`--max-similarity`): a number in [-1, 1]. NaN and the
/// infinities are refused (NaN would skip every candidate without a word).
pub fn parse_cosine(value: &str) -> std::result::Result<f32, String> {
    let cosine: f32 = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if !(-1.0..=1.0).contains(&cosine) {
        return Err(format!("{value} is outside [-1, 1], the range of a cosine"));
    }
    Ok(cosine)
}

/// Examples handed to the miner at once.
const CHUNK: usize = 512;
/// Upper bounds of `--k` and `--skip-top` (far above any useful value; they keep a typo from
/// asking for absurd amounts of memory).
const MAX_K: i64 = 10_000;
const MAX_SKIP_TOP: i64 = 100_000;

pub fn run(args: MineArgs) -> Result<()> {
    let mut inputs = vec![("--input", args.input.as_path())];
    if let Some(pool) = &args.pool {
        inputs.push(("--pool", pool.as_path()));
    }
    check_outputs(&[("--output", args.output.as_path())], &inputs)?;
    let k = args.k as usize;
    if args.input.as_os_str() == "-" && args.pool.is_none() {
        return Err(input_error(
            "reading standard input needs --pool (the pool is read from the input otherwise)",
        ));
    }
    let pool = match &args.pool {
        Some(path) => read_label_pool(path)?,
        None => labels_of(&args.input)?,
    };
    // Counted as the miner keeps them: the spellings of one label (`Tennis`, `tennis`) are
    // one label.
    let distinct = pool
        .iter()
        .map(|l| label_key(l))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if distinct < k {
        return Err(input_error(format!(
            "the label pool has {distinct} distinct labels, fewer than --k {k}"
        )));
    }
    let (loaded, device) = args.model.load()?;
    let embedder = Embedder {
        encoder: loaded.model.encoder(),
        tokenizer: &loaded.tokenizer,
        device: &device,
    };
    let options = MiningOptions {
        k,
        max_similarity: args.max_similarity,
        skip_top: args.skip_top as usize,
        strategy: args.strategy.into(),
        seed: args.seed,
    };
    let miner = Miner::new(embedder, pool, options, args.batch_size as usize)?;

    let (examples_written, short, cut) = write_mined(&args, &miner)?;
    eprintln!(
        "wrote {examples_written} examples to {}",
        args.output.display()
    );
    if cut > 0 {
        eprintln!(
            "note: {cut} text(s) were longer than {MAX_TEXT_CHARS} characters and were read, \
             and written, up to there (no model reads further)"
        );
    }
    if short > 0 {
        eprintln!("note: {short} examples got fewer than {} negatives (the guards left too few candidates)", args.k);
    }
    Ok(())
}

/// Mines negatives for every input example and writes the output file atomically. Returns the
/// number of examples written, of those that got fewer than `--k` negatives, and of those
/// whose text was cut at `MAX_TEXT_CHARS` characters.
fn write_mined(args: &MineArgs, miner: &Miner) -> Result<(usize, usize, usize)> {
    let k = args.k as usize;
    let mut examples_written = 0usize;
    let mut short = 0usize;
    let mut cut = 0usize;
    write_atomically(&args.output, |file| {
        let mut out = BufWriter::new(file);
        let mut reader = ExampleReader::open(&args.input)?;
        let mut chunk: Vec<(u64, Example)> = Vec::with_capacity(CHUNK);
        let mut flush = |chunk: &mut Vec<(u64, Example)>,
                         out: &mut BufWriter<&mut std::fs::File>|
         -> Result<()> {
            let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
            let examples: Vec<Example> = chunk.drain(..).map(|(_, e)| e).collect();
            let negatives = miner.mine(&examples, &ids)?;
            for (mut example, negatives) in examples.into_iter().zip(negatives) {
                short += usize::from(negatives.len() < k);
                example.not_labels.extend(negatives);
                writeln!(out, "{}", serde_json::to_string(&example)?)?;
                examples_written += 1;
            }
            Ok(())
        };
        while let Some(item) = reader.next() {
            let (line, parsed) = item?;
            let example = parsed
                .map_err(|reason| input_error(format!("{}: {reason}", reader.location(line))))?;
            if example.labels.is_empty() {
                return Err(input_error(format!(
                    "{}: no positive labels to mine negatives for",
                    reader.location(line)
                )));
            }
            chunk.push((line as u64, example));
            if chunk.len() == CHUNK {
                flush(&mut chunk, &mut out)?;
            }
        }
        if !chunk.is_empty() {
            flush(&mut chunk, &mut out)?;
        }
        cut = reader.texts_cut();
        if examples_written == 0 {
            return Err(input_error(format!(
                "{}: no examples",
                args.input.display()
            )));
        }
        out.flush()?;
        Ok(())
    })?;
    Ok((examples_written, short, cut))
}

/// Every distinct label (positive or negative) of an examples file.
fn labels_of(path: &Path) -> Result<Vec<String>> {
    let mut labels = std::collections::BTreeSet::new();
    let mut reader = ExampleReader::open(path)?;
    while let Some(item) = reader.next() {
        let (line, parsed) = item?;
        let example =
            parsed.map_err(|reason| input_error(format!("{}: {reason}", reader.location(line))))?;
        labels.extend(example.labels.into_iter().chain(example.not_labels));
    }
    if labels.is_empty() {
        return Err(input_error(format!("{}: no examples", path.display())));
    }
    Ok(labels.into_iter().collect())
}
