#!/usr/bin/env python3
"""The headline benchmark: the built-in model's job against the same model family's bi-encoder
run by PyTorch and by ONNX Runtime, on the same texts and labels, as whole processes.

The job: classify every text of a JSONL file against one list of K labels,
`gliznet predict --input FILE --labels-file L --format jsonl`, one process. The peers
(bench/biencoder.py) run all-MiniLM-L6-v2, which the built-in model is fine-tuned from, as a
sentence-transformers-style bi-encoder (mean pooling, labels read once as "This text is about
{label}.", texts cut at 128 tokens, batch 16): PyTorch f32, and ONNX Runtime with `tokenizers`
on the encoder exported to ONNX, f32 and dynamic int8. gliznet runs at its default precision
(bf16 on CPUs with AMX, f32 elsewhere), with `--f32` and with `--quantize`.

    BENCH_PYTHON=/path/to/python python3 bench/headline.py [--rounds 3] [--reps 1] [--bin PATH] [--json FILE]

Each (texts, K) is timed as a whole process (start to exit, output written to a file), and
again on one text with the same K labels: that run is the way's fixed cost (process start,
imports, model load, label encoding); steady state = whole process - fixed cost of the same
round. A round runs every way once on every cell, in an order that rotates by round and cell;
a cell's value is the median over rounds (and --reps), a ratio the median of the per-round
ratios. Ratios are speeds (the peer's seconds / gliznet's: > 1 means gliznet is faster).
The ONNX export is cached in bench/.cache (made, and checked against PyTorch, when missing).
Waits for a quiet machine like bench/run.py (exit 3 if it stays busy, unless --allow-busy).
"""

import argparse
import json
import math
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from run import BENCH, MODEL, ROOT, SIMD_FLAGS, machine, run, wait_until_quiet

CACHE = BENCH / ".cache"
TEXTS = {"short": (BENCH / "texts-short.jsonl", "short (~20 words)"),
         "long": (BENCH / "texts-long.jsonl", "long (~200 words)")}
WAYS = {  # name: column heading
    "gliznet": "gliznet default", "gliznet_f32": "gliznet `--f32`", "gliznet_int8": "gliznet `--quantize`",
    "ort_f32": "ORT f32", "ort_int8": "ORT int8", "pytorch": "PyTorch f32",
}
RATIOS = [  # (gliznet way, peer way, heading): the issue's acceptance ratios
    ("gliznet", "ort_f32", "default / ORT f32"), ("gliznet_f32", "ort_f32", "`--f32` / ORT f32"),
    ("gliznet_int8", "ort_int8", "`--quantize` / ORT int8"), ("gliznet", "pytorch", "default / PyTorch f32"),
]
ORT_F32_BOUND = 1e-4  # ONNX Runtime f32 against PyTorch: cosines and pooled embeddings


def cpu_info():
    """Vendor, family/model/stepping numbers, model name and the SIMD flags that matter."""
    fields, flags = {}, []
    for line in open("/proc/cpuinfo"):
        if ":" not in line:
            if fields:
                break
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        if key == "flags":
            flags = value.split()
        elif key in ("vendor_id", "cpu family", "model", "stepping", "model name", "microcode"):
            fields.setdefault(key, value)
    wanted = [f for f in SIMD_FLAGS if f in flags]
    wanted += [f for f in flags if (f.startswith("amx_") or f in ("avx512_fp16", "avx_vnni_int8")) and f not in wanted]
    return {"vendor": fields.get("vendor_id"), "family": fields.get("cpu family"), "model": fields.get("model"),
            "stepping": fields.get("stepping"), "model_name": fields.get("model name"), "flags": wanted,
            "cores": len(os.sched_getaffinity(0))}


def text_file(name, count):
    """`count` texts from bench's file, cycled; copies after the first get a number appended
    (the label-cache measurement's 1,024 short texts: the 32, each 32 times)."""
    source, _ = TEXTS[name]
    base = [json.loads(l)["text"] for l in open(source, encoding="utf-8") if l.strip()]
    path = CACHE / f"texts-{name}-{count}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            copy = i // len(base)
            text = base[i % len(base)] + (f" ({copy})" if copy else "")
            f.write(json.dumps({"text": text}) + "\n")
    return path


def label_file(k):
    labels = [l.strip() for l in open(BENCH / "labels.txt", encoding="utf-8") if l.strip()]
    if k > len(labels):
        sys.exit(f"K = {k}: bench/labels.txt has only {len(labels)} labels")
    path = CACHE / f"labels-{k}.txt"
    path.write_text("\n".join(labels[:k]) + "\n", encoding="utf-8")
    return path


def ensure_onnx(python, backbone):
    """The cached export (bench/.cache/minilm{,-int8}.onnx) and its check, made when missing or
    when the backbone's weights changed."""
    stamp = CACHE / "minilm.json"
    weights = backbone / "model.safetensors"
    if stamp.is_file() and (CACHE / "minilm.onnx").is_file() and (CACHE / "minilm-int8.onnx").is_file():
        check = json.loads(stamp.read_text())
        if check.get("source") == str(weights.resolve()) and check.get("source_bytes") == weights.stat().st_size:
            return check
    print("exporting the encoder to ONNX (f32 and int8) ...", file=sys.stderr)
    out = subprocess.run([python, str(BENCH / "biencoder.py"), "export", str(backbone), str(CACHE)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"the ONNX export failed:\n{out.stderr[-3000:]}")
    return json.loads(stamp.read_text())


def commands(gliznet, python, backbone, texts, labels):
    predict = [gliznet, "predict", "--input", str(texts), "--labels-file", str(labels), "--format", "jsonl"]
    peer = [python, str(BENCH / "biencoder.py"), "predict"]
    tail = [str(backbone), str(labels), str(texts)]
    return {
        "gliznet": predict, "gliznet_f32": predict + ["--f32"], "gliznet_int8": predict + ["--quantize"],
        "ort_f32": peer + ["--backend", "ort", "--onnx", str(CACHE / "minilm.onnx")] + tail,
        "ort_int8": peer + ["--backend", "ort", "--onnx", str(CACHE / "minilm-int8.onnx")] + tail,
        "pytorch": peer + ["--backend", "torch"] + tail,
    }


def timed(cmd, out_path):
    """Wall seconds and the child's CPU seconds of one whole process; its stdout goes to out_path."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path, "w") as out:
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, cwd=ROOT)
        seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr.decode(errors='replace')[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def records(path, way, n, k):
    """The output's JSON lines, checked: one record per text, K scores in each."""
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    if len(rows) != n:
        sys.exit(f"{way}: {len(rows)} output records for {n} texts ({path})")
    for row in rows:
        got = len(row["labels"]) if way.startswith("gliznet") else len(row["scores"])
        if got != k:
            sys.exit(f"{way}: a record with {got} scores for K = {k} ({path})")
    return rows


def compare(reference, other):
    """Largest cosine difference and top-label agreement of two bi-encoder outputs."""
    diff = max(abs(a - b) for r, o in zip(reference, other) for a, b in zip(r["scores"], o["scores"]))
    agree = sum(r["label"] == o["label"] for r, o in zip(reference, other))
    return {"max_abs_cosine_diff": diff, "top_label_agrees": agree, "texts": len(reference)}


def median_or_nan(values):
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every way once per cell (default 3)")
    parser.add_argument("--reps", type=int, default=1, help="timed runs of each way per cell and round (default 1)")
    parser.add_argument("--bin", help="the gliznet binary (default: target/release/gliznet, built first)")
    parser.add_argument("--backbone", type=pathlib.Path, default=MODEL,
                        help="all-MiniLM-L6-v2's directory, for the peers (default models/all-MiniLM-L6-v2)")
    parser.add_argument("--ks", default="5,20,50", help="label counts K, comma-separated (default 5,20,50)")
    parser.add_argument("--texts", default="short,long", help="text sets: short, long or both (default both)")
    parser.add_argument("--short-count", type=int, default=1024, help="short texts per file (default 1024)")
    parser.add_argument("--long-count", type=int, default=256, help="long texts per file (default 256)")
    parser.add_argument("--limit", type=int, help="at most this many texts per file (a smoke run)")
    parser.add_argument("--max-load", type=float, default=0.5,
                        help="1-minute load average under which the machine counts as quiet (default 0.5)")
    parser.add_argument("--allow-busy", action="store_true", help="measure on a busy machine anyway (recorded)")
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    sets = args.texts.split(",")
    if any(s not in TEXTS for s in sets):
        parser.error(f"--texts: one or more of {', '.join(TEXTS)}")
    python = os.environ.get("BENCH_PYTHON", str(BENCH / ".venv" / "bin" / "python"))
    if not pathlib.Path(python).exists():
        sys.exit(f"{python} is missing: run bench/setup.sh (or set BENCH_PYTHON)")
    backbone = args.backbone.resolve()
    if not (backbone / "model.safetensors").is_file():
        if backbone != MODEL:
            sys.exit(f"{backbone}: no model.safetensors")
        run([str(ROOT / "scripts/fetch-backbone.sh")])
    if args.bin:
        gliznet = str(pathlib.Path(args.bin).resolve())
    else:
        print("building ...", file=sys.stderr)
        run(["cargo", "build", "--release"])
        gliznet = str(ROOT / "target/release/gliznet")
    CACHE.mkdir(exist_ok=True)

    versions = json.loads(run([python, str(BENCH / "biencoder.py"), "versions"]).stdout)
    export = ensure_onnx(python, backbone)
    counts = {"short": args.short_count, "long": args.long_count}
    if args.limit:
        counts = {name: min(n, args.limit) for name, n in counts.items()}
    files = {name: text_file(name, counts[name]) for name in sets}
    one = CACHE / "texts-one.jsonl"
    one.write_text(next(open(TEXTS["short"][0], encoding="utf-8")))
    labels = {k: label_file(k) for k in ks}
    results = {
        "machine": machine(), "cpu": cpu_info(), "versions": versions,
        "gliznet": {"bin": gliznet, "version": run([gliznet, "--version"]).stdout.strip()},
        "export_check": export,
        "config": {"rounds": args.rounds, "reps": args.reps, "ks": ks, "texts": {s: counts[s] for s in sets},
                   "python": python, "backbone": str(backbone), "max_load": args.max_load},
    }

    def save():
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")

    scratch = pathlib.Path(tempfile.mkdtemp(prefix="gliznet-headline-"))
    # Warm-up (untimed): every way once on one text, so that no way pays a cold page cache
    # in the first round; its outputs name the precision each gliznet way ran at.
    print("warm-up ...", file=sys.stderr)
    models = {}
    for way, cmd in commands(gliznet, python, backbone, one, labels[ks[0]]).items():
        timed(cmd, scratch / "warm.jsonl")
        rows = records(scratch / "warm.jsonl", way, 1, ks[0])
        if way.startswith("gliznet"):
            models[way] = rows[0].get("model")
    results["gliznet"]["models"] = models

    results["load_before"] = wait_until_quiet(args.max_load, 180, args.allow_busy)
    # Cells: per K, the one-text run (the fixed cost) then each text set.
    cells = [(texts, k) for k in ks for texts in ["one", *sets]]
    paths = {"one": one, **files}
    sizes = {"one": 1, **counts}
    ways = list(WAYS)
    runs = []
    first_outputs = {}
    for r in range(args.rounds):
        print(f"round {r + 1} of {args.rounds} ...", file=sys.stderr)
        for c, (texts, k) in enumerate(cells):
            shift = (r + c) % len(ways)
            order = ways[shift:] + ways[:shift]
            cmds = commands(gliznet, python, backbone, paths[texts], labels[k])
            for rep in range(args.reps):
                for way in order:
                    keep = r == 0 and rep == 0 and texts != "one"
                    out = scratch / (f"{way}-{texts}-{k}.jsonl" if keep else "out.jsonl")
                    seconds, cpu = timed(cmds[way], out)
                    rows = records(out, way, sizes[texts], k)
                    if keep and not way.startswith("gliznet"):
                        first_outputs[(way, texts, k)] = rows
                    runs.append({"round": r, "rep": rep, "way": way, "texts": texts, "n": sizes[texts], "k": k,
                                 "seconds": seconds, "cpu_seconds": cpu})
        results["runs"] = runs
        save()
    results["load_after"] = os.getloadavg()[0]

    # The peers' outputs, first round: ONNX Runtime f32 must give PyTorch's cosines.
    check = {}
    for way in ("ort_f32", "ort_int8"):
        pairs = [compare(first_outputs[("pytorch", t, k)], first_outputs[(way, t, k)]) for t in sets for k in ks]
        check[way] = {"max_abs_cosine_diff": max(p["max_abs_cosine_diff"] for p in pairs),
                      "top_label_agrees": sum(p["top_label_agrees"] for p in pairs),
                      "texts": sum(p["texts"] for p in pairs)}
    results["output_check"] = check
    shutil.rmtree(scratch)

    def per_round(way, texts, k):
        return [statistics.median(x["seconds"] for x in runs
                                  if x["round"] == r and x["way"] == way and x["texts"] == texts and x["k"] == k)
                for r in range(args.rounds)]

    fixed = {k: {way: per_round(way, "one", k) for way in ways} for k in ks}
    results["fixed_seconds"] = {k: {way: statistics.median(v) for way, v in fixed[k].items()} for k in ks}
    summary = []
    for texts in sets:
        for k in ks:
            whole = {way: per_round(way, texts, k) for way in ways}
            steady = {way: [w - f for w, f in zip(whole[way], fixed[k][way])] for way in ways}
            cell = {"texts": texts, "n": counts[texts], "k": k}
            for name, values in (("whole", whole), ("steady", steady)):
                cell[name] = {way: statistics.median(v) for way, v in values.items()}
                cell[f"{name}_rounds"] = values
                cell[f"{name}_ratios"] = {
                    f"{ours}/{peer}": median_or_nan([p / o if o > 0 and p > 0 else float("nan")
                                                     for o, p in zip(values[ours], values[peer])])
                    for ours, peer, _ in RATIOS}
            summary.append(cell)
    results["cells"] = summary
    save()
    print(table(results))
    if check["ort_f32"]["max_abs_cosine_diff"] > ORT_F32_BOUND:
        sys.exit(f"ONNX Runtime f32 differs from PyTorch by {check['ort_f32']['max_abs_cosine_diff']:.2e} "
                 f"(bound {ORT_F32_BOUND}): its numbers measure a different computation")


def fmt(x):
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def table(r):
    cpu, v, e, c = r["cpu"], r["versions"], r["export_check"], r["output_check"]
    config = r["config"]
    models = "; ".join(f"{WAYS[w]}: {m}" for w, m in r["gliznet"]["models"].items())
    out = [
        f"CPU: {cpu['model_name']} ({cpu['vendor']}, family {cpu['family']}, model {cpu['model']}, stepping "
        f"{cpu['stepping']}), {cpu['cores']} cores; SIMD flags: {' '.join(cpu['flags']) or 'none'}. "
        f"Machine: {r['machine']}. 1-minute load {r['load_before']:.2f} before, {r['load_after']:.2f} after"
        + (f" (**busy**: above --max-load {config['max_load']}, measured with --allow-busy; the ratios are not "
           "to be quoted)." if r["load_before"] >= config["max_load"] else "."),
        "",
        f"{r['gliznet']['version'].splitlines()[0]} ({models}); PyTorch {v['torch']}, transformers "
        f"{v['transformers']}, onnxruntime {v['onnxruntime']}, tokenizers {v['tokenizers']}, Python {v['python']}.",
        "",
        f"ONNX export against PyTorch ({e['check_texts']} texts, {e['check_labels']} labels): f32 max |pooled embedding "
        f"difference| {e['f32_max_abs_embedding_diff']:.1e} (bound 1e-4); int8 max |cosine difference| "
        f"{e['int8_max_abs_cosine_diff']:.3f} (mean {e['int8_mean_abs_cosine_diff']:.3f}), top label "
        f"{e['int8_top_label_agrees']} of {e['check_texts']}. In the first round's outputs: ORT f32 max |cosine "
        f"difference| {c['ort_f32']['max_abs_cosine_diff']:.1e}, top label {c['ort_f32']['top_label_agrees']} of "
        f"{c['ort_f32']['texts']}; ORT int8 {c['ort_int8']['max_abs_cosine_diff']:.3f}, top label "
        f"{c['ort_int8']['top_label_agrees']} of {c['ort_int8']['texts']}; every way one record per text.",
        "",
        f"Seconds, median of {config['rounds']} interleaved round{'s' if config['rounds'] != 1 else ''} "
        f"({config['reps']} run{'s' if config['reps'] != 1 else ''} of each way a round); ratios are "
        "speeds (peer's seconds / gliznet's, > 1: gliznet faster), medians of the per-round ratios.",
    ]
    names = {name: label for name, (_, label) in TEXTS.items()}
    heading = ("| texts | K | " + " | ".join(WAYS.values()) + " | " + " | ".join(h for _, _, h in RATIOS) + " |")
    rule = "|---|---|" + "---|" * (len(WAYS) + len(RATIOS))
    for name, title in (("whole", "Whole process (start to exit)"),
                        ("steady", "Steady state (whole process minus the same way's one-text run)")):
        out += ["", f"{title}:", "", heading, rule]
        for cell in r["cells"]:
            seconds = " | ".join(fmt(cell[name][w]) for w in WAYS)
            ratios = " | ".join(fmt(cell[f"{name}_ratios"][f"{o}/{p}"]) for o, p, _ in RATIOS)
            out.append(f"| {names[cell['texts']]} × {cell['n']} | {cell['k']} | {seconds} | {ratios} |")
    out += ["", "Fixed cost (one text: process start, imports, model load, label encoding):", "",
            "| K | " + " | ".join(WAYS.values()) + " |", "|---|" + "---|" * len(WAYS)]
    for k, by_way in r["fixed_seconds"].items():
        out.append(f"| {k} | " + " | ".join(fmt(by_way[w]) for w in WAYS) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
