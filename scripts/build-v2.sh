#!/usr/bin/env bash
# Builds the built-in model gliznet-minilm-l6-cosine-v2 (MODEL.md) from the backbone and the
# corpus (scripts/fetch-backbone.sh, scripts/build-corpus.sh first): the training file without
# negated label wordings, 250 steps of configs/minilm-cosine-v2.json (independent label
# attention, labels read as "[CLS] This text is about {label}."), the untrained model of the
# same architecture, their weights averaged (WiSE-FT, alpha 0.5), packaged like the built-in
# model (f16, threshold 0.5) in OUT_DIR: use it with `--model OUT_DIR`, or copy its files to
# assets/default-model and rebuild. About 15 minutes on two CPU cores.
#
#   scripts/build-v2.sh OUT_DIR [RUNS_DIR]     # RUNS_DIR (default runs/) keeps the steps
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:?usage: scripts/build-v2.sh OUT_DIR [RUNS_DIR]}"
runs="${2:-$root/runs}"
for dir in "$out" "$runs/minilm-cosine-v2" "$runs/untrained-independent-v2" "$runs/minilm-cosine-v2-wise"; do
  [[ ! -e "$dir" ]] || { echo "error: $dir exists; choose another directory" >&2; exit 2; }
done
gliznet="${CARGO_TARGET_DIR:-$root/target}/release/gliznet"
python="${BENCH_PYTHON:-$root/bench/.venv/bin/python}"  # numpy and safetensors
template="[CLS] This text is about {label}."
cd "$root"

[[ -f data/generated/train-nonegated.jsonl ]] ||
  python3 scripts/corpus/drop-negated-labels.py data/generated/train.jsonl data/generated/train-nonegated.jsonl
"$gliznet" train --config configs/minilm-cosine-v2.json --output "$runs/minilm-cosine-v2"
python3 scripts/untrained-model.py models/all-MiniLM-L6-v2 "$runs/untrained-independent-v2" \
  --label-attention independent --label-template "$template"
python3 scripts/interpolate-model.py "$runs/untrained-independent-v2" "$runs/minilm-cosine-v2" \
  "$runs/minilm-cosine-v2-wise" --alpha 0.5
"$python" scripts/package-default-model.py "$runs/minilm-cosine-v2-wise" --threshold 0.5 --out "$out"
