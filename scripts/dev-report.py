#!/usr/bin/env python3
"""Evaluates models on the corpus's dev sets with `gliznet eval` and prints a Markdown table.

    scripts/dev-report.py --row NAME=MODEL[:METHOD[:quantize]] ... [--out DIR]

MODEL is a model directory or "builtin"; METHOD is gliznet (default) or bi-encoder; "quantize"
evaluates with `--quantize` (int8 encoder weights). Zero-shot
sets are scored single-label (argmax over candidates, accuracy and macro-F1, the protocol of
public zero-shot benchmarks); in-domain dev sets multi-label (micro-F1 at the model's
threshold, micro AUC-ROC, and the best micro-F1 with its threshold). A last table gives the
macro-F1 of every set, for comparing precisions. Reports land in --out
(default runs/dev-report); --reuse skips evaluations whose report is already there.
"""

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEV = ROOT / "data" / "generated" / "dev"
ZERO_SHOT = ["zeroshot-brown-fiction", "zeroshot-amazon-sentiment"]
IN_DOMAIN = ["wordnet", "gcide", "foldoc", "brown-nonfiction", "tweets", "nytEditorialSnippets", "fine-food"]


def evaluate(name, model, method, quantize, dataset, mode, out, reuse):
    report = out / f"{name}--{dataset}.json"
    if reuse and report.is_file():
        return json.loads(report.read_text())
    cmd = [str(ROOT / "target/release/gliznet"), "eval", "--data", str(DEV / f"{dataset}.jsonl"),
           "--method", method, f"--{mode}", "--report", str(report), "--batch-size", "32", "--device", "cpu"]
    if model != "builtin":
        cmd += ["--model", model]
    if quantize:
        cmd.append("--quantize")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(report.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", action="append", required=True, help="NAME=MODEL[:METHOD[:quantize]]")
    parser.add_argument("--out", default=str(ROOT / "runs" / "dev-report"))
    parser.add_argument("--reuse", action="store_true", help="reuse reports already in --out")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in args.row:
        name, _, target = spec.partition("=")
        model, method, flag = (target.split(":") + ["", ""])[:3]
        method = method or "gliznet"
        if flag not in ("", "quantize"):
            sys.exit(f"--row {spec}: unknown flag {flag!r} (only quantize)")
        print(f"evaluating {name} ...", file=sys.stderr)
        zero = {d: evaluate(name, model, method, flag, d, "single-label", out, args.reuse) for d in ZERO_SHOT}
        dom = {d: evaluate(name, model, method, flag, d, "multi-label", out, args.reuse) for d in IN_DOMAIN}
        rows.append((name, zero, dom))

    lines = ["Zero-shot dev sets (single-label: argmax over the candidates)", "",
             "| model | " + " | ".join(f"{d} acc / macro-F1" for d in ZERO_SHOT) + " | mean macro-F1 |",
             "|---|" + "---|" * (len(ZERO_SHOT) + 1)]
    for name, zero, _ in rows:
        cells = [f"{zero[d]['accuracy']:.3f} / {zero[d]['macro_f1']:.3f}" for d in ZERO_SHOT]
        mean = sum(zero[d]["macro_f1"] for d in ZERO_SHOT) / len(ZERO_SHOT)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} |")
    lines += ["", "In-domain dev sets (multi-label: micro-F1 at the model's threshold / micro AUC-ROC / "
              "best micro-F1 and its threshold)", "",
              "| model | " + " | ".join(IN_DOMAIN) + " |", "|---|" + "---|" * len(IN_DOMAIN)]
    for name, _, dom in rows:
        cells = []
        for d in IN_DOMAIN:
            m = dom[d]["multi_label"]
            auc = m["micro_auc_roc"]
            best = dom[d]["best_threshold"]
            cells.append(f"{m['micro_f1']:.3f} / {auc:.3f} / {best['f1']:.3f} at {best['threshold']:.2f}"
                         if auc is not None else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Macro-F1 per dev set (zero-shot: single-label; in-domain: multi-label at the model's threshold)", "",
              "| model | " + " | ".join(ZERO_SHOT + IN_DOMAIN) + " |", "|---|" + "---|" * len(ZERO_SHOT + IN_DOMAIN)]
    for name, zero, dom in rows:
        cells = [f"{zero[d]['single_label']['macro_f1']:.4f}" for d in ZERO_SHOT]
        cells += [f"{dom[d]['multi_label']['macro_f1']:.4f}" for d in IN_DOMAIN]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
