//! Batch boundaries end to end: 0, 1, batch − 1, batch, batch + 1 and two batches of inputs
//! through predict, eval and mine-negatives, with the built-in model (labels that see only
//! themselves), a tiny model with full label attention and the bi-encoder. Every run must exit
//! 0 with one result per input, and a text's scores must not depend on the batch it fell in.

use gliznet::model::head::Similarity;
use gliznet::testing::write_tiny_model;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

mod support;
use support::{label_scores, run, s, stderr, BIN};
#[path = "support/server.rs"]
mod server;
use server::TestServer;

const BATCH: usize = 16;
const COUNTS: [usize; 6] = [0, 1, BATCH - 1, BATCH, BATCH + 1, 2 * BATCH];

/// Exit 0, nothing on stderr that looks like a library error or a backtrace.
fn assert_clean_success(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(0), "{what}: {err}");
    for needle in ["error", "backtrace", "panicked", "stack expects"] {
        assert!(!err.to_lowercase().contains(needle), "{what}: {err}");
    }
}

/// `n` texts, each with its own labels when `per_line` (two lists alternating), else none.
fn texts_file(dir: &Path, n: usize, per_line: bool) -> std::path::PathBuf {
    let path = dir.join(format!("texts-{n}-{per_line}.jsonl"));
    let mut body = String::new();
    for i in 0..n {
        let text = format!(
            "text {i}: the central bank raised rates {}",
            "again ".repeat(i % 5)
        );
        let line = if per_line {
            let labels = if i % 2 == 0 {
                vec!["economy", "sports"]
            } else {
                vec!["cooking", "finance", "weather"]
            };
            json!({"text": text, "labels": labels})
        } else {
            json!({"text": text})
        };
        body.push_str(&line.to_string());
        body.push('\n');
    }
    std::fs::write(&path, body).unwrap();
    path
}

fn records(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// predict over every count, shared and per-line labels: exit 0, one record per line in input
/// order, the same scores as with one text per batch.
fn predict_at_every_boundary(model_args: &[&str]) {
    predict_at_counts(model_args, &COUNTS, &["--batch-size", "16"]);
}

/// [`predict_at_every_boundary`] for `counts` lines, batched by `batching` against one text per
/// batch and per window.
fn predict_at_counts(model_args: &[&str], counts: &[usize], batching: &[&str]) {
    let dir = TempDir::new().unwrap();
    for per_line in [false, true] {
        for &n in counts {
            let input = texts_file(dir.path(), n, per_line);
            let mut args = vec!["predict", "--input", s(&input), "--format", "jsonl"];
            args.extend_from_slice(model_args);
            if !per_line {
                args.extend_from_slice(&["--labels", "economy,sports,weather"]);
            }
            let what = format!("{model_args:?}, {n} lines, per-line labels {per_line}");
            let batched = run(&[&args[..], batching].concat());
            assert_clean_success(&batched, &what);
            let batched = records(&batched);
            assert_eq!(batched.len(), n, "{what}");
            if n == 0 {
                continue;
            }
            let alone = run(&[&args[..], &["--batch-size", "1", "--window", "1"]].concat());
            assert_clean_success(&alone, &what);
            for (i, (b, a)) in batched.iter().zip(records(&alone)).enumerate() {
                assert_eq!(b["text"], a["text"], "{what}: record {i} out of order");
                let (b, a) = (label_scores(b), label_scores(&a));
                assert_eq!(b.len(), a.len(), "{what}: record {i}");
                for ((lb, sb), (la, sa)) in b.iter().zip(&a) {
                    assert_eq!(lb, la, "{what}: record {i}");
                    assert!(
                        (sb - sa).abs() < 1e-4,
                        "{what}: record {i} {lb}: {sb} vs {sa}"
                    );
                }
            }
        }
    }
}

#[test]
fn predict_builtin_model_at_batch_boundaries() {
    predict_at_every_boundary(&["--f32"]);
}

/// Texts of different lengths are sorted within a window of 7 and scored 3 at a time: 0, 1,
/// window − 1, window, window + 1 and two windows and one of lines.
#[test]
fn predict_window_boundaries_keep_the_input_order_and_scores() {
    const WINDOW: usize = 7;
    predict_at_counts(
        &["--f32"],
        &[0, 1, WINDOW - 1, WINDOW, WINDOW + 1, 2 * WINDOW + 1],
        &["--batch-size", "3", "--window", "7"],
    );
}

#[test]
fn predict_builtin_model_int8_at_batch_boundaries() {
    predict_at_every_boundary(&["--quantize"]);
}

#[test]
fn predict_full_attention_and_bi_encoder_at_batch_boundaries() {
    let model = TempDir::new().unwrap();
    write_tiny_model(model.path(), Similarity::Cosine, Some(16), 5).unwrap();
    predict_at_every_boundary(&["--model", s(model.path())]);
    predict_at_every_boundary(&["--model", s(model.path()), "--method", "bi-encoder"]);
}

#[test]
fn empty_input_is_no_output_and_exit_0() {
    let dir = TempDir::new().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let blank = dir.path().join("blank.jsonl");
    std::fs::write(&blank, "\n\n  \n").unwrap();
    for input in [&empty, &blank] {
        for (format, expected) in [("jsonl", ""), ("json", "[]\n"), ("table", "")] {
            for method in ["gliznet", "bi-encoder"] {
                let out = run(&[
                    "predict",
                    "--input",
                    s(input),
                    "--labels",
                    "a,b",
                    "--format",
                    format,
                    "--method",
                    method,
                ]);
                assert_clean_success(&out, &format!("{input:?} {format} {method}"));
                assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
            }
        }
    }
    // Standard input with nothing on it.
    let out = Command::new(BIN)
        .args([
            "predict", "--labels", "a,b", "--input", "-", "--format", "json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_clean_success(&out, "empty stdin");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]\n");
}

fn examples_file(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join(format!("examples-{n}.jsonl"));
    let mut body = String::new();
    for i in 0..n {
        let (gold, other) = if i % 2 == 0 {
            ("economy", "sports")
        } else {
            ("sports", "economy")
        };
        let line = json!({"text": format!("example {i} about {gold}"), "labels": [gold, format!("topic {i}")], "not_labels": [other]});
        body.push_str(&line.to_string());
        body.push('\n');
    }
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn eval_and_mine_negatives_at_batch_boundaries() {
    let dir = TempDir::new().unwrap();
    for n in COUNTS.into_iter().filter(|n| *n > 0) {
        let data = examples_file(dir.path(), n);
        let report = dir.path().join(format!("report-{n}.json"));
        let out = run(&[
            "eval",
            "--data",
            s(&data),
            "--batch-size",
            "16",
            "--report",
            s(&report),
        ]);
        assert_clean_success(&out, &format!("eval {n}"));
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(report["examples"], n, "eval {n}: {report}");

        let mined = dir.path().join(format!("mined-{n}.jsonl"));
        let out = run(&[
            "mine-negatives",
            "--input",
            s(&data),
            "--output",
            s(&mined),
            "--k",
            "1",
            "--batch-size",
            "16",
        ]);
        assert_eq!(out.status.code(), Some(0), "mine {n}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        let lines = std::fs::read_to_string(&mined).unwrap();
        assert_eq!(lines.lines().count(), n, "mine {n}");
    }
}

#[test]
fn eval_mine_negatives_and_train_refuse_an_empty_file_by_name() {
    let dir = TempDir::new().unwrap();
    let empty = dir.path().join("nothing-here.jsonl");
    std::fs::write(&empty, "").unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"train_file": s(&empty), "output_dir": s(&dir.path().join("run"))}).to_string(),
    )
    .unwrap();
    let mined = dir.path().join("mined.jsonl");
    for args in [
        vec!["eval", "--data", s(&empty)],
        vec![
            "mine-negatives",
            "--input",
            s(&empty),
            "--output",
            s(&mined),
        ],
        vec!["train", "--config", s(&config)],
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("nothing-here.jsonl"), "{args:?}: {err}");
        assert!(
            !err.contains("backtrace") && !err.contains("panicked"),
            "{err}"
        );
        assert!(!mined.exists());
    }
}

/// serve at the same boundaries: every request's answer is what predict prints for its texts.
#[test]
fn serve_answers_at_batch_boundaries_as_predict_does() {
    let model = TempDir::new().unwrap();
    write_tiny_model(model.path(), Similarity::Cosine, Some(16), 5).unwrap();
    let server = TestServer::start(&["--batch-size", "16", "--model", s(model.path())]);
    let dir = TempDir::new().unwrap();
    for per_line in [false, true] {
        for n in COUNTS.into_iter().filter(|n| *n > 0) {
            let input = texts_file(dir.path(), n, per_line);
            let texts: Vec<Value> = std::fs::read_to_string(&input)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let mut body = json!({ "texts": texts });
            let mut args = vec!["predict", "--format", "json", "--batch-size", "16"];
            args.extend_from_slice(&["--model", s(model.path()), "--input", s(&input)]);
            if !per_line {
                body["labels"] = json!(["economy", "sports", "weather"]);
                args.extend_from_slice(&["--labels", "economy,sports,weather"]);
            }
            let (status, answer) = server.classify(&body);
            assert_eq!(status, 200, "{n} texts, per-line {per_line}: {answer}");
            let answer: Value = serde_json::from_str(&answer).unwrap();
            let printed = run(&args);
            assert_clean_success(&printed, &format!("predict {n}"));
            let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
            assert_eq!(answer.as_array().unwrap().len(), n);
            for (i, (a, p)) in answer
                .as_array()
                .unwrap()
                .iter()
                .zip(printed.as_array().unwrap())
                .enumerate()
            {
                assert_eq!(a["text"], p["text"], "{n}: text {i}");
                for ((la, sa), (lp, sp)) in label_scores(a).iter().zip(label_scores(p)) {
                    assert_eq!(*la, lp, "{n}: text {i}");
                    assert!((sa - sp).abs() < 1e-5, "{n}: text {i} {la}: {sa} vs {sp}");
                }
            }
        }
    }
    let (status, body) = server.classify(&json!({"texts": [], "labels": ["a"]}));
    assert_eq!(status, 400);
    assert!(body.contains("texts: the list is empty"), "{body}");
}
