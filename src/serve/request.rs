//! `POST /v1/classify` bodies: parsed by hand from JSON so that every error names its field.
//!
//! ```json
//! {"texts": ["…", {"text": "…", "labels": ["…"]}], "labels": ["…"], "multi_label": true, "threshold": 0.3}
//! ```
//! `"text": "…"` stands for one text. A text object's own `labels` replace the shared ones.
//! A label is a name or `{"label": "…", "description": "…"}` (the model reads the description).
//! A text is kept up to `MAX_TEXT_CHARS` characters, as `predict` reads one.

use super::{ApiError, ServeOptions};
use crate::classifier::{Classifier, LabelSet};
use crate::data::labels::Label;
use crate::data::text::text_prefix;
use crate::scoring::ScoreMode;
use serde_json::{Map, Value};
use std::sync::Arc;

pub struct ClassifyRequest {
    pub texts: Vec<(String, Arc<LabelSet>)>,
    /// Each text's tokens, read once here and packed by the batcher.
    pub text_tokens: Vec<Vec<u32>>,
    /// Tokens of the texts and their labels, before packing (the batch budget's estimate).
    pub tokens: usize,
    pub mode: ScoreMode,
}

const FIELDS: [&str; 5] = ["text", "texts", "labels", "multi_label", "threshold"];

pub fn parse(
    body: &[u8],
    classifier: &Classifier,
    options: &ServeOptions,
) -> Result<ClassifyRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::invalid(format!(
            "the body must be a JSON object, not {}",
            kind(&value)
        )));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown field {unknown:?}; expected one of {}",
            FIELDS.join(", ")
        )));
    }

    let multi_label = match object.get("multi_label") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "multi_label: expected true or false, got {}",
                kind(other)
            )))
        }
    };
    let threshold = match object.get("threshold") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let t = n.as_f64().unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&t) {
                return Err(ApiError::invalid(format!(
                    "threshold: {n} is outside [0, 1]"
                )));
            }
            Some(t as f32)
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "threshold: expected a number in [0, 1], got {}",
                kind(other)
            )))
        }
    };
    if threshold.is_some() && !multi_label {
        return Err(ApiError::invalid(
            "threshold applies to multi-label scores; leave it out with \"multi_label\": false",
        ));
    }
    let mode = if multi_label {
        ScoreMode::MultiLabel {
            threshold: threshold.unwrap_or_else(|| classifier.loaded.config.default_threshold()),
        }
    } else {
        ScoreMode::SingleLabel
    };

    let shared = match object.get("labels") {
        None | Some(Value::Null) => None,
        Some(labels) => Some(Arc::new(label_set(labels, "labels", classifier, options)?)),
    };
    let entries = texts(&object)?;
    if entries.len() > options.limits.max_queue {
        return Err(ApiError::too_large(format!(
            "texts: {} texts are more than the queue holds (--max-queue {})",
            entries.len(),
            options.limits.max_queue
        )));
    }

    let mut texts = Vec::with_capacity(entries.len());
    let mut all_text_tokens = Vec::with_capacity(entries.len());
    let mut tokens = 0;
    for (place, text, own_labels) in entries {
        let text_tokens = classifier
            .loaded
            .tokenizer
            .text_tokens(&text)
            .map_err(|e| ApiError::invalid(format!("{place}: {e}")))?;
        let labels = match (own_labels, &shared) {
            (Some(labels), _) => Arc::new(label_set(
                labels,
                &format!("{place}.labels"),
                classifier,
                options,
            )?),
            (None, Some(shared)) => Arc::clone(shared),
            (None, None) => {
                return Err(ApiError::invalid(format!(
                    "{place}: no labels (give \"labels\" for all texts, or per text)"
                )))
            }
        };
        tokens += text_tokens.len().min(classifier.loaded.config.max_length)
            + labels.encoded.packed_tokens();
        texts.push((text, labels));
        all_text_tokens.push(text_tokens);
    }
    Ok(ClassifyRequest {
        texts,
        text_tokens: all_text_tokens,
        tokens,
        mode,
    })
}

/// One text of a request: its place for errors (`texts[3]`), the text, its own labels.
type TextEntry<'a> = (String, String, Option<&'a Value>);

fn texts(object: &Map<String, Value>) -> Result<Vec<TextEntry<'_>>, ApiError> {
    match (object.get("text"), object.get("texts")) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "give \"text\" (one text) or \"texts\" (a list), not both",
        )),
        (None, None) => Err(ApiError::invalid(
            "no texts: give \"text\" (one text) or \"texts\" (a list)",
        )),
        (Some(Value::String(text)), None) => Ok(vec![("text".into(), kept(text), None)]),
        (Some(other), None) => Err(ApiError::invalid(format!(
            "text: expected a string, got {}",
            kind(other)
        ))),
        (None, Some(Value::Array(items))) => {
            if items.is_empty() {
                return Err(ApiError::invalid("texts: the list is empty"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let place = format!("texts[{i}]");
                    match item {
                        Value::String(text) => Ok((place, kept(text), None)),
                        Value::Object(fields) => {
                            if let Some(unknown) =
                                fields.keys().find(|k| *k != "text" && *k != "labels")
                            {
                                return Err(ApiError::invalid(format!(
                                    "{place}: unknown field {unknown:?}; expected text and labels"
                                )));
                            }
                            match fields.get("text") {
                                Some(Value::String(text)) => Ok((
                                    place,
                                    kept(text),
                                    fields.get("labels").filter(|l| !l.is_null()),
                                )),
                                Some(other) => Err(ApiError::invalid(format!(
                                    "{place}.text: expected a string, got {}",
                                    kind(other)
                                ))),
                                None => {
                                    Err(ApiError::invalid(format!("{place}: no \"text\" field")))
                                }
                            }
                        }
                        other => Err(ApiError::invalid(format!(
                            "{place}: expected a string or an object with \"text\", got {}",
                            kind(other)
                        ))),
                    }
                })
                .collect()
        }
        (None, Some(other)) => Err(ApiError::invalid(format!(
            "texts: expected a list, got {}",
            kind(other)
        ))),
    }
}

/// What is read of a text: its first `MAX_TEXT_CHARS` characters (the model reads far fewer
/// tokens), so that a long text is not tokenized whole.
fn kept(text: &str) -> String {
    text_prefix(text).0.to_owned()
}

fn label_set(
    value: &Value,
    place: &str,
    classifier: &Classifier,
    options: &ServeOptions,
) -> Result<LabelSet, ApiError> {
    let Value::Array(items) = value else {
        return Err(ApiError::invalid(format!(
            "{place}: expected a list of strings, got {}",
            kind(value)
        )));
    };
    if items.len() > options.max_labels {
        return Err(ApiError::too_large(format!(
            "{place}: {} labels are more than one text may have (--max-labels {})",
            items.len(),
            options.max_labels
        )));
    }
    let labels = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(name) => Ok(Label::Name(name.clone())),
            Value::Object(_) => serde_json::from_value::<DescribedLabel>(item.clone())
                .map(|l| Label::Described {
                    label: l.label,
                    description: l.description,
                })
                .map_err(|e| {
                    ApiError::invalid(format!(
                        "{place}[{i}]: expected {{\"label\": …, \"description\": …}}: {e}"
                    ))
                }),
            other => Err(ApiError::invalid(format!(
                "{place}[{i}]: expected a string or a {{\"label\", \"description\"}} object, got {}",
                kind(other)
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    classifier
        .described_label_set(&labels)
        .map_err(|e| ApiError::invalid(format!("{place}: {e}")))
}

/// A label with the description the model reads with it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DescribedLabel {
    label: String,
    description: String,
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
