//! Sentence-BERT-style embeddings: each string encoded alone, `[CLS] tokens [SEP]`, hidden
//! states mean-pooled over its tokens and L2-normalised. Used by the bi-encoder baseline and by
//! negative mining.

use crate::batch::{token_batches, Batch};
use crate::model::bert::BertEncoder;
use crate::model::on_kernel_threads;
use crate::tokenizer::LabelTokenizer;
use anyhow::Result;
use candle_core::{Device, Tensor, D};

pub struct Embedder<'a> {
    pub encoder: &'a BertEncoder,
    pub tokenizer: &'a LabelTokenizer,
    pub device: &'a Device,
}

impl Embedder<'_> {
    /// One unit-length row per string, [strings, hidden], in input order.
    pub fn embed(&self, strings: &[&str], batch_size: usize) -> Result<Tensor> {
        on_kernel_threads(self.device, || {
            self.embed_on_this_thread(strings, batch_size)
        })
    }

    fn embed_on_this_thread(&self, strings: &[&str], batch_size: usize) -> Result<Tensor> {
        let mut sequences = strings
            .iter()
            .enumerate()
            .map(|(i, s)| Ok((i, self.tokenizer.encode_single(s)?)))
            .collect::<Result<Vec<_>>>()?;
        sequences.sort_by_key(|(_, seq)| seq.input_ids.len());
        let mut rows: Vec<Option<Tensor>> = vec![None; strings.len()];
        for group in token_batches(&sequences, |(_, s)| s.input_ids.len(), batch_size) {
            let seqs: Vec<_> = group.iter().map(|(_, s)| s).collect();
            let batch = Batch::collate(&seqs, self.tokenizer.pad_id(), self.device)?;
            let hidden = self
                .encoder
                .forward(&batch.input_ids, &batch.attention_mask, None)?;
            let mask = batch.attention_mask.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let pooled = summed.broadcast_div(&mask.sum(1)?)?;
            let norm = pooled
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .maximum(1e-12)?;
            let normalised = pooled.broadcast_div(&norm)?;
            for (row, (index, _)) in group.iter().enumerate() {
                rows[*index] = Some(normalised.get(row)?);
            }
        }
        let rows: Vec<Tensor> = rows.into_iter().flatten().collect();
        Ok(Tensor::stack(&rows, 0)?)
    }
}
