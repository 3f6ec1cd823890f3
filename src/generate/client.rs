//! A blocking client of an OpenAI-compatible chat-completions API, shared by the worker
//! threads: a per-request timeout, a requests-per-minute limit, retries with exponential
//! backoff and jitter (timeouts, connection errors, malformed bodies, 429 and 5xx, honouring
//! `Retry-After`), and the structured-output fallback (`json_schema`, then `json_object` with
//! the schema, then `json_object`, then plain text). A 401/403 or an unknown model is fatal.
//!
//! The API key is held in a [`Secret`] that never prints, and every text that comes from the
//! server is scrubbed of the key before it goes into an error or an event.

use super::config::{GenerateConfig, StructuredOutput};
use crate::error::input_error;
use crate::rng::Rng;
use anyhow::{anyhow, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An API key: its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(key: String) -> Self {
        Self(key)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Reads the key from the variable the config names (none when it names none). An unset or
/// empty variable is an input error naming it.
pub fn api_key(config: &GenerateConfig) -> Result<Option<Secret>> {
    let Some(var) = &config.api_key_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(key) if !key.trim().is_empty() => Ok(Some(Secret(key.trim().to_string()))),
        _ => Err(input_error(format!(
            "the API key variable {var} (api_key_env) is not set or empty; export {var}=… \
             (or set api_key_env to null for a server that needs no key)"
        ))),
    }
}

/// One chat-completions request: the prompts, the sampling, and the JSON schema the answer
/// is asked to follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The request's number in the seed's sequence (for messages).
    pub attempt: u64,
    pub system: String,
    pub user: String,
    pub temperature: f64,
    pub seed: u64,
    pub schema: serde_json::Value,
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The message content, with the tokens the server counted.
    Content {
        text: String,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// The server refused this request's content (400/422 once the output form is settled).
    Refused { status: u16, message: String },
}

/// Something the client did on the way to an answer, for progress reporting.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Retry {
        attempt: u64,
        retry: u32,
        reason: String,
        wait: Duration,
    },
    Fallback {
        from: StructuredOutput,
        to: StructuredOutput,
        status: u16,
    },
}

/// The run must stop: a refused key, an unknown model, or a request that failed after every
/// retry. `input` marks the user's mistakes (exit code 2 in the CLI).
#[derive(Debug)]
pub struct Fatal {
    pub message: String,
    pub input: bool,
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fatal {}

impl Fatal {
    pub fn into_error(self) -> anyhow::Error {
        if self.input {
            input_error(self.message)
        } else {
            anyhow!(self.message)
        }
    }
}

struct Form {
    current: StructuredOutput,
    /// Set once a request in the current form succeeded: later errors are not the form's.
    settled: bool,
}

pub struct Client {
    agent: ureq::Agent,
    url: String,
    model: String,
    key: Option<Secret>,
    key_env: Option<String>,
    max_tokens: usize,
    max_retries: u32,
    backoff: Duration,
    backoff_max: Duration,
    /// Least time between two request starts, and when the next may start.
    interval: Option<Duration>,
    next_start: Mutex<Instant>,
    form: Mutex<Form>,
}

/// Longest server message quoted in an error.
const SNIPPET: usize = 300;
/// Largest response body read.
const BODY_LIMIT: u64 = 16 << 20;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

impl Client {
    pub fn new(config: &GenerateConfig, key: Option<Secret>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(config.timeout_secs)))
            .http_status_as_error(false)
            .user_agent(concat!("gliznet/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let (current, settled) = match config.structured_output {
            StructuredOutput::Auto => (StructuredOutput::JsonSchema, false),
            fixed => (fixed, true),
        };
        Self {
            agent,
            url: format!("{}/chat/completions", config.endpoint()),
            model: config.model_name().to_string(),
            key,
            key_env: config.api_key_env.clone(),
            max_tokens: config.max_tokens,
            max_retries: config.max_retries,
            backoff: Duration::from_secs_f64(config.backoff_secs),
            backoff_max: Duration::from_secs_f64(config.backoff_max_secs),
            interval: config
                .requests_per_minute
                .map(|rpm| Duration::from_secs_f64(60.0 / rpm)),
            next_start: Mutex::new(Instant::now()),
            form: Mutex::new(Form { current, settled }),
        }
    }

    /// The output form in use now.
    pub fn form(&self) -> StructuredOutput {
        self.form
            .lock()
            .map_or(StructuredOutput::Text, |f| f.current)
    }

    /// Replaces the key wherever it appears in a text from the server or the network layer.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        if let Some(Secret(key)) = &self.key {
            if !key.is_empty() {
                text = text.replace(key.as_str(), "[redacted]");
            }
        }
        text
    }

    /// True when `text` holds the API key: a text from the server that may not be kept.
    pub fn holds_key(&self, text: &str) -> bool {
        matches!(&self.key, Some(Secret(key)) if !key.is_empty() && text.contains(key.as_str()))
    }

    /// The server's words on one line, cut at `SNIPPET` characters. Scrubbed before the cut
    /// (a key across the cut would otherwise leave its first characters).
    fn snippet(&self, body: &str) -> String {
        let scrubbed = self.scrub(body);
        let one_line = self.scrub(&scrubbed.split_whitespace().collect::<Vec<_>>().join(" "));
        let mut cut: String = one_line.chars().take(SNIPPET).collect();
        if cut.len() < one_line.len() {
            cut.push('…');
        }
        cut
    }

    fn key_hint(&self) -> String {
        match &self.key_env {
            Some(var) => format!("the key in ${var}"),
            None => "no API key (api_key_env is null)".into(),
        }
    }

    fn body(&self, plan: &Request, form: StructuredOutput) -> serde_json::Value {
        let schema = plan.schema.clone();
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": plan.system},
                {"role": "user", "content": plan.user},
            ],
            "temperature": plan.temperature,
            "max_tokens": self.max_tokens,
            "seed": plan.seed,
            "stream": false,
        });
        let format = match form {
            StructuredOutput::Auto | StructuredOutput::JsonSchema => Some(serde_json::json!({
                "type": "json_schema",
                "json_schema": {"name": "example", "strict": true, "schema": schema},
            })),
            StructuredOutput::JsonObjectSchema => {
                Some(serde_json::json!({"type": "json_object", "schema": schema}))
            }
            StructuredOutput::JsonObject => Some(serde_json::json!({"type": "json_object"})),
            StructuredOutput::Text => None,
        };
        if let (Some(format), Some(object)) = (format, body.as_object_mut()) {
            object.insert("response_format".into(), format);
        }
        body
    }

    /// Waits for the rate limit's next slot (or until `stop`).
    fn wait_for_slot(&self, stop: &AtomicBool) {
        let Some(interval) = self.interval else {
            return;
        };
        let start = {
            let Ok(mut next) = self.next_start.lock() else {
                return;
            };
            let start = (*next).max(Instant::now());
            *next = start + interval;
            start
        };
        sleep_until(start, stop);
    }

    /// Asks for one example. Retries what is worth retrying; `Err` is fatal for the run.
    /// Returns `Ok(None)` when `stop` was set while waiting.
    pub fn complete(
        &self,
        plan: &Request,
        stop: &AtomicBool,
        on_event: &dyn Fn(ClientEvent),
    ) -> Result<Option<Answer>, Fatal> {
        let mut retry = 0u32;
        let mut jitter = Rng::new(plan.seed ^ 0x6a69_7474_6572);
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            self.wait_for_slot(stop);
            let form = self.form();
            let outcome = self.send_once(plan, form);
            let (reason, retry_after) = match outcome {
                Outcome::Answer(answer) => {
                    if let Ok(mut f) = self.form.lock() {
                        if f.current == form {
                            f.settled = true;
                        }
                    }
                    return Ok(Some(answer));
                }
                Outcome::Fatal(fatal) => return Err(fatal),
                Outcome::FormRejected { status, message } => {
                    if let Some(to) = self.step_down(form) {
                        on_event(ClientEvent::Fallback {
                            from: form,
                            to,
                            status,
                        });
                        continue;
                    }
                    if status >= 500 {
                        (format!("HTTP {status}: {message}"), None)
                    } else {
                        return Ok(Some(Answer::Refused { status, message }));
                    }
                }
                Outcome::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            if retry >= self.max_retries {
                return Err(Fatal {
                    message: format!(
                        "{} failed after {} retries: {reason}",
                        self.url, self.max_retries
                    ),
                    input: false,
                });
            }
            retry += 1;
            let exp = self
                .backoff
                .saturating_mul(1u32 << (retry - 1).min(20))
                .min(self.backoff_max);
            let backoff = exp.mul_f64(0.5 + 0.5 * jitter.next_f32() as f64);
            let wait = match retry_after {
                Some(after) => after.min(MAX_RETRY_AFTER).max(backoff),
                None => backoff,
            };
            on_event(ClientEvent::Retry {
                attempt: plan.attempt,
                retry,
                reason,
                wait,
            });
            sleep_until(Instant::now() + wait, stop);
        }
    }

    /// While the form is not settled, moves to the next one; `None` once settled or at the end.
    fn step_down(&self, from: StructuredOutput) -> Option<StructuredOutput> {
        let mut f = self.form.lock().ok()?;
        if f.settled {
            return None;
        }
        if f.current != from {
            // Another worker already stepped down: try the current form.
            return Some(f.current);
        }
        let to = from.fallback()?;
        f.current = to;
        Some(to)
    }

    fn send_once(&self, plan: &Request, form: StructuredOutput) -> Outcome {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(Secret(key)) = &self.key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = match request.send_json(self.body(plan, form)) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: self.scrub(&transport_reason(&e)),
                    retry_after: None,
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let body = match response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
        {
            Ok(body) => body,
            Err(e) => {
                return Outcome::Retry {
                    reason: format!(
                        "HTTP {status}, body cut short: {}",
                        self.scrub(&transport_reason(&e))
                    ),
                    retry_after,
                }
            }
        };
        let message = self.snippet(&error_message(&body));
        match status {
            200..=299 => self.parse(&body),
            401 | 403 => Outcome::Fatal(Fatal {
                message: format!(
                    "{} refused {} (HTTP {status}): {message}",
                    self.url,
                    self.key_hint()
                ),
                input: true,
            }),
            404 => Outcome::Fatal(Fatal {
                message: format!(
                    "{} answered 404 for model {:?} (an unknown model, or a wrong base_url): {message}",
                    self.url, self.model
                ),
                input: true,
            }),
            400 | 422 if unknown_model(&body) => Outcome::Fatal(Fatal {
                message: format!(
                    "{} does not know model {:?} (HTTP {status}): {message}",
                    self.url, self.model
                ),
                input: true,
            }),
            408 | 409 | 425 | 429 => Outcome::Retry {
                reason: format!("HTTP {status}: {message}"),
                retry_after,
            },
            400 | 422 | 500 | 501 => Outcome::FormRejected { status, message },
            500..=599 => Outcome::Retry {
                reason: format!("HTTP {status}: {message}"),
                retry_after,
            },
            _ => Outcome::Fatal(Fatal {
                message: format!("{} answered HTTP {status}: {message}", self.url),
                input: false,
            }),
        }
    }

    fn parse(&self, body: &str) -> Outcome {
        let malformed = |why: &str| Outcome::Retry {
            reason: format!(
                "malformed response ({why}): {}",
                self.snippet(&self.scrub(body).chars().take(120).collect::<String>())
            ),
            retry_after: None,
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
            return malformed("not JSON");
        };
        let Some(text) = value
            .pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
        else {
            return malformed("no choices[0].message.content");
        };
        let count = |key: &str| {
            value
                .pointer(&format!("/usage/{key}"))
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
        };
        Outcome::Answer(Answer::Content {
            text: text.to_string(),
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: count("completion_tokens"),
        })
    }
}

enum Outcome {
    Answer(Answer),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 400/422/500/501: the output form may be what the server rejects.
    FormRejected {
        status: u16,
        message: String,
    },
    Fatal(Fatal),
}

fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => format!("connection error: {io}"),
        other => format!("connection error: {other}"),
    }
}

/// The `error.message` of an OpenAI-style error body, or the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            e.get("message")
                .and_then(|m| m.as_str())
                .or_else(|| e.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| body.to_string())
}

fn unknown_model(body: &str) -> bool {
    let lower = error_message(body).to_lowercase();
    lower.contains("model")
        && [
            "not found",
            "does not exist",
            "unknown model",
            "no such model",
            "decommissioned",
        ]
        .iter()
        .any(|p| lower.contains(p))
}

/// Sleeps until `deadline`, waking every 100 ms to see whether `stop` was set.
fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print_and_are_scrubbed() {
        let secret = Secret::new("sk-SENTINEL".into());
        assert!(!format!("{secret:?}").contains("SENTINEL"));
        let config = GenerateConfig::from_json(
            serde_json::json!({"base_url": "http://127.0.0.1:9/v1", "model": "m"}),
            std::path::Path::new("g.json"),
            &[],
        )
        .unwrap();
        let client = Client::new(&config, Some(secret));
        assert_eq!(
            client.snippet("bad key sk-SENTINEL given"),
            "bad key [redacted] given"
        );
        assert!(client.holds_key("The key is sk-SENTINEL and more"));
        assert!(!client.holds_key("The key is sk-SENTI"));
    }

    /// A key across the snippet's cut leaves none of its characters: it is scrubbed first.
    #[test]
    fn a_key_across_the_snippet_cut_is_scrubbed_whole() {
        let config = GenerateConfig::from_json(
            serde_json::json!({"base_url": "http://127.0.0.1:9/v1", "model": "m"}),
            std::path::Path::new("g.json"),
            &[],
        )
        .unwrap();
        let client = Client::new(&config, Some(Secret::new("sk-SENTINEL".into())));
        for pad in [SNIPPET - 8, SNIPPET - 3, 115, 118] {
            let body = format!("{} sk-SENTINEL tail", "x".repeat(pad));
            let snippet = client.snippet(&body);
            assert!(!snippet.contains("sk-S"), "{pad}: {snippet}");
            let malformed = match client.parse(&body) {
                Outcome::Retry { reason, .. } => reason,
                _ => panic!("not JSON is retried"),
            };
            assert!(!malformed.contains("sk-S"), "{pad}: {malformed}");
        }
    }

    #[test]
    fn server_errors_are_read() {
        assert_eq!(
            error_message(r#"{"error": {"message": "The model `x` does not exist"}}"#),
            "The model `x` does not exist"
        );
        assert!(unknown_model(
            r#"{"error": {"message": "The model `x` does not exist"}}"#
        ));
        assert!(!unknown_model(r#"{"error": "invalid response_format"}"#));
    }
}
