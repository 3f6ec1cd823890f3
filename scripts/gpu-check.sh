#!/usr/bin/env bash
# On a CUDA machine: build with --features cuda, check that GPU scores agree with CPU scores,
# and print prediction and training throughput on the GPU. Needs nvcc (build) and the CUDA
# libraries (run). Put the numbers in BENCHMARKS.md with the card's name.
#
#   scripts/gpu-check.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
TOLERANCE=1e-3   # max |score difference|, CPU vs GPU (f32 kernels differ in summation order)

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
scripts/fetch-backbone.sh
cargo build --release --features cuda --bin gliznet --example throughput
bin=target/release/gliznet
model=models/all-MiniLM-L6-v2

echo "== CPU vs GPU scores (bench texts, 20 labels, tolerance $TOLERANCE)"
head -n 20 bench/labels.txt > /tmp/gpu-check-labels.txt
for dev in cpu cuda; do
  "$bin" predict --model "$model" --device "$dev" --input bench/texts-long.jsonl \
    --labels-file /tmp/gpu-check-labels.txt --format jsonl > "/tmp/gpu-check-$dev.jsonl"
done
python3 - "$TOLERANCE" <<'PY'
import json, sys
tol = float(sys.argv[1])
cpu = [json.loads(l) for l in open("/tmp/gpu-check-cpu.jsonl")]
gpu = [json.loads(l) for l in open("/tmp/gpu-check-cuda.jsonl")]
assert len(cpu) == len(gpu) > 0
diff = max(abs(a["score"] - b["score"]) for x, y in zip(cpu, gpu) for a, b in zip(x["labels"], y["labels"]))
print(f"max |CPU - GPU| score difference: {diff:.2e} over {sum(len(x['labels']) for x in cpu)} scores")
sys.exit(0 if diff <= tol else 1)
PY

echo "== prediction throughput on the GPU (texts/s)"
target/release/examples/throughput "$model" bench/labels.txt bench/texts-short.jsonl bench/texts-long.jsonl --device cuda

echo "== training throughput on the GPU (batch 16, ~128 tokens)"
out="$(mktemp -d)"
cat > "$out/config.json" <<JSON
{"backbone": "$model", "similarity": "cosine", "projection_dim": 256, "max_length": 128,
 "max_label_tokens": 12, "min_text_tokens": 24, "train_file": "bench/train-128.jsonl",
 "validation_fraction": 0.143, "epochs": 3, "batch_size": 16, "eval_every": 1000, "save_every": 1000,
 "output_dir": "$out/run", "device": "cuda"}
JSON
"$bin" train --config "$out/config.json"
grep '"event":"train"' "$out/run/metrics.jsonl" | tail -1
grep '"event":"validation"' "$out/run/metrics.jsonl" | python3 -c "import json,sys; print('validation loss by epoch:', [round(json.loads(l)['loss'], 4) for l in sys.stdin])"
