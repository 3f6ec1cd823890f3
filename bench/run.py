#!/usr/bin/env python3
"""The benchmark: gliznet against the PyTorch reference (bench/reference.py), same machine,
same run, same texts, labels and token sequences, on the real all-MiniLM-L6-v2 backbone.

    bench/setup.sh                # once: the reference's venv (bench/.venv)
    python3 bench/run.py          # builds the release binary, measures, prints the table

BENCH_PYTHON overrides the reference's interpreter. Prints a Markdown table; --json FILE also
writes the raw numbers. A busy machine makes the ratios meaningless (a background build slowed
PyTorch 4.9× and gliznet 1.7× once): after building, the run waits for the 1-minute load
average to fall below --max-load and refuses (exit 3) if it does not, unless --allow-busy; the
load before and after the measurements is recorded beside the CPU's model and SIMD flags.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "all-MiniLM-L6-v2"
BENCH = ROOT / "bench"
TEXTS = {"short (~20 words)": BENCH / "texts-short.jsonl", "long (~200 words)": BENCH / "texts-long.jsonl"}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, **kw)


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def wall(cmd, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run(cmd)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def max_rss_mb(cmd):
    out = run(["/usr/bin/time", "-f", "MAXRSS %M"] + cmd)
    line = [l for l in out.stderr.splitlines() if l.startswith("MAXRSS")][-1]
    return int(line.split()[1]) / 1024


def gliznet_train_rate(max_length, train_file):
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "backbone": str(MODEL), "similarity": "cosine", "projection_dim": 256, "max_length": max_length,
            "max_label_tokens": 12, "min_text_tokens": 24, "max_labels_per_example": 12,
            "train_file": str(train_file), "validation_fraction": 0.143, "epochs": 1, "batch_size": 16,
            "encoder_lr": 5e-5, "eval_every": 1000, "save_every": 1000, "output_dir": f"{tmp}/out", "device": "cpu",
        }
        path = pathlib.Path(tmp) / "config.json"
        path.write_text(json.dumps(config))
        run([str(ROOT / "target/release/gliznet"), "train", "--config", str(path)])
        log = json_lines((pathlib.Path(tmp) / "out" / "metrics.jsonl").read_text())
        return [l for l in log if l["event"] == "train"][-1]["examples_per_second"]


def combine_rounds(rounds):
    """Cells measured in several rounds: each cell's median over the rounds, with every run."""
    cells = []
    for i, first in enumerate(rounds[0]):
        rates = [r[i]["texts_per_second"] for r in rounds]
        cells.append({**first, "texts_per_second": statistics.median(rates),
                      "runs": sorted(x for r in rounds for x in r[i]["runs"])})
    return cells


# The CPU flags that decide which kernels can run (gemm's and ours).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def cpu_flags():
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    return [f for f in SIMD_FLAGS if f in flags]


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    flags = cpu_flags()
    simd = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-VNNI" if "avx_vnni" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    if "amx_bf16" in flags:
        simd += ", AMX"
    return f"{cpu} ({simd}), {os.cpu_count()} cores, {mem} GiB, {platform.system()} {platform.release()}"


def wait_until_quiet(max_load, timeout_s, allow_busy):
    """The 1-minute load average once it is below `max_load` (waiting up to `timeout_s`, as it
    decays after the build); exits with 3 if it stays above, unless `allow_busy`."""
    deadline = time.monotonic() + timeout_s
    while (load := os.getloadavg()[0]) >= max_load and time.monotonic() < deadline:
        time.sleep(5)
    if load >= max_load:
        message = (f"the machine is busy: 1-minute load {load:.2f} ≥ --max-load {max_load} after {timeout_s} s; "
                   "stop what else is running (the ratios would be wrong)")
        if not allow_busy:
            print(f"error: {message}, or pass --allow-busy", file=sys.stderr)
            sys.exit(3)
        print(f"WARNING: {message}; measuring anyway (--allow-busy), the table records it", file=sys.stderr)
    return load


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the raw numbers here")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds that alternate gliznet and PyTorch; ratios are medians of per-round ratios")
    parser.add_argument("--max-load", type=float, default=0.5,
                        help="1-minute load average under which the machine counts as quiet (default 0.5)")
    parser.add_argument("--allow-busy", action="store_true", help="measure on a busy machine anyway (recorded)")
    parser.add_argument("--predict-only", action="store_true",
                        help="prediction throughput only (no cold start, memory, training or cross-encoder rows)")
    args = parser.parse_args()
    python = os.environ.get("BENCH_PYTHON", str(BENCH / ".venv" / "bin" / "python"))
    if not pathlib.Path(python).exists():
        sys.exit(f"{python} is missing: run bench/setup.sh (or set BENCH_PYTHON)")
    if not (MODEL / "model.safetensors").is_file():
        run([str(ROOT / "scripts/fetch-backbone.sh")])
    print("building ...", file=sys.stderr)
    run(["cargo", "build", "--release", "--example", "throughput"])
    run(["cargo", "build", "--release"])
    gliznet = str(ROOT / "target/release/gliznet")
    labels = str(BENCH / "labels.txt")
    results = {"machine": machine(), "cpu_flags": cpu_flags()}
    results["load_before"] = wait_until_quiet(args.max_load, 180, args.allow_busy)

    def save():
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")

    print("prediction throughput ...", file=sys.stderr)
    texts = [str(p) for p in TEXTS.values()]
    throughput = [str(ROOT / "target/release/examples/throughput"), str(MODEL), labels, *texts, "--reps", str(args.reps)]
    commands = {
        "gliznet": throughput,
        "gliznet_int8": throughput + ["--quantize"],
        "pytorch": [python, str(BENCH / "reference.py"), "predict", str(MODEL), labels, *texts, "--reps", str(args.reps)],
    }
    commands["pytorch_int8"] = commands["pytorch"] + ["--quantize"]
    flags = cpu_flags()
    # Where the CPU has them: bf16 on the tile unit (`--bf16`), and f32 on the 256-bit kernels
    # that gliznet used before it picked the 512-bit ones on Intel CPUs.
    extra = []
    if "amx_bf16" in flags:
        commands["gliznet_bf16"] = throughput + ["--bf16"]
        extra.append("gliznet_bf16")
    if "avx512f" in flags:
        commands["gliznet_f32_avx2"] = throughput + ["--f32-kernel", "avx2"]
        extra.append("gliznet_f32_avx2")
    rounds = [{name: json_lines(run(cmd).stdout) for name, cmd in commands.items()} for _ in range(args.rounds)]
    results["predict"] = {name: combine_rounds([r[name] for r in rounds]) for name in commands}
    for name in ("gliznet", "gliznet_int8", *extra):
        for i, cell in enumerate(results["predict"][name]):
            cell["round_ratios"] = [r[name][i]["texts_per_second"] / r["pytorch"][i]["texts_per_second"] for r in rounds]
            cell["ratio"] = statistics.median(cell["round_ratios"])
    for i, cell in enumerate(results["predict"]["gliznet_int8"]):
        cell["round_ratios_int8"] = [r["gliznet_int8"][i]["texts_per_second"] / r["pytorch_int8"][i]["texts_per_second"]
                                     for r in rounds]
        cell["ratio_int8"] = statistics.median(cell["round_ratios_int8"])

    save()
    if args.predict_only:
        results["load_after"] = os.getloadavg()[0]
        save()
        print(table(results))
        return
    print("cold start and peak memory ...", file=sys.stderr)
    one = ["--text", "The central bank raised interest rates again", "--labels", "economy,sports,cooking"]
    results["cold_start_s"] = {
        "gliznet": wall([gliznet, "predict", "--model", str(MODEL), *one], 5),
        "pytorch": wall([python, str(BENCH / "reference.py"), "predict-one", str(MODEL), one[1], one[3]], 3),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(open(labels).read().split("\n")[:20]) + "\n")
        labels20 = f.name
    long_texts = str(TEXTS["long (~200 words)"])
    predict_long = [gliznet, "predict", "--model", str(MODEL), "--input", long_texts, "--labels-file", labels20, "--batch-size", "16", "--format", "jsonl"]
    results["peak_rss_mb"] = {
        "gliznet": max_rss_mb(predict_long),
        "gliznet_int8": max_rss_mb(predict_long + ["--quantize"]),
        "pytorch": max_rss_mb([python, str(BENCH / "reference.py"), "predict-file", str(MODEL), labels, long_texts, "--k", "20", "--batch", "16"]),
    }

    save()
    print("training throughput ...", file=sys.stderr)
    results["train"] = {}
    for tokens, path in ((64, BENCH / "train-64.jsonl"), (128, BENCH / "train-128.jsonl")):
        pairs = []
        for _ in range(args.rounds):
            ref_train = json_lines(run([python, str(BENCH / "reference.py"), "train", str(MODEL), str(path), "--max-length", str(tokens)]).stdout)[0]
            pairs.append((gliznet_train_rate(tokens, path), ref_train["examples_per_second"]))
        results["train"][tokens] = {
            "gliznet": statistics.median(g for g, _ in pairs), "pytorch": statistics.median(p for _, p in pairs),
            "ratio": statistics.median(g / p for g, p in pairs), "runs": pairs, "mean_tokens": ref_train["mean_tokens"]}

    save()
    print("NLI cross-encoder cost ...", file=sys.stderr)
    results["cross_encoder"] = json_lines(run([python, str(BENCH / "reference.py"), "cross-encoder", str(MODEL), *texts]).stdout)

    results["load_after"] = os.getloadavg()[0]
    save()
    print(table(results))


def table(r):
    out = [f"Machine: {r['machine']}; SIMD flags: {' '.join(r.get('cpu_flags', [])) or 'none'}; 1-minute load "
           f"{r.get('load_before', float('nan')):.2f} before, {r.get('load_after', float('nan')):.2f} after. "
           "Backbone: all-MiniLM-L6-v2, f32 (int8: `--quantize`). Medians over "
           "rounds that alternate the implementations; ratio = median of the per-round gliznet / PyTorch ratios.", ""]
    out += ["| prediction (texts/s) | K | batch | gliznet f32 | gliznet int8 | PyTorch f32 | PyTorch int8 "
            "| ratio f32 | ratio int8 / PyTorch f32 | ratio int8 / PyTorch int8 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    names = {str(v): k for k, v in TEXTS.items()}
    p = r["predict"]
    for ours, int8, ref, ref8 in zip(p["gliznet"], p["gliznet_int8"], p["pytorch"], p["pytorch_int8"]):
        rates = " | ".join(f"{c['texts_per_second']:.1f}" for c in (ours, int8, ref, ref8))
        out.append(f"| {names[ours['texts']]} | {ours['k']} | {ours['batch']} | {rates} "
                   f"| {ours['ratio']:.2f} | {int8['ratio']:.2f} | {int8['ratio_int8']:.2f} |")
    extra = [(n, t) for n, t in (("gliznet_bf16", "gliznet bf16 (`--bf16`)"),
                                  ("gliznet_f32_avx2", "gliznet f32 on the 256-bit kernels")) if n in p]
    if extra:
        out += ["", "| prediction (texts/s) | K | batch | " + " | ".join(f"{t} | ratio / PyTorch f32" for _, t in extra) + " |",
                "|---|---|---|" + "---|---|" * len(extra)]
        for i, ours in enumerate(p["gliznet"]):
            cells = " | ".join(f"{p[n][i]['texts_per_second']:.1f} | {p[n][i]['ratio']:.2f}" for n, _ in extra)
            out.append(f"| {names[ours['texts']]} | {ours['k']} | {ours['batch']} | {cells} |")
    if "cold_start_s" not in r:
        return "\n".join(out)
    out += ["", "| other | gliznet | PyTorch | ratio |", "|---|---|---|---|"]
    c, m = r["cold_start_s"], r["peak_rss_mb"]
    out.append(f"| cold start, one text (s) | {c['gliznet']:.3f} | {c['pytorch']:.3f} | {c['gliznet'] / c['pytorch']:.2f} |")
    out.append(f"| peak RSS, 32 long texts × 20 labels (MB) | {m['gliznet']:.0f} | {m['pytorch']:.0f} | {m['gliznet'] / m['pytorch']:.2f} |")
    if "gliznet_int8" in m:
        out.append(f"| peak RSS, the same with `--quantize` (MB) | {m['gliznet_int8']:.0f} | {m['pytorch']:.0f} | {m['gliznet_int8'] / m['pytorch']:.2f} |")
    for tokens, t in r["train"].items():
        out.append(f"| training, batch 16, ~{t['mean_tokens']:.0f} tokens (examples/s) | {t['gliznet']:.1f} | {t['pytorch']:.1f} | {t['ratio']:.2f} |")
    out += ["", "| NLI cross-encoder, PyTorch, random weights (texts/s) | texts | K=5 | K=20 | K=50 |", "|---|---|---|---|---|"]
    for x in r["cross_encoder"]:
        t = x["texts_per_second"]
        out.append(f"| {x['model']} | {names[x['texts']]} | {t['5']:.2f} | {t['20']:.2f} | {t['50']:.2f} |" if "5" in t else
                   f"| {x['model']} | {names[x['texts']]} | {t[5]:.2f} | {t[20]:.2f} | {t[50]:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
