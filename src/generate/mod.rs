//! Synthetic training data from an LLM behind any OpenAI-compatible chat-completions API
//! (Ollama, Groq, vLLM, llama.cpp's server, OpenAI): a seeded plan of prompts ([`plan`]), a
//! robust client ([`client`]), quality control ([`qc`]) of the examples ([`record`]) and a
//! resumable JSONL output ([`output`]). Worker threads make the requests; the calling thread
//! checks the answers, writes the lines and reports progress through a callback ([`Event`]).
//! Nothing here prints.

pub mod client;
pub mod config;
pub mod output;
pub mod plan;
pub mod qc;
pub mod record;

pub use client::ClientEvent;

use anyhow::Result;
use client::{Answer, Client, Fatal, Secret};
use config::GenerateConfig;
use output::{Existing, OutputFile};
use plan::{Planner, Templates};
use qc::{Dedup, Reject};
use record::Record;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts so far, handed to the progress callback after each answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Examples in the output: those found at the start plus those written since.
    pub examples: usize,
    pub target: usize,
    /// Written by this run.
    pub written: usize,
    pub rejected: usize,
    /// Requests answered (rejected or not) by this run.
    pub requests: usize,
    pub retries: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub elapsed_secs: f64,
}

impl Progress {
    pub fn examples_per_sec(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.written as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }
}

/// What happened, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The output already held examples; the run continues from them.
    Resumed(Existing),
    /// A retry or an output-form fallback in the client.
    Client(ClientEvent),
    Rejected {
        attempt: u64,
        reason: Reject,
    },
    Progress(Progress),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The output holds `examples` examples.
    Finished,
    /// Every allowed request was made (`max_requests`) before enough examples passed.
    RequestsSpent,
    /// Stopped by the caller's interrupt flag.
    Interrupted,
    /// Stopped by a fatal error (a refused key, an unknown model, retries exhausted, a write
    /// error).
    Failed,
}

/// The end-of-run summary (and the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub ending: Ending,
    pub endpoint: String,
    pub model: String,
    pub seed: u64,
    pub output: PathBuf,
    /// Examples found in the output at the start.
    pub existing: usize,
    #[serde(flatten)]
    pub progress: Progress,
    /// Rejected answers by reason.
    pub rejected_by_reason: BTreeMap<String, usize>,
    pub second_pass: SecondPass,
    /// The output form the run ended with.
    pub structured_output: String,
    /// The first request number of this run, and the one after its last.
    pub attempts: [u64; 2],
    pub error: Option<String>,
}

pub struct Options {
    pub output: PathBuf,
    /// Empty an existing output instead of continuing it.
    pub replace: bool,
    /// Set by the caller to stop (Ctrl-C): no new request starts, nothing more is written.
    pub interrupted: Arc<AtomicBool>,
}

/// A near-duplicate check by meaning (embedding cosine), supplied by the caller: the library
/// knows no model. Used on the calling thread, on each example about to be written.
pub trait SimilarTexts {
    /// Remembers a text that was kept (or was in the output already).
    fn add(&mut self, text: &str) -> Result<()>;
    /// True when `text` is a near-duplicate of a text remembered.
    fn is_near_duplicate(&mut self, text: &str) -> Result<bool>;
}

/// A run, set up: the config checked, the templates read, the output opened (and locked).
pub struct Generator {
    config: GenerateConfig,
    planner: Arc<Planner>,
    client: Arc<Client>,
    out: OutputFile,
    dedup: Arc<Mutex<Dedup>>,
    existing: Existing,
    options: Options,
    similar: Option<Box<dyn SimilarTexts>>,
}

enum Message {
    Checked(Box<Checked>),
    Client(ClientEvent),
    Fatal(Box<Failed>),
}

/// A request that ended the run, with what it cost: a refused key or an unknown model is an
/// answer too, and counts as a request.
struct Failed {
    fatal: Fatal,
    /// Requests made for the example: 1, or 2 when the second pass failed.
    requests: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// A request's answer, checked by the worker (and completed by the second pass).
struct Checked {
    attempt: u64,
    result: Result<Record, Reject>,
    /// Requests answered: 1, or 2 with a second pass.
    requests: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Negatives the second pass added, when it ran.
    added: Option<usize>,
}

/// The second pass's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecondPass {
    pub requests: usize,
    pub negatives_added: usize,
    /// Answers that added no usable negative (the example is kept as it was).
    pub unusable_answers: usize,
}

impl Generator {
    /// Reads the templates, opens the output (continuing it, or emptying it with
    /// `options.replace`) and builds the client. The API key comes from the caller.
    pub fn new(config: GenerateConfig, key: Option<Secret>, options: Options) -> Result<Self> {
        let templates = Templates::load(&config)?;
        let mut dedup = Dedup::default();
        let (out, existing) = OutputFile::open(&options.output, options.replace, &mut dedup)?;
        let client = Arc::new(Client::new(&config, key));
        Ok(Self {
            planner: Arc::new(Planner::new(config.clone(), templates)),
            config,
            client,
            out,
            dedup: Arc::new(Mutex::new(dedup)),
            existing,
            options,
            similar: None,
        })
    }

    /// Adds the check by meaning; the texts already in the output are handed to it first.
    pub fn with_similar_texts(mut self, mut similar: Box<dyn SimilarTexts>) -> Result<Self> {
        if self.existing.examples > 0 {
            let text = std::fs::read_to_string(&self.options.output).map_err(|e| {
                anyhow::anyhow!("cannot read {}: {e}", self.options.output.display())
            })?;
            for line in text.lines() {
                if let Ok(record) = serde_json::from_str::<Record>(line) {
                    similar.add(&record.text)?;
                }
            }
        }
        self.similar = Some(similar);
        Ok(self)
    }

    /// Runs to the end. The summary is returned whatever happened; the error, if any, beside
    /// it.
    pub fn run(mut self, on_event: &mut dyn FnMut(Event)) -> (Summary, Result<()>) {
        let start = Instant::now();
        let first_attempt = self.existing.next_attempt;
        if self.existing.examples > 0 || self.existing.cut_bytes > 0 {
            on_event(Event::Resumed(self.existing.clone()));
        }
        let mut progress = Progress {
            examples: self.existing.examples,
            target: self.config.examples,
            ..Progress::default()
        };
        let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
        let mut second_pass = SecondPass::default();
        let mut result = Ok(());
        let mut ending = Ending::Finished;
        let last_attempt = first_attempt.saturating_add(self.config.request_budget() as u64);
        let next = Arc::new(AtomicU64::new(first_attempt));
        let stop = Arc::new(AtomicBool::new(false));
        // Requests are started only while fewer are in flight than examples are missing, so
        // that a run does not pay for answers it will not use.
        let flow = Arc::new(Flow {
            missing: AtomicUsize::new(progress.target.saturating_sub(progress.examples)),
            in_flight: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel::<Message>();
        if progress.examples < progress.target {
            for _ in 0..self.config.concurrency {
                let (next, stop, tx) = (Arc::clone(&next), Arc::clone(&stop), tx.clone());
                let shared = Shared {
                    planner: Arc::clone(&self.planner),
                    client: Arc::clone(&self.client),
                    config: Arc::new(self.config.clone()),
                    dedup: Arc::clone(&self.dedup),
                    flow: Arc::clone(&flow),
                };
                // Workers are not joined: one waiting on a slow server must not hold up an
                // interrupted run. Whatever they send after the end is dropped.
                std::thread::spawn(move || worker(&shared, &next, last_attempt, &stop, &tx));
            }
        }
        drop(tx);
        while progress.examples < progress.target {
            if self.options.interrupted.load(Ordering::SeqCst) {
                ending = Ending::Interrupted;
                break;
            }
            let message = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    ending = Ending::RequestsSpent;
                    break;
                }
            };
            match message {
                Message::Client(event) => {
                    if matches!(event, ClientEvent::Retry { .. }) {
                        progress.retries += 1;
                    }
                    on_event(Event::Client(event));
                    continue;
                }
                Message::Fatal(failed) => {
                    progress.requests += failed.requests;
                    progress.prompt_tokens += failed.prompt_tokens;
                    progress.completion_tokens += failed.completion_tokens;
                    second_pass.requests += usize::from(failed.requests > 1);
                    progress.elapsed_secs = start.elapsed().as_secs_f64();
                    ending = Ending::Failed;
                    result = Err(failed.fatal.into_error());
                    break;
                }
                Message::Checked(checked) => {
                    if self.options.interrupted.load(Ordering::SeqCst) {
                        ending = Ending::Interrupted;
                        break;
                    }
                    progress.requests += checked.requests;
                    progress.prompt_tokens += checked.prompt_tokens;
                    progress.completion_tokens += checked.completion_tokens;
                    if let Some(added) = checked.added {
                        second_pass.requests += 1;
                        second_pass.negatives_added += added;
                        second_pass.unusable_answers += usize::from(added == 0);
                    }
                    let mut checked_result = checked.result;
                    if let (Ok(record), Some(similar)) = (&checked_result, &mut self.similar) {
                        match similar.is_near_duplicate(&record.text) {
                            Ok(true) => checked_result = Err(Reject::NearDuplicate),
                            Ok(false) => {
                                if let Err(e) = similar.add(&record.text) {
                                    ending = Ending::Failed;
                                    result = Err(e);
                                    break;
                                }
                            }
                            Err(e) => {
                                ending = Ending::Failed;
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    match checked_result {
                        Ok(record) => {
                            if let Err(e) = self.out.append(&record) {
                                ending = Ending::Failed;
                                result = Err(e);
                                break;
                            }
                            progress.written += 1;
                            progress.examples += 1;
                        }
                        Err(reason) => {
                            progress.rejected += 1;
                            *by_reason.entry(reason.name().to_string()).or_default() += 1;
                            on_event(Event::Rejected {
                                attempt: checked.attempt,
                                reason,
                            });
                        }
                    }
                    flow.missing.store(
                        progress.target.saturating_sub(progress.examples),
                        Ordering::SeqCst,
                    );
                    flow.in_flight.fetch_sub(1, Ordering::SeqCst);
                    progress.elapsed_secs = start.elapsed().as_secs_f64();
                    on_event(Event::Progress(progress.clone()));
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.out.sync() {
            if result.is_ok() {
                ending = Ending::Failed;
                result = Err(e);
            }
        }
        if ending == Ending::RequestsSpent {
            result = Err(anyhow::anyhow!(
                "made all {} requests allowed (max_requests) and have {} of {} examples; \
                 {} answers were rejected (see the summary); run again to continue",
                self.config.request_budget(),
                progress.examples,
                progress.target,
                progress.rejected
            ));
        }
        progress.elapsed_secs = start.elapsed().as_secs_f64();
        let summary = Summary {
            ending,
            endpoint: self.config.endpoint().to_string(),
            model: self.config.model_name().to_string(),
            seed: self.config.seed,
            output: self.options.output.clone(),
            existing: self.existing.examples,
            progress,
            rejected_by_reason: by_reason,
            second_pass,
            structured_output: self.client.form().name().to_string(),
            attempts: [first_attempt, next.load(Ordering::SeqCst).min(last_attempt)],
            error: result.as_ref().err().map(|e| format!("{e:#}")),
        };
        (summary, result)
    }
}

/// Requests in flight against examples still missing.
struct Flow {
    missing: AtomicUsize,
    /// Requests started whose answers the main thread has not checked yet.
    in_flight: AtomicUsize,
}

/// What the workers share.
struct Shared {
    planner: Arc<Planner>,
    client: Arc<Client>,
    config: Arc<GenerateConfig>,
    dedup: Arc<Mutex<Dedup>>,
    flow: Arc<Flow>,
}

fn worker(
    shared: &Shared,
    next: &AtomicU64,
    last_attempt: u64,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Message>,
) {
    let events = tx.clone();
    let on_event = move |e: ClientEvent| {
        let _ = events.send(Message::Client(e));
    };
    let flow = &shared.flow;
    while !stop.load(Ordering::SeqCst) {
        let missing = flow.missing.load(Ordering::SeqCst);
        let started = flow
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < missing).then_some(n + 1)
            });
        if started.is_err() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let attempt = next.fetch_add(1, Ordering::SeqCst);
        if attempt >= last_attempt {
            flow.in_flight.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let plan = shared.planner.plan(attempt);
        let checked = match request_and_check(shared, &plan, stop, &on_event) {
            Ok(Some(checked)) => checked,
            Ok(None) => return,
            Err(failed) => {
                stop.store(true, Ordering::SeqCst);
                let _ = tx.send(Message::Fatal(failed));
                return;
            }
        };
        if tx.send(Message::Checked(Box::new(checked))).is_err() {
            return;
        }
    }
}

/// True when the record's text or one of its labels holds the API key.
fn holds_key(client: &Client, record: &Record) -> bool {
    std::iter::once(&record.text)
        .chain(&record.labels)
        .chain(&record.not_labels)
        .any(|words| client.holds_key(words))
}

/// One request, its check, and the second pass for a kept example. `None` when stopped.
fn request_and_check(
    shared: &Shared,
    plan: &plan::Plan,
    stop: &AtomicBool,
    on_event: &dyn Fn(ClientEvent),
) -> Result<Option<Checked>, Box<Failed>> {
    let answer = shared
        .client
        .complete(&plan.request(), stop, on_event)
        .map_err(|fatal| {
            Box::new(Failed {
                fatal,
                requests: 1,
                prompt_tokens: 0,
                completion_tokens: 0,
            })
        })?;
    let Some(answer) = answer else {
        return Ok(None);
    };
    let mut checked = Checked {
        attempt: plan.attempt,
        result: Err(Reject::ServerRejected),
        requests: 1,
        prompt_tokens: 0,
        completion_tokens: 0,
        added: None,
    };
    if let Answer::Content {
        text,
        prompt_tokens,
        completion_tokens,
    } = answer
    {
        checked.prompt_tokens = prompt_tokens;
        checked.completion_tokens = completion_tokens;
        checked.result = if shared.client.holds_key(&text) {
            Err(Reject::SecretEcho)
        } else {
            match shared.dedup.lock() {
                Ok(mut dedup) => qc::check(&text, plan, &shared.config, &mut dedup),
                Err(_) => Err(Reject::NearDuplicate),
            }
        };
        // The key may also come in escaped in the JSON (`\u002d`, `\/`): the parsed words are
        // checked too.
        if matches!(&checked.result, Ok(record) if holds_key(&shared.client, record)) {
            checked.result = Err(Reject::SecretEcho);
        }
    }
    let Ok(record) = &mut checked.result else {
        return Ok(Some(checked));
    };
    if shared.config.extra_negatives == 0 {
        return Ok(Some(checked));
    }
    let request = shared.planner.negatives_request(record);
    let answer = shared
        .client
        .complete(&request, stop, on_event)
        .map_err(|fatal| {
            Box::new(Failed {
                fatal,
                requests: 2,
                prompt_tokens: checked.prompt_tokens,
                completion_tokens: checked.completion_tokens,
            })
        })?;
    let Some(answer) = answer else {
        return Ok(None);
    };
    checked.requests += 1;
    let mut added = Vec::new();
    if let Answer::Content {
        text,
        prompt_tokens,
        completion_tokens,
    } = answer
    {
        checked.prompt_tokens += prompt_tokens;
        checked.completion_tokens += completion_tokens;
        added = qc::more_negatives(&text, record, &shared.config);
        added.retain(|label| !shared.client.holds_key(label));
    }
    checked.added = Some(added.len());
    record.not_labels.extend(added);
    Ok(Some(checked))
}
