//! The model directory: `config.json` (Hugging Face encoder config plus a `gliznet` section),
//! `model.safetensors` (encoder weights under their Hugging Face names, head weights under
//! `gliznet.*`) and `tokenizer.json`. Plain BERT / MPNet / sentence-transformers directories
//! load too, with a fresh, seeded head. `config.json`'s `model_type` says which encoder:
//! `bert` (or none) or `mpnet`. Every missing or unreadable file is an error that names it.

use crate::error::input_error;
use crate::model::bert::{BertConfig, ModelType};
use crate::model::config::GliznetConfig;
use crate::model::gliznet::GliZNet;
use crate::model::head;
use crate::model::params::Params;
use crate::tokenizer::LabelTokenizer;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const PYTORCH_WEIGHTS_FILE: &str = "pytorch_model.bin";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Seed of the head given to a backbone that has none, so untrained scores are reproducible.
pub const UNTRAINED_HEAD_SEED: u64 = 0;

pub struct LoadedModel {
    pub model: GliZNet,
    pub tokenizer: LabelTokenizer,
    pub config: GliznetConfig,
    /// The directory it came from, or the built-in model's name.
    pub name: String,
    /// False when the directory had no `gliznet` section: the head is freshly initialised.
    pub head_trained: bool,
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The model built into this binary.
    Builtin,
    /// A model directory (a GliZNet model, or a plain BERT / sentence-transformers encoder).
    Dir(PathBuf),
}

impl ModelSource {
    /// `None` is the built-in model; otherwise a directory, or a Hugging Face repo id already
    /// in the local hub cache (`HF_HOME`). Nothing is downloaded.
    pub fn resolve(model: Option<&str>) -> Result<Self> {
        match model {
            None => Ok(Self::Builtin),
            Some(model) => Ok(Self::Dir(resolve(model)?)),
        }
    }
}

/// A model's files, read but not yet turned into a model.
pub struct ModelFiles {
    pub name: String,
    pub bert: BertConfig,
    pub gliznet: Option<GliznetConfig>,
    pub encoder_config: serde_json::Value,
    pub params: Params,
    pub tokenizer: tokenizers::Tokenizer,
}

/// Reads a model's files.
pub fn open(source: &ModelSource, device: &Device) -> Result<ModelFiles> {
    let dir = match source {
        ModelSource::Builtin => return open_builtin(device),
        ModelSource::Dir(dir) => dir.clone(),
    };
    let (bert, gliznet, encoder_config) = read_config(&dir)?;
    let tokenizer_path = required_file(&dir, TOKENIZER_FILE)?;
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| {
        input_error(format!(
            "cannot load tokenizer {}: {e}",
            tokenizer_path.display()
        ))
    })?;
    Ok(ModelFiles {
        name: dir.display().to_string(),
        params: read_weights(&dir, device)?,
        bert,
        gliznet,
        encoder_config,
        tokenizer,
    })
}

fn open_builtin(device: &Device) -> Result<ModelFiles> {
    let builtin = crate::model::builtin::FILES.ok_or_else(|| {
        input_error(
            "this build has no built-in model (it was built without one); give a model directory",
        )
    })?;
    let source = format!("built-in model {}", crate::model::builtin::NAME);
    let json: serde_json::Value =
        serde_json::from_slice(builtin.config).with_context(|| format!("{source}: config.json"))?;
    let (bert, gliznet, encoder_config) = parse_config(json, &source)?;
    let tensors = candle_core::safetensors::load_buffer(builtin.weights, device)
        .with_context(|| format!("{source}: model.safetensors"))?;
    let tokenizer = tokenizers::Tokenizer::from_bytes(builtin.tokenizer)
        .map_err(|e| anyhow::anyhow!("{source}: tokenizer.json: {e}"))?;
    Ok(ModelFiles {
        params: canonical_params(tensors.into_iter().collect(), &source, device)?,
        name: source,
        bert,
        gliznet,
        encoder_config,
        tokenizer,
    })
}

/// Finds a model's directory: a local directory, or a Hugging Face repo id already in the local
/// hub cache (`HF_HOME`). Nothing is downloaded.
fn resolve(model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(input_error(format!("{model}: not a directory")));
    }
    if looks_like_repo_id(model) {
        let cache = hf_hub::Cache::from_env();
        let repo = cache.model(model.to_string());
        if let Some(config) = repo.get(CONFIG_FILE) {
            if let Some(dir) = config.parent() {
                return Ok(dir.to_path_buf());
            }
        }
        return Err(input_error(format!(
            "{model}: no such directory, and no copy of that Hugging Face repo in the \
             local hub cache ({}). gliznet does not download models: download it with \
             `huggingface-cli download {model}` or pass a model directory",
            cache.path().display()
        )));
    }
    Err(input_error(format!("{model}: no such directory")))
}

fn looks_like_repo_id(model: &str) -> bool {
    let parts: Vec<&str> = model.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

fn required_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(input_error(format!(
            "model directory {} has no {name}",
            dir.display()
        )));
    }
    Ok(path)
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input_error(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| input_error(format!("{} is not valid JSON: {e}", path.display())))
}

/// Parses `config.json` into the encoder config, the `gliznet` section (if any) and the
/// encoder config without that section.
pub fn read_config(dir: &Path) -> Result<(BertConfig, Option<GliznetConfig>, serde_json::Value)> {
    let path = required_file(dir, CONFIG_FILE)?;
    parse_config(read_json(&path)?, &path.display().to_string())
}

fn parse_config(
    mut json: serde_json::Value,
    source: &str,
) -> Result<(BertConfig, Option<GliznetConfig>, serde_json::Value)> {
    let gliznet = match json.as_object_mut().and_then(|o| o.remove("gliznet")) {
        Some(section) => Some(
            serde_json::from_value::<GliznetConfig>(section)
                .map_err(|e| input_error(format!("{source}: invalid gliznet section: {e}")))?,
        ),
        None => None,
    };
    match json.get("model_type") {
        None => {}
        Some(serde_json::Value::String(name)) if ModelType::NAMES.contains(&name.as_str()) => {}
        Some(other) => {
            return Err(input_error(format!(
                "{source}: model_type {other} is not supported (this build reads {})",
                ModelType::NAMES.map(|n| format!("{n:?}")).join(" and ")
            )))
        }
    }
    let bert: BertConfig = serde_json::from_value(json.clone())
        .map_err(|e| input_error(format!("{source}: not a BERT or MPNet encoder config: {e}")))?;
    bert.validate()
        .map_err(|e| input_error(format!("{source}: {e}")))?;
    if let Some(config) = &gliznet {
        config
            .validate(&bert)
            .map_err(|e| input_error(format!("{source}: gliznet section: {e}")))?;
    }
    Ok((bert, gliznet, json))
}

/// Reads encoder (and head) weights as f32 under canonical names: no `bert.` prefix,
/// LayerNorm `gamma`/`beta` renamed to `weight`/`bias`, `position_ids` buffers dropped.
pub fn read_weights(dir: &Path, device: &Device) -> Result<Params> {
    let safetensors = dir.join(WEIGHTS_FILE);
    let pytorch = dir.join(PYTORCH_WEIGHTS_FILE);
    let (path, tensors): (PathBuf, Vec<(String, Tensor)>) = if safetensors.is_file() {
        let tensors = candle_core::safetensors::load(&safetensors, device)
            .map_err(|e| input_error(format!("cannot read {}: {e}", safetensors.display())))?;
        (safetensors, tensors.into_iter().collect())
    } else if pytorch.is_file() {
        let tensors = candle_core::pickle::read_all(&pytorch)
            .map_err(|e| input_error(format!("cannot read {}: {e}", pytorch.display())))?;
        (pytorch, tensors)
    } else {
        return Err(input_error(format!(
            "model directory {} has no {WEIGHTS_FILE} (or {PYTORCH_WEIGHTS_FILE})",
            dir.display()
        )));
    };
    canonical_params(tensors, &path.display().to_string(), device)
}

fn canonical_params(
    tensors: Vec<(String, Tensor)>,
    source: &str,
    device: &Device,
) -> Result<Params> {
    let mut canonical = HashMap::new();
    for (name, tensor) in tensors {
        if name.ends_with("position_ids") {
            continue;
        }
        let name = name.strip_prefix("bert.").unwrap_or(&name);
        let name = name
            .replace("LayerNorm.gamma", "LayerNorm.weight")
            .replace("LayerNorm.beta", "LayerNorm.bias");
        let tensor = tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.to_device(device))
            .with_context(|| format!("{source}: tensor {name}"))?;
        canonical.insert(name, tensor);
    }
    Ok(Params::new(canonical, source))
}

/// Loads a model.
pub fn load(source: &ModelSource, device: &Device) -> Result<LoadedModel> {
    let files = open(source, device)?;
    let ModelFiles {
        name,
        bert,
        gliznet,
        encoder_config: _,
        mut params,
        tokenizer,
    } = files;
    let head_trained = gliznet.is_some();
    let config = gliznet.unwrap_or_else(|| GliznetConfig::untrained_for(&bert));
    if !head_trained {
        let shape = config.head_shape(bert.hidden_size);
        for (name, tensor) in head::init_params(&shape, UNTRAINED_HEAD_SEED, device)? {
            params.insert(name, tensor);
        }
    }
    let tokenizer =
        LabelTokenizer::new(tokenizer, config.limits(), bert.model_type.special_tokens())
            .and_then(|t| t.with_label_template(config.label_template.as_deref()))
            .with_context(|| format!("{name}: tokenizer.json"))?;
    let model = GliZNet::load(&params, &bert, &config)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        config,
        name,
        head_trained,
    })
}

/// Writes a model directory. Each file goes to a temporary name first and is renamed into
/// place, so a crash leaves either the old file or the new one, never a partial one.
pub fn save(
    dir: &Path,
    encoder_config: &serde_json::Value,
    config: &GliznetConfig,
    tensors: &HashMap<String, Tensor>,
    tokenizer: &tokenizers::Tokenizer,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut full_config = encoder_config.clone();
    let object = full_config
        .as_object_mut()
        .context("the encoder config is not a JSON object")?;
    object.insert("gliznet".into(), serde_json::to_value(config)?);
    crate::files::write_atomically(&dir.join(CONFIG_FILE), |file| {
        Ok(file.write_all((serde_json::to_string_pretty(&full_config)? + "\n").as_bytes())?)
    })?;
    // Serialized here and written through our own temporary file: the safetensors crate's
    // file writer makes its own (mode 0600) and renames it into place.
    let weights = safetensors::serialize(tensors, None)
        .map_err(|e| anyhow::anyhow!("cannot serialize the weights: {e}"))?;
    crate::files::write_atomically(
        &dir.join(WEIGHTS_FILE),
        |file| Ok(file.write_all(&weights)?),
    )?;
    let tokenizer_json = tokenizer
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("cannot serialize the tokenizer: {e}"))?;
    crate::files::write_atomically(&dir.join(TOKENIZER_FILE), |file| {
        Ok(file.write_all(tokenizer_json.as_bytes())?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{tiny_bert_config, tiny_mpnet_config};

    fn error(json: serde_json::Value) -> String {
        match parse_config(json, "dir/config.json") {
            Ok(_) => panic!("the config was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn model_type_picks_the_encoder_and_an_unknown_one_is_named() {
        let (bert, _, _) = parse_config(tiny_bert_config(), "bert").unwrap();
        assert_eq!(bert.model_type, ModelType::Bert);
        let (mpnet, _, _) = parse_config(tiny_mpnet_config(), "mpnet").unwrap();
        assert_eq!(mpnet.model_type, ModelType::Mpnet);
        assert_eq!(mpnet.max_positions(), mpnet.max_position_embeddings - 2);
        let mut absent = tiny_bert_config();
        absent.as_object_mut().unwrap().remove("model_type");
        assert_eq!(parse_config(absent, "absent").unwrap().0, bert);
        for other in [serde_json::json!("roberta"), serde_json::json!(3)] {
            let mut json = tiny_bert_config();
            json["model_type"] = other.clone();
            let message = error(json);
            assert!(
                message.contains("dir/config.json")
                    && message.contains(&format!("model_type {other} is not supported")),
                "{message}"
            );
        }
    }

    /// The gliznet section is checked against its encoder: MPNet's separator and its two
    /// position ids fewer.
    #[test]
    fn the_gliznet_section_must_fit_its_encoder() {
        let (mpnet, _, _) = parse_config(tiny_mpnet_config(), "mpnet").unwrap();
        let fitting = GliznetConfig {
            max_length: mpnet.max_positions(),
            ..GliznetConfig::untrained_for(&mpnet)
        };
        assert_eq!(fitting.label_separator, "</s>");
        let with = |config: &GliznetConfig| {
            let mut json = tiny_mpnet_config();
            json["gliznet"] = serde_json::to_value(config).unwrap();
            json
        };
        assert!(parse_config(with(&fitting), "mpnet").is_ok());
        let too_long = GliznetConfig {
            max_length: mpnet.max_positions() + 1,
            ..fitting.clone()
        };
        assert!(error(with(&too_long)).contains("max_length 129 exceeds the 128 positions"));
        let bert_separator = GliznetConfig {
            label_separator: "[SEP]".into(),
            ..fitting
        };
        assert!(error(with(&bert_separator)).contains("label_separator \"[SEP]\""));
    }
}
