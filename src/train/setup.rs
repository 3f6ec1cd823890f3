//! What a training run starts from: the model and its optimizer (from the backbone or a
//! checkpoint, with a fresh head where the backbone has none that fits), and the data.

use crate::config::{Negatives, TrainConfig};
use crate::data::example::{read_examples, split_validation, Example, SkipReport};
use crate::data::labels::label_key;
use crate::error::input_error;
use crate::model::checkpoint::{self, ModelSource};
use crate::model::config::{GliznetConfig, FORMAT_VERSION};
use crate::model::gliznet::GliZNet;
use crate::model::head;
use crate::model::params::Params;
use crate::rng::Rng;
use crate::tokenizer::{EncodedLabels, LabelTokenizer};
use crate::train::optim::{AdamW, AdamWConfig, Param};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use std::collections::{HashMap, HashSet};

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

/// Whether the optimizer updates `name`: the head, and the encoder outside the embeddings and
/// the first `frozen_layers` layers (all of it when 0). MPNet's relative position bias, which
/// every layer reads, is frozen with the embeddings.
fn is_trainable(name: &str, frozen_layers: usize) -> bool {
    if name.starts_with("gliznet.") {
        return true;
    }
    if name.starts_with("embeddings.") || name == crate::model::mpnet::RELATIVE_BIAS {
        return frozen_layers == 0;
    }
    match name.strip_prefix("encoder.layer.") {
        Some(rest) => rest
            .split('.')
            .next()
            .and_then(|index| index.parse::<usize>().ok())
            .is_some_and(|index| index >= frozen_layers),
        None => name.starts_with("encoder."),
    }
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
    if config.frozen_layers > bert.num_hidden_layers {
        return Err(input_error(format!(
            "config: frozen_layers = {} is more than the {} layers of {}",
            config.frozen_layers, bert.num_hidden_layers, files.name
        )));
    }
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
        label_separator: bert.model_type.special_tokens().sep.into(),
        readout: config.readout,
        shared_label_positions: config.shared_label_positions,
        label_attention: config.label_attention,
        label_template: config.label_template.clone(),
        threshold: None,
    };
    model_config
        .validate(&bert)
        .map_err(|e| input_error(format!("config: {e}")))?;
    let tokenizer = LabelTokenizer::new(
        files.tokenizer,
        model_config.limits(),
        bert.model_type.special_tokens(),
    )?
    .with_label_template(model_config.label_template.as_deref())?;
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
        .partition(|(name, _)| is_trainable(name, config.frozen_layers));
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
    if train.iter().all(|e| e.labels.is_empty()) {
        return Err(input_error(format!(
            "{}: no example has a positive label (labels); there is nothing to learn",
            config.train_file.display()
        )));
    }
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
    let mut train = train;
    if let Some(path) = &config.nli_file {
        let (pairs, _) = read_examples(path, config.invalid_examples)?;
        train.extend(draw_share(
            pairs,
            train.len(),
            config.nli_share,
            config.seed,
        ));
    }
    replace_negatives(&mut train, config.negatives, config.seed);
    Ok(TrainingData {
        train,
        validation,
        skipped_train,
        skipped_validation,
    })
}

/// As many of `pool` (drawn by `seed`, at most all of it) as make `share` of the examples
/// once they join `existing` others.
fn draw_share(mut pool: Vec<Example>, existing: usize, share: f64, seed: u64) -> Vec<Example> {
    let wanted = (existing as f64 * share / (1.0 - share)).round() as usize;
    Rng::new(seed ^ 0x006e_6c69_5f6d_6978).shuffle(&mut pool);
    pool.truncate(wanted);
    pool
}

/// Replaces the `not_labels` of `train` as `negatives` says (the validation set keeps its
/// own). `Random` draws are fixed by `seed`.
fn replace_negatives(train: &mut [Example], negatives: Negatives, seed: u64) {
    match negatives {
        Negatives::Hard => {}
        Negatives::None => train.iter_mut().for_each(|e| e.not_labels.clear()),
        Negatives::Random => {
            let mut seen = HashSet::new();
            let pool: Vec<String> = train
                .iter()
                .flat_map(|e| &e.labels)
                .filter(|l| seen.insert(label_key(l)))
                .cloned()
                .collect();
            let mut rng = Rng::new(seed ^ 0x6e65_6761_7469_7665);
            for example in train.iter_mut() {
                let own: HashSet<String> = example.labels.iter().map(|l| label_key(l)).collect();
                let wanted = example.not_labels.len();
                let mut drawn = Vec::with_capacity(wanted);
                let mut drawn_keys = HashSet::new();
                // Bounded: a pool made only of the example's own labels yields fewer.
                for _ in 0..wanted * 20 {
                    if drawn.len() == wanted {
                        break;
                    }
                    let label = &pool[rng.below(pool.len())];
                    let key = label_key(label);
                    if !own.contains(&key) && drawn_keys.insert(key) {
                        drawn.push(label.clone());
                    }
                }
                example.not_labels = drawn;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::example;

    fn corpus() -> Vec<Example> {
        (0..40)
            .map(|i| {
                example(
                    &[&format!("topic {i}"), "Shared Label"],
                    &["hard a", "hard b", "hard c"],
                )
            })
            .collect()
    }

    #[test]
    fn nli_examples_make_the_asked_share_at_most_all_of_them() {
        let pool = corpus();
        for (existing, share, wanted) in [(30, 0.25, 10), (10, 0.5, 10), (60, 0.5, 40), (1, 0.1, 0)]
        {
            let drawn = draw_share(pool.clone(), existing, share, 3);
            assert_eq!(drawn.len(), wanted, "{existing} {share}");
            assert!(drawn.iter().all(|e| pool.contains(e)));
            assert_eq!(drawn, draw_share(pool.clone(), existing, share, 3));
        }
        assert_ne!(
            draw_share(pool.clone(), 10, 0.5, 3),
            draw_share(pool, 10, 0.5, 4)
        );
    }

    #[test]
    fn random_negatives_keep_the_count_and_never_name_an_own_label() {
        let mut train = corpus();
        train[0].labels.push("shared_label".into());
        let original = train.clone();
        replace_negatives(&mut train, Negatives::Random, 5);
        for (before, after) in original.iter().zip(&train) {
            assert_eq!(after.labels, before.labels);
            assert_eq!(after.not_labels.len(), before.not_labels.len());
            let own: HashSet<String> = after.labels.iter().map(|l| label_key(l)).collect();
            let keys: HashSet<String> = after.not_labels.iter().map(|l| label_key(l)).collect();
            assert_eq!(keys.len(), after.not_labels.len(), "{:?}", after.not_labels);
            assert!(keys.is_disjoint(&own), "{:?}", after.not_labels);
            assert!(after.not_labels.iter().all(|l| l.starts_with("topic ")));
        }
        let mut again = original.clone();
        replace_negatives(&mut again, Negatives::Random, 5);
        assert_eq!(again, train);
        let mut other_seed = original;
        replace_negatives(&mut other_seed, Negatives::Random, 6);
        assert_ne!(other_seed, train);
    }

    #[test]
    fn hard_keeps_and_none_drops_the_negatives() {
        let mut hard = corpus();
        replace_negatives(&mut hard, Negatives::Hard, 5);
        assert_eq!(hard, corpus());
        let mut none = corpus();
        replace_negatives(&mut none, Negatives::None, 5);
        assert!(none.iter().all(|e| e.not_labels.is_empty()));
        assert!(none.iter().zip(corpus()).all(|(a, b)| a.labels == b.labels));
    }

    #[test]
    fn frozen_layers_are_the_embeddings_and_the_first_layers_by_number() {
        for name in [
            "embeddings.word_embeddings.weight",
            "encoder.layer.0.output.dense.bias",
        ] {
            assert!(is_trainable(name, 0), "{name}");
            assert!(!is_trainable(name, 1), "{name}");
        }
        assert!(!is_trainable("encoder.layer.1.output.dense.bias", 2));
        assert!(is_trainable("encoder.layer.10.output.dense.bias", 2));
        assert!(is_trainable("encoder.layer.2.output.dense.bias", 2));
        assert!(is_trainable("gliznet.log_logit_scale", 12));
        assert!(is_trainable("encoder.relative_attention_bias.weight", 0));
        assert!(!is_trainable("encoder.relative_attention_bias.weight", 1));
        assert!(!is_trainable("pooler.dense.weight", 0));
    }

    #[test]
    fn a_pool_of_own_labels_only_yields_fewer_random_negatives() {
        let mut train = vec![example(&["a", "b"], &["x", "y"])];
        replace_negatives(&mut train, Negatives::Random, 1);
        assert!(train[0].not_labels.is_empty());
    }
}
