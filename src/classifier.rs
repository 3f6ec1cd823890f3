//! Inference: texts and their labels in, one logit per label out, in the caller's order.

use crate::batch::Batch;
use crate::model::checkpoint::{self, LoadedModel};
use crate::model::gliznet::GliZNet;
use crate::tokenizer::{EncodedLabels, LabelTokenizer, SequenceEncoding, TextEncoding};
use anyhow::{ensure, Context, Result};
use candle_core::Device;

pub struct Classifier {
    pub loaded: LoadedModel,
    pub device: Device,
}

/// The logits of one text, aligned with its label list, and how the text was packed.
pub struct TextLogits {
    pub logits: Vec<f32>,
    pub encoding: TextEncoding,
}

impl Classifier {
    pub fn load(model: &str, device: Device) -> Result<Self> {
        let loaded = checkpoint::load(model, &device)?;
        Ok(Self { loaded, device })
    }

    pub fn logits(
        &self,
        items: &[(&str, &EncodedLabels)],
        batch_size: usize,
    ) -> Result<Vec<TextLogits>> {
        logits(
            &self.loaded.model,
            &self.loaded.tokenizer,
            &self.device,
            items,
            batch_size,
        )
    }
}

/// Scores many texts in inference mode. Sequences (one per label chunk) are sorted by length
/// and run in batches of `batch_size`, so padding stays small; results come back in input order.
pub fn logits(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    items: &[(&str, &EncodedLabels)],
    batch_size: usize,
) -> Result<Vec<TextLogits>> {
    ensure!(batch_size > 0, "batch size must be positive");
    let encodings = items
        .iter()
        .map(|(text, labels)| tokenizer.encode_with_labels(text, labels))
        .collect::<Result<Vec<_>>>()?;
    let mut sequences: Vec<(usize, &SequenceEncoding)> = encodings
        .iter()
        .enumerate()
        .flat_map(|(item, enc)| enc.chunks.iter().map(move |c| (item, c)))
        .collect();
    sequences.sort_by_key(|(_, seq)| seq.input_ids.len());

    let mut logits: Vec<Vec<Option<f32>>> =
        items.iter().map(|(_, l)| vec![None; l.len()]).collect();
    for group in sequences.chunks(batch_size) {
        let seqs: Vec<&SequenceEncoding> = group.iter().map(|(_, s)| *s).collect();
        let batch = Batch::collate(&seqs, tokenizer.pad_id(), device)?;
        let rows = model.forward(&batch, None)?.to_vec2::<f32>()?;
        for ((item, seq), row) in group.iter().zip(rows) {
            for (slot, &label) in seq.label_indices.iter().enumerate() {
                logits[*item][label] = Some(row[slot]);
            }
        }
    }
    logits
        .into_iter()
        .zip(encodings)
        .map(|(logits, encoding)| {
            let logits = logits.into_iter().collect::<Option<Vec<f32>>>();
            let logits = logits.context("internal error: a label was left unscored")?;
            Ok(TextLogits { logits, encoding })
        })
        .collect()
}
