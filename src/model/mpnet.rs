//! What MPNet (`model_type: mpnet`, e.g. sentence-transformers/all-mpnet-base-v2) has that
//! BERT has not, as transformers' `MPNetModel` computes it: position ids offset by
//! `padding_idx + 1` = 2, no token types, its own tensor names for the same layer (both
//! tables in `model::bert`), and a relative position bias: each (query, key) pair's distance falls in one of 32 buckets
//! (exact up to 7 tokens, then log-spaced up to 128, by direction), each bucket has one
//! learned value per head, and every layer adds those values to its attention scores.
//!
//! The bias is computed from the position ids the encoder is given, so that numberings other
//! than 0, 1, 2, … (shared label positions, labels numbered as sequences of their own) move it
//! as they move the position embeddings. (transformers numbers the bias 0, 1, 2, … whatever
//! the position ids; the two agree on the plain numbering.)

use crate::model::params::Params;
use anyhow::Result;
use candle_core::{Device, Tensor};

/// Added to each position (0, 1, 2, …) to make its position id: `padding_idx + 1`.
pub const POSITION_OFFSET: usize = 2;

/// The buckets transformers' MPNet sorts relative positions into (its encoder calls the
/// bucket function with 32 whatever the config says), half for keys before the query (or at
/// it), half for keys after it.
pub const RELATIVE_BUCKETS: usize = 32;

/// The relative position bias table, [buckets, heads].
pub const RELATIVE_BIAS: &str = "encoder.relative_attention_bias.weight";

/// transformers' `MPNetEncoder.relative_position_bucket(relative, num_buckets=32,
/// max_distance=128)` for `relative` = key position − query position: with n = query − key,
/// buckets 0–15 for n ≥ 0 and 16–31 for n < 0; within each half, |n| itself below 8, else
/// 8 + ⌊8·log₁₆(|n|/8)⌋ capped at 15 (|n| ≥ 91 shares the last bucket). The logarithm is
/// decided in integers: ⌊8·log₁₆(n/8)⌋ ≥ k exactly when n⁸ ≥ 8⁸·16ᵏ, so that the boundaries
/// (n = 16, 32, 64) fall where PyTorch's float arithmetic puts them (checked against it in
/// tests/mpnet.rs).
pub fn relative_position_bucket(relative: i64) -> u32 {
    const HALF: u32 = RELATIVE_BUCKETS as u32 / 2;
    const MAX_EXACT: u64 = HALF as u64 / 2;
    let n = -relative;
    let base = if n < 0 { HALF } else { 0 };
    let n = n.unsigned_abs();
    if n < MAX_EXACT {
        return base + n as u32;
    }
    // n ≥ 128 is past the cap (8·log₁₆(16) = 8 > 7), and below it n⁸ < 2⁵⁶ fits a u64.
    let steps = HALF - 1 - MAX_EXACT as u32;
    if n >= 128 {
        return base + MAX_EXACT as u32 + steps;
    }
    let n8 = n.pow(8);
    let floor = MAX_EXACT.pow(8);
    let k = (1..=steps)
        .take_while(|&k| n8 >= floor * 16u64.pow(k))
        .count() as u32;
    base + MAX_EXACT as u32 + k
}

/// The relative position bias table and what it makes of position ids.
pub(crate) struct RelativePositionBias {
    /// [buckets, heads].
    table: Tensor,
    heads: usize,
}

impl RelativePositionBias {
    /// The table of `buckets` rows (`relative_attention_num_buckets`) for `heads` heads.
    pub fn load(params: &Params, buckets: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            table: params.get(RELATIVE_BIAS, (buckets, heads))?,
            heads,
        })
    }

    /// The bias for `positions` [batch, seq] (u32, numbered from 0 as the batch gives them),
    /// [batch, heads, seq, seq]; for `None` (0, 1, 2, … in every sequence) [1, heads, seq,
    /// seq]. Differentiable in the table.
    pub fn bias(
        &self,
        positions: Option<&Tensor>,
        seq_len: usize,
        device: &Device,
    ) -> Result<Tensor> {
        let pairs = |row: &[u32], buckets: &mut Vec<u32>| {
            for &query in row {
                buckets.extend(
                    row.iter()
                        .map(|&key| relative_position_bucket(i64::from(key) - i64::from(query))),
                );
            }
        };
        let mut buckets = Vec::new();
        let sequences = match positions {
            None => {
                let row: Vec<u32> = (0..seq_len as u32).collect();
                pairs(&row, &mut buckets);
                1
            }
            Some(positions) => {
                let rows: Vec<Vec<u32>> = positions.to_vec2()?;
                for row in &rows {
                    anyhow::ensure!(row.len() == seq_len, "positions for {} tokens", row.len());
                    pairs(row, &mut buckets);
                }
                rows.len()
            }
        };
        let buckets = Tensor::from_vec(buckets, sequences * seq_len * seq_len, device)?;
        Ok(self
            .table
            .index_select(&buckets, 0)?
            .reshape((sequences, seq_len, seq_len, self.heads))?
            .permute((0, 3, 1, 2))?
            .contiguous()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buckets by hand at each boundary, both directions.
    #[test]
    fn buckets_are_exact_near_then_log_spaced_by_direction() {
        for (n, bucket) in [
            (0, 0),
            (1, 1),
            (7, 7),
            (8, 8),
            (11, 8),
            (12, 9),
            (15, 9),
            (16, 10),
            (22, 10),
            (23, 11),
            (31, 11),
            (32, 12),
            (45, 12),
            (46, 13),
            (63, 13),
            (64, 14),
            (90, 14),
            (91, 15),
            (128, 15),
            (100_000, 15),
        ] {
            // n = query − key: the key before the query.
            assert_eq!(relative_position_bucket(-n), bucket, "key {n} before");
            if n > 0 {
                assert_eq!(relative_position_bucket(n), 16 + bucket, "key {n} after");
            }
        }
    }
}
