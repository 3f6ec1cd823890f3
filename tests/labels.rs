//! Label spellings and empty labels, the same through predict, eval and serve: an empty label
//! in a list is named by its place, a gold label spelt otherwise than its candidate is that
//! candidate, and `"labels": null` on one text is no labels.

use serde_json::{json, Value};
use std::path::Path;
use tempfile::TempDir;

mod support;
use support::{run, s, stderr};
#[path = "support/server.rs"]
mod server;
use server::TestServer;

#[test]
fn an_empty_label_in_a_list_is_named_by_its_place_everywhere() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data.jsonl");
    for (labels, wanted) in [
        (json!([""]), "label 1 of 1 is empty"),
        (json!(["a", " "]), "label 2 of 2 is empty"),
    ] {
        std::fs::write(
            &data,
            format!("{}\n", json!({"text": "a", "labels": labels})),
        )
        .unwrap();
        for args in [
            vec!["predict", "--input", s(&data)],
            vec!["eval", "--data", s(&data)],
        ] {
            let out = run(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains(wanted), "{args:?}: {}", stderr(&out));
            assert!(!stderr(&out).contains("list is empty"), "{}", stderr(&out));
        }
    }
    let out = run(&["predict", "--text", "a", "--labels", "a,,b"]);
    assert!(
        stderr(&out).contains("label 2 of 3 is empty"),
        "{}",
        stderr(&out)
    );
    let out = run(&["predict", "--text", "a", "--labels", ""]);
    assert!(
        stderr(&out).contains("the label list is empty"),
        "{}",
        stderr(&out)
    );

    let server = TestServer::start(&[]);
    let (status, body) = server.classify(
        &json!({"texts": ["x", "y", "z", {"text": "w", "labels": [""]}], "labels": ["a"]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("texts[3].labels: label 1 of 1 is empty"),
        "{body}"
    );
}

#[test]
fn a_texts_own_null_labels_are_no_labels_as_at_the_top_level() {
    let server = TestServer::start(&[]);
    let (status, body) = server.classify(
        &json!({"texts": [{"text": "the match", "labels": null}], "labels": ["sports", "economy"]}),
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer[0]["labels"][0]["label"], "sports");
}

#[test]
fn a_gold_label_spelt_otherwise_is_its_candidate() {
    let dir = TempDir::new().unwrap();
    let lower = dir.path().join("lower.jsonl");
    std::fs::write(
        &lower,
        format!(
            "{}\n{}\n{}\n",
            json!({"text": "The team won the final match", "labels": ["sports"]}),
            json!({"text": "The central bank raised rates", "labels": ["economy"]}),
            json!({"text": "A late goal decided the cup", "labels": ["SPORTS"]}),
        ),
    )
    .unwrap();
    let spelt_as_candidates = dir.path().join("candidates.jsonl");
    std::fs::write(
        &spelt_as_candidates,
        format!(
            "{}\n{}\n{}\n",
            json!({"text": "The team won the final match", "labels": ["Sports"]}),
            json!({"text": "The central bank raised rates", "labels": ["Economy"]}),
            json!({"text": "A late goal decided the cup", "labels": ["Sports"]}),
        ),
    )
    .unwrap();
    let report = |data: &Path, name: &str| -> (Value, String) {
        let report = dir.path().join(format!("{name}.json"));
        let predictions = dir.path().join(format!("{name}.predictions.jsonl"));
        let out = run(&[
            "eval",
            "--f32",
            "--data",
            s(data),
            "--labels",
            "Sports,Economy",
            "--report",
            s(&report),
            "--predictions",
            s(&predictions),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
        (report, std::fs::read_to_string(predictions).unwrap())
    };
    let (lower_report, lower_predictions) = report(&lower, "lower");
    let (report, predictions) = report(&spelt_as_candidates, "candidates");
    assert_eq!(lower_report["distinct_labels"], 2, "{lower_report}");
    assert_eq!(lower_report["macro_f1"], report["macro_f1"]);
    assert_eq!(lower_predictions, predictions);
    assert!(
        !lower_predictions.contains("\"sports\""),
        "{lower_predictions}"
    );

    // The same inside the data: labels with candidates, and GLiClass's fields.
    let inline = dir.path().join("inline.jsonl");
    std::fs::write(
        &inline,
        format!(
            "{}\n{}\n",
            json!({"text": "The team won", "labels": ["sports"], "candidates": ["Sports", "Economy"]}),
            json!({"text": "Rates rose", "true_labels": ["economy"], "all_labels": ["Sports", "Economy"]}),
        ),
    )
    .unwrap();
    let report_path = dir.path().join("inline.json");
    let out = run(&["eval", "--data", s(&inline), "--report", s(&report_path)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report_path).unwrap()).unwrap();
    assert_eq!(report["distinct_labels"], 2, "{report}");
}
