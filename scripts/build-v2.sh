#!/usr/bin/env bash
# Builds the candidate model gliznet-minilm-l6-cosine-v2 of MODEL.md (stop 16) from the
# backbone and the corpus (scripts/fetch-backbone.sh, scripts/build-corpus.sh first): the
# training file without negated label wordings, 250 steps of configs/minilm-cosine-v2.json,
# the untrained separate-attention model with the same label template, their weights averaged
# (WiSE-FT, alpha 0.5), packaged like the built-in model (f16, threshold 0.5) in OUT_DIR, for
# `--model OUT_DIR`. About 15 minutes on two CPU cores.
#
#   scripts/build-v2.sh OUT_DIR [RUNS_DIR]     # RUNS_DIR (default runs/) keeps the steps
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:?usage: scripts/build-v2.sh OUT_DIR [RUNS_DIR]}"
runs="${2:-$root/runs}"
for dir in "$out" "$runs/minilm-cosine-v2" "$runs/untrained-separate-v2" "$runs/minilm-cosine-v2-wise"; do
  [[ ! -e "$dir" ]] || { echo "error: $dir exists; choose another directory" >&2; exit 2; }
done
gliznet="${CARGO_TARGET_DIR:-$root/target}/release/gliznet"
python="${BENCH_PYTHON:-$root/bench/.venv/bin/python}"  # numpy and safetensors
template="This text is about {label}."
cd "$root"

[[ -f data/generated/train-nonegated.jsonl ]] ||
  python3 scripts/corpus/drop-negated-labels.py data/generated/train.jsonl data/generated/train-nonegated.jsonl
"$gliznet" train --config configs/minilm-cosine-v2.json --output "$runs/minilm-cosine-v2"
python3 scripts/untrained-model.py models/all-MiniLM-L6-v2 "$runs/untrained-separate-v2" \
  --label-attention separate --label-template "$template"
python3 scripts/interpolate-model.py "$runs/untrained-separate-v2" "$runs/minilm-cosine-v2" \
  "$runs/minilm-cosine-v2-wise" --alpha 0.5
"$python" scripts/package-default-model.py "$runs/minilm-cosine-v2-wise" --threshold 0.5 --out "$out"
