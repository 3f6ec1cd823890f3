//! End-to-end tests of `gliznet eval` and `gliznet mine-negatives` on a tiny seeded model.

use gliznet::model::head::Similarity;
use gliznet::testing::write_tiny_model;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_gliznet");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn check(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
}

fn assert_input_error(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    assert!(
        stderr(out).contains(needle),
        "expected {needle:?} in: {}",
        stderr(out)
    );
}

fn setup() -> (TempDir, String) {
    let dir = TempDir::new().unwrap();
    write_tiny_model(&dir.path().join("model"), Similarity::Cosine, Some(16), 3).unwrap();
    let model = dir.path().join("model").to_str().unwrap().to_string();
    (dir, model)
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_string()
}

const SINGLE: &str = "{\"text\": \"the cat sat\", \"labels\": [\"cat\"], \"candidates\": [\"cat\", \"dog\", \"bank\"]}\n\
                      {\"text\": \"the dog sat\", \"labels\": [\"dog\"], \"candidates\": [\"cat\", \"dog\", \"bank\"]}\n\
                      {\"text\": \"the bank\", \"labels\": [\"bank\"], \"not_labels\": [\"cat\", \"dog\"]}\n";

#[test]
fn single_label_eval_reports_accuracy_macro_f1_and_confusion() {
    let (dir, model) = setup();
    let data = write(dir.path(), "dev.jsonl", SINGLE);
    let report_path = dir.path().join("report.json");
    let predictions = dir.path().join("predictions.jsonl");
    let out = run(&[
        "eval",
        "--model",
        &model,
        "--data",
        &data,
        "--report",
        report_path.to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
    ]);
    check(&out);
    assert!(stderr(&out).contains("mode: single-label"));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("accuracy")
            && table.contains("macro-F1")
            && table.contains("confusion matrix"),
        "{table}"
    );

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["mode"], "single-label");
    assert_eq!(report["examples"], 3);
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert_eq!(report["single_label"]["accuracy"], report["accuracy"]);
    let matrix: Vec<Vec<u64>> =
        serde_json::from_value(report["single_label"]["confusion_matrix"].clone()).unwrap();
    assert_eq!(matrix.iter().flatten().sum::<u64>(), 3);
    let diagonal: u64 = (0..matrix.len()).map(|i| matrix[i][i]).sum();
    assert!((accuracy - diagonal as f64 / 3.0).abs() < 1e-12);
    assert_eq!(report["threshold_analysis"].as_array().unwrap().len(), 19);

    let lines: Vec<Value> = std::fs::read_to_string(&predictions)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let labels: Vec<&str> = lines[0]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    // Candidates are scored and listed in name order, whichever is gold.
    assert_eq!(labels, ["bank", "cat", "dog"]);
    let predicted = lines.iter().map(|l| {
        l["labels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["predicted"] == true)
            .count()
    });
    assert!(predicted.into_iter().all(|n| n == 1));
}

#[test]
fn multi_label_and_bi_encoder_and_shared_labels() {
    let (dir, model) = setup();
    let data = write(
        dir.path(),
        "multi.jsonl",
        "{\"text\": \"the cat and the dog\", \"labels\": [\"cat\", \"dog\"], \"not_labels\": [\"bank\"]}\n\
         {\"text\": \"interest rates\", \"all_labels\": [\"bank\", \"economy\", \"cat\"], \"true_labels\": [\"bank\", \"economy\"]}\n",
    );
    let out = run(&[
        "eval",
        "--model",
        &model,
        "--data",
        &data,
        "--report",
        dir.path().join("r.json").to_str().unwrap(),
    ]);
    check(&out);
    assert!(stderr(&out).contains("mode: multi-label"));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert!(report["single_label"].is_null());
    assert_eq!(
        report["multi_label"]["per_label"].as_array().unwrap().len(),
        4
    );

    let out = run(&[
        "eval",
        "--model",
        &model,
        "--data",
        &data,
        "--method",
        "bi-encoder",
    ]);
    check(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(bi-encoder)"));

    let single = write(dir.path(), "gold.jsonl", "{\"text\": \"the cat\", \"labels\": [\"cat\"]}\n{\"text\": \"a dog\", \"labels\": [\"dog\"]}\n");
    let out = run(&[
        "eval",
        "--model",
        &model,
        "--data",
        &single,
        "--labels",
        "cat,dog,bank",
        "--report",
        dir.path().join("s.json").to_str().unwrap(),
    ]);
    check(&out);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.json")).unwrap()).unwrap();
    assert_eq!(report["distinct_labels"], 3);
}

#[test]
fn eval_bad_inputs_are_clear() {
    let (dir, model) = setup();
    let gold = write(
        dir.path(),
        "gold.jsonl",
        "{\"text\": \"the cat\", \"labels\": [\"cat\"]}\n",
    );
    assert_input_error(
        &run(&[
            "eval", "--model", &model, "--data", &gold, "--labels", "dog,bank",
        ]),
        "gold label \"cat\" is not among the --labels candidates",
    );
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"text\": \"x\", \"labels\": [\"cat\"], \"candidates\": [\"dog\"]}\n",
    );
    assert_input_error(
        &run(&["eval", "--model", &model, "--data", &bad]),
        "bad.jsonl:1: gold label \"cat\" is not among the candidates",
    );
    let empty = write(dir.path(), "empty.jsonl", "\n");
    assert_input_error(
        &run(&["eval", "--model", &model, "--data", &empty]),
        "no examples",
    );
    let malformed = write(
        dir.path(),
        "malformed.jsonl",
        "{\"text\": \"a\", \"labels\": [\"cat\"]}\n{oops\n",
    );
    assert_input_error(
        &run(&["eval", "--model", &model, "--data", &malformed]),
        "malformed.jsonl:2: invalid record",
    );
    let multi = write(
        dir.path(),
        "multi.jsonl",
        "{\"text\": \"a\", \"labels\": [\"cat\", \"dog\"], \"not_labels\": [\"bank\"]}\n",
    );
    assert_input_error(
        &run(&[
            "eval",
            "--model",
            &model,
            "--data",
            &multi,
            "--single-label",
        ]),
        "exactly one gold label",
    );
}

#[test]
fn mine_negatives_adds_k_negatives_and_guards_false_ones() {
    let (dir, model) = setup();
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"text\": \"the cat sat\", \"labels\": [\"cat\"]}\n{\"text\": \"a dog\", \"labels\": [\"dog\"], \"not_labels\": [\"bank\"]}\n",
    );
    let pool = write(
        dir.path(),
        "pool.txt",
        "cat\nCat_\ndog\nbank\nnews\nsports\ncooking\nhome\n",
    );
    let output = dir.path().join("out.jsonl");
    let args = |strategy: &str| {
        vec![
            "mine-negatives".to_string(),
            "--model".into(),
            model.clone(),
            "--input".into(),
            input.clone(),
            "--pool".into(),
            pool.clone(),
            "--output".into(),
            output.to_str().unwrap().into(),
            "--k".into(),
            "3".into(),
            "--strategy".into(),
            strategy.into(),
            "--max-similarity".into(),
            "1.0".into(),
        ]
    };
    for strategy in ["hard", "random"] {
        let out = Command::new(BIN).args(args(strategy)).output().unwrap();
        check(&out);
        let lines: Vec<Value> = std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for line in &lines {
            let positives: Vec<String> = serde_json::from_value(line["labels"].clone()).unwrap();
            let negatives: Vec<String> =
                serde_json::from_value(line["not_labels"].clone()).unwrap();
            for n in &negatives {
                let normalized = n.to_lowercase().replace('_', " ");
                assert!(
                    !positives
                        .iter()
                        .any(|p| p.to_lowercase() == normalized.trim()),
                    "{strategy}: {n} is a positive"
                );
            }
            let mut unique = negatives.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), negatives.len());
        }
        assert_eq!(lines[0]["not_labels"].as_array().unwrap().len(), 3);
        assert_eq!(
            lines[1]["not_labels"][0], "bank",
            "existing negatives are kept first"
        );
        assert_eq!(lines[1]["not_labels"].as_array().unwrap().len(), 4);
        // Deterministic: the same command writes the same bytes.
        let first = std::fs::read(&output).unwrap();
        check(&Command::new(BIN).args(args(strategy)).output().unwrap());
        assert_eq!(first, std::fs::read(&output).unwrap());
    }
}

#[test]
fn mine_negatives_bad_inputs_leave_no_output() {
    let (dir, model) = setup();
    let output = dir.path().join("out.jsonl");
    let out_arg = output.to_str().unwrap();
    let pool = write(dir.path(), "pool.txt", "cat\ndog\n");
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"text\": \"the cat\", \"labels\": [\"cat\"]}\n",
    );
    assert_input_error(
        &run(&[
            "mine-negatives",
            "--model",
            &model,
            "--input",
            &input,
            "--pool",
            &pool,
            "--output",
            out_arg,
            "--k",
            "5",
        ]),
        "fewer than --k 5",
    );
    let empty = write(dir.path(), "empty.jsonl", "");
    assert_input_error(
        &run(&[
            "mine-negatives",
            "--model",
            &model,
            "--input",
            &empty,
            "--output",
            out_arg,
        ]),
        "no examples",
    );
    let no_labels = write(dir.path(), "nolabels.jsonl", "{\"text\": \"the cat\", \"labels\": [\"cat\"]}\n{\"text\": \"x\", \"not_labels\": [\"dog\"]}\n");
    assert_input_error(
        &run(&[
            "mine-negatives",
            "--model",
            &model,
            "--input",
            &no_labels,
            "--pool",
            &pool,
            "--output",
            out_arg,
            "--k",
            "1",
        ]),
        "nolabels.jsonl:2: no positive labels",
    );
    assert!(!output.exists(), "a failed run left output behind");
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp"))
            .count(),
        0
    );
}

/// The model reads label positions, so eval must not pack the gold label first: the score of
/// every candidate is the same whichever candidate is gold (and however the file lists them).
#[test]
fn scores_do_not_depend_on_which_candidate_is_gold() {
    let (dir, model) = setup();
    let scores = |name: &str, line: &str| -> Vec<(String, f64)> {
        let data = write(dir.path(), name, line);
        let predictions = dir.path().join(format!("{name}.predictions"));
        check(&run(&[
            "eval",
            "--model",
            &model,
            "--data",
            &data,
            "--single-label",
            "--predictions",
            predictions.to_str().unwrap(),
        ]));
        let row: Value =
            serde_json::from_str(std::fs::read_to_string(&predictions).unwrap().trim()).unwrap();
        let mut scores = support::label_scores(&row);
        scores.sort_by(|a, b| a.0.cmp(&b.0));
        scores
    };
    let text = "the cat sat on the bank";
    let a = scores(
        "a.jsonl",
        &format!("{{\"text\": \"{text}\", \"labels\": [\"cat\"], \"not_labels\": [\"dog\", \"bank\"]}}\n"),
    );
    let b = scores(
        "b.jsonl",
        &format!("{{\"text\": \"{text}\", \"labels\": [\"bank\"], \"not_labels\": [\"dog\", \"cat\"]}}\n"),
    );
    assert_eq!(a, b);
}
