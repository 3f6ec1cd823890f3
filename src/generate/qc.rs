//! Quality control of an LLM's answer: the JSON is found and parsed, and the example is kept
//! only when it passes every check; otherwise the first failed check is the rejection's
//! reason ([`Reject`]), counted in the summary.

use super::config::GenerateConfig;
use super::plan::Plan;
use super::record::Record;
use crate::data::labels::label_key;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// Why an answer was not kept. [`Reject::name`] is the key in the summary and the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// The server answered 400/422 to this request (e.g. its own JSON validation failed).
    ServerRejected,
    InvalidJson,
    MissingKeys,
    MalformedLabel,
    EmptyText,
    PlaceholderText,
    PromptEcho,
    TextTooLong,
    WrongLength,
    EmptyLabel,
    DuplicateLabel,
    LabelTooLong,
    PlaceholderLabel,
    LabelConflict,
    TooFewPositives,
    TooFewNegatives,
    NearDuplicate,
    WrongLanguage,
    /// The answer held the API key (a server echoing it): never written anywhere.
    SecretEcho,
}

impl Reject {
    pub fn name(self) -> &'static str {
        match self {
            Self::ServerRejected => "server_rejected",
            Self::InvalidJson => "invalid_json",
            Self::MissingKeys => "missing_keys",
            Self::MalformedLabel => "malformed_label",
            Self::EmptyText => "empty_text",
            Self::PlaceholderText => "placeholder_text",
            Self::PromptEcho => "prompt_echo",
            Self::TextTooLong => "text_too_long",
            Self::WrongLength => "wrong_length",
            Self::EmptyLabel => "empty_label",
            Self::DuplicateLabel => "duplicate_label",
            Self::LabelTooLong => "label_too_long",
            Self::PlaceholderLabel => "placeholder_label",
            Self::LabelConflict => "label_conflict",
            Self::TooFewPositives => "too_few_positives",
            Self::TooFewNegatives => "too_few_negatives",
            Self::NearDuplicate => "near_duplicate",
            Self::WrongLanguage => "wrong_language",
            Self::SecretEcho => "secret_echo",
        }
    }
}

/// The usable hard negatives of a second-pass answer, up to `config.extra_negatives`: labels
/// that are not empty, too long or placeholders, and not (after normalisation) a positive, a
/// negative already there, or a repeat.
pub fn more_negatives(content: &str, record: &Record, config: &GenerateConfig) -> Vec<String> {
    let Some(candidates) = extract_json(content).and_then(|v| string_list(v.get("not_labels")))
    else {
        return Vec::new();
    };
    let mut seen: HashSet<String> = record
        .labels
        .iter()
        .chain(&record.not_labels)
        .map(|l| label_key(l))
        .collect();
    candidates
        .into_iter()
        .filter(|l| {
            !l.is_empty()
                && l.chars().count() <= config.max_label_chars
                && !is_placeholder(l)
                && !is_malformed(l)
                && seen.insert(label_key(l))
        })
        .take(config.extra_negatives)
        .collect()
}

/// The JSON object in an answer: the whole answer, or else the text inside a ```json fence,
/// or else the span from the first `{` to the last `}`.
pub fn extract_json(content: &str) -> Option<serde_json::Value> {
    let trimmed = content.trim();
    if let Ok(value @ serde_json::Value::Object(_)) = serde_json::from_str(trimmed) {
        return Some(value);
    }
    if let Some(start) = trimmed.find("```") {
        let inner = &trimmed[start + 3..];
        let inner = inner.strip_prefix("json").unwrap_or(inner);
        if let Some(end) = inner.find("```") {
            if let Ok(value @ serde_json::Value::Object(_)) = serde_json::from_str(&inner[..end]) {
                return Some(value);
            }
        }
    }
    let (start, end) = (trimmed.find('{')?, trimmed.rfind('}')?);
    if start >= end {
        return None;
    }
    match serde_json::from_str(&trimmed[start..=end]) {
        Ok(value @ serde_json::Value::Object(_)) => Some(value),
        _ => None,
    }
}

/// Template junk instead of a label: `label1`, `not_label2`, `1. label_1`, `positive_label`,
/// `labels_453`, `…`, `string`.
pub fn is_placeholder(label: &str) -> bool {
    let lower = label.to_lowercase();
    if lower.contains("...") || lower.contains('…') {
        return true;
    }
    // The label's words, digits and punctuation aside: "1.  label_1:" → ["label"].
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    // No word of two letters or more: "", "A", "x1".
    if words.iter().all(|w| w.chars().count() < 2) {
        return true;
    }
    let has_digit = lower.chars().any(|c| c.is_ascii_digit());
    let joined = words.join(" ");
    if [
        "string",
        "none",
        "null",
        "n a",
        "na",
        "xxx",
        "todo",
        "tbd",
        "hard negative",
    ]
    .contains(&joined.as_str())
    {
        return true;
    }
    const SLOT_WORDS: [&str; 13] = [
        "label", "labels", "not", "non", "positive", "negative", "hard", "tag", "category",
        "class", "example", "item", "topic",
    ];
    // "not_label2.txt", "label_3 topic": the template's slot names, numbered.
    if has_digit && words.iter().any(|w| w.starts_with("label")) {
        return true;
    }
    // A numbered copy of a phrase: "negative_review1", "technical_issue2".
    let numbered_copy = words.len() >= 2
        && lower.ends_with(|c: char| c.is_ascii_digit())
        && lower
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .ends_with(|c: char| c.is_alphabetic());
    if numbered_copy {
        return true;
    }
    let only_slot_words = words.iter().all(|w| SLOT_WORDS.contains(w));
    // Numbered, any of them is a slot name; bare, "positive", "topic" and the like are fine,
    // but anything with "label" in it is not a label.
    only_slot_words && (has_digit || words.iter().any(|w| w.starts_with("label")))
}

/// The template's own filler instead of a text: it starts with `...` or `…`, or is a word
/// such as `text` or `string`.
pub fn is_placeholder_text(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("...")
        || t.starts_with('…')
        || ["text", "string", "your text here", "example text"]
            .contains(&t.to_lowercase().trim_end_matches('.'))
}

/// Words in a row that a text may share with its prompt before it counts as an echo.
const ECHO_WORDS: usize = 6;

/// True when the text repeats `ECHO_WORDS` words in a row of the prompt (case and
/// punctuation aside): the model wrote out its instructions instead of a text.
pub fn echoes(text: &str, prompt: &str) -> bool {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let prompt = words(prompt);
    let shingles: HashSet<&[String]> = prompt.windows(ECHO_WORDS).collect();
    words(text)
        .windows(ECHO_WORDS)
        .any(|w| shingles.contains(w))
}

/// A label that is not a short phrase: list markup (`1.`, `- `), brackets, quotes, colons,
/// commas, line breaks, or no letter at all.
pub fn is_malformed(label: &str) -> bool {
    let t = label.trim();
    if !t.chars().any(char::is_alphabetic) {
        return true;
    }
    if t.chars()
        .any(|c| "[]{}()<>:;,\"|\\*#=\n\t".contains(c) || c.is_control())
    {
        return true;
    }
    // A long number glued on: "technical_problem123456789".
    let longest_digits = t
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_digits >= 5 {
        return true;
    }
    let after_digits = t.trim_start_matches(|c: char| c.is_ascii_digit());
    (after_digits.len() < t.len() && after_digits.starts_with(['.', ')']))
        || t.starts_with(['-', '+', '.'])
}

const ENGLISH_STOPWORDS: [&str; 40] = [
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "is", "are", "was",
    "were", "be", "it", "this", "that", "i", "you", "we", "they", "my", "our", "your", "at", "by",
    "from", "as", "has", "have", "not", "but", "can", "will", "its", "their", "about", "new",
];

/// A cheap language check: the share of letters in the language's script, and for English a
/// common word among longer texts. Codes it knows nothing about pass.
pub fn in_language(text: &str, code: &str) -> bool {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.is_empty() {
        return false;
    }
    let share = |pred: &dyn Fn(char) -> bool| {
        letters.iter().filter(|&&c| pred(c)).count() as f64 / letters.len() as f64
    };
    let latin = |c: char| c.is_ascii_alphabetic() || ('\u{00C0}'..='\u{024F}').contains(&c);
    match code {
        "en" => {
            if share(&|c| c.is_ascii_alphabetic()) < 0.9 {
                return false;
            }
            let words: Vec<String> = text
                .split(|c: char| !c.is_alphanumeric() && c != '\'')
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            words.len() < 8
                || words
                    .iter()
                    .any(|w| ENGLISH_STOPWORDS.contains(&w.as_str()))
        }
        "fr" | "de" | "es" | "it" | "pt" | "nl" | "sv" | "da" | "no" | "fi" | "pl" | "cs"
        | "ro" | "hu" | "tr" | "id" | "vi" => share(&latin) >= 0.9,
        "ru" | "uk" | "bg" | "sr" => share(&|c| ('\u{0400}'..='\u{04FF}').contains(&c)) >= 0.7,
        "el" => share(&|c| ('\u{0370}'..='\u{03FF}').contains(&c)) >= 0.7,
        "ar" | "fa" | "ur" => share(&|c| ('\u{0600}'..='\u{06FF}').contains(&c)) >= 0.7,
        "he" => share(&|c| ('\u{0590}'..='\u{05FF}').contains(&c)) >= 0.7,
        "hi" => share(&|c| ('\u{0900}'..='\u{097F}').contains(&c)) >= 0.7,
        "zh" | "ja" => share(&|c| !latin(c)) >= 0.5,
        "ko" => share(&|c| ('\u{AC00}'..='\u{D7AF}').contains(&c)) >= 0.5,
        _ => true,
    }
}

/// Near-duplicate detection by a hash of the normalised text (lower case, letters and digits
/// only, whitespace collapsed).
#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashSet<u64>,
}

impl Dedup {
    pub fn key(text: &str) -> u64 {
        let norm: String = text
            .to_lowercase()
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect();
        let norm = norm.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        norm.hash(&mut h);
        h.finish()
    }

    /// False when the text (normalised) was seen before; it is remembered either way.
    pub fn insert(&mut self, text: &str) -> bool {
        self.seen.insert(Self::key(text))
    }

    pub fn contains(&self, text: &str) -> bool {
        self.seen.contains(&Self::key(text))
    }
}

fn string_list(value: Option<&serde_json::Value>) -> Option<Vec<String>> {
    value?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(|s| s.trim().to_string()))
        .collect()
}

/// Checks an answer against the plan and the config; the record to write, or the reason it is
/// rejected. A text that passes is remembered by `dedup`. Labels beyond the config's maximum
/// are dropped (the first ones are kept).
pub fn check(
    content: &str,
    plan: &Plan,
    config: &GenerateConfig,
    dedup: &mut Dedup,
) -> Result<Record, Reject> {
    let value = extract_json(content).ok_or(Reject::InvalidJson)?;
    let text = value.get("text").and_then(|t| t.as_str());
    let labels = string_list(value.get("labels"));
    let not_labels = string_list(value.get("not_labels"));
    let (Some(text), Some(mut labels), Some(mut not_labels)) = (text, labels, not_labels) else {
        return Err(Reject::MissingKeys);
    };
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(Reject::EmptyText);
    }
    if is_placeholder_text(&text) {
        return Err(Reject::PlaceholderText);
    }
    if echoes(&text, &plan.user) {
        return Err(Reject::PromptEcho);
    }
    if text.chars().count() > config.max_text_chars {
        return Err(Reject::TextTooLong);
    }
    let words = text.split_whitespace().count();
    let tol = config.length_tolerance;
    let min = (plan.length.min_words as f64 * (1.0 - tol))
        .floor()
        .max(1.0) as usize;
    let max = (plan.length.max_words as f64 * (1.0 + tol)).ceil() as usize;
    if words < min || words > max {
        return Err(Reject::WrongLength);
    }
    let mut seen = HashSet::new();
    for label in labels.iter().chain(&not_labels) {
        if label.is_empty() {
            return Err(Reject::EmptyLabel);
        }
        if label.chars().count() > config.max_label_chars {
            return Err(Reject::LabelTooLong);
        }
        if is_placeholder(label) {
            return Err(Reject::PlaceholderLabel);
        }
        if is_malformed(label) {
            return Err(Reject::MalformedLabel);
        }
    }
    let positives: HashSet<String> = labels.iter().map(|l| label_key(l)).collect();
    if not_labels.iter().any(|l| positives.contains(&label_key(l))) {
        return Err(Reject::LabelConflict);
    }
    for label in labels.iter().chain(&not_labels) {
        if !seen.insert(label_key(label)) {
            return Err(Reject::DuplicateLabel);
        }
    }
    if labels.len() < config.positives[0] {
        return Err(Reject::TooFewPositives);
    }
    if not_labels.len() < config.negatives[0] {
        return Err(Reject::TooFewNegatives);
    }
    labels.truncate(config.positives[1]);
    not_labels.truncate(config.negatives[1]);
    if let Some(code) = &config.language {
        if !in_language(&text, code) {
            return Err(Reject::WrongLanguage);
        }
    }
    if !dedup.insert(&text) {
        return Err(Reject::NearDuplicate);
    }
    Ok(Record {
        text,
        labels,
        not_labels,
        domain: plan.domain.clone(),
        length: plan.length.name.clone(),
        style: plan.style.clone(),
        model: config.model_name().to_string(),
        prompt: plan.user.clone(),
        attempt: plan.attempt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::plan::{Planner, Templates};

    fn setup() -> (GenerateConfig, Plan) {
        let config = GenerateConfig::from_json(
            serde_json::json!({"base_url": "http://x/v1", "model": "m",
                "lengths": [{"name": "short", "min_words": 1, "max_words": 20, "share": 1}],
                "positives": [1, 3], "negatives": [1, 3]}),
            std::path::Path::new("g.json"),
            &[],
        )
        .unwrap();
        let plan = Planner::new(config.clone(), Templates::load(&config).unwrap()).plan(0);
        (config, plan)
    }

    fn answer(text: &str, labels: &[&str], not_labels: &[&str]) -> String {
        serde_json::json!({"text": text, "labels": labels, "not_labels": not_labels}).to_string()
    }

    #[test]
    fn keeps_a_good_answer_and_rejects_junk_by_reason() {
        let (config, plan) = setup();
        let mut dedup = Dedup::default();
        let good = answer(
            "The new phone has a great battery and a bright screen.",
            &["technology", "product_review"],
            &["negative_review", "customer_complaint"],
        );
        let record = check(&good, &plan, &config, &mut dedup).unwrap();
        assert_eq!(record.labels, ["technology", "product_review"]);
        assert_eq!(record.model, "m");
        let cases: Vec<(String, Reject)> = vec![
            (good.clone(), Reject::NearDuplicate),
            ("not json at all".into(), Reject::InvalidJson),
            (r#"{"text": "x", "labels": ["a"]}"#.into(), Reject::MissingKeys),
            (answer("  ", &["sports"], &["music"]), Reject::EmptyText),
            (
                answer("...\nThe text is fine.", &["sports"], &["music"]),
                Reject::PlaceholderText,
            ),
            (answer(&"word ".repeat(40), &["sports"], &["music"]), Reject::WrongLength),
            (answer("A fine text here.", &["sports", ""], &["music"]), Reject::EmptyLabel),
            (
                answer("A fine text here.", &["not_label1"], &["not_label2"]),
                Reject::PlaceholderLabel,
            ),
            (answer("A fine text here.", &["label1"], &["music"]), Reject::PlaceholderLabel),
            (answer("A fine text here.", &["sports"], &["…"]), Reject::PlaceholderLabel),
            (
                answer("A fine text here.", &["Product-Review"], &["product_review"]),
                Reject::LabelConflict,
            ),
            (
                answer("A fine text here.", &["sports", "Sports"], &["music"]),
                Reject::DuplicateLabel,
            ),
            (answer("A fine text here.", &[], &["music"]), Reject::TooFewPositives),
            (answer("A fine text here.", &["sports"], &[]), Reject::TooFewNegatives),
            (
                answer("A fine text here.", &[&"x".repeat(60)], &["music"]),
                Reject::LabelTooLong,
            ),
            (
                answer("Ceci est un texte en français, sans aucun mot commun de la langue anglaise ici", &["sports"], &["music"]),
                Reject::WrongLanguage,
            ),
        ];
        for (content, reason) in cases {
            assert_eq!(
                check(&content, &plan, &config, &mut dedup).unwrap_err(),
                reason,
                "{content}"
            );
        }
        // Normalised: case and punctuation do not make a text new.
        let again = answer(
            "the NEW phone has a great battery, and a bright screen",
            &["technology"],
            &["sports"],
        );
        assert_eq!(
            check(&again, &plan, &config, &mut dedup).unwrap_err(),
            Reject::NearDuplicate
        );
    }

    #[test]
    fn json_is_found_in_fences_and_prose() {
        let v = extract_json("Sure! ```json\n{\"a\": 1}\n``` done").unwrap();
        assert_eq!(v["a"], 1);
        let v = extract_json("Here you go: {\"a\": {\"b\": 2}} hope it helps").unwrap();
        assert_eq!(v["a"]["b"], 2);
        assert!(extract_json("[1, 2]").is_none());
        assert!(extract_json("{\"a\": ").is_none());
    }

    #[test]
    fn placeholders() {
        for junk in [
            "label1",
            "not_label2",
            "Label 3",
            "positive_label",
            "hard_negative_1",
            "...",
            "…",
            "string",
            "tag2",
            "category_1",
            "1.  label_1:",
            "labels_453,097",
            "hard_negative",
            "NOT LABEL",
            "42",
            "A",
            "b",
            "x_1",
            "not_label2.txt",
            "positive_text1",
            "negative_review1",
        ] {
            assert!(is_placeholder(junk), "{junk}");
        }
        for fine in [
            "positive",
            "negative",
            "topic",
            "sports",
            "labelling",
            "not_spam",
            "covid_19",
            "web 3",
            "labor_market",
            "ai",
            "covid19",
            "web3",
            "covid_19",
        ] {
            assert!(!is_placeholder(fine), "{fine}");
        }
        for bad in [
            "technical_problem123456789",
            "[Our Team]",
            "1. sports",
            "- sports",
            "topic: sports",
            "a, b",
            "\"x\"",
            "12",
        ] {
            assert!(is_malformed(bad), "{bad}");
        }
        for fine in [
            "sports",
            "covid_19",
            "q&a",
            "e-commerce",
            "ai/ml",
            "c++",
            "web 3.0",
            "u.s. politics",
            "2024 elections",
        ] {
            assert!(!is_malformed(fine), "{fine}");
        }
        assert!(echoes(
            "This is a news report about entertainment, in English, of 1 to 60 words (short text).",
            "Write one news report about entertainment, in English, of 1 to 60 words (short text)."
        ));
        assert!(!echoes(
            "The council approved the budget for schools.",
            "Write one news report about politics, in English, of 1 to 60 words."
        ));
        assert!(is_placeholder_text("...\nThe text"));
        assert!(is_placeholder_text("Text."));
        assert!(!is_placeholder_text("Text messages cost more this year."));
    }
}
