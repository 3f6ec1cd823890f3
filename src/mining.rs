//! Hard-negative mining: for each example, the pool labels most similar to its positives
//! (cosine of mean-pooled embeddings) that are not positives themselves. Guards against false
//! negatives: labels equal to a positive ([`label_key`]), labels above a similarity
//! ceiling, and optionally the top few, are skipped.

use crate::data::example::Example;
use crate::data::labels::label_key;
use crate::embed::Embedder;
use crate::error::input_error;
use crate::rng::Rng;
use anyhow::Result;
use candle_core::Tensor;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The most similar labels first
    Hard,
    /// Uniformly random labels (for ablations)
    Random,
}

#[derive(Debug, Clone, Copy)]
pub struct MiningOptions {
    pub k: usize,
    pub max_similarity: f32,
    pub skip_top: usize,
    pub strategy: Strategy,
    pub seed: u64,
}

pub struct Miner<'a> {
    embedder: Embedder<'a>,
    pool: Vec<String>,
    pool_normalized: Vec<String>,
    /// [pool, hidden], unit rows.
    pool_vectors: Tensor,
    options: MiningOptions,
    batch_size: usize,
}

impl<'a> Miner<'a> {
    pub fn new(
        embedder: Embedder<'a>,
        mut pool: Vec<String>,
        options: MiningOptions,
        batch_size: usize,
    ) -> Result<Self> {
        // One spelling per label (`label_key`): `Tennis` and `tennis` are one label, and two
        // spellings among the negatives would make the output a file eval and train refuse.
        // The first spelling in sorted order is kept.
        pool.sort();
        let mut seen = HashSet::new();
        pool.retain(|label| seen.insert(label_key(label)));
        if pool.len() < options.k {
            return Err(input_error(format!(
                "the label pool has {} distinct labels, fewer than the {} negatives asked for",
                pool.len(),
                options.k
            )));
        }
        let refs: Vec<&str> = pool.iter().map(String::as_str).collect();
        let pool_vectors = embedder.embed(&refs, batch_size)?;
        Ok(Self {
            pool_normalized: pool.iter().map(|l| label_key(l)).collect(),
            pool,
            pool_vectors,
            embedder,
            options,
            batch_size,
        })
    }

    /// New negatives for each example (up to `k`, fewer only when the guards leave fewer).
    /// `ids` seed the random strategy per example (e.g. line numbers), so output is stable.
    pub fn mine(&self, examples: &[Example], ids: &[u64]) -> Result<Vec<Vec<String>>> {
        let mut positives: Vec<&str> = examples
            .iter()
            .flat_map(|e| e.labels.iter().map(String::as_str))
            .collect();
        positives.sort();
        positives.dedup();
        let row_of: HashMap<&str, usize> =
            positives.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let similarities: Vec<Vec<f32>> = if positives.is_empty() {
            Vec::new()
        } else {
            let vectors = self.embedder.embed(&positives, self.batch_size)?;
            vectors.matmul(&self.pool_vectors.t()?)?.to_vec2()?
        };
        let mut mined = Vec::with_capacity(examples.len());
        for (example, id) in examples.iter().zip(ids) {
            let taken: HashSet<String> = example
                .labels
                .iter()
                .chain(&example.not_labels)
                .map(|l| label_key(l))
                .collect();
            let rows: Vec<&Vec<f32>> = example
                .labels
                .iter()
                .map(|p| &similarities[row_of[p.as_str()]])
                .collect();
            let mut candidates: Vec<(f32, usize)> = (0..self.pool.len())
                .filter(|&j| !taken.contains(&self.pool_normalized[j]))
                .map(|j| {
                    (
                        rows.iter().map(|r| r[j]).fold(f32::NEG_INFINITY, f32::max),
                        j,
                    )
                })
                .filter(|(sim, _)| *sim <= self.options.max_similarity)
                .collect();
            match self.options.strategy {
                Strategy::Hard => {
                    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                    candidates.drain(..self.options.skip_top.min(candidates.len()));
                }
                Strategy::Random => {
                    Rng::new(self.options.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                        .shuffle(&mut candidates)
                }
            }
            mined.push(
                candidates
                    .iter()
                    .take(self.options.k)
                    .map(|(_, j)| self.pool[*j].clone())
                    .collect(),
            );
        }
        Ok(mined)
    }
}
