"""Load benchmark of `gliznet serve` on 127.0.0.1: throughput and latency at 1, 8 and 32
concurrent clients (one text per request) with K = 5 and 20 labels, beside sequential
`gliznet predict --input` on the same texts, and the PyTorch reference's scoring of the same
texts where bench/.venv exists (bench/setup.sh); then the server's resident memory over a
long run. Each round measures `predict --input` and then the server at every client count,
so that each ratio compares measurements taken side by side; the table gives medians over
ROUNDS (the ratio's median of the per-round ratios, with its range). Bounded: REQUESTS per
configuration and round, RSS_REQUESTS for the memory run. Prints a Markdown table.

    python3 bench/serve.py [--bin target/release/gliznet] [--model DIR] [--requests 256]
                           [--rounds 3] [--rss-requests 10000] [--serve-args "--max-wait-ms 5"]
                           [--json FILE]
"""

import argparse
import http.client
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def texts():
    rows = []
    for name in ("texts-short.jsonl", "texts-long.jsonl"):
        rows += [json.loads(l)["text"] for l in (HERE / name).read_text().splitlines() if l.strip()]
    return rows


def labels(k):
    return [l for l in (HERE / "labels.txt").read_text().splitlines() if l.strip()][:k]


class Server:
    def __init__(self, binary, model, extra):
        cmd = [binary, "serve", "--port", "0"] + (["--model", model] if model else []) + extra
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if line.startswith("listening on http://"):
                host, port = line.strip().removeprefix("listening on http://").rsplit(":", 1)
                self.host, self.port = host, int(port)
                break
        else:
            sys.exit("the server did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        for _ in range(600):
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        sys.exit("the server never became ready")

    def get(self, path):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()

    def rss_kib(self):
        status = pathlib.Path(f"/proc/{self.proc.pid}/status").read_text()
        fields = dict(l.split(":", 1) for l in status.splitlines() if ":" in l)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def load(server, corpus, label_list, clients, requests):
    """`requests` one-text requests from `clients` threads, each on its own keep-alive
    connection. Returns (texts/s, latencies in seconds)."""
    latencies, lock, next_index = [], threading.Lock(), [0]

    def client():
        conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        mine = []
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= requests:
                break
            body = json.dumps({"text": corpus[i % len(corpus)], "labels": label_list})
            start = time.perf_counter()
            conn.request("POST", "/v1/classify", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                sys.exit(f"request {i}: HTTP {response.status}")
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return requests / (time.perf_counter() - start), latencies


CLIENTS = (1, 8, 32)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def predict_rate(binary, model, corpus, label_list, n):
    """Sequential `gliznet predict --input` over the same n texts (one process, start-up
    included), texts/s."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "texts.jsonl"
        path.write_text("".join(json.dumps({"text": corpus[i % len(corpus)]}) + "\n" for i in range(n)))
        labels_file = pathlib.Path(tmp) / "labels.txt"
        labels_file.write_text("\n".join(label_list) + "\n")
        cmd = [binary, "predict", "--input", str(path), "--labels-file", str(labels_file), "--format", "jsonl"]
        cmd += ["--model", model] if model else []
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return n / (time.perf_counter() - start)


def pytorch_rate(model, corpus, k, n):
    python = HERE / ".venv" / "bin" / "python"
    if not python.exists() or not model:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "texts.jsonl"
        path.write_text("".join(json.dumps({"text": corpus[i % len(corpus)]}) + "\n" for i in range(n)))
        start = time.perf_counter()
        subprocess.run([str(python), str(HERE / "reference.py"), "predict-file", model, str(HERE / "labels.txt"),
                        str(path), "--k", str(k), "--batch", "16"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(ROOT / "target" / "release" / "gliznet"))
    parser.add_argument("--model", help="model directory (default: the built-in model; the PyTorch "
                                        "reference needs a directory)")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-requests", type=int, default=10000)
    parser.add_argument("--serve-args", default="", help="more flags for `gliznet serve`, one string")
    parser.add_argument("--json")
    args = parser.parse_args()
    corpus = texts()
    print(f"load: {os.getloadavg()[0]:.2f} (1 min) before the run; {os.cpu_count()} CPUs; client and server "
          f"share them", file=sys.stderr)

    server = Server(args.bin, args.model, args.serve_args.split())
    rows = []
    for k in (5, 20):
        label_list = labels(k)
        reference = pytorch_rate(args.model, corpus, k, args.requests)
        rounds = {clients: [] for clients in CLIENTS}
        for round_index in range(args.rounds):
            baseline = predict_rate(args.bin, args.model, corpus, label_list, args.requests)
            for clients in CLIENTS:
                rate, latencies = load(server, corpus, label_list, clients, args.requests)
                rounds[clients].append({"texts_per_second": rate, "latencies": latencies,
                                        "predict_texts_per_second": baseline})
                print(json.dumps({"k": k, "clients": clients, "round": round_index + 1,
                                  "texts_per_second": rate, "predict_texts_per_second": baseline}),
                      file=sys.stderr, flush=True)
        for clients in CLIENTS:
            measured = rounds[clients]
            latencies = [t for m in measured for t in m["latencies"]]
            ratios = [m["texts_per_second"] / m["predict_texts_per_second"] for m in measured]
            rows.append({"k": k, "clients": clients, "rounds": len(measured),
                         "texts_per_second": statistics.median(m["texts_per_second"] for m in measured),
                         "p50_ms": 1000 * percentile(latencies, 50), "p95_ms": 1000 * percentile(latencies, 95),
                         "p99_ms": 1000 * percentile(latencies, 99),
                         "predict_texts_per_second": statistics.median(m["predict_texts_per_second"]
                                                                       for m in measured),
                         "ratio_median": statistics.median(ratios), "ratios": ratios,
                         "pytorch_texts_per_second": reference})

    memory = []
    if args.rss_requests:
        label_list, done, step = labels(5), 0, max(1, args.rss_requests // 10)
        memory.append({"requests": 0, "rss_mib": server.rss_kib()[0] / 1024})
        while done < args.rss_requests:
            load(server, corpus, label_list, 8, step)
            done += step
            memory.append({"requests": done, "rss_mib": server.rss_kib()[0] / 1024})
        peak = server.rss_kib()[1] / 1024
    server.stop()

    print(f"Medians of {args.rounds} rounds; each round: `predict --input`, then the server at 1, 8 and 32 clients.")
    print()
    print("| K | clients | serve texts/s | p50 ms | p95 ms | p99 ms | predict --input texts/s | "
          "serve / predict (median; range) | PyTorch texts/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        torch = f"{r['pytorch_texts_per_second']:.1f}" if r["pytorch_texts_per_second"] else "not run"
        print(f"| {r['k']} | {r['clients']} | {r['texts_per_second']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['predict_texts_per_second']:.1f} | "
              f"{r['ratio_median']:.2f}; {min(r['ratios']):.2f}–{max(r['ratios']):.2f} | {torch} |")
    if memory:
        print()
        print("RSS (MiB) after N requests (8 clients, K = 5): " +
              ", ".join(f"{m['requests']}: {m['rss_mib']:.0f}" for m in memory) + f"; peak {peak:.0f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": rows, "memory": memory}, indent=1) + "\n")


if __name__ == "__main__":
    main()
