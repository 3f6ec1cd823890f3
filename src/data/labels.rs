//! Parsing and validating candidate label lists. A label list that would make a score land on
//! the wrong label (duplicates, empty names) is rejected here, before any tokenization.

use crate::error::input_error;
use anyhow::Result;
use std::collections::HashMap;
use std::path::Path;

/// A candidate label as a user gives it: the name that scores are reported under, and
/// optionally a description that the model reads with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    Name(String),
    Described { label: String, description: String },
}

impl<'de> serde::Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Given {
            Name(String),
            Described { label: String, description: String },
        }
        match Given::deserialize(deserializer) {
            Ok(Given::Name(name)) => Ok(Label::Name(name)),
            Ok(Given::Described { label, description }) => {
                Ok(Label::Described { label, description })
            }
            Err(_) => Err(serde::de::Error::custom(
                "a label is a string or {\"label\": \"…\", \"description\": \"…\"}",
            )),
        }
    }
}

impl Label {
    pub fn name(&self) -> &str {
        match self {
            Label::Name(name) | Label::Described { label: name, .. } => name,
        }
    }

    /// What the model reads: the name, or `name: description`.
    pub fn reading(&self) -> String {
        match self {
            Label::Name(name) => name.trim().to_string(),
            Label::Described { label, description } if description.trim().is_empty() => {
                label.trim().to_string()
            }
            Label::Described { label, description } => {
                format!("{}: {}", label.trim(), description.trim())
            }
        }
    }

    pub fn is_described(&self) -> bool {
        matches!(self, Label::Described { description, .. } if !description.trim().is_empty())
    }

    /// A labels-file line: `name: description` (split at the first `": "`), or a name.
    pub fn from_line(line: &str) -> Self {
        match line.split_once(": ") {
            Some((name, description)) if !name.trim().is_empty() => Label::Described {
                label: name.trim().to_string(),
                description: description.trim().to_string(),
            },
            _ => Label::Name(line.trim().to_string()),
        }
    }
}

/// The names of `labels`, in order.
pub fn label_names(labels: &[Label]) -> Vec<String> {
    labels.iter().map(|l| l.name().to_string()).collect()
}

/// Splits `a,b,c` into labels, trimming whitespace around each.
pub fn parse_label_list(list: &str) -> Result<Vec<String>> {
    if list.trim().is_empty() {
        return Err(input_error(format!("{list:?}: the label list is empty")));
    }
    let labels: Vec<String> = list.split(',').map(|l| l.trim().to_string()).collect();
    validate_labels(&labels).map_err(|e| input_error(format!("{list:?}: {e}")))?;
    Ok(labels)
}

/// Reads one label per line, `name` or `name: description`. Blank lines and comment lines
/// (`#` first, after any spaces) are skipped, and so is a leading byte-order mark. The names
/// must be distinct ([`validate_labels`]).
pub fn read_label_file(path: &Path) -> Result<Vec<Label>> {
    let labels: Vec<Label> = label_lines(path)?
        .iter()
        .map(|l| Label::from_line(l))
        .collect();
    validate_labels(&label_names(&labels))
        .map_err(|e| input_error(format!("{}: {e}", path.display())))?;
    Ok(labels)
}

/// [`read_label_file`] for a pool of candidates (mining): the same label may come more than
/// once (a pool gathered from data), only an empty pool is refused.
pub fn read_label_pool(path: &Path) -> Result<Vec<String>> {
    let labels = label_lines(path)?;
    if labels.is_empty() {
        return Err(input_error(format!(
            "{}: the label list is empty",
            path.display()
        )));
    }
    Ok(labels)
}

fn label_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path)
        .map_err(|e| input_error(format!("cannot read labels file {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| input_error(format!("labels file {} is not valid UTF-8", path.display())))?;
    Ok(lines_of(&text))
}

fn lines_of(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// What makes two labels the same label, everywhere labels are compared (duplicates, gold
/// among candidates, positive and negative at once, mined negatives): case, `_` and `-` and
/// runs of whitespace do not count, so "Soccer_ball" is "soccer ball".
pub fn label_key(label: &str) -> String {
    label
        .to_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks that a label list is non-empty, has no blank label and no duplicate (the same
/// [`label_key`]).
pub fn validate_labels(labels: &[String]) -> Result<(), String> {
    if labels.is_empty() {
        return Err("the label list is empty".into());
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, label) in labels.iter().enumerate() {
        if label.trim().is_empty() {
            return Err(format!("label {} of {} is empty", i + 1, labels.len()));
        }
        if let Some(first) = seen.insert(label_key(label), i) {
            return Err(format!(
                "duplicate label {:?} (labels {} and {})",
                label.trim(),
                first + 1,
                i + 1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_a_name_or_a_name_with_a_description() {
        let line = |l: &str| Label::from_line(l);
        assert_eq!(line("sports"), Label::Name("sports".into()));
        assert_eq!(line("ratio 3:1"), Label::Name("ratio 3:1".into()));
        let described = line(" sports :  games, teams and athletes ");
        assert_eq!(described.name(), "sports");
        assert!(described.is_described());
        assert_eq!(described.reading(), "sports: games, teams and athletes");
        assert_eq!(line("a: b: c").reading(), "a: b: c");
        assert_eq!(line(": no name"), Label::Name(": no name".into()));
        let empty = line("sports: ");
        assert!(!empty.is_described());
        assert_eq!(empty.reading(), "sports");

        let parsed: Vec<Label> =
            serde_json::from_str(r#"["a", {"label": "b", "description": "bee"}]"#).unwrap();
        assert_eq!(label_names(&parsed), ["a", "b"]);
        assert_eq!(parsed[1].reading(), "b: bee");
        for bad in [r#"[5]"#, r#"[{"label": "b"}]"#, r#"[null]"#] {
            let err = serde_json::from_str::<Vec<Label>>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("a label is a string or"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_and_trims() {
        assert_eq!(
            parse_label_list(" economy, sports ,cooking").unwrap(),
            vec!["economy", "sports", "cooking"]
        );
    }

    #[test]
    fn rejects_empty_list_empty_label_and_duplicates() {
        let err = parse_label_list("").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = parse_label_list("a,,b").unwrap_err().to_string();
        assert!(err.contains("label 2 of 3 is empty"), "{err}");
        let err = parse_label_list("a, ,b").unwrap_err().to_string();
        assert!(err.contains("label 2 of 3 is empty"), "{err}");
        let err = parse_label_list("sports,news,Sports")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("duplicate label \"Sports\" (labels 1 and 3)"),
            "{err}"
        );
        assert!(validate_labels(&[]).is_err());
        // One empty label in a list is an empty label, not an empty list.
        let err = validate_labels(&["".to_string()]).unwrap_err();
        assert_eq!(err, "label 1 of 1 is empty");
        let err = validate_labels(&[" ".to_string(), "a".to_string()]).unwrap_err();
        assert_eq!(err, "label 1 of 2 is empty");
    }

    #[test]
    fn label_files_skip_a_byte_order_mark_blank_lines_and_comments() {
        let labels = lines_of("\u{feff}economy\n\n# a comment\n  #another\nsports\n");
        assert_eq!(labels, vec!["economy", "sports"]);
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "# only comments\n").unwrap();
        for err in [
            read_label_file(&path).unwrap_err(),
            read_label_pool(&path).unwrap_err(),
        ] {
            let err = err.to_string();
            assert!(err.contains("f: the label list is empty"), "{err}");
        }
        std::fs::write(&path, "cat\nCat_\n").unwrap();
        assert!(
            read_label_file(&path).is_err(),
            "a duplicate in a label file"
        );
        assert_eq!(
            read_label_pool(&path).unwrap().len(),
            2,
            "a pool may repeat"
        );
    }

    #[test]
    fn label_errors_are_input_errors() {
        assert!(crate::error::is_input_error(
            &parse_label_list("a,a").unwrap_err()
        ));
    }

    #[test]
    fn one_label_key_for_every_comparison() {
        assert_eq!(label_key("Soccer_Ball"), "soccer ball");
        assert_eq!(label_key(" soccer-ball "), "soccer ball");
        assert_eq!(label_key("soccer \t ball"), "soccer ball");
        assert_ne!(label_key("soccer"), label_key("soccer ball"));
        let err = parse_label_list("soccer-ball,news,Soccer ball").unwrap_err();
        assert!(err.to_string().contains("labels 1 and 3"), "{err}");
        let example = crate::data::example::Example {
            text: "a match".into(),
            labels: vec!["soccer_ball".into()],
            not_labels: vec!["Soccer ball".into()],
        };
        assert!(example
            .validate()
            .unwrap_err()
            .contains("both positive and negative"));
        let (gold, others) = crate::data::example::split_candidates(
            &["Soccer-Ball".to_string()],
            &["soccer ball".to_string(), "news".to_string()],
        )
        .unwrap();
        assert_eq!(gold, vec!["soccer ball".to_string()]);
        assert_eq!(others, vec!["news".to_string()]);
    }
}
