//! The sampling plan and the prompts: every randomized choice of a request (domain, length
//! bucket, style, label counts, temperature, the label to cover, the request's seed) is drawn
//! from the config's seed and the request's number alone, so a request has the same prompt in
//! every run with that seed, resumed or not.
//!
//! Prompt templates are plain text with `{placeholder}`s; [`PLACEHOLDERS`] lists them. An
//! unknown placeholder is an error naming the file; other braces (JSON in the template) are
//! left as they are.

use super::config::{GenerateConfig, LengthBucket};
use super::record::{answer_schema, negatives_schema, Record};
use crate::error::input_error;
use crate::rng::Rng;
use anyhow::Result;
use std::path::Path;

pub const DEFAULT_SYSTEM_PROMPT: &str = include_str!("../../configs/generate/system.txt");
pub const DEFAULT_USER_PROMPT: &str = include_str!("../../configs/generate/user.txt");
pub const DEFAULT_NEGATIVES_PROMPT: &str = include_str!("../../configs/generate/negatives.txt");

/// The placeholders a template may use, with what they become.
pub const PLACEHOLDERS: [(&str, &str); 9] = [
    ("domain", "the domain drawn for this request"),
    ("style", "the style or register drawn"),
    ("length", "the length bucket's name (short, medium, long)"),
    ("min_words", "the bucket's fewest words"),
    ("max_words", "the bucket's most words"),
    ("num_positives", "how many positive labels to ask for"),
    ("num_negatives", "how many hard negative labels to ask for"),
    ("language", "the language's English name (English for en)"),
    (
        "required_label",
        "with a labels list: a sentence asking for the label to cover; empty otherwise",
    ),
];

/// The placeholders of the second pass's template (`negatives_prompt_file`).
pub const NEGATIVES_PLACEHOLDERS: [(&str, &str); 4] = [
    ("text", "the example's text"),
    ("labels", "its positive labels, comma-separated"),
    ("not_labels", "its negative labels so far, comma-separated"),
    ("count", "how many more hard negatives to ask for"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub system: String,
    pub user: String,
    pub negatives: String,
}

impl Templates {
    /// The config's template files, or the built-in defaults. Each is checked for unknown
    /// placeholders.
    pub fn load(config: &GenerateConfig) -> Result<Self> {
        let read = |path: &Option<std::path::PathBuf>,
                    default: &str,
                    known: &[(&str, &str)]|
         -> Result<String> {
            let Some(path) = path else {
                return Ok(default.to_string());
            };
            let text = std::fs::read_to_string(path).map_err(|e| {
                input_error(format!(
                    "cannot read prompt template {}: {e}",
                    path.display()
                ))
            })?;
            check_template(&text, path, known)?;
            if text.trim().is_empty() {
                return Err(input_error(format!(
                    "prompt template {} is empty",
                    path.display()
                )));
            }
            Ok(text)
        };
        Ok(Self {
            system: read(
                &config.system_prompt_file,
                DEFAULT_SYSTEM_PROMPT,
                &PLACEHOLDERS,
            )?,
            user: read(&config.user_prompt_file, DEFAULT_USER_PROMPT, &PLACEHOLDERS)?,
            negatives: read(
                &config.negatives_prompt_file,
                DEFAULT_NEGATIVES_PROMPT,
                &NEGATIVES_PLACEHOLDERS,
            )?,
        })
    }
}

fn check_template(text: &str, path: &Path, placeholders: &[(&str, &str)]) -> Result<()> {
    let mut unknown = None;
    render(text, |name| {
        let known = placeholders.iter().any(|(p, _)| *p == name);
        if !known && unknown.is_none() {
            unknown = Some(name.to_string());
        }
        known.then(String::new)
    });
    match unknown {
        Some(name) => Err(input_error(format!(
            "prompt template {}: unknown placeholder {{{name}}} (known: {})",
            path.display(),
            placeholders
                .iter()
                .map(|(p, _)| format!("{{{p}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Ok(()),
    }
}

/// Replaces each `{name}` (lower-case letters and `_`) for which `value` has a value.
fn render(template: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            if let Some(v) = value(&after[..name_len]) {
                out.push_str(&v);
                rest = &after[name_len + 1..];
                continue;
            }
        }
        out.push('{');
        rest = after;
    }
    out.push_str(rest);
    out
}

pub fn language_name(code: &str) -> &str {
    match code {
        "en" => "English",
        "fr" => "French",
        "de" => "German",
        "es" => "Spanish",
        "it" => "Italian",
        "pt" => "Portuguese",
        "nl" => "Dutch",
        "ru" => "Russian",
        "zh" => "Chinese",
        "ja" => "Japanese",
        "ko" => "Korean",
        "ar" => "Arabic",
        other => other,
    }
}

/// One request: what was drawn for it and its prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The request's number in the seeded sequence (0, 1, …).
    pub attempt: u64,
    pub domain: String,
    pub length: LengthBucket,
    pub style: String,
    pub num_positives: usize,
    pub num_negatives: usize,
    pub temperature: f64,
    /// The label of the config's list this request must cover, if there is a list.
    pub required_label: Option<String>,
    /// Sent as the request's `seed`, for servers that sample reproducibly.
    pub request_seed: u64,
    pub system: String,
    pub user: String,
}

impl Plan {
    /// The chat-completions request for this plan.
    pub fn request(&self) -> super::client::Request {
        super::client::Request {
            attempt: self.attempt,
            system: self.system.clone(),
            user: self.user.clone(),
            temperature: self.temperature,
            seed: self.request_seed,
            schema: answer_schema(),
        }
    }
}

pub struct Planner {
    config: GenerateConfig,
    templates: Templates,
    /// The labels list in the seeded order it is covered in.
    label_order: Vec<String>,
}

impl Planner {
    pub fn new(config: GenerateConfig, templates: Templates) -> Self {
        let mut label_order = config.labels.clone().unwrap_or_default();
        Rng::new(config.seed ^ 0x6c61_6265_6c73).shuffle(&mut label_order);
        Self {
            config,
            templates,
            label_order,
        }
    }

    /// The second pass's request for a kept example: more hard negatives for its labels.
    pub fn negatives_request(&self, record: &Record) -> super::client::Request {
        let plan = self.plan(record.attempt);
        let count = self.config.extra_negatives.to_string();
        let user = render(&self.templates.negatives, |name| {
            Some(match name {
                "text" => record.text.clone(),
                "labels" => record.labels.join(", "),
                "not_labels" => record.not_labels.join(", "),
                "count" => count.clone(),
                _ => return None,
            })
        });
        super::client::Request {
            attempt: record.attempt,
            system: plan.system,
            user,
            temperature: plan.temperature,
            seed: plan.request_seed ^ 1,
            schema: negatives_schema(),
        }
    }

    pub fn plan(&self, attempt: u64) -> Plan {
        let c = &self.config;
        let mut rng = Rng::new(c.seed);
        // A separate stretch of the seed's stream per request (16 draws each).
        rng.skip(attempt.wrapping_mul(16));
        let domain = if c.domains.is_empty() {
            "general".to_string()
        } else {
            c.domains[rng.below(c.domains.len())].clone()
        };
        let total: f64 = c.lengths.iter().map(|b| b.share).sum();
        let mut pick = rng.next_f32() as f64 * total;
        let mut length = c.lengths[c.lengths.len() - 1].clone();
        for bucket in &c.lengths {
            if pick < bucket.share {
                length = bucket.clone();
                break;
            }
            pick -= bucket.share;
        }
        let style = c.styles[rng.below(c.styles.len())].clone();
        let between = |rng: &mut Rng, [lo, hi]: [usize; 2]| lo + rng.below(hi - lo + 1);
        let num_positives = between(&mut rng, c.positives);
        let num_negatives = between(&mut rng, c.negatives);
        let (lo, hi) = c.temperature.bounds();
        let temperature = lo + (hi - lo) * rng.next_f32() as f64;
        // Two decimals: the prompt and the request stay readable and stable.
        let temperature = (temperature * 100.0).round() / 100.0;
        let request_seed = rng.next_u64() >> 33;
        let required_label = (!self.label_order.is_empty())
            .then(|| self.label_order[(attempt % self.label_order.len() as u64) as usize].clone());
        let language = c.language.as_deref().map_or("English", language_name);
        let values = |name: &str| -> Option<String> {
            Some(match name {
                "domain" => domain.clone(),
                "style" => style.clone(),
                "length" => length.name.clone(),
                "min_words" => length.min_words.to_string(),
                "max_words" => length.max_words.to_string(),
                "num_positives" => num_positives.to_string(),
                "num_negatives" => num_negatives.to_string(),
                "language" => language.to_string(),
                "required_label" => match &required_label {
                    Some(label) => format!(" One of them must be \"{label}\"."),
                    None => String::new(),
                },
                _ => return None,
            })
        };
        Plan {
            attempt,
            system: render(&self.templates.system, values),
            user: render(&self.templates.user, values),
            domain,
            length,
            style,
            num_positives,
            num_negatives,
            temperature,
            required_label,
            request_seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(json: serde_json::Value) -> Planner {
        let mut base = serde_json::json!({"base_url": "http://x/v1", "model": "m"});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        let config = GenerateConfig::from_json(base, Path::new("g.json"), &[]).unwrap();
        let templates = Templates::load(&config).unwrap();
        Planner::new(config, templates)
    }

    #[test]
    fn the_same_seed_and_number_give_the_same_prompt() {
        let a = planner(serde_json::json!({"seed": 3}));
        let b = planner(serde_json::json!({"seed": 3}));
        let c = planner(serde_json::json!({"seed": 4}));
        for i in 0..20 {
            assert_eq!(a.plan(i), b.plan(i));
        }
        assert!((0..20).any(|i| a.plan(i).user != c.plan(i).user));
        let p = a.plan(5);
        assert!(!p.user.contains("{domain}") && !p.user.contains("{style}"));
        assert!(p.user.contains(&p.domain) && p.user.contains(&p.style));
        assert_eq!(
            render("{\"text\": \"{domain}\"} {unknown}", |n| (n == "domain")
                .then(|| "x".into())),
            "{\"text\": \"x\"} {unknown}",
            "JSON braces are kept"
        );
        assert!((1..=4).contains(&p.num_positives));
        assert!((0.7..=1.0).contains(&p.temperature));
    }

    #[test]
    fn buckets_follow_their_shares_and_labels_are_covered_in_turn() {
        let p = planner(serde_json::json!({}));
        let mut counts = std::collections::HashMap::new();
        for i in 0..3000 {
            *counts.entry(p.plan(i).length.name).or_insert(0usize) += 1;
        }
        for name in ["short", "medium", "long"] {
            let n = counts[name];
            assert!((850..1150).contains(&n), "{name}: {n}");
        }
        let p = planner(serde_json::json!({"labels": ["a", "b", "c"]}));
        let mut seen: Vec<String> = (0..3).filter_map(|i| p.plan(i).required_label).collect();
        seen.sort();
        assert_eq!(seen, ["a", "b", "c"]);
        assert!(p.plan(0).user.contains("One of them must be"));
    }

    #[test]
    fn unknown_placeholders_are_named() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("user.txt");
        std::fs::write(&path, "Write about {domian} as {\"json\": 1}").unwrap();
        let err = check_template(
            &std::fs::read_to_string(&path).unwrap(),
            &path,
            &PLACEHOLDERS,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown placeholder {domian}"), "{err}");
        assert!(err.contains("user.txt"), "{err}");
    }
}
