//! Parsing and validating candidate label lists. A label list that would make a score land on
//! the wrong label (duplicates, empty names) is rejected here, before any tokenization.

use crate::error::input_error;
use anyhow::Result;
use std::collections::HashMap;
use std::path::Path;

/// Splits `a,b,c` into labels, trimming whitespace around each.
pub fn parse_label_list(list: &str) -> Result<Vec<String>> {
    let labels: Vec<String> = list.split(',').map(|l| l.trim().to_string()).collect();
    validate_labels(&labels).map_err(|e| input_error(format!("{list:?}: {e}")))?;
    Ok(labels)
}

/// Reads one label per line. Blank lines and comment lines (`#` first, after any spaces) are
/// skipped, and so is a leading byte-order mark.
pub fn read_label_file(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path)
        .map_err(|e| input_error(format!("cannot read labels file {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| input_error(format!("labels file {} is not valid UTF-8", path.display())))?;
    label_lines(&text, &path.display().to_string())
}

fn label_lines(text: &str, source: &str) -> Result<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let labels: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    validate_labels(&labels).map_err(|e| input_error(format!("{source}: {e}")))?;
    Ok(labels)
}

/// Checks that a label list is non-empty, has no blank label and no duplicate. Labels that
/// differ only in case count as duplicates: the uncased tokenizer would give them one score.
pub fn validate_labels(labels: &[String]) -> Result<(), String> {
    if labels.is_empty() || (labels.len() == 1 && labels[0].trim().is_empty()) {
        return Err("the label list is empty".into());
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, label) in labels.iter().enumerate() {
        if label.trim().is_empty() {
            return Err(format!("label {} of {} is empty", i + 1, labels.len()));
        }
        if let Some(first) = seen.insert(label.trim().to_lowercase(), i) {
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
    }

    #[test]
    fn label_files_skip_a_byte_order_mark_blank_lines_and_comments() {
        let labels =
            label_lines("\u{feff}economy\n\n# a comment\n  #another\nsports\n", "f").unwrap();
        assert_eq!(labels, vec!["economy", "sports"]);
        let err = label_lines("# only comments\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("f: the label list is empty"), "{err}");
    }

    #[test]
    fn label_errors_are_input_errors() {
        assert!(crate::error::is_input_error(
            &parse_label_list("a,a").unwrap_err()
        ));
    }
}
