//! End-to-end tests of issue 13 (hardening): output files written safely and checked before
//! the work, run directories that cannot be clobbered or shared, bounded sizes, a closed
//! standard output, and errors that name their place. One test (or more) per numbered case.

mod support;

use gliznet::model::head::Similarity;
use gliznet::testing::{write_tiny_backbone, write_tiny_model};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;
use support::{assert_input_error, assert_success, run, s, stderr, BIN};
use tempfile::TempDir;

/// A tiny model, a 3-example dev set and a labels file in a temp dir.
struct Fixture {
    dir: TempDir,
    model: PathBuf,
    data: PathBuf,
}

const DEV: &str = "{\"text\": \"the cat sat\", \"labels\": [\"cat\"], \"not_labels\": [\"dog\", \"bank\"]}\n\
                   {\"text\": \"the dog sat\", \"labels\": [\"dog\"], \"not_labels\": [\"cat\", \"bank\"]}\n\
                   {\"text\": \"the bank\", \"labels\": [\"bank\"], \"not_labels\": [\"cat\", \"dog\"]}\n";

fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let model = dir.path().join("model");
    write_tiny_model(&model, Similarity::Cosine, Some(16), 3).unwrap();
    let data = dir.path().join("dev.jsonl");
    std::fs::write(&data, DEV).unwrap();
    Fixture { dir, model, data }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn eval(&self, extra: &[&str]) -> Output {
        let mut args = vec!["eval", "--model", s(&self.model), "--data", s(&self.data)];
        args.extend_from_slice(extra);
        run(&args)
    }

    /// Files in the fixture's top directory whose names look like temporary files.
    fn debris(&self) -> Vec<String> {
        debris(self.dir.path())
    }
}

fn debris(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .unwrap()
        .file_type()
        .is_symlink()
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

// Case 1: a destination that is not a regular file is refused before any work; a symbolic
// link is written through to its target.
#[test]
fn case01_outputs_that_are_not_regular_files_are_refused_and_links_are_followed() {
    use std::os::unix::fs::FileTypeExt;
    let f = fixture();
    let fifo = f.path("pipe.json");
    mkfifo(&fifo);
    for (flag, dest) in [
        ("--report", s(&fifo)),
        ("--predictions", s(&fifo)),
        ("--report", "/dev/null"),
        ("--report", s(f.dir.path())),
    ] {
        let out = f.eval(&[flag, dest]);
        assert_input_error(&out, &[flag, "not a regular file"]);
        assert!(out.stdout.is_empty(), "the evaluation ran: {flag} {dest}");
    }
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    let target = f.path("target.json");
    std::fs::write(&target, "old").unwrap();
    let link = f.path("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_success(&f.eval(&["--report", s(&link)]));
    assert!(is_symlink(&link), "the link was replaced");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert!(report["accuracy"].is_number());

    let input = f.path("in.jsonl");
    std::fs::write(&input, "{\"text\": \"the cat\", \"labels\": [\"cat\"]}\n").unwrap();
    let pool = f.path("pool.txt");
    std::fs::write(&pool, "cat\ndog\nbank\n").unwrap();
    let out = run(&[
        "mine-negatives",
        "--model",
        s(&f.model),
        "--input",
        s(&input),
        "--pool",
        s(&pool),
        "--k",
        "1",
        "--output",
        s(&fifo),
    ]);
    assert_input_error(&out, &["--output", "not a regular file"]);
    assert!(f.debris().is_empty(), "{:?}", f.debris());
}

// Case 2: the temporary file has a unique name, is created exclusively and never follows a
// link planted at a predictable name; concurrent writers each produce a whole file.
#[test]
fn case02_a_planted_link_at_the_temporary_name_is_not_followed() {
    let f = fixture();
    let victim = f.path("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    for name in [".r2.json.tmp", "r2.json.tmp", ".r2.json.swp"] {
        std::os::unix::fs::symlink(&victim, f.path(name)).unwrap();
    }
    let report = f.path("r2.json");
    assert_success(&f.eval(&["--report", s(&report)]));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let parsed: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(parsed["accuracy"].is_number());
    assert!(is_symlink(&f.path(".r2.json.tmp")));
}

#[test]
fn case02_concurrent_writers_of_one_output_each_write_a_whole_file() {
    let f = fixture();
    let n = 600;
    let input = f.path("in.jsonl");
    let lines: String = (0..n)
        .map(|i| format!("{{\"text\": \"the cat sat {i}\", \"labels\": [\"cat\"]}}\n"))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let pool = f.path("pool.txt");
    std::fs::write(&pool, "cat\ndog\nbank\nnews\nsports\n").unwrap();
    let output = f.path("mined.jsonl");
    let spawn = || {
        Command::new(BIN)
            .args([
                "mine-negatives",
                "--model",
                s(&f.model),
                "--input",
                s(&input),
                "--pool",
                s(&pool),
                "--k",
                "2",
                "--output",
                s(&output),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..3).map(|_| spawn()).collect();
    for child in children {
        assert_success(&child.wait_with_output().unwrap());
    }
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(text.lines().count(), n);
    for line in text.lines() {
        let _: Value = serde_json::from_str(line).unwrap();
    }
    assert!(f.debris().is_empty(), "{:?}", f.debris());
}

/// A tiny backbone and a training config (one optimizer step) in a temp dir.
fn train_setup(output: &Path) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    write_tiny_backbone(&dir.path().join("backbone"), 11).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_train.jsonl");
    let config = serde_json::json!({
        "backbone": dir.path().join("backbone"),
        "train_file": fixture,
        "validation_file": fixture,
        "similarity": "cosine",
        "projection_dim": 16,
        "max_length": 64,
        "max_label_tokens": 8,
        "min_text_tokens": 8,
        "epochs": 1,
        "max_steps": 1,
        "batch_size": 4,
        "seed": 5,
        "output_dir": output,
        "device": "cpu"
    });
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    (dir, path)
}

fn train(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["train", "--config", s(config)];
    all.extend_from_slice(args);
    run(&all)
}

/// Each file's name, size and a checksum of its bytes.
fn snapshot(dir: &Path) -> Vec<(String, usize, u64)> {
    let mut files: Vec<(String, usize, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            let sum = bytes.iter().fold(0u64, |h, &b| {
                h.wrapping_mul(1_000_003).wrapping_add(b as u64)
            });
            (
                e.file_name().to_string_lossy().into_owned(),
                bytes.len(),
                sum,
            )
        })
        .collect();
    files.sort();
    files
}

// Case 3: training into a directory that holds other files (a backbone, say) is refused
// unless --force; an earlier run needs --resume or --force.
#[test]
fn case03_train_refuses_a_non_empty_directory_that_is_not_a_run() {
    let root = TempDir::new().unwrap();
    let output = root.path().join("out");
    let (_keep, config) = train_setup(&output);
    write_tiny_backbone(&output, 3).unwrap();
    let before = snapshot(&output);
    let out = train(&config, &[]);
    assert_input_error(&out, &[s(&output), "not empty", "--force"]);
    assert_eq!(snapshot(&output), before, "the directory was changed");

    assert_success(&train(&config, &["--force"]));
    assert!(output.join("checkpoint").is_dir());
    let out = train(&config, &[]);
    assert_input_error(
        &out,
        &["already holds a training run", "--resume", "--force"],
    );
    assert_success(&train(&config, &["--force"]));
}

// Case 4: an output that is an input, or the other output, is refused before the work.
#[test]
fn case04_outputs_may_not_overwrite_an_input_or_each_other() {
    let f = fixture();
    let data = s(&f.data);
    let out = f.eval(&["--report", data]);
    assert_input_error(&out, &["--report", "--data", "same file"]);
    assert_eq!(std::fs::read_to_string(&f.data).unwrap(), DEV);

    // Through another spelling of the path and through a hard link.
    let alias = format!(
        "{}/../{}/dev.jsonl",
        s(f.dir.path()),
        f.dir.path().file_name().unwrap().to_str().unwrap()
    );
    assert_input_error(
        &f.eval(&["--predictions", &alias]),
        &["--predictions", "same file"],
    );
    let hard = f.path("hard.jsonl");
    std::fs::hard_link(&f.data, &hard).unwrap();
    assert_input_error(&f.eval(&["--report", s(&hard)]), &["--report", "same file"]);
    assert_eq!(std::fs::read_to_string(&f.data).unwrap(), DEV);

    let both = f.path("both.json");
    let out = f.eval(&["--report", s(&both), "--predictions", s(&both)]);
    assert_input_error(&out, &["--predictions", "--report", "same file"]);
    assert!(!both.exists());

    let labels = f.path("labels.txt");
    std::fs::write(&labels, "cat\ndog\nbank\n").unwrap();
    let out = f.eval(&["--labels-file", s(&labels), "--report", s(&labels)]);
    assert_input_error(&out, &["--labels-file", "same file"]);
    assert_eq!(
        std::fs::read_to_string(&labels).unwrap(),
        "cat\ndog\nbank\n"
    );

    let out = run(&[
        "mine-negatives",
        "--model",
        s(&f.model),
        "--input",
        data,
        "--output",
        data,
    ]);
    assert_input_error(&out, &["--output", "--input", "same file"]);
    assert_eq!(std::fs::read_to_string(&f.data).unwrap(), DEV);
}

// Case 5: a run directory is locked while a run uses it; the refusal names the holder's pid,
// and a lock left by a dead process does not block.
#[test]
fn case05_a_run_directory_is_locked_and_the_holder_named() {
    let root = TempDir::new().unwrap();
    let output = root.path().join("out");
    std::fs::create_dir(&output).unwrap();
    let (_keep, config) = train_setup(&output);
    // Another process holds the lock: this one, standing in for a running `gliznet train`.
    let lock_path = output.join(".gliznet.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(&lock_path, "4242\n").unwrap();
    let out = train(&config, &[]);
    assert_input_error(&out, &[s(&output), "in use", "pid 4242"]);
    let out = train(&config, &["--resume"]);
    assert_input_error(&out, &["pid 4242"]);
    assert!(!output.join("metrics.jsonl").exists());
    // The holder ends (its flock goes with it); its lock file with a stale pid stays behind.
    drop(lock);
    assert_success(&train(&config, &[]));
    assert!(output.join("checkpoint").is_dir());
}

// Case 6: size arguments are bounded with a clear message; nothing is preallocated from them.
#[test]
fn case06_huge_sizes_are_refused_with_a_message_not_an_abort() {
    let f = fixture();
    let m = s(&f.model);
    for args in [
        vec![
            "predict",
            "--model",
            m,
            "--text",
            "a",
            "--labels",
            "cat",
            "--batch-size",
            "4294967295",
        ],
        vec![
            "predict",
            "--model",
            m,
            "--text",
            "a",
            "--labels",
            "cat",
            "--batch-size",
            "100000",
        ],
        vec![
            "eval",
            "--model",
            m,
            "--data",
            s(&f.data),
            "--batch-size",
            "4294967295",
        ],
        vec![
            "mine-negatives",
            "--model",
            m,
            "--input",
            s(&f.data),
            "--output",
            "x",
            "--k",
            "4294967295",
        ],
        vec![
            "mine-negatives",
            "--model",
            m,
            "--input",
            s(&f.data),
            "--output",
            "x",
            "--batch-size",
            "99999999999",
        ],
        vec![
            "mine-negatives",
            "--model",
            m,
            "--input",
            s(&f.data),
            "--output",
            "x",
            "--skip-top",
            "18446744073709551615",
        ],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("invalid value"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    // Config sizes that set allocations, too.
    let root = TempDir::new().unwrap();
    let (_keep, config) = train_setup(&root.path().join("out"));
    let out = train(&config, &["--set", "projection_dim=1000000000000"]);
    assert_input_error(
        &out,
        &["--set projection_dim=1000000000000", "over the limit"],
    );
    // The largest accepted batch size runs (and allocates only what the texts need).
    let out = run(&[
        "predict",
        "--model",
        m,
        "--text",
        "a cat",
        "--labels",
        "cat,dog",
        "--batch-size",
        "1024",
    ]);
    assert_success(&out);
}

// Case 8: a missing directory, a directory, or an unwritable place is found before the work,
// with exit 2 and the flag named, and leaves nothing behind.
#[test]
fn case08_bad_output_paths_fail_before_the_work_without_debris() {
    let f = fixture();
    // The data's last line is broken: an error about it would mean the work started first.
    let bad_data = f.path("bad.jsonl");
    std::fs::write(&bad_data, format!("{DEV}not json\n")).unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", s(&f.model), "--data", s(&bad_data)];
        args.extend_from_slice(extra);
        run(&args)
    };
    let missing = f.path("no/such/dir/report.json");
    assert_input_error(
        &eval(&["--report", s(&missing)]),
        &["--report", "does not exist"],
    );
    assert_input_error(
        &eval(&["--predictions", s(&missing)]),
        &["--predictions", "does not exist"],
    );
    let out = eval(&["--report", s(f.dir.path())]);
    assert_input_error(&out, &["--report", "directory"]);
    assert!(f.debris().is_empty(), "{:?}", f.debris());

    let readonly = f.path("readonly");
    std::fs::create_dir(&readonly).unwrap();
    let mut perms = std::fs::metadata(&readonly).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&readonly, perms).unwrap();
    // Root writes anywhere; the check only means something for other users.
    if std::fs::write(readonly.join("probe"), "").is_err() {
        let out = eval(&["--report", s(&readonly.join("r.json"))]);
        assert_input_error(&out, &["--report", "not writable"]);
        // A training run's output directory too, before the data or backbone are read.
        let (_keep, config) = train_setup(&readonly.join("run"));
        assert_input_error(&train(&config, &[]), &["cannot create", "run"]);
    }
    assert!(debris(&readonly).is_empty());
}

// Case 9: a closed standard output is an error (exit 1 with a message), not lost results
// with exit 0; a reader that goes away (EPIPE) stays quiet.
#[test]
fn case09_a_closed_stdout_is_an_error() {
    let f = fixture();
    let closed = |args: &[&str]| {
        Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" >&-")
            .arg(BIN)
            .args(args)
            .output()
            .unwrap()
    };
    let m = s(&f.model);
    for args in [
        vec![
            "predict", "--model", m, "--text", "a cat", "--labels", "cat,dog",
        ],
        vec!["eval", "--model", m, "--data", s(&f.data)],
    ] {
        let out = closed(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("standard output is closed"),
            "{}",
            stderr(&out)
        );
    }
    // Sent to /dev/null on purpose: fine, write-only (a shell's >/dev/null) or read-write
    // (Python's subprocess.DEVNULL, the mode the runtime uses for a closed descriptor).
    for read in [false, true] {
        let null = std::fs::OpenOptions::new()
            .read(read)
            .write(true)
            .open("/dev/null")
            .unwrap();
        let out = Command::new(BIN)
            .args([
                "predict", "--model", m, "--text", "a cat", "--labels", "cat,dog",
            ])
            .stdout(null)
            .output()
            .unwrap();
        assert_success(&out);
    }
    // A full disk: exit 1 with a message, no panic.
    if Path::new("/dev/full").exists() {
        for args in [
            vec![
                "predict", "--model", m, "--text", "a cat", "--labels", "cat,dog",
            ],
            vec!["eval", "--model", m, "--data", s(&f.data)],
        ] {
            let out = Command::new(BIN)
                .args(&args)
                .stdout(std::fs::File::create("/dev/full").unwrap())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
            assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        }
    }
}

// Case 13: errors name the file and line, the --text, the config key, and the --set.
#[test]
fn case13_input_errors_name_the_file_line_or_text() {
    let f = fixture();
    let m = s(&f.model);
    let input = f.path("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"the cat\"}\n{\"text\": \"\u{200b}\u{200b}\u{200d}\"}\n",
    )
    .unwrap();
    let out = run(&[
        "predict",
        "--model",
        m,
        "--input",
        s(&input),
        "--labels",
        "cat,dog",
    ]);
    assert_input_error(&out, &[&format!("{}:2", s(&input)), "no tokens"]);
    let out = run(&[
        "predict", "--model", m, "--text", "a cat", "--text", "\u{200b}", "--labels", "cat,dog",
    ]);
    assert_input_error(&out, &["--text #2", "no tokens"]);
    let data = f.path("zw.jsonl");
    std::fs::write(
        &data,
        format!(
            "{}{{\"text\": \"\u{200b}\", \"labels\": [\"cat\"], \"not_labels\": [\"dog\"]}}\n",
            DEV
        ),
    )
    .unwrap();
    let out = run(&["eval", "--model", m, "--data", s(&data)]);
    assert_input_error(&out, &[&format!("{}:4", s(&data)), "no tokens"]);
}

// Case 13: a config error names the key, and the --set it came from (not the file).
#[test]
fn case13_config_errors_name_the_key_and_the_override() {
    let root = TempDir::new().unwrap();
    let (_keep, config) = train_setup(&root.path().join("out"));
    let out = train(&config, &["--set", "batch_size=\"16\""]);
    assert_input_error(
        &out,
        &["--set batch_size=\"16\"", "batch_size: invalid type"],
    );
    let out = train(&config, &["--set", "epochs=0"]);
    assert_input_error(&out, &["--set epochs=0", "epochs must be at least 1"]);
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["batch_size"] = "16".into();
    std::fs::write(&config, json.to_string()).unwrap();
    let out = train(&config, &["--set", "epochs=2"]);
    assert_input_error(
        &out,
        &[&format!("{}: batch_size: invalid type", s(&config))],
    );
    assert!(!stderr(&out).contains("--set"), "{}", stderr(&out));
}

// Case 14: encoder weights that the config does not use are an error, as missing ones are.
#[test]
fn case14_unused_encoder_weights_are_an_error() {
    let f = fixture();
    let config_path = f.model.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let layers = config["num_hidden_layers"].as_u64().unwrap();
    assert!(layers >= 2);
    config["num_hidden_layers"] = (layers - 1).into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let started = Instant::now();
    let out = run(&[
        "predict",
        "--model",
        s(&f.model),
        "--text",
        "a cat",
        "--labels",
        "cat,dog",
    ]);
    assert_input_error(
        &out,
        &[
            "model.safetensors",
            &format!("encoder.layer.{}", layers - 1),
            "num_hidden_layers",
        ],
    );
    assert!(started.elapsed().as_secs() < 60);
}

// Case 10: a UTF-8 byte-order mark does not break a JSONL file or join the first label, and
// errors name the labels flag actually used.
#[test]
fn case10_a_byte_order_mark_is_skipped_and_the_flag_used_is_named() {
    let f = fixture();
    let m = s(&f.model);
    let input = f.path("bom.jsonl");
    std::fs::write(&input, "\u{feff}{\"text\": \"the cat\"}\n").unwrap();
    let labels = f.path("labels.txt");
    std::fs::write(&labels, "\u{feff}economy\ncat\n").unwrap();
    let out = run(&[
        "predict",
        "--model",
        m,
        "--input",
        s(&input),
        "--labels-file",
        s(&labels),
        "--format",
        "jsonl",
    ]);
    assert_success(&out);
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["labels"][0]["label"], "economy");

    let data = f.path("bom-dev.jsonl");
    std::fs::write(&data, format!("\u{feff}{DEV}")).unwrap();
    assert_success(&run(&["eval", "--model", m, "--data", s(&data)]));
    let out = run(&[
        "eval",
        "--model",
        m,
        "--data",
        s(&data),
        "--labels-file",
        s(&labels),
    ]);
    assert_input_error(&out, &["not among the --labels-file candidates"]);
    let out = run(&[
        "eval",
        "--model",
        m,
        "--data",
        s(&data),
        "--labels",
        "cat,economy",
    ]);
    assert_input_error(&out, &["not among the --labels candidates"]);
    let out = run(&[
        "predict",
        "--model",
        m,
        "--text",
        "a",
        "--labels-file",
        s(&f.data),
    ]);
    assert!(!stderr(&out).contains("--labels:"), "{}", stderr(&out));
}

// Case 11: comment lines in a labels file are skipped (documented), not turned into labels.
#[test]
fn case11_comment_lines_in_a_labels_file_are_not_labels() {
    let f = fixture();
    let labels = f.path("labels.txt");
    std::fs::write(
        &labels,
        "# candidate labels\ncat\n  # dogs next\ndog\nbank\n",
    )
    .unwrap();
    let out = run(&[
        "predict",
        "--model",
        s(&f.model),
        "--text",
        "the cat",
        "--labels-file",
        s(&labels),
        "--format",
        "jsonl",
    ]);
    assert_success(&out);
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = record["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cat", "dog", "bank"]);
    assert_success(&run(&[
        "eval",
        "--model",
        s(&f.model),
        "--data",
        s(&f.data),
        "--labels-file",
        s(&labels),
    ]));
}

// Case 12: the resume hint keeps the --set overrides and works as printed; a config that
// differs names the keys.
#[test]
fn case12_the_resume_hint_works_as_printed_and_differences_are_named() {
    let root = TempDir::new().unwrap();
    let output = root.path().join("out");
    let (_keep, config) = train_setup(&output);
    let out = train(
        &config,
        &[
            "--set",
            "max_steps=3",
            "--set",
            "device=\"cpu\"",
            "--stop-after-steps",
            "1",
        ],
    );
    assert_success(&out);
    let err = stderr(&out);
    let hint = err
        .lines()
        .find_map(|l| l.split_once("resume with: ").map(|(_, h)| h.to_string()))
        .unwrap_or_else(|| panic!("no hint in: {err}"));
    assert!(hint.contains("--set max_steps=3"), "{hint}");
    let command = hint.strip_prefix("gliznet ").unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("exec \"$0\" {command}"))
        .arg(BIN)
        .output()
        .unwrap();
    assert_success(&out);
    let out = train(&config, &["--set", "max_steps=4", "--resume"]);
    assert_input_error(&out, &["config differs", "max_steps"]);
}

// Case 15: in a table, a newline in a label stays escaped on its row, and a huge label does
// not widen every row; JSON keeps the label whole.
#[test]
fn case15_table_rows_stay_one_line_and_narrow() {
    let f = fixture();
    let long = "x".repeat(5000);
    let labels = format!("cat,two\nlines,{long}");
    let out = run(&[
        "predict",
        "--model",
        s(&f.model),
        "--text",
        "the cat",
        "--labels",
        &labels,
    ]);
    assert_success(&out);
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[2].contains("two\\nlines"), "{table}");
    assert!(lines.iter().all(|l| l.chars().count() < 80), "{table}");
    let out = run(&[
        "predict",
        "--model",
        s(&f.model),
        "--text",
        "the cat",
        "--labels",
        &labels,
        "--format",
        "jsonl",
    ]);
    assert_success(&out);
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["labels"][2]["label"].as_str().unwrap().len(), 5000);
}

// Case 16: `train --print-config` prints every key with its default, and docs/config.md
// documents each of them.
#[test]
fn case16_print_config_lists_every_key_and_docs_config_documents_them() {
    let out = run(&["train", "--print-config"]);
    assert_success(&out);
    let defaults: Value = serde_json::from_slice(&out.stdout).unwrap();
    let defaults = defaults.as_object().unwrap();
    assert!(defaults.len() > 20);
    assert_eq!(defaults["early_stopping_metric"], "loss");
    assert_eq!(defaults["batch_size"], 16);
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"))
            .unwrap();
    for key in defaults.keys() {
        assert!(
            reference.contains(&format!("| `{key}` |")),
            "docs/config.md's config table lacks `{key}`"
        );
    }
    let help = run(&["train", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--print-config"));
    // --print-config with other arguments is a usage error, not a silent choice.
    let out = run(&["train", "--print-config", "--config", "x.json"]);
    assert_eq!(out.status.code(), Some(2));
}

// The issue's smaller items: negative thresholds get a range message (not clap's "unexpected
// argument"), predict without texts names both sources, and a trained model's files share
// one mode (model.safetensors was 0600 while the others were 0644).
#[test]
fn smaller_items_thresholds_text_sources_and_file_modes() {
    let f = fixture();
    let m = s(&f.model);
    let out = run(&[
        "predict",
        "--model",
        m,
        "--text",
        "a",
        "--labels",
        "cat",
        "--threshold",
        "-1",
    ]);
    assert_input_error(&out, &["--threshold -1 is outside [0, 1]"]);
    let out = run(&[
        "eval",
        "--model",
        m,
        "--data",
        s(&f.data),
        "--threshold",
        "-1",
    ]);
    assert_input_error(&out, &["--threshold -1 is outside [0, 1]"]);
    let out = run(&[
        "eval",
        "--model",
        m,
        "--data",
        s(&f.data),
        "--threshold",
        "2",
    ]);
    assert_input_error(&out, &["--threshold 2 is outside [0, 1]"]);
    let out = run(&[
        "predict",
        "--model",
        m,
        "--method",
        "bi-encoder",
        "--text",
        "a cat",
        "--labels",
        "cat,dog",
        "--threshold",
        "-0.5",
    ]);
    assert_success(&out);
    let out = run(&["predict", "--model", m, "--labels", "cat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--text") && stderr(&out).contains("--input"),
        "{}",
        stderr(&out)
    );

    use std::os::unix::fs::PermissionsExt;
    let root = TempDir::new().unwrap();
    let output = root.path().join("out");
    let (_keep, config) = train_setup(&output);
    assert_success(&train(&config, &[]));
    let mode = |name: &str| {
        std::fs::metadata(output.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("model.safetensors"), mode("config.json"));
    assert_eq!(mode("model.safetensors"), mode("tokenizer.json"));
    assert_eq!(mode("model.safetensors"), mode("metrics.jsonl"));
}

// Issue 35, defect 14: a bidi override (U+202E) or another format character (category Cf)
// in a label is escaped in predict's table and in eval's, as control characters are: it
// cannot reverse the score column.
#[test]
fn issue35_d14_format_characters_are_escaped_in_tables() {
    let f = fixture();
    let out = run(&[
        "predict",
        "--model",
        s(&f.model),
        "--text",
        "the cat\u{2066}",
        "--labels",
        "cat,evil\u{202e}dog",
    ]);
    assert_success(&out);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(!table.contains(['\u{202e}', '\u{2066}']), "{table:?}");
    assert!(table.contains("evil\\u{202e}dog"), "{table}");
    assert!(table.contains("the cat\\u{2066}"), "{table}");

    let data = f.path("bidi.jsonl");
    std::fs::write(
        &data,
        "{\"text\": \"the cat\", \"labels\": [\"ca\u{202e}t\"], \"not_labels\": [\"dog\"]}\n\
         {\"text\": \"the dog\", \"labels\": [\"dog\"], \"not_labels\": [\"ca\u{202e}t\"]}\n",
    )
    .unwrap();
    let out = run(&["eval", "--model", s(&f.model), "--data", s(&data)]);
    assert_success(&out);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(!table.contains('\u{202e}'), "{table:?}");
    assert!(table.contains("ca\\u{202e}t"), "{table}");
}

// Issue 35, defect 5: NaN, the infinities and values outside [-1, 1] for a cosine flag exit 2
// before any work (NaN mined nothing and exited 0); every float flag refuses NaN and infinity.
#[test]
fn issue35_d05_float_flags_refuse_nan_infinities_and_out_of_range() {
    let f = fixture();
    let input = f.path("in.jsonl");
    std::fs::write(&input, "{\"text\": \"the cat\", \"labels\": [\"cat\"]}\n").unwrap();
    let pool = f.path("pool.txt");
    std::fs::write(&pool, "cat\ndog\nbank\n").unwrap();
    let output = f.path("mined.jsonl");
    let mine = |value: &str| {
        run(&[
            "mine-negatives",
            "--model",
            s(&f.model),
            "--input",
            s(&input),
            "--pool",
            s(&pool),
            "--k",
            "1",
            "--output",
            s(&output),
            &format!("--max-similarity={value}"),
        ])
    };
    for bad in ["NaN", "nan", "inf", "-inf", "infinity", "1.5", "-1.01", "x"] {
        let out = mine(bad);
        assert_input_error(&out, &["--max-similarity"]);
        assert!(!output.exists(), "{bad}: mined anyway");
    }
    for good in ["-1", "-0.5", "0", "1"] {
        let out = mine(good);
        assert_success(&out);
        std::fs::remove_file(&output).unwrap();
    }
    // generate checks --mine-max-similarity when it parses its flags, not after the run.
    let out = run(&[
        "generate",
        "--config",
        "missing.json",
        "--output",
        s(&f.path("gen.jsonl")),
        "--mine",
        s(&f.path("mined.jsonl")),
        "--mine-max-similarity",
        "NaN",
    ]);
    assert_input_error(&out, &["--mine-max-similarity"]);
    // The thresholds of predict and eval, already checked, stay so for NaN and infinity.
    for bad in ["NaN", "inf", "-inf"] {
        let out = run(&[
            "predict",
            "--model",
            s(&f.model),
            "--text",
            "a",
            "--labels",
            "cat",
            &format!("--threshold={bad}"),
        ]);
        assert_input_error(&out, &["--threshold"]);
        let out = f.eval(&[&format!("--threshold={bad}")]);
        assert_input_error(&out, &["--threshold"]);
    }
    // Config keys come from JSON, which has no NaN and no infinity: a `--set` of one is a
    // string where a number is expected, and an overflowing number is not valid JSON.
    let root = TempDir::new().unwrap();
    let (_keep, config) = train_setup(&root.path().join("out"));
    for item in [
        "weight_decay=NaN",
        "adam_eps=Infinity",
        "max_grad_norm=1e999",
        "lr=-inf",
    ] {
        let out = train(&config, &["--set", item]);
        assert_input_error(&out, &[&format!("--set {item}"), "expected f64"]);
    }
    let overflowing = f.path("overflow.json");
    std::fs::write(&overflowing, "{\"weight_decay\": 1e999}").unwrap();
    assert_input_error(
        &train(&overflowing, &[]),
        &["not valid JSON", "number out of range"],
    );
    let gen = f.path("gen.json");
    std::fs::write(
        &gen,
        "{\"base_url\": \"http://127.0.0.1:9/v1\", \"model\": \"m\"}",
    )
    .unwrap();
    for item in [
        "temperature=NaN",
        "timeout_secs=inf",
        "length_tolerance=1e999",
    ] {
        let out = run(&[
            "generate",
            "--config",
            s(&gen),
            "--output",
            s(&f.path("gen.jsonl")),
            "--set",
            item,
        ]);
        assert_input_error(&out, &[&format!("--set {item}")]);
    }
}

// Issue 35, defect 16: a pool holding two spellings of one label (`Tennis`, `tennis`) gives
// one of them, never both, and is counted as one label; the output is a file eval accepts.
#[test]
fn issue35_d16_mined_negatives_have_one_spelling_per_label() {
    let f = fixture();
    let input = f.path("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"the cat sat\", \"labels\": [\"cat\"]}\n\
         {\"text\": \"the dog sat\", \"labels\": [\"dog\"], \"not_labels\": [\"Golf\"]}\n",
    )
    .unwrap();
    let pool = f.path("pool.txt");
    std::fs::write(&pool, "Tennis\ntennis\nTENNIS\nbank\nBank\ngolf\n").unwrap();
    let output = f.path("mined.jsonl");
    let mine = |k: &str| {
        run(&[
            "mine-negatives",
            "--model",
            s(&f.model),
            "--input",
            s(&input),
            "--pool",
            s(&pool),
            "--k",
            k,
            "--max-similarity",
            "1",
            "--output",
            s(&output),
        ])
    };
    // Three labels in six spellings: --k 4 is more than the pool holds.
    assert_input_error(&mine("4"), &["3 distinct labels", "--k 4"]);
    assert_success(&mine("3"));
    let text = std::fs::read_to_string(&output).unwrap();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let negatives: Vec<String> = record["not_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_lowercase())
            .collect();
        let distinct: std::collections::BTreeSet<&String> = negatives.iter().collect();
        assert_eq!(distinct.len(), negatives.len(), "{line}");
    }
    // The cat gets all three; the dog had golf already and gets the other two.
    assert_eq!(text.lines().count(), 2, "{text}");
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["not_labels"].as_array().unwrap().len(), 3, "{text}");
    let dev = f.path("mined-dev.jsonl");
    std::fs::copy(&output, &dev).unwrap();
    assert_success(&run(&["eval", "--model", s(&f.model), "--data", s(&dev)]));
}

// Issue 35, defect 7: `train --force` in an earlier run's directory removes that run's model
// (model.safetensors, config.json, tokenizer.json) before training, not when the new run
// first validates; the user's other files stay.
#[test]
fn issue35_d07_force_removes_the_earlier_runs_model_before_training() {
    let root = TempDir::new().unwrap();
    let output = root.path().join("out");
    let (_keep, config) = train_setup(&output);
    assert_success(&train(&config, &["--set", "eval_every=1"]));
    for name in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(output.join(name).is_file(), "{name}");
    }
    std::fs::write(output.join("notes.txt"), "mine").unwrap();
    // The new run pauses after step 1, before any validation: nothing of its own model yet.
    let out = train(
        &config,
        &[
            "--force",
            "--set",
            "max_steps=2",
            "--set",
            "eval_every=100",
            "--stop-after-steps",
            "1",
        ],
    );
    assert_success(&out);
    for name in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(
            !output.join(name).exists(),
            "the old run's {name} is still there"
        );
    }
    assert!(output.join("checkpoint").is_dir());
    assert_eq!(
        std::fs::read_to_string(output.join("notes.txt")).unwrap(),
        "mine"
    );
    // A run whose backbone is the directory's own model still reads it before it goes.
    let resumed = train(
        &config,
        &[
            "--set",
            "max_steps=2",
            "--set",
            "eval_every=100",
            "--resume",
        ],
    );
    assert_success(&resumed);
    assert!(output.join("model.safetensors").is_file());
    let own = train(
        &config,
        &[
            "--force",
            "--set",
            &format!("backbone={}", s(&output)),
            "--set",
            "eval_every=1",
        ],
    );
    assert_success(&own);
    assert!(output.join("model.safetensors").is_file());
}

// Issue 35, defect 9: a training file in which no example has a positive label is refused
// (exit 2, naming the file) before any training.
#[test]
fn issue35_d09_training_without_any_positive_label_is_refused() {
    let root = TempDir::new().unwrap();
    let output = root.path().join("out");
    let (keep, config) = train_setup(&output);
    let data = keep.path().join("negatives-only.jsonl");
    std::fs::write(
        &data,
        "{\"text\": \"the cat sat\", \"labels\": [], \"not_labels\": [\"dog\"]}\n\
         {\"text\": \"the dog sat\", \"not_labels\": [\"cat\"]}\n\
         {\"text\": \"the bank\", \"all_labels\": [\"cat\", \"bank\"], \"true_labels\": []}\n",
    )
    .unwrap();
    let out = train(
        &config,
        &[
            "--set",
            &format!("train_file={}", serde_json::json!(s(&data))),
        ],
    );
    assert_input_error(&out, &[s(&data), "no example has a positive label"]);
    assert!(!output.exists(), "the refused run left {output:?}");
}

// Issue 35, defect 13: `--predictions /dev/stdout` into a pipe was refused as "a symbolic
// link to nothing (dangling)"; it is written to, after the table, as asked. So are the other
// names of the standard streams and the other outputs written whole; generate's output,
// which is read back and continued, must be a file.
#[test]
fn issue35_d13_the_standard_streams_are_written_to_by_name() {
    let f = fixture();
    for name in ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"] {
        let out = f.eval(&["--predictions", name]);
        assert_success(&out);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.starts_with("model "), "{name}: {stdout}");
        let predictions: Vec<Value> = stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(predictions.len(), 3, "{name}: {stdout}");
        assert_eq!(predictions[0]["text"], "the cat sat", "{name}");
    }
    let out = f.eval(&["--report", "/dev/stderr"]);
    assert_success(&out);
    let report = stderr(&out);
    let start = report.find("{\n").expect("the report on stderr");
    let end = report.rfind("}\n").unwrap();
    let parsed: Value = serde_json::from_str(&report[start..=end]).unwrap();
    assert!(parsed["accuracy"].is_number(), "{report}");

    let input = f.path("in.jsonl");
    std::fs::write(&input, "{\"text\": \"the cat\", \"labels\": [\"cat\"]}\n").unwrap();
    let pool = f.path("pool.txt");
    std::fs::write(&pool, "cat\ndog\nbank\n").unwrap();
    let out = run(&[
        "mine-negatives",
        "--model",
        s(&f.model),
        "--input",
        s(&input),
        "--pool",
        s(&pool),
        "--k",
        "1",
        "--max-similarity",
        "1",
        "--output",
        "/dev/stdout",
    ]);
    assert_success(&out);
    let mined: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mined["not_labels"].as_array().unwrap().len(), 1);

    let config = f.path("gen.json");
    std::fs::write(
        &config,
        "{\"base_url\": \"http://127.0.0.1:9/v1\", \"model\": \"m\"}",
    )
    .unwrap();
    let out = run(&[
        "generate",
        "--config",
        s(&config),
        "--output",
        "/dev/stdout",
    ]);
    assert_input_error(&out, &["/dev/stdout", "must be a file"]);
    assert!(f.debris().is_empty(), "{:?}", f.debris());
}
