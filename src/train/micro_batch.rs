//! A micro-batch of a training step as the model takes it: each example's labels sampled and
//! shuffled (with negatives drawn from the other examples' positives when
//! `in_batch_negatives` asks for them), packed into sequences and collated with their targets.
//! Every draw comes from the config's seed and the position in training ([`derive_seed`]).

use crate::batch::Batch;
use crate::config::TrainConfig;
use crate::data::example::Example;
use crate::data::labels::label_key;
use crate::rng::Rng;
use crate::tokenizer::{LabelTokenizer, SequenceEncoding};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashSet;

/// A seed for one position in training, mixed so that nearby positions are unrelated.
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut rng = Rng::new(seed);
    let mut out = rng.next_u64();
    for &p in parts {
        out = Rng::new(out ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
    }
    out
}

/// The sequences of some training examples, collated.
pub struct MicroBatch {
    /// One per row of the batch: the index of its example in the training set, and the
    /// sequence.
    pub sequences: Vec<(usize, TrainingSequence)>,
    pub batch: Batch,
    /// [rows, `batch.max_labels`]: 1 for a positive label, 0 for a negative or a padding slot.
    pub targets: Tensor,
}

impl MicroBatch {
    /// The micro-batch of the training examples at `indices` (into `train`) in `epoch`.
    pub fn new(
        train: &[Example],
        indices: &[usize],
        epoch: usize,
        tokenizer: &LabelTokenizer,
        config: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        let extra_negatives = in_batch_negatives(
            train,
            indices,
            config.in_batch_negatives,
            derive_seed(config.seed, &[4, epoch as u64]),
        );
        // (example index, sequence)
        let mut sequences = Vec::new();
        for (&i, extra) in indices.iter().zip(&extra_negatives) {
            let mut rng = Rng::new(derive_seed(config.seed, &[2, epoch as u64, i as u64]));
            let example_sequences = training_sequences(
                &train[i],
                extra,
                tokenizer,
                config.max_labels_per_example,
                &mut rng,
            )
            .with_context(|| format!("training example {}", i + 1))?;
            sequences.extend(example_sequences.into_iter().map(|s| (i, s)));
        }
        let seqs: Vec<&SequenceEncoding> = sequences.iter().map(|(_, s)| &s.encoding).collect();
        let batch = Batch::collate(&seqs, tokenizer.pad_id(), device)?;
        let mut targets = vec![0f32; seqs.len() * batch.max_labels];
        for (row, (_, s)) in sequences.iter().enumerate() {
            targets[row * batch.max_labels..row * batch.max_labels + s.targets.len()]
                .copy_from_slice(&s.targets);
        }
        let targets = Tensor::from_vec(targets, (seqs.len(), batch.max_labels), device)?;
        Ok(Self {
            sequences,
            batch,
            targets,
        })
    }
}

/// For each example of a micro-batch (`indices` into `train`), up to `n` negatives drawn from
/// the other examples' positives: labels the example does not name itself, positive or
/// negative ([`label_key`]). Seeded per micro-batch; empty lists when `n` is 0.
fn in_batch_negatives(
    train: &[Example],
    indices: &[usize],
    n: usize,
    seed: u64,
) -> Vec<Vec<String>> {
    if n == 0 {
        return vec![Vec::new(); indices.len()];
    }
    let mut rng = Rng::new(seed ^ indices.first().map_or(0, |&i| i as u64));
    indices
        .iter()
        .map(|&i| {
            let own: HashSet<String> = train[i]
                .labels
                .iter()
                .chain(&train[i].not_labels)
                .map(|l| label_key(l))
                .collect();
            let mut seen = HashSet::new();
            let mut candidates: Vec<&String> = indices
                .iter()
                .filter(|&&j| j != i)
                .flat_map(|&j| &train[j].labels)
                .filter(|l| {
                    let key = label_key(l);
                    !own.contains(&key) && seen.insert(key)
                })
                .collect();
            rng.shuffle(&mut candidates);
            candidates.into_iter().take(n).cloned().collect()
        })
        .collect()
}

/// One packed sequence of a training example: its labels (in slot order) and their targets.
pub struct TrainingSequence {
    pub encoding: SequenceEncoding,
    pub targets: Vec<f32>,
    pub labels: Vec<String>,
}

/// The training sequences of one example: labels shuffled and subsampled, then packed; labels
/// that do not fit in one sequence go to further sequences with the same text.
fn training_sequences(
    example: &Example,
    extra_negatives: &[String],
    tokenizer: &LabelTokenizer,
    max_labels: usize,
    rng: &mut Rng,
) -> Result<Vec<TrainingSequence>> {
    let mut targets = example.sample_targets(max_labels, rng);
    if !extra_negatives.is_empty() {
        targets.extend(extra_negatives.iter().map(|l| (l.clone(), false)));
        rng.shuffle(&mut targets);
    }
    let names: Vec<String> = targets.iter().map(|(l, _)| l.clone()).collect();
    let encoding = tokenizer.encode(&example.text, &names)?;
    Ok(encoding
        .chunks
        .into_iter()
        .map(|chunk| TrainingSequence {
            targets: chunk
                .label_indices
                .iter()
                .map(|&i| if targets[i].1 { 1.0 } else { 0.0 })
                .collect(),
            labels: chunk
                .label_indices
                .iter()
                .map(|&i| names[i].clone())
                .collect(),
            encoding: chunk,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::example;

    /// Negatives come only from the other examples' positives, never a label the example names
    /// itself (by `label_key`), at most `n`, no repeats, the same for the same seed.
    #[test]
    fn in_batch_negatives_come_from_the_others_positives() {
        let train = vec![
            example(&["sports"], &["news"]),
            example(&["Sports", "cooking"], &["bank"]),
            example(&["news", "travel"], &[]),
            example(&["weather"], &[]),
        ];
        let indices = [0, 1, 2, 3];
        assert!(in_batch_negatives(&train, &indices, 0, 7)
            .iter()
            .all(Vec::is_empty));
        let drawn = in_batch_negatives(&train, &indices, 10, 7);
        let sorted = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v
        };
        assert_eq!(sorted(&drawn[0]), vec!["cooking", "travel", "weather"]);
        assert_eq!(sorted(&drawn[1]), vec!["news", "travel", "weather"]);
        assert_eq!(sorted(&drawn[2]), vec!["cooking", "sports", "weather"]);
        assert_eq!(
            sorted(&drawn[3]),
            vec!["cooking", "news", "sports", "travel"]
        );
        let two = in_batch_negatives(&train, &indices, 2, 7);
        assert!(two.iter().all(|v| v.len() == 2));
        assert_eq!(two, in_batch_negatives(&train, &indices, 2, 7));
        for (negatives, &i) in two.iter().zip(&indices) {
            for n in negatives {
                assert!(!train[i].labels.iter().any(|l| label_key(l) == label_key(n)));
            }
        }
    }
}
