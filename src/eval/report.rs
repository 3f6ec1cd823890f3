//! Evaluation reports: metrics assembled from scored examples, a table for people and JSON for
//! scripts.

use crate::classifier::Method;
use crate::data::example::Example;
use crate::eval::metrics::{
    multi_label_report, ranking, single_label_report, threshold_sweep, LabelReport,
    MultiLabelReport, Ranking, ScoredPair, SingleLabelReport, ThresholdRow,
};
use crate::results::escape_controls;
use crate::scoring::LabelScore;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalMode {
    SingleLabel,
    MultiLabel,
}

/// One example's labels with gold targets and scores.
pub struct Evaluated {
    pub text: String,
    pub labels: Vec<(String, bool, LabelScore)>,
}

impl Evaluated {
    pub fn new(example: &Example, scores: &[LabelScore]) -> Self {
        Self {
            text: example.text.clone(),
            labels: example
                .targets()
                .into_iter()
                .zip(scores)
                .map(|((label, gold), score)| (label.to_string(), gold, *score))
                .collect(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "text": self.text,
            "labels": self.labels.iter().map(|(label, gold, s)| serde_json::json!({
                "label": label, "score": s.score, "predicted": s.predicted, "gold": gold,
            })).collect::<Vec<_>>(),
        })
    }
}

#[derive(Serialize)]
pub struct Report {
    pub model: String,
    pub method: Method,
    pub head_trained: bool,
    pub data: String,
    pub examples: usize,
    pub distinct_labels: usize,
    /// Encoder sequences used (more than the examples when labels were chunked).
    pub sequences: usize,
    pub mode: EvalMode,
    pub threshold: f32,
    pub single_label: Option<SingleLabelReport>,
    pub multi_label: MultiLabelReport,
    pub threshold_analysis: Vec<ThresholdRow>,
    pub best_threshold: ThresholdRow,
    pub ranking: Ranking,
}

pub fn evaluate(evaluated: &[Evaluated], mode: EvalMode, threshold: f32) -> Report {
    let pairs: Vec<ScoredPair> = evaluated
        .iter()
        .flat_map(|e| {
            e.labels.iter().map(|(label, gold, s)| ScoredPair {
                label: label.clone(),
                score: s.score,
                positive: *gold,
            })
        })
        .collect();
    let single_label = (mode == EvalMode::SingleLabel).then(|| {
        let gold: Vec<String> = evaluated
            .iter()
            .map(|e| first(e, |(_, gold, _)| *gold))
            .collect();
        let predicted: Vec<String> = evaluated
            .iter()
            .map(|e| first(e, |(_, _, s)| s.predicted))
            .collect();
        single_label_report(&gold, &predicted)
    });
    let (threshold_analysis, best_threshold) = threshold_sweep(&pairs);
    let per_example: Vec<Vec<(f32, bool)>> = evaluated
        .iter()
        .map(|e| {
            e.labels
                .iter()
                .map(|(_, gold, s)| (s.score, *gold))
                .collect()
        })
        .collect();
    Report {
        model: String::new(),
        method: Method::Gliznet,
        head_trained: true,
        data: String::new(),
        examples: evaluated.len(),
        distinct_labels: pairs
            .iter()
            .map(|p| p.label.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        sequences: 0,
        mode,
        threshold,
        single_label,
        multi_label: multi_label_report(&pairs, threshold),
        threshold_analysis,
        best_threshold,
        ranking: ranking(&per_example),
    }
}

fn first(e: &Evaluated, pick: impl Fn(&&(String, bool, LabelScore)) -> bool) -> String {
    e.labels
        .iter()
        .find(pick)
        .map(|(l, _, _)| l.clone())
        .unwrap_or_default()
}

fn opt(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.4}"))
}

impl Report {
    /// The JSON report; in single-label mode `accuracy` and `macro_f1` are at the top level.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or_default();
        if let (Some(single), Some(object)) = (&self.single_label, json.as_object_mut()) {
            object.insert("accuracy".into(), single.accuracy.into());
            object.insert("macro_f1".into(), single.macro_f1.into());
        }
        json
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.multi_label;
        let _ = writeln!(
            out,
            "model      {} ({})",
            self.model,
            serde_json::to_value(self.method)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("")
        );
        let _ = writeln!(
            out,
            "data       {}: {} examples, {} distinct labels, {} encoder sequences",
            self.data, self.examples, self.distinct_labels, self.sequences
        );
        if let Some(single) = &self.single_label {
            let _ = writeln!(out, "mode       single-label (argmax over candidates)");
            let _ = writeln!(out, "accuracy   {:.4}", single.accuracy);
            let _ = writeln!(out, "macro-F1   {:.4}", single.macro_f1);
        } else {
            let _ = writeln!(
                out,
                "mode       multi-label (threshold {:.2})",
                self.threshold
            );
        }
        let r = &self.ranking;
        let _ = writeln!(
            out,
            "ranking    Hit@1 {:.4}  Hit@3 {:.4}  Hit@5 {:.4}  MRR {:.4}",
            r.hit_at_1, r.hit_at_3, r.hit_at_5, r.mrr
        );
        let _ = writeln!(
            out,
            "binary     at {:.2}: accuracy {:.4}  micro-F1 {:.4}  macro-F1 {:.4}  precision {:.4}  recall {:.4}",
            m.threshold, m.accuracy, m.micro_f1, m.macro_f1, m.micro_precision, m.micro_recall
        );
        let _ = writeln!(
            out,
            "           AUC-ROC micro {}  macro {}   average precision micro {}  macro {}",
            opt(m.micro_auc_roc),
            opt(m.macro_auc_roc),
            opt(m.micro_average_precision),
            opt(m.macro_average_precision)
        );
        let b = &self.best_threshold;
        let _ = writeln!(
            out,
            "threshold  best micro-F1 {:.4} at {:.2} (precision {:.4}, recall {:.4})",
            b.f1, b.threshold, b.precision, b.recall
        );
        let classes: &[LabelReport] = match &self.single_label {
            Some(single) => &single.per_class,
            None => &m.per_label,
        };
        let mut shown: Vec<&LabelReport> = classes.iter().collect();
        shown.sort_by(|a, b| b.support.cmp(&a.support).then(a.label.cmp(&b.label)));
        // Labels as the predict table prints them: control and format characters escaped.
        let names: Vec<String> = shown
            .iter()
            .take(30)
            .map(|c| escape_controls(&c.label))
            .collect();
        let width = names
            .iter()
            .map(|name| name.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "\n  {:<width$}  support  precision  recall      F1",
            "label"
        );
        for (c, name) in shown.iter().zip(&names) {
            let _ = writeln!(
                out,
                "  {:<width$}  {:>7}  {:>9.4}  {:>6.4}  {:>6.4}",
                name, c.support, c.precision, c.recall, c.f1
            );
        }
        if shown.len() > 30 {
            let _ = writeln!(
                out,
                "  … {} more labels in the JSON report (--report)",
                shown.len() - 30
            );
        }
        if let Some(single) = &self.single_label {
            if single.classes.len() <= 20 {
                let _ = writeln!(
                    out,
                    "\nconfusion matrix (rows: gold; columns: predicted, in the same order)"
                );
                for (class, row) in single.classes.iter().zip(&single.confusion_matrix) {
                    let cells: Vec<String> = row.iter().map(|n| format!("{n:>5}")).collect();
                    let class = escape_controls(class);
                    let _ = writeln!(out, "  {:<width$} {}", class, cells.join(""));
                }
            }
        }
        out
    }
}
