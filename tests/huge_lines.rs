//! Issue 35, defect 3: one huge JSONL line (50 MB took 5.7 GB and 49 s in `predict --input`)
//! is read up to what a model can use, in predict, eval and mine-negatives: each succeeds, and
//! its peak memory stays far below what tokenizing the whole line takes.

use gliznet::data::text::MAX_TEXT_CHARS;
use gliznet::model::head::Similarity;
use gliznet::testing::write_tiny_model;
use serde_json::Value;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_gliznet");

/// Peak memory allowed to one run. Reading the 20 MB line whole and tokenizing it took over
/// 2 GB; what is read of it now is a few hundred kilobytes.
const PEAK_BOUND: u64 = 300 << 20;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident memory of the child in bytes (Linux only).
    peak: Option<u64>,
}

/// Runs gliznet with `args` (stdout and stderr into files in `dir`) and measures its peak
/// resident memory, from `wait4` on Linux.
// On Linux the child is reaped by `wait4`, which std does not see.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str], dir: &Path) -> Run {
    let (out_path, err_path) = (dir.join("run.out"), dir.join("run.err"));
    #[allow(unused_mut)]
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    #[cfg(target_os = "linux")]
    let (code, peak) = {
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 reaps our own child and fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        // ru_maxrss is in kilobytes on Linux.
        (code, Some(usage.ru_maxrss as u64 * 1024))
    };
    #[cfg(not(target_os = "linux"))]
    let (code, peak) = (child.wait().unwrap().code(), None);
    Run {
        code,
        stdout: std::fs::read_to_string(out_path).unwrap(),
        stderr: std::fs::read_to_string(err_path).unwrap(),
        peak,
    }
}

fn check(run: &Run, what: &str) {
    assert_eq!(run.code, Some(0), "{what}: {}", run.stderr);
    if let Some(peak) = run.peak {
        assert!(
            peak < PEAK_BOUND,
            "{what}: peak memory {} MB for one 20 MB line",
            peak >> 20
        );
    }
}

#[test]
fn issue35_d03_one_huge_line_is_read_up_to_what_the_model_uses() {
    let dir = TempDir::new().unwrap();
    let model = dir.path().join("model");
    write_tiny_model(&model, Similarity::Cosine, Some(16), 3).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // A 20 MB text of whole words, then an ordinary line.
    let words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "é"];
    let mut text = String::with_capacity(20 << 20);
    let mut i = 0;
    while text.len() < 20 << 20 {
        text.push_str(words[i % words.len()]);
        text.push(' ');
        i += 1;
    }
    let input = dir.path().join("big.jsonl");
    let big_line = serde_json::json!({"text": text, "labels": ["cat"], "not_labels": ["dog"]});
    std::fs::write(
        &input,
        format!("{big_line}\n{{\"text\": \"the dog sat\", \"labels\": [\"dog\"], \"not_labels\": [\"cat\"]}}\n"),
    )
    .unwrap();

    let predict = run_measured(
        &[
            "predict",
            "--model",
            &s(&model),
            "--input",
            &s(&input),
            "--labels",
            "cat,dog",
            "--format",
            "jsonl",
        ],
        dir.path(),
    );
    check(&predict, "predict");
    let records: Vec<Value> = predict
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{}", predict.stdout);
    // The text is what was read of it: its first MAX_TEXT_CHARS characters.
    let kept = records[0]["text"].as_str().unwrap();
    assert_eq!(kept.chars().count(), MAX_TEXT_CHARS);
    assert!(text.starts_with(kept));
    assert_eq!(records[1]["text"], "the dog sat");
    assert!(
        predict
            .stderr
            .contains("note: 1 text(s) were truncated to fit beside their labels"),
        "{}",
        predict.stderr
    );

    let eval = run_measured(
        &["eval", "--model", &s(&model), "--data", &s(&input)],
        dir.path(),
    );
    check(&eval, "eval");

    let mined = dir.path().join("mined.jsonl");
    let mine = run_measured(
        &[
            "mine-negatives",
            "--model",
            &s(&model),
            "--input",
            &s(&input),
            "--pool",
            &s(&write_pool(dir.path())),
            "--k",
            "1",
            "--output",
            &s(&mined),
        ],
        dir.path(),
    );
    check(&mine, "mine-negatives");
    assert!(
        mine.stderr.contains(&format!(
            "note: 1 text(s) were longer than {MAX_TEXT_CHARS} characters"
        )),
        "{}",
        mine.stderr
    );
    let written = std::fs::read_to_string(&mined).unwrap();
    let first: Value = serde_json::from_str(written.lines().next().unwrap()).unwrap();
    assert_eq!(first["text"], kept);
}

fn write_pool(dir: &Path) -> std::path::PathBuf {
    let pool = dir.join("pool.txt");
    std::fs::write(&pool, "cat\ndog\nbank\nhouse\n").unwrap();
    pool
}
