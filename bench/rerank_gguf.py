#!/usr/bin/env python3
"""GGUF reranking throughput: Yunmo's /v1/rerank on a GGUF reranker against llama-cpp-python on the same file, in
one run, both with llama.cpp on 2 threads and CPUs 0-1, 8 inputs per forward pass.

The model is the test fixture reranker.gguf (tests/fixtures/gguf_reranker.py: paraphrase-MiniLM-L3-v2 as llama.cpp's
`bert` with rank pooling). Each request ranks 8 documents against one query.
  - Yunmo: closed loop of /v1/rerank requests (8 documents each) from 1 and from 8 client threads for --duration s;
    the encoder packs up to backends.gguf.max_sequences (8) pairs into one forward pass.
  - llama-cpp-python (in-process, so without HTTP): Llama(embedding=True, pooling_type=RANK, n_seq_max=8).embed()
    on the same 8 pairs (written "query document", one token shorter than Yunmo's [SEP]-separated pair), in a loop.
Prints pairs/s for each and the ratios Yunmo / peer (above 1: Yunmo is faster).

Usage: bench/rerank_gguf.py [--binary target/release/yunmo] [--duration 10]   (peer: bench/llm.sh --install;
fixtures: scripts/test.sh or tests/fixtures/make_models.py DIR)
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm  # noqa: E402  (the server process, readiness, the peer's venv)

QUERY = "What is the capital of France?"
DOCUMENTS = ["Bananas are yellow fruits rich in potassium.", "Paris is the capital and largest city of France.",
             "The Eiffel Tower is in Paris.", "Berlin is the capital of Germany.", "Madrid is the capital of Spain.",
             "The Seine flows through Paris.", "France borders Belgium, Germany and Spain.", "Rome is in Italy."]

PEER = r"""
import sys, time, llama_cpp
path, duration, query, documents = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
model = llama_cpp.Llama(path, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK, n_ctx=512, n_batch=512,
                        n_ubatch=512, n_seq_max=8, n_threads=2, n_threads_batch=2, verbose=False)
pairs = [f"{query} {d}" for d in documents]
model.embed(pairs)
done, start = 0, time.perf_counter()
while time.perf_counter() - start < duration:
    model.embed(pairs)
    done += len(pairs)
print(done / (time.perf_counter() - start))
"""


def fixture(name):
    for directory in [os.environ.get("YUNMO_FIXTURES", "")] + sorted(
            (os.path.join(llm.CACHE, d) for d in os.listdir(llm.CACHE) if d.startswith("fixtures-")), key=os.path.getmtime, reverse=True):
        if directory and os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    sys.exit(f"no {name}: run scripts/test.sh (or tests/fixtures/make_models.py DIR) first")


def yunmo_rate(port, clients, duration):
    body = {"model": "ggrank", "query": QUERY, "documents": DOCUMENTS, "return_documents": False}
    counts = [0] * clients
    stop = time.perf_counter() + duration

    def client(index):
        while time.perf_counter() < stop:
            answer = llm.post_json(f"http://127.0.0.1:{port}/v1/rerank", body)
            counts[index] += len(answer["results"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=llm.YUNMO)
    parser.add_argument("--duration", type=float, default=10)
    args = parser.parse_args()
    model = fixture("reranker.gguf")
    work = tempfile.mkdtemp(prefix="yunmo-bench-rerank-")
    port = 18092
    env = {"YUNMO__BACKENDS__GGUF__THREADS": "2", "YUNMO__BACKENDS__GGUF__MAX_SEQUENCES": "8",
           "YUNMO__TELEMETRY__LOG_LEVEL": "warn", **llm.YUNMO_AUTH_ENV}
    server = llm.Proc([args.binary, "serve", "--http-port", str(port), "--grpc-port", "0", "--data-dir", os.path.join(work, "data")],
                      os.path.join(work, "yunmo.log"), "0-1", env)
    try:
        llm.wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        subprocess.run([args.binary, "models", "push", "--url", f"http://127.0.0.1:{port}", "--name", "ggrank", model], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "YUNMO_API_KEY": llm.BENCH_KEY})
        yunmo_rate(port, 1, 1)  # load and warm up
        results = {"yunmo_c1": yunmo_rate(port, 1, args.duration), "yunmo_c8": yunmo_rate(port, 8, args.duration)}
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    python = os.path.join(llm.PEERS, "llamacpp", "venv", "bin", "python")
    if not os.path.exists(python):
        sys.exit("llama-cpp-python is not installed (bench/llm.sh --install)")
    peer = subprocess.run(["taskset", "-c", "0-1", python, "-c", PEER, model, str(args.duration), QUERY, *DOCUMENTS],
                          check=True, capture_output=True, text=True)
    results["peer"] = float(peer.stdout.strip().splitlines()[-1])
    print("| figure | pairs/s | Yunmo / llama-cpp-python |\n|---|---|---|")
    for name, label in [("yunmo_c1", "Yunmo /v1/rerank, 1 client"), ("yunmo_c8", "Yunmo /v1/rerank, 8 clients"),
                        ("peer", "llama-cpp-python embed(), in-process")]:
        print(f"| {label} | {results[name]:.1f} | {results[name] / results['peer']:.2f}x |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
