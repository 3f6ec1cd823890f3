//! The distillation teacher: the frozen backbone as a bi-encoder. For each training sequence it
//! gives a target distribution over the sequence's labels, the softmax of the cosines between
//! the text and each label (worded by a template) at a temperature, so that training keeps the
//! ranking the backbone already knew (topics, above all) while it learns the rest.

use crate::config::TrainConfig;
use crate::embed::Embedder;
use crate::error::input_error;
use crate::model::bert::BertEncoder;
use crate::model::checkpoint::{self, ModelSource};
use crate::tokenizer::LabelTokenizer;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::collections::HashMap;

/// Strings per teacher encoder pass.
const BATCH: usize = 64;

pub struct Teacher {
    encoder: BertEncoder,
    tokenizer: LabelTokenizer,
    template: String,
    temperature: f64,
    /// Label embeddings by label (labels recur across the corpus).
    labels: HashMap<String, Vec<f32>>,
}

/// One training sequence as the teacher sees it.
pub struct Row<'a> {
    pub text: &'a str,
    pub labels: &'a [String],
}

impl Teacher {
    /// The config's backbone as it was before training (also when a run resumes from a
    /// checkpoint), frozen; `None` when distillation is off.
    pub fn load(config: &TrainConfig, device: &Device) -> Result<Option<Self>> {
        if config.distill_weight == 0.0 {
            return Ok(None);
        }
        let source = ModelSource::resolve(config.backbone.as_deref())
            .map_err(|e| input_error(format!("backbone {e}")))?;
        let files = checkpoint::open(&source, device)?;
        let encoder = BertEncoder::load(&files.params, &files.bert)?;
        let tokenizer = LabelTokenizer::new(
            files.tokenizer,
            config.limits(),
            files.bert.model_type.special_tokens(),
        )?;
        Ok(Some(Self {
            encoder,
            tokenizer,
            template: config.distill_label_template.clone(),
            temperature: config.distill_temperature,
            labels: HashMap::new(),
        }))
    }

    /// Target distributions [rows, max_labels]: row r's first `labels.len()` slots hold the
    /// softmax of its cosines over `temperature`, the rest 0.
    pub fn targets(&mut self, rows: &[Row], max_labels: usize, device: &Device) -> Result<Tensor> {
        let embedder = Embedder {
            encoder: &self.encoder,
            tokenizer: &self.tokenizer,
            device,
        };
        let new_labels: Vec<String> = {
            let mut seen = std::collections::HashSet::new();
            rows.iter()
                .flat_map(|r| r.labels.iter())
                .filter(|l| !self.labels.contains_key(*l) && seen.insert(l.as_str()))
                .cloned()
                .collect()
        };
        if !new_labels.is_empty() {
            let worded: Vec<String> = new_labels
                .iter()
                .map(|l| self.template.replace("{label}", l))
                .collect();
            let refs: Vec<&str> = worded.iter().map(String::as_str).collect();
            let vectors: Vec<Vec<f32>> = embedder.embed(&refs, BATCH)?.to_vec2()?;
            self.labels.extend(new_labels.into_iter().zip(vectors));
        }
        let texts: Vec<&str> = rows.iter().map(|r| r.text).collect();
        let text_vectors: Vec<Vec<f32>> = embedder.embed(&texts, BATCH)?.to_vec2()?;
        let mut targets = vec![0f32; rows.len() * max_labels];
        for ((row, text), out) in rows
            .iter()
            .zip(&text_vectors)
            .zip(targets.chunks_mut(max_labels))
        {
            let logits: Vec<f64> = row
                .labels
                .iter()
                .map(|l| {
                    let label = &self.labels[l];
                    let cosine: f32 = text.iter().zip(label).map(|(a, b)| a * b).sum();
                    cosine as f64 / self.temperature
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = logits.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            for (slot, e) in out.iter_mut().zip(&exps) {
                *slot = (e / sum) as f32;
            }
        }
        Ok(Tensor::from_vec(targets, (rows.len(), max_labels), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::head::Similarity;
    use crate::testing::write_tiny_model;

    /// Each row's targets are the softmax over its own labels of the cosines (text against the
    /// templated label) that the bi-encoder gives, divided by the temperature; padded slots 0.
    #[test]
    fn targets_are_the_softmax_of_templated_cosines() {
        let dir = tempfile::TempDir::new().unwrap();
        write_tiny_model(dir.path(), Similarity::Cosine, None, 3).unwrap();
        let config = TrainConfig {
            backbone: Some(dir.path().to_str().unwrap().into()),
            distill_weight: 1.0,
            distill_temperature: 0.1,
            distill_label_template: "about {label}".into(),
            ..TrainConfig::default()
        };
        let device = Device::Cpu;
        let mut teacher = Teacher::load(&config, &device).unwrap().unwrap();
        let labels_a = vec!["cat".to_string(), "bank".to_string(), "news".to_string()];
        let labels_b = vec!["dog house".to_string()];
        let rows = [
            Row {
                text: "the cat sat on the mat",
                labels: &labels_a,
            },
            Row {
                text: "interest rates",
                labels: &labels_b,
            },
        ];
        let targets: Vec<Vec<f32>> = teacher
            .targets(&rows, 4, &device)
            .unwrap()
            .to_vec2()
            .unwrap();

        let loaded = checkpoint::load(&ModelSource::Dir(dir.path().into()), &device).unwrap();
        let embedder = Embedder {
            encoder: loaded.model.encoder(),
            tokenizer: &loaded.tokenizer,
            device: &device,
        };
        let text: Vec<f32> = embedder
            .embed(&["the cat sat on the mat"], 8)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let worded: Vec<String> = labels_a.iter().map(|l| format!("about {l}")).collect();
        let refs: Vec<&str> = worded.iter().map(String::as_str).collect();
        let label_vectors: Vec<Vec<f32>> = embedder.embed(&refs, 8).unwrap().to_vec2().unwrap();
        let scaled: Vec<f64> = label_vectors
            .iter()
            .map(|l| text.iter().zip(l).map(|(a, b)| a * b).sum::<f32>() as f64 / 0.1)
            .collect();
        let total: f64 = scaled.iter().map(|x| x.exp()).sum();
        for (slot, x) in scaled.iter().enumerate() {
            let want = x.exp() / total;
            assert!((targets[0][slot] as f64 - want).abs() < 1e-5, "{targets:?}");
        }
        assert_eq!(targets[0][3], 0.0);
        assert_eq!(targets[1], vec![1.0, 0.0, 0.0, 0.0]);
        assert!(Teacher::load(&TrainConfig::default(), &device)
            .unwrap()
            .is_none());
    }
}
