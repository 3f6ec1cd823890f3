//! The `generate` config: JSON, typed, validated on load, unknown keys rejected by name.
//! `key=value` overrides are applied to the JSON before it is typed (as for training), and a
//! `provider` preset fills the endpoint keys the user left out.

use crate::config::{deserialize_naming_key, ConfigError, Origin};
use crate::error::input_error;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Upper bounds that keep a typo from asking for absurd work or memory.
const MAX_EXAMPLES: usize = 10_000_000;
const MAX_CONCURRENCY: usize = 256;
const MAX_LABELS: usize = 64;

/// The eight domains of the seed's data.
pub const DEFAULT_DOMAINS: [&str; 8] = [
    "technology",
    "business",
    "healthcare",
    "education",
    "entertainment",
    "sports",
    "politics",
    "science",
];

pub const DEFAULT_STYLES: [&str; 8] = [
    "news report",
    "social media post",
    "customer review",
    "email",
    "forum question",
    "technical documentation",
    "casual conversation",
    "opinion piece",
];

/// How the answer is asked to be JSON. `auto` starts with `json_schema` and steps down
/// (`json_object` with the schema, `json_object`, then plain text) while the server rejects
/// the form, until one works; the others use one form only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    Auto,
    JsonSchema,
    JsonObjectSchema,
    JsonObject,
    Text,
}

impl StructuredOutput {
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::JsonSchema => "json_schema",
            Self::JsonObjectSchema => "json_object_schema",
            Self::JsonObject => "json_object",
            Self::Text => "text",
        }
    }

    /// The next form to try when the server rejects this one.
    pub fn fallback(self) -> Option<Self> {
        match self {
            Self::Auto | Self::JsonSchema => Some(Self::JsonObjectSchema),
            Self::JsonObjectSchema => Some(Self::JsonObject),
            Self::JsonObject => Some(Self::Text),
            Self::Text => None,
        }
    }
}

/// A length bucket: texts of `min_words..=max_words` words, drawn with weight `share`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthBucket {
    pub name: String,
    pub min_words: usize,
    pub max_words: usize,
    pub share: f64,
}

/// A temperature, or a `[low, high]` range drawn from uniformly per request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Temperature {
    Fixed(f64),
    Range([f64; 2]),
}

impl Temperature {
    pub fn bounds(self) -> (f64, f64) {
        match self {
            Self::Fixed(t) => (t, t),
            Self::Range([lo, hi]) => (lo, hi),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// `ollama`, `groq`, `openai`, `llamacpp` or `custom`: fills `base_url` and `api_key_env`
    /// when they are null.
    pub provider: String,
    /// Base URL of the OpenAI-compatible API (the part before `/chat/completions`).
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (never the key itself); null for
    /// servers that need none.
    pub api_key_env: Option<String>,
    /// Valid examples to end with (lines already in the output count).
    pub examples: usize,
    /// Fixes every randomized choice (domain, length, style, label counts, temperature, the
    /// request's own seed).
    pub seed: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests started per minute at most; null for no limit.
    pub requests_per_minute: Option<f64>,
    /// Seconds a request may take, from connecting to the last byte.
    pub timeout_secs: f64,
    /// Retries of one request after timeouts, connection errors, 429 and 5xx.
    pub max_retries: u32,
    /// First backoff in seconds; it doubles per retry (with jitter) up to `backoff_max_secs`.
    pub backoff_secs: f64,
    pub backoff_max_secs: f64,
    /// Requests to make at most (rejected answers count); null for 5 × examples + 10.
    pub max_requests: Option<usize>,
    pub max_tokens: usize,
    pub temperature: Temperature,
    pub structured_output: StructuredOutput,
    /// Domains to draw from, or null with `labels` set.
    pub domains: Vec<String>,
    /// The user's own label set to cover: each request asks for one of them (in a seeded
    /// order) among the positives. Null for free labels.
    pub labels: Option<Vec<String>>,
    pub lengths: Vec<LengthBucket>,
    /// Slack on a bucket's word limits before a text counts as outside it (0.2: 20%).
    pub length_tolerance: f64,
    pub styles: Vec<String>,
    /// Positive labels per text, `[min, max]` (a count is drawn per request).
    pub positives: [usize; 2],
    /// Hard negative labels per text, `[min, max]`.
    pub negatives: [usize; 2],
    /// Language the texts must be in (ISO 639-1); `en` is checked with a cheap stopword and
    /// script test, other codes only by script; null to skip the check.
    pub language: Option<String>,
    /// Characters a text may have at most.
    pub max_text_chars: usize,
    /// Characters a label may have at most.
    pub max_label_chars: usize,
    /// Also reject a text whose embedding cosine with a kept one is at least this (the
    /// caller supplies the embedder; gliznet's CLI uses the built-in model); null for the
    /// normalised-text check only.
    pub near_duplicate_cosine: Option<f64>,
    /// A second pass: for each kept example, ask the LLM for this many more hard negatives
    /// (0: no second pass).
    pub extra_negatives: usize,
    /// Prompt templates; null for the built-in defaults (configs/generate/*.txt).
    pub system_prompt_file: Option<PathBuf>,
    pub user_prompt_file: Option<PathBuf>,
    pub negatives_prompt_file: Option<PathBuf>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        let bucket = |name: &str, min_words, max_words, share| LengthBucket {
            name: name.into(),
            min_words,
            max_words,
            share,
        };
        Self {
            provider: "custom".into(),
            base_url: None,
            model: None,
            api_key_env: None,
            examples: 100,
            seed: 42,
            concurrency: 4,
            requests_per_minute: None,
            timeout_secs: 120.0,
            max_retries: 5,
            backoff_secs: 1.0,
            backoff_max_secs: 60.0,
            max_requests: None,
            max_tokens: 600,
            temperature: Temperature::Range([0.7, 1.0]),
            structured_output: StructuredOutput::Auto,
            domains: DEFAULT_DOMAINS.iter().map(|s| s.to_string()).collect(),
            labels: None,
            lengths: vec![
                bucket("short", 1, 20, 0.33),
                bucket("medium", 21, 50, 0.33),
                bucket("long", 51, 150, 0.34),
            ],
            length_tolerance: 0.2,
            styles: DEFAULT_STYLES.iter().map(|s| s.to_string()).collect(),
            positives: [1, 4],
            negatives: [2, 5],
            language: Some("en".into()),
            max_text_chars: 4000,
            max_label_chars: 50,
            near_duplicate_cosine: None,
            extra_negatives: 0,
            system_prompt_file: None,
            user_prompt_file: None,
            negatives_prompt_file: None,
        }
    }
}

/// What a provider preset fills in.
pub struct Preset {
    pub base_url: &'static str,
    pub api_key_env: Option<&'static str>,
}

pub fn preset(provider: &str) -> Option<Preset> {
    match provider {
        "ollama" => Some(Preset {
            base_url: "http://127.0.0.1:11434/v1",
            api_key_env: None,
        }),
        "groq" => Some(Preset {
            base_url: "https://api.groq.com/openai/v1",
            api_key_env: Some("GROQ_API_KEY"),
        }),
        "openai" => Some(Preset {
            base_url: "https://api.openai.com/v1",
            api_key_env: Some("OPENAI_API_KEY"),
        }),
        "llamacpp" => Some(Preset {
            base_url: "http://127.0.0.1:8080/v1",
            api_key_env: None,
        }),
        _ => None,
    }
}

const PROVIDERS: &str = "ollama, groq, openai, llamacpp, custom";

impl GenerateConfig {
    /// Reads a config file and applies `key=value` overrides (values parsed as JSON when they
    /// parse, as strings otherwise). An unreadable file is an input error; a bad key or value
    /// is a [`ConfigError`] naming the key and where its value came from.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| input_error(format!("cannot read config {}: {e}", path.display())))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| input_error(format!("{} is not valid JSON: {e}", path.display())))?;
        Self::from_json(json, path, overrides)
    }

    pub fn from_json(
        mut json: serde_json::Value,
        path: &Path,
        overrides: &[String],
    ) -> Result<Self> {
        let object = json
            .as_object_mut()
            .ok_or_else(|| input_error(format!("{}: expected a JSON object", path.display())))?;
        let mut overridden: Vec<(String, String)> = Vec::new();
        for item in overrides {
            let (key, value) = item.split_once('=').ok_or_else(|| ConfigError {
                origin: Origin::Override(item.clone()),
                key: None,
                message: "expected key=value".into(),
            })?;
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
            object.insert(key.to_string(), value);
            overridden.retain(|(k, _)| k != key);
            overridden.push((key.to_string(), item.clone()));
        }
        let origin_of = |key: &str| match overridden.iter().find(|(k, _)| k == key) {
            Some((_, item)) => Origin::Override(item.clone()),
            None => Origin::File(path.to_path_buf()),
        };
        let mut config: Self = deserialize_naming_key(&json, path, origin_of)?;
        config.apply_preset().map_err(|message| ConfigError {
            origin: origin_of("provider"),
            key: Some("provider".into()),
            message,
        })?;
        config.validate().map_err(|(key, message)| ConfigError {
            origin: origin_of(key),
            key: Some(key.into()),
            message,
        })?;
        Ok(config)
    }

    fn apply_preset(&mut self) -> Result<(), String> {
        if self.provider == "custom" {
            return Ok(());
        }
        let preset = preset(&self.provider)
            .ok_or_else(|| format!("unknown provider {:?} (one of: {PROVIDERS})", self.provider))?;
        if self.base_url.is_none() {
            self.base_url = Some(preset.base_url.into());
        }
        if self.api_key_env.is_none() {
            self.api_key_env = preset.api_key_env.map(String::from);
        }
        Ok(())
    }

    /// The base URL, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        self.base_url.as_deref().unwrap_or("").trim_end_matches('/')
    }

    pub fn model_name(&self) -> &str {
        self.model.as_deref().unwrap_or("")
    }

    /// Requests to make at most.
    pub fn request_budget(&self) -> usize {
        self.max_requests
            .unwrap_or_else(|| self.examples.saturating_mul(5).saturating_add(10))
    }

    /// Checks values; an error names its key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let base_url = self.base_url.as_deref().unwrap_or("");
        if base_url.is_empty() {
            return Err((
                "base_url",
                format!("is required (or set provider: one of {PROVIDERS})"),
            ));
        }
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err((
                "base_url",
                format!("{base_url:?} must start with http:// or https://"),
            ));
        }
        if self.model.as_deref().unwrap_or("").trim().is_empty() {
            return Err((
                "model",
                "is required (the model name the server knows)".into(),
            ));
        }
        if let Some(var) = &self.api_key_env {
            let valid = !var.is_empty()
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !var.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err((
                    "api_key_env",
                    "must be the name of an environment variable (letters, digits, _), not the key"
                        .into(),
                ));
            }
        }
        let bounded = [
            ("examples", self.examples, 1, MAX_EXAMPLES),
            ("concurrency", self.concurrency, 1, MAX_CONCURRENCY),
            ("max_tokens", self.max_tokens, 16, 1_000_000),
            ("max_text_chars", self.max_text_chars, 1, 1_000_000),
            ("max_label_chars", self.max_label_chars, 1, 1000),
        ];
        for (key, value, min, max) in bounded {
            if value < min || value > max {
                return Err((key, format!("{value} must be in [{min}, {max}]")));
            }
        }
        if self.max_requests == Some(0) {
            return Err(("max_requests", "must be at least 1 (or null)".into()));
        }
        if !(self.timeout_secs > 0.0 && self.timeout_secs <= 3600.0) {
            return Err(("timeout_secs", "must be in (0, 3600]".into()));
        }
        if !(self.backoff_secs >= 0.0 && self.backoff_max_secs >= self.backoff_secs)
            || self.backoff_max_secs > 3600.0
        {
            return Err((
                "backoff_secs",
                "backoff_secs must be ≥ 0 and ≤ backoff_max_secs ≤ 3600".into(),
            ));
        }
        if matches!(self.requests_per_minute, Some(r) if !(r > 0.0 && r.is_finite())) {
            return Err(("requests_per_minute", "must be positive (or null)".into()));
        }
        let (lo, hi) = self.temperature.bounds();
        if !(0.0..=2.0).contains(&lo) || !(0.0..=2.0).contains(&hi) || lo > hi {
            return Err((
                "temperature",
                "must be in [0, 2] (a number or [low, high] with low ≤ high)".into(),
            ));
        }
        let labels_given = self.labels.as_ref().is_some_and(|l| !l.is_empty());
        if self.domains.is_empty() && !labels_given {
            return Err((
                "domains",
                "give at least one domain (or a labels list)".into(),
            ));
        }
        if let Some(err) = check_list(&self.domains) {
            return Err(("domains", err));
        }
        if let Some(labels) = &self.labels {
            if labels.is_empty() {
                return Err(("labels", "is empty (use null for free labels)".into()));
            }
            if let Some(err) = check_list(labels) {
                return Err(("labels", err));
            }
        }
        if self.styles.is_empty() {
            return Err(("styles", "give at least one style".into()));
        }
        if let Some(err) = check_list(&self.styles) {
            return Err(("styles", err));
        }
        if self.lengths.is_empty() {
            return Err(("lengths", "give at least one length bucket".into()));
        }
        for (i, b) in self.lengths.iter().enumerate() {
            if b.name.trim().is_empty() || b.min_words == 0 || b.min_words > b.max_words {
                return Err((
                    "lengths",
                    format!(
                        "bucket {} ({:?}) needs a name and 1 ≤ min_words ≤ max_words",
                        i + 1,
                        b.name
                    ),
                ));
            }
            if !(b.share >= 0.0 && b.share.is_finite()) {
                return Err(("lengths", format!("bucket {:?}: share must be ≥ 0", b.name)));
            }
        }
        if self.lengths.iter().map(|b| b.share).sum::<f64>() <= 0.0 {
            return Err(("lengths", "the shares add up to 0".into()));
        }
        if !(0.0..=10.0).contains(&self.length_tolerance) {
            return Err(("length_tolerance", "must be in [0, 10]".into()));
        }
        if matches!(self.near_duplicate_cosine, Some(c) if !(c > 0.0 && c <= 1.0)) {
            return Err((
                "near_duplicate_cosine",
                "must be in (0, 1] (or null)".into(),
            ));
        }
        if self.extra_negatives > MAX_LABELS {
            return Err((
                "extra_negatives",
                format!("{} is over the limit of {MAX_LABELS}", self.extra_negatives),
            ));
        }
        for (key, [lo, hi]) in [("positives", self.positives), ("negatives", self.negatives)] {
            if lo == 0 || lo > hi || hi > MAX_LABELS {
                return Err((
                    key,
                    format!("[{lo}, {hi}] must be [min, max] with 1 ≤ min ≤ max ≤ {MAX_LABELS}"),
                ));
            }
        }
        if let Some(lang) = &self.language {
            if lang.len() != 2 || !lang.chars().all(|c| c.is_ascii_lowercase()) {
                return Err((
                    "language",
                    format!("{lang:?} must be a two-letter ISO 639-1 code (or null)"),
                ));
            }
        }
        Ok(())
    }
}

fn check_list(items: &[String]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if item.trim().is_empty() {
            return Some(format!("item {} of {} is empty", i + 1, items.len()));
        }
        if !seen.insert(item.trim().to_lowercase()) {
            return Some(format!("{:?} appears twice", item.trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str, overrides: &[&str]) -> Result<GenerateConfig> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        GenerateConfig::from_json(
            serde_json::from_str(json).unwrap(),
            Path::new("gen.json"),
            &overrides,
        )
    }

    const MINIMAL: &str = r#"{"base_url": "http://127.0.0.1:1/v1", "model": "m"}"#;

    #[test]
    fn presets_fill_the_endpoint() {
        let config = load("{}", &["provider=ollama", "model=llama3.2"]).unwrap();
        assert_eq!(config.endpoint(), "http://127.0.0.1:11434/v1");
        assert_eq!(config.api_key_env, None);
        let config = load(r#"{"model": "x"}"#, &["provider=groq"]).unwrap();
        assert_eq!(config.endpoint(), "https://api.groq.com/openai/v1");
        assert_eq!(config.api_key_env.as_deref(), Some("GROQ_API_KEY"));
        let config = load(MINIMAL, &["provider=groq"]).unwrap();
        assert_eq!(config.endpoint(), "http://127.0.0.1:1/v1");
        let err = load(MINIMAL, &["provider=olama"]).unwrap_err().to_string();
        assert!(
            err.contains("provider: unknown provider \"olama\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = load(MINIMAL, &["exampels=3"]).unwrap_err().to_string();
        assert!(err.contains("unknown field `exampels`"), "{err}");
        let err = load(r#"{"model": "m", "base_url": "x", "concurency": 2}"#, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurency"), "{err}");
        let err = load(MINIMAL, &["concurrency=0"]).unwrap_err();
        let e = err.downcast_ref::<ConfigError>().unwrap();
        assert_eq!(e.key.as_deref(), Some("concurrency"));
        assert_eq!(e.origin, Origin::Override("concurrency=0".into()));
        let err = load(MINIMAL, &["positives=[3,1]"]).unwrap_err().to_string();
        assert!(err.contains("positives"), "{err}");
        let err = load(MINIMAL, &["api_key_env=sk-abc123"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_key_env"), "{err}");
        let err = load(r#"{"model": "m"}"#, &[]).unwrap_err().to_string();
        assert!(err.contains("base_url"), "{err}");
        let err = load(MINIMAL, &["temperature=[1.0, 0.5]"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("temperature"), "{err}");
        let config = load(MINIMAL, &["temperature=0.3", "seed=7"]).unwrap();
        assert_eq!(config.temperature, Temperature::Fixed(0.3));
        assert_eq!(config.seed, 7);
        assert!(crate::error::is_input_error(&load("[1]", &[]).unwrap_err()));
    }
}
