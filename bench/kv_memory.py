#!/usr/bin/env python3
"""Memory per sequence of an LLM's KV cache by `kv_cache_type` (f16, q8_0, q4_0), and decode speed with each.

Usage: bench/kv_memory.py [--binary target/release/yunmo] [--sequences 8] [--context 4096] [--threads 2]

For each type, one server of the binary (backends.gguf.max_sequences and context_per_sequence as given, so the
cache holds sequences x context cells) with SmolLM2-135M-Instruct Q4_1 pushed under that `kv_cache_type`; the
server's resident memory (VmRSS) is read before and after the version loads (its first request, which
allocates and clears the whole cache), and the version's memory estimate is read from its load log line.
Then 64 greedy tokens are decoded three times. Prints per type: the RSS the load added, per sequence, the
estimate, the ratio to f16, and decode tokens/s. Build first: `cargo build --release -p yunmo-server`;
`scripts/fetch-assets.sh smollm`.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm  # noqa: E402  (bench/llm.py: the server process, streaming completion, auth)

PROMPT = "<|im_start|>user\nTell me about the history of trains.<|im_end|>\n<|im_start|>assistant\n"


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def measure(args, kv_type, work):
    port = 18092
    env = {"YUNMO__BACKENDS__GGUF__THREADS": str(args.threads), "YUNMO__BACKENDS__GGUF__MAX_SEQUENCES": str(args.sequences),
           "YUNMO__BACKENDS__GGUF__CONTEXT_PER_SEQUENCE": str(args.context), "YUNMO__TELEMETRY__LOG_LEVEL": "info", **llm.YUNMO_AUTH_ENV}
    log = os.path.join(work, f"{kv_type}.log")
    proc = llm.Proc([args.binary, "serve", "--http-port", str(port), "--grpc-port", "0", "--data-dir", os.path.join(work, kv_type)],
                    log, "0-1", env)
    try:
        llm.wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        subprocess.run([args.binary, "models", "push", "--url", f"http://127.0.0.1:{port}", "--name", "smollm2", llm.GGUF,
                        "--config", f'{{"kv_cache_type": "{kv_type}"}}'], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "YUNMO_API_KEY": llm.BENCH_KEY})
        time.sleep(1)
        before = rss_bytes(proc.process.pid)
        llm.stream_completion("127.0.0.1", port, "smollm2", PROMPT, 4, 1, 0.0)
        time.sleep(1)
        after = rss_bytes(proc.process.pid)
        speeds = []
        for _ in range(3):
            _, decode, tokens = llm.stream_completion("127.0.0.1", port, "smollm2", PROMPT, 64, 1, 0.0)
            speeds.append((tokens - 1) / decode)
    finally:
        proc.stop()
    with open(log, errors="replace") as f:
        estimates = re.findall(r"memory_bytes[=:]\s*(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", f.read()))
    return after - before, int(estimates[-1]) if estimates else None, statistics.median(speeds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=llm.YUNMO)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="yunmo-kv-bench-")
    try:
        results = {kv_type: measure(args, kv_type, work) for kv_type in ("f16", "q8_0", "q4_0")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mib = 1024 * 1024
    print(f"{args.binary}; SmolLM2-135M Q4_1, {args.sequences} sequences x {args.context} tokens, {args.threads} threads\n")
    print("| kv_cache_type | RSS added by the load MiB | per sequence MiB | estimate MiB | RSS / f16 | decode tok/s | tok/s / f16 |")
    print("|---|---|---|---|---|---|---|")
    base_rss, _, base_speed = results["f16"]
    for kv_type, (rss, estimate, speed) in results.items():
        estimate_text = f"{estimate / mib:.0f}" if estimate else "?"
        print(f"| {kv_type} | {rss / mib:.0f} | {rss / mib / args.sequences:.1f} | {estimate_text} | {rss / base_rss:.2f} | "
              f"{speed:.0f} | {speed / base_speed:.2f} |")


if __name__ == "__main__":
    main()
