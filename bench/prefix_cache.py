#!/usr/bin/env python3
"""Time to first token with and without prefix caching, on one binary, interleaved: a ~500-token system prompt
repeated with different questions, turn 2 of a multi-turn chat (the first turn and its answer repeated), and
the same whole prompt again.

Usage: bench/prefix_cache.py [--binary target/release/yunmo] [--runs 5] [--threads 2] [--prefill-chunk 32] [--no-peer]

Three servers of the same binary (backends.gguf.prefix_cache true and false, and true with the version's
flash_attention "off": llama.cpp's plain attention) and llama-cpp-python's server (when installed by
bench/llm.sh --install), SmolLM2-135M-Instruct Q4_1, each on CPUs 0-1 with --threads llama.cpp
threads, all running at once, measured request by request in turn (so the machine's drift falls on all alike); each measurement streams one
/v1/completions (ChatML text, greedy, 8 tokens) and takes the time to its first token. Prints the medians, the ratio
cache-off / cache-on (above 1: the cache is faster) and llama-cpp-python / each Yunmo with the cache (above 1: Yunmo is faster). Build first: `cargo build --release -p
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

SYSTEM = " ".join(
    f"Rule {i}: when a visitor asks about exhibit {i}, describe its age, its maker and the room it stands in, and keep the answer short."
    for i in range(1, 21))
QUESTIONS = ["When does the museum open?", "Where is the cafe?", "Can I take photos?", "Is there a lift?", "Who built the clock?",
             "How long is a tour?", "Are dogs allowed?"]


def chatml(system, turns):
    text = f"<|im_start|>system\n{system}<|im_end|>\n"
    for role, content in turns:
        text += f"<|im_start|>{role}\n{content}<|im_end|>\n"
    return text + "<|im_start|>assistant\n"


def ttft(port, prompt):
    first, _, _ = llm.stream_completion("127.0.0.1", port, "smollm2", prompt, 8, 1, 0.0)
    return first


def steps(runs):
    """The requests of one measurement, in order: (label index or None for an unmeasured request, prompt)."""
    out = [(None, chatml(SYSTEM, [("user", QUESTIONS[0])]))]
    out += [(0, chatml(SYSTEM, [("user", QUESTIONS[(i + 1) % len(QUESTIONS)])])) for i in range(runs)]
    for i in range(runs):
        first = [("user", QUESTIONS[i % len(QUESTIONS)])]
        out.append((None, chatml(SYSTEM + f" Session {i}.", first)))
        out.append((1, chatml(SYSTEM + f" Session {i}.", first + [("assistant", "We open at nine."), ("user", "And when do you close?")])))
    same = chatml(SYSTEM, [("user", QUESTIONS[0])])
    out += [(None, same)] + [(2, same)] * runs
    # A prompt whose first words differ from every earlier one: nothing can be reused, all of it is prefilled.
    out += [(3, chatml(f"Visitor {i + 1000}. " + SYSTEM, [("user", QUESTIONS[0])])) for i in range(runs)]
    return out


def measure(ports, runs):
    """Runs the steps on every server in turn, request by request, so that the machine's drift over the run falls
    on all of them alike; returns, by server, the median time to first token of each label."""
    times = {name: [[] for _ in range(4)] for name in ports}
    for label, prompt in steps(runs):
        for name, port in ports.items():
            first = ttft(port, prompt)
            if label is not None:
                times[name][label].append(first)
    return {name: [statistics.median(values) for values in series] for name, series in times.items()}


def yunmo(binary, threads, work, chunk, server):
    """server: (name, port, prefix_cache "true"/"false", version config JSON or None)."""
    name, port, enabled, config = server
    env = {"YUNMO__BACKENDS__GGUF__THREADS": str(threads), "YUNMO__BACKENDS__GGUF__PREFIX_CACHE": enabled,
           "YUNMO__BACKENDS__GGUF__PREFILL_CHUNK": str(chunk), "YUNMO__TELEMETRY__LOG_LEVEL": "warn", **llm.YUNMO_AUTH_ENV}
    name = name.replace(" ", "-").replace(",", "")
    proc = llm.Proc([binary, "serve", "--http-port", str(port), "--grpc-port", "0", "--data-dir", os.path.join(work, name)],
                    os.path.join(work, f"{name}.log"), "0-1", env)
    llm.wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
    push = [binary, "models", "push", "--url", f"http://127.0.0.1:{port}", "--name", "smollm2", llm.GGUF]
    subprocess.run(push + (["--config", config] if config else []), check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "YUNMO_API_KEY": llm.BENCH_KEY})
    return proc, port


def llamacpp(threads, work):
    """llama-cpp-python's server (bench/llm.sh --install), which reuses the longest prefix of its last prompt."""
    python = os.path.join(llm.PEERS, "llamacpp", "venv", "bin", "python")
    if not os.path.exists(python):
        llm.log("llama-cpp-python is not installed (bench/llm.sh --install); measuring Yunmo only")
        return None, None
    port = 18091
    proc = llm.Proc([python, "-m", "llama_cpp.server", "--model", llm.GGUF, "--model_alias", "smollm2", "--host", "127.0.0.1",
                     "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", "2048"],
                    os.path.join(work, "llamacpp.log"), "0-1")
    llm.wait_ready(f"http://127.0.0.1:{port}/v1/models")
    return proc, port


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=llm.YUNMO)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prefill-chunk", type=int, default=32, help="backends.gguf.prefill_chunk of both Yunmo servers")
    parser.add_argument("--no-peer", action="store_true", help="skip llama-cpp-python")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="yunmo-prefix-bench-")
    yunmos = (("cache on", 18090, "true", None), ("cache off", 18092, "false", None),
              ("cache on, plain attention", 18093, "true", '{"flash_attention": "off"}'))
    servers = [(server[0], lambda server=server: yunmo(args.binary, args.threads, work, args.prefill_chunk, server)) for server in yunmos]
    servers.append(("llama-cpp-python", lambda: (None, None) if args.no_peer else llamacpp(args.threads, work)))
    procs, ports = [], {}
    try:
        # All servers run at once (idle but for the request being measured), each pinned to the same CPUs.
        for name, start in servers:
            proc, port = start()
            if proc is not None:
                procs.append(proc)
                ports[name] = port
                ttft(port, chatml("warm-up", [("user", "hello")]))
        results = measure(ports, args.runs)
    finally:
        for proc in procs:
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.binary}; SmolLM2-135M Q4_1, {args.threads} threads, prefill_chunk {args.prefill_chunk}; median of {args.runs} requests\n")
    peer = "llama-cpp-python" in results
    print("| request | Yunmo cache on TTFT ms | Yunmo cache off TTFT ms | off / on | Yunmo cache on, plain attention TTFT ms |"
          + (" llama-cpp-python TTFT ms | peer / Yunmo on | peer / Yunmo plain |" if peer else ""))
    print("|---|---|---|---|---|" + ("---|---|---|" if peer else ""))
    labels = ("~500-token system prompt repeated, new question", "turn 2 of a chat", "the same prompt again",
              "a new ~500-token prompt (nothing to reuse: prefill speed)")
    for index, label in enumerate(labels):
        on, off, plain = (results[name][index] for name in ("cache on", "cache off", "cache on, plain attention"))
        row = f"| {label} | {on * 1000:.1f} | {off * 1000:.1f} | {off / on:.2f}x | {plain * 1000:.1f} |"
        if peer:
            other = results["llama-cpp-python"][index]
            row += f" {other * 1000:.1f} | {other / on:.2f}x | {other / plain:.2f}x |"
        print(row)


if __name__ == "__main__":
    main()
