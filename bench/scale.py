"""Rows per second of the same Parquet job four ways: the CLI (`predict --input FILE.parquet
--output OUT.parquet`), the Python package in one process (pyarrow in, gliznet.ray.Predictor
on each 1,000-row batch, pyarrow out), and Ray Data with 1 and 2 actors on a local one-node
cluster (started before the clock runs). Every way reads the same file and writes every row
with `scores` and `predicted`; the CLI's output is the reference the others are checked
against (to 5e-3: at the default precision, bf16 on CPUs with AMX, scores move by up to about
1e-3 with the padding of a text's batch). Prints a Markdown table with the CPU and the load average.

    python3 bench/scale.py [--rows 4000] [--bin target/release/gliznet] [--rounds 2]

Needs the package (`pip install ./python`) and `ray[data]` in the running Python.
"""

import argparse
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
LABELS = ["economy", "sports", "cooking", "weather", "politics"]
SUBJECTS = ["The central bank", "The home team", "Our chef", "The storm", "The senate", "A reader"]
VERBS = ["raised", "won", "braised", "flooded", "passed", "reviewed"]
OBJECTS = ["interest rates", "the cup final", "the short ribs", "the coast road", "the budget bill", "a novel"]


def text(i):
    return f"{SUBJECTS[i % 6]} {VERBS[(i // 6) % 6]} {OBJECTS[(i // 36) % 6]} on day {i} of the year"


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_cli(binary, source, out):
    start = time.perf_counter()
    subprocess.run(
        [binary, "predict", "--input", str(source), "--labels", ",".join(LABELS), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def run_python(source, out):
    import gliznet.ray

    start = time.perf_counter()
    predictor = gliznet.ray.Predictor(labels=LABELS)
    parquet = pq.ParquetFile(source)
    with pq.ParquetWriter(out, _scored_schema(parquet.schema_arrow)) as writer:
        for batch in parquet.iter_batches(batch_size=1_000):
            writer.write_table(predictor(pa.Table.from_batches([batch])))
    return time.perf_counter() - start


def _scored_schema(schema):
    return schema.append(pa.field("scores", pa.list_(pa.float32()), nullable=False)).append(
        pa.field("predicted", pa.list_(pa.string()), nullable=False)
    )


def run_ray(source, out_dir, actors, env):
    import ray
    import gliznet.ray

    start = time.perf_counter()
    remote_args = {"runtime_env": {"env_vars": env}} if env else {}
    ray.data.read_parquet(str(source)).repartition(4 * actors).map_batches(
        gliznet.ray.Predictor,
        fn_constructor_kwargs={"labels": LABELS},
        batch_format="pyarrow",
        batch_size=1_000,
        concurrency=actors,
        num_cpus=1,
        **remote_args,
    ).write_parquet(str(out_dir))
    return time.perf_counter() - start


def same_scores(a, b, tolerance):
    x = pq.read_table(a).sort_by("id")
    y = pq.read_table(b).sort_by("id")
    return x.num_rows == y.num_rows and all(
        max(abs(p - q) for p, q in zip(r, s)) <= tolerance
        for r, s in zip(x.column("scores").to_pylist(), y.column("scores").to_pylist())
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4_000)
    parser.add_argument("--bin", default=str(ROOT / "target" / "release" / "gliznet"))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import ray

    load_before = os.getloadavg()[0]
    work = pathlib.Path(tempfile.mkdtemp(prefix="gliznet-scale-"))
    source = work / "in.parquet"
    pq.write_table(
        pa.table({"id": pa.array(range(args.rows), type=pa.int64()), "text": [text(i) for i in range(args.rows)]}),
        source,
        row_group_size=5_000,
    )
    ray_bin = str(pathlib.Path(sys.executable).with_name("ray"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        # Four logical CPUs on two cores: two actors hold one each and reads still get one.
        [ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=4",
         "--include-dashboard=false", "--disable-usage-stats", "--object-store-memory=300000000"],
        check=True, capture_output=True,
    )
    try:
        ray.init(address=f"127.0.0.1:{port}", logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False
        ways = {
            "CLI (Parquet in and out)": lambda r: run_cli(args.bin, source, work / f"cli-{r}.parquet"),
            "Python package, one process": lambda r: run_python(source, work / f"py-{r}.parquet"),
            "Ray Data, 1 actor": lambda r: run_ray(source, work / f"ray1-{r}", 1, None),
            "Ray Data, 2 actors": lambda r: run_ray(source, work / f"ray2-{r}", 2, None),
            "Ray Data, 2 actors, RAYON_NUM_THREADS=1": lambda r: run_ray(
                source, work / f"ray2t-{r}", 2, {"RAYON_NUM_THREADS": "1"}
            ),
        }
        outputs = {
            "Python package, one process": "py-{r}.parquet",
            "Ray Data, 1 actor": "ray1-{r}",
            "Ray Data, 2 actors": "ray2-{r}",
            "Ray Data, 2 actors, RAYON_NUM_THREADS=1": "ray2t-{r}",
        }
        times = {name: [] for name in ways}
        for r in range(args.rounds):  # interleaved rounds
            for name, way in ways.items():
                times[name].append(way(r))
                print(f"round {r + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
        for name, pattern in outputs.items():
            # The default precision is bf16 on CPUs with AMX, where a text's scores move by up
            # to about 1e-3 with the padding of its batch, and each way batches differently.
            assert same_scores(work / "cli-0.parquet", work / pattern.format(r=0), 5e-3), name
    finally:
        ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True)

    cli = statistics.median(times["CLI (Parquet in and out)"])
    print(f"\n{args.rows} short texts, K = {len(LABELS)}, built-in model, default precision; "
          f"{cpu_model()}, {os.cpu_count()} cores, load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"medians of {args.rounds} interleaved rounds; every output checked against the CLI's (5e-3)\n")
    print("| way | seconds | rows/s | time / CLI |")
    print("|---|---|---|---|")
    for name, t in times.items():
        m = statistics.median(t)
        print(f"| {name} | {m:.2f} | {args.rows / m:.0f} | {m / cli:.2f}× |")


if __name__ == "__main__":
    main()
