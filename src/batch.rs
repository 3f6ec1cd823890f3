//! Collates packed sequences into padded tensors on a device.

use crate::tokenizer::SequenceEncoding;
use anyhow::Result;
use candle_core::{Device, Tensor};

pub struct Batch {
    /// [batch, seq] u32, padded to the longest sequence of the batch.
    pub input_ids: Tensor,
    /// [batch, seq] f32, 1 on tokens and 0 on padding.
    pub attention_mask: Tensor,
    /// [batch · (1 + labels)] u32: the rows the head reads in the flattened hidden states,
    /// sequence by sequence: its `[CLS]` (row `b · seq`), then each label's first token (row
    /// `b · seq + position`). Padded label slots point at the sequence's `[CLS]`.
    pub head_rows: Tensor,
    /// [batch, labels] f32, 1 on real labels and 0 on padded slots.
    pub label_mask: Tensor,
    pub max_labels: usize,
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
        let mut label_mask = vec![0f32; batch * max_labels];
        for (b, seq) in sequences.iter().enumerate() {
            let row = b * seq_len;
            ids[row..row + seq.input_ids.len()].copy_from_slice(&seq.input_ids);
            mask[row..row + seq.input_ids.len()].fill(1.0);
            let rows = &mut head_rows[b * (1 + max_labels)..][..1 + max_labels];
            rows[0] = row as u32;
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
            label_mask: Tensor::from_vec(label_mask, (batch, max_labels), device)?,
            max_labels,
        })
    }
}
