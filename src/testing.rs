//! Real, tiny components for tests: a WordPiece tokenizer over a small vocabulary and a
//! randomly initialised (seeded) BERT written as a complete model directory; the same for
//! MPNet (its special tokens, config and tensor names).

use crate::data::example::Example;
use crate::model::bert::{BertConfig, ModelType};
use crate::model::checkpoint;
use crate::model::config::GliznetConfig;
use crate::model::head::{self, Similarity};
use crate::rng::Rng;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::Tokenizer;

/// Whole words of the tiny vocabulary; anything else is spelled with letter and digit pieces.
pub const TINY_WORDS: &[&str] = &[
    "the", "a", "cat", "dog", "sat", "on", "mat", "house", "bank", "rates", "raised", "interest",
    "economy", "sports", "cooking", "football", "tennis", "news", "label", "text", "about",
    "short", "very", "long", "and", "winding", "road", "home", "happy", "sad", "good", "bad",
];

pub fn tiny_vocab() -> Vec<String> {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend(TINY_WORDS.iter().map(|w| w.to_string()));
    for c in ('a'..='z').chain('0'..='9') {
        vocab.push(c.to_string());
        vocab.push(format!("##{c}"));
    }
    for p in ".,!?'\"-:;()".chars() {
        vocab.push(p.to_string());
    }
    vocab
}

/// A BERT-style WordPiece tokenizer over [`tiny_vocab`], built from its `tokenizer.json` form.
pub fn tiny_tokenizer() -> Tokenizer {
    tiny_tokenizer_for(ModelType::Bert)
}

/// [`tiny_tokenizer`] with the special tokens of `model_type` in place of BERT's (MPNet:
/// `<s>`, `<pad>`, `</s>`, `<unk>`, `<mask>`, as all-mpnet-base-v2 numbers them), as added
/// tokens the way Hugging Face writes them.
pub fn tiny_tokenizer_for(model_type: ModelType) -> Tokenizer {
    let mut words = tiny_vocab();
    let (special, unk): (&[&str], &str) = match model_type {
        ModelType::Bert => (&[], "[UNK]"),
        ModelType::Mpnet => (&["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>"),
    };
    for (slot, token) in words.iter_mut().zip(special) {
        *slot = token.to_string();
    }
    let added: Vec<serde_json::Value> = special
        .iter()
        .enumerate()
        .map(|(id, token)| {
            serde_json::json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i.into()))
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": unk, "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    Tokenizer::from_bytes(json.to_string()).expect("the tiny tokenizer.json is valid")
}

pub fn tiny_bert_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": tiny_vocab().len(),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 128,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0
    })
}

/// A tiny MPNet `config.json` (as all-mpnet-base-v2's, smaller), over [`tiny_tokenizer_for`]'s
/// vocabulary.
pub fn tiny_mpnet_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["MPNetModel"],
        "model_type": "mpnet",
        "vocab_size": tiny_vocab().len(),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 130,
        "relative_attention_num_buckets": 32,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2
    })
}

/// The tiny config of `model_type`.
pub fn tiny_encoder_config(model_type: ModelType) -> serde_json::Value {
    match model_type {
        ModelType::Bert => tiny_bert_config(),
        ModelType::Mpnet => tiny_mpnet_config(),
    }
}

/// Encoder weights under Hugging Face names, normal(0, 0.02) like BERT's initialiser, LayerNorm
/// at weight 1 and bias 0; MPNet's under its names, with its relative position bias table.
pub fn random_encoder_weights(
    cfg: &BertConfig,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = Rng::new(seed);
    let mut tensors = HashMap::new();
    let mut normal = |name: String, shape: &[usize]| -> Result<()> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| 0.02 * rng.normal()).collect();
        tensors.insert(name, Tensor::from_vec(values, shape, device)?);
        Ok(())
    };
    let h = cfg.hidden_size;
    let i = cfg.intermediate_size;
    normal(
        "embeddings.word_embeddings.weight".into(),
        &[cfg.vocab_size, h],
    )?;
    normal(
        "embeddings.position_embeddings.weight".into(),
        &[cfg.max_position_embeddings, h],
    )?;
    match cfg.model_type {
        ModelType::Bert => normal(
            "embeddings.token_type_embeddings.weight".into(),
            &[cfg.type_vocab_size, h],
        )?,
        ModelType::Mpnet => normal(
            crate::model::mpnet::RELATIVE_BIAS.into(),
            &[cfg.relative_attention_num_buckets, cfg.num_attention_heads],
        )?,
    }
    let names = cfg.model_type.layer_names();
    let mut norms = vec!["embeddings.LayerNorm".to_string()];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            (names.query, h, h),
            (names.key, h, h),
            (names.value, h, h),
            (names.attention_output, h, h),
            (names.intermediate, i, h),
            (names.output, h, i),
        ] {
            normal(format!("{p}.{name}.weight"), &[out, inp])?;
            normal(format!("{p}.{name}.bias"), &[out])?;
        }
        norms.push(format!("{p}.{}", names.attention_norm));
        norms.push(format!("{p}.{}", names.output_norm));
    }
    for norm in norms {
        tensors.insert(
            format!("{norm}.weight"),
            Tensor::ones(h, candle_core::DType::F32, device)?,
        );
        tensors.insert(
            format!("{norm}.bias"),
            Tensor::zeros(h, candle_core::DType::F32, device)?,
        );
    }
    Ok(tensors)
}

/// Writes a complete tiny GliZNet model directory, deterministic for a seed.
pub fn write_tiny_model(
    dir: &Path,
    similarity: Similarity,
    projection_dim: Option<usize>,
    seed: u64,
) -> Result<()> {
    let encoder_config = tiny_bert_config();
    let bert: BertConfig = serde_json::from_value(encoder_config.clone())?;
    let config = GliznetConfig {
        similarity,
        projection_dim,
        max_length: 64,
        max_label_tokens: 8,
        min_text_tokens: 8,
        ..GliznetConfig::untrained_default(bert.max_position_embeddings)
    };
    let device = Device::Cpu;
    let mut tensors = random_encoder_weights(&bert, seed, &device)?;
    tensors.extend(head::init_params(
        &config.head_shape(bert.hidden_size),
        seed + 1,
        &device,
    )?);
    checkpoint::save(dir, &encoder_config, &config, &tensors, &tiny_tokenizer())
}

/// Writes a tiny plain BERT directory (no `gliznet` section), as a backbone would come.
pub fn write_tiny_backbone(dir: &Path, seed: u64) -> Result<()> {
    write_tiny_backbone_of(dir, ModelType::Bert, seed)
}

/// [`write_tiny_backbone`] for an encoder of `model_type`, with its tokenizer.
pub fn write_tiny_backbone_of(dir: &Path, model_type: ModelType, seed: u64) -> Result<()> {
    let encoder_config = tiny_encoder_config(model_type);
    let bert: BertConfig = serde_json::from_value(encoder_config.clone())?;
    let tensors = random_encoder_weights(&bert, seed, &Device::Cpu)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(checkpoint::CONFIG_FILE),
        serde_json::to_string_pretty(&encoder_config)?,
    )?;
    candle_core::safetensors::save(&tensors, dir.join(checkpoint::WEIGHTS_FILE))?;
    tiny_tokenizer_for(model_type)
        .save(dir.join(checkpoint::TOKENIZER_FILE), false)
        .map_err(|e| anyhow::anyhow!("cannot write tokenizer: {e}"))
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar())
        .expect("tensors of one shape and dtype f32")
}

/// A training example with text "t" and the given labels.
pub fn example(labels: &[&str], not_labels: &[&str]) -> Example {
    Example {
        text: "t".into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        not_labels: not_labels.iter().map(|l| l.to_string()).collect(),
    }
}
