//! Integration tests on the real all-MiniLM-L6-v2 backbone (fetched by
//! `scripts/fetch-backbone.sh`). Where the backbone is absent they are ignored (build.rs sets
//! `gliznet_backbone` when it is there), and GLIZNET_REQUIRE_BACKBONE=1 (CI) makes its absence
//! a build error.

mod support;
use candle_core::{Device, Tensor};
use gliznet::batch::Batch;
use gliznet::model::bert::{BertConfig, BertEncoder};
use gliznet::model::checkpoint::{read_config, read_weights};
use gliznet::model::ParamGrads;
use gliznet::rng::Rng;
use gliznet::tokenizer::SequenceEncoding;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    input_ids: Vec<u32>,
    last_hidden_state: Vec<Vec<f32>>,
}

const TOLERANCE: f32 = 1e-4;

fn backbone() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn encoder(dir: &Path, dropout: Option<f32>) -> BertEncoder {
    let (mut bert, _, _): (BertConfig, _, _) = read_config(dir).unwrap();
    if let Some(p) = dropout {
        bert.hidden_dropout_prob = p;
        bert.attention_probs_dropout_prob = p;
    }
    let params = read_weights(dir, &Device::Cpu).unwrap();
    BertEncoder::load(&params, &bert).unwrap()
}

fn max_abs_diff(actual: &[Vec<f32>], expected: &[Vec<f32>]) -> f32 {
    assert_eq!(actual.len(), expected.len());
    actual
        .iter()
        .zip(expected)
        .flat_map(|(a, e)| a.iter().zip(e).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

fn sequence(ids: &[u32]) -> SequenceEncoding {
    SequenceEncoding {
        input_ids: ids.to_vec(),
        label_positions: vec![],
        label_indices: vec![],
        text_tokens_kept: ids.len() - 2,
    }
}

/// Runs the reference sentences as one padded batch and returns each one's unpadded states.
fn hidden_states(
    encoder: &BertEncoder,
    cases: &[Case],
    rng: Option<&mut Rng>,
) -> Vec<Vec<Vec<f32>>> {
    let seqs: Vec<SequenceEncoding> = cases.iter().map(|c| sequence(&c.input_ids)).collect();
    let refs: Vec<&SequenceEncoding> = seqs.iter().collect();
    let batch = Batch::collate(&refs, 0, &Device::Cpu).unwrap();
    let (ids, mask) = (&batch.input_ids, &batch.attention_mask);
    let hidden: Tensor = match rng {
        Some(rng) => encoder.forward_train(ids, mask, None, rng, &ParamGrads::default()),
        None => encoder.forward(ids, mask, None),
    }
    .unwrap();
    let hidden: Vec<Vec<Vec<f32>>> = hidden.to_vec3().unwrap();
    hidden
        .into_iter()
        .zip(cases)
        .map(|(states, case)| states[..case.input_ids.len()].to_vec())
        .collect()
}

#[test]
#[cfg_attr(
    not(gliznet_backbone),
    ignore = "needs models/all-MiniLM-L6-v2: scripts/fetch-backbone.sh"
)]
fn tokenizer_matches_hugging_face_ids() {
    let dir = backbone();
    let tokenizer = gliznet::tokenizer::LabelTokenizer::from_file(
        &dir.join("tokenizer.json"),
        Default::default(),
        gliznet::tokenizer::SpecialTokens::BERT,
    )
    .unwrap();
    for case in reference().cases {
        let enc = tokenizer
            .encode(&case.text, &["economy".to_string()])
            .unwrap();
        let seq = &enc.chunks[0];
        let n = case.input_ids.len();
        assert_eq!(&seq.input_ids[..n], &case.input_ids[..], "{}", case.text);
        assert_eq!(seq.label_positions, vec![n]);
    }
}

#[test]
#[cfg_attr(
    not(gliznet_backbone),
    ignore = "needs models/all-MiniLM-L6-v2: scripts/fetch-backbone.sh"
)]
fn encoder_matches_pytorch_in_inference_mode() {
    let dir = backbone();
    let cases = reference().cases;
    let encoder = encoder(&dir, None);
    for case in &cases {
        let alone = hidden_states(&encoder, std::slice::from_ref(case), None);
        let diff = max_abs_diff(&alone[0], &case.last_hidden_state);
        assert!(diff < TOLERANCE, "{}: max |diff| {diff}", case.text);
    }
    let batched = hidden_states(&encoder, &cases, None);
    for (states, case) in batched.iter().zip(&cases) {
        let diff = max_abs_diff(states, &case.last_hidden_state);
        assert!(
            diff < TOLERANCE,
            "padded batch, {}: max |diff| {diff}",
            case.text
        );
    }
}

/// Int8 weights (`--quantize`) move the hidden states a little, not the direction of any
/// token's vector: every token keeps a cosine above 0.99 with PyTorch's f32 states.
#[test]
#[cfg_attr(
    not(gliznet_backbone),
    ignore = "needs models/all-MiniLM-L6-v2: scripts/fetch-backbone.sh"
)]
fn quantized_encoder_stays_close_to_pytorch() {
    let dir = backbone();
    let cases = reference().cases;
    let mut encoder = encoder(&dir, None);
    encoder
        .quantize(gliznet::model::Quantization::Int8)
        .unwrap();
    let quantized = hidden_states(&encoder, &cases, None);
    let mut worst = f32::INFINITY;
    for (states, case) in quantized.iter().zip(&cases) {
        for (a, e) in states.iter().zip(&case.last_hidden_state) {
            let dot: f32 = a.iter().zip(e).map(|(x, y)| x * y).sum();
            let norms = a.iter().map(|x| x * x).sum::<f32>().sqrt()
                * e.iter().map(|x| x * x).sum::<f32>().sqrt();
            worst = worst.min(dot / norms);
        }
    }
    assert!(worst > 0.99, "lowest token cosine {worst}");
    let diff = max_abs_diff(&quantized[0], &cases[0].last_hidden_state);
    assert!(diff > TOLERANCE, "int8 states equal f32 ones: {diff}");
}

#[test]
#[cfg_attr(
    not(gliznet_backbone),
    ignore = "needs models/all-MiniLM-L6-v2: scripts/fetch-backbone.sh"
)]
fn differentiable_training_path_matches_pytorch_without_dropout() {
    let dir = backbone();
    let cases = reference().cases;
    let encoder = encoder(&dir, Some(0.0));
    let mut rng = Rng::new(0);
    let batched = hidden_states(&encoder, &cases, Some(&mut rng));
    for (states, case) in batched.iter().zip(&cases) {
        let diff = max_abs_diff(states, &case.last_hidden_state);
        assert!(
            diff < TOLERANCE,
            "training path, {}: max |diff| {diff}",
            case.text
        );
    }
}

#[test]
#[cfg_attr(
    not(gliznet_backbone),
    ignore = "needs models/all-MiniLM-L6-v2: scripts/fetch-backbone.sh"
)]
fn dropout_changes_training_outputs_only() {
    let dir = backbone();
    let cases = reference().cases;
    let encoder = encoder(&dir, None);
    let a = hidden_states(&encoder, &cases[..1], Some(&mut Rng::new(1)));
    let b = hidden_states(&encoder, &cases[..1], Some(&mut Rng::new(1)));
    let c = hidden_states(&encoder, &cases[..1], Some(&mut Rng::new(2)));
    assert_eq!(a, b, "same seed, same dropout");
    assert!(max_abs_diff(&a[0], &c[0]) > 1e-2, "dropout had no effect");
    assert!(max_abs_diff(&a[0], &cases[0].last_hidden_state) > 1e-2);
}

#[test]
#[cfg_attr(
    not(gliznet_backbone),
    ignore = "needs models/all-MiniLM-L6-v2: scripts/fetch-backbone.sh"
)]
fn predict_runs_on_the_real_backbone() {
    support::assert_untrained_backbone_predicts(&backbone());
}

#[test]
#[cfg_attr(
    not(gliznet_backbone),
    ignore = "needs models/all-MiniLM-L6-v2: scripts/fetch-backbone.sh"
)]
fn mining_on_the_real_backbone_skips_near_synonyms_and_ranks_related_labels_first() {
    let dir = backbone();
    let tmp = tempfile::TempDir::new().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"He scored a goal in the match\", \"labels\": [\"football\"]}\n",
    )
    .unwrap();
    let pool = tmp.path().join("pool.txt");
    std::fs::write(&pool, "soccer\ntennis\nbanking\nFootball\n").unwrap();
    let output = tmp.path().join("out.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_gliznet"))
        .args([
            "mine-negatives",
            "--model",
            dir.to_str().unwrap(),
            "--k",
            "2",
        ])
        .args([
            "--input",
            input.to_str().unwrap(),
            "--pool",
            pool.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&output).unwrap().trim()).unwrap();
    // "soccer" is above the default 0.8 similarity ceiling, "Football" equals the positive.
    assert_eq!(line["not_labels"], serde_json::json!(["tennis", "banking"]));
}
