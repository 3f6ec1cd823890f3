#!/usr/bin/env bash
# gliznet eval wall time on three suite tasks: a previous build (OLD_BIN) against target/release/gliznet,
# f32 and int8, three interleaved rounds; prints a Markdown table. Run on a quiet machine.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
S=data/generated/suite
echo "load before: $(cat /proc/loadavg)"
printf "| round | task | build | precision | seconds |\n|---|---|---|---|---|\n"
for round in 1 2 3; do
  for task in dialogue-topic-chatterbot topic-fortunes spam-sms; do
    for build in old new; do
      bin=${OLD_BIN:?previous build}; [[ $build == new ]] && bin=target/release/gliznet
      for q in f32 int8; do
        flag=(); [[ $q == int8 ]] && flag=(--quantize)
        start=$(date +%s.%N)
        $bin eval --data $S/$task.jsonl --single-label --batch-size 32 "${flag[@]}" --report /tmp/speed-report.json >/dev/null 2>&1 || echo FAILED
        end=$(date +%s.%N)
        printf "| %s | %s | %s | %s | %.2f |\n" $round $task $build $q $(echo "$end - $start" | bc)
      done
    done
  done
done
echo "load after: $(cat /proc/loadavg)"
