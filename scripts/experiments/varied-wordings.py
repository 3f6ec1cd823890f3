#!/usr/bin/env python3
"""The varied-label-wordings ablation's training file: a training file whose WordNet examples
name their synsets by any of their lemmas, not always the first. The corpus labels a gloss
with its synset's first lemma ("car"), its parent's first lemma and its lexicographer file,
and names sister synsets by their first lemmas as negatives; here each such label becomes,
with probability --rate, another lemma of the same synset ("automobile", "motorcar"), so
that the model meets synonyms and rarer wordings of a label, on both sides (positives and
negatives alike, so that the wording itself never tells which is which).

    scripts/experiments/varied-wordings.py TRAIN_IN TRAIN_OUT [--rate 0.5] [--seed 16]

Needs /usr/share/wordnet (Debian wordnet-base, installed by scripts/build-corpus.sh).
"""

import json
import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mix import arguments, build  # noqa: E402


def neighbourhoods(synsets):
    """Each gloss's synsets (one gloss may define several)."""
    by_gloss = {}
    for key, synset in synsets.items():
        by_gloss.setdefault(synset["definition"], []).append(key)
    return by_gloss


def related(synsets, key):
    """Every synset whose first lemma the corpus can have used as a label of KEY's gloss:
    itself, its parent, the parent's other children and the grandparent's other children."""
    keys = {key}
    for parent in synsets[key]["hypernyms"][:1]:
        if parent not in synsets:
            continue
        keys.add(parent)
        keys.update(synsets[parent]["hyponyms"])
        for grandparent in synsets[parent]["hypernyms"][:1]:
            if grandparent in synsets:
                keys.update(synsets[grandparent]["hyponyms"])
    return keys


def label_key(label):
    """gliznet's label identity (`label_key`): case, `_` and `-` ignored."""
    return " ".join(label.lower().replace("_", " ").replace("-", " ").split())


def vary(row, synsets, by_gloss, rate, rng):
    keys = by_gloss.get(row["text"])
    if not keys:
        return row, 0
    lemmas = {}
    for key in keys:
        for other in sorted(related(synsets, key)):  # sorted: the same file whatever the hash seed
            if other in synsets:
                lemmas.setdefault(synsets[other]["lemmas"][0], synsets[other]["lemmas"])
    changed = 0
    used = {label_key(l) for l in row["labels"] + row["not_labels"]}
    out = {"text": row["text"], "labels": [], "not_labels": []}
    for side in ("labels", "not_labels"):
        for label in row[side]:
            choices = [l for l in lemmas.get(label, []) if label_key(l) not in used]
            if choices and rng.random() < rate:
                new = rng.choice(choices)
                used.add(label_key(new))
                out[side].append(new)
                changed += 1
            else:
                out[side].append(label)
    return out, changed


def main():
    args = arguments(__doc__, seed=16, wordnet=True,
                     extra=lambda parser: parser.add_argument("--rate", type=float, default=0.5))
    rng = random.Random(args.seed)
    synsets = build.read_wordnet(args.wordnet)
    by_gloss = neighbourhoods(synsets)
    rows, changed, touched = [], 0, 0
    with open(args.train_in, encoding="utf-8") as f:
        for line in f:
            row, n = vary(json.loads(line), synsets, by_gloss, args.rate, rng)
            rows.append(row)
            changed += n
            touched += n > 0
    build.write_jsonl(args.train_out, rows)
    print(f"{len(rows)} examples, {touched} with a label reworded, {changed} labels reworded", file=sys.stderr)


if __name__ == "__main__":
    main()
