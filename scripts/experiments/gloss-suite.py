#!/usr/bin/env python3
"""A copy of the dev suite with every label that is a WordNet 3.0 noun (or a plural of one)
read as "label: its first sense's gloss" ("sports: an active diversion requiring physical
exertion and competition"), for the label-description ablation with
scripts/experiments/logit-ensemble.py. Prints the gloss chosen for each label.

    scripts/experiments/gloss-suite.py SUITE_DIR OUT_DIR

Needs /usr/share/wordnet (Debian wordnet-base, installed by scripts/build-corpus.sh).
"""

import json
import pathlib
import sys

WORDNET = pathlib.Path("/usr/share/wordnet")


def first_senses():
    """noun lemma -> byte offset of its most frequent sense in data.noun"""
    offsets = {}
    with open(WORDNET / "index.noun", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("  "):
                fields = line.split()
                pointers = int(fields[3])
                offsets[fields[0]] = int(fields[4 + pointers + 2])
    return offsets


def main():
    suite, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    offsets = first_senses()
    data = open(WORDNET / "data.noun", "rb")

    def gloss(label):
        key = label.lower().replace(" ", "_")
        plural = [key[:-1], key[:-2], key[:-3] + "y"] if key.endswith("s") else []
        for lemma in [key] + plural:
            if lemma in offsets:
                data.seek(offsets[lemma])
                line = data.readline().decode("utf-8", "replace")
                return line.partition(" | ")[2].split('; "')[0].strip().rstrip(";").strip()
        return None

    chosen = {}
    for task in sorted(suite.glob("*.jsonl")):
        rows = []
        for line in task.read_text().splitlines():
            row = json.loads(line)
            for key in ("labels", "not_labels"):
                row[key] = [f"{l}: {chosen[l]}" if chosen.setdefault(l, gloss(l)) else l for l in row[key]]
            rows.append(json.dumps(row, ensure_ascii=False))
        (out / task.name).write_text("\n".join(rows) + "\n")
    (out / "suite.json").write_text((suite / "suite.json").read_text())
    for label, text in sorted(chosen.items()):
        print(f"{label}: {text}")


if __name__ == "__main__":
    main()
