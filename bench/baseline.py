#!/usr/bin/env python3
"""Compares the current yunmo binary's cost on the small-model hot path with the recorded baseline, so that a
regression cannot land in steps that each look like noise against their parent.

Usage: bench/baseline.py [--binary target/release/yunmo] [--rounds 3] [--duration 5] [--record]

It measures server CPU seconds per 1,000 requests (the server's own CPU, which a busy neighbour disturbs
less than req/s) for the MLP, one row, at concurrency 64, over V2 REST (JSON) and gRPC, with auth on (as
shipped: a key on every request), the server pinned to CPU 0 with one async-runtime and one ONNX Runtime
thread and the load generator on CPU 1 (bench/run.py's setup). It also measures the in-process ONNX Runtime
floor (calls/s) of the same model on the same machine, so a slower machine or a busier neighbour shows as a
slower floor, and prints the change both as measured and scaled by the floor. The median of --rounds runs
is compared with bench/baseline.json; --record writes the current figures there instead (do that only for
a change that is meant to move them, and say why in docs/benchmarks.md).
Exits 1 when the CPU per request of a protocol is more than --tolerance (default 15%) above the baseline,
both as measured and floor-scaled.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: the server wrapper, loadgen, CPU accounting)

BASELINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baseline.json")


def measure_round(binary, args, body):
    server_class = type("Current", (run.Yunmo,), {"binary": binary})
    work = tempfile.mkdtemp(prefix="yunmo-baseline-")
    server = server_class(work, ["mlp"], args.fixtures)
    try:
        rest = run.measure(server, args, "mlp c=64 rest", ["http", "--url", server.infer_url("mlp"), "--body", body,
                                                            "--concurrency", "64"] + server.http_auth())
        grpc = run.measure(server, args, "mlp c=64 grpc", ["grpc", "--address", server.grpc, "--model", "mlp", "--body", body,
                                                            "--concurrency", "64"] + server.grpc_auth())
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    floor = run.loadgen(args, ["floor", "--model", os.path.join(args.fixtures, run.MODELS["mlp"][0]), "--body", body,
                               "--batch", "1", "--threads", "1", "--library", run.ORT_LIB])
    return {"rest": rest, "grpc": grpc, "floor_calls_per_s": floor["rps"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=run.YUNMO)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--fixtures", default=os.path.join(run.CACHE, "bench-models"))
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    body_dir = tempfile.mkdtemp(prefix="yunmo-baseline-body-")
    body = os.path.join(body_dir, "mlp.json")
    with open(body, "w") as f:
        json.dump(run.mlp_body(), f)
    rounds = [measure_round(args.binary, args, body) for _ in range(args.rounds)]
    shutil.rmtree(body_dir, ignore_errors=True)
    current = {
        "rest_cpu_s_per_1k": statistics.median(r["rest"]["cpu_s_per_1k"] for r in rounds),
        "grpc_cpu_s_per_1k": statistics.median(r["grpc"]["cpu_s_per_1k"] for r in rounds),
        "rest_rps": statistics.median(r["rest"]["rps"] for r in rounds),
        "grpc_rps": statistics.median(r["grpc"]["rps"] for r in rounds),
        "floor_calls_per_s": statistics.median(r["floor_calls_per_s"] for r in rounds),
    }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=run.ROOT).stdout.strip()
    if args.record:
        record = {**current, "commit": commit, "date": datetime.date.today().isoformat(),
                  "command": "bench/baseline.py --record", "rounds": args.rounds, "duration_s": args.duration}
        with open(BASELINE, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        print(f"recorded {BASELINE}: {json.dumps(record)}")
        return 0
    with open(BASELINE) as f:
        baseline = json.load(f)
    # A slower machine (a lower floor) makes every CPU second count for less work: scale by the floors' ratio.
    speed = current["floor_calls_per_s"] / baseline["floor_calls_per_s"]
    print(f"baseline: {baseline['commit']} ({baseline['date']}); current: {commit}; machine speed vs baseline (floor ratio): {speed:.2f}")
    print("| MLP c=64 | baseline CPU s/1k | current CPU s/1k | moved | floor-scaled moved | current req/s |")
    print("|---|---|---|---|---|---|")
    failed = False
    for protocol in ("rest", "grpc"):
        before, now = baseline[f"{protocol}_cpu_s_per_1k"], current[f"{protocol}_cpu_s_per_1k"]
        moved, scaled = now / before - 1, now * speed / before - 1
        # Both must move: the floor is noisy too, and a regression shows measured and scaled alike.
        failed |= moved > args.tolerance and scaled > args.tolerance
        print(f"| {protocol} | {before:.3f} | {now:.3f} | {moved:+.0%} | {scaled:+.0%} | {current[f'{protocol}_rps']:.0f} |")
    if failed:
        print(f"REGRESSION: more than {args.tolerance:.0%} above the baseline's CPU per request (measured and floor-scaled)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
