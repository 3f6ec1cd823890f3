//! Embeds the default model (assets/default-model) in the binary when it is present, so that
//! `gliznet predict` works with no `--model` and no files beside the binary.
//! `GLIZNET_NO_BUILTIN_MODEL=1` builds without it (a smaller binary that needs `--model`).
//!
//! Also tells the tests what data is here: tests that need the MiniLM or the MPNet backbone,
//! the corpus or the dev suite are ignored where those are missing (so the summary counts them as ignored,
//! with the script that fetches them), and `GLIZNET_REQUIRE_BACKBONE=1` /
//! `GLIZNET_REQUIRE_CORPUS=1` (CI) turn a missing one into a build error.

/// (cfg, file whose presence it says, variable that requires it, script that makes it)
const TEST_DATA: [(&str, &str, &str, &str); 4] = [
    (
        "gliznet_backbone",
        "models/all-MiniLM-L6-v2/model.safetensors",
        "GLIZNET_REQUIRE_BACKBONE",
        "scripts/fetch-backbone.sh",
    ),
    (
        "gliznet_mpnet",
        "models/all-mpnet-base-v2/model.safetensors",
        "GLIZNET_REQUIRE_BACKBONE",
        "scripts/fetch-backbone.sh mpnet",
    ),
    (
        "gliznet_corpus",
        "data/generated/train.jsonl",
        "GLIZNET_REQUIRE_CORPUS",
        "scripts/build-corpus.sh",
    ),
    (
        "gliznet_dev_suite",
        "data/generated/suite/suite.json",
        "GLIZNET_REQUIRE_CORPUS",
        "scripts/build-dev-suite.sh",
    ),
];

fn main() {
    for (cfg, file, require, script) in TEST_DATA {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-changed={file}");
        println!("cargo::rerun-if-env-changed={require}");
        if std::path::Path::new(file).is_file() {
            println!("cargo::rustc-cfg={cfg}");
        } else if std::env::var(require).is_ok_and(|v| v == "1") {
            panic!("{file} is missing and {require}=1: run {script}");
        }
    }
    println!("cargo::rustc-check-cfg=cfg(gliznet_builtin_model)");
    println!("cargo::rerun-if-changed=assets/default-model");
    println!("cargo::rerun-if-env-changed=GLIZNET_NO_BUILTIN_MODEL");
    if std::env::var("GLIZNET_NO_BUILTIN_MODEL").is_ok_and(|v| v == "1") {
        return;
    }
    let dir = std::path::Path::new("assets/default-model");
    let complete = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file());
    if complete {
        println!("cargo::rustc-cfg=gliznet_builtin_model");
    }
}
