#!/usr/bin/env python3
"""gemm's 256-bit (avx2) against its 512-bit (avx512) f32 kernels on the machine at hand: the
built-in model's prediction throughput (f32, batch 16, K = 5/20/50, short and long texts),
each kernel forced in turn, rounds interleaved. Prints the CPU's family and model, the load,
the kernel gliznet's table picks here, and the median texts/s of each kernel with their ratio.

    python3 bench/f32-kernels.py [--rounds 3] [--reps 3]

A ratio avx512/avx2 above 1.05 on every row says the family belongs among those that prefer
the 512-bit kernels (`CpuId::prefers_512_bit_f32` in src/model/kernels/cpu.rs). Run it on a
quiet machine (nothing else running).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THROUGHPUT = ROOT / "target" / "release" / "examples" / "throughput"


def cpu_line():
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
        if not line.strip():
            break
    flags = set(fields.get("flags", "").split())
    wide = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (
        f"{fields.get('model name')} (vendor {fields.get('vendor_id')}, family "
        f"{fields.get('cpu family')}, model {fields.get('model')}); {', '.join(wide)}; "
        f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}"
    )


def run(kernel, texts, reps):
    out = subprocess.run(
        [str(THROUGHPUT), "builtin", str(ROOT / "bench" / "labels.txt"), str(texts),
         "--reps", str(reps), "--batches", "16", "--f32-kernel", kernel],
        check=True, capture_output=True, text=True,
    )
    chosen = out.stderr.strip().splitlines()[0]
    return chosen, {json.loads(l)["k"]: json.loads(l)["texts_per_second"] for l in out.stdout.splitlines()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "throughput"],
                   cwd=ROOT, check=True)
    print(cpu_line())
    rates = {}
    chosen = None
    for _ in range(args.rounds):
        for texts in ("texts-short.jsonl", "texts-long.jsonl"):
            for kernel in ("avx2", "avx512"):
                try:
                    chosen, by_k = run(kernel, ROOT / "bench" / texts, args.reps)
                except subprocess.CalledProcessError as err:
                    sys.exit(f"throughput --f32-kernel {kernel}: {err.stderr.strip()}")
                for k, rate in by_k.items():
                    rates.setdefault((texts, k, kernel), []).append(rate)
    print(chosen)
    print("| texts | K | avx2 texts/s | avx512 texts/s | avx512/avx2 |")
    print("|---|---|---|---|---|")
    for texts in ("texts-short.jsonl", "texts-long.jsonl"):
        for k in (5, 20, 50):
            a = statistics.median(rates[(texts, k, "avx2")])
            b = statistics.median(rates[(texts, k, "avx512")])
            print(f"| {texts.split('-')[1].split('.')[0]} | {k} | {a:.1f} | {b:.1f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
