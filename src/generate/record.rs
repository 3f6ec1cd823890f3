//! The shape of a generated example: the JSON the LLM is asked to answer with
//! ([`answer_schema`], and [`negatives_schema`] for the second pass), and the line written for
//! each kept example ([`Record`]). The plan asks for it, quality control produces it, the
//! output stores it.

use serde::Serialize;

/// One output line: the training example and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Record {
    pub text: String,
    pub labels: Vec<String>,
    pub not_labels: Vec<String>,
    pub domain: String,
    pub length: String,
    pub style: String,
    pub model: String,
    /// The user prompt that produced the example.
    pub prompt: String,
    /// The request's number in the seed's sequence.
    pub attempt: u64,
}

/// The JSON schema the answer is asked to follow.
pub fn answer_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "labels": {"type": "array", "items": {"type": "string"}},
            "not_labels": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["text", "labels", "not_labels"],
        "additionalProperties": false
    })
}

/// The JSON schema of the second pass's answer.
pub fn negatives_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {"not_labels": {"type": "array", "items": {"type": "string"}}},
        "required": ["not_labels"],
        "additionalProperties": false
    })
}
