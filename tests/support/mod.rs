//! Helpers shared by the `generate` test files (`mod support;` in each).

use serde_json::Value;
use std::path::Path;
use std::process::Output;

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lines of a JSONL output, each checked to be whole JSON, the file to end in a newline.
pub fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "a torn last line");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
        .collect()
}
