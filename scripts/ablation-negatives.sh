#!/usr/bin/env bash
# One row of the negatives ablation in MODEL.md: train the recipe of configs/minilm-cosine.json
# at a small scale on one variant of the same 4,000 corpus examples, then evaluate it on the
# zero-shot dev sets. Needs the corpus (scripts/build-corpus.sh) and the release binary.
#
#   scripts/ablation-negatives.sh positives|random|hard [STEPS]
#
#   positives  the examples' negatives removed: every label a target of 1
#   random     negatives removed, then 6 random ones per example from the corpus's label pool
#              (gliznet mine-negatives --strategy random; the corpus averages 6.1 negatives)
#   hard       the corpus as built: sister terms, neighbouring domains, mined genres, decoys
#
# Output: runs/ablation-neg-VARIANT-STEPS/ (model, metrics.jsonl, zeroshot-*.json reports).
set -euo pipefail

variant="${1:?usage: scripts/ablation-negatives.sh positives|random|hard [STEPS]}"
steps="${2:-120}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
corpus="$root/data/generated"
work="$corpus/ablation"
run="$root/runs/ablation-neg-$variant-$steps"
gliznet="${CARGO_TARGET_DIR:-$root/target}/release/gliznet"
mkdir -p "$work"

head -n 4000 "$corpus/train.jsonl" > "$work/hard.jsonl"
python3 - "$work/hard.jsonl" "$work/positives.jsonl" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as dst:
    for line in src:
        row = json.loads(line)
        dst.write(json.dumps({"text": row["text"], "labels": row["labels"]}, ensure_ascii=False) + "\n")
EOF

case "$variant" in
  positives | hard) train="$work/$variant.jsonl" ;;
  random)
    train="$work/random.jsonl"  # rebuilt every time: it must follow the current corpus
    python3 - "$corpus/train.jsonl" "$work/pool.txt" <<'EOF'
import json, sys
labels = set()
for line in open(sys.argv[1], encoding="utf-8"):
    row = json.loads(line)
    labels.update(row["labels"] + row["not_labels"])
pool = {}  # one label per case-insensitive form, as label lists require
for label in sorted(labels):
    pool.setdefault(label.lower(), label)
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(pool.values()) + "\n")
EOF
    "$gliznet" mine-negatives --model "$root/models/all-MiniLM-L6-v2" --strategy random --k 6 \
      --seed 13 --input "$work/positives.jsonl" --pool "$work/pool.txt" --output "$train"
    ;;
  *) echo "unknown variant: $variant (positives, random or hard)" >&2; exit 2 ;;
esac

"$gliznet" train --config "$root/configs/minilm-cosine.json" --set "train_file=$train" \
  --set "max_steps=$steps" --set "eval_every=$steps" --set "save_every=$steps" --output "$run"
for set in zeroshot-brown-fiction zeroshot-amazon-sentiment; do
  "$gliznet" eval --model "$run" --data "$corpus/dev/$set.jsonl" --single-label \
    --report "$run/$set.json" > /dev/null
done
python3 - "$run" <<'EOF'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in open(run / "metrics.jsonl")]
last = [r for r in rows if r["event"] == "validation"][-1]
scores = [json.load(open(run / f"{s}.json"))["macro_f1"] for s in ("zeroshot-brown-fiction", "zeroshot-amazon-sentiment")]
print(json.dumps({"run": run.name, "validation_loss": round(last["loss"], 3), "validation_macro_f1": round(last["macro_f1"], 3), "brown_fiction_macro_f1": round(scores[0], 3),
                  "amazon_sentiment_macro_f1": round(scores[1], 3), "mean_zero_shot_macro_f1": round(sum(scores) / 2, 3)}))
EOF
