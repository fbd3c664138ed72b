#!/usr/bin/env python3
"""Model-affine routing against round robin, through HAProxy, with more models than fit one replica's memory.

Usage: bench/routing.sh [--models 6] [--fit 2] [--replicas 3] [--concurrency 6] [--duration 20] [--warmup 3]
                        [--rounds 1] [--factor 150]
       (or bench/routing.py with the same options, once a binary and $YUNMO_CACHE/models/minilm-int8.onnx exist)

N copies of all-MiniLM-L6-v2 (int8 ONNX, 23 MB, about 0.2 s to load) are pushed under N names to each of
R replicas (own data folders, auth off, one ONNX Runtime thread and one async-runtime thread each), and each
replica gets `scheduler.memory_budget_bytes` for `--fit` of them: loading one more unloads the least
recently used. A closed-loop generator (`--concurrency` Python threads, keep-alive connections) sends V2 JSON
inference requests (16 tokens) for a uniformly random model through HAProxy, in two configurations run back
to back on fresh replica processes over the same data: `affine`, the shipped deploy/haproxy/yunmo.cfg
(consistent hashing with bounded load on the model name), and `round-robin`, the same file with
`balance roundrobin`. With taskset, replicas share CPU 0 and HAProxy and the generator CPU 1.
Reported per configuration: requests/s, p50 and p99 latency, errors, and per replica the models it served,
its model loads (`yunmo_model_load_duration_seconds_count`) and memory evictions
(`yunmo_model_evictions_total{reason="memory"}`); then the ratio affine/round-robin.
The binary: $YUNMO_BIN, else $CARGO_TARGET_DIR/release/yunmo, else …/debug/yunmo (the output says which).
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "deploy", "haproxy"))
import render  # noqa: E402  (deploy/haproxy/render.py: the shipped config with our replicas)

CACHE = os.environ.get("YUNMO_CACHE", os.path.expanduser("~/.cache/yunmo"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MODEL_FILE = os.path.join(CACHE, "models", "minilm-int8.onnx")
IDS = [101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 1998, 2003, 2200, 3407, 2055, 2009, 102]  # 16 tokens
BODY = json.dumps({"inputs": [
    {"name": "input_ids", "shape": [1, len(IDS)], "datatype": "INT64", "data": IDS},
    {"name": "attention_mask", "shape": [1, len(IDS)], "datatype": "INT64", "data": [1] * len(IDS)},
    {"name": "token_type_ids", "shape": [1, len(IDS)], "datatype": "INT64", "data": [0] * len(IDS)},
]}).encode()


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def binary():
    """(path, profile) of the yunmo binary to run."""
    if os.environ.get("YUNMO_BIN"):
        return os.environ["YUNMO_BIN"], "YUNMO_BIN"
    for profile in ("release", "debug"):
        path = os.path.join(TARGET, profile, "yunmo")
        if os.path.exists(path):
            return path, profile
    raise SystemExit(f"no yunmo binary in {TARGET}/release or {TARGET}/debug: cargo build --release -p yunmo-server")


def pinned(cpu):
    """A taskset prefix pinning to `cpu`, when taskset exists and there are two CPUs."""
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, method="GET", body=None, content_type="application/json"):
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=120) as response:
        return response.read()


class Replica:
    """One `yunmo serve` on ephemeral ports over a data folder that outlives the process."""

    def __init__(self, path, data_dir, env):
        self.data_dir = data_dir
        ready = os.path.join(data_dir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        self.log = open(os.path.join(data_dir, "server.log"), "ab")
        self.process = subprocess.Popen(pinned(0) + [path, "serve", "--http-port", "0", "--grpc-port", "0", "--data-dir",
                                                     os.path.join(data_dir, "data"), "--ready-file", ready],
                                        stdout=self.log, stderr=self.log, env={**os.environ, **env})
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"yunmo did not start; see {self.log.name}")
            time.sleep(0.05)
        time.sleep(0.05)
        with open(ready) as f:
            addresses = json.load(f)
        self.url = "http://" + addresses["http"]
        self.http_port = int(addresses["http"].rsplit(":", 1)[1])
        self.grpc_port = int(addresses["grpc"].rsplit(":", 1)[1])

    def metrics(self):
        """{(name, frozenset(labels)): value} of every sample on /metrics."""
        samples = {}
        for line in request(self.url + "/metrics").decode().splitlines():
            match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
            if match:
                labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
                samples[(match.group(1), labels)] = float(match.group(3))
        return samples

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def per_model(samples, name, **match):
    """{model: value} of metric `name` whose labels include `match`."""
    out = {}
    for (metric, labels), value in samples.items():
        labels = dict(labels)
        if metric == name and "model" in labels and all(labels.get(k) == v for k, v in match.items()):
            out[labels["model"]] = out.get(labels["model"], 0) + value
    return out


def total(samples, name, **match):
    return sum(v for (metric, labels), v in samples.items() if metric == name and all(dict(labels).get(k) == w for k, w in match.items()))


def prepare(work, path, models, replicas):
    """Data folders for `replicas` replicas, each with `models` copies of MiniLM pushed to it."""
    dirs = []
    with open(MODEL_FILE, "rb") as f:
        model_bytes = f.read()
    for index in range(replicas):
        data_dir = os.path.join(work, f"replica{index + 1}")
        os.makedirs(data_dir)
        replica = Replica(path, data_dir, {"YUNMO__AUTH__ENABLED": "false", "YUNMO__TELEMETRY__LOG_LEVEL": "warn"})
        try:
            for name in models:
                request(replica.url + "/api/v1/models", "POST", json.dumps({"name": name}).encode())
                request(f"{replica.url}/api/v1/models/{name}/versions", "POST", model_bytes, "application/octet-stream")
        finally:
            replica.stop()
        dirs.append(data_dir)
    return dirs


def load(url, models, concurrency, warmup, duration, seed):
    """Closed loop for warmup + duration seconds: (latencies of ok requests after warmup, errors, elapsed)."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + duration
    results, errors = [[] for _ in range(concurrency)], [0] * concurrency

    def worker(index):
        rng = random.Random(seed * 1000 + index)
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        while True:
            began = time.monotonic()
            if began >= stop_at:
                break
            model = rng.choice(models)
            try:
                connection.request("POST", f"/v2/models/{model}/infer", BODY, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=120)
                ok = False
            ended = time.monotonic()
            if began >= measure_from:
                if ok:
                    results[index].append(ended - began)
                else:
                    errors[index] += 1
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = sorted(x for per_thread in results for x in per_thread)
    return latencies, sum(errors), duration


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_config(label, args, path, dirs, models, env):
    """Starts fresh replicas over `dirs` and HAProxy (round robin or not), drives the load, returns a row."""
    replicas, haproxy, work = [], None, os.path.dirname(dirs[0])
    try:
        for data_dir in dirs:
            replicas.append(Replica(path, data_dir, env))
        port, stats_port, grpc_port = free_port(), free_port(), free_port()
        config = render.render([("127.0.0.1", r.http_port, r.grpc_port) for r in replicas],
                               {"yunmo_http": f"127.0.0.1:{port}", "yunmo_grpc": f"127.0.0.1:{grpc_port}", "stats": f"127.0.0.1:{stats_port}"},
                               round_robin=(label == "round-robin"))
        if args.factor is not None:
            config = re.sub(r"hash-balance-factor \d+", f"hash-balance-factor {args.factor}", config)
        config_path = os.path.join(work, f"haproxy-{label}.cfg")
        with open(config_path, "w") as f:
            f.write(config)
        haproxy_log = open(os.path.join(work, f"haproxy-{label}.log"), "wb")
        haproxy = subprocess.Popen(pinned(1) + [shutil.which("haproxy"), "-f", config_path, "-db"], stdout=haproxy_log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 10
        while True:
            try:
                request(url + "/v2/health/ready")
                break
            except OSError:
                if haproxy.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"haproxy did not start; see {haproxy_log.name}")
                time.sleep(0.05)
        before = [r.metrics() for r in replicas]
        latencies, errors, elapsed = load(url, models, args.concurrency, args.warmup, args.duration, args.seed)
        after = [r.metrics() for r in replicas]
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(timeout=10)
        for replica in replicas:
            replica.stop()
    per_replica = []
    for b, a in zip(before, after):
        served = per_model(a, "yunmo_inference_requests_total", outcome="ok")
        served = {m: n - per_model(b, "yunmo_inference_requests_total", outcome="ok").get(m, 0) for m, n in served.items()}
        per_replica.append({
            "requests": int(sum(served.values())),
            "models": sorted(m for m, n in served.items() if n),
            "loads": int(total(a, "yunmo_model_load_duration_seconds_count")),
            "evictions": int(total(a, "yunmo_model_evictions_total", reason="memory")),
        })
    row = {"config": label, "requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
           "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000, "replicas": per_replica}
    log(f"  {label}: {row['rps']:.1f} req/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, errors {errors}, "
        f"loads {[r['loads'] for r in per_replica]}")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=6, help="distinct models (copies of MiniLM under different names)")
    parser.add_argument("--fit", type=int, default=2, help="models one replica's memory budget holds")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=6, help="closed-loop clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per configuration")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--rounds", type=int, default=1, help="affine then round robin, this many times (medians)")
    parser.add_argument("--factor", type=int, help="hash-balance-factor instead of the shipped one (0: no bound)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed: run scripts/system-deps.sh")
    if not os.path.exists(MODEL_FILE):
        raise SystemExit(f"missing {MODEL_FILE}: run scripts/fetch-assets.sh minilm")
    path, profile = binary()
    models = [f"model-{i + 1}" for i in range(args.models)]
    size = os.path.getsize(MODEL_FILE)
    # Room for `fit` models and half of another: the estimate is file size × instances (one instance here).
    budget = size * args.fit + size // 2
    env = {"YUNMO__AUTH__ENABLED": "false", "YUNMO__TELEMETRY__LOG_LEVEL": "warn", "YUNMO__SCHEDULER__MEMORY_BUDGET_BYTES": str(budget),
           "YUNMO__BACKENDS__ONNX__INTRA_OP_THREADS": "1", "YUNMO__SERVER__WORKER_THREADS": "1"}
    work = tempfile.mkdtemp(prefix="yunmo-bench-routing-")
    log(f"== {args.replicas} replicas ({profile} binary {path}), {args.models} models of {size / 1e6:.1f} MB, budget {budget / 1e6:.1f} MB "
        f"({args.fit} models) each; work folder {work}")
    try:
        dirs = prepare(work, path, models, args.replicas)
        rows = {"affine": [], "round-robin": []}
        for round_index in range(args.rounds):
            for label in rows:
                log(f"== round {round_index + 1}: {label}")
                rows[label].append(run_config(label, args, path, dirs, models, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(label, key):
        return statistics.median(r[key] for r in rows[label])

    factor = args.factor if args.factor is not None else shipped_factor()
    print(f"Routing: {args.replicas} replicas of {path} ({profile} build), {args.models} models (MiniLM int8, {size / 1e6:.1f} MB each), "
          f"memory budget for {args.fit} per replica; {args.concurrency} closed-loop clients, uniform over the models, V2 JSON infer "
          f"through HAProxy {haproxy_version()}; {args.duration:.0f} s measured after {args.warmup:.0f} s warm-up; "
          f"median of {args.rounds} round(s). affine = deploy/haproxy/yunmo.cfg (hash-balance-factor {factor}), "
          f"round-robin = the same with balance roundrobin.\n")
    print("| config | req/s | p50 ms | p99 ms | errors | model loads per replica (warm-up included) | memory evictions per replica | models served per replica |")
    print("|---|---|---|---|---|---|---|---|")
    for label in rows:
        last = rows[label][-1]["replicas"]
        print(f"| {label} | {med(label, 'rps'):.1f} | {med(label, 'p50_ms'):.1f} | {med(label, 'p99_ms'):.1f} | {sum(r['errors'] for r in rows[label])} | "
              f"{' / '.join(str(r['loads']) for r in last)} | {' / '.join(str(r['evictions']) for r in last)} | "
              f"{' / '.join(str(len(r['models'])) for r in last)} |")
    print(f"\naffine / round-robin: req/s {med('affine', 'rps') / max(med('round-robin', 'rps'), 1e-9):.2f}x, "
          f"p50 {med('affine', 'p50_ms') / med('round-robin', 'p50_ms'):.2f}x, p99 {med('affine', 'p99_ms') / med('round-robin', 'p99_ms'):.2f}x")
    placement = rows["affine"][-1]["replicas"]
    print("affine placement (last round): " + "; ".join(f"replica {i + 1}: {', '.join(r['models']) or '-'}" for i, r in enumerate(placement)))


def shipped_factor():
    with open(render.SHIPPED) as f:
        return int(re.search(r"hash-balance-factor (\d+)", f.read()).group(1))


def haproxy_version():
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    main()
