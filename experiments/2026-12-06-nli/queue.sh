#!/usr/bin/env bash
# Rows A, B, C of experiments/2026-12-06-nli/PLAN.md, one after another; each trained, interpolated, scored.
set -u
cd /work/main
G=runs/gliznet-2026-12-06; export GLIZNET_BIN=$PWD/$G
T="[CLS] This text is about {label}."
row() { # name attention extra-set-args...
  name=$1; att=$2; shift 2
  [ -f runs/$name.report.json ] && return
  if [ ! -f runs/$name/model.safetensors ]; then
    $G train --config configs/minilm-cosine-v2.json --set label_attention=$att --set output_dir=runs/$name "$@" --output runs/$name $( [ -d runs/$name ] && echo --resume ) > runs/$name.train.log 2>&1 || { echo "train $name failed"; return; }
  fi
  [ -d runs/untrained-$att ] || python3 scripts/untrained-model.py models/all-MiniLM-L6-v2 runs/untrained-$att --label-attention $att --label-template "$T"
  [ -d runs/$name-wise ] || .venv/bin/python scripts/interpolate-model.py runs/untrained-$att runs/$name runs/$name-wise --alpha 0.5
  python3 scripts/dev-report.py --row $name-wise=runs/$name-wise --json runs/$name.report.json > runs/$name.report.txt 2>&1
}
NLI="--set nli_file=data/generated/train-snli-neutral-negative.jsonl --set nli_share=0.5 --set max_label_tokens=24"
row nli-independent-neg independent $NLI
row nli-full-neg full $NLI
row full-nonli full
