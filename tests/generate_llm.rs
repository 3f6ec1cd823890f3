//! `gliznet generate` end to end against a real LLM: llama.cpp's OpenAI-compatible server
//! running SmolLM2-135M-Instruct on 127.0.0.1 (scripts/llm-server.sh). Skipped when the server
//! is not installed (`scripts/llm-server.sh install`), unless GLIZNET_REQUIRE_LLM=1 (CI sets
//! it), which turns the absence into a failure.
//!
//! A 135M model writes poor examples and often junk labels: this tests the pipeline (the
//! requests, the quality control, resumption, that the output trains), not the data.

mod support;

use gliznet::data::labels::label_key;
use gliznet::generate::qc::{is_malformed, is_placeholder, is_placeholder_text};
use gliznet::testing::write_tiny_backbone;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{lines, stderr};
use tempfile::TempDir;

/// The binary under test. GLIZNET_TEST_BIN may name a copy of it: in a target directory
/// shared with other builds, the binary can be rebuilt from another tree during this long test.
fn bin() -> PathBuf {
    std::env::var_os("GLIZNET_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_gliznet")),
        PathBuf::from,
    )
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Server {
    pidfile: PathBuf,
    url: String,
}

impl Server {
    /// Starts the server, or returns None (skip) when it is not installed.
    fn start(dir: &Path) -> Option<Self> {
        let pidfile = dir.join("llm-server.pid");
        let out = Command::new(root().join("scripts/llm-server.sh"))
            .args(["start", "--pidfile"])
            .arg(&pidfile)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        if out.status.code() == Some(3) {
            if std::env::var("GLIZNET_REQUIRE_LLM").as_deref() == Ok("1") {
                panic!(
                    "the LLM server is not installed and GLIZNET_REQUIRE_LLM=1: run \
                     scripts/llm-server.sh install"
                );
            }
            eprintln!("skipped: the LLM server is not installed (scripts/llm-server.sh install)");
            return None;
        }
        assert!(out.status.success(), "scripts/llm-server.sh start failed");
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Some(Self { pidfile, url })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/llm-server.sh"))
            .args(["stop", "--pidfile"])
            .arg(&self.pidfile)
            .status();
    }
}

fn generate(url: &str, output: &Path, report: &Path, sets: &[&str]) -> Command {
    let mut command = Command::new(bin());
    command
        .args(["generate", "--config"])
        .arg(root().join("configs/generate/llamacpp-test.json"))
        .args(["--set", &format!("base_url={url}")])
        .arg("--output")
        .arg(output)
        .arg("--report")
        .arg(report);
    for item in sets {
        command.args(["--set", item]);
    }
    command
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each line is a valid example: text, labels that passed the checks, provenance.
fn check_shape(records: &[Value]) {
    for r in records {
        let text = r["text"].as_str().unwrap();
        assert!(!text.trim().is_empty() && !is_placeholder_text(text), "{r}");
        let labels: Vec<&str> = r["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let negatives: Vec<&str> = r["not_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(!labels.is_empty() && !negatives.is_empty(), "{r}");
        let mut seen = HashSet::new();
        for label in labels.iter().chain(&negatives) {
            assert!(!is_placeholder(label) && !is_malformed(label), "{r}");
            assert!(seen.insert(label_key(label)), "{r}");
        }
        assert_eq!(r["model"], "smollm2");
        for key in ["domain", "length", "style", "prompt"] {
            assert!(r[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {r}");
        }
    }
}

/// Counts in the report add up: every answered request is written or rejected by a reason.
fn check_counts(report: &Value) {
    let rejected = report["rejected"].as_u64().unwrap();
    let by_reason: u64 = report["rejected_by_reason"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rejected, by_reason, "{report}");
    assert_eq!(
        report["requests"].as_u64().unwrap(),
        report["written"].as_u64().unwrap() + rejected,
        "{report}"
    );
    assert!(
        report["completion_tokens"].as_u64().unwrap() > 0,
        "{report}"
    );
}

#[test]
fn generates_rejects_junk_resumes_and_the_output_trains() {
    let dir = TempDir::new().unwrap();
    let Some(server) = Server::start(dir.path()) else {
        return;
    };
    let started = Instant::now();
    let output = dir.path().join("gen.jsonl");
    let first_report = dir.path().join("report1.json");

    // A first run, interrupted with Ctrl-C once it has written an example.
    let mut child = generate(&server.url, &output, &first_report, &["examples=2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(900);
    while lines(&output).is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("generate ended ({status}) before writing an example");
        }
        assert!(Instant::now() < deadline, "no example within 900 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let first = lines(&output);
    assert!(!first.is_empty());
    if out.status.code() == Some(130) {
        assert_eq!(report(&first_report)["ending"], "interrupted");
    } else {
        // It may have finished both in the moment before the signal.
        assert!(out.status.success(), "{}", stderr(&out));
    }
    check_counts(&report(&first_report));

    // The rerun continues to the target without duplicates.
    let second_report = dir.path().join("report2.json");
    let out = generate(&server.url, &output, &second_report, &["examples=2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let all = lines(&output);
    assert_eq!(all.len(), 2, "{}", stderr(&out));
    assert_eq!(all[..first.len()], first[..]);
    check_shape(&all);
    let r = report(&second_report);
    check_counts(&r);
    assert_eq!(r["existing"].as_u64().unwrap(), first.len() as u64);
    assert_eq!(r["examples"], 2);
    assert_eq!(r["ending"], "finished");
    let texts: HashSet<&str> = all.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 2, "duplicate texts");
    let attempts: Vec<u64> = all.iter().map(|r| r["attempt"].as_u64().unwrap()).collect();
    assert!(attempts.windows(2).all(|w| w[0] < w[1]), "{attempts:?}");
    eprintln!(
        "generated 2 examples in {:.1}s; rejected {} then {}: {} / {}; form {}",
        started.elapsed().as_secs_f64(),
        report(&first_report)["rejected"],
        r["rejected"],
        report(&first_report)["rejected_by_reason"],
        r["rejected_by_reason"],
        r["structured_output"]
    );

    for record in &all {
        eprintln!(
            "kept: {}",
            serde_json::json!({"text": record["text"], "labels": record["labels"], "not_labels": record["not_labels"]})
        );
    }

    // The output trains: a few steps of `gliznet train` on it (a tiny backbone keeps it fast).
    write_tiny_backbone(&dir.path().join("backbone"), 3).unwrap();
    let config = serde_json::json!({
        "backbone": dir.path().join("backbone"),
        "train_file": output,
        "validation_file": output,
        "projection_dim": 16,
        "max_length": 64,
        "max_label_tokens": 8,
        "min_text_tokens": 8,
        "epochs": 1,
        "max_steps": 2,
        "batch_size": 2,
        "eval_every": 2,
        "save_every": 2,
        "output_dir": dir.path().join("run"),
        "device": "cpu"
    });
    let config_path = dir.path().join("train.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = Command::new(bin())
        .args(["train", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "train: {}", stderr(&out));
    assert!(dir.path().join("run/model.safetensors").exists());
    drop(server);
}
