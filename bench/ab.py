#!/usr/bin/env python3
"""A/B of two yunmo binaries on the same load, interleaved: for judging a change to the serving path.

Usage: bench/ab.py --a OLD_BINARY --b NEW_BINARY [--rounds 3] [--duration 5] [--concurrency 1,64]
                   [--grpc] [--llm] [--auth] [--env KEY=VALUE ...] [--env-a KEY=VALUE ...] [--env-b KEY=VALUE ...]

Each round starts A then B (pinned to CPU 0, one async-runtime and one ONNX Runtime thread, like
bench/run.py), uploads the iris MLP, and drives `GET /v2/health/live` at concurrency 1 and V2 JSON infer at
each concurrency with bench/loadgen (pinned to CPU 1); with --grpc also V2 gRPC ModelInfer at each
concurrency; with --llm it also pushes SmolLM2 (GGUF) and measures one streamed /v1/completions at a time
(time to first token and decode tokens/s, as bench/llm.py does). --auth runs both as shipped (auth on,
every request with an admin key: checked, limited and metered) instead of with auth off. Rounds interleave
A and B so that drift on this shared machine hits both; the table gives the median over rounds and the
ratio B/A.
Build both binaries first (`cargo build --release -p yunmo-server`, copying each binary aside) and
`cargo build --release -p yunmo-loadgen`; run `bench/run.sh` once so the fixtures exist.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm  # noqa: E402  (bench/llm.py: one streamed completion, timed)
import run  # noqa: E402  (bench/run.py: the server wrapper, loadgen, CPU accounting)


def server_class(binary, env, auth):
    """bench/run.py's Yunmo (auth on) or YunmoNoAuth (the transport alone), started from `binary` with `env`."""
    return type("Binary", (run.Yunmo if auth else run.YunmoNoAuth,), {"name": binary, "binary": binary, "extra_env": env})


def llm_stream(server, runs):
    """Pushes SmolLM2 and streams `runs` greedy completions one at a time: median TTFT (ms) and decode tok/s."""
    subprocess.run([server.binary, "models", "push", "--url", server.url, "--name", "smollm2", llm.GGUF], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "YUNMO_API_KEY": run.BENCH_KEY})
    host, port = server.url.removeprefix("http://").split(":")
    llm.stream_completion(host, int(port), "smollm2", llm.PROMPTS[1], 16, 0, 0.0)
    ttft, tps = llm.single_stream(host, int(port), "smollm2", runs)
    run.log(f"  llm stream: ttft {ttft * 1000:.1f} ms, decode {tps:.1f} tok/s")
    return {"ttft_ms": ttft * 1000, "decode_tok_s": tps}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--fixtures", default=os.path.join(run.CACHE, "bench-models"))
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for both servers")
    parser.add_argument("--env-a", action="append", default=[], help="KEY=VALUE for A only (A/B of a setting on one binary)")
    parser.add_argument("--env-b", action="append", default=[], help="KEY=VALUE for B only")
    parser.add_argument("--grpc", action="store_true", help="also V2 gRPC ModelInfer at each concurrency")
    parser.add_argument("--llm", action="store_true", help="also one LLM stream (SmolLM2 GGUF) at a time")
    parser.add_argument("--llm-runs", type=int, default=5)
    parser.add_argument("--auth", action="store_true", help="auth on (as shipped) instead of off")
    parser.add_argument("--llm-only", action="store_true", help="only the LLM stream (implies --llm)")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    side_env = {side: {**env, **dict(item.split("=", 1) for item in extra)} for side, extra in (("a", args.env_a), ("b", args.env_b))}
    body_dir = tempfile.mkdtemp(prefix="yunmo-ab-")
    body = os.path.join(body_dir, "mlp.json")
    with open(body, "w") as f:
        json.dump(run.mlp_body(), f)
    loads = [("GET health c=1", lambda s: ["http", "--url", s.health_url(), "--method", "GET", "--body", body, "--concurrency", "1"])]
    for c in [int(c) for c in args.concurrency.split(",")]:
        loads.append((f"mlp rest c={c}", lambda s, c=c: ["http", "--url", s.infer_url("mlp"), "--body", body, "--concurrency", str(c)] + s.http_auth()))
    if args.grpc:
        for c in [int(c) for c in args.concurrency.split(",")]:
            loads.append((f"mlp grpc c={c}", lambda s, c=c: ["grpc", "--address", s.grpc, "--model", "mlp", "--body", body, "--concurrency", str(c)] + s.grpc_auth()))
    if args.llm_only:
        args.llm, loads = True, []
    results = {(side, label): [] for side in "ab" for label, _ in loads}
    streams = {side: [] for side in "ab"}
    for round_index in range(args.rounds):
        for side, binary in (("a", args.a), ("b", args.b)):
            work = tempfile.mkdtemp(prefix=f"yunmo-ab-{side}-")
            run.log(f"== round {round_index + 1}, {side}: {binary}")
            server = server_class(binary, side_env[side], args.auth)(work, ["mlp"], args.fixtures)
            try:
                for label, extra in loads:
                    results[(side, label)].append(run.measure(server, args, label, extra(server)))
                if args.llm:
                    streams[side].append(llm_stream(server, args.llm_runs))
            finally:
                server.stop()
                shutil.rmtree(work, ignore_errors=True)
    lines = ["| load | A req/s | B req/s | B/A req/s | A p99 ms | B p99 ms | A CPU s/1k | B CPU s/1k |", "|---|---|---|---|---|---|---|---|"]
    for label, _ in loads:
        a, b = results[("a", label)], results[("b", label)]
        med = lambda rows, key: statistics.median(r[key] for r in rows)
        lines.append(f"| {label} | {med(a, 'rps'):.0f} | {med(b, 'rps'):.0f} | {med(b, 'rps') / max(med(a, 'rps'), 1e-9):.2f}x | "
                     f"{med(a, 'p99_ms'):.2f} | {med(b, 'p99_ms'):.2f} | {med(a, 'cpu_s_per_1k'):.3f} | {med(b, 'cpu_s_per_1k'):.3f} |")
    if args.llm:
        med = lambda side, key: statistics.median(r[key] for r in streams[side])
        a_ttft, b_ttft, a_tps, b_tps = med("a", "ttft_ms"), med("b", "ttft_ms"), med("a", "decode_tok_s"), med("b", "decode_tok_s")
        lines.append(f"| llm stream TTFT ms (B/A) | {a_ttft:.1f} | {b_ttft:.1f} | {b_ttft / a_ttft:.2f}x | | | | |")
        lines.append(f"| llm stream decode tok/s | {a_tps:.1f} | {b_tps:.1f} | {b_tps / a_tps:.2f}x | | | | |")
    print(f"A = {args.a} {' '.join(args.env_a)}\nB = {args.b} {' '.join(args.env_b)}\nauth {'on' if args.auth else 'off'}; median of {args.rounds} interleaved rounds, {args.duration:.0f} s each\n")
    print("\n".join(lines))
    shutil.rmtree(body_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
