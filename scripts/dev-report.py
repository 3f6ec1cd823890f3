#!/usr/bin/env python3
"""Evaluates models on the zero-shot dev suite with `gliznet eval` and prints Markdown tables.

    scripts/dev-report.py --row NAME=MODEL[:METHOD[:OPTION...]] ... [--out DIR] [--reuse]

MODEL is a model directory or "builtin"; METHOD is gliznet (default) or bi-encoder; OPTIONs:
"quantize" (`--quantize`, int8 encoder weights), "bf16" (`--bf16`, bf16 encoder weights;
without either, rows run with `--f32`, whatever the CPU's default), "prior" (`--subtract-label-prior`) and
"template" (every label read as "This text is about {label}.", the usual zero-shot hypothesis
template), "descriptions" (single-label tasks: the candidates read from
scripts/suite/descriptions/TASK.txt, `name: description` lines written before any model was
scored with them) and "zscore" (single-label tasks: each label's logit normalised over the task's texts,
minus its mean and divided by its standard deviation, before the argmax: the label prior
corrected per call, which needs all texts of a call at once). The suite is
data/generated/suite (scripts/build-dev-suite.sh). Single-label tasks are scored as public
zero-shot benchmarks are (argmax over the task's label names: accuracy and macro-F1);
relevance tasks (one label per text, positive or not) by the label's own score: AUC-ROC,
the best F1 over the threshold sweep with its threshold, F1 at the model's default
threshold, and the expected calibration error of the scores). The suite mean is the mean macro-F1 over the single-label tasks. Reports land in
--out (default runs/dev-report); --reuse skips evaluations whose report is already there.
--json writes every number in one file. --bootstrap ROUNDS adds, for each row after the first,
its mean macro-F1 minus the first row's with a 95% interval from a paired bootstrap over each
task's texts (how far a difference is from the suite's sampling noise). GLIZNET_BIN (default target/release/gliznet),
GLIZNET_DEVICE (default cpu) and GLIZNET_SUITE (default data/generated/suite) point it elsewhere.
"""

import argparse
import json
import math
import os
import statistics
import pathlib
import random
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUITE = pathlib.Path(os.environ.get("GLIZNET_SUITE", ROOT / "data" / "generated" / "suite"))
DESCRIPTIONS = ROOT / "scripts" / "suite" / "descriptions"
BIN = os.environ.get("GLIZNET_BIN", str(ROOT / "target/release/gliznet"))
DEVICE = os.environ.get("GLIZNET_DEVICE", "cpu")
TEMPLATE = "This text is about {label}."


def templated(dataset, out):
    """A copy of the task file with every label read through TEMPLATE."""
    path = out / f"templated--{dataset.name}"
    if not path.is_file() or path.stat().st_mtime < dataset.stat().st_mtime:
        lines = []
        for line in dataset.read_text().splitlines():
            row = json.loads(line)
            for key in ("labels", "not_labels"):
                row[key] = [TEMPLATE.format(label=l) for l in row[key]]
            lines.append(json.dumps(row, ensure_ascii=False))
        path.write_text("\n".join(lines) + "\n")
    return path


def macro_f1_accuracy(gold, predicted, labels):
    true_positives = dict.fromkeys(labels, 0)
    wrong = dict.fromkeys(labels, 0)
    for g, p in zip(gold, predicted):
        if g == p:
            true_positives[g] += 1
        else:
            wrong[g] = wrong.get(g, 0) + 1
            wrong[p] = wrong.get(p, 0) + 1
    f1 = [2 * true_positives[l] / (2 * true_positives[l] + wrong[l]) if true_positives[l] else 0.0 for l in labels]
    accuracy = sum(true_positives.values()) / len(gold)
    return sum(f1) / len(f1), accuracy


def logit(probability):
    p = min(max(probability, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def label_logits(predictions):
    """Each text's label -> logit of its score, from a predictions file."""
    return [{l["label"]: logit(l["score"]) for l in json.loads(line)["labels"]}
            for line in predictions.read_text().splitlines()]


def label_statistics(scores, labels):
    """Each label's mean and spread (1 where it is 0) over SCORES, a list of label -> logit."""
    return ({l: statistics.fmean(s[l] for s in scores) for l in labels},
            {l: statistics.pstdev([s[l] for s in scores]) or 1.0 for l in labels})


def single_label_decisions(predictions, zscore):
    """A single-label task's predictions file as (texts, gold labels, predicted labels, candidate
    labels). The predicted label is the one gliznet marked; with ZSCORE it is the argmax after
    each label's logit is standardised over the texts (the task's candidate labels being the
    same for every text)."""
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    labels = sorted(l["label"] for l in rows[0]["labels"])
    if zscore:
        scores = label_logits(predictions)
        mean, spread = label_statistics(scores, labels)
        predicted = [max(labels, key=lambda l: (s[l] - mean[l]) / spread[l]) for s in scores]
    else:
        predicted = [next(l["label"] for l in row["labels"] if l["predicted"]) for row in rows]
    gold = [next(l["label"] for l in row["labels"] if l["gold"]) for row in rows]
    return [row["text"] for row in rows], gold, predicted, labels


def zscore_report(predictions):
    """Macro-F1 and accuracy of the argmax after each label's logit is standardised over the texts."""
    _, *decisions = single_label_decisions(predictions, zscore=True)
    macro_f1, accuracy = macro_f1_accuracy(*decisions)
    return {"macro_f1": macro_f1, "accuracy": accuracy}


def bootstrap_differences(decisions, rounds, seed=0):
    """Paired bootstrap of the suite mean macro-F1: each round draws every task's texts with
    replacement (the same draw for every row) and scores each row on it. DECISIONS maps a row
    name to {task: (gold, predicted, labels)}, every row over the same texts in the same order;
    returns, for each row after the first, its measured difference to the first row and the 2.5
    and 97.5 percentiles of the differences over the rounds."""
    rng = random.Random(seed)
    names = list(decisions)
    tasks = list(decisions[names[0]])

    def mean_differences(draws):
        means = {}
        for name in names:
            scores = []
            for t in tasks:
                gold, predicted, labels = decisions[name][t]
                scores.append(macro_f1_accuracy([gold[i] for i in draws[t]], [predicted[i] for i in draws[t]], labels)[0])
            means[name] = sum(scores) / len(scores)
        return {name: means[name] - means[names[0]] for name in names[1:]}

    sizes = {t: len(decisions[names[0]][t][0]) for t in tasks}
    measured = mean_differences({t: range(n) for t, n in sizes.items()})
    rounds_differences = [mean_differences({t: [rng.randrange(n) for _ in range(n)] for t, n in sizes.items()})
                          for _ in range(rounds)]
    tail = int(0.025 * rounds)
    result = {}
    for name in names[1:]:
        values = sorted(d[name] for d in rounds_differences)
        result[name] = (measured[name], values[tail], values[rounds - 1 - tail])
    return result


def expected_calibration_error(predictions, bins=10):
    """ECE of the per-label scores against gold over equal-width bins (relevance tasks)."""
    pairs = [(l["score"], l["gold"]) for line in predictions.read_text().splitlines()
             for l in json.loads(line)["labels"]]
    total = 0.0
    for b in range(bins):
        inside = [(s, g) for s, g in pairs if b / bins <= s < (b + 1) / bins or (b == bins - 1 and s == 1.0)]
        if inside:
            confidence = sum(s for s, _ in inside) / len(inside)
            frequency = sum(1 for _, g in inside if g) / len(inside)
            total += len(inside) / len(pairs) * abs(confidence - frequency)
    return total


def evaluate(name, model, method, options, task, scoring, out, reuse, need_predictions):
    report = out / f"{name}--{task}.json"
    predictions = out / f"{name}--{task}.predictions.jsonl"
    zscore = "zscore" in options and scoring == "single_label"
    need_predictions = need_predictions or zscore or scoring == "relevance"
    if reuse and report.is_file() and (predictions.is_file() or not need_predictions):
        return zscore_report(predictions) if zscore else json.loads(report.read_text())
    data = SUITE / f"{task}.jsonl"
    if "template" in options:
        data = templated(data, out)
    mode = "--single-label" if scoring == "single_label" else "--multi-label"
    cmd = [BIN, "eval", "--data", str(data), "--method", method, mode,
           "--report", str(report), "--predictions", str(predictions), "--batch-size", "32", "--device", DEVICE]
    if model != "builtin":
        cmd += ["--model", model]
    if "quantize" in options:
        cmd.append("--quantize")
    if "bf16" in options:
        cmd.append("--bf16")
    if not {"quantize", "bf16"} & options:
        cmd.append("--f32")  # gliznet's default is bf16 on CPUs with AMX
    if "prior" in options:
        cmd.append("--subtract-label-prior")
    if "descriptions" in options and scoring == "single_label":
        cmd += ["--labels-file", str(DESCRIPTIONS / f"{task}.txt")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return zscore_report(predictions) if zscore else json.loads(report.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", action="append", required=True, help="NAME=MODEL[:METHOD[:OPTION...]]")
    parser.add_argument("--out", default=str(ROOT / "runs" / "dev-report"))
    parser.add_argument("--reuse", action="store_true", help="reuse reports already in --out")
    parser.add_argument("--json", help="write all numbers here")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="ROUNDS",
                        help="paired bootstrap of each row's mean macro-F1 against the first row's (95%% interval)")
    args = parser.parse_args()
    if args.bootstrap < 0:
        parser.error("--bootstrap: the number of rounds cannot be negative")
    suite = json.loads((SUITE / "suite.json").read_text())["tasks"]
    single = [t for t, v in suite.items() if v["scoring"] == "single_label"]
    relevance = [t for t, v in suite.items() if v["scoring"] == "relevance"]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows, decisions, texts_of = [], {}, {}
    for spec in args.row:
        name, _, target = spec.partition("=")
        model, *rest = target.split(":")
        method = rest[0] if rest and rest[0] else "gliznet"
        options = set(rest[1:])
        unknown = options - {"quantize", "bf16", "template", "prior", "zscore", "descriptions"}
        if unknown:
            sys.exit(f"--row {spec}: unknown option(s) {sorted(unknown)}")
        if {"template", "descriptions"} <= options:
            sys.exit(f"--row {spec}: template and descriptions do not combine")
        print(f"evaluating {name} ...", file=sys.stderr)
        reports = {t: evaluate(name, model, method, options, t, suite[t]["scoring"], out, args.reuse,
                               args.bootstrap > 0)
                   for t in single + relevance}
        numbers = {}
        for t in single:
            numbers[t] = {"accuracy": reports[t]["accuracy"], "macro_f1": reports[t]["macro_f1"]}
        for t in relevance:
            m = reports[t]["multi_label"]
            best = reports[t]["best_threshold"]
            numbers[t] = {"auc": m["micro_auc_roc"], "best_f1": best["f1"], "best_threshold": best["threshold"],
                          "f1_at_default": m["micro_f1"], "default_threshold": reports[t].get("threshold"),
                          "ece": expected_calibration_error(out / f"{name}--{t}.predictions.jsonl")}
        numbers["mean_macro_f1"] = sum(numbers[t]["macro_f1"] for t in single) / len(single)
        numbers["mean_relevance_auc"] = sum(numbers[t]["auc"] for t in relevance) / len(relevance)
        rows.append((name, spec, numbers))
        if args.bootstrap:
            decisions[name] = {}
            for t in single:
                texts, *decisions[name][t] = single_label_decisions(out / f"{name}--{t}.predictions.jsonl",
                                                                     "zscore" in options)
                first_texts = texts_of.setdefault(t, texts)
                if texts != first_texts:
                    sys.exit(f"{name}, {t}: the predictions are not over the same texts as {rows[0][0]}'s "
                             f"(a stale --reuse report?)")
                recomputed = macro_f1_accuracy(*decisions[name][t])[0]
                if abs(recomputed - numbers[t]["macro_f1"]) > 1e-6:
                    sys.exit(f"{name}, {t}: macro-F1 from the predictions {recomputed:.6f}, "
                             f"from the report {numbers[t]['macro_f1']:.6f}")

    lines = ["Single-label tasks (argmax over the task's labels): macro-F1 (accuracy)", "",
             "| model | " + " | ".join(single) + " | **mean macro-F1** |",
             "|---|" + "---|" * (len(single) + 1)]
    for name, _, n in rows:
        cells = [f"{n[t]['macro_f1']:.3f} ({n[t]['accuracy']:.3f})" for t in single]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | **{n['mean_macro_f1']:.3f}** |")
    lines += ["", "Relevance tasks (one label per text): AUC-ROC / best F1 at its threshold / F1 at the "
              "model's default threshold / expected calibration error of the scores (10 bins)", "",
              "| model | " + " | ".join(relevance) + " | mean AUC |", "|---|" + "---|" * (len(relevance) + 1)]
    for name, _, n in rows:
        cells = [f"{n[t]['auc']:.3f} / {n[t]['best_f1']:.3f} at {n[t]['best_threshold']:.2f} / "
                 f"{n[t]['f1_at_default']:.3f} / {n[t]['ece']:.3f}" for t in relevance]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {n['mean_relevance_auc']:.3f} |")
    if args.bootstrap and len(rows) > 1:
        differences = bootstrap_differences(decisions, args.bootstrap)
        lines += ["", f"Mean macro-F1 against {rows[0][0]}: paired bootstrap over each task's texts "
                  f"({args.bootstrap} rounds), difference and 95% interval, points", "",
                  "| model | difference | 95% interval |", "|---|---|---|"]
        for name, (difference, low, high) in differences.items():
            lines.append(f"| {name} | {100 * difference:+.1f} | {100 * low:+.1f} … {100 * high:+.1f} |")
            rows[[r[0] for r in rows].index(name)][2]["bootstrap_vs_first"] = {
                "against": rows[0][0], "rounds": args.bootstrap, "difference": difference, "low": low, "high": high}
    print("\n".join(lines))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({name: {"row": spec, **n} for name, spec, n in rows},
                                                      indent=2) + "\n")


if __name__ == "__main__":
    main()
