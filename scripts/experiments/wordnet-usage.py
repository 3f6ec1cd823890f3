#!/usr/bin/env python3
"""The WordNet usage-sentence ablation's training file: a training file plus COUNT of WordNet
3.0's quoted usage sentences ("he ate a big dinner"), each labelled with the readable
lexicographer file of the sense it illustrates ("food"), four other files of the same part of
speech as negatives. Real sentences under topic-like labels, which the corpus otherwise lacks.

    scripts/experiments/wordnet-usage.py TRAIN_IN TRAIN_OUT [--count 10000] [--seed 15]

Needs /usr/share/wordnet (Debian wordnet-base, installed by scripts/build-corpus.sh).
"""

import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mix import add_to_training_file, arguments, build  # noqa: E402


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
    args = arguments(__doc__, seed=15, wordnet=True,
                     extra=lambda parser: parser.add_argument("--count", type=int, default=10000))
    rng = random.Random(args.seed)
    usage = usage_rows(args.wordnet, rng)
    rng.shuffle(usage)
    total = add_to_training_file(args.train_in, args.train_out, usage[: args.count], rng)
    print(f"{len(usage)} usage sentences, {min(args.count, len(usage))} added: {total} examples", file=sys.stderr)


if __name__ == "__main__":
    main()
