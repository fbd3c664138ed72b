#!/usr/bin/env python3
"""An image pipeline (JPEG in, top-5 labels out) against the same work done by a client (decode, resize,
crop and normalise in Python with Pillow + NumPy, as tests/fixtures/images.py does, then the tensor sent to
the model with tritonclient in Triton's binary format) and by Triton's Python backend (the same Pillow +
NumPy preprocessing and the model with onnxruntime in one Python model, bench/peers/triton_image_model.py).
Images/s and p99 at each concurrency.

Usage: bench/pipeline.py [--binary target/release/yunmo] [--duration 8] [--concurrency 1,16] [--image china.jpg]

One Yunmo server as bench/run.py starts it (auth on, pinned to CPU 0, one async-runtime and one ONNX
Runtime thread), holding EfficientNet-Lite0 (`max_batch_size` 16) and the pipeline over it
(deploy/demo/imagenet-pipeline.json). The clients run on CPU 1:
- pipeline: bench/loadgen posting the JPEG file itself (`Content-Type: image/jpeg`): decoding and
  preprocessing run in the server, on its one core, with the model;
- client: Python threads (one per concurrent request, tritonclient's HTTP client each) that decode and
  preprocess the JPEG with Pillow + NumPy and send the FP32 tensor (600 KB) in binary: the server runs the
  model only, the client's core does the rest.
- pipeline, V2 binary: bench/loadgen posting the JPEG as a BYTES tensor in Triton's binary format (the
  request tritonclient sends), to Yunmo's pipeline and, when Triton is installed (bench/run.sh --install),
  to Triton's Python backend (one instance, pinned to CPU 0 like Yunmo).
Build first: `cargo build --release -p yunmo-server` and `cargo build --release -p yunmo-loadgen`; run
`bench/run.sh` once so the fixtures exist.
"""
import argparse
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: the server wrapper, loadgen, CPU accounting)

sys.path.insert(0, os.path.join(run.ROOT, "tests", "fixtures"))


def push_pipeline(server):
    key = run.BENCH_KEY
    labels = [f"class {index}" for index in range(1000)]
    request = urllib.request.Request(f"{server.url}/api/v1/models/efficientnet/versions/1/config", method="PUT",
                                     data=json.dumps({"max_batch_size": 16, "labels": labels}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    urllib.request.urlopen(request).read()
    run.post(server.url + "/api/v1/models", json.dumps({"name": "imagenet"}).encode(), key=key)
    with open(os.path.join(run.ROOT, "deploy", "demo", "imagenet-pipeline.json")) as f:
        declaration = f.read().replace('"efficientnet_lite0"', '"efficientnet"')
    run.post(server.url + "/api/v1/models/imagenet/versions", declaration.encode(), key=key)


def binary_request(image, work):
    """The V2 binary request of one JPEG as a BYTES tensor `image` (JSON header, then 4-byte length and the
    bytes); returns its path and the header's length."""
    with open(image, "rb") as f:
        data = f.read()
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(data) + 4}}],
                         "outputs": [{"name": "labels", "parameters": {"binary_data": False}}, {"name": "scores", "parameters": {"binary_data": False}}]}).encode()
    path = os.path.join(work, "image.bin")
    with open(path, "wb") as f:
        f.write(header + len(data).to_bytes(4, "little") + data)
    return path, len(header)


class TritonImage(run.Server):
    """Triton (nvidia-pytriton's tritonserver) with the Python-backend model `imagenet` of
    bench/peers/triton_image_model.py over EfficientNet-Lite0."""
    name = "triton"

    def __init__(self, work, fixtures):
        self.work, self.port = work, 18100
        self.url = f"http://127.0.0.1:{self.port}"
        model = os.path.join(work, "repo", "imagenet")
        os.makedirs(os.path.join(model, "1"))
        shutil.copy(os.path.join(fixtures, run.MODELS["efficientnet"][0]), os.path.join(model, "1", "model.onnx"))
        shutil.copy(os.path.join(run.ROOT, "bench", "peers", "triton_image_model.py"), os.path.join(model, "1", "model.py"))
        with open(os.path.join(model, "config.pbtxt"), "w") as f:
            f.write('name: "imagenet"\nbackend: "python"\nmax_batch_size: 0\n'
                    'input [ { name: "image" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
                    'output [ { name: "labels" data_type: TYPE_STRING dims: [ -1, 5 ] }, { name: "scores" data_type: TYPE_FP32 dims: [ -1, 5 ] } ]\n'
                    "instance_group [ { kind: KIND_CPU count: 1 } ]\n")
        run.spawn_triton(self, f"{work}/repo")
        run.wait_ready(self.url + "/v2/health/ready")
        run.wait_ready(f"{self.url}/v2/models/imagenet/ready")


def client_load(server, image, concurrency, duration, warmup):
    """`concurrency` Python threads, each preprocessing `image` and calling the model, for `duration` s."""
    import images  # noqa: E402  (tests/fixtures/images.py: Pillow + NumPy preprocessing)
    import tritonclient.http as httpclient

    latencies, stop, errors = [], threading.Event(), []
    lock = threading.Lock()
    start_measuring = time.time() + warmup

    def worker():
        client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        headers = {"Authorization": f"Bearer {run.BENCH_KEY}"}
        outputs = [httpclient.InferRequestedOutput("logits", binary_data=True)]
        while not stop.is_set():
            started = time.time()
            try:
                x = images.preprocess(image)
                tensor = httpclient.InferInput("input", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x, binary_data=True)
                logits = client.infer("efficientnet", [tensor], outputs=outputs, headers=headers).as_numpy("logits")
                logits.argsort(axis=1)[:, -5:]
            except Exception as error:  # counted, as loadgen counts failed requests
                errors.append(error)
                continue
            if started >= start_measuring:
                with lock:
                    latencies.append(time.time() - started)

    os.sched_setaffinity(0, {1})
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(warmup + duration)
    stop.set()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {"rps": len(latencies) / duration, "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
            "requests": len(latencies), "errors": len(errors)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=run.YUNMO)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--image", default="china.jpg", help="one of scikit-learn's photos")
    parser.add_argument("--fixtures", default=os.path.join(run.CACHE, "bench-models"))
    args = parser.parse_args()
    import images  # noqa: E402

    image = images.sample_image_path(args.image)
    work = tempfile.mkdtemp(prefix="yunmo-pipeline-bench-")
    binary, header_length = binary_request(image, work)
    binary_load = lambda url, c, auth: ["http", "--url", url, "--body", binary, "--header", f"Inference-Header-Content-Length: {header_length}",
                                        "--header", "Content-Type: application/octet-stream", "--concurrency", str(c)] + auth
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results = {}
    server = type("Binary", (run.Yunmo,), {"binary": args.binary})(work, ["efficientnet"], args.fixtures)
    try:
        push_pipeline(server)
        for round_index in range(args.rounds):
            for c in concurrencies:
                run.log(f"== yunmo, round {round_index + 1}, c={c}")
                extra = ["http", "--url", server.infer_url("imagenet"), "--body", image, "--header", "Content-Type: image/jpeg",
                         "--concurrency", str(c)] + server.http_auth()
                results.setdefault(("yunmo pipeline, raw JPEG body", c), []).append(run.measure(server, args, f"raw c={c}", extra))
                extra = binary_load(server.infer_url("imagenet"), c, server.http_auth())
                results.setdefault(("yunmo pipeline, V2 binary BYTES", c), []).append(run.measure(server, args, f"binary c={c}", extra))
                before = run.cpu_seconds(server.process.pid)
                measured = client_load(server, image, c, args.duration, args.warmup)
                measured["cpu_s_per_1k"] = (run.cpu_seconds(server.process.pid) - before) / max(measured["requests"], 1) * 1000
                run.log(f"  client c={c}: {measured['rps']:.1f} images/s, p99 {measured['p99_ms']:.1f} ms, errors {measured['errors']}")
                results.setdefault(("yunmo model, client preprocessing (Python)", c), []).append(measured)
    finally:
        server.stop()
    if os.path.exists(os.path.join(run.PEERS, "triton", "server", "bin", "tritonserver")):
        triton_work = os.path.join(work, "triton")
        os.makedirs(triton_work)
        triton = TritonImage(triton_work, args.fixtures)
        try:
            for round_index in range(args.rounds):
                for c in concurrencies:
                    run.log(f"== triton, round {round_index + 1}, c={c}")
                    extra = binary_load(triton.infer_url("imagenet"), c, [])
                    results.setdefault(("triton python backend, V2 binary BYTES", c), []).append(run.measure(triton, args, f"triton c={c}", extra))
        finally:
            triton.stop()
    else:
        run.log("Triton is not installed (bench/run.sh --install): its row is left out")
    shutil.rmtree(work, ignore_errors=True)
    med = lambda rows, key: statistics.median(r[key] for r in rows)
    print(f"{args.binary}; {args.image}; median of {args.rounds} rounds, {args.duration:.0f} s each; server on CPU 0, clients on CPU 1\n")
    print("| path | concurrency | images/s | p99 ms | server CPU s per 1k images |")
    print("|---|---|---|---|---|")
    for (label, c), rows in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        print(f"| {label} | {c} | {med(rows, 'rps'):.1f} | {med(rows, 'p99_ms'):.1f} | {med(rows, 'cpu_s_per_1k'):.1f} |")


if __name__ == "__main__":
    main()
