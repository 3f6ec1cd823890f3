#!/usr/bin/env bash
# The GPU check, in two halves: `pack` here (builds the CUDA binary and gathers what the check
# needs into one folder under 64 MiB), `run` on a machine with an NVIDIA GPU and no Rust (the
# lent H100/H200: driver 580, PyTorch with CUDA 13 libraries in its Python packages).
#
#   scripts/gpu-check.sh pack DIR [--prebuilt TARGET_DIR]
#   scripts/gpu-check.sh run DIR [--device cuda|cpu] [--train-steps N] [--out DIR]
#
# `pack` needs no Python package (the f16 backbone is written with the standard library);
# `--prebuilt` takes gliznet and examples/throughput from TARGET_DIR/release (built there with
# --features cuda) instead of building them, as CI does with its own CUDA build (which has no
# throughput: run's step 4 then says so).
# GPU_CHECK_XZ_LEVEL overrides the xz presets (CI's 0 packs in seconds what 9 packs in minutes).
#
# `run` compares CPU and GPU scores (64 texts x 20 labels) and one training step (loss and
# gradient norm, dropout off), trains N steps on the GPU (loss must fall), and measures
# prediction texts/s (K = 5, 20, 50; batch 16 and 64) and training examples/s beside the PyTorch
# reference (bench/reference.py) on the same GPU. It writes gpu-check.json and a log under
# --out (default $OUT, else DIR/out) and exits 1 when a comparison fails. `--device cpu` is the
# stand-in that runs every step with the CPU in the GPU's place, to test the script itself
# (here, the CUDA binary starts with the stub driver of scripts/cuda-toolkit.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SCORE_TOLERANCE=1e-3  # max |score difference|, CPU vs GPU (f32 sums in another order)
STEP_TOLERANCE=1e-3   # relative difference of one step's loss and gradient norm

# xz at preset $1, or GPU_CHECK_XZ_LEVEL's.
xz_pack() { local level="$1"; shift; xz -T0 "-${GPU_CHECK_XZ_LEVEL:-$level}" "$@"; }

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

pack() {
  local dir="$1" prebuilt="${2:-}"
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  [[ -f models/all-MiniLM-L6-v2/model.safetensors ]] || scripts/fetch-backbone.sh
  [[ -f data/generated/train.jsonl ]] || scripts/build-corpus.sh
  [[ -f data/generated/suite/suite.json ]] || scripts/build-dev-suite.sh

  local target
  if [[ -n "$prebuilt" ]]; then
    target="$(cd "$prebuilt" && pwd)"
    echo "== CUDA binaries from $target/release (not built here)" >&2
  else
    echo "== CUDA build (without the built-in model)" >&2
    # shellcheck disable=SC1090
    . <(scripts/cuda-toolkit.sh)
    target="${CUDA_TARGET_DIR:-$root/target/cuda}"
    GLIZNET_NO_BUILTIN_MODEL=1 CARGO_TARGET_DIR="$target" \
      cargo build --release --features cuda --bin gliznet --example throughput >&2
  fi
  for bin in gliznet examples/throughput; do
    if [[ -n "$prebuilt" && "$bin" != gliznet && ! -f "$target/release/$bin" ]]; then
      echo "note: no $target/release/$bin: the pack has none" >&2
      continue
    fi
    strip -o "$dir/$(basename "$bin")" "$target/release/$bin"
    xz_pack 9 -f "$dir/$(basename "$bin")"
  done

  echo "== backbone in f16" >&2
  # safetensors by hand: an 8-byte little-endian header size, a JSON header (dtype, shape and
  # data_offsets of each tensor), the data. F32 tensors become F16 (struct's "e": IEEE half,
  # rounded to nearest even, as numpy's astype), the others are copied; the tensors are laid
  # out widest type first, as safetensors' save_file does.
  python3 - models/all-MiniLM-L6-v2 "$dir/backbone" <<'PY'
import json, math, pathlib, shutil, struct, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
SIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
        "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}
CHUNK = 1 << 20  # values converted at once
with open(src / "model.safetensors", "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
    base = 8 + n
    meta = header.pop("__metadata__", None)
    dtype = {k: ("F16" if v["dtype"] == "F32" else v["dtype"]) for k, v in header.items()}
    names = sorted(header, key=lambda k: (-SIZE[dtype[k]], k))
    layout, offset = ({"__metadata__": meta} if meta is not None else {}), 0
    for k in names:
        size = math.prod(header[k]["shape"]) * SIZE[dtype[k]]
        layout[k] = {"dtype": dtype[k], "shape": header[k]["shape"], "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(layout, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(out / "model.safetensors", "wb") as dst:
        dst.write(struct.pack("<Q", len(head)) + head)
        for k in names:
            begin, end = header[k]["data_offsets"]
            f.seek(base + begin)
            if header[k]["dtype"] != "F32":
                dst.write(f.read(end - begin))
                continue
            left = (end - begin) // 4
            while left:
                count = min(left, CHUNK)
                dst.write(struct.pack(f"<{count}e", *struct.unpack(f"<{count}f", f.read(4 * count))))
                left -= count
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    if (src / name).is_file():
        shutil.copy(src / name, out / name)
PY
  xz_pack 6 -f "$dir/backbone/model.safetensors"

  echo "== data" >&2
  # 256 texts of every length: 32 from each of the suite's single-label tasks.
  python3 - data/generated/suite "$dir/data/texts.jsonl" <<'PY'
import json, pathlib, sys
suite = pathlib.Path(sys.argv[1])
tasks = json.loads((suite / "suite.json").read_text())["tasks"]
names = [name for name, task in tasks.items() if task["scoring"] == "single_label"][:8]
with open(sys.argv[2], "w") as out:
    for name in names:
        for line in (suite / f"{name}.jsonl").read_text().splitlines()[:32]:
            out.write(json.dumps({"text": json.loads(line)["text"]}) + "\n")
PY
  head -n 20 bench/labels.txt >"$dir/data/labels-20.txt"
  cp bench/labels.txt "$dir/data/labels-50.txt"
  shuf -n 6400 --random-source=<(yes) data/generated/train.jsonl >"$dir/data/train.jsonl"
  head -n 160 data/generated/validation-mix.jsonl >"$dir/data/validation.jsonl"
  xz_pack 9 -f "$dir/data/train.jsonl"
  # The whole corpus, for scripts/gpu-ablation.sh.
  mkdir -p "$dir/corpus"
  for f in train.jsonl train-balanced.jsonl validation-mix.jsonl; do
    xz_pack 9 -c "data/generated/$f" >"$dir/corpus/$f.xz"
  done
  tar -C data/generated -cJf "$dir/suite.tar.xz" suite
  du -sh "$dir" >&2
  du -ab "$dir" | sort -n | tail -n 12 >&2
  # What a run command carries to the lent machine is at most 64 MiB.
  local bytes
  bytes="$(du -sb "$dir" | cut -f1)"
  if ((bytes > 64 << 20)); then
    echo "warning: the pack is $((bytes >> 20)) MiB, over the 64 MiB a device run carries" >&2
  fi
}

# The loader path for the CUDA binary: the CUDA libraries of the Python packages (PyTorch's),
# or, for the CPU stand-in, the stub driver of scripts/cuda-toolkit.sh (CUDA_STUB_LIB).
libs() {
  if [[ "$1" == cpu && -n "${CUDA_STUB_LIB:-}" ]]; then echo "$CUDA_STUB_LIB"; return; fi
  python3 - <<'PY' || true
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = set()
for r in roots:
    for pattern in ("nvidia/*/lib", "nvidia/cu13/lib", "torch/lib"):
        for d in glob.glob(os.path.join(r, pattern)):
            if any(glob.glob(os.path.join(d, n)) for n in ("libcublas.so.*", "libnvrtc.so.*", "libcurand.so.*", "libcudart.so.*")):
                dirs.add(d)
print(":".join(sorted(dirs)))
PY
}

# Copies the pack to DEST (outside the repository, so that the pack stays as it travels) and
# decompresses what pack compressed there.
unpack() {
  rm -rf "$2"
  mkdir -p "$2"
  cp -r "$1/." "$2/"
  python3 - "$2" <<'PY'
import lzma, os, pathlib, shutil, sys
root = pathlib.Path(sys.argv[1])
for packed in root.rglob("*.xz"):
    if packed.name.endswith(".tar.xz"):
        continue
    with lzma.open(packed) as src, open(packed.with_suffix(""), "wb") as dst:
        shutil.copyfileobj(src, dst)
    packed.unlink()
for binary in ("gliznet", "throughput"):
    if (root / binary).exists():
        (root / binary).chmod(0o755)
PY
}

run() {
  local dir="$1"; shift
  local device=cuda train_steps=300 out="${OUT:-}"
  while (($#)); do
    case "$1" in
      --device) device="$2"; shift 2 ;;
      --train-steps) train_steps="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      *) usage ;;
    esac
  done
  out="${out:-$(cd "$dir" && pwd)/out}"
  mkdir -p "$out"
  local work
  work="$(mktemp -d)"
  local log="$out/gpu-check.log"
  exec > >(tee "$log") 2>&1
  unpack "$dir" "$work/pack"
  dir="$work/pack"

  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  export LD_LIBRARY_PATH="$(libs "$device")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "loader path: $LD_LIBRARY_PATH"
  cp "$dir/data/train.jsonl" "$work/train.jsonl"
  local bin="$dir/gliznet" model="$dir/backbone" data="$dir/data"
  "$bin" --version
  head -n 64 "$data/texts.jsonl" >"$work/texts-64.jsonl"

  echo "== 1. CPU vs $device scores: 64 texts x 20 labels"
  for d in cpu "$device"; do
    "$bin" predict --model "$model" --device "$d" --input "$work/texts-64.jsonl" \
      --labels-file "$data/labels-20.txt" --single-label --format jsonl >"$work/scores-$d.jsonl" 2>"$work/scores-$d.err" ||
      { cat "$work/scores-$d.err"; return 1; }
  done
  # With --device cpu the stand-in compares the CPU with itself: 0 by construction.
  python3 - "$work/scores-cpu.jsonl" "$work/scores-$device.jsonl" >"$work/scores.json" <<'PY'
import json, sys
cpu = [json.loads(l) for l in open(sys.argv[1])]
gpu = [json.loads(l) for l in open(sys.argv[2])]
assert len(cpu) == len(gpu) == 64, (len(cpu), len(gpu))
pairs = [(a, b) for x, y in zip(cpu, gpu) for a, b in zip(sorted(x["labels"], key=lambda l: l["label"]), sorted(y["labels"], key=lambda l: l["label"]))]
assert all(a["label"] == b["label"] for a, b in pairs)
top = lambda x: max(x["labels"], key=lambda l: l["score"])["label"]
print(json.dumps({"texts": len(cpu), "scores": len(pairs),
                  "max_abs_difference": max(abs(a["score"] - b["score"]) for a, b in pairs),
                  "argmax_agreement": sum(top(x) == top(y) for x, y in zip(cpu, gpu)) / len(cpu)}))
PY
  cat "$work/scores.json"

  echo "== 2. one training step, CPU vs $device (same batch and seed, dropout off)"
  train_config() { # device steps output_dir log_every
    cat <<JSON
{"backbone": "$model", "similarity": "cosine", "readout": "first_token", "projection_dim": 256,
 "max_length": 128, "max_label_tokens": 12, "min_text_tokens": 32, "max_labels_per_example": 12,
 "train_file": "$work/train.jsonl", "validation_file": "$data/validation.jsonl",
 "epochs": 1, "max_steps": $2, "batch_size": 16, "encoder_lr": 5e-5, "head_lr": 1e-3,
 "warmup_fraction": 0.05, "dropout": $4, "eval_every": 100000, "save_every": 100000,
 "seed": 13, "output_dir": "$3", "device": "$1"}
JSON
  }
  for d in cpu "$device"; do
    train_config "$d" 1 "$work/step-$d" 0.0 >"$work/step-$d.json"
    "$bin" train --config "$work/step-$d.json" --force >"$work/step-$d.log" 2>&1 || { cat "$work/step-$d.log"; return 1; }
  done
  python3 - "$work/step-cpu/metrics.jsonl" "$work/step-$device/metrics.jsonl" >"$work/step.json" <<'PY'
import json, sys
first = lambda p: next(json.loads(l) for l in open(p) if json.loads(l).get("event") == "train")
cpu, gpu = first(sys.argv[1]), first(sys.argv[2])
rel = lambda a, b: abs(a - b) / max(abs(a), 1e-12)
print(json.dumps({"cpu": {"loss": cpu["loss"], "grad_norm": cpu["grad_norm"]},
                  "gpu": {"loss": gpu["loss"], "grad_norm": gpu["grad_norm"]},
                  "loss_relative_difference": rel(cpu["loss"], gpu["loss"]),
                  "grad_norm_relative_difference": rel(cpu["grad_norm"], gpu["grad_norm"])}))
PY
  cat "$work/step.json"

  echo "== 3. $train_steps training steps on $device"
  train_config "$device" "$train_steps" "$work/train-$device" null >"$work/train-$device.json"
  # Bounded, so that a slow GPU path still leaves time for the rest; the loss logged so far
  # is what is judged then.
  local rc=0
  timeout 180 "$bin" train --config "$work/train-$device.json" --force >"$work/train-$device.log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    tail -n 20 "$work/train-$device.log"
    [[ $rc -eq 124 && -s "$work/train-$device/metrics.jsonl" ]] || return 1
    echo "stopped after 180 s"
  fi
  python3 - "$work/train-$device/metrics.jsonl" "$train_steps" >"$work/train.json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if r.get("event") == "train"]
val = [r for r in rows if r.get("event") == "validation"]
k = max(1, len(train) // 5)
print(json.dumps({"steps": train[-1]["step"], "steps_asked": int(sys.argv[2]), "loss_first_fifth": statistics.mean(r["loss"] for r in train[:k]),
                  "loss_last_fifth": statistics.mean(r["loss"] for r in train[-k:]),
                  "examples_per_second": statistics.median(r["examples_per_second"] for r in train[1:] or train),
                  "validation": val[-1] if val else None, "metrics": rows}))
PY
  cat "$work/train.json"

  echo "== 4. prediction texts/s on $device: gliznet, then PyTorch"
  timeout 120 "$dir/throughput" "$model" "$data/labels-50.txt" "$data/texts.jsonl" --device "$device" \
    --batches 16,64 --reps 3 | tee "$work/predict-gliznet.jsonl" ||
    echo '{"error": "gliznet throughput failed or timed out"}' >>"$work/predict-gliznet.jsonl"
  local torch_device=cpu
  [[ "$device" == cpu ]] || torch_device=cuda
  timeout 120 python3 bench/reference.py predict "$model" "$data/labels-50.txt" "$data/texts.jsonl" \
    --device "$torch_device" --batches 16,64 --reps 3 | tee "$work/predict-pytorch.jsonl" ||
    echo '{"error": "reference failed"}' >"$work/predict-pytorch.jsonl"

  echo "== 5. training examples/s, PyTorch reference (64 steps, batch 16, max length 128)"
  timeout 120 python3 bench/reference.py train "$model" "$work/train.jsonl" --max-length 128 --steps 64 \
    --device "$torch_device" | tee "$work/train-pytorch.json" || echo '{"error": "reference failed"}' >"$work/train-pytorch.json"

  python3 - "$work" "$device" "$SCORE_TOLERANCE" "$STEP_TOLERANCE" "$out/gpu-check.json" <<'PY'
import json, pathlib, subprocess, sys
work, device, score_tol, step_tol, dest = pathlib.Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
lines = lambda p: [json.loads(l) for l in open(p) if l.strip()]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip() if device != "cpu" else "cpu stand-in"
result = {"device": device, "gpu": gpu,
          "scores": json.loads((work / "scores.json").read_text()),
          "training_step": json.loads((work / "step.json").read_text()),
          "training": json.loads((work / "train.json").read_text()),
          "predict_texts_per_second": {"gliznet": lines(work / "predict-gliznet.jsonl"), "pytorch": lines(work / "predict-pytorch.jsonl")},
          "train_examples_per_second": {"gliznet": json.loads((work / "train.json").read_text())["examples_per_second"],
                                        "pytorch": json.loads((work / "train-pytorch.json").read_text())}}
checks = {"scores_within_tolerance": result["scores"]["max_abs_difference"] <= score_tol,
          "argmax_agrees": result["scores"]["argmax_agreement"] == 1.0,
          "step_loss_within_tolerance": result["training_step"]["loss_relative_difference"] <= step_tol,
          "step_grad_norm_within_tolerance": result["training_step"]["grad_norm_relative_difference"] <= step_tol,
          "loss_falls": result["training"]["loss_last_fifth"] < result["training"]["loss_first_fifth"]}
result["checks"] = checks
result["passed"] = all(checks.values())
pathlib.Path(dest).write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(checks))
print("gpu-check:", "PASSED" if result["passed"] else "FAILED")
sys.exit(0 if result["passed"] else 1)
PY
}

case "${1:-}" in
  pack)
    if [[ $# -eq 2 ]]; then pack "$2"
    elif [[ $# -eq 4 && "$3" == --prebuilt ]]; then pack "$2" "$4"
    else usage; fi ;;
  unpack) [[ $# -eq 3 ]] || usage; unpack "$2" "$3" ;;
  libs) [[ $# -eq 2 ]] || usage; libs "$2" ;;
  run) [[ $# -ge 2 ]] || usage; shift; run "$@" ;;
  *) usage ;;
esac
