#!/usr/bin/env python3
"""Optimisation jobs measured: each optimisation's output against its parent, in one run.

Usage: bench/optimise.py --binary target/release/yunmo

Starts the server (auth off, one job worker), then for each case uploads the parent, runs the optimise job
and prints the job's own report: file sizes, the median latency of parent and result at batch 1 and 32,
measured side by side in the job's process on one thread (so the ratio is what matters on this shared
machine), and the agreement with the parent (smallest output cosine and top-1 agreement; perplexity for
GGUF). Cases: an MLP trained here on iris (prune to half, dynamic int8), paraphrase-MiniLM-L3 fp32
(dynamic int8), EfficientNet-Lite0 (static int8, calibrated on 16 crops of scikit-learn's two photos; ONNX
Runtime's quantize_static on the same samples is timed beside it, in this Python process on one thread),
SmolLM2-135M (Q4_1 to Q4_0). Fetch the models first: scripts/fetch-assets.sh paraphrase smollm efficientnet,
and build the fixtures (scripts/test.sh does; YUNMO_FIXTURES names their folder).
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

CACHE = os.environ.get("YUNMO_CACHE", os.path.expanduser("~/.cache/yunmo"))


def request(url, method, path, body=None, content_type="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": content_type} if data else {})
    with urllib.request.urlopen(req) as response:
        return json.loads(response.read() or b"null")


def wait(url, job_id):
    while True:
        job = request(url, "GET", f"/api/v1/jobs/{job_id}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)


def upload_version(url, name, path):
    request(url, "POST", "/api/v1/models", {"name": name})
    with open(path, "rb") as f:
        return request(url, "POST", f"/api/v1/models/{name}/versions", f.read(), "application/octet-stream")


def optimise(url, model, params, calibration=None):
    body = {"kind": "optimise", "model": model, "params": params, "calibration_file": calibration}
    job = wait(url, request(url, "POST", "/api/v1/jobs", body)["id"])
    if job["status"] != "succeeded":
        raise RuntimeError(job["error"])
    return request(url, "GET", f"/api/v1/models/{model}/versions/{job['result_version']}")["provenance"]["details"]


def onnxruntime_static(parent, samples):
    """ONNX Runtime's quantize_static on the same samples (QDQ, uint8 activations, int8 per-channel weights),
    its size and batch-1 latency against the parent's, both timed here on one thread."""
    import numpy as np
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": np.round(samples[:8], 4)}, {"input": np.round(samples[8:], 4)}])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as folder:
        oracle = os.path.join(folder, "oracle.onnx")
        quantize_static(parent, oracle, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        x = samples[:1]
        times = {}
        for name, path in (("parent", parent), ("oracle", oracle)):
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            session.run(None, {"input": x})
            runs = []
            for _ in range(30):
                started = time.perf_counter()
                session.run(None, {"input": x})
                runs.append(time.perf_counter() - started)
            times[name] = sorted(runs)[len(runs) // 2]
        size = os.path.getsize(oracle) / os.path.getsize(parent)
        return f"{'  onnxruntime quantize_static':<28} {'static_int8':<14} {size:>5.2f}x {times['parent'] / times['oracle']:>9.2f}x {'-':>11}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yunmo-optimise-bench-") as data:
        ready = os.path.join(data, "ready.json")
        env = {**os.environ, "YUNMO__AUTH__ENABLED": "false"}
        server = subprocess.Popen([args.binary, "serve", "--http-port", "0", "--grpc-port", "0", "--data-dir", data, "--ready-file", ready],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(ready):
                time.sleep(0.05)
            url = "http://" + json.load(open(ready))["http"]
            from sklearn import datasets
            frame = datasets.load_iris(as_frame=True).frame
            out = io.StringIO()
            frame.to_csv(out, index=False)
            file = request(url, "POST", "/api/v1/files?filename=iris.csv", out.getvalue().encode(), "text/csv")
            trained = wait(url, request(url, "POST", "/api/v1/jobs", {"kind": "train", "model": "mlp", "training_file": file["id"], "params": {
                "family": "mlp_classifier", "target": "target", "hidden_layers": [256, 256], "epochs": 200, "learning_rate": 0.01}})["id"])
            assert trained["status"] == "succeeded", trained
            upload_version(url, "paraphrase", os.path.join(CACHE, "models", "paraphrase-minilm-l3-fp32.onnx"))
            upload_version(url, "smollm2", os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf"))
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
            import images
            effnet = os.path.join(os.environ.get("YUNMO_FIXTURES", os.path.join(CACHE, "fixtures")), "efficientnet_lite0.onnx")
            upload_version(url, "effnet", effnet)
            samples = images.calibration_views(16)
            calibration = request(url, "POST", "/api/v1/files?filename=samples.jsonl&purpose=calibration",
                                  images.v2_request(samples[:8]) + b"\n" + images.v2_request(samples[8:]))["id"]
            cases = [
                ("MLP 4-256-256-3 (iris)", "mlp", {"method": "prune", "keep_fraction": 0.5, "min_cosine": 0.9, "min_top1": 0.9}),
                ("MLP 4-256-256-3 (iris)", "mlp", {"method": "dynamic_int8", "min_elements": 1}),
                ("paraphrase-MiniLM-L3 fp32", "paraphrase", {"method": "dynamic_int8"}),
                ("EfficientNet-Lite0 fp32", "effnet", {"method": "static_int8"}),
                ("SmolLM2-135M Q4_1", "smollm2", {"method": "requantize", "type": "Q4_0"}),
            ]
            print(f"{'model':<28} {'method':<14} {'size':>6} {'b1 speedup':>10} {'b32 speedup':>11} {'agreement':<32}")
            for label, model, params in cases:
                report = optimise(url, model, params, calibration if params["method"] == "static_int8" else None)
                latency = report.get("latency", {})
                speed = lambda batch: f"{latency[batch]['speedup']:.2f}x" if batch in latency else "-"
                if "perplexity" in report:
                    agreement = f"perplexity {report['perplexity']['parent']:.2f} -> {report['perplexity']['result']:.2f}"
                else:
                    cosines = [v["cosine"] for v in report["agreement"].values() if "cosine" in v]
                    top1 = [v["top1"] for v in report["agreement"].values() if "top1" in v]
                    agreement = f"cosine>={min(cosines):.4f} top1>={min(top1) if top1 else 1:.3f}"
                    if params["method"] == "static_int8":
                        # Logits: the argmax agreement on the calibration crops (reported, not judged).
                        agreement = f"cosine>={min(cosines):.4f} argmax {report['agreement']['logits']['argmax_agreement']:.3f}"
                method = params["method"] + (f" {params['type']}" if "type" in params else "")
                print(f"{label:<28} {method:<14} {report['size_ratio']:>5.2f}x {speed('batch_1'):>10} {speed('batch_32'):>11} {agreement:<32}", flush=True)
            print(onnxruntime_static(effnet, samples), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
