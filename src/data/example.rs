//! Training and evaluation examples, read from either public JSONL format:
//!
//! - GliZNet triplets: `{"text" | "sentence": …, "labels": [positives], "not_labels": [negatives]}`
//! - GLiClass: `{"text": …, "all_labels": [candidates], "true_labels": [positives]}`
//!
//! A label in `labels`/`not_labels` may be `{"label": …, "description": …}`, read as
//! `label: description`.
//!
//! An invalid example (empty text or label, a label both positive and negative, no label at
//! all) is an error naming file and line, or, with [`InvalidExamples::Skip`], a counted skip.

use crate::data::jsonl::JsonlReader;
use crate::data::labels::{label_key, Label};
use crate::error::input_error;
use crate::rng::Rng;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub text: String,
    pub labels: Vec<String>,
    pub not_labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvalidExamples {
    #[default]
    Error,
    Skip,
}

/// Invalid examples skipped, counted by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipReport {
    pub by_reason: BTreeMap<String, usize>,
}

impl SkipReport {
    pub fn total(&self) -> usize {
        self.by_reason.values().sum()
    }

    pub fn summary(&self) -> String {
        self.by_reason
            .iter()
            .map(|(reason, n)| format!("{n} × {reason}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One line as read; fields other than these are ignored.
#[derive(Deserialize)]
struct RawExample {
    text: Option<String>,
    sentence: Option<String>,
    labels: Option<Vec<Label>>,
    not_labels: Option<Vec<Label>>,
    all_labels: Option<Vec<String>>,
    true_labels: Option<Vec<String>>,
    /// Single-label evaluation data: the candidate set, of which `labels` holds the gold.
    candidates: Option<Vec<String>>,
}

/// Labels as the model reads them: a described label (`{"label", "description"}`) is trained
/// on as `name: description`.
fn readings(labels: Option<Vec<Label>>) -> Option<Vec<String>> {
    labels.map(|labels| labels.iter().map(Label::reading).collect())
}

impl RawExample {
    fn into_example(self) -> Result<Example, String> {
        let (labels, not_labels) = (readings(self.labels), readings(self.not_labels));
        let text = match (self.text, self.sentence) {
            (Some(t), None) | (None, Some(t)) => t,
            (Some(_), Some(_)) => return Err("both \"text\" and \"sentence\"".into()),
            (None, None) => return Err("no \"text\" (or \"sentence\") field".into()),
        };
        let (labels, not_labels) = match (labels, not_labels, self.all_labels, self.true_labels) {
            (labels, None, None, None) if self.candidates.is_some() => split_candidates(
                &labels.unwrap_or_default(),
                &self.candidates.unwrap_or_default(),
            )
            .map_err(|missing| format!("gold label {missing:?} is not among the candidates"))?,
            (labels, not_labels, None, None) if self.candidates.is_none() => {
                (labels.unwrap_or_default(), not_labels.unwrap_or_default())
            }
            (None, None, Some(all), Some(truth)) if self.candidates.is_none() => {
                split_candidates(&truth, &all)
                    .map_err(|missing| format!("true label {missing:?} is not among all_labels"))?
            }
            _ => {
                return Err(
                    "mixes formats: use labels/not_labels (GliZNet), labels/candidates, or \
                            all_labels/true_labels (GLiClass)"
                        .into(),
                )
            }
        };
        let example = Example {
            text,
            labels: labels.into_iter().map(|l| l.trim().to_string()).collect(),
            not_labels: not_labels
                .into_iter()
                .map(|l| l.trim().to_string())
                .collect(),
        };
        example.validate()?;
        Ok(example)
    }
}

/// The candidates split into the gold ones and the others, each gold label found by
/// [`label_key`] (like every label check) and spelt as its candidate is, so that one label is
/// never two; or the first gold label missing from the candidates.
pub fn split_candidates(
    gold: &[String],
    candidates: &[String],
) -> Result<(Vec<String>, Vec<String>), String> {
    let key = |l: &String| label_key(l);
    let candidate_keys: HashSet<String> = candidates.iter().map(key).collect();
    if let Some(missing) = gold.iter().find(|l| !candidate_keys.contains(&key(l))) {
        return Err(missing.clone());
    }
    let gold_keys: HashSet<String> = gold.iter().map(key).collect();
    Ok(candidates
        .iter()
        .cloned()
        .partition(|c| gold_keys.contains(&key(c))))
}

impl Example {
    pub fn validate(&self) -> Result<(), String> {
        if self.text.trim().is_empty() {
            return Err("empty text".into());
        }
        if self.labels.is_empty() && self.not_labels.is_empty() {
            return Err("no labels".into());
        }
        for (field, labels) in [("labels", &self.labels), ("not_labels", &self.not_labels)] {
            if let Some(i) = labels.iter().position(|l| l.trim().is_empty()) {
                return Err(format!(
                    "{field}: label {} of {} is empty",
                    i + 1,
                    labels.len()
                ));
            }
        }
        let positives: HashSet<String> = self.labels.iter().map(|l| label_key(l)).collect();
        if let Some(both) = self
            .not_labels
            .iter()
            .find(|l| positives.contains(&label_key(l)))
        {
            return Err(format!("label {both:?} is both positive and negative"));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = self
            .labels
            .iter()
            .chain(&self.not_labels)
            .find(|l| !seen.insert(label_key(l)))
        {
            return Err(format!("duplicate label {dup:?}"));
        }
        Ok(())
    }

    /// All labels with their targets, in the order they are scored by `eval` and validation:
    /// sorted by name, so that a label's position in the sequence says nothing about whether it
    /// is gold (the model reads positions, and gold-first packing would flatter it).
    pub fn targets(&self) -> Vec<(&str, bool)> {
        let mut targets: Vec<(&str, bool)> = self
            .labels
            .iter()
            .map(|l| (l.as_str(), true))
            .chain(self.not_labels.iter().map(|l| (l.as_str(), false)))
            .collect();
        targets.sort_by(|a, b| a.0.cmp(b.0));
        targets
    }

    /// The labels of one training view: shuffled, and subsampled to at most `max_labels`
    /// keeping positives and negatives in proportion (at least one of each kind present).
    pub fn sample_targets(&self, max_labels: usize, rng: &mut Rng) -> Vec<(String, bool)> {
        let mut positives: Vec<&String> = self.labels.iter().collect();
        let mut negatives: Vec<&String> = self.not_labels.iter().collect();
        rng.shuffle(&mut positives);
        rng.shuffle(&mut negatives);
        let total = positives.len() + negatives.len();
        if total > max_labels {
            let mut keep_pos = (positives.len() * max_labels)
                .div_ceil(total)
                .min(positives.len());
            if keep_pos == max_labels && !negatives.is_empty() && max_labels > 1 {
                keep_pos -= 1;
            }
            positives.truncate(keep_pos);
            negatives.truncate(max_labels - keep_pos);
        }
        let mut targets: Vec<(String, bool)> = positives
            .into_iter()
            .map(|l| (l.clone(), true))
            .chain(negatives.into_iter().map(|l| (l.clone(), false)))
            .collect();
        rng.shuffle(&mut targets);
        targets
    }
}

/// Streams the examples of a file: each item is the line number and the example, or the
/// reason it is invalid (I/O and JSON errors end the stream with an error naming the line).
pub struct ExampleReader {
    reader: JsonlReader<RawExample>,
}

impl ExampleReader {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            reader: JsonlReader::open(path)?,
        })
    }

    /// `source:line`, for messages about an item.
    pub fn location(&self, line: usize) -> String {
        self.reader.location(line)
    }

    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes_read()
    }

    /// Examples so far whose text was cut where reading stops (`MAX_TEXT_CHARS`).
    pub fn texts_cut(&self) -> usize {
        self.reader.texts_cut()
    }
}

impl Iterator for ExampleReader {
    type Item = Result<(usize, Result<Example, String>)>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(
            self.reader
                .next()?
                .map(|(line, raw)| (line, raw.into_example())),
        )
    }
}

/// Reads every example of a file, in order.
pub fn read_examples(path: &Path, invalid: InvalidExamples) -> Result<(Vec<Example>, SkipReport)> {
    let mut examples = Vec::new();
    let mut skipped = SkipReport::default();
    let mut reader = ExampleReader::open(path)?;
    while let Some(item) = reader.next() {
        let (line, parsed) = item?;
        match parsed {
            Ok(example) => examples.push(example),
            Err(reason) if invalid == InvalidExamples::Skip => {
                let kind = reason.split(" \"").next().unwrap_or(&reason).to_string();
                *skipped.by_reason.entry(kind).or_default() += 1;
            }
            Err(reason) => return Err(input_error(format!("{}: {reason}", reader.location(line)))),
        }
    }
    if examples.is_empty() {
        return Err(input_error(format!(
            "{}: no usable examples",
            path.display()
        )));
    }
    Ok((examples, skipped))
}

/// Splits off a validation set: a deterministic shuffle by `seed`, then the last `fraction`.
pub fn split_validation(
    mut examples: Vec<Example>,
    fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    Rng::new(seed).shuffle(&mut examples);
    let n_val = ((examples.len() as f64 * fraction).round() as usize)
        .clamp(1, examples.len().saturating_sub(1).max(1));
    let validation = examples.split_off(examples.len() - n_val);
    (examples, validation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read(contents: &str, invalid: InvalidExamples) -> Result<(Vec<Example>, SkipReport)> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        read_examples(file.path(), invalid)
    }

    #[test]
    fn reads_both_formats() {
        let (examples, _) = read(
            "{\"text\": \"a\", \"labels\": [\"x\"], \"not_labels\": [\"y\"]}\n\
             {\"sentence\": \"b\", \"labels\": [\"x\"]}\n\
             {\"text\": \"c\", \"all_labels\": [\"x\", \"y\", \"z\"], \"true_labels\": [\"y\"]}\n",
            InvalidExamples::Error,
        )
        .unwrap();
        assert_eq!(examples[0].targets(), vec![("x", true), ("y", false)]);
        assert_eq!(examples[1].text, "b");
        assert_eq!(examples[2].labels, vec!["y"]);
        assert_eq!(examples[2].not_labels, vec!["x", "z"]);
    }

    #[test]
    fn invalid_examples_error_with_line_or_are_counted() {
        let contents = "{\"text\": \"a\", \"labels\": [\"x\"]}\n\
                        {\"text\": \"b\", \"labels\": [\"x\"], \"not_labels\": [\"X\"]}\n\
                        {\"text\": \"c\", \"labels\": []}\n\
                        {\"text\": \"d\", \"labels\": [\"\"]}\n\
                        {\"text\": \"e\", \"all_labels\": [\"x\"], \"true_labels\": [\"q\"]}\n";
        let err = read(contents, InvalidExamples::Error)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(":2: label \"X\" is both positive and negative"),
            "{err}"
        );
        let (examples, skipped) = read(contents, InvalidExamples::Skip).unwrap();
        assert_eq!(examples.len(), 1);
        assert_eq!(skipped.total(), 4);
        let err = read(
            "{\"text\": \"a\", \"labels\": [\"x\"], \"true_labels\": [\"x\"]}\n",
            InvalidExamples::Error,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(":1: mixes formats"), "{err}");
        let err = read("\n", InvalidExamples::Error).unwrap_err().to_string();
        assert!(err.contains("no usable examples"), "{err}");
    }

    #[test]
    fn subsampling_keeps_proportions_and_never_flips_targets() {
        let example = Example {
            text: "t".into(),
            labels: (0..4).map(|i| format!("p{i}")).collect(),
            not_labels: (0..12).map(|i| format!("n{i}")).collect(),
        };
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let targets = example.sample_targets(8, &mut rng);
            assert_eq!(targets.len(), 8);
            assert_eq!(targets.iter().filter(|(_, t)| *t).count(), 2);
            for (label, target) in &targets {
                assert_eq!(*target, label.starts_with('p'));
            }
        }
        let all = example.sample_targets(100, &mut rng);
        assert_eq!(all.len(), 16);
    }

    #[test]
    fn validation_split_is_deterministic_and_disjoint() {
        let examples: Vec<Example> = (0..20)
            .map(|i| Example {
                text: format!("t{i}"),
                labels: vec!["x".into()],
                not_labels: vec![],
            })
            .collect();
        let (train, val) = split_validation(examples.clone(), 0.1, 7);
        assert_eq!((train.len(), val.len()), (18, 2));
        assert_eq!(split_validation(examples, 0.1, 7).1, val);
        assert!(val.iter().all(|v| !train.contains(v)));
    }
}
