//! The GliZNet model: encoder, then a vector for the text and one for each label (the
//! `[CLS]` and each label's first token, or the mean over their tokens), then the similarity
//! head.

use crate::batch::Batch;
use crate::model::bert::{BertConfig, BertEncoder};
use crate::model::config::{GliznetConfig, LabelAttention};
use crate::model::head::{Readout, SimilarityHead};
use crate::model::params::Params;
use crate::model::{ParamGrads, Quantization};
use crate::rng::Rng;
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{IndexOp, Tensor};

pub struct GliZNet {
    encoder: BertEncoder,
    head: SimilarityHead,
    readout: Readout,
    shared_label_positions: bool,
    label_attention: LabelAttention,
}

/// A training-mode forward pass: the logits, and what its backward pass needs besides
/// candle's graph.
pub struct TrainStep {
    /// [batch, max_labels], as [`GliZNet::infer`]'s.
    pub logits: Tensor,
    block_grads: ParamGrads,
}

impl TrainStep {
    /// The gradients of `loss` (computed from `self.logits`) with respect to every parameter.
    pub fn backward(self, loss: &Tensor) -> Result<GradStore> {
        let mut grads = loss.backward()?;
        self.block_grads.merge_into(&mut grads)?;
        Ok(grads)
    }
}

impl GliZNet {
    pub fn load(params: &Params, bert: &BertConfig, config: &GliznetConfig) -> Result<Self> {
        Ok(Self {
            encoder: BertEncoder::load(params, bert)?,
            head: SimilarityHead::load(params, &config.head_shape(bert.hidden_size))?,
            readout: config.readout,
            shared_label_positions: config.shared_label_positions,
            label_attention: config.label_attention,
        })
    }

    /// Int8 or bf16 encoder weights for faster CPU inference (`--quantize`, `--bf16`); the
    /// head stays f32.
    pub fn quantize(&mut self, to: Quantization) -> Result<()> {
        self.encoder.quantize(to)
    }

    pub fn encoder(&self) -> &BertEncoder {
        &self.encoder
    }

    /// One logit per (sequence, label slot): [batch, max_labels]. Padded slots hold garbage
    /// and must be masked with `batch.label_mask`. Inference: no dropout, no gradients kept.
    pub fn infer(&self, batch: &Batch) -> Result<Tensor> {
        self.score(&self.head_states(batch)?, batch.max_labels)
    }

    /// The vectors the head compares, in inference mode: [batch, 1 + max_labels, hidden], each
    /// sequence's text vector, then one per label slot.
    pub fn head_states(&self, batch: &Batch) -> Result<Tensor> {
        let attention_mask = batch.attention_mask_for(self.label_attention)?;
        match self.readout {
            // The encoder's last layer computes only the rows the head reads: each sequence's
            // `[CLS]` and label positions.
            Readout::FirstToken => self.encoder.forward_rows(
                &batch.input_ids,
                &attention_mask,
                self.positions(batch),
                &batch.head_rows,
                1 + batch.max_labels,
            ),
            Readout::Mean => {
                let hidden = self.encoder.forward(
                    &batch.input_ids,
                    &attention_mask,
                    self.positions(batch),
                )?;
                self.read_out(batch, &hidden)
            }
        }
    }

    /// Whether a label's vector depends on nothing but the label (`independent` attention), so
    /// that it can be computed once and compared with any text's.
    pub fn labels_are_independent(&self) -> bool {
        self.label_attention == LabelAttention::Independent
    }

    /// The logits of one text vector [hidden] against label vectors [labels, hidden]: what
    /// [`GliZNet::infer`] gives when the vectors come from [`GliZNet::head_states`].
    pub fn score_vectors(&self, text: &Tensor, labels: &Tensor) -> Result<Vec<f32>> {
        let states = Tensor::cat(&[text.unsqueeze(0)?, labels.clone()], 0)?.unsqueeze(0)?;
        Ok(self
            .score(&states, labels.dim(0)?)?
            .squeeze(0)?
            .to_vec1::<f32>()?)
    }

    /// [`GliZNet::infer`] in training mode, with dropout from `rng`. Its gradients come from
    /// [`TrainStep::backward`], which also collects those the encoder's training kernels keep
    /// apart from candle's graph.
    pub fn forward_train(&self, batch: &Batch, rng: &mut Rng) -> Result<TrainStep> {
        let block_grads = ParamGrads::default();
        let hidden = self.encoder.forward_train(
            &batch.input_ids,
            &batch.attention_mask_for(self.label_attention)?,
            self.positions(batch),
            rng,
            &block_grads,
        )?;
        let logits = self.score(&self.read_out(batch, &hidden)?, batch.max_labels)?;
        Ok(TrainStep {
            logits,
            block_grads,
        })
    }

    /// The head's input from every hidden state [batch, seq, hidden]: [batch, 1 + labels,
    /// hidden], the text's vector then each label's.
    fn read_out(&self, batch: &Batch, hidden: &Tensor) -> Result<Tensor> {
        Ok(match self.readout {
            Readout::FirstToken => {
                let (b, s, d) = hidden.dims3()?;
                hidden
                    .reshape((b * s, d))?
                    .index_select(&batch.head_rows, 0)?
                    .reshape((b, 1 + batch.max_labels, d))?
            }
            Readout::Mean => batch.pool_weights(hidden.device())?.matmul(hidden)?,
        })
    }

    /// The position ids the encoder reads: labels numbered from 1 under `Separate` attention
    /// and from 0 under `Independent`,
    /// the batch's shared label positions, or the plain numbering (`None`).
    fn positions<'a>(&self, batch: &'a Batch) -> Option<&'a Tensor> {
        match (self.label_attention, self.shared_label_positions) {
            (LabelAttention::Separate, _) => Some(&batch.separate_label_positions),
            (LabelAttention::Independent, _) => Some(&batch.independent_label_positions),
            (_, true) => Some(&batch.shared_label_positions),
            (_, false) => None,
        }
    }

    /// The head's logits for `head_states` [batch, 1 + labels, hidden]: `[CLS]`, then labels.
    fn score(&self, head_states: &Tensor, labels: usize) -> Result<Tensor> {
        // Contiguous: candle's CUDA matmul takes no row stride other than the row length.
        let text = head_states.i((.., 0))?.contiguous()?;
        let label_states = head_states.narrow(1, 1, labels)?.contiguous()?;
        self.head.forward(&text, &label_states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bert::ModelType;
    use crate::model::head::{self, Similarity};
    use crate::testing::{random_encoder_weights, tiny_encoder_config, tiny_tokenizer_for};
    use crate::tokenizer::{LabelTokenizer, SequenceEncoding};
    use candle_core::{Device, Var};

    /// Every encoder family: the checks below hold for each.
    const MODEL_TYPES: [ModelType; 2] = [ModelType::Bert, ModelType::Mpnet];

    fn tiny_encoder(model_type: ModelType) -> BertConfig {
        serde_json::from_value(tiny_encoder_config(model_type)).unwrap()
    }

    fn tiny_tokenizer(bert: &BertConfig, config: &GliznetConfig) -> LabelTokenizer {
        let special = bert.model_type.special_tokens();
        LabelTokenizer::new(
            tiny_tokenizer_for(bert.model_type),
            config.limits(),
            special,
        )
        .unwrap()
    }

    /// Inference with the encoder computing every row of every layer.
    fn infer_all_rows(model: &GliZNet, batch: &Batch) -> Tensor {
        let hidden = model
            .encoder
            .forward(
                &batch.input_ids,
                &batch.attention_mask_for(model.label_attention).unwrap(),
                model.positions(batch),
            )
            .unwrap();
        let head_states = model.read_out(batch, &hidden).unwrap();
        model.score(&head_states, batch.max_labels).unwrap()
    }

    fn tiny_model(
        model_type: ModelType,
        similarity: Similarity,
        readout: Readout,
    ) -> (GliZNet, LabelTokenizer) {
        tiny_model_with_dropout(model_type, similarity, readout, 0.1)
    }

    fn tiny_model_with_dropout(
        model_type: ModelType,
        similarity: Similarity,
        readout: Readout,
        dropout: f32,
    ) -> (GliZNet, LabelTokenizer) {
        let device = Device::Cpu;
        let mut bert = tiny_encoder(model_type);
        bert.hidden_dropout_prob = dropout;
        bert.attention_probs_dropout_prob = dropout;
        let config = GliznetConfig {
            similarity,
            readout,
            projection_dim: Some(8),
            max_length: 64,
            ..GliznetConfig::untrained_for(&bert)
        };
        let mut tensors = random_encoder_weights(&bert, 5, &device).unwrap();
        tensors
            .extend(head::init_params(&config.head_shape(bert.hidden_size), 6, &device).unwrap());
        let params = Params::new(tensors, "test");
        let model = GliZNet::load(&params, &bert, &config).unwrap();
        let tokenizer = tiny_tokenizer(&bert, &config);
        (model, tokenizer)
    }

    /// Inference computes only the `[CLS]` and label rows in the last layer; the logits must
    /// be those of the pass over every row, for sequences of different lengths and label
    /// counts (padding in both), in f32 and int8, for BERT and MPNet (whose attention bias
    /// has a row per head and query).
    #[test]
    fn inference_on_the_head_rows_equals_the_full_pass() {
        for model_type in MODEL_TYPES {
            for attention in [
                LabelAttention::Full,
                LabelAttention::Isolated,
                LabelAttention::Separate,
                LabelAttention::Independent,
            ] {
                head_rows_equal_the_full_pass(model_type, attention);
            }
        }
    }

    fn head_rows_equal_the_full_pass(model_type: ModelType, attention: LabelAttention) {
        let (mut model, tokenizer) = tiny_model(model_type, Similarity::Dot, Readout::FirstToken);
        model.label_attention = attention;
        let labels: Vec<String> = ["cat", "dog house", "news", "bank", "the mat"]
            .map(String::from)
            .to_vec();
        let a = tokenizer.encode("the cat sat on the mat", &labels).unwrap();
        let b = tokenizer.encode("bank", &labels[..2]).unwrap();
        let c = tokenizer.encode("news of the dog", &labels[2..]).unwrap();
        let seqs: Vec<&SequenceEncoding> = vec![&a.chunks[0], &b.chunks[0], &c.chunks[0]];
        let batch = Batch::collate(&seqs, tokenizer.pad_id(), &Device::Cpu).unwrap();
        for precision in ["f32", "int8"] {
            let all: Vec<Vec<f32>> = infer_all_rows(&model, &batch).to_vec2().unwrap();
            let pruned: Vec<Vec<f32>> = model.infer(&batch).unwrap().to_vec2().unwrap();
            let mask: Vec<Vec<f32>> = batch.label_mask.to_vec2().unwrap();
            for ((all, pruned), mask) in all.iter().zip(&pruned).zip(&mask) {
                for ((x, y), m) in all.iter().zip(pruned).zip(mask) {
                    if *m > 0.0 {
                        assert!(
                            (x - y).abs() < 1e-5,
                            "{model_type:?} {attention:?} {precision}: {all:?} vs {pruned:?}"
                        );
                    }
                }
            }
            model.quantize(Quantization::Int8).unwrap();
        }
    }

    /// With shared label positions a label's score does not depend on the order of the labels
    /// (both readouts, inference and the training-mode pass, ragged batch); with the plain
    /// numbering it does, which is what makes the check meaningful. For BERT and MPNet (whose
    /// relative position bias follows the shared positions).
    #[test]
    fn shared_label_positions_make_scores_independent_of_label_order() {
        for model_type in MODEL_TYPES {
            shared_label_positions_for(model_type);
        }
    }

    fn shared_label_positions_for(model_type: ModelType) {
        let labels: Vec<String> = ["cat", "dog house", "news", "the mat bank"]
            .map(String::from)
            .to_vec();
        let order = [2usize, 0, 3, 1];
        let permuted: Vec<String> = order.iter().map(|&i| labels[i].clone()).collect();
        for (readout, shared) in [
            (Readout::FirstToken, true),
            (Readout::Mean, true),
            (Readout::Mean, false),
        ] {
            let (mut model, tokenizer) = tiny_model(model_type, Similarity::Cosine, readout);
            model.shared_label_positions = shared;
            let a = tokenizer.encode("the cat sat on the mat", &labels).unwrap();
            let b = tokenizer
                .encode("the cat sat on the mat", &permuted)
                .unwrap();
            let c = tokenizer.encode("bank", &labels[..1]).unwrap();
            let seqs: Vec<&SequenceEncoding> = vec![&a.chunks[0], &b.chunks[0], &c.chunks[0]];
            let batch = Batch::collate(&seqs, tokenizer.pad_id(), &Device::Cpu).unwrap();
            for all_rows in [false, true] {
                let logits: Vec<Vec<f32>> = if all_rows {
                    infer_all_rows(&model, &batch)
                } else {
                    model.infer(&batch).unwrap()
                }
                .to_vec2()
                .unwrap();
                let worst = order
                    .iter()
                    .enumerate()
                    .map(|(slot, &i)| (logits[0][i] - logits[1][slot]).abs())
                    .fold(0f32, f32::max);
                if shared {
                    assert!(worst < 1e-4, "{model_type:?} {readout:?}: {logits:?}");
                } else {
                    assert!(
                        worst > 1e-3,
                        "{model_type:?} {readout:?}: order had no effect: {logits:?}"
                    );
                }
            }
        }
    }

    /// Under `isolated` and `separate` attention a label's score does not depend on the other
    /// labels of its sequence, in inference and in the training-mode pass, and the text's
    /// states are those of the text alone; under `full` attention both do (which makes the
    /// check meaningful).
    #[test]
    fn isolated_labels_score_as_if_alone() {
        for model_type in MODEL_TYPES {
            isolated_labels_for(model_type);
        }
    }

    fn isolated_labels_for(model_type: ModelType) {
        let labels: Vec<String> = ["cat", "dog house", "news", "the mat bank"]
            .map(String::from)
            .to_vec();
        let text = "the cat sat on the mat";
        for attention in [
            LabelAttention::Full,
            LabelAttention::Isolated,
            LabelAttention::Separate,
            LabelAttention::Independent,
        ] {
            for readout in [Readout::Mean, Readout::FirstToken] {
                let (mut model, tokenizer) =
                    tiny_model_with_dropout(model_type, Similarity::Cosine, readout, 0.0);
                model.label_attention = attention;
                model.shared_label_positions = true;
                let together = tokenizer.encode(text, &labels).unwrap();
                let alone: Vec<_> = labels
                    .iter()
                    .map(|l| tokenizer.encode(text, std::slice::from_ref(l)).unwrap())
                    .collect();
                let mut seqs: Vec<&SequenceEncoding> = vec![&together.chunks[0]];
                seqs.extend(alone.iter().map(|e| &e.chunks[0]));
                let batch = Batch::collate(&seqs, tokenizer.pad_id(), &Device::Cpu).unwrap();
                let mut rng = Rng::new(1);
                // Dropout 0: the training-mode pass (its kernels) computes inference's values.
                let trained = model.forward_train(&batch, &mut rng).unwrap().logits;
                for logits in [model.infer(&batch).unwrap(), trained] {
                    let logits: Vec<Vec<f32>> = logits.to_vec2().unwrap();
                    let worst = (0..labels.len())
                        .map(|i| (logits[0][i] - logits[1 + i][0]).abs())
                        .fold(0f32, f32::max);
                    if attention == LabelAttention::Full {
                        assert!(
                            worst > 1e-3,
                            "{model_type:?} {readout:?}: no effect: {logits:?}"
                        );
                    } else {
                        assert!(
                            worst < 1e-5,
                            "{model_type:?} {attention:?} {readout:?}: {logits:?}"
                        );
                    }
                }
                // The text's states against the text encoded alone, `[CLS] text [SEP]`.
                let bare = tokenizer.encode_single(text).unwrap().input_ids;
                let text_end = together.chunks[0].label_positions[0];
                assert_eq!(bare, together.chunks[0].input_ids[..text_end]);
                let batch =
                    Batch::collate(&[&together.chunks[0]], tokenizer.pad_id(), &Device::Cpu)
                        .unwrap();
                let mask = batch.attention_mask_for(attention).unwrap();
                let hidden = model
                    .encoder
                    .forward(&batch.input_ids, &mask, None)
                    .unwrap();
                let with_labels: Vec<Vec<f32>> = hidden
                    .get(0)
                    .unwrap()
                    .narrow(0, 0, text_end)
                    .unwrap()
                    .to_vec2()
                    .unwrap();
                let ids = Tensor::new(bare.as_slice(), &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                let ones =
                    Tensor::ones((1, text_end), candle_core::DType::F32, &Device::Cpu).unwrap();
                let bare: Vec<Vec<f32>> = model
                    .encoder
                    .forward(&ids, &ones, None)
                    .unwrap()
                    .get(0)
                    .unwrap()
                    .to_vec2()
                    .unwrap();
                let worst = with_labels
                    .iter()
                    .flatten()
                    .zip(bare.iter().flatten())
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                if attention == LabelAttention::Full {
                    assert!(
                        worst > 1e-3,
                        "{readout:?}: labels had no effect on the text"
                    );
                } else {
                    assert!(
                        worst < 1e-5,
                        "{attention:?}: the text saw the labels ({worst})"
                    );
                }
            }
        }
    }

    /// Under `independent` attention a label's states are the same whatever the text; under
    /// `separate` they are not (the label sees the text's `[CLS]`), which makes the check
    /// meaningful.
    #[test]
    fn independent_labels_do_not_see_the_text() {
        for model_type in MODEL_TYPES {
            independent_labels_for(model_type);
        }
    }

    fn independent_labels_for(model_type: ModelType) {
        let labels: Vec<String> = ["dog house", "news"].map(String::from).to_vec();
        for attention in [LabelAttention::Separate, LabelAttention::Independent] {
            let (mut model, tokenizer) =
                tiny_model_with_dropout(model_type, Similarity::Cosine, Readout::Mean, 0.0);
            model.label_attention = attention;
            let a = tokenizer.encode("the cat sat on the mat", &labels).unwrap();
            let b = tokenizer.encode("bank rates", &labels).unwrap();
            let seqs = [&a.chunks[0], &b.chunks[0]];
            let batch = Batch::collate(&seqs, tokenizer.pad_id(), &Device::Cpu).unwrap();
            let mask = batch.attention_mask_for(attention).unwrap();
            let positions = model.positions(&batch);
            let hidden: Vec<Vec<Vec<f32>>> = model
                .encoder
                .forward(&batch.input_ids, &mask, positions)
                .unwrap()
                .to_vec3()
                .unwrap();
            let mut worst = 0f32;
            for slot in 0..labels.len() {
                let (start_a, start_b) =
                    (seqs[0].label_positions[slot], seqs[1].label_positions[slot]);
                let span = if slot + 1 < labels.len() {
                    seqs[0].label_positions[slot + 1] - start_a
                } else {
                    seqs[0].input_ids.len() - start_a
                };
                for i in 0..span {
                    for (x, y) in hidden[0][start_a + i].iter().zip(&hidden[1][start_b + i]) {
                        worst = worst.max((x - y).abs());
                    }
                }
            }
            if attention == LabelAttention::Independent {
                assert!(
                    worst < 1e-6,
                    "{model_type:?}: the label states moved with the text: {worst}"
                );
            } else {
                assert!(
                    worst > 1e-5,
                    "{model_type:?} {attention:?}: the text had no effect: {worst}"
                );
            }
        }
    }

    /// The mean readout averages `[CLS] text [SEP]` for the text and each label's own tokens
    /// (not its `[SEP]`), whatever the padding: checked against the hidden states by hand.
    #[test]
    fn mean_readout_averages_each_span() {
        for model_type in MODEL_TYPES {
            mean_readout_for(model_type);
        }
    }

    fn mean_readout_for(model_type: ModelType) {
        let (model, tokenizer) = tiny_model(model_type, Similarity::Dot, Readout::Mean);
        let labels: Vec<String> = ["cat", "dog house", "the mat"].map(String::from).to_vec();
        let a = tokenizer.encode("the cat sat on the mat", &labels).unwrap();
        let b = tokenizer.encode("bank", &labels[..1]).unwrap();
        let seqs: Vec<&SequenceEncoding> = vec![&a.chunks[0], &b.chunks[0]];
        let batch = Batch::collate(&seqs, tokenizer.pad_id(), &Device::Cpu).unwrap();
        let hidden = model
            .encoder
            .forward(&batch.input_ids, &batch.attention_mask, None)
            .unwrap();
        let pooled: Vec<Vec<Vec<f32>>> = batch
            .pool_weights(&Device::Cpu)
            .unwrap()
            .matmul(&hidden)
            .unwrap()
            .to_vec3()
            .unwrap();
        let hidden: Vec<Vec<Vec<f32>>> = hidden.to_vec3().unwrap();
        let max_diff = |a: &[f32], b: &[f32]| -> f32 {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        let mean = |rows: &[Vec<f32>]| -> Vec<f32> {
            (0..rows[0].len())
                .map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / rows.len() as f32)
                .collect()
        };
        for (b, seq) in seqs.iter().enumerate() {
            let text_end = seq.text_tokens_kept + 2;
            let mut expected = vec![mean(&hidden[b][..text_end])];
            for (slot, &start) in seq.label_positions.iter().enumerate() {
                let tokens = tokenizer
                    .encode_single(&labels[slot])
                    .unwrap()
                    .input_ids
                    .len()
                    - 2;
                expected.push(mean(&hidden[b][start..start + tokens]));
            }
            for (row, want) in expected.iter().enumerate() {
                let diff = max_diff(&pooled[b][row], want);
                assert!(diff < 1e-5, "sequence {b} row {row}: {diff}");
            }
            // Padded label slots read the [CLS] state, never the padding.
            for slot in &pooled[b][expected.len()..] {
                assert!(max_diff(slot, &hidden[b][0]) < 1e-6);
            }
        }
        // Inference with the mean readout scores as the pass over every row.
        let infer: Vec<Vec<f32>> = model.infer(&batch).unwrap().to_vec2().unwrap();
        let all: Vec<Vec<f32>> = infer_all_rows(&model, &batch).to_vec2().unwrap();
        assert_eq!(infer, all);
    }

    /// Every encoder and head tensor must receive a non-zero gradient in training mode: the
    /// trap this guards against is a fused op without backward that silently stops gradients.
    /// MPNet's relative position bias included, on the training kernels (GELU with erf) and
    /// on candle's ops (another activation), with the plain and the shared label numbering.
    #[test]
    fn every_parameter_receives_a_gradient() {
        for model_type in MODEL_TYPES {
            for (activation, shared_positions) in [("gelu", false), ("gelu", true), ("relu", false)]
            {
                let mut bert = tiny_encoder(model_type);
                bert.hidden_act = activation.into();
                every_parameter_receives_a_gradient_for(&bert, shared_positions);
            }
        }
    }

    fn every_parameter_receives_a_gradient_for(bert: &BertConfig, shared_positions: bool) {
        let device = Device::Cpu;
        let model_type = bert.model_type;
        for (similarity, readout) in [
            (Similarity::Cosine, Readout::Mean),
            (Similarity::Dot, Readout::FirstToken),
            (Similarity::Bilinear, Readout::Mean),
        ] {
            let config = GliznetConfig {
                similarity,
                readout,
                projection_dim: Some(8),
                max_length: 64,
                shared_label_positions: shared_positions,
                ..GliznetConfig::untrained_for(bert)
            };
            let mut tensors = random_encoder_weights(bert, 1, &device).unwrap();
            tensors.extend(
                head::init_params(&config.head_shape(bert.hidden_size), 2, &device).unwrap(),
            );
            let vars: Vec<(String, Var)> = tensors
                .into_iter()
                .map(|(name, t)| (name, Var::from_tensor(&t).unwrap()))
                .collect();
            let params = Params::new(
                vars.iter()
                    .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                    .collect(),
                "test",
            );
            let model = GliZNet::load(&params, bert, &config).unwrap();

            let tokenizer = tiny_tokenizer(bert, &config);
            let labels = [
                "cat".to_string(),
                "dog house".to_string(),
                "news".to_string(),
            ];
            let a = tokenizer.encode("the cat sat on the mat", &labels).unwrap();
            let b = tokenizer.encode("bank", &labels[..2]).unwrap();
            let seqs: Vec<&SequenceEncoding> = vec![&a.chunks[0], &b.chunks[0]];
            let batch = Batch::collate(&seqs, tokenizer.pad_id(), &device).unwrap();
            let mut rng = Rng::new(3);
            let step = model.forward_train(&batch, &mut rng).unwrap();
            let loss = (&step.logits * &batch.label_mask)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = step.backward(&loss).unwrap();
            for (name, var) in &vars {
                let case = format!("{model_type:?} {} {similarity:?}", bert.hidden_act);
                let grad = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
                let norm: f32 = grad.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
                assert!(norm > 0.0, "{case}: zero gradient for {name}");
            }
        }
    }
}
