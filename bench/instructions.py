#!/usr/bin/env python3
"""Instructions per request of each binary, counted by valgrind's callgrind: a measure of the serving path's
work that the noise of a shared machine does not move (time and CPU time do, by 10 to 30% here).

Usage: bench/instructions.py BINARY [BINARY ...]     (AUTH=1: auth on, as shipped;
       ROUTE=1=90,2=10: the MLP gets a second version of the same file and this route, ROUTE=pin: it is
       pinned to version 1 instead, the direct path to compare a route with)

For each binary: starts it under callgrind with collection off (pinned to CPU 0, one runtime and one ONNX
Runtime thread, like bench/run.py), uploads the iris MLP, and for each load (V2 JSON over REST and V2 gRPC,
concurrency 1 and 16) warms up for 2 s, then counts the instructions of every thread of the server (ONNX
Runtime's compute included) over 6 s of bench/loadgen and divides by the requests served. Prints kIr per
request and the ratio of each binary to the first. Build release binaries and bench/loadgen first; run
bench/run.sh once so the fixtures exist.
"""
import os, sys, subprocess, tempfile, json, time, glob
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run
binaries = sys.argv[1:]
auth = os.environ.get("AUTH") == "1"
route = os.environ.get("ROUTE")


def set_route(server, route):
    """A second version of the MLP, then `route` (`1=90,2=10`) or `pin` (version 1 pinned)."""
    import urllib.request
    key = run.BENCH_KEY if auth else None
    with open(os.path.join(run.CACHE, "bench-models", run.MODELS["mlp"][0]), "rb") as f:
        run.post(f"{server.url}/api/v1/models/mlp/versions", f.read(), "application/octet-stream", key=key)
    if route == "pin":
        body, path, method = {"version_policy": {"kind": "pinned", "version": 1}}, "/api/v1/models/mlp", "PATCH"
    else:
        weights = [{"version": int(v), "weight": int(w)} for v, w in (item.split("=") for item in route.split(","))]
        body, path, method = {"versions": weights}, "/api/v1/models/mlp/route", "PUT"
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    urllib.request.urlopen(urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method=method, headers=headers)).read()

loads = [("rest c=1", lambda s, b: ["http", "--url", s.infer_url("mlp"), "--body", b, "--concurrency", "1"] + s.http_auth()),
         ("rest c=16", lambda s, b: ["http", "--url", s.infer_url("mlp"), "--body", b, "--concurrency", "16"] + s.http_auth()),
         ("grpc c=1", lambda s, b: ["grpc", "--address", s.grpc, "--model", "mlp", "--body", b, "--concurrency", "1"] + s.grpc_auth()),
         ("grpc c=16", lambda s, b: ["grpc", "--address", s.grpc, "--model", "mlp", "--body", b, "--concurrency", "16"] + s.grpc_auth())]
rows = {}
for binary in binaries:
    work = tempfile.mkdtemp()
    wrapper = os.path.join(work, "vg.sh")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file={work}/cg.%p {binary} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    cls = type("Binary", (run.Yunmo if auth else run.YunmoNoAuth,), {"name": binary, "binary": wrapper, "extra_env": {}})
    server = cls(work, ["mlp"], os.path.join(run.CACHE, "bench-models"))
    if route:
        set_route(server, route)
    body = os.path.join(work, "mlp.json")
    json.dump(run.mlp_body(), open(body, "w"))
    pid = subprocess.run(["pgrep", "-f", f"callgrind-out-file={work}"], capture_output=True, text=True).stdout.split()[0]
    try:
        for label, extra in loads:
            subprocess.run(["taskset", "-c", "1", run.LOADGEN] + extra(server, body) + ["--duration", "2", "--warmup", "1"], capture_output=True)
            subprocess.run(["callgrind_control", "-z", pid], capture_output=True)
            subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True)
            out = subprocess.run(["taskset", "-c", "1", run.LOADGEN] + extra(server, body) + ["--duration", "6", "--warmup", "0"], capture_output=True, text=True).stdout
            subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True)
            before = set(glob.glob(f"{work}/cg.*"))
            subprocess.run(["callgrind_control", "-d", pid], capture_output=True)
            time.sleep(0.5)
            dumps = sorted(set(glob.glob(f"{work}/cg.*")) - before, key=os.path.getmtime)
            total = 0
            for line in open(dumps[-1]):
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1])
            r = json.loads(out.strip().splitlines()[-1])
            rows[(label, binary)] = total / r["requests"] / 1000
            print(f"{label} {binary} {r['requests']} requests, {total/r['requests']/1000:.1f} kIr/request", flush=True)
    finally:
        server.stop()

print("kIr per request")
labels = [l for l, _ in loads]
for label in labels:
    vals = [rows[(label, b)] for b in binaries]
    print(f"{label:10s} " + "  ".join(f"{v:8.1f}" for v in vals) + "   B/A " + " ".join(f"{v/vals[0]:.3f}" for v in vals[1:]))
