//! Collates packed sequences into padded tensors on a device.

use crate::tokenizer::SequenceEncoding;
use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The padded tokens a forward pass may hold per unit of batch size.
pub const TOKENS_PER_BATCH_SLOT: usize = 128;

/// `items` (sorted by ascending `length`, a token count) cut into consecutive runs, one forward
/// pass each. A run holds at most `batch_size` items, or more while they fit in
/// `batch_size` · 128 padded tokens (its count times its longest item). Within those bounds
/// the cut is the one with the least work, counting a pass as its padded tokens plus
/// [`PASS_COST_TOKENS`]: texts of very different lengths do not share a pass when padding the
/// short ones costs more than a pass of their own.
pub fn token_batches<T>(items: &[T], length: impl Fn(&T) -> usize, batch_size: usize) -> Vec<&[T]> {
    let lengths: Vec<usize> = items.iter().map(length).collect();
    debug_assert!(
        lengths.windows(2).all(|w| w[0] <= w[1]),
        "token_batches: items not sorted by length"
    );
    let batch_size = batch_size.max(1);
    let budget = batch_size * TOKENS_PER_BATCH_SLOT;
    // least_work[j]: the least work for the first j items; run_start[j]: where the last run
    // of that cut begins.
    let mut least_work = vec![0usize; items.len() + 1];
    let mut run_start = vec![0usize; items.len() + 1];
    for end in 1..=items.len() {
        let longest = lengths[end - 1];
        least_work[end] = usize::MAX;
        for start in (0..end).rev() {
            let count = end - start;
            if count > batch_size && count * longest > budget {
                break;
            }
            let work = least_work[start] + count * longest + PASS_COST_TOKENS;
            if work <= least_work[end] {
                least_work[end] = work;
                run_start[end] = start;
            }
        }
    }
    let mut runs = Vec::new();
    let mut end = items.len();
    while end > 0 {
        runs.push(&items[run_start[end]..end]);
        end = run_start[end];
    }
    runs.reverse();
    runs
}

/// A forward pass's fixed cost in padded tokens, for [`token_batches`]. Measured on CPU
/// (2026-12-07, `examples/throughput`, the built-in model): a pass of 1–8 short sequences
/// costs what 50–90 more tokens in a pass of 1,024 do in bf16, 60–140 in f32.
pub const PASS_COST_TOKENS: usize = 128;

/// What the tokens of a packed sequence `[CLS] text [SEP] label [SEP] label [SEP] …` attend to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelAttention {
    /// Every token to every token: the joint encoding.
    #[default]
    Full,
    /// The text to itself only; each label (with its `[SEP]`) to the text and to itself, never
    /// to another label. The text's states are the encoder's for the text alone, and a label's
    /// score does not depend on the other labels of the sequence.
    Isolated,
    /// The text to itself only; each label to itself and the `[CLS]` (standing in for its
    /// own), numbered from 1 as if it followed that `[CLS]`: a bi-encoder in one pass.
    Separate,
    /// The text to itself only; each label to itself only, numbered from 0 as a sequence of
    /// its own (a `label_template` starting with `[CLS]` gives it the `[CLS]` a bi-encoder
    /// would): a label's vector depends on nothing but the label, so it is computed once per
    /// call and compared with every text's.
    Independent,
}

pub struct Batch {
    /// [batch, seq] u32, padded to the longest sequence of the batch.
    pub input_ids: Tensor,
    /// [batch, seq] f32, 1 on tokens and 0 on padding.
    pub attention_mask: Tensor,
    /// [batch · (1 + labels)] u32: the rows the head reads in the flattened hidden states,
    /// sequence by sequence: its `[CLS]` (row `b · seq`), then each label's first token (row
    /// `b · seq + position`). Padded label slots point at the sequence's `[CLS]`.
    pub head_rows: Tensor,
    /// The tokens each head row reads under mean pooling, as (start, length) within its
    /// sequence, in `head_rows` order: the text row covers `[CLS] text [SEP]`, a label row
    /// the label's tokens. Padded label slots cover the `[CLS]` alone.
    pub head_spans: Vec<(usize, usize)>,
    /// [batch, seq] u32 position ids under which every label starts at the same position,
    /// right after the text's `[SEP]` (its tokens and its own `[SEP]` numbered on from there),
    /// so that no label is told apart by where it stands: with them, scores do not depend on
    /// the order of the labels. Padding is numbered 0.
    pub shared_label_positions: Tensor,
    /// [batch, seq] u32 position ids under which the text is numbered from 0 and every label
    /// from 1, as if it followed its own `[CLS]` (for `LabelAttention::Separate`).
    pub separate_label_positions: Tensor,
    /// [batch, seq] u32 position ids under which the text and every label are numbered from
    /// 0, each as a sequence of its own (for `LabelAttention::Independent`).
    pub independent_label_positions: Tensor,
    /// [batch, labels] f32, 1 on real labels and 0 on padded slots.
    pub label_mask: Tensor,
    pub max_labels: usize,
    pub seq_len: usize,
    /// Each sequence's token count (before padding) and its number of labels.
    lengths: Vec<usize>,
    label_counts: Vec<usize>,
}

impl Batch {
    pub fn collate(sequences: &[&SequenceEncoding], pad_id: u32, device: &Device) -> Result<Self> {
        anyhow::ensure!(!sequences.is_empty(), "cannot collate an empty batch");
        let batch = sequences.len();
        let seq_len = sequences
            .iter()
            .map(|s| s.input_ids.len())
            .max()
            .unwrap_or(0);
        let max_labels = sequences
            .iter()
            .map(|s| s.label_positions.len())
            .max()
            .unwrap_or(0);
        let mut ids = vec![pad_id; batch * seq_len];
        let mut mask = vec![0f32; batch * seq_len];
        let mut head_rows = vec![0u32; batch * (1 + max_labels)];
        let mut head_spans = vec![(0, 1); batch * (1 + max_labels)];
        let mut label_mask = vec![0f32; batch * max_labels];
        let mut positions = vec![0u32; batch * seq_len];
        let mut separate_positions = vec![0u32; batch * seq_len];
        let mut independent_positions = vec![0u32; batch * seq_len];
        for (b, seq) in sequences.iter().enumerate() {
            let row = b * seq_len;
            ids[row..row + seq.input_ids.len()].copy_from_slice(&seq.input_ids);
            mask[row..row + seq.input_ids.len()].fill(1.0);
            let rows = &mut head_rows[b * (1 + max_labels)..][..1 + max_labels];
            rows[0] = row as u32;
            let spans = &mut head_spans[b * (1 + max_labels)..][..1 + max_labels];
            // Each label is followed by exactly one [SEP]; the text ends where the first label
            // starts (or at the end of a label-less sequence).
            let text_end = seq
                .label_positions
                .first()
                .copied()
                .unwrap_or(seq.input_ids.len());
            spans[0] = (0, text_end);
            let seq_positions = &mut positions[row..row + seq.input_ids.len()];
            for (p, slot) in seq_positions[..text_end].iter_mut().enumerate() {
                *slot = p as u32;
            }
            for (p, slot) in seq.label_positions.iter().enumerate() {
                let end = seq
                    .label_positions
                    .get(p + 1)
                    .copied()
                    .unwrap_or(seq.input_ids.len());
                for (offset, position) in seq_positions[*slot..end].iter_mut().enumerate() {
                    *position = (text_end + offset) as u32;
                }
            }
            let separate = &mut separate_positions[row..row + seq.input_ids.len()];
            let independent = &mut independent_positions[row..row + seq.input_ids.len()];
            for (slot, ((shared, separate), independent)) in seq_positions
                .iter()
                .zip(separate)
                .zip(independent)
                .enumerate()
            {
                (*separate, *independent) = if slot < text_end {
                    (*shared, *shared)
                } else {
                    (*shared + 1 - text_end as u32, *shared - text_end as u32)
                };
            }
            for (slot, &start) in seq.label_positions.iter().enumerate() {
                let next = seq
                    .label_positions
                    .get(slot + 1)
                    .copied()
                    .unwrap_or(seq.input_ids.len());
                spans[1 + slot] = (start, next - 1 - start);
            }
            for slot in 0..max_labels {
                let position = seq.label_positions.get(slot).copied();
                rows[1 + slot] = (row + position.unwrap_or(0)) as u32;
                label_mask[b * max_labels + slot] = if position.is_some() { 1.0 } else { 0.0 };
            }
        }
        Ok(Self {
            input_ids: Tensor::from_vec(ids, (batch, seq_len), device)?,
            attention_mask: Tensor::from_vec(mask, (batch, seq_len), device)?,
            head_rows: Tensor::from_vec(head_rows, batch * (1 + max_labels), device)?,
            head_spans,
            shared_label_positions: Tensor::from_vec(positions, (batch, seq_len), device)?,
            independent_label_positions: Tensor::from_vec(
                independent_positions,
                (batch, seq_len),
                device,
            )?,
            separate_label_positions: Tensor::from_vec(
                separate_positions,
                (batch, seq_len),
                device,
            )?,
            label_mask: Tensor::from_vec(label_mask, (batch, max_labels), device)?,
            max_labels,
            seq_len,
            lengths: sequences.iter().map(|s| s.input_ids.len()).collect(),
            label_counts: sequences.iter().map(|s| s.label_positions.len()).collect(),
        })
    }

    /// The encoder's attention mask under `attention`: `attention_mask` for `Full`, else
    /// [batch, seq, seq] f32, 1 where query token i may attend to key token j. A label's
    /// segment is its tokens and its `[SEP]`; under `Isolated` and `Separate` it also sees the
    /// `[CLS]` (under `Separate` standing in for its own), under `Independent` nothing else.
    /// Padding rows attend to the text. A batch without labels gets `attention_mask`.
    pub fn attention_mask_for(&self, attention: LabelAttention) -> Result<Tensor> {
        // Without labels every mode gives each row the key mask, which the encoder takes as
        // one row per sequence.
        if attention == LabelAttention::Full || self.max_labels == 0 {
            return Ok(self.attention_mask.clone());
        }
        let seq = self.seq_len;
        let rows = 1 + self.max_labels;
        let mut mask = vec![0f32; self.lengths.len() * seq * seq];
        for (b, (&len, &labels)) in self.lengths.iter().zip(&self.label_counts).enumerate() {
            let spans = &self.head_spans[b * rows..][..rows];
            let text_end = spans[0].1;
            let sequence = &mut mask[b * seq * seq..][..seq * seq];
            for (query, row) in sequence.chunks_mut(seq).enumerate() {
                let label = spans[1..=labels]
                    .iter()
                    .find(|&&(start, tokens)| (start..start + tokens + 1).contains(&query));
                let sees_text = query < text_end
                    || query >= len
                    || (label.is_some() && attention == LabelAttention::Isolated);
                if sees_text {
                    row[..text_end].fill(1.0);
                }
                if let Some(&(start, tokens)) = label {
                    row[0] = if attention == LabelAttention::Independent {
                        0.0
                    } else {
                        1.0
                    };
                    row[start..start + tokens + 1].fill(1.0);
                }
            }
        }
        Ok(Tensor::from_vec(
            mask,
            (self.lengths.len(), seq, seq),
            self.attention_mask.device(),
        )?)
    }

    /// [batch, 1 + labels, seq] f32: row weights that average each head row's span
    /// (`head_spans`), so that `pool_weights · hidden` mean-pools text and labels.
    pub fn pool_weights(&self, device: &Device) -> Result<Tensor> {
        let rows = 1 + self.max_labels;
        let mut weights = vec![0f32; self.head_spans.len() * self.seq_len];
        for (row, &(start, len)) in self.head_spans.iter().enumerate() {
            let base = row * self.seq_len + start;
            weights[base..base + len].fill(1.0 / len as f32);
        }
        let batch = self.head_spans.len() / rows;
        Ok(Tensor::from_vec(
            weights,
            (batch, rows, self.seq_len),
            device,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The work of a cut as `token_batches` counts it, or `None` when a run breaks the bounds.
    fn work_of(runs: &[&[usize]], batch_size: usize) -> Option<usize> {
        let budget = batch_size * TOKENS_PER_BATCH_SLOT;
        runs.iter()
            .map(|run| {
                let (count, longest) = (run.len(), *run.last()?);
                (count <= batch_size || count * longest <= budget)
                    .then_some(count * longest + PASS_COST_TOKENS)
            })
            .sum()
    }

    /// Every cut of `lengths` into consecutive non-empty runs.
    fn every_cut(lengths: &[usize]) -> Vec<Vec<&[usize]>> {
        if lengths.is_empty() {
            return vec![vec![]];
        }
        (1..=lengths.len())
            .flat_map(|first| {
                every_cut(&lengths[first..])
                    .into_iter()
                    .map(move |mut rest| {
                        rest.insert(0, &lengths[..first]);
                        rest
                    })
            })
            .collect()
    }

    /// The runs cover every sequence once in order, each holds the bounds, and no other cut
    /// within the bounds has less work (checked against every cut of small inputs).
    #[test]
    fn token_batches_are_the_least_work_cut_within_the_bounds() {
        let mut rng = crate::rng::Rng::new(7);
        for case in 0..400 {
            let n = case % 11;
            let mut lengths: Vec<usize> = (0..n).map(|_| 1 + rng.below(300)).collect();
            lengths.sort();
            let batch_size = 1 + case % 5;
            let runs = token_batches(&lengths, |&l| l, batch_size);
            assert_eq!(runs.concat(), lengths, "case {case}");
            assert!(runs.iter().all(|r| !r.is_empty()), "case {case}: {runs:?}");
            let work =
                work_of(&runs, batch_size).unwrap_or_else(|| panic!("case {case}: {runs:?}"));
            let least = every_cut(&lengths)
                .iter()
                .filter_map(|cut| work_of(cut, batch_size))
                .min()
                .unwrap();
            assert_eq!(work, least, "case {case}: {runs:?}");
        }
        let sizes = |lengths: &[usize], batch_size| -> Vec<usize> {
            token_batches(lengths, |&l| l, batch_size)
                .iter()
                .map(|r| r.len())
                .collect()
        };
        assert_eq!(sizes(&[], 16), Vec::<usize>::new());
        assert_eq!(sizes(&[7], 16), [1]);
        // 20 texts of 20 tokens fit 2,048 tokens at batch size 16; 20 of 128 do not.
        assert_eq!(sizes(&[20; 20], 16), [20]);
        assert_eq!(sizes(&[128; 16], 16), [16]);
        assert_eq!(sizes(&[128; 17], 16).len(), 2);
        // Short texts beside long ones get a pass of their own rather than 128 tokens each.
        let mixed: Vec<usize> = [[25; 11].as_slice(), &[128; 12]].concat();
        assert_eq!(sizes(&mixed, 16), [11, 12]);
        // One short text rides with the long ones: its padding costs less than a pass.
        let one_short: Vec<usize> = [[25; 1].as_slice(), &[128; 15]].concat();
        assert_eq!(sizes(&one_short, 16), [16]);
        assert_eq!(sizes(&[512; 3], 1), [1, 1, 1]);
    }

    /// `[CLS] t t [SEP] a a [SEP] b [SEP]` (9 tokens) beside a shorter sequence with one label,
    /// padded: the mask is written out by hand for each mode.
    #[test]
    fn attention_masks_say_which_token_sees_which() {
        let long = SequenceEncoding {
            input_ids: vec![1, 5, 6, 2, 7, 8, 2, 9, 2],
            label_positions: vec![4, 7],
            label_indices: vec![0, 1],
            text_tokens_kept: 2,
        };
        let short = SequenceEncoding {
            input_ids: vec![1, 5, 2, 7, 2],
            label_positions: vec![3],
            label_indices: vec![0],
            text_tokens_kept: 1,
        };
        let batch = Batch::collate(&[&long, &short], 0, &Device::Cpu).unwrap();
        let separate_positions: Vec<Vec<u32>> = batch.separate_label_positions.to_vec2().unwrap();
        assert_eq!(
            separate_positions,
            [[0, 1, 2, 3, 1, 2, 3, 1, 2], [0, 1, 2, 1, 2, 0, 0, 0, 0]]
        );
        let independent_positions: Vec<Vec<u32>> =
            batch.independent_label_positions.to_vec2().unwrap();
        assert_eq!(
            independent_positions,
            [[0, 1, 2, 3, 0, 1, 2, 0, 1], [0, 1, 2, 0, 1, 0, 0, 0, 0]]
        );
        let full = batch.attention_mask_for(LabelAttention::Full).unwrap();
        assert_eq!(full.dims(), &[2, 9]);
        let rows = |text: &str| -> Vec<Vec<f32>> {
            text.split_whitespace()
                .map(|row| {
                    row.chars()
                        .map(|c| if c == '1' { 1.0 } else { 0.0 })
                        .collect()
                })
                .collect()
        };
        let isolated: Vec<Vec<Vec<f32>>> = batch
            .attention_mask_for(LabelAttention::Isolated)
            .unwrap()
            .to_vec3()
            .unwrap();
        assert_eq!(
            isolated[0],
            rows("111100000 111100000 111100000 111100000 111111100 111111100 111111100 111100011 111100011")
        );
        assert_eq!(
            isolated[1],
            rows("111000000 111000000 111000000 111110000 111110000 111000000 111000000 111000000 111000000")
        );
        let separate: Vec<Vec<Vec<f32>>> = batch
            .attention_mask_for(LabelAttention::Separate)
            .unwrap()
            .to_vec3()
            .unwrap();
        assert_eq!(
            separate[0],
            rows("111100000 111100000 111100000 111100000 100011100 100011100 100011100 100000011 100000011")
        );
        assert_eq!(
            separate[1],
            rows("111000000 111000000 111000000 100110000 100110000 111000000 111000000 111000000 111000000")
        );
        let independent: Vec<Vec<Vec<f32>>> = batch
            .attention_mask_for(LabelAttention::Independent)
            .unwrap()
            .to_vec3()
            .unwrap();
        assert_eq!(
            independent[0],
            rows("111100000 111100000 111100000 111100000 000011100 000011100 000011100 000000011 000000011")
        );
        assert_eq!(
            independent[1],
            rows("111000000 111000000 111000000 000110000 000110000 111000000 111000000 111000000 111000000")
        );
    }

    /// Texts without labels (how texts are packed when label vectors are encoded apart): every
    /// mode gives the key mask, one row per sequence, which the encoder applies to each query
    /// as the per-row masks above would (padding rows attend to the text).
    #[test]
    fn label_less_batches_get_the_key_mask_in_every_mode() {
        let sequence = |ids: Vec<u32>| SequenceEncoding {
            text_tokens_kept: ids.len() - 2,
            input_ids: ids,
            label_positions: vec![],
            label_indices: vec![],
        };
        let (long, short) = (sequence(vec![1, 5, 6, 7, 2]), sequence(vec![1, 5, 2]));
        let batch = Batch::collate(&[&long, &short], 0, &Device::Cpu).unwrap();
        for mode in [
            LabelAttention::Full,
            LabelAttention::Isolated,
            LabelAttention::Separate,
            LabelAttention::Independent,
        ] {
            let mask: Vec<Vec<f32>> = batch.attention_mask_for(mode).unwrap().to_vec2().unwrap();
            assert_eq!(
                mask,
                [[1.0; 5].to_vec(), vec![1.0, 1.0, 1.0, 0.0, 0.0]],
                "{mode:?}"
            );
        }
    }
}
