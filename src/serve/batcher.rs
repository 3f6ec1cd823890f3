//! Dynamic batching: texts from concurrent requests wait in one queue; a worker thread (off
//! the async runtime) takes whole requests until the batch limits or the wait limit is
//! reached, scores them in one call (sorted by length inside, as `predict` does), and hands
//! each request its own results in its own order.

use super::metrics::Metrics;
use crate::classifier::{Classifier, LabelSet};
use crate::scoring::{score, LabelScore, ScoreMode};
use anyhow::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Texts scored together (from one or more requests).
    pub max_texts: usize,
    /// Sequences per encoder pass; the texts scored together are sorted by length first.
    pub encoder_batch: usize,
    /// Tokens (texts and their labels, estimated before packing) in one encoder call.
    pub max_tokens: usize,
    /// How long the first request of a batch waits for others.
    pub max_wait: Duration,
    /// Texts accepted and not yet answered; beyond it requests are refused (503).
    pub max_queue: usize,
}

/// One request's texts, each with its labels and its token estimate.
pub struct Job {
    pub texts: Vec<(String, Arc<LabelSet>)>,
    /// Each text's tokens, in the order of `texts`.
    pub text_tokens: Vec<Vec<u32>>,
    pub tokens: usize,
    pub mode: ScoreMode,
    pub reply: oneshot::Sender<Answer>,
}

/// A job's texts handed back with their scores (in the same order), or why scoring failed.
pub struct Answer {
    pub texts: Vec<(String, Arc<LabelSet>)>,
    pub scores: Result<Vec<Vec<LabelScore>>, String>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds too many texts now; try again later.
    QueueFull,
    /// The worker has stopped (the server is shutting down).
    Stopped,
}

pub struct Batcher {
    sender: Mutex<Option<Sender<Job>>>,
    queued_texts: Arc<AtomicUsize>,
    max_queue: usize,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Batcher {
    pub fn start(classifier: Arc<Classifier>, limits: BatchLimits, metrics: Arc<Metrics>) -> Self {
        let (sender, receiver) = channel();
        let queued_texts = Arc::new(AtomicUsize::new(0));
        let queued = Arc::clone(&queued_texts);
        let worker = std::thread::Builder::new()
            .name("gliznet-batcher".into())
            .spawn(move || work(&classifier, limits, &receiver, &queued, &metrics))
            .expect("spawning the batching thread");
        Self {
            sender: Mutex::new(Some(sender)),
            queued_texts,
            max_queue: limits.max_queue,
            worker: Mutex::new(Some(worker)),
        }
    }

    /// Texts accepted and not yet answered.
    pub fn queued_texts(&self) -> usize {
        self.queued_texts.load(Ordering::SeqCst)
    }

    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        let n = job.texts.len();
        let accepted =
            self.queued_texts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                    (queued + n <= self.max_queue).then_some(queued + n)
                });
        if accepted.is_err() {
            return Err(Refused::QueueFull);
        }
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        match sender.as_ref().map(|s| s.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => {
                self.queued_texts.fetch_sub(n, Ordering::SeqCst);
                Err(Refused::Stopped)
            }
        }
    }

    /// Stops taking jobs, lets the worker finish the queued ones, and waits for it.
    pub fn stop(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = worker.join();
        }
    }
}

fn work(
    classifier: &Classifier,
    limits: BatchLimits,
    receiver: &Receiver<Job>,
    queued: &AtomicUsize,
    metrics: &Metrics,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let deadline = Instant::now() + limits.max_wait;
        let (mut texts, mut tokens) = (first.texts.len(), first.tokens);
        let mut jobs = vec![first];
        while texts < limits.max_texts && tokens < limits.max_tokens {
            let wait = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(job) => {
                    if texts + job.texts.len() > limits.max_texts
                        || tokens + job.tokens > limits.max_tokens
                    {
                        carried = Some(job);
                        break;
                    }
                    texts += job.texts.len();
                    tokens += job.tokens;
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        run_batch(classifier, limits, jobs, queued, metrics);
    }
}

fn run_batch(
    classifier: &Classifier,
    limits: BatchLimits,
    jobs: Vec<Job>,
    queued: &AtomicUsize,
    metrics: &Metrics,
) {
    // A client that went away frees its work.
    let (live, gone): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| !j.reply.is_closed());
    let gone_texts: usize = gone.iter().map(|j| j.texts.len()).sum();
    queued.fetch_sub(gone_texts, Ordering::SeqCst);
    metrics.cancelled_texts.inc_by(gone_texts as u64);
    if live.is_empty() {
        metrics
            .queue_texts
            .set(queued.load(Ordering::SeqCst) as i64);
        return;
    }
    let items: Vec<(&[u32], &crate::tokenizer::EncodedLabels)> = live
        .iter()
        .flat_map(|j| {
            j.text_tokens
                .iter()
                .zip(&j.texts)
                .map(|(tokens, (_, l))| (tokens.as_slice(), &l.encoded))
        })
        .collect();
    let texts = items.len();
    let tokens: usize = live.iter().map(|j| j.tokens).sum();
    let start = Instant::now();
    let result = classifier.logits_of_tokens(&items, limits.encoder_batch.max(1));
    let elapsed = start.elapsed().as_secs_f64();
    metrics.batch_texts.observe(texts as f64);
    metrics.batch_tokens.observe(tokens as f64);
    metrics.texts_scored.inc_by(texts as u64);
    if elapsed > 0.0 {
        metrics.texts_per_second.set(texts as f64 / elapsed);
    }
    match result {
        Ok(all) => {
            let mut all = all.into_iter();
            for job in live {
                let scores = all
                    .by_ref()
                    .take(job.texts.len())
                    .map(|r| score(&r.logits, job.mode))
                    .collect();
                queued.fetch_sub(job.texts.len(), Ordering::SeqCst);
                let _ = job.reply.send(Answer {
                    texts: job.texts,
                    scores: Ok(scores),
                });
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            for job in live {
                queued.fetch_sub(job.texts.len(), Ordering::SeqCst);
                let _ = job.reply.send(Answer {
                    texts: job.texts,
                    scores: Err(message.clone()),
                });
            }
        }
    }
    metrics
        .queue_texts
        .set(queued.load(Ordering::SeqCst) as i64);
}
