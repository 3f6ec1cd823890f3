//! `gliznet generate` against a real local HTTP server that misbehaves on purpose
//! (tests/support/fault_server.py): retries, fallbacks, fatal errors, quality control,
//! interruption and resumption, and that the API key never shows.

#[path = "support/fault_server.rs"]
mod fault_server;
mod support;

use fault_server::FaultServer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{assert_success, lines, stderr, BIN};
use tempfile::TempDir;

const SENTINEL: &str = "sk-SENTINEL-7f3a9c-do-not-print";

/// A config for the fault server: one request at a time, short timeouts and backoffs.
fn write_config(dir: &Path, port: u16, extra: Value) -> PathBuf {
    let mut config = serde_json::json!({
        "base_url": format!("http://127.0.0.1:{port}/v1"),
        "model": "fake",
        "examples": 2,
        "seed": 11,
        "concurrency": 1,
        "timeout_secs": 1.5,
        "max_retries": 3,
        "backoff_secs": 0.05,
        "backoff_max_secs": 0.2,
        "structured_output": "json_object",
        "lengths": [{"name": "any", "min_words": 1, "max_words": 60, "share": 1}],
        "positives": [1, 3],
        "negatives": [1, 3],
    });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let path = dir.join("gen.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn generate(config: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(["generate", "--config"])
        .arg(config)
        .arg("--output")
        .arg(output)
        .args(extra)
        .env("GLIZNET_TEST_KEY", SENTINEL)
        .stdin(Stdio::null());
    command.output().unwrap()
}

/// Runs a script that fails once with `fault` and then answers: the run retries and succeeds.
fn retried_once(fault: &str) -> (Output, Vec<Value>, Vec<Value>, Duration) {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), &format!("{fault},ok"));
    let config = write_config(dir.path(), server.port, serde_json::json!({"examples": 1}));
    let output = dir.path().join("out.jsonl");
    let start = Instant::now();
    let out = generate(&config, &output, &[]);
    let took = start.elapsed();
    assert_success(&out);
    assert!(
        stderr(&out).contains("retry 1"),
        "{fault}: no retry reported: {}",
        stderr(&out)
    );
    (out, lines(&output), server.requests(), took)
}

#[test]
fn a_429_is_retried_after_its_retry_after() {
    let (_, written, requests, took) = retried_once("429");
    assert_eq!(written.len(), 1);
    assert_eq!(requests.len(), 2);
    // Retry-After: 1 is honoured over the 0.2 s backoff cap.
    assert!(took >= Duration::from_millis(950), "{took:?}");
}

#[test]
fn a_500_a_truncated_body_invalid_json_and_a_timeout_are_retried() {
    for fault in ["500", "truncated", "badjson", "slow"] {
        let (out, written, requests, _) = retried_once(fault);
        assert_eq!(written.len(), 1, "{fault}");
        assert_eq!(requests.len(), 2, "{fault}");
        let err = stderr(&out);
        let expected = match fault {
            "500" => "HTTP 500",
            "truncated" => "body cut short",
            "badjson" => "malformed response (not JSON)",
            _ => "timed out",
        };
        assert!(err.contains(expected), "{fault}: {err}");
    }
}

#[test]
fn retries_exhausted_fail_with_whole_lines_only() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "ok,ok,500");
    let config = write_config(dir.path(), server.port, serde_json::json!({"examples": 5}));
    let output = dir.path().join("out.jsonl");
    let report = dir.path().join("report.json");
    let out = generate(&config, &output, &["--report", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("failed after 3 retries: HTTP 500"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{}", server.port)), "{err}");
    assert_eq!(lines(&output).len(), 2);
    assert_eq!(server.requests().len(), 2 + 4);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["ending"], "failed");
    assert_eq!(report["written"], 2);
    assert_eq!(report["retries"], 3);
}

#[test]
fn a_refused_key_stops_at_once_naming_the_endpoint_and_variable_never_the_key() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "401");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"api_key_env": "GLIZNET_TEST_KEY", "concurrency": 2}),
    );
    let output = dir.path().join("out.jsonl");
    let report = dir.path().join("report.json");
    let out = generate(&config, &output, &["--report", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("$GLIZNET_TEST_KEY"), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(
        err.contains(&format!(
            "http://127.0.0.1:{}/v1/chat/completions",
            server.port
        )),
        "{err}"
    );
    // The server echoed the key; it is scrubbed everywhere.
    assert!(
        err.contains("Incorrect API key provided: [redacted]"),
        "{err}"
    );
    for text in [
        err,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(&output).unwrap(),
        std::fs::read_to_string(&report).unwrap(),
    ] {
        assert!(!text.contains("SENTINEL"), "the key leaked: {text}");
    }
    // Stopped at once: no retry of a 401 (at most one request per worker).
    assert!(server.requests().len() <= 2, "{:?}", server.requests());
    assert!(server.requests().iter().all(|r| r["auth_sent"] == true));
}

#[test]
fn the_key_is_sent_but_never_shown_in_a_successful_run() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "500,ok");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"api_key_env": "GLIZNET_TEST_KEY"}),
    );
    let output = dir.path().join("out.jsonl");
    let report = dir.path().join("report.json");
    let out = generate(&config, &output, &["--report", report.to_str().unwrap()]);
    assert_success(&out);
    assert!(server.requests().iter().all(|r| r["auth_sent"] == true));
    for text in [
        stderr(&out),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(&output).unwrap(),
        std::fs::read_to_string(&report).unwrap(),
    ] {
        assert!(!text.contains("SENTINEL"), "the key leaked: {text}");
    }
    // An unset key variable is named, and is bad input.
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"api_key_env": "GLIZNET_UNSET_KEY_VAR"}),
    );
    let out = generate(&config, &dir.path().join("other.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("GLIZNET_UNSET_KEY_VAR"),
        "{}",
        stderr(&out)
    );
}

/// Issue 35, defect 1: a server that writes the key into an answer (the text, a label, the
/// second pass's negatives, an error message long enough to be cut) gets none of it into the
/// output, the report or stderr; an answer holding the key is counted as `secret_echo`.
#[test]
fn an_answer_that_echoes_the_key_is_dropped_and_the_key_never_lands_anywhere() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(
        dir.path(),
        "500key,echokey,echokeylabel,echokeyescaped,echokeyneg",
    );
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"api_key_env": "GLIZNET_TEST_KEY", "examples": 1,
            "extra_negatives": 2}),
    );
    let output = dir.path().join("out.jsonl");
    let report = dir.path().join("report.json");
    let out = generate(&config, &output, &["--report", report.to_str().unwrap()]);
    assert_success(&out);
    let written = lines(&output);
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(
        written[0]["not_labels"],
        serde_json::json!(["sports_news", "celebrity_gossip", "weather_report"])
    );
    let parsed: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(parsed["rejected_by_reason"]["secret_echo"], 3, "{parsed}");
    assert!(stderr(&out).contains("3 secret_echo"), "{}", stderr(&out));
    assert!(stderr(&out).contains("HTTP 500: xxx"), "{}", stderr(&out));
    for text in [
        stderr(&out),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(&output).unwrap(),
        std::fs::read_to_string(&report).unwrap(),
    ] {
        // Not even the first characters of a key cut short.
        assert!(!text.contains(&SENTINEL[..6]), "the key leaked: {text}");
    }
}

/// Issue 35, defect 10: a 401 or a 404 ends the run, and the request that got it is counted.
#[test]
fn a_refused_key_or_an_unknown_model_counts_its_request() {
    for fault in ["401", "404"] {
        let dir = TempDir::new().unwrap();
        let server = FaultServer::start(dir.path(), fault);
        let config = write_config(
            dir.path(),
            server.port,
            serde_json::json!({"api_key_env": "GLIZNET_TEST_KEY"}),
        );
        let output = dir.path().join("out.jsonl");
        let report = dir.path().join("report.json");
        let out = generate(&config, &output, &["--report", report.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{fault}: {}", stderr(&out));
        assert_eq!(server.requests().len(), 1, "{fault}");
        let parsed: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(parsed["requests"], 1, "{fault}: {parsed}");
        assert_eq!(parsed["ending"], "failed", "{fault}");
        assert!(
            stderr(&out).contains("; 1 requests, 0 rejected"),
            "{fault}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn an_unknown_model_stops_at_once() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "404");
    let config = write_config(dir.path(), server.port, serde_json::json!({}));
    let output = dir.path().join("out.jsonl");
    let out = generate(&config, &output, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("404 for model \"fake\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "");
}

#[test]
fn structured_output_falls_back_to_json_object_then_text() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "rejectschema");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"structured_output": "auto"}),
    );
    let output = dir.path().join("out.jsonl");
    let out = generate(&config, &output, &[]);
    assert_success(&out);
    let forms: Vec<(Value, Value)> = server
        .requests()
        .iter()
        .map(|r| (r["response_format"].clone(), r["format_has_schema"].clone()))
        .collect();
    // json_schema is refused once; json_object with the schema works and is kept.
    assert_eq!(
        forms,
        [
            ("json_schema".into(), true.into()),
            ("json_object".into(), true.into()),
            ("json_object".into(), true.into()),
        ]
    );
    assert!(
        stderr(&out).contains("using json_object_schema"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lines(&output).len(), 2);

    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "rejectformat");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"structured_output": "auto"}),
    );
    let output = dir.path().join("out.jsonl");
    let out = generate(&config, &output, &[]);
    assert_success(&out);
    let forms: Vec<Value> = server
        .requests()
        .iter()
        .map(|r| r["response_format"].clone())
        .collect();
    assert_eq!(
        forms,
        [
            Value::from("json_schema"),
            "json_object".into(),
            "json_object".into(),
            Value::Null,
            Value::Null
        ]
    );
    // The JSON is found in the prose of a plain-text answer.
    assert_eq!(lines(&output).len(), 2);
}

#[test]
fn junk_is_rejected_and_counted_by_reason() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "junk,badcontent,prose,ok,ok");
    let config = write_config(dir.path(), server.port, serde_json::json!({"examples": 3}));
    let output = dir.path().join("out.jsonl");
    let report = dir.path().join("report.json");
    let out = generate(&config, &output, &["--report", report.to_str().unwrap()]);
    assert_success(&out);
    let written = lines(&output);
    assert_eq!(written.len(), 3);
    for record in &written {
        for key in [
            "text",
            "labels",
            "not_labels",
            "domain",
            "length",
            "style",
            "model",
            "prompt",
        ] {
            assert!(record.get(key).is_some(), "{key} missing: {record}");
        }
        assert_eq!(record["model"], "fake");
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["rejected"], 2);
    assert_eq!(report["rejected_by_reason"]["placeholder_label"], 1);
    assert_eq!(report["rejected_by_reason"]["invalid_json"], 1);
    assert_eq!(report["requests"], 5);
    assert_eq!(report["prompt_tokens"], 250);
    let err = stderr(&out);
    assert!(
        err.contains("rejected: 1 invalid_json, 1 placeholder_label"),
        "{err}"
    );
    // On a pipe: plain progress lines, the last at the target.
    assert!(
        err.contains("3/3 examples  2 rejected  400 tokens"),
        "{err}"
    );
}

#[test]
fn max_requests_bounds_a_run_of_junk() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "junk");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"max_requests": 4, "concurrency": 2}),
    );
    let output = dir.path().join("out.jsonl");
    let out = generate(&config, &output, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("made all 4 requests allowed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.requests().len(), 4);
    assert!(lines(&output).is_empty());
}

#[test]
fn ctrl_c_leaves_whole_lines_and_a_rerun_continues_with_the_same_prompts() {
    let dir = TempDir::new().unwrap();
    // Two answers, then a request that takes seconds: Ctrl-C comes during it.
    let server = FaultServer::start(dir.path(), "ok,ok,slow");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"examples": 4, "timeout_secs": 30}),
    );
    let output = dir.path().join("out.jsonl");
    let child = Command::new(BIN)
        .args(["generate", "--config"])
        .arg(&config)
        .arg("--output")
        .arg(&output)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.requests().len() < 3 {
        assert!(Instant::now() < deadline, "the third request never came");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "it waited for the slow request"
    );
    assert!(
        stderr(&out).contains("run the same command again"),
        "{}",
        stderr(&out)
    );
    let first = lines(&output);
    assert_eq!(first.len(), 2);
    drop(server);

    let server = FaultServer::start(dir.path(), "ok");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"examples": 4, "timeout_secs": 30}),
    );
    let out = generate(&config, &output, &[]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("continuing: 2 examples"),
        "{}",
        stderr(&out)
    );
    let all = lines(&output);
    assert_eq!(all.len(), 4);
    assert_eq!(all[..2], first[..]);
    let attempts: Vec<u64> = all.iter().map(|r| r["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [0, 1, 2, 3]);
    let texts: std::collections::HashSet<&str> =
        all.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 4, "duplicates");
    // Done: running again makes no request.
    let before = server.requests().len();
    assert_success(&generate(&config, &output, &[]));
    assert_eq!(server.requests().len(), before);

    // The same seed gives the same prompts: a fresh run writes the same prompt per attempt.
    let fresh = dir.path().join("fresh.jsonl");
    assert_success(&generate(&config, &fresh, &[]));
    let prompts = |records: &[Value]| -> Vec<(u64, String)> {
        records
            .iter()
            .map(|r| {
                (
                    r["attempt"].as_u64().unwrap(),
                    r["prompt"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(prompts(&lines(&fresh)), prompts(&all));
}

#[test]
fn bad_configs_and_foreign_outputs_are_usage_errors() {
    let dir = TempDir::new().unwrap();
    let config = write_config(dir.path(), 9, serde_json::json!({"exampels": 3}));
    let out = generate(&config, &dir.path().join("o.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown field `exampels`"),
        "{}",
        stderr(&out)
    );

    let config = write_config(dir.path(), 9, serde_json::json!({}));
    let out = generate(
        &config,
        &dir.path().join("o.jsonl"),
        &["--set", "concurrency=0"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--set concurrency=0: concurrency:"),
        "{}",
        stderr(&out)
    );

    let foreign = dir.path().join("notes.jsonl");
    std::fs::write(&foreign, "{\"text\": \"mine\", \"labels\": [\"a\"]}\n").unwrap();
    let out = generate(&config, &foreign, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("notes.jsonl:1: not a generated example"));
    assert!(std::fs::read_to_string(&foreign).unwrap().contains("mine"));

    let out = Command::new(BIN)
        .args(["generate", "--print-config"])
        .output()
        .unwrap();
    assert_success(&out);
    let defaults: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "provider",
        "base_url",
        "model",
        "api_key_env",
        "examples",
        "seed",
        "concurrency",
    ] {
        assert!(defaults.get(key).is_some(), "{key}");
    }
    assert!(stderr(&out).contains("{domain}"));
}

#[test]
fn requests_per_minute_spaces_the_requests() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "ok");
    // 300 a minute: one every 0.2 s, whatever the concurrency.
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"examples": 5, "concurrency": 3, "requests_per_minute": 300}),
    );
    let output = dir.path().join("out.jsonl");
    let start = Instant::now();
    assert_success(&generate(&config, &output, &[]));
    assert!(
        start.elapsed() >= Duration::from_millis(780),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(lines(&output).len(), 5);
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn a_second_pass_adds_usable_hard_negatives_only() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "ok");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"extra_negatives": 2}),
    );
    let output = dir.path().join("out.jsonl");
    let report = dir.path().join("report.json");
    let out = generate(&config, &output, &["--report", report.to_str().unwrap()]);
    assert_success(&out);
    for record in lines(&output) {
        assert_eq!(
            record["not_labels"],
            serde_json::json!([
                "sports_news",
                "celebrity_gossip",
                "weather_report",
                "sports_betting"
            ])
        );
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        report["second_pass"],
        serde_json::json!({"requests": 2, "negatives_added": 4, "unusable_answers": 0})
    );
    assert_eq!(report["requests"], 4);
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn mine_adds_embedding_mined_negatives_to_a_copy() {
    let dir = TempDir::new().unwrap();
    let server = FaultServer::start(dir.path(), "ok");
    let config = write_config(dir.path(), server.port, serde_json::json!({}));
    let model = dir.path().join("model");
    gliznet::testing::write_tiny_model(
        &model,
        gliznet::model::head::Similarity::Cosine,
        Some(16),
        7,
    )
    .unwrap();
    let pool = dir.path().join("pool.txt");
    std::fs::write(&pool, "weather\nfinance\nmusic\ncooking\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let mined = dir.path().join("mined.jsonl");
    let out = generate(
        &config,
        &output,
        &[
            "--mine",
            mined.to_str().unwrap(),
            "--mine-k",
            "2",
            // A random tiny encoder finds every label alike: no synonym guard here.
            "--mine-max-similarity",
            "1.0",
            "--mine-pool",
            pool.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--device",
            "cpu",
        ],
    );
    assert_success(&out);
    let generated = lines(&output);
    let with_mined = lines(&mined);
    assert_eq!(generated.len(), 2);
    assert_eq!(with_mined.len(), 2);
    for (g, m) in generated.iter().zip(&with_mined) {
        assert_eq!(g["text"], m["text"]);
        let (g, m) = (
            g["not_labels"].as_array().unwrap(),
            m["not_labels"].as_array().unwrap(),
        );
        assert_eq!(m.len(), g.len() + 2, "{m:?}");
        assert_eq!(m[..g.len()], g[..]);
    }
    // --mine may not be the output itself.
    let out = generate(&config, &output, &["--mine", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn near_duplicates_by_embedding_cosine_are_rejected() {
    let dir = TempDir::new().unwrap();
    // Every answer is the same sentence with another report number.
    let server = FaultServer::start(dir.path(), "ok");
    let config = write_config(
        dir.path(),
        server.port,
        serde_json::json!({"examples": 3, "max_requests": 4, "near_duplicate_cosine": 0.95}),
    );
    let output = dir.path().join("out.jsonl");
    let report = dir.path().join("report.json");
    let out = generate(
        &config,
        &output,
        &["--report", report.to_str().unwrap(), "--device", "cpu"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(lines(&output).len(), 1);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        report["rejected_by_reason"]["near_duplicate"], 3,
        "{report}"
    );
    // A rerun remembers the text already there.
    let out = generate(&config, &output, &["--device", "cpu"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(lines(&output).len(), 1);
    assert!(
        stderr(&out).contains("4 near_duplicate"),
        "{}",
        stderr(&out)
    );
}
