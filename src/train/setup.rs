//! What a training run starts from: the model and its optimizer (from the backbone or a
//! checkpoint, with a fresh head where the backbone has none that fits), and the data.

use crate::config::TrainConfig;
use crate::data::example::{read_examples, split_validation, Example, SkipReport};
use crate::error::input_error;
use crate::model::checkpoint::{self, ModelSource};
use crate::model::config::{GliznetConfig, FORMAT_VERSION};
use crate::model::gliznet::GliZNet;
use crate::model::head;
use crate::model::params::Params;
use crate::tokenizer::{EncodedLabels, LabelTokenizer};
use crate::train::optim::{AdamW, AdamWConfig, Param};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use std::collections::HashMap;

/// A model ready to train: the optimizer holds its trainable tensors.
pub struct TrainableModel {
    pub model: GliZNet,
    pub tokenizer: LabelTokenizer,
    pub optimizer: AdamW,
    /// Tensors saved with the model but not trained (e.g. the pooler).
    pub extras: HashMap<String, Tensor>,
    /// The backbone's `config.json`, written back with the GliZNet section added.
    pub encoder_config: serde_json::Value,
    pub model_config: GliznetConfig,
}

impl TrainableModel {
    /// Every tensor of the model as it stands, by name, for saving.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut tensors = self.extras.clone();
        for p in self.optimizer.params() {
            tensors.insert(p.name.clone(), p.var.as_tensor().detach());
        }
        tensors
    }
}

fn is_trainable(name: &str) -> bool {
    name.starts_with("embeddings.") || name.starts_with("encoder.") || name.starts_with("gliznet.")
}

/// Loads `source` for training with `config`: the head is initialised from the config's seed
/// unless `source` has one of the same shape.
pub fn trainable_model(
    config: &TrainConfig,
    source: &ModelSource,
    device: &Device,
) -> Result<TrainableModel> {
    let files = checkpoint::open(source, device)?;
    let mut bert = files.bert;
    if let Some(p) = config.dropout {
        bert.hidden_dropout_prob = p;
        bert.attention_probs_dropout_prob = p;
    }
    let model_config = GliznetConfig {
        format_version: FORMAT_VERSION,
        similarity: config.similarity,
        projection_dim: config.projection_dim,
        max_length: config.max_length,
        max_label_tokens: config.max_label_tokens,
        min_text_tokens: config.min_text_tokens,
        label_separator: "[SEP]".into(),
        readout: config.readout,
        shared_label_positions: config.shared_label_positions,
        threshold: None,
    };
    model_config
        .validate(bert.max_position_embeddings)
        .map_err(|e| input_error(format!("config: {e}")))?;
    let tokenizer = LabelTokenizer::new(files.tokenizer, model_config.limits())?;
    let fresh_head = head::init_params(
        &model_config.head_shape(bert.hidden_size),
        config.seed,
        device,
    )?;
    let mut tensors: HashMap<String, Tensor> = files
        .params
        .into_tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("gliznet.") || fresh_head.contains_key(name))
        .collect();
    for (name, init) in fresh_head {
        let reusable = tensors
            .get(&name)
            .is_some_and(|t| t.shape() == init.shape());
        if !reusable {
            tensors.insert(name, init);
        }
    }
    let (mut trainable, extras): (Vec<_>, Vec<_>) = tensors
        .into_iter()
        .partition(|(name, _)| is_trainable(name));
    let extras: HashMap<String, Tensor> = extras.into_iter().collect();
    trainable.sort_by(|a, b| a.0.cmp(&b.0));
    let params: Vec<Param> = trainable
        .into_iter()
        .map(|(name, t)| {
            Ok(Param {
                name,
                var: Var::from_tensor(&t)?,
            })
        })
        .collect::<Result<_>>()?;
    let model_params = Params::new(
        params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .chain(extras.clone())
            .collect(),
        files.name.clone(),
    );
    let model = GliZNet::load(&model_params, &bert, &model_config)?;
    let optimizer = AdamW::new(
        params,
        AdamWConfig {
            encoder_lr: config.encoder_lr,
            head_lr: config.head_lr,
            beta1: config.adam_beta1,
            beta2: config.adam_beta2,
            eps: config.adam_eps,
            weight_decay: config.weight_decay,
        },
    )?;
    Ok(TrainableModel {
        model,
        tokenizer,
        optimizer,
        extras,
        encoder_config: files.encoder_config,
        model_config,
    })
}

/// The training and validation examples, and what was skipped from each file under the
/// config's `invalid_examples` policy. Without a validation file, a share of the training
/// file is split off.
pub struct TrainingData {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub skipped_train: SkipReport,
    pub skipped_validation: SkipReport,
}

pub fn training_data(config: &TrainConfig) -> Result<TrainingData> {
    let (train, skipped_train) = read_examples(&config.train_file, config.invalid_examples)?;
    let (train, validation, skipped_validation) = match &config.validation_file {
        Some(path) => {
            let (validation, skipped) = read_examples(path, config.invalid_examples)?;
            (train, validation, skipped)
        }
        None => {
            if train.len() < 2 {
                return Err(input_error(
                    "need at least 2 examples to split off a validation set",
                ));
            }
            let (train, validation) =
                split_validation(train, config.validation_fraction, config.seed);
            (train, validation, SkipReport::default())
        }
    };
    Ok(TrainingData {
        train,
        validation,
        skipped_train,
        skipped_validation,
    })
}

/// Each validation example with its whole label list tokenized once.
pub fn encode_validation(
    validation: Vec<Example>,
    tokenizer: &LabelTokenizer,
) -> Result<Vec<(Example, EncodedLabels)>> {
    validation
        .into_iter()
        .map(|example| {
            let names: Vec<String> = example
                .targets()
                .iter()
                .map(|(l, _)| l.to_string())
                .collect();
            let encoded = tokenizer.encode_labels(&names)?;
            Ok((example, encoded))
        })
        .collect::<Result<Vec<_>>>()
        .context("validation set")
}
