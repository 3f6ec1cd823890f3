#!/usr/bin/env python3
"""The WordNet usage-sentence ablation's training file: a training file plus COUNT of WordNet
3.0's quoted usage sentences ("he ate a big dinner"), each labelled with the readable
lexicographer file of the sense it illustrates ("food"), four other files of the same part of
speech as negatives. Real sentences under topic-like labels, which the corpus otherwise lacks.

    scripts/experiments/wordnet-usage.py TRAIN_IN TRAIN_OUT [--count 10000] [--seed 15]

Needs /usr/share/wordnet (Debian wordnet-base, installed by scripts/build-corpus.sh).
"""

import argparse
import json
import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "corpus"))
import build  # noqa: E402  (the corpus builder: LEXNAMES, LEXFILE_LABELS, example)


def usage_rows(wordnet_dir, rng):
    categories = {}
    for name, readable in build.LEXFILE_LABELS.items():
        categories.setdefault(name.split(".")[0], []).append(readable)
    rows = []
    for (pos, _), synset in build.read_wordnet(wordnet_dir).items():
        category = build.LEXFILE_LABELS.get(synset["lexname"])
        if not category:
            continue
        for text in synset["examples"]:
            text = " ".join(text.split())
            if len(text.split()) >= 4:
                others = [c for c in categories["noun" if pos == "n" else "verb"] if c != category]
                rows.append(build.example(text, [category], rng.sample(others, 4)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_in", type=pathlib.Path)
    parser.add_argument("train_out", type=pathlib.Path)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--wordnet", type=pathlib.Path, default=pathlib.Path("/usr/share/wordnet"))
    args = parser.parse_args()
    if args.train_out.exists():
        sys.exit(f"error: {args.train_out} exists")
    rng = random.Random(args.seed)
    usage = usage_rows(args.wordnet, rng)
    rng.shuffle(usage)
    with open(args.train_in, encoding="utf-8") as f:
        mix = [json.loads(line) for line in f] + usage[: args.count]
    rng.shuffle(mix)
    build.write_jsonl(args.train_out, mix)
    print(f"{len(usage)} usage sentences, {min(args.count, len(usage))} added: {len(mix)} examples", file=sys.stderr)


if __name__ == "__main__":
    main()
