#!/usr/bin/env bash
# Longer ablation runs on a lent GPU, side by side, scored there on the dev suite. Each
# variant trains the recipe of configs/minilm-cosine.json (v1's) with its overrides from the
# backbone in a `scripts/gpu-check.sh pack` folder, for the same number of steps; then every
# model is scored with scripts/dev-report.py on the GPU. The best by suite mean comes back in
# f16, packed into parts of 15 MB (the device tool returns files of at most 16 MiB).
#
#   scripts/gpu-ablation.sh PACK_DIR --steps N --deadline EPOCH_SECONDS [--out DIR] NAME=key=value,key=value ...
#   e.g. scripts/gpu-ablation.sh .gpu-pack --steps 3000 --deadline $(( $(date +%s) + 400 )) \
#          first-token= first-token-shared=shared_label_positions=true
#
# Everything comes from the pack: the backbone, the corpus (@DATA@ in an override is its
# folder; train_file defaults to its train.jsonl) and the suite. Runs that pass the deadline are
# stopped and left out of the report. Here, put back a returned model with:
#   cat DIR/model.tar.xz.part-* | tar -xJ -C runs/
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
pack="$(cd "$1" && pwd)"; shift
steps="" deadline="" out="${OUT:-$pack/out}" device="${GLIZNET_DEVICE:-cuda}"
variants=()
while (($#)); do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --deadline) deadline="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *=*) variants+=("$1"); shift ;;
    *) echo "gpu-ablation: unexpected argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$steps" && -n "$deadline" && ${#variants[@]} -gt 0 ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
mkdir -p "$out"
exec > >(tee -a "$out/gpu-ablation.log") 2>&1
work="$(mktemp -d)"
scripts/gpu-check.sh unpack "$pack" "$work/pack"
pack="$work/pack"
bin="$pack/gliznet"
LD_LIBRARY_PATH="$(scripts/gpu-check.sh libs "$device")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
data="$pack/corpus"
suite="$work/suite"
mkdir -p "$suite"
tar -C "$work" -xJf "$pack/suite.tar.xz"

left() { echo $(( deadline - $(date +%s) )); }
eval_reserve=100  # seconds kept for scoring the suite after training
echo "== $steps steps each, ${#variants[@]} runs side by side, $(left) s to the deadline"
pids=() names=()
for variant in "${variants[@]}"; do
  name="${variant%%=*}" overrides="${variant#*=}"
  sets=(--set "backbone=$pack/backbone" --set "train_file=$data/train.jsonl"
        --set "validation_file=$data/validation-mix.jsonl" --set "max_steps=$steps"
        --set "eval_every=$steps" --set "save_every=$steps" --set "epochs=1000")
  IFS=',' read -ra kvs <<<"$overrides"
  for kv in "${kvs[@]}"; do
    [[ -z "$kv" ]] && continue
    kv="${kv//@DATA@/$data}"
    sets+=(--set "$kv")
  done
  echo "$name: ${sets[*]}"
  timeout "$(( $(left) - eval_reserve ))" "$bin" train --config configs/minilm-cosine.json "${sets[@]}" \
    --output "$work/$name" --device "$device" >"$work/$name.log" 2>&1 &
  pids+=($!) names+=("$name")
done
finished=()
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    finished+=("${names[$i]}")
    tail -n 3 "$work/${names[$i]}/metrics.jsonl"
  else
    echo "${names[$i]}: stopped or failed"; tail -n 5 "$work/${names[$i]}.log"
  fi
done
((${#finished[@]})) || { echo "no run finished"; exit 1; }

echo "== dev suite on $device ($(left) s left)"
report_pids=()
for name in "${finished[@]}"; do
  GLIZNET_BIN="$bin" GLIZNET_DEVICE="$device" GLIZNET_SUITE="$suite" timeout "$(left)" python3 scripts/dev-report.py \
    --row "$name=$work/$name" --out "$work/report-$name" --json "$work/suite-$name.json" \
    >"$work/report-$name.md" 2>"$work/report-$name.err" &
  report_pids+=($!)
done
for i in "${!report_pids[@]}"; do wait "${report_pids[$i]}" || cat "$work/report-${finished[$i]}.err"; done
python3 - "$work" "$out/gpu-ablation.json" "$steps" "${finished[@]}" <<'PY'
import json, pathlib, sys
work, dest, steps, names = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
rows, metrics = {}, {}
for name in names:
    path = work / f"suite-{name}.json"
    if path.is_file():
        rows.update(json.loads(path.read_text()))
    metrics[name] = [json.loads(l) for l in (work / name / "metrics.jsonl").read_text().splitlines() if l.strip()]
pathlib.Path(dest).write_text(json.dumps({"steps": steps, "rows": rows, "metrics": metrics}, indent=1) + "\n")
for name, row in sorted(rows.items(), key=lambda r: -r[1]["mean_macro_f1"]):
    print(f"{name}: mean macro-F1 {row['mean_macro_f1']:.3f}, mean relevance AUC {row['mean_relevance_auc']:.3f}")
best = max(rows, key=lambda n: rows[n]["mean_macro_f1"]) if rows else ""
(work / "best").write_text(best)
PY
best="$(cat "$work/best")"
[[ -n "$best" ]] || exit 1
echo "== returning $best in f16"
python3 - "$work/$best" "$work/export/$best" <<'PY'
import json, pathlib, shutil, sys
import numpy as np
from safetensors.numpy import load_file, save_file
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dst.mkdir(parents=True)
save_file({k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in load_file(src / "model.safetensors").items()},
          dst / "model.safetensors")
for f in src.iterdir():
    if f.is_file() and f.name != "model.safetensors":
        shutil.copy(f, dst / f.name)
PY
tar -C "$work/export" -cJf - "$best" | split -b 15000000 - "$out/model.tar.xz.part-"
ls -la "$out"
