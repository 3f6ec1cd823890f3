"""Expected metric values from scikit-learn for gliznet's metric tests.

Writes tests/fixtures/metrics_reference.json: fixture predictions (with tied scores, a label
seen once, a class never predicted) and what scikit-learn computes for them. The Rust test
`eval::metrics::tests::matches_scikit_learn` compares gliznet's metrics to these to 1e-6.

    .venv/bin/pip install scikit-learn numpy   # or the reference venv
    .venv/bin/python scripts/reference/metrics_reference.py
"""

import json
import pathlib
import random

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support, roc_auc_score)

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "metrics_reference.json"


def main():
    rng = random.Random(7)
    labels = ["sports", "economy", "cooking", "travel", "never"]
    pairs = []  # (example, label, score, positive)
    for example in range(40):
        for label in labels:
            positive = rng.random() < (0.0 if label == "never" else 0.35)
            score = round(min(1.0, max(0.0, rng.gauss(0.65 if positive else 0.35, 0.2))), 1)  # 0.1 steps: ties
            pairs.append((example, label, score, positive))
    pairs.append((40, "rare", 0.7, True))  # a label seen once
    threshold = 0.5

    y = np.array([p[3] for p in pairs], dtype=int)
    s = np.array([p[2] for p in pairs], dtype=np.float32)  # gliznet scores are f32
    pred = (s >= np.float32(threshold)).astype(int)
    per_label = {}
    for label in sorted({p[1] for p in pairs}):
        idx = [i for i, p in enumerate(pairs) if p[1] == label]
        yl, sl, pl = y[idx], s[idx], pred[idx]
        p_, r_, f_, _ = precision_recall_fscore_support(yl, pl, average="binary", zero_division=0)
        per_label[label] = {
            "support": int(yl.sum()),
            "accuracy": accuracy_score(yl, pl),
            "precision": p_, "recall": r_, "f1": f_,
            "auc_roc": roc_auc_score(yl, sl) if 0 < yl.sum() < len(yl) else None,
            "average_precision": average_precision_score(yl, sl) if yl.sum() > 0 else None,
        }
    with_support = [v for v in per_label.values() if v["support"] > 0]
    aucs = [v["auc_roc"] for v in per_label.values() if v["auc_roc"] is not None]
    aps = [v["average_precision"] for v in per_label.values() if v["average_precision"] is not None]
    sweep = []
    for i in range(1, 20):
        t = np.float32(i) * np.float32(0.05)  # as gliznet computes it, in f32
        pt = (s >= t).astype(int)
        p_, r_, f_, _ = precision_recall_fscore_support(y, pt, average="binary", zero_division=0)
        sweep.append({"threshold": float(t), "precision": p_, "recall": r_, "f1": f_})

    gold, predicted = [], []
    for example in range(40):
        rows = [p for p in pairs if p[0] == example]
        gold.append(rows[example % 4][1])
        predicted.append(max(rows, key=lambda p: p[2])[1])  # first of the tied maxima
    classes = sorted(set(gold) | set(predicted))

    expected = {
        "multi_label": {
            "threshold": threshold,
            "accuracy": accuracy_score(y, pred),
            "micro_f1": f1_score(y, pred, zero_division=0),
            "macro_f1": float(np.mean([v["f1"] for v in with_support])),
            "micro_auc_roc": roc_auc_score(y, s),
            "macro_auc_roc": float(np.mean(aucs)),
            "micro_average_precision": average_precision_score(y, s),
            "macro_average_precision": float(np.mean(aps)),
            "per_label": per_label,
        },
        "threshold_sweep": sweep,
        "single_label": {
            "accuracy": accuracy_score(gold, predicted),
            "macro_f1": f1_score(gold, predicted, average="macro", zero_division=0),
            "classes": classes,
            "confusion_matrix": confusion_matrix(gold, predicted, labels=classes).tolist(),
        },
    }
    OUT.write_text(json.dumps({
        "made_by": "scripts/reference/metrics_reference.py",
        "sklearn": sklearn.__version__,
        "pairs": [{"example": e, "label": l, "score": sc, "positive": p} for e, l, sc, p in pairs],
        "single_label": {"gold": gold, "predicted": predicted},
        "expected": expected,
    }, indent=1, default=float) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
