#!/usr/bin/env python3
"""The work behind bench/run.py's prediction cells: floating-point operations per text of the
all-MiniLM-L6-v2 encoder for each text file and K (batch 16), packed and padded as the
PyTorch reference packs them (bench/reference.py), and, given a results JSON of run.py, the
rate each implementation reached (GFLOP/s = FLOPs per text × texts/s).

    bench/.venv/bin/python bench/flops.py [bench/results-….json]

Per padded sequence of L tokens, per layer: the six dense products 2·L·(4·h² + 2·h·f) and
the attention products 2·2·L²·h (q·kᵀ and probabilities·v), h = 384, f = 1,536, 6 layers.
Embeddings, softmax, LayerNorm, GELU and the head are left out (under 2%).
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from reference import Packer, read_texts  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "all-MiniLM-L6-v2"
HIDDEN, FFN, LAYERS, BATCH = 384, 1536, 6, 16


def sequence_flops(length):
    dense = 2 * length * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)
    attention = 2 * 2 * length * length * HIDDEN
    return LAYERS * (dense + attention)


def flops_per_text(packer, texts, label_ids):
    total = 0
    for i in range(0, len(texts), BATCH):
        chunks = sorted((c for t in texts[i: i + BATCH] for c in packer.encode(t, label_ids)), key=lambda c: len(c[0]))
        for j in range(0, len(chunks), BATCH):
            group = chunks[j: j + BATCH]
            padded = max(len(c[0]) for c in group)
            total += len(group) * sequence_flops(padded)
    return total / len(texts)


def main():
    packer = Packer(str(MODEL))
    labels = [l for l in open(ROOT / "bench" / "labels.txt", encoding="utf-8").read().splitlines() if l.strip()]
    work = {}
    for name in ("texts-short.jsonl", "texts-long.jsonl"):
        texts = read_texts(str(ROOT / "bench" / name))
        for k in (5, 20, 50):
            work[(name, k)] = flops_per_text(packer, texts, packer.encode_labels(labels[:k]))
    results = json.loads(pathlib.Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else None
    names = sorted(results["predict"]) if results else []
    print("| texts | K | GFLOP per text | " + " | ".join(f"{n} GFLOP/s" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for (name, k), flops in work.items():
        cells = []
        for n in names:
            cell = next(c for c in results["predict"][n] if c["k"] == k and c["batch"] == BATCH and c["texts"].endswith(name))
            cells.append(f"{flops * cell['texts_per_second'] / 1e9:.0f}")
        print(f"| {name} | {k} | {flops / 1e9:.2f} | " + " | ".join(cells) + (" |" if cells else ""))


if __name__ == "__main__":
    main()
