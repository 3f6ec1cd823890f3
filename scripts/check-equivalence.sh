#!/usr/bin/env bash
# Prints what a behaviour-preserving refactor must leave byte-identical: the metrics and the
# weights after 6 training steps on the smoke data, and predict/eval outputs of the built-in
# model (joint, bi-encoder, int8). Run it before and after the change and diff the two files:
#   scripts/check-equivalence.sh target/release/gliznet > before.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${1:-target/release/gliznet}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$bin" train --config configs/smoke.json --device cpu --output "$work/run" \
    --set max_steps=6 --set eval_every=3 --set save_every=3 >/dev/null 2>&1
echo "== train: 6 smoke steps (metrics without timings)"
python3 - "$work/run/metrics.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    record = json.loads(line)
    for timing in ("examples_per_second", "seconds", "elapsed_seconds", "time"):
        record.pop(timing, None)
    print(json.dumps(record, sort_keys=True))
PY
echo "== train: weights"
(cd "$work/run" && sha256sum model.safetensors checkpoint/*.safetensors)

texts=(--text "The central bank raised interest rates again" --text "What a dull, lifeless film"
       --text "Win a free cruise now, reply YES")
labels="economy,sports,movies,spam,positive review,negative review"
for extra in "" "--method bi-encoder" "--quantize" "--single-label" "--subtract-label-prior"; do
    echo "== predict $extra"
    # shellcheck disable=SC2086
    "$bin" predict "${texts[@]}" --labels "$labels" --format jsonl --device cpu $extra 2>&1
done
echo "== predict: the trained smoke model"
"$bin" predict --model "$work/run" "${texts[@]}" --labels "$labels" --format jsonl --device cpu 2>&1 | sed "s|$work|WORK|"
echo "== eval (suite task)"
"$bin" eval --data data/generated/suite/sentiment-amazon-snippets.jsonl --device cpu \
    --report "$work/report.json" --predictions "$work/predictions.jsonl" 2>&1 | sed "s|$work|WORK|"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r.pop("seconds",None); r.pop("elapsed_seconds",None); print(json.dumps(r, sort_keys=True))' "$work/report.json"
sha256sum < "$work/predictions.jsonl"
echo "== mine-negatives (hard, random)"
for strategy in hard random; do
    "$bin" mine-negatives --input data/smoke/train.jsonl --output "$work/mined-$strategy.jsonl" \
        --strategy "$strategy" --k 3 --device cpu 2>&1 | sed "s|$work|WORK|"
    sha256sum < "$work/mined-$strategy.jsonl"
done
