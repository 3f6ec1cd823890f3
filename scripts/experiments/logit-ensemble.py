#!/usr/bin/env python3
"""Label-reading ensembles on the dev suite: each member is a model (usually one model directory
with another `label_template`) and, optionally, its own copy of the suite (the same texts and
gold labels, label names rewritten); each member is scored with `gliznet eval --predictions`
and the ensemble's logit for a label is the mean of the members' logits (for cosine models:
the cosine against the mean of the members' normalised label vectors, times the scale).
Prints each member's row, then the ensemble of all members.

    scripts/experiments/logit-ensemble.py NAME=MODEL_DIR[|KEY=VALUE...] ... [--out DIR]

KEY=VALUE: `suite=DIR` scores the member on DIR's copy of the suite; any other key overrides
that field of the model's `gliznet` config (label_template, max_label_tokens) in a copy of the
model directory made under --out (weights linked, not copied). For example
`t2=assets/default-model|label_template=[CLS] This example is {label}.`

Single-label tasks: argmax of the mean log-softmax (the same argmax as the mean logits),
macro-F1. Relevance tasks: AUC-ROC of the mean logits.
"""

import argparse
import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SUITE = ROOT / "data" / "generated" / "suite"
BIN = os.environ.get("GLIZNET_BIN", str(ROOT / "target/release/gliznet"))
spec = importlib.util.spec_from_file_location("dev_report", ROOT / "scripts" / "dev-report.py")
dev_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dev_report)


def predictions(name, model, suite, task, scoring, out):
    path = out / f"{name}--{task}.predictions.jsonl"
    if not path.is_file():
        mode = "--single-label" if scoring == "single_label" else "--multi-label"
        cmd = [BIN, "eval", "--data", str(suite / f"{task}.jsonl"), mode, "--model", model, "--batch-size", "32",
               "--report", str(out / f"{name}--{task}.json"), "--predictions", str(path), "--f32"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return [json.loads(line) for line in path.read_text().splitlines()]


def auc(pairs):
    """AUC-ROC of (score, gold) pairs, ties counted half."""
    ranked = sorted(pairs)
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(1 for _, g in ranked[i:j] if g)
        i = j
    positives = sum(1 for _, g in pairs if g)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * (len(pairs) - positives))


def ensemble_score(runs, scoring):
    """Macro-F1 (single-label) or AUC (relevance) of the members' mean logits."""
    to_logit = (lambda p: math.log(max(p, 1e-30))) if scoring == "single_label" else dev_report.logit
    gold, predicted, pairs = [], [], []
    for rows in zip(*runs):
        first = rows[0]["labels"]
        mean = [sum(to_logit(row["labels"][i]["score"]) for row in rows) / len(rows) for i in range(len(first))]
        if scoring == "single_label":
            gold.append(next(label["label"] for label in first if label["gold"]))
            predicted.append(first[max(range(len(mean)), key=mean.__getitem__)]["label"])
        else:
            pairs.extend((m, label["gold"]) for m, label in zip(mean, first))
    if scoring == "single_label":
        return dev_report.macro_f1_accuracy(gold, predicted, sorted(set(gold) | set(predicted)))[0]
    return auc(pairs)


def member(spec_, out):
    """(name, model directory, suite directory) of one NAME=MODEL_DIR[|KEY=VALUE...]."""
    name, _, target = spec_.partition("=")
    model, *settings = target.split("|")
    overrides = dict(s.split("=", 1) for s in settings)
    suite = pathlib.Path(overrides.pop("suite", SUITE))
    if overrides:
        source, model = pathlib.Path(model).resolve(), out / f"model-{name}"
        model.mkdir(exist_ok=True)
        for f in source.iterdir():
            if f.name != "config.json" and not (model / f.name).exists():
                (model / f.name).symlink_to(f)
        config = json.loads((source / "config.json").read_text())
        for key, value in overrides.items():
            config["gliznet"][key] = int(value) if value.isdigit() else value
        (model / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return name, str(model), suite


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("members", nargs="+", help="NAME=MODEL_DIR[|KEY=VALUE...]")
    parser.add_argument("--out", default=str(ROOT / "runs" / "logit-ensemble"))
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = json.loads((SUITE / "suite.json").read_text())["tasks"]
    single = [t for t, v in tasks.items() if v["scoring"] == "single_label"]
    relevance = [t for t, v in tasks.items() if v["scoring"] == "relevance"]
    members = [member(spec_, out) for spec_ in args.members]
    runs = {(name, t): predictions(name, model, suite, t, tasks[t]["scoring"], out)
            for name, model, suite in members for t in single + relevance}
    print("| members | " + " | ".join(single + relevance) + " | **mean macro-F1** | mean AUC |")
    print("|---|" + "---|" * (len(single) + len(relevance) + 2))
    groups = [[m[0]] for m in members] + ([[m[0] for m in members]] if len(members) > 1 else [])
    for group in groups:
        values = [ensemble_score([runs[(n, t)] for n in group], tasks[t]["scoring"]) for t in single + relevance]
        f1, aucs = values[: len(single)], values[len(single):]
        print(f"| {' + '.join(group)} | " + " | ".join(f"{v:.3f}" for v in values)
              + f" | **{sum(f1) / len(f1):.3f}** | {sum(aucs) / len(aucs):.3f} |")


if __name__ == "__main__":
    main()
