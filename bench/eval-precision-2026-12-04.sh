#!/usr/bin/env bash
# gliznet eval wall time with the built-in model on three suite tasks, one build
# (target/release/gliznet), in f32 (--f32), bf16 (--bf16) and int8 (--quantize), three
# interleaved rounds; prints every run and the medians as Markdown. Run on a quiet machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
S=data/generated/suite
bin=target/release/gliznet
runs=$(mktemp)
echo "load before: $(cat /proc/loadavg)"
for round in 1 2 3; do
  for task in dialogue-topic-chatterbot topic-fortunes spam-sms; do
    for precision in f32 bf16 int8; do
      case $precision in f32) flag=--f32 ;; bf16) flag=--bf16 ;; int8) flag=--quantize ;; esac
      start=$(date +%s.%N)
      $bin eval --data $S/$task.jsonl --single-label --batch-size 32 $flag --report /tmp/speed-report.json >/dev/null 2>&1
      end=$(date +%s.%N)
      echo "$round $task $precision $(echo "$end - $start" | bc)" >> "$runs"
    done
  done
done
echo "load after: $(cat /proc/loadavg)"
printf "| round | task | precision | seconds |\n|---|---|---|---|\n"
awk '{printf "| %s | %s | %s | %.2f |\n", $1, $2, $3, $4}' "$runs"
python3 - "$runs" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
tasks = list(dict.fromkeys(r[1] for r in rows))
median = lambda t, p: statistics.median(float(r[3]) for r in rows if r[1] == t and r[2] == p)
print("\n| task | f32 | bf16 | int8 | f32 / bf16 | f32 / int8 |\n|---|---|---|---|---|---|")
for t in tasks:
    f, b, i = median(t, "f32"), median(t, "bf16"), median(t, "int8")
    print(f"| {t} | {f:.2f} s | {b:.2f} s | {i:.2f} s | {f / b:.2f}× | {f / i:.2f}× |")
PY
rm -f "$runs"
