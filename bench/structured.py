#!/usr/bin/env python3
"""Tokens/s of JSON-schema-constrained generation against unconstrained generation, on one Yunmo binary and
one server, interleaved (docs/llm.md, "Structured outputs").

Usage: bench/structured.py [--binary target/release/yunmo] [--rounds 3] [--runs 5] [--streams 8] [--duration 15]

SmolLM2-135M-Instruct Q4_1, llama.cpp on CPUs 0-1 with --threads threads. Each round measures, for both
modes: single-stream decode tokens/s (median of --runs streamed /v1/completions, seeded sampling, after the
first token) and aggregate generated tokens/s with --streams concurrent clients for --duration s. The schema
bounds every string and array, so answers end by themselves. Prints medians over rounds and the ratio
constrained / unconstrained (the issue's bound: at least 0.8). Build first: `cargo build --release -p
yunmo-server`; `scripts/fetch-assets.sh smollm`.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm  # noqa: E402  (bench/llm.py: the server process, streaming completion, auth)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 40},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 5},
        "pets": {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
            "kind": {"enum": ["cat", "dog", "bird", "fish"]}, "name": {"type": "string", "maxLength": 20}},
            "required": ["kind", "name"], "additionalProperties": False}},
        "biography": {"type": "string", "maxLength": 300},
    },
    "required": ["name", "age", "city", "hobbies", "pets", "biography"],
    "additionalProperties": False,
}
FORMAT = {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}}
PROMPT = "<|im_start|>user\nInvent a person: name, age, city, hobbies, pets and a short biography, as JSON.<|im_end|>\n<|im_start|>assistant\n"


def single(port, runs, extra):
    rates = []
    for seed in range(runs):
        _, decode, tokens = llm.stream_completion("127.0.0.1", port, "smollm2", PROMPT, 160, seed, 0.8, extra)
        if tokens > 8 and decode > 0:
            rates.append((tokens - 1) / decode)
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=llm.YUNMO)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="yunmo-structured-bench-")
    port = 18092
    env = {"YUNMO__BACKENDS__GGUF__THREADS": str(args.threads), "YUNMO__BACKENDS__GGUF__MAX_SEQUENCES": str(args.streams),
           "YUNMO__TELEMETRY__LOG_LEVEL": "warn", **llm.YUNMO_AUTH_ENV}
    proc = llm.Proc([args.binary, "serve", "--http-port", str(port), "--grpc-port", "0", "--data-dir", os.path.join(work, "data")],
                    os.path.join(work, "server.log"), "0-1", env)
    results = {"free": {"single": [], "aggregate": []}, "schema": {"single": [], "aggregate": []}}
    try:
        llm.wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        subprocess.run([args.binary, "models", "push", "--url", f"http://127.0.0.1:{port}", "--name", "smollm2", llm.GGUF], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "YUNMO_API_KEY": llm.BENCH_KEY})
        llm.stream_completion("127.0.0.1", port, "smollm2", PROMPT, 16, 0, 0.0, FORMAT)
        for round_ in range(args.rounds):
            for mode, extra in (("free", None), ("schema", FORMAT)):
                results[mode]["single"].append(single(port, args.runs, extra))
                results[mode]["aggregate"].append(llm.aggregate("127.0.0.1", port, "smollm2", args.streams, args.duration, [PROMPT], 160, extra))
                llm.log(f"round {round_ + 1} {mode}: single {results[mode]['single'][-1]:.1f} tok/s, "
                        f"{args.streams} streams {results[mode]['aggregate'][-1]:.1f} tok/s")
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.binary}; SmolLM2-135M Q4_1, {args.threads} threads; medians of {args.rounds} interleaved rounds\n")
    print("| figure | unconstrained tok/s | JSON schema tok/s | schema / free |")
    print("|---|---|---|---|")
    for key, label in (("single", "single stream decode"), ("aggregate", f"aggregate, {args.streams} streams")):
        free, schema = statistics.median(results["free"][key]), statistics.median(results["schema"][key])
        print(f"| {label} | {free:.1f} | {schema:.1f} | {schema / free:.2f}x |")


if __name__ == "__main__":
    main()
