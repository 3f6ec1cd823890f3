#!/usr/bin/env python3
"""The reference-prior ablation: a label-prior correction that needs neither the call's other
texts (as the z-scores of `dev-report.py` option `zscore` do) nor an empty text (as
`--subtract-label-prior` does). Each single-label task's labels are scored on the texts of
the training-time validation set (data/generated/validation-mix.jsonl, a sample of the
training mix, never the suite), and each label's logit on the suite is then centred on its
mean over those texts ("centred") or standardised by their mean and spread ("z").

    scripts/experiments/reference-prior.py --row NAME [--model DIR] [--out DIR]

Reads the suite predictions of row NAME from --out (`dev-report.py --out DIR --row NAME=…`
writes them; default runs/dev-report) and prints macro-F1 per task and the mean for the
row as it is, centred and standardised. --model is the model the row used (default: the
built-in model).
"""

import argparse
import importlib.util
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("dev_report", ROOT / "scripts" / "dev-report.py")
dev_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dev_report)


def reference_statistics(labels, texts, model, work):
    """Each label's mean and spread of logits over TEXTS, scored by `gliznet eval`."""
    data, predictions = work / "reference.jsonl", work / "reference.predictions.jsonl"
    data.write_text("".join(json.dumps({"text": t, "labels": labels[:1], "not_labels": labels[1:]}) + "\n"
                            for t in texts))
    command = [dev_report.BIN, "eval", "--data", str(data), "--single-label", "--f32", "--batch-size", "32",
               "--predictions", str(predictions), "--report", str(work / "reference.report.json")]
    if model:
        command += ["--model", model]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        sys.exit(f"{' '.join(command)}: {finished.stderr.strip()}")
    return dev_report.label_statistics(dev_report.label_logits(predictions), labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", required=True)
    parser.add_argument("--model")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "runs" / "dev-report")
    args = parser.parse_args()
    suite = json.loads((dev_report.SUITE / "suite.json").read_text())["tasks"]
    texts = [json.loads(line)["text"] for line in
             (ROOT / "data" / "generated" / "validation-mix.jsonl").read_text().splitlines()]
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for task, info in suite.items():
            if info["scoring"] != "single_label":
                continue
            predictions = args.out / f"{args.row}--{task}.predictions.jsonl"
            _, gold, _, labels = dev_report.single_label_decisions(predictions, zscore=False)
            mean, spread = reference_statistics(info["labels"], texts, args.model, pathlib.Path(work))
            scores = dev_report.label_logits(predictions)
            readings = {
                "as is": lambda s, l: s[l],
                "centred": lambda s, l: s[l] - mean[l],
                "z": lambda s, l: (s[l] - mean[l]) / spread[l],
            }
            results[task] = {
                name: dev_report.macro_f1_accuracy(gold, [max(labels, key=lambda l: read(s, l)) for s in scores],
                                                   labels)[0]
                for name, read in readings.items()}
            print(task, " ".join(f"{name} {f1:.3f}" for name, f1 in results[task].items()), flush=True)
    for name in ("as is", "centred", "z"):
        print(f"mean macro-F1, {name}: {statistics.fmean(r[name] for r in results.values()):.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
