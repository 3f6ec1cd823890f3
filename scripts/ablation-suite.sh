#!/usr/bin/env bash
# One ablation row on the dev suite: train the recipe of configs/minilm-cosine.json with the
# given overrides for STEPS steps (validation only at the end, so the model kept is the last
# one), then score it with scripts/dev-report.py. Continues an interrupted run (--resume).
#
#   scripts/ablation-suite.sh NAME STEPS [key=value ...]
#   e.g. scripts/ablation-suite.sh mean-readout 400 readout=mean
set -euo pipefail
name="$1"; steps="$2"; shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run="$root/runs/ablation-$name"
gliznet="${CARGO_TARGET_DIR:-$root/target}/release/gliznet"
sets=(--set "max_steps=$steps" --set "eval_every=$steps" --set "save_every=100")
for kv in "$@"; do sets+=(--set "$kv"); done
resume=()
[[ -d "$run/checkpoint" ]] && resume=(--resume)
if [[ ! -f "$run/done" ]]; then
  "$gliznet" train --config "$root/configs/minilm-cosine.json" "${sets[@]}" --output "$run" "${resume[@]}"
  touch "$run/done"
fi
python3 "$root/scripts/dev-report.py" --row "$name=$run" --out "$run/suite" --reuse --json "$run/suite.json"
