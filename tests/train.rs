//! End-to-end training tests on a tiny seeded BERT (and MPNet, for learning and freezing):
//! learning, resume equivalence, crash safety, Ctrl-C, config errors.

use gliznet::model::bert::ModelType;
use gliznet::testing::write_tiny_backbone_of;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_gliznet");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A tiny backbone and a config that trains on the fixture and validates on the same file.
fn setup(extra: Value) -> (TempDir, PathBuf) {
    setup_of(ModelType::Bert, extra)
}

fn setup_of(model_type: ModelType, extra: Value) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    write_tiny_backbone_of(&dir.path().join("backbone"), model_type, 11).unwrap();
    let mut config = serde_json::json!({
        "backbone": dir.path().join("backbone"),
        "train_file": fixture("tiny_train.jsonl"),
        "validation_file": fixture("tiny_train.jsonl"),
        "similarity": "bilinear",
        "projection_dim": 16,
        "max_length": 64,
        "max_label_tokens": 8,
        "min_text_tokens": 8,
        "epochs": 100,
        "batch_size": 4,
        "encoder_lr": 3e-3,
        "head_lr": 1e-2,
        "warmup_fraction": 0.05,
        "dropout": 0.0,
        "eval_every": 1000,
        "save_every": 1000,
        "early_stopping_patience": 1000,
        "early_stopping_metric": "accuracy",
        "seed": 5,
        "output_dir": dir.path().join("out"),
        "device": "cpu"
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    (dir, path)
}

fn train(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["train", "--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn check(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn log_lines(out_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(out_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn validations(out_dir: &Path) -> Vec<Value> {
    log_lines(out_dir)
        .into_iter()
        .filter(|l| l["event"] == "validation")
        .collect()
}

#[test]
fn tiny_model_overfits_a_small_dataset() {
    for model_type in [ModelType::Bert, ModelType::Mpnet] {
        tiny_model_overfits(model_type);
    }
}

/// MPNet's run numbers every label from the same position and predicts in f32: its best
/// model (the first with accuracy 1) has scores near 0.5 that the order of `predict`'s labels
/// (the packing's, without shared positions) or bf16 can move across the threshold.
fn tiny_model_overfits(model_type: ModelType) {
    let (extra, precision) = match model_type {
        ModelType::Bert => (serde_json::json!({}), None),
        ModelType::Mpnet => (
            serde_json::json!({"shared_label_positions": true}),
            Some("--f32"),
        ),
    };
    let (dir, config) = setup_of(model_type, extra);
    let out = train(&config, &[]);
    check(&out);
    let out_dir = dir.path().join("out");
    let evals = validations(&out_dir);
    assert_eq!(evals.len(), 100, "one validation per epoch");
    let first_loss = evals[0]["loss"].as_f64().unwrap();
    let last = evals.last().unwrap();
    assert!(
        last["loss"].as_f64().unwrap() < first_loss / 4.0,
        "{model_type:?}: loss {first_loss} → {}",
        last["loss"]
    );
    assert_eq!(
        last["accuracy"].as_f64().unwrap(),
        1.0,
        "{model_type:?}: {last}"
    );
    // The saved model keeps its encoder's config and separator.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(saved["model_type"], model_type.name());
    let separator = model_type.special_tokens().sep;
    assert_eq!(saved["gliznet"]["label_separator"], separator);
    // The best model predicts the training labels.
    let predict = Command::new(BIN)
        .args([
            "predict",
            "--model",
            out_dir.to_str().unwrap(),
            "--format",
            "json",
        ])
        .args(precision)
        .args([
            "--text",
            "the bank raised interest rates",
            "--labels",
            "bank,economy,cat,dog",
        ])
        .output()
        .unwrap();
    check(&predict);
    let records: Value = serde_json::from_slice(&predict.stdout).unwrap();
    let predicted: Vec<bool> = records[0]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["predicted"].as_bool().unwrap())
        .collect();
    assert_eq!(predicted, vec![true, true, false, false], "{model_type:?}");
}

/// For MPNet the relative position bias, which every layer reads, stays with the embeddings.
#[test]
fn frozen_layers_stay_as_the_backbone_has_them() {
    for model_type in [ModelType::Bert, ModelType::Mpnet] {
        frozen_layers_stay(model_type);
    }
}

fn frozen_layers_stay(model_type: ModelType) {
    let (dir, config) = setup_of(
        model_type,
        serde_json::json!({"epochs": 3, "frozen_layers": 1}),
    );
    check(&train(&config, &[]));
    let load =
        |path: PathBuf| candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let backbone = load(dir.path().join("backbone").join("model.safetensors"));
    let trained = load(dir.path().join("out").join("model.safetensors"));
    let (mut frozen, mut trained_layer) = (0, 0);
    for (name, before) in &backbone {
        let diff = gliznet::testing::max_abs_diff(before, &trained[name]);
        if name.starts_with("embeddings.")
            || name.starts_with("encoder.layer.0.")
            || name == gliznet::model::mpnet::RELATIVE_BIAS
        {
            assert_eq!(diff, 0.0, "{name} was trained");
            frozen += 1;
        } else if name.starts_with("encoder.layer.1.") {
            assert!(diff > 0.0, "{name} was not trained");
            trained_layer += 1;
        }
    }
    assert!(
        frozen >= 20 && trained_layer >= 16,
        "{frozen} {trained_layer}"
    );
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let settings =
        serde_json::json!({"epochs": 3, "dropout": 0.1, "save_every": 2, "eval_every": 2});
    let (a, config_a) = setup(settings.clone());
    check(&train(&config_a, &[]));
    let (b, config_b) = setup(settings);
    let paused = train(&config_b, &["--stop-after-steps", "3"]);
    check(&paused);
    assert!(String::from_utf8_lossy(&paused.stderr).contains("--resume"));
    check(&train(&config_b, &["--resume"]));

    let weights = |dir: &TempDir, sub: &str| {
        candle_core::safetensors::load(
            dir.path().join("out").join(sub).join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    };
    for sub in ["", "checkpoint"] {
        let wa = weights(&a, sub);
        let wb = weights(&b, sub);
        assert_eq!(wa.len(), wb.len());
        for (name, ta) in &wa {
            let diff = gliznet::testing::max_abs_diff(ta, &wb[name]);
            assert!(diff < 1e-6, "{sub}/{name}: {diff}");
        }
    }
    let strip = |lines: Vec<Value>| -> Vec<Value> {
        lines
            .into_iter()
            .map(|mut l| {
                l.as_object_mut().unwrap().remove("examples_per_second");
                l
            })
            .collect()
    };
    assert_eq!(
        strip(log_lines(&a.path().join("out"))),
        strip(log_lines(&b.path().join("out")))
    );
}

/// Waits until the run has written a checkpoint at or beyond `step`.
fn wait_for_checkpoint(out_dir: &Path, step: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = std::fs::read_to_string(out_dir.join("checkpoint/trainer_state.json")).ok();
        let reached = state
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["step"].as_u64())
            .is_some_and(|s| s >= step);
        if reached {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint at step {step} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_leaves_a_loadable_checkpoint_that_resumes() {
    let (dir, config) = setup(serde_json::json!({"epochs": 400, "save_every": 1}));
    let out_dir = dir.path().join("out");
    let mut child = Command::new(BIN)
        .args(["train", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_checkpoint(&out_dir, 3);
    std::thread::sleep(Duration::from_millis(37));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let checkpoint = ["checkpoint", "checkpoint.old"]
        .iter()
        .map(|c| out_dir.join(c))
        .find(|c| c.join("trainer_state.json").is_file())
        .expect("a complete checkpoint survives");
    let predict = Command::new(BIN)
        .args([
            "predict",
            "--model",
            checkpoint.to_str().unwrap(),
            "--text",
            "a cat",
            "--labels",
            "cat,dog",
        ])
        .output()
        .unwrap();
    check(&predict);
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("trainer_state.json")).unwrap(),
    )
    .unwrap();
    let step = state["step"].as_u64().unwrap();
    let target = (step + 2).to_string();
    check(&train(
        &config,
        &["--resume", "--stop-after-steps", &target],
    ));
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("checkpoint/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"].as_u64().unwrap(), step + 2);
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130() {
    let (dir, config) = setup(serde_json::json!({"epochs": 400}));
    let out_dir = dir.path().join("out");
    let child = Command::new(BIN)
        .args(["train", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for training to start (the metrics log appears at the first epoch's end, step 2).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out_dir.join("metrics.jsonl").is_file() || log_lines(&out_dir).is_empty() {
        assert!(Instant::now() < deadline, "training did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("checkpoint saved at step"));
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("checkpoint/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["step"].as_u64().unwrap() >= 2);
    assert_eq!(state["finished"], false);
}

#[test]
fn config_errors_exit_2_naming_the_problem() {
    let (_dir, config) = setup(serde_json::json!({"learning_rate": 0.1}));
    let out = train(&config, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `learning_rate`"));

    let (_dir, config) = setup(serde_json::json!({}));
    let out = train(&config, &["--set", "epochs=0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("epochs must be at least 1"));

    let out = train(&config, &["--resume"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint to resume from"));

    let out = train(&config, &["--set", "frozen_layers=3"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("frozen_layers = 3 is more than the 2 layers"),
        "{stderr}"
    );

    let (_dir, config) = setup(serde_json::json!({"train_file": "/no/such/train.jsonl"}));
    let out = train(&config, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/train.jsonl"));
}

#[test]
fn without_a_backbone_training_starts_from_the_built_in_model() {
    let (dir, config) =
        setup(serde_json::json!({"backbone": null, "similarity": "cosine", "projection_dim": 256}));
    let version =
        String::from_utf8(Command::new(BIN).arg("--version").output().unwrap().stdout).unwrap();
    let out = train(&config, &["--stop-after-steps", "1"]);
    if version.contains("built-in model: none") {
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no built-in model"));
        return;
    }
    check(&out);
    let checkpoint = dir.path().join("out/checkpoint");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["hidden_size"], 384, "the built-in model's encoder");
    assert_eq!(config["gliznet"]["similarity"], "cosine");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"], 1);
}
