//! Inference: texts and their labels in, one score per label out, in the caller's order.
//! Two methods: GliZNet's joint encoding (one pass per text and label chunk), and the
//! Sentence-BERT-style bi-encoder baseline (cosine of mean-pooled embeddings).

use crate::batch::{token_batches, Batch};
use crate::data::labels::{label_names, Label};
use crate::embed::Embedder;
use crate::label_cache::{self, LabelCache};
use crate::model::checkpoint::{self, LoadedModel, ModelSource};
use crate::model::gliznet::GliZNet;
use crate::model::{on_kernel_threads, Quantization};
use crate::scoring::{score, score_similarities, LabelScore, ScoreMode};
use crate::tokenizer::{EncodedLabels, LabelTokenizer, SequenceEncoding, TextEncoding};
use anyhow::{ensure, Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Text and labels in one sequence, scored by the GliZNet head
    Gliznet,
    /// Cosine between separately mean-pooled text and label embeddings (baseline)
    BiEncoder,
}

/// A label list as given and as tokenized, shared by every text it applies to.
pub struct LabelSet {
    /// What the scores are reported under.
    pub names: Vec<String>,
    /// What the model reads: each name, with its description where it has one.
    pub readings: Vec<String>,
    pub encoded: EncodedLabels,
}

pub struct Classifier {
    pub loaded: LoadedModel,
    pub device: Device,
    /// Subtract from each GliZNet logit the label's logit with no text (its prior), so that a
    /// label the model favours whatever the text does not win by default.
    pub subtract_label_prior: bool,
    /// The encoder's lower-precision weights, if any (`quantize`).
    pub quantization: Option<Quantization>,
    /// Label vectors kept across calls (models whose labels see only themselves).
    label_cache: Mutex<LabelCache>,
}

/// The weights' precision when none is asked for: bf16 on CPUs with a fast bf16 kernel (AMX),
/// where it scores as f32 does on the dev suite; f32 elsewhere.
pub fn default_precision(device: &Device) -> Option<Quantization> {
    (device.is_cpu() && crate::model::has_fast_bf16_kernel()).then_some(Quantization::Bf16)
}

/// The logits of one text, aligned with its label list, and how the text was packed.
pub struct TextLogits {
    pub logits: Vec<f32>,
    pub encoding: TextEncoding,
}

/// Scores of one text, aligned with its label list. `encoding` is `None` for the bi-encoder.
pub struct TextScores {
    pub scores: Vec<LabelScore>,
    pub encoding: Option<TextEncoding>,
}

impl Classifier {
    pub fn load(source: &ModelSource, device: Device) -> Result<Self> {
        let loaded = checkpoint::load(source, &device)?;
        Ok(Self {
            loaded,
            device,
            subtract_label_prior: false,
            quantization: None,
            label_cache: Mutex::new(LabelCache::new(label_cache::DEFAULT_CAPACITY)),
        })
    }

    /// [`Classifier::load`] with the encoder's weights in `precision`: `None` is f32, or bf16
    /// where [`default_precision`] says it is fast. Int8 and bf16 run on the CPU only.
    pub fn open(
        source: &ModelSource,
        device: Device,
        precision: Option<Option<Quantization>>,
    ) -> Result<Self> {
        let to = match precision {
            Some(asked) => asked,
            None => default_precision(&device),
        };
        if to.is_some() && !device.is_cpu() {
            return Err(crate::error::input_error(
                "int8 and bf16 weights run on the CPU only",
            ));
        }
        let mut classifier = Self::load(source, device)?;
        if let Some(to) = to {
            classifier.quantize(to)?;
        }
        Ok(classifier)
    }

    /// Keeps at most `labels` label vectors across calls (0: none).
    pub fn set_label_cache_capacity(&mut self, labels: usize) {
        self.label_cache = Mutex::new(LabelCache::new(labels));
    }

    /// Int8 or bf16 encoder weights: see BENCHMARKS.md for speed and MODEL.md for the
    /// accuracy change. Without [`crate::model::has_fast_int8_kernel`] (int8) or
    /// [`crate::model::has_fast_bf16_kernel`] (bf16) the kernel is a slower portable one.
    pub fn quantize(&mut self, to: Quantization) -> Result<()> {
        self.loaded.model.quantize(to)?;
        // Vectors from the other weights are stale.
        let capacity = self.label_cache.lock().map_or(0, |c| c.capacity());
        self.set_label_cache_capacity(capacity);
        self.loaded.name.push_str(&format!(" ({})", to.name()));
        self.quantization = Some(to);
        Ok(())
    }

    /// The multi-label threshold when the user gives none: the model's calibrated one for
    /// GliZNet scores, 0.5 for bi-encoder cosines.
    pub fn default_threshold(&self, method: Method) -> f32 {
        match method {
            Method::Gliznet => self.loaded.config.default_threshold(),
            Method::BiEncoder => 0.5,
        }
    }

    /// Checks that a text can be scored (not empty, some tokens after normalisation), so that
    /// the caller can name its place before the text is batched with others.
    pub fn check_text(&self, text: &str) -> Result<()> {
        self.loaded.tokenizer.text_tokens(text).map(|_| ())
    }

    pub fn label_set(&self, names: Vec<String>) -> Result<LabelSet> {
        let encoded = self.loaded.tokenizer.encode_labels(&names)?;
        Ok(LabelSet {
            readings: names.clone(),
            names,
            encoded,
        })
    }

    /// A label set whose labels may carry descriptions: the model reads each description with
    /// its label, and the scores are reported under the names.
    pub fn described_label_set(&self, labels: &[Label]) -> Result<LabelSet> {
        let encoded = self.loaded.tokenizer.encode_described_labels(labels)?;
        Ok(LabelSet {
            names: label_names(labels),
            readings: labels.iter().map(Label::reading).collect(),
            encoded,
        })
    }

    pub fn logits(
        &self,
        items: &[(&str, &EncodedLabels)],
        batch_size: usize,
    ) -> Result<Vec<TextLogits>> {
        let tokens = text_tokens(&self.loaded.tokenizer, items)?;
        self.logits_of_tokens(&with_tokens(&tokens, items), batch_size)
    }

    /// [`Classifier::logits`] for texts already tokenized ([`LabelTokenizer::text_tokens`]).
    pub fn logits_of_tokens(
        &self,
        items: &[(&[u32], &EncodedLabels)],
        batch_size: usize,
    ) -> Result<Vec<TextLogits>> {
        on_kernel_threads(&self.device, || {
            self.logits_on_this_thread(items, batch_size)
        })
    }

    fn logits_on_this_thread(
        &self,
        items: &[(&[u32], &EncodedLabels)],
        batch_size: usize,
    ) -> Result<Vec<TextLogits>> {
        let mut results = logits_of_tokens(
            &self.loaded.model,
            &self.loaded.tokenizer,
            &self.device,
            items,
            batch_size,
            Some(&self.label_cache),
        )?;
        if self.subtract_label_prior {
            // Texts that share one label list (predict's --labels) share its prior.
            let mut priors: HashMap<*const EncodedLabels, Vec<f32>> = HashMap::new();
            for (result, (_, labels)) in results.iter_mut().zip(items) {
                let prior = match priors.entry(*labels as *const EncodedLabels) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(label_priors(
                        &self.loaded.model,
                        &self.loaded.tokenizer,
                        &self.device,
                        labels,
                    )?),
                };
                for (logit, p) in result.logits.iter_mut().zip(prior.iter()) {
                    *logit -= p;
                }
            }
        }
        Ok(results)
    }

    pub fn scores(
        &self,
        items: &[(&str, &LabelSet)],
        mode: ScoreMode,
        method: Method,
        batch_size: usize,
    ) -> Result<Vec<TextScores>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        match method {
            Method::Gliznet => {
                let joint: Vec<(&str, &EncodedLabels)> =
                    items.iter().map(|(t, l)| (*t, &l.encoded)).collect();
                Ok(self
                    .logits(&joint, batch_size)?
                    .into_iter()
                    .map(|r| TextScores {
                        scores: score(&r.logits, mode),
                        encoding: Some(r.encoding),
                    })
                    .collect())
            }
            Method::BiEncoder => {
                let embedder = Embedder {
                    encoder: self.loaded.model.encoder(),
                    tokenizer: &self.loaded.tokenizer,
                    device: &self.device,
                };
                let pairs: Vec<(&str, &[String])> = items
                    .iter()
                    .map(|(t, l)| (*t, l.readings.as_slice()))
                    .collect();
                Ok(cosine_similarities(&embedder, &pairs, batch_size)?
                    .into_iter()
                    .map(|cos| TextScores {
                        scores: score_similarities(&cos, mode),
                        encoding: None,
                    })
                    .collect())
            }
        }
    }
}

/// Bi-encoder scores: cosine between each text's embedding and each of its labels'. Every
/// distinct label is embedded once.
pub fn cosine_similarities(
    embedder: &Embedder,
    items: &[(&str, &[String])],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut distinct: Vec<&str> = items
        .iter()
        .flat_map(|(_, labels)| labels.iter().map(String::as_str))
        .collect();
    distinct.sort();
    distinct.dedup();
    let column: HashMap<&str, usize> = distinct.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let label_vectors = embedder.embed(&distinct, batch_size)?;
    let texts: Vec<&str> = items.iter().map(|(t, _)| *t).collect();
    let text_vectors = embedder.embed(&texts, batch_size)?;
    let similarities: Vec<Vec<f32>> = text_vectors.matmul(&label_vectors.t()?)?.to_vec2()?;
    Ok(items
        .iter()
        .zip(similarities)
        .map(|((_, labels), row)| labels.iter().map(|l| row[column[l.as_str()]]).collect())
        .collect())
}

/// [`logits`] for a model whose label vectors do not depend on the text: every distinct
/// label of the call is encoded once (packed with no text), every text once on its own (up to
/// `max_length`, never shortened to make room for labels), and each text's vector compared
/// with its labels'. The same logits as the packed pass for texts it does not truncate.
fn independent_logits(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    items: &[(&[u32], &EncodedLabels)],
    batch_size: usize,
    cache: Option<&Mutex<LabelCache>>,
) -> Result<Vec<TextLogits>> {
    let lists: Vec<&EncodedLabels> = items.iter().map(|(_, labels)| *labels).collect();
    let (distinct, rows_of_item) = EncodedLabels::distinct(&lists);
    let label_vectors = match cache {
        Some(cache) => {
            cached_label_vectors(model, tokenizer, device, &distinct, batch_size, cache)?
        }
        None => encoded_label_vectors(model, tokenizer, device, &distinct, batch_size)?,
    };
    let mut texts = items
        .iter()
        .enumerate()
        .map(|(item, (text, labels))| (item, tokenizer.pack_text(text, labels)))
        .collect::<Vec<(usize, TextEncoding)>>();
    texts.sort_by_key(|(_, encoding)| encoding.chunks[0].input_ids.len());
    let mut results: Vec<Option<TextLogits>> = items.iter().map(|_| None).collect();
    for group in token_batches(&texts, |(_, e)| e.chunks[0].input_ids.len(), batch_size) {
        let seqs: Vec<&SequenceEncoding> = group.iter().map(|(_, e)| &e.chunks[0]).collect();
        let batch = Batch::collate(&seqs, tokenizer.pad_id(), device)?;
        let text_vectors = model.head_states(&batch)?.narrow(1, 0, 1)?.squeeze(1)?;
        for (row, (item, encoding)) in group.iter().enumerate() {
            let rows = Tensor::new(rows_of_item[*item].as_slice(), device)?;
            let labels = label_vectors.index_select(&rows, 0)?;
            let logits = model.score_vectors(&text_vectors.get(row)?, &labels)?;
            results[*item] = Some(TextLogits {
                logits,
                encoding: encoding.clone(),
            });
        }
    }
    results
        .into_iter()
        .map(|r| r.context("internal error: a text was left unscored"))
        .collect()
}

/// [`encoded_label_vectors`], encoding only the labels `cache` does not hold, and keeping them.
fn cached_label_vectors(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    labels: &EncodedLabels,
    batch_size: usize,
    cache: &Mutex<LabelCache>,
) -> Result<Tensor> {
    let lock = || {
        cache
            .lock()
            .map_err(|_| anyhow::anyhow!("internal error: the label cache was poisoned"))
    };
    let mut rows: Vec<Option<Tensor>> = {
        let mut cache = lock()?;
        (0..labels.len())
            .map(|i| cache.get(labels.tokens(i)))
            .collect()
    };
    let missing: Vec<usize> = (0..labels.len()).filter(|&i| rows[i].is_none()).collect();
    if !missing.is_empty() {
        let encoded = encoded_label_vectors(
            model,
            tokenizer,
            device,
            &labels.select(&missing),
            batch_size,
        )?;
        let mut cache = lock()?;
        for (row, &i) in missing.iter().enumerate() {
            let vector = encoded.get(row)?;
            cache.insert(labels.tokens(i).to_vec(), vector.clone());
            rows[i] = Some(vector);
        }
    }
    let rows: Vec<Tensor> = rows.into_iter().flatten().collect();
    Ok(Tensor::stack(&rows, 0)?)
}

/// [labels, hidden]: the head vectors of `labels`, in order, from their packing with no text.
fn encoded_label_vectors(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    labels: &EncodedLabels,
    batch_size: usize,
) -> Result<Tensor> {
    let mut chunks = tokenizer.encode_without_text(labels);
    chunks.sort_by_key(|seq| seq.input_ids.len());
    let mut rows: Vec<Option<Tensor>> = vec![None; labels.len()];
    for group in token_batches(&chunks, |seq| seq.input_ids.len(), batch_size) {
        let seqs: Vec<&SequenceEncoding> = group.iter().collect();
        let batch = Batch::collate(&seqs, tokenizer.pad_id(), device)?;
        let states = model.head_states(&batch)?;
        for (b, seq) in group.iter().enumerate() {
            for (slot, &label) in seq.label_indices.iter().enumerate() {
                rows[label] = Some(states.get(b)?.get(1 + slot)?);
            }
        }
    }
    let rows = rows
        .into_iter()
        .collect::<Option<Vec<Tensor>>>()
        .context("internal error: a label was left unencoded")?;
    Ok(Tensor::stack(&rows, 0)?)
}

/// Each label's logit with no text, in the order of `labels`.
pub fn label_priors(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    labels: &EncodedLabels,
) -> Result<Vec<f32>> {
    let chunks = tokenizer.encode_without_text(labels);
    let seqs: Vec<&SequenceEncoding> = chunks.iter().collect();
    let batch = Batch::collate(&seqs, tokenizer.pad_id(), device)?;
    let rows = model.infer(&batch)?.to_vec2::<f32>()?;
    let mut prior = vec![0f32; labels.len()];
    for (seq, row) in chunks.iter().zip(rows) {
        for (slot, &label) in seq.label_indices.iter().enumerate() {
            prior[label] = row[slot];
        }
    }
    Ok(prior)
}

/// Scores many texts in inference mode. Sequences (one per label chunk) are sorted by length
/// and run in batches of `batch_size`, so padding stays small; results come back in input order.
pub fn logits(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    items: &[(&str, &EncodedLabels)],
    batch_size: usize,
    cache: Option<&Mutex<LabelCache>>,
) -> Result<Vec<TextLogits>> {
    let tokens = text_tokens(tokenizer, items)?;
    let items = with_tokens(&tokens, items);
    logits_of_tokens(model, tokenizer, device, &items, batch_size, cache)
}

/// Each text's tokens ([`LabelTokenizer::text_tokens`]), in order.
fn text_tokens(
    tokenizer: &LabelTokenizer,
    items: &[(&str, &EncodedLabels)],
) -> Result<Vec<Vec<u32>>> {
    items
        .iter()
        .map(|(text, _)| tokenizer.text_tokens(text))
        .collect()
}

/// `items` with each text replaced by its `tokens`.
fn with_tokens<'a>(
    tokens: &'a [Vec<u32>],
    items: &[(&str, &'a EncodedLabels)],
) -> Vec<(&'a [u32], &'a EncodedLabels)> {
    tokens
        .iter()
        .map(Vec::as_slice)
        .zip(items.iter().map(|(_, labels)| *labels))
        .collect()
}

/// [`logits`] for texts already tokenized ([`LabelTokenizer::text_tokens`]).
pub fn logits_of_tokens(
    model: &GliZNet,
    tokenizer: &LabelTokenizer,
    device: &Device,
    items: &[(&[u32], &EncodedLabels)],
    batch_size: usize,
    cache: Option<&Mutex<LabelCache>>,
) -> Result<Vec<TextLogits>> {
    ensure!(batch_size > 0, "batch size must be positive");
    if model.labels_are_independent() {
        return independent_logits(model, tokenizer, device, items, batch_size, cache);
    }
    let encodings: Vec<TextEncoding> = items
        .iter()
        .map(|(text, labels)| tokenizer.pack_with_labels(text, labels))
        .collect();
    let mut sequences: Vec<(usize, &SequenceEncoding)> = encodings
        .iter()
        .enumerate()
        .flat_map(|(item, enc)| enc.chunks.iter().map(move |c| (item, c)))
        .collect();
    sequences.sort_by_key(|(_, seq)| seq.input_ids.len());

    let mut logits: Vec<Vec<Option<f32>>> =
        items.iter().map(|(_, l)| vec![None; l.len()]).collect();
    for group in token_batches(&sequences, |(_, s)| s.input_ids.len(), batch_size) {
        let seqs: Vec<&SequenceEncoding> = group.iter().map(|(_, s)| *s).collect();
        let batch = Batch::collate(&seqs, tokenizer.pad_id(), device)?;
        let rows = model.infer(&batch)?.to_vec2::<f32>()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::head::Similarity;
    use crate::testing::write_tiny_model;

    /// With `subtract_label_prior` every logit moves by the label's logit in the sequence of
    /// the same labels with no text, `[CLS] [SEP] label [SEP] …` built here by hand, whatever
    /// the text.
    #[test]
    fn the_label_prior_is_the_logit_with_no_text() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_model(dir.path(), Similarity::Cosine, Some(8), 3).unwrap();
        let mut classifier =
            Classifier::load(&ModelSource::Dir(dir.path().to_path_buf()), Device::Cpu).unwrap();
        let labels = classifier
            .label_set(vec!["cat".into(), "news".into()])
            .unwrap();
        let texts = ["the cat sat on the mat", "bank news"];
        let items: Vec<(&str, &EncodedLabels)> =
            texts.iter().map(|t| (*t, &labels.encoded)).collect();
        let raw = classifier.logits(&items, 4).unwrap();
        classifier.subtract_label_prior = true;
        let corrected = classifier.logits(&items, 4).unwrap();

        let tokenizer = &classifier.loaded.tokenizer;
        let (cls, sep) = {
            let ids = tokenizer.encode_single("cat").unwrap().input_ids;
            (ids[0], *ids.last().unwrap())
        };
        let mut input_ids = vec![cls, sep];
        let mut label_positions = Vec::new();
        for name in &labels.names {
            let ids = tokenizer.encode_single(name).unwrap().input_ids;
            label_positions.push(input_ids.len());
            input_ids.extend_from_slice(&ids[1..ids.len() - 1]);
            input_ids.push(sep);
        }
        let seq = SequenceEncoding {
            input_ids,
            label_positions,
            label_indices: vec![0, 1],
            text_tokens_kept: 0,
        };
        let batch = Batch::collate(&[&seq], tokenizer.pad_id(), &Device::Cpu).unwrap();
        let by_hand = classifier.loaded.model.infer(&batch).unwrap();
        let priors = by_hand.to_vec2::<f32>().unwrap().remove(0);
        for (slot, prior) in priors.iter().enumerate() {
            for (r, c) in raw.iter().zip(&corrected) {
                let shift = r.logits[slot] - c.logits[slot];
                assert!(
                    (shift - prior).abs() < 1e-5,
                    "label {slot}: {shift} vs {prior}"
                );
            }
        }
    }

    /// A model whose config carries a label template scores a label as the same weights
    /// without one score the templated phrase.
    #[test]
    fn a_saved_label_template_is_applied_to_every_label() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_model(dir.path(), Similarity::Cosine, Some(8), 3).unwrap();
        let load = || Classifier::load(&ModelSource::Dir(dir.path().to_path_buf()), Device::Cpu);
        let texts = ["the cat sat on the mat", "bank news"];
        let logits = |classifier: &mut Classifier, names: Vec<String>| {
            let labels = classifier.label_set(names).unwrap();
            let items: Vec<(&str, &EncodedLabels)> =
                texts.iter().map(|t| (*t, &labels.encoded)).collect();
            let scored = classifier.logits(&items, 4).unwrap();
            scored.into_iter().map(|s| s.logits).collect::<Vec<_>>()
        };
        let names = vec!["cat".to_string(), "news".to_string()];
        let phrases: Vec<String> = names.iter().map(|n| format!("text about {n}.")).collect();
        let plain = logits(&mut load().unwrap(), phrases);
        let untemplated = logits(&mut load().unwrap(), names.clone());

        let config_path = dir.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        config["gliznet"]["label_template"] = "text about {label}.".into();
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut templated = load().unwrap();
        assert_eq!(
            templated.loaded.config.label_template.as_deref(),
            Some("text about {label}.")
        );
        assert_eq!(logits(&mut templated, names), plain);
        assert_ne!(plain, untemplated);

        config["gliznet"]["label_template"] = "text about the label".into();
        std::fs::write(&config_path, config.to_string()).unwrap();
        let err = load().err().unwrap();
        assert!(format!("{err:#}").contains("label_template"), "{err:#}");
    }

    /// A model with `independent` label attention scores each text on its own against label
    /// vectors computed once per label list; its logits must be those of the packed pass
    /// (text and labels in one sequence, many labels chunked), for texts it does not truncate.
    #[test]
    fn independent_labels_are_scored_once_per_call_as_in_the_packed_pass() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_model(dir.path(), Similarity::Cosine, Some(8), 3).unwrap();
        let config_path = dir.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        config["gliznet"]["label_attention"] = "independent".into();
        config["gliznet"]["readout"] = "mean".into();
        config["gliznet"]["label_template"] = "about {label}.".into();
        std::fs::write(&config_path, config.to_string()).unwrap();
        let classifier =
            Classifier::load(&ModelSource::Dir(dir.path().to_path_buf()), Device::Cpu).unwrap();
        let few = classifier
            .label_set(vec!["cat".into(), "news".into(), "good dog".into()])
            .unwrap();
        let many = classifier
            .label_set((0..40).map(|i| format!("label {i}")).collect())
            .unwrap();
        // Shares labels with both lists above, in another order.
        let mixed = classifier
            .label_set(vec!["label 3".into(), "cat".into(), "news".into()])
            .unwrap();
        let items: Vec<(&str, &EncodedLabels)> = vec![
            ("the cat sat on the mat", &few.encoded),
            ("bank rates", &many.encoded),
            ("good dog", &few.encoded),
            ("the very long and winding road home", &many.encoded),
            ("news of the cat", &mixed.encoded),
        ];
        let cached = classifier.logits(&items, 2).unwrap();

        let (model, tokenizer) = (&classifier.loaded.model, &classifier.loaded.tokenizer);
        let mut chunked = 0;
        for ((text, labels), result) in items.iter().zip(&cached) {
            let packed = tokenizer.encode_with_labels(text, labels).unwrap();
            assert!(!packed.text_truncated());
            chunked += usize::from(packed.chunks.len() > 1);
            assert_eq!(result.encoding.chunks.len(), 1);
            let seqs: Vec<&SequenceEncoding> = packed.chunks.iter().collect();
            let batch = Batch::collate(&seqs, tokenizer.pad_id(), &Device::Cpu).unwrap();
            let rows = model.infer(&batch).unwrap().to_vec2::<f32>().unwrap();
            for (seq, row) in packed.chunks.iter().zip(rows) {
                for (slot, &label) in seq.label_indices.iter().enumerate() {
                    let (a, b) = (result.logits[label], row[slot]);
                    assert!((a - b).abs() < 1e-4, "{text:?} label {label}: {a} vs {b}");
                }
            }
        }
        assert!(chunked > 0, "no label list was chunked in the packed pass");

        // Across calls, labels come from the cache: the same logits, each label kept once,
        // and a capacity below the call's labels still scores every label.
        let distinct = 3 + 40;
        assert_eq!(classifier.label_cache.lock().unwrap().len(), distinct);
        let again = classifier.logits(&items, 3).unwrap();
        for (a, b) in cached.iter().zip(&again) {
            for (x, y) in a.logits.iter().zip(&b.logits) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
        assert_eq!(classifier.label_cache.lock().unwrap().len(), distinct);
        let mut small = classifier;
        small.set_label_cache_capacity(5);
        for _ in 0..2 {
            let bounded = small.logits(&items, 2).unwrap();
            assert!(small.label_cache.lock().unwrap().len() <= 5);
            for (a, b) in cached.iter().zip(&bounded) {
                for (x, y) in a.logits.iter().zip(&b.logits) {
                    assert!((x - y).abs() < 1e-5, "{x} vs {y}");
                }
            }
        }
    }
}
