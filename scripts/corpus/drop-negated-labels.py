#!/usr/bin/env python3
"""Writes a copy of a training file without negated label wordings ("not recommended", "not a
perfect score", "less than five stars", any label starting with "not " or "less than "), for
the ablation row *sep-noproj-distill-nonegated* of docs/experiments.md. Examples left without a positive
label are dropped. Prints the counts.

    scripts/corpus/drop-negated-labels.py data/generated/train.jsonl data/generated/train-nonegated.jsonl
"""
import json
import os
import sys


def negated(label: str) -> bool:
    return label.lower().startswith(("not ", "less than "))


def main() -> None:
    source, target = sys.argv[1:3]
    kept = dropped_examples = dropped_labels = 0
    with open(source, encoding="utf-8") as src, open(target + ".tmp", "w", encoding="utf-8") as dst:
        for line in src:
            row = json.loads(line)
            labels = [label for label in row["labels"] if not negated(label)]
            not_labels = [label for label in row["not_labels"] if not negated(label)]
            dropped_labels += len(row["labels"]) + len(row["not_labels"]) - len(labels) - len(not_labels)
            if not labels:
                dropped_examples += 1
                continue
            row["labels"], row["not_labels"] = labels, not_labels
            dst.write(json.dumps(row, ensure_ascii=False) + "\n")
            kept += 1
    os.replace(target + ".tmp", target)
    print(f"{kept} examples kept, {dropped_examples} dropped, {dropped_labels} labels removed")


if __name__ == "__main__":
    main()
