//! From logits to the scores a user reads.

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreMode {
    /// Independent sigmoid per label; a label is predicted when its score reaches the threshold.
    MultiLabel { threshold: f32 },
    /// Softmax over the text's labels; the top label is predicted.
    SingleLabel,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelScore {
    pub score: f32,
    pub predicted: bool,
}

pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Scores in the same order as `logits`. Ties in single-label mode go to the first label.
pub fn score(logits: &[f32], mode: ScoreMode) -> Vec<LabelScore> {
    match mode {
        ScoreMode::MultiLabel { threshold } => logits
            .iter()
            .map(|&l| {
                let score = sigmoid(l);
                LabelScore {
                    score,
                    predicted: score >= threshold,
                }
            })
            .collect(),
        ScoreMode::SingleLabel => {
            let probs = softmax(logits);
            let best = argmax(logits);
            probs
                .into_iter()
                .enumerate()
                .map(|(i, score)| LabelScore {
                    score,
                    predicted: i == best,
                })
                .collect()
        }
    }
}

/// Scores that are already similarities (the bi-encoder's cosines): kept as they are; a label
/// is predicted at the threshold (multi-label) or as the most similar (single-label).
pub fn score_similarities(similarities: &[f32], mode: ScoreMode) -> Vec<LabelScore> {
    let best = argmax(similarities);
    similarities
        .iter()
        .enumerate()
        .map(|(i, &score)| LabelScore {
            score,
            predicted: match mode {
                ScoreMode::MultiLabel { threshold } => score >= threshold,
                ScoreMode::SingleLabel => i == best,
            },
        })
        .collect()
}

/// Index of the largest value; the first one on ties.
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_and_symmetric() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn multi_label_thresholds_each_label() {
        let scores = score(&[2.0, -2.0, 0.0], ScoreMode::MultiLabel { threshold: 0.5 });
        let predicted: Vec<bool> = scores.iter().map(|s| s.predicted).collect();
        assert_eq!(predicted, vec![true, false, true]);
    }

    #[test]
    fn single_label_softmax_sums_to_one_and_keeps_order() {
        let scores = score(&[1.0, 3.0, 2.0, 1000.0, -1000.0], ScoreMode::SingleLabel);
        let total: f32 = scores.iter().map(|s| s.score).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(scores[3].predicted && scores.iter().filter(|s| s.predicted).count() == 1);
        let scores = score(&[1.0, 3.0, 2.0], ScoreMode::SingleLabel);
        assert!(scores[1].score > scores[2].score && scores[2].score > scores[0].score);
        let tied = score(&[5.0, 5.0], ScoreMode::SingleLabel);
        assert!(tied[0].predicted && !tied[1].predicted);
    }
}
