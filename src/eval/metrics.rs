//! Metrics over binary (text, label) decisions. Knows nothing of the model: it takes scores in
//! [0, 1], gold targets and the label name of each pair.

use serde::Serialize;
use std::collections::BTreeMap;

/// One scored (text, label) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPair {
    pub label: String,
    pub score: f32,
    pub positive: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub tn: usize,
}

impl Counts {
    fn add(&mut self, predicted: bool, positive: bool) {
        match (predicted, positive) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// F1, defined as 0 when there is nothing to find and nothing was predicted.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinaryMetrics {
    pub pairs: usize,
    /// Fraction of (text, label) decisions that are right at the threshold.
    pub accuracy: f64,
    pub micro_f1: f64,
    /// Mean F1 over label names that occur as a gold positive.
    pub macro_f1: f64,
    /// AUC-ROC of all pairs pooled; `None` when only one class is present.
    pub auc_roc: Option<f64>,
}

pub fn binary_metrics(pairs: &[ScoredPair], threshold: f32) -> BinaryMetrics {
    let mut total = Counts::default();
    let mut per_label: BTreeMap<&str, Counts> = BTreeMap::new();
    for pair in pairs {
        let predicted = pair.score >= threshold;
        total.add(predicted, pair.positive);
        per_label
            .entry(pair.label.as_str())
            .or_default()
            .add(predicted, pair.positive);
    }
    let with_positives: Vec<&Counts> = per_label.values().filter(|c| c.tp + c.fn_ > 0).collect();
    let macro_f1 = if with_positives.is_empty() {
        0.0
    } else {
        with_positives.iter().map(|c| c.f1()).sum::<f64>() / with_positives.len() as f64
    };
    let scored: Vec<(f32, bool)> = pairs.iter().map(|p| (p.score, p.positive)).collect();
    BinaryMetrics {
        pairs: pairs.len(),
        accuracy: total.accuracy(),
        micro_f1: total.f1(),
        macro_f1,
        auc_roc: auc_roc(&scored),
    }
}

/// Area under the ROC curve by the rank statistic, with tied scores sharing their mean rank
/// (as scikit-learn's `roc_auc_score`). `None` without both classes.
pub fn auc_roc(scored: &[(f32, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|(_, p)| *p).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|&a, &b| scored[a].0.total_cmp(&scored[b].0));
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scored[order[end + 1]].0 == scored[order[start]].0 {
            end += 1;
        }
        let mean_rank = (start + end) as f64 / 2.0 + 1.0;
        let tied_positives = order[start..=end].iter().filter(|&&i| scored[i].1).count();
        positive_rank_sum += mean_rank * tied_positives as f64;
        start = end + 1;
    }
    let u = positive_rank_sum - (positives * (positives + 1)) as f64 / 2.0;
    Some(u / (positives * negatives) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(label: &str, score: f32, positive: bool) -> ScoredPair {
        ScoredPair {
            label: label.into(),
            score,
            positive,
        }
    }

    #[test]
    fn auc_handles_ties_and_single_class() {
        // sklearn: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let auc = auc_roc(&[(0.1, false), (0.4, false), (0.35, true), (0.8, true)]).unwrap();
        assert!((auc - 0.75).abs() < 1e-12);
        // sklearn: roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875
        let auc = auc_roc(&[(0.5, false), (0.5, true), (0.2, false), (0.9, true)]).unwrap();
        assert!((auc - 0.875).abs() < 1e-12);
        assert_eq!(auc_roc(&[(0.5, true), (0.7, true)]), None);
    }

    #[test]
    fn micro_and_macro_f1() {
        let pairs = [
            pair("a", 0.9, true),  // tp
            pair("a", 0.8, false), // fp
            pair("b", 0.2, true),  // fn
            pair("b", 0.1, false), // tn
            pair("c", 0.7, false), // fp, no positives: not in macro
        ];
        let m = binary_metrics(&pairs, 0.5);
        assert_eq!(m.pairs, 5);
        assert!((m.accuracy - 0.4).abs() < 1e-12);
        // micro: tp 1, fp 2, fn 1 → 2 / (2 + 3)
        assert!((m.micro_f1 - 0.4).abs() < 1e-12);
        // a: 2/(2+1) = 2/3, b: 0 → macro 1/3
        assert!((m.macro_f1 - 1.0 / 3.0).abs() < 1e-12);
    }
}
