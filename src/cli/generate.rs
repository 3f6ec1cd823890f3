//! `gliznet generate`: synthetic training examples from an LLM behind an OpenAI-compatible
//! chat-completions API.

use crate::cli::model_args::ModelArgs;
use crate::cli::train::Interrupted;
use anyhow::{Context, Result};
use clap::Args;
use gliznet::config::{ConfigError, Origin};
use gliznet::error::input_error;
use gliznet::generate::config::GenerateConfig;
use gliznet::generate::plan::PLACEHOLDERS;
use gliznet::generate::{
    client, ClientEvent, Ending, Event, Generator, Options, Progress, Summary,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    gliznet generate --config configs/generate/gen.json --output data/gen.jsonl\n  \
    gliznet generate --config configs/generate/gen.json --set provider=ollama --set model=llama3.2 --output gen.jsonl\n  \
    GROQ_API_KEY=… gliznet generate --config configs/generate/gen.json --set provider=groq \\\n      \
    --set model=llama-3.1-8b-instant --set requests_per_minute=25 --output gen.jsonl\n\n\
    Output lines: {\"text\", \"labels\", \"not_labels\", \"domain\", \"length\", \"style\", \"model\",\n\
    \"prompt\", \"attempt\"}, ready for mine-negatives and train. Running the same command again\n\
    continues the output file where it stopped. Ctrl-C stops after whole lines (exit 130).")]
pub struct GenerateArgs {
    /// Generation config (JSON); see configs/generate/, and --print-config for every key
    #[arg(long, value_name = "FILE", required_unless_present = "print_config")]
    config: Option<PathBuf>,

    /// Print every config key with its default value as JSON, and the prompt placeholders,
    /// and exit
    #[arg(long, exclusive = true)]
    print_config: bool,

    /// Override a config key (repeatable): --set provider=ollama --set examples=500
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,

    /// JSONL file to write; an existing one made by generate is continued
    #[arg(long, value_name = "FILE", required_unless_present = "print_config")]
    output: Option<PathBuf>,

    /// Start the output file over instead of continuing it
    #[arg(long)]
    replace: bool,

    /// Also write the summary as JSON to this file (replaced when complete)
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// When the run is complete, also write the examples with embedding-mined hard negatives
    /// added (as mine-negatives does) to this file; the output itself stays as generated
    #[arg(long, value_name = "FILE")]
    mine: Option<PathBuf>,

    /// Mined negatives to add per example (with --mine)
    #[arg(long, value_name = "N", default_value_t = 3, requires = "mine")]
    mine_k: u32,

    /// With --mine, skip candidates more similar than this to any positive (likely synonyms);
    /// a cosine, in [-1, 1]
    #[arg(long, value_name = "COSINE", default_value_t = 0.8, requires = "mine",
          allow_negative_numbers = true, value_parser = crate::cli::mine::parse_cosine)]
    mine_max_similarity: f32,

    /// Candidate labels for --mine, one per line (default: every label of the output)
    #[arg(long, value_name = "FILE", requires = "mine")]
    mine_pool: Option<PathBuf>,

    /// The encoder for --mine and for the config's near_duplicate_cosine check
    #[command(flatten)]
    model: ModelArgs,

    /// On a pipe (not a terminal), print a progress line every N examples
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    progress_every: u64,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let (Some(config_path), Some(output)) = (args.config.clone(), args.output.clone()) else {
        return print_config();
    };
    let mut outputs = vec![("--output", output.as_path())];
    if let Some(report) = &args.report {
        outputs.push(("--report", report.as_path()));
    }
    if let Some(mine) = &args.mine {
        outputs.push(("--mine", mine.as_path()));
    }
    let mut inputs = vec![("--config", config_path.as_path())];
    if let Some(pool) = &args.mine_pool {
        inputs.push(("--mine-pool", pool.as_path()));
    }
    crate::cli::output::check_outputs(&outputs, &inputs)?;
    let config = GenerateConfig::load(&config_path, &args.overrides).map_err(|err| {
        let Some(e) = err.downcast_ref::<ConfigError>() else {
            return err;
        };
        let place = match &e.origin {
            Origin::File(path) => format!("{}", path.display()),
            Origin::Override(item) => format!("--set {item}"),
        };
        let key = e.key.as_ref().map_or(String::new(), |k| format!("{k}: "));
        input_error(format!("{place}: {key}{}", e.message))
    })?;
    let key = client::api_key(&config)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })?;
    let near_duplicate_cosine = config.near_duplicate_cosine;
    let mut generator = Generator::new(
        config,
        key,
        Options {
            output: output.clone(),
            replace: args.replace,
            interrupted,
        },
    )?;
    if let Some(threshold) = near_duplicate_cosine {
        let (loaded, device) = args.model.load()?;
        generator = generator.with_similar_texts(Box::new(EmbeddingDedup {
            loaded,
            device,
            vectors: Vec::new(),
            last: None,
            threshold: threshold as f32,
        }))?;
    }
    let mut reporter = Reporter::new(args.progress_every);
    let (summary, result) = generator.run(&mut |event| reporter.event(event));
    reporter.finish();
    eprint!("{}", summary_text(&summary));
    if let Some(report) = &args.report {
        gliznet::files::write_atomically(report, |file| {
            serde_json::to_writer_pretty(&mut *file, &summary)?;
            file.write_all(b"\n")?;
            Ok(())
        })
        .with_context(|| format!("--report {}", report.display()))?;
    }
    result?;
    if summary.ending == Ending::Interrupted {
        eprintln!(
            "interrupted: {} has {} whole examples; run the same command again to continue",
            output.display(),
            summary.progress.examples
        );
        return Err(Interrupted.into());
    }
    if let Some(mine) = &args.mine {
        eprintln!("mining hard negatives into {}", mine.display());
        mine_negatives(&args, &output, mine)?;
    }
    Ok(())
}

/// Runs `mine-negatives` on the finished output, with the --mine-* options.
fn mine_negatives(args: &GenerateArgs, output: &Path, mined: &Path) -> Result<()> {
    use clap::{Args as _, FromArgMatches as _};
    let mut argv: Vec<std::ffi::OsString> = vec!["mine-negatives".into()];
    let mut push = |flag: &str, value: &std::ffi::OsStr| {
        argv.push(flag.into());
        argv.push(value.to_os_string());
    };
    push("--input", output.as_os_str());
    push("--output", mined.as_os_str());
    push("--k", args.mine_k.to_string().as_ref());
    push(
        "--max-similarity",
        args.mine_max_similarity.to_string().as_ref(),
    );
    push("--device", args.model.device.as_ref());
    if let Some(pool) = &args.mine_pool {
        push("--pool", pool.as_os_str());
    }
    if let Some(model) = &args.model.model {
        push("--model", model.as_ref());
    }
    let command = crate::cli::mine::MineArgs::augment_args(clap::Command::new("mine-negatives"));
    let matches = command
        .try_get_matches_from(argv)
        .map_err(|e| input_error(format!("--mine: {e}")))?;
    let mine_args = crate::cli::mine::MineArgs::from_arg_matches(&matches)
        .map_err(|e| input_error(format!("--mine: {e}")))?;
    crate::cli::mine::run(mine_args)
}

fn print_config() -> Result<()> {
    let text = serde_json::to_string_pretty(&GenerateConfig::default())? + "\n";
    // Placeholders go to stderr, so that stdout stays one JSON document.
    let mut help = String::from("prompt template placeholders:\n");
    for (name, what) in PLACEHOLDERS {
        help.push_str(&format!("  {{{name}}}  {what}\n"));
    }
    eprint!("{help}");
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

/// Near-duplicates by meaning: the cosine of mean-pooled embeddings (as mine-negatives uses)
/// against every text kept.
struct EmbeddingDedup {
    loaded: gliznet::model::checkpoint::LoadedModel,
    device: candle_core::Device,
    vectors: Vec<Vec<f32>>,
    /// The text checked last and its vector, so that keeping it embeds it once.
    last: Option<(String, Vec<f32>)>,
    threshold: f32,
}

impl EmbeddingDedup {
    fn embed(&mut self, text: &str) -> Result<Vec<f32>> {
        if let Some((last, vector)) = &self.last {
            if last == text {
                return Ok(vector.clone());
            }
        }
        let embedder = gliznet::embed::Embedder {
            encoder: self.loaded.model.encoder(),
            tokenizer: &self.loaded.tokenizer,
            device: &self.device,
        };
        let vector = embedder.embed(&[text], 1)?.get(0)?.to_vec1::<f32>()?;
        self.last = Some((text.to_string(), vector.clone()));
        Ok(vector)
    }
}

impl gliznet::generate::SimilarTexts for EmbeddingDedup {
    fn add(&mut self, text: &str) -> Result<()> {
        let vector = self.embed(text)?;
        self.vectors.push(vector);
        Ok(())
    }

    fn is_near_duplicate(&mut self, text: &str) -> Result<bool> {
        let v = self.embed(text)?;
        Ok(self
            .vectors
            .iter()
            .any(|u| u.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>() >= self.threshold))
    }
}

/// A progress bar on a terminal, a plain line every N examples (and on each retry, fallback
/// and resumption) otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    every: u64,
    last_line: Option<usize>,
    last_time: Instant,
}

impl Reporter {
    fn new(every: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} examples  {msg}  [{elapsed_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            every,
            last_line: None,
            last_time: Instant::now(),
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Resumed(existing) => {
                let mut line = format!(
                    "continuing: {} examples already in the output, next request #{}",
                    existing.examples, existing.next_attempt
                );
                if existing.cut_bytes > 0 {
                    line.push_str(&format!(
                        " (cut an incomplete last line of {} bytes)",
                        existing.cut_bytes
                    ));
                }
                self.say(&line);
            }
            Event::Client(ClientEvent::Retry {
                attempt,
                retry,
                reason,
                wait,
            }) => self.say(&format!(
                "request #{attempt}: {reason}; retry {retry} in {:.1}s",
                wait.as_secs_f64()
            )),
            Event::Client(ClientEvent::Fallback { from, to, status }) => self.say(&format!(
                "the server answered HTTP {status} to response_format {}; using {} from now on",
                from.name(),
                to.name()
            )),
            Event::Rejected { .. } => {}
            Event::Progress(p) => self.progress(&p),
        }
    }

    fn progress(&mut self, p: &Progress) {
        let msg = format!(
            "{} rejected  {} tokens  {:.2} examples/s",
            p.rejected,
            p.prompt_tokens + p.completion_tokens,
            p.examples_per_sec()
        );
        if let Some(bar) = &self.bar {
            bar.set_length(p.target as u64);
            bar.set_position(p.examples as u64);
            bar.set_message(msg);
            return;
        }
        let due = match self.last_line {
            None => true,
            Some(last) => {
                p.examples >= last + self.every as usize
                    || self.last_time.elapsed() >= Duration::from_secs(60)
                    || p.examples >= p.target
            }
        };
        if due && self.last_line != Some(p.examples) {
            eprintln!("{}/{} examples  {msg}", p.examples, p.target);
            self.last_line = Some(p.examples);
            self.last_time = Instant::now();
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn summary_text(s: &Summary) -> String {
    let p = &s.progress;
    let mut text = format!(
        "{}: {} examples in {} ({} written now, {} there before); {} requests, {} rejected, \
         {} retries, {} prompt + {} completion tokens, {:.1}s, response_format {}\n",
        match s.ending {
            Ending::Finished => "done",
            Ending::RequestsSpent => "stopped (max_requests spent)",
            Ending::Interrupted => "interrupted",
            Ending::Failed => "failed",
        },
        p.examples,
        s.output.display(),
        p.written,
        s.existing,
        p.requests,
        p.rejected,
        p.retries,
        p.prompt_tokens,
        p.completion_tokens,
        p.elapsed_secs,
        s.structured_output
    );
    if !s.rejected_by_reason.is_empty() {
        text.push_str("rejected: ");
        text.push_str(
            &s.rejected_by_reason
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        text.push('\n');
    }
    text
}
