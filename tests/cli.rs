//! End-to-end tests of the `gliznet` binary on a tiny seeded random BERT written to a temp dir.

mod support;

use gliznet::model::head::Similarity;
use gliznet::testing::{write_tiny_backbone, write_tiny_model};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use support::{assert_input_error, assert_success, run, run_with_stdin, s, stderr, BIN};
use tempfile::TempDir;

fn tiny_model(similarity: Similarity) -> TempDir {
    let dir = TempDir::new().unwrap();
    write_tiny_model(dir.path(), similarity, Some(16), 7).unwrap();
    dir
}

/// The JSON a successful command printed.
fn json(out: &Output) -> Value {
    assert_success(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The JSON record `predict` prints for one text, with `extra` arguments appended.
fn predict_one(model: &Path, text: &str, labels: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "predict",
        "--model",
        s(model),
        "--format",
        "json",
        "--text",
        text,
        "--labels",
        labels,
    ];
    args.extend_from_slice(extra);
    json(&run(&args))[0].clone()
}

fn label_names(record: &Value) -> Vec<String> {
    record["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap().to_string())
        .collect()
}

fn scores(record: &Value) -> Vec<f64> {
    record["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["score"].as_f64().unwrap())
        .collect()
}

#[test]
fn predict_json_has_one_record_per_text_with_labels_in_input_order() {
    let model = tiny_model(Similarity::Bilinear);
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--format",
        "json",
        "--threshold",
        "0.5",
        "--text",
        "the cat sat on the mat",
        "--text",
        "interest rates",
        "--labels",
        "sports, cat,economy",
    ]);
    let records = json(&out);
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["text"], "the cat sat on the mat");
    assert_eq!(records[1]["text"], "interest rates");
    for record in records {
        assert_eq!(label_names(record), vec!["sports", "cat", "economy"]);
        for label in record["labels"].as_array().unwrap() {
            let score = label["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score));
            assert_eq!(label["predicted"].as_bool().unwrap(), score >= 0.5);
        }
    }
}

#[test]
fn single_label_scores_sum_to_one_with_one_prediction() {
    let model = tiny_model(Similarity::Cosine);
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--format",
        "jsonl",
        "--single-label",
        "--text",
        "a happy dog",
        "--labels",
        "happy,sad,good,bad",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    let total: f64 = scores(&record).iter().sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
    let predicted: Vec<bool> = record["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["predicted"].as_bool().unwrap())
        .collect();
    assert_eq!(predicted.iter().filter(|p| **p).count(), 1);
    let best = scores(&record).iter().cloned().fold(f64::MIN, f64::max);
    let best_index = scores(&record).iter().position(|s| *s == best).unwrap();
    assert!(predicted[best_index]);
}

#[test]
fn scores_do_not_depend_on_batching_or_neighbours() {
    let model = tiny_model(Similarity::Dot);
    let texts = [
        "the cat sat",
        "a very long and winding road home with the dog and the cat on the mat",
        "bank",
        "interest rates raised again by the bank",
    ];
    let mut input = String::new();
    for (i, text) in texts.iter().enumerate() {
        let labels: Vec<&str> = ["news", "sports", "cooking", "home"][..1 + i % 4].to_vec();
        input += &serde_json::json!({"text": text, "labels": labels}).to_string();
        input += "\n";
    }
    let run = |batch: &str| -> Vec<Value> {
        let out = run_with_stdin(
            &[
                "predict",
                "--model",
                s(model.path()),
                "--input",
                "-",
                "--format",
                "jsonl",
                "--batch-size",
                batch,
            ],
            input.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let one_by_one = run("1");
    let together = run("16");
    assert_eq!(one_by_one.len(), texts.len());
    for (a, b) in one_by_one.iter().zip(&together) {
        assert_eq!(a["text"], b["text"]);
        assert_eq!(label_names(a), label_names(b));
        for (x, y) in scores(a).iter().zip(scores(b)) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y} for {}", a["text"]);
        }
    }
}

#[test]
fn input_file_uses_shared_labels_when_a_line_has_none() {
    let model = tiny_model(Similarity::Cosine);
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("texts.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"the dog\"}\n\n{\"text\": \"the cat\", \"labels\": [\"cat\", \"mat\"]}\n",
    )
    .unwrap();
    let labels = dir.path().join("labels.txt");
    std::fs::write(&labels, "news\nsports\n\n").unwrap();
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--input",
        s(&input),
        "--labels-file",
        s(&labels),
        "--format",
        "json",
    ]);
    let records = json(&out);
    assert_eq!(label_names(&records[0]), vec!["news", "sports"]);
    assert_eq!(label_names(&records[1]), vec!["cat", "mat"]);
}

#[test]
fn table_output_lists_every_label() {
    let model = tiny_model(Similarity::Bilinear);
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--text",
        "the cat",
        "--labels",
        "cat,dog",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "the cat");
    assert!(lines[1].trim_start().starts_with("cat "), "{table}");
    assert!(lines[2].trim_start().starts_with("dog "), "{table}");
}

#[test]
fn five_hundred_labels_are_chunked_and_all_scored() {
    let model = tiny_model(Similarity::Cosine);
    let labels: Vec<String> = (0..500).map(|i| format!("label {i}")).collect();
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--format",
        "json",
        "--text",
        "the cat sat on the mat",
        "--labels",
        &labels.join(","),
    ]);
    let records = json(&out);
    assert_eq!(label_names(&records[0]), labels);
    assert!(scores(&records[0]).iter().all(|s| s.is_finite()));
    assert!(stderr(&out).contains("several chunks"), "{}", stderr(&out));
}

#[test]
fn a_100k_character_text_is_truncated_and_scored() {
    let model = tiny_model(Similarity::Cosine);
    let text = "the cat sat on the mat ".repeat(100_000 / 23 + 1);
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--format",
        "json",
        "--text",
        &text[..100_000],
        "--labels",
        "cat,dog",
    ]);
    let records = json(&out);
    assert_eq!(scores(&records[0]).len(), 2);
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn plain_backbone_loads_with_an_untrained_head_warning() {
    let dir = TempDir::new().unwrap();
    write_tiny_backbone(dir.path(), 3).unwrap();
    let out = run(&[
        "predict",
        "--model",
        s(dir.path()),
        "--format",
        "json",
        "--text",
        "the cat",
        "--labels",
        "cat,dog",
    ]);
    assert_eq!(scores(&json(&out)[0]).len(), 2);
    assert!(stderr(&out).contains("untrained head"), "{}", stderr(&out));
    // The head is seeded: the same directory scores the same twice.
    let again = run(&[
        "predict",
        "--model",
        s(dir.path()),
        "--format",
        "json",
        "--text",
        "the cat",
        "--labels",
        "cat,dog",
    ]);
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn repo_id_resolves_through_the_local_hub_cache() {
    let hf_home = TempDir::new().unwrap();
    let repo = hf_home
        .path()
        .join("hub")
        .join("models--acme--tiny-gliznet");
    let snapshot = repo.join("snapshots").join("0123abcd");
    write_tiny_model(&snapshot, Similarity::Cosine, None, 5).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    let run = |model: &str| {
        Command::new(BIN)
            .args([
                "predict", "--model", model, "--format", "json", "--text", "the cat", "--labels",
                "cat,dog",
            ])
            .env("HF_HOME", hf_home.path())
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let out = run("acme/tiny-gliznet");
    assert_eq!(scores(&json(&out)[0]).len(), 2);
    let missing = run("acme/not-cached");
    assert_input_error(&missing, &["local hub cache"]);
}

#[test]
fn bad_model_paths_and_files_are_named() {
    let out = run(&[
        "predict",
        "--model",
        "/no/such/model/dir",
        "--text",
        "t",
        "--labels",
        "a",
    ]);
    assert_input_error(&out, &["/no/such/model/dir"]);

    let model = tiny_model(Similarity::Cosine);
    std::fs::remove_file(model.path().join("tokenizer.json")).unwrap();
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--text",
        "t",
        "--labels",
        "a",
    ]);
    assert_input_error(&out, &["tokenizer.json"]);

    let model = tiny_model(Similarity::Cosine);
    let weights = model.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--text",
        "t",
        "--labels",
        "a",
    ]);
    assert_input_error(&out, &["model.safetensors"]);

    let model = tiny_model(Similarity::Cosine);
    std::fs::write(model.path().join("config.json"), "{not json").unwrap();
    let out = run(&[
        "predict",
        "--model",
        s(model.path()),
        "--text",
        "t",
        "--labels",
        "a",
    ]);
    assert_input_error(&out, &["config.json"]);
}

#[test]
fn bad_label_lists_are_rejected() {
    let model = tiny_model(Similarity::Cosine);
    let m = s(model.path());
    assert_input_error(
        &run(&["predict", "--model", m, "--text", "t", "--labels", ""]),
        &["empty"],
    );
    assert_input_error(
        &run(&["predict", "--model", m, "--text", "t", "--labels", "a,,b"]),
        &["label 2 of 3 is empty"],
    );
    assert_input_error(
        &run(&[
            "predict",
            "--model",
            m,
            "--text",
            "t",
            "--labels",
            "cat,dog,cat",
        ]),
        &["duplicate label \"cat\""],
    );
    assert_input_error(
        &run(&["predict", "--model", m, "--text", "t"]),
        &["--labels"],
    );
    assert_input_error(
        &run(&["predict", "--model", m, "--text", " ", "--labels", "a"]),
        &["--text #1: the text is empty"],
    );
    assert_input_error(
        &run(&[
            "predict",
            "--model",
            m,
            "--text",
            "t",
            "--labels",
            "a",
            "--threshold",
            "1.5",
        ]),
        &["--threshold"],
    );
}

#[test]
fn bad_jsonl_lines_are_named() {
    let model = tiny_model(Similarity::Cosine);
    let m = s(model.path());
    let out = run_with_stdin(
        &["predict", "--model", m, "--input", "-", "--labels", "a,b"],
        b"{\"text\": \"ok\"}\nnot json\n",
    );
    assert_input_error(&out, &["<stdin>:2: invalid record"]);

    let out = run_with_stdin(
        &["predict", "--model", m, "--input", "-", "--labels", "a,b"],
        b"{\"text\": \"ok\"}\n{\"text\": \"\xff\"}\n",
    );
    assert_input_error(&out, &["<stdin>:2: not valid UTF-8"]);

    let out = run_with_stdin(
        &["predict", "--model", m, "--input", "-"],
        b"{\"text\": \"no labels here\"}\n",
    );
    assert_input_error(&out, &["<stdin>:1: no \"labels\" field"]);

    let out = run_with_stdin(
        &["predict", "--model", m, "--input", "-"],
        b"{\"text\": \"x\", \"labels\": [\"a\", \"A\"]}\n",
    );
    assert_input_error(&out, &["<stdin>:1: duplicate label"]);

    let out = run(&[
        "predict",
        "--model",
        m,
        "--input",
        "/no/such/file.jsonl",
        "--labels",
        "a",
    ]);
    assert_input_error(&out, &["/no/such/file.jsonl"]);
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = run(&["predict", "--labels", "a"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["predict", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--single-label"));
    let out = run(&[
        "predict", "--model", "x", "--text", "t", "--labels", "a", "--device", "tpu",
    ]);
    assert_input_error(&out, &["--device"]);
}

#[test]
fn without_model_the_built_in_one_is_used_or_its_absence_is_explained() {
    let version = run(&["--version"]);
    assert!(version.status.success());
    let version = String::from_utf8(version.stdout).unwrap();
    assert!(version.contains("built-in model:"), "{version}");
    let out = run(&[
        "predict",
        "--format",
        "json",
        "--text",
        "the bank raised interest rates",
        "--labels",
        "economy,sports",
    ]);
    if version.contains("built-in model: none") {
        assert_input_error(&out, &["no built-in model"]);
    } else {
        let records = json(&out);
        assert!(
            records[0]["model"]
                .as_str()
                .unwrap()
                .starts_with("built-in model gliznet-"),
            "{records}"
        );
        assert_eq!(label_names(&records[0]), vec!["economy", "sports"]);
    }
}

#[test]
fn the_models_calibrated_threshold_is_the_default() {
    let model = tiny_model(Similarity::Cosine);
    let config_path = model.path().join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["gliznet"]["threshold"] = serde_json::json!(0.0);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let predicted = |extra: &[&str]| -> Vec<bool> {
        predict_one(model.path(), "the cat", "cat,dog,bank", extra)["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["predicted"].as_bool().unwrap())
            .collect()
    };
    assert_eq!(
        predicted(&[]),
        vec![true, true, true],
        "threshold 0 from the model predicts every label"
    );
    assert_eq!(
        predicted(&["--threshold", "1.0"]),
        vec![false, false, false],
        "--threshold overrides it"
    );
}

fn predict_cat(model: &Path, extra: &[&str]) -> Value {
    predict_one(
        model,
        "the cat sat on the mat",
        "cat,dog house,bank,news",
        extra,
    )
}

/// `model`'s output for one text in f32 (`--f32`) and with `flag`, their scores checked to be
/// close but not the same.
fn close_to_f32_with(model: &Path, flag: &str) -> (Value, Value) {
    let predict = |extra: &[&str]| predict_cat(model, extra);
    let (exact, other) = (predict(&["--f32"]), predict(&[flag]));
    assert_eq!(label_names(&other), label_names(&exact));
    let (a, b) = (scores(&exact), scores(&other));
    let max_diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(max_diff < 0.02, "f32 {a:?} vs {flag} {b:?}");
    assert!(a != b, "{flag} changed nothing: {a:?}");
    (exact, other)
}

#[test]
fn quantize_names_int8_and_keeps_scores_close() {
    let model = tiny_model(Similarity::Dot);
    let (exact, int8) = close_to_f32_with(model.path(), "--quantize");
    assert!(
        int8["model"].as_str().unwrap().ends_with(" (int8)"),
        "{int8}"
    );
    assert!(!exact["model"].as_str().unwrap().contains("int8"));
}

#[test]
fn bf16_is_named_close_to_f32_the_default_with_amx_and_excludes_int8() {
    let model = tiny_model(Similarity::Dot);
    let (exact, bf16) = close_to_f32_with(model.path(), "--bf16");
    assert!(
        !exact["model"].as_str().unwrap().contains("bf16"),
        "{exact}"
    );
    assert!(
        bf16["model"].as_str().unwrap().ends_with(" (bf16)"),
        "{bf16}"
    );
    // The default: bf16 where the CPU has the tile unit, f32 elsewhere.
    let default = predict_cat(model.path(), &[]);
    let expected = if gliznet::model::has_fast_bf16_kernel() {
        &bf16
    } else {
        &exact
    };
    assert_eq!(default["model"], expected["model"], "{default}");
    assert_eq!(scores(&default), scores(expected));
    let both = run(&[
        "predict",
        "--model",
        model.path().to_str().unwrap(),
        "--text",
        "x",
        "--labels",
        "a,b",
        "--bf16",
        "--quantize",
    ]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("--bf16") && stderr.contains("--quantize"),
        "{stderr}"
    );
}
