//! Label descriptions end to end: given in a labels file (`name: description`), in predict's
//! JSONL and serve's requests (`{"label", "description"}`), in eval's candidates and in training
//! files. The model reads `name: description`; the output names the label.

use gliznet::model::head::Similarity;
use gliznet::testing::write_tiny_model;
use serde_json::{json, Value};
use std::process::Output;
use tempfile::TempDir;

mod support;
use support::{assert_success, label_scores, run_with_stdin, s};
#[path = "support/server.rs"]
mod server;
use server::TestServer;

const TEXT: &str = "The central bank raised interest rates again";

/// label → score of the first record of predict's JSON or JSONL output.
fn scores(out: &Output) -> Vec<(String, f64)> {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let first: Value = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(records)) => records[0].clone(),
        _ => serde_json::from_str(text.lines().next().unwrap()).unwrap(),
    };
    label_scores(&first)
}

/// Runs gliznet with `stdin` (or nothing) on its standard input and asserts it succeeded.
fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let out = run_with_stdin(args, stdin.unwrap_or("").as_bytes());
    assert_success(&out);
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn a_description_is_read_with_its_label_and_the_output_names_the_label() {
    let dir = TempDir::new().unwrap();
    let tiny = dir.path().join("tiny");
    write_tiny_model(&tiny, Similarity::Cosine, Some(16), 11).unwrap();
    let labels_file = dir.path().join("labels.txt");
    std::fs::write(
        &labels_file,
        "# described\neconomy: money and banks\nsports\n",
    )
    .unwrap();
    for model in [vec!["--f32"], vec!["--model", s(&tiny)]] {
        let predict = |extra: &[&str], stdin: Option<&str>| {
            let args = [&["predict", "--format", "json"][..], &model, extra].concat();
            scores(&run(&args, stdin))
        };
        let described = predict(&["--text", TEXT, "--labels-file", s(&labels_file)], None);
        let names: Vec<&str> = described.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(names, ["economy", "sports"], "{model:?}");
        // The model reads exactly "economy: money and banks".
        let as_names = predict(
            &[
                "--text",
                TEXT,
                "--labels",
                "economy: money and banks,sports",
            ],
            None,
        );
        if model == ["--f32"] {
            // Short enough for max_label_tokens as a name (the tiny model's cap is 8).
            assert!(close(described[0].1, as_names[0].1), "{model:?}");
            assert!(close(described[1].1, as_names[1].1), "{model:?}");
        }
        let bare = predict(&["--text", TEXT, "--labels", "economy,sports"], None);
        assert!(
            !close(described[0].1, bare[0].1),
            "{model:?}: description ignored"
        );
        if model == ["--f32"] {
            // The built-in model's labels see only themselves.
            assert!(close(described[1].1, bare[1].1), "{model:?}");
        }
        // The same in predict's JSONL, next to a plain name.
        let line = json!({"text": TEXT, "labels": [{"label": "economy", "description": "money and banks"}, "sports"]});
        let from_jsonl = predict(&["--input", "-"], Some(&format!("{line}\n")));
        assert_eq!(from_jsonl, described, "{model:?}");
    }
}

#[test]
fn eval_reads_descriptions_of_its_candidates_by_name() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data.jsonl");
    std::fs::write(
        &data,
        format!(
            "{}\n{}\n",
            json!({"text": TEXT, "labels": ["Economy"]}),
            json!({"text": "The team won the final match", "labels": ["sports"]})
        ),
    )
    .unwrap();
    let report = |labels_file: &str| -> Value {
        let file = dir.path().join("labels.txt");
        std::fs::write(&file, labels_file).unwrap();
        let predictions = dir.path().join(format!("p{}.jsonl", labels_file.len()));
        run(
            &[
                "eval",
                "--f32",
                "--data",
                s(&data),
                "--labels-file",
                s(&file),
                "--predictions",
                s(&predictions),
            ],
            None,
        );
        let text = std::fs::read_to_string(&predictions).unwrap();
        serde_json::from_str(text.lines().next().unwrap()).unwrap()
    };
    let bare = report("economy\nsports\n");
    let described = report("economy: money, banks and interest rates\nsports\n");
    assert_ne!(bare, described, "the description changed nothing");
    assert!(
        !described.to_string().contains("money, banks"),
        "the output names labels, not descriptions: {described}"
    );
}

#[test]
fn training_files_and_serve_take_described_labels() {
    let dir = TempDir::new().unwrap();
    let train = dir.path().join("train.jsonl");
    let mut lines = String::new();
    for i in 0..8 {
        let line = json!({"text": format!("text {i} about rates"), "labels": [{"label": "economy", "description": "money"}], "not_labels": ["sports"]});
        lines.push_str(&format!("{line}\n"));
    }
    std::fs::write(&train, lines).unwrap();
    let backbone = dir.path().join("backbone");
    gliznet::testing::write_tiny_backbone(&backbone, 3).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"backbone": s(&backbone), "train_file": s(&train), "output_dir": s(&dir.path().join("run")),
               "max_steps": 1, "batch_size": 4, "validation_fraction": 0.25, "max_length": 64})
        .to_string(),
    )
    .unwrap();
    run(&["train", "--config", s(&config)], None);

    let tiny = dir.path().join("tiny");
    write_tiny_model(&tiny, Similarity::Cosine, Some(16), 11).unwrap();
    let server = TestServer::start(&["--model", s(&tiny)]);
    let (status, body) = server.classify(
        &json!({"text": TEXT, "labels": [{"label": "economy", "description": "money and banks"}, "sports"]}),
    );
    assert_eq!(status, 200, "{body}");
    let labels_file = dir.path().join("labels.txt");
    std::fs::write(&labels_file, "economy: money and banks\nsports\n").unwrap();
    let expected = run(
        &[
            "predict",
            "--format",
            "json",
            "--model",
            s(&tiny),
            "--text",
            TEXT,
            "--labels-file",
            s(&labels_file),
        ],
        None,
    );
    let served: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served[0]["labels"][0]["label"], "economy");
    let expected: Value = serde_json::from_slice(&expected.stdout).unwrap();
    for i in 0..2 {
        let (a, b) = (
            served[0]["labels"][i]["score"].as_f64().unwrap(),
            expected[0]["labels"][i]["score"].as_f64().unwrap(),
        );
        assert!(close(a, b), "label {i}: {a} vs {b}");
    }
    let (status, body) = server.classify(&json!({"text": TEXT, "labels": [{"label": "economy"}]}));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("labels[0]"), "{body}");
}
