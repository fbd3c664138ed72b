#!/usr/bin/env python3
"""The cost of traffic control: the iris MLP served directly against the same model behind a route, on one
server, interleaved: a route of one version (`v1=100`: the routing step itself) and a weighted route
(`v1=90 v2=10` over two versions of the same file: also the cost of two loaded versions, each with its own
queue, batches and worker, sharing the load).

Usage: bench/traffic.py [--binary target/release/yunmo] [--rounds 4] [--duration 5] [--concurrency 1,64] [--grpc]

One server as bench/run.py starts it (auth on, pinned to CPU 0, one async-runtime and one ONNX Runtime
thread); the model gets two versions of the same file. Each round measures it with version policy `pinned`
to version 1 (direct), then with the routes (set through PUT /api/v1/models/mlp/route), V2 JSON at each
concurrency with bench/loadgen (pinned to CPU 1), and with --grpc V2 gRPC too. The table gives the median
over rounds and each route's ratio to direct. Build first: `cargo build --release -p yunmo-server` and
`cargo build --release -p yunmo-loadgen`; run `bench/run.sh` once so the fixtures exist.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: the server wrapper, loadgen, CPU accounting)


def set_policy(server, body, path):
    request = urllib.request.Request(f"{server.url}{path}", data=json.dumps(body).encode(),
                                     method="PUT" if path.endswith("/route") else "PATCH",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {run.BENCH_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=run.YUNMO)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--fixtures", default=os.path.join(run.CACHE, "bench-models"))
    parser.add_argument("--grpc", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="yunmo-traffic-")
    body = os.path.join(work, "mlp.json")
    with open(body, "w") as f:
        json.dump(run.mlp_body(), f)
    server = type("Binary", (run.Yunmo,), {"binary": args.binary})(work, ["mlp"], args.fixtures)
    loads = []
    for c in [int(c) for c in args.concurrency.split(",")]:
        loads.append((f"mlp rest c={c}", ["http", "--url", server.infer_url("mlp"), "--body", body, "--concurrency", str(c)] + server.http_auth()))
        if args.grpc:
            loads.append((f"mlp grpc c={c}", ["grpc", "--address", server.grpc, "--model", "mlp", "--body", body, "--concurrency", str(c)] + server.grpc_auth()))
    modes = {
        "direct": ({"version_policy": {"kind": "pinned", "version": 1}}, "/api/v1/models/mlp"),
        "route v1=100": ({"versions": [{"version": 1, "weight": 100}]}, "/api/v1/models/mlp/route"),
        "route v1=90 v2=10": ({"versions": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}, "/api/v1/models/mlp/route"),
    }
    results = {(mode, label): [] for mode in modes for label, _ in loads}
    try:
        config = urllib.request.quote(json.dumps(run.YUNMO_CONFIGS["mlp"]))
        with open(os.path.join(args.fixtures, run.MODELS["mlp"][0]), "rb") as f:
            run.post(f"{server.url}/api/v1/models/mlp/versions?config={config}", f.read(), "application/octet-stream", key=run.BENCH_KEY)
        for round_index in range(args.rounds):
            for mode, (body_json, path) in modes.items():
                set_policy(server, body_json, path)
                run.log(f"== round {round_index + 1}, {mode}")
                for label, extra in loads:
                    results[(mode, label)].append(run.measure(server, args, label, extra))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = lambda rows, key: statistics.median(r[key] for r in rows)
    lines = ["| load | mode | req/s | vs direct | p99 ms | CPU s/1k |", "|---|---|---|---|---|---|"]
    for label, _ in loads:
        direct = med(results[("direct", label)], "rps")
        for mode in modes:
            rows = results[(mode, label)]
            lines.append(f"| {label} | {mode} | {med(rows, 'rps'):.0f} | {med(rows, 'rps') / max(direct, 1e-9):.2f}x | "
                         f"{med(rows, 'p99_ms'):.2f} | {med(rows, 'cpu_s_per_1k'):.3f} |")
    print(f"{args.binary}; auth on; median of {args.rounds} interleaved rounds, {args.duration:.0f} s each\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
