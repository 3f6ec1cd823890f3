//! Helpers shared by the test files that run the `gliznet` binary (`mod support;` in each):
//! running it, reading what it wrote, and the two checks of an exit every file makes. The
//! assertions particular to a test stay in the test.

// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gliznet");

/// Runs `gliznet ARGS` with nothing on its standard input.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `gliznet ARGS` with `stdin` on its standard input.
pub fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts that the command succeeded, showing its stderr when it did not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
}

/// Asserts a bad-input failure: exit code 2, every needle in the message, no panic.
pub fn assert_input_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(out));
    for needle in needles {
        assert!(
            stderr(out).contains(needle),
            "expected {needle:?} in: {}",
            stderr(out)
        );
    }
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

/// The lines of a JSONL output, each checked to be whole JSON, the file to end in a newline.
pub fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "a torn last line");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
        .collect()
}

/// Each label's name and score in one record of predict's JSON output, in order.
pub fn label_scores(record: &Value) -> Vec<(String, f64)> {
    record["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["label"].as_str().unwrap().to_string(),
                l["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// An untrained backbone directory predicts: single-label scores over the labels in their
/// order, summing to 1, with the warning that its head is untrained.
pub fn assert_untrained_backbone_predicts(dir: &Path) {
    let out = run(&[
        "predict",
        "--model",
        dir.to_str().unwrap(),
        "--format",
        "json",
        "--single-label",
        "--text",
        "The central bank raised interest rates again",
        "--labels",
        "economy,sports,cooking",
    ]);
    assert_success(&out);
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels = records[0]["labels"].as_array().unwrap();
    let names: Vec<&str> = labels
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["economy", "sports", "cooking"]);
    let total: f64 = labels.iter().map(|l| l["score"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5);
    assert!(stderr(&out).contains("untrained head"));
}
