#!/usr/bin/env python3
"""Prediction speed of gliznet models side by side: a candidate model against a reference model
(by default the built-in one, assets/default-model), same run, same texts and labels, on the
same program (examples/throughput, the gliznet side of bench/run.py). A model's attention mode,
readout and label template change its cost on the same backbone; this measures by how much.

    python3 bench/models.py CANDIDATE_DIR [--reference DIR] [--rounds 3] [--json FILE]

Rounds alternate the two models; each cell is the median over the rounds, and the ratio the
median of the per-round ratios. Waits for a quiet machine like bench/run.py (exit 3 if it stays
busy, unless --allow-busy) and records the load before and after.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys

from run import BENCH, ROOT, TEXTS, combine_rounds, json_lines, machine, run, wait_until_quiet


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidate", type=pathlib.Path)
    parser.add_argument("--reference", type=pathlib.Path, default=ROOT / "assets" / "default-model")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-load", type=float, default=0.5)
    parser.add_argument("--allow-busy", action="store_true")
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    args.candidate, args.reference = args.candidate.resolve(), args.reference.resolve()
    for model in (args.candidate, args.reference):
        if not (model / "config.json").is_file():
            sys.exit(f"{model}: not a model directory (no config.json)")
    print("building ...", file=sys.stderr)
    run(["cargo", "build", "--release", "--example", "throughput"])
    throughput = str(ROOT / "target/release/examples/throughput")
    texts = [str(p) for p in TEXTS.values()]
    results = {"machine": machine(), "candidate": str(args.candidate), "reference": str(args.reference)}
    results["load_before"] = wait_until_quiet(args.max_load, 180, args.allow_busy)
    commands = {name: [throughput, str(model), str(BENCH / "labels.txt"), *texts, "--reps", str(args.reps),
                       "--batches", "16"]
                for name, model in (("candidate", args.candidate), ("reference", args.reference))}
    rounds = [{name: json_lines(run(cmd).stdout) for name, cmd in commands.items()} for _ in range(args.rounds)]
    results["load_after"] = os.getloadavg()[0]
    cells = {name: combine_rounds([r[name] for r in rounds]) for name in commands}
    for i, cell in enumerate(cells["candidate"]):
        cell["ratio"] = statistics.median(r["candidate"][i]["texts_per_second"] / r["reference"][i]["texts_per_second"]
                                          for r in rounds)
    results["predict"] = cells
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    names = {str(p): name for name, p in TEXTS.items()}
    print(f"Machine: {results['machine']}; 1-minute load {results['load_before']:.2f} before, "
          f"{results['load_after']:.2f} after; batch 16, texts/s (median of {args.rounds} rounds)\n")
    print(f"| texts | K | reference ({args.reference.name}) | candidate ({args.candidate.name}) | ratio |")
    print("|---|---|---|---|---|")
    for ref, cand in zip(cells["reference"], cells["candidate"]):
        print(f"| {names.get(ref['texts'], ref['texts'])} | {ref['k']} | {ref['texts_per_second']:.1f} | "
              f"{cand['texts_per_second']:.1f} | {cand['ratio']:.2f}× |")


if __name__ == "__main__":
    main()
