//! Loading a `pytorch_model.bin` checkpoint with the `bert.` prefix and old LayerNorm names
//! (`gamma`/`beta`): the encoder's hidden states match those PyTorch computed
//! (tests/fixtures/tiny-pytorch-bert, made by scripts/reference/pytorch_bin_fixture.py).

use candle_core::{Device, Tensor};
use gliznet::model::bert::BertEncoder;
use gliznet::model::checkpoint::{read_config, read_weights};
use std::path::Path;

fn fixture() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-pytorch-bert"
    ))
}

#[test]
fn pytorch_bin_with_bert_prefix_matches_pytorch() {
    let (bert, gliznet, _) = read_config(fixture()).unwrap();
    assert!(gliznet.is_none());
    assert_eq!(
        bert.vocab_size,
        gliznet::testing::tiny_vocab().len(),
        "fixture made for the tiny vocabulary"
    );
    let params = read_weights(fixture(), &Device::Cpu).unwrap();
    assert!(
        params.contains("embeddings.LayerNorm.weight")
            && !params.contains("bert.embeddings.LayerNorm.gamma")
    );
    let encoder = BertEncoder::load(&params, &bert).unwrap();

    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
            .unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(reference["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<f32>> = serde_json::from_value(reference["attention_mask"].clone()).unwrap();
    let expected: Vec<Vec<Vec<f32>>> =
        serde_json::from_value(reference["last_hidden_state"].clone()).unwrap();
    let hidden = encoder
        .forward(
            &Tensor::new(ids, &Device::Cpu).unwrap(),
            &Tensor::new(mask.clone(), &Device::Cpu).unwrap(),
            None,
        )
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let mut max_diff = 0f32;
    for (b, seq) in hidden.iter().enumerate() {
        for (t, row) in seq.iter().enumerate() {
            if mask[b][t] == 0.0 {
                continue; // padding positions are not compared
            }
            for (x, y) in row.iter().zip(&expected[b][t]) {
                max_diff = max_diff.max((x - y).abs());
            }
        }
    }
    assert!(max_diff < 1e-4, "max |diff| {max_diff}");
}

#[test]
fn a_pytorch_bin_directory_predicts_from_the_cli() {
    let dir = tempfile::TempDir::new().unwrap();
    for file in ["config.json", "pytorch_model.bin"] {
        std::fs::copy(fixture().join(file), dir.path().join(file)).unwrap();
    }
    gliznet::testing::tiny_tokenizer()
        .save(dir.path().join("tokenizer.json"), false)
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gliznet"))
        .args([
            "predict",
            "--model",
            dir.path().to_str().unwrap(),
            "--format",
            "json",
            "--text",
            "the cat",
            "--labels",
            "cat,dog",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records[0]["labels"].as_array().unwrap().len(), 2);
}
