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
    let report = multi_label_report(pairs, threshold);
    BinaryMetrics {
        pairs: pairs.len(),
        accuracy: report.accuracy,
        micro_f1: report.micro_f1,
        macro_f1: report.macro_f1,
        auc_roc: report.micro_auc_roc,
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

/// Average precision as scikit-learn computes it: Σ (Rₖ − Rₖ₋₁) Pₖ over distinct score
/// thresholds from high to low. `None` without a positive.
pub fn average_precision(scored: &[(f32, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|(_, p)| *p).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|&a, &b| scored[b].0.total_cmp(&scored[a].0));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let score = scored[order[i]].0;
        while i < order.len() && scored[order[i]].0 == score {
            if scored[order[i]].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let recall = tp as f64 / positives as f64;
        ap += (recall - last_recall) * tp as f64 / (tp + fp) as f64;
        last_recall = recall;
    }
    Some(ap)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelReport {
    pub label: String,
    pub support: usize,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub auc_roc: Option<f64>,
    pub average_precision: Option<f64>,
}

pub fn per_label(pairs: &[ScoredPair], threshold: f32) -> Vec<LabelReport> {
    let mut by_label: BTreeMap<&str, Vec<(f32, bool)>> = BTreeMap::new();
    for p in pairs {
        by_label
            .entry(p.label.as_str())
            .or_default()
            .push((p.score, p.positive));
    }
    by_label
        .into_iter()
        .map(|(label, scored)| {
            let mut counts = Counts::default();
            for &(score, positive) in &scored {
                counts.add(score >= threshold, positive);
            }
            LabelReport {
                label: label.to_string(),
                support: counts.tp + counts.fn_,
                accuracy: counts.accuracy(),
                precision: counts.precision(),
                recall: counts.recall(),
                f1: counts.f1(),
                auc_roc: auc_roc(&scored),
                average_precision: average_precision(&scored),
            }
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultiLabelReport {
    pub threshold: f32,
    pub accuracy: f64,
    pub micro_precision: f64,
    pub micro_recall: f64,
    pub micro_f1: f64,
    pub macro_f1: f64,
    pub micro_auc_roc: Option<f64>,
    pub macro_auc_roc: Option<f64>,
    pub micro_average_precision: Option<f64>,
    pub macro_average_precision: Option<f64>,
    pub per_label: Vec<LabelReport>,
}

pub fn multi_label_report(pairs: &[ScoredPair], threshold: f32) -> MultiLabelReport {
    let mut total = Counts::default();
    for p in pairs {
        total.add(p.score >= threshold, p.positive);
    }
    let labels = per_label(pairs, threshold);
    let scored: Vec<(f32, bool)> = pairs.iter().map(|p| (p.score, p.positive)).collect();
    MultiLabelReport {
        threshold,
        accuracy: total.accuracy(),
        micro_precision: total.precision(),
        micro_recall: total.recall(),
        micro_f1: total.f1(),
        macro_f1: mean(labels.iter().filter(|l| l.support > 0).map(|l| l.f1)).unwrap_or(0.0),
        micro_auc_roc: auc_roc(&scored),
        macro_auc_roc: mean(labels.iter().filter_map(|l| l.auc_roc)),
        micro_average_precision: average_precision(&scored),
        macro_average_precision: mean(labels.iter().filter_map(|l| l.average_precision)),
        per_label: labels,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdRow {
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Micro precision/recall/F1 at thresholds 0.05, 0.10, … 0.95, and the row with the best F1
/// (the lowest such threshold on ties).
pub fn threshold_sweep(pairs: &[ScoredPair]) -> (Vec<ThresholdRow>, ThresholdRow) {
    let rows: Vec<ThresholdRow> = (1..20)
        .map(|i| {
            let threshold = i as f32 * 0.05;
            let mut counts = Counts::default();
            for p in pairs {
                counts.add(p.score >= threshold, p.positive);
            }
            ThresholdRow {
                threshold,
                precision: counts.precision(),
                recall: counts.recall(),
                f1: counts.f1(),
            }
        })
        .collect();
    let best = rows
        .iter()
        .fold(
            &rows[0],
            |best, row| if row.f1 > best.f1 { row } else { best },
        )
        .clone();
    (rows, best)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    pub hit_at_1: f64,
    pub hit_at_3: f64,
    pub hit_at_5: f64,
    pub mrr: f64,
    /// Examples with at least one positive (the others cannot be ranked).
    pub examples: usize,
}

/// Ranking quality per example: the rank of its best-ranked positive among its labels (ties
/// counted pessimistically: a positive tied with a negative ranks below it).
pub fn ranking(examples: &[Vec<(f32, bool)>]) -> Ranking {
    let ranks: Vec<usize> = examples
        .iter()
        .filter_map(|labels| {
            let best = labels
                .iter()
                .filter(|(_, p)| *p)
                .map(|(s, _)| *s)
                .fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.max(s))))?;
            Some(
                1 + labels
                    .iter()
                    .filter(|(s, p)| *s > best || (*s == best && !*p))
                    .count(),
            )
        })
        .collect();
    let n = ranks.len().max(1) as f64;
    let hit = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
    Ranking {
        hit_at_1: hit(1),
        hit_at_3: hit(3),
        hit_at_5: hit(5),
        mrr: ranks.iter().map(|&r| 1.0 / r as f64).sum::<f64>() / n,
        examples: ranks.len(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SingleLabelReport {
    pub accuracy: f64,
    /// Mean F1 over the classes that are gold or predicted (scikit-learn's `average="macro"`).
    pub macro_f1: f64,
    pub per_class: Vec<LabelReport>,
    /// Class names, in the order of the confusion matrix's rows (gold) and columns (predicted).
    pub classes: Vec<String>,
    pub confusion_matrix: Vec<Vec<usize>>,
}

/// The public zero-shot protocol: the argmax over candidates is the prediction.
pub fn single_label_report(gold: &[String], predicted: &[String]) -> SingleLabelReport {
    let classes: Vec<String> = gold
        .iter()
        .chain(predicted)
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut matrix = vec![vec![0usize; classes.len()]; classes.len()];
    for (g, p) in gold.iter().zip(predicted) {
        matrix[index[g.as_str()]][index[p.as_str()]] += 1;
    }
    let per_class: Vec<LabelReport> = classes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let tp = matrix[i][i];
            let support: usize = matrix[i].iter().sum();
            let predicted_as: usize = matrix.iter().map(|row| row[i]).sum();
            let counts = Counts {
                tp,
                fp: predicted_as - tp,
                fn_: support - tp,
                tn: gold.len() - support - (predicted_as - tp),
            };
            LabelReport {
                label: class.clone(),
                support,
                accuracy: counts.accuracy(),
                precision: counts.precision(),
                recall: counts.recall(),
                f1: counts.f1(),
                auc_roc: None,
                average_precision: None,
            }
        })
        .collect();
    let correct = gold.iter().zip(predicted).filter(|(g, p)| g == p).count();
    SingleLabelReport {
        accuracy: ratio(correct, gold.len()),
        macro_f1: mean(per_class.iter().map(|c| c.f1)).unwrap_or(0.0),
        per_class,
        classes,
        confusion_matrix: matrix,
    }
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

    /// Compares with scikit-learn's values (tests/fixtures/metrics_reference.json, made by
    /// scripts/reference/metrics_reference.py) on predictions with ties, a label seen once, a
    /// label never positive and a class never predicted.
    #[test]
    fn matches_scikit_learn() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/metrics_reference.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let pairs: Vec<ScoredPair> = fixture["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                pair(
                    p["label"].as_str().unwrap(),
                    p["score"].as_f64().unwrap() as f32,
                    p["positive"].as_bool().unwrap(),
                )
            })
            .collect();
        let close = |actual: f64, expected: &serde_json::Value, what: &str| {
            let expected = expected
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {expected}"));
            assert!(
                (actual - expected).abs() < 1e-6,
                "{what}: {actual} vs {expected}"
            );
        };
        let optional = |actual: Option<f64>, expected: &serde_json::Value, what: &str| match actual
        {
            Some(a) => close(a, expected, what),
            None => assert!(expected.is_null(), "{what}: None vs {expected}"),
        };
        let expected = &fixture["expected"]["multi_label"];
        let report = multi_label_report(&pairs, 0.5);
        close(report.accuracy, &expected["accuracy"], "accuracy");
        close(report.micro_f1, &expected["micro_f1"], "micro_f1");
        close(report.macro_f1, &expected["macro_f1"], "macro_f1");
        optional(
            report.micro_auc_roc,
            &expected["micro_auc_roc"],
            "micro_auc_roc",
        );
        optional(
            report.macro_auc_roc,
            &expected["macro_auc_roc"],
            "macro_auc_roc",
        );
        optional(
            report.micro_average_precision,
            &expected["micro_average_precision"],
            "micro_ap",
        );
        optional(
            report.macro_average_precision,
            &expected["macro_average_precision"],
            "macro_ap",
        );
        assert_eq!(
            report.per_label.len(),
            expected["per_label"].as_object().unwrap().len()
        );
        for label in &report.per_label {
            let e = &expected["per_label"][&label.label];
            assert_eq!(
                label.support as u64,
                e["support"].as_u64().unwrap(),
                "{}",
                label.label
            );
            for (name, value) in [
                ("accuracy", label.accuracy),
                ("precision", label.precision),
                ("recall", label.recall),
                ("f1", label.f1),
            ] {
                close(value, &e[name], &format!("{} {name}", label.label));
            }
            optional(
                label.auc_roc,
                &e["auc_roc"],
                &format!("{} auc", label.label),
            );
            optional(
                label.average_precision,
                &e["average_precision"],
                &format!("{} ap", label.label),
            );
        }
        let (sweep, _) = threshold_sweep(&pairs);
        for (row, e) in sweep
            .iter()
            .zip(fixture["expected"]["threshold_sweep"].as_array().unwrap())
        {
            close(row.threshold as f64, &e["threshold"], "threshold");
            close(
                row.precision,
                &e["precision"],
                &format!("precision at {}", row.threshold),
            );
            close(
                row.recall,
                &e["recall"],
                &format!("recall at {}", row.threshold),
            );
            close(row.f1, &e["f1"], &format!("f1 at {}", row.threshold));
        }
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let single = single_label_report(
            &strings(&fixture["single_label"]["gold"]),
            &strings(&fixture["single_label"]["predicted"]),
        );
        let expected = &fixture["expected"]["single_label"];
        close(
            single.accuracy,
            &expected["accuracy"],
            "single-label accuracy",
        );
        close(
            single.macro_f1,
            &expected["macro_f1"],
            "single-label macro_f1",
        );
        assert_eq!(single.classes, strings(&expected["classes"]));
        let matrix: Vec<Vec<usize>> =
            serde_json::from_value(expected["confusion_matrix"].clone()).unwrap();
        assert_eq!(single.confusion_matrix, matrix);
    }

    #[test]
    fn ranking_counts_ties_against_the_positive() {
        let examples = vec![
            vec![(0.9, true), (0.1, false)],                             // rank 1
            vec![(0.5, false), (0.5, true), (0.1, false)],               // tie: rank 2
            vec![(0.9, false), (0.8, false), (0.7, false), (0.1, true)], // rank 4
            vec![(0.3, false)],                                          // no positive: not ranked
        ];
        let r = ranking(&examples);
        assert_eq!(r.examples, 3);
        assert!((r.hit_at_1 - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.hit_at_3 - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.hit_at_5 - 1.0).abs() < 1e-12);
        assert!((r.mrr - (1.0 + 0.5 + 0.25) / 3.0).abs() < 1e-12);
    }
}
