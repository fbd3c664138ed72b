"""Static int8 quantisation of a CNN through an optimise job: EfficientNet-Lite0 calibrated on sample
inputs uploaded as a calibration file (a V2 inference request in JSON), served as a new version and called
with tritonclient. ONNX Runtime's own quantize_static on the same samples is the oracle."""
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import onnxruntime
import pytest
import tritonclient.http as httpclient

import images
from conftest import BINARY, FIXTURES, Server

ADMIN = "ym_staticadmin_" + "S" * 41
PHOTOS = ("china.jpg", "flower.jpg")


@pytest.fixture(scope="module")
def srv():
    data_dir = tempfile.mkdtemp(prefix="yunmo-static-")
    server = Server(data_dir, env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN,
                                   "YUNMO__JOBS__MAX_FILE_BYTES": str(64 << 20)})
    server.key = ADMIN
    yield server
    if server.process.poll() is None:
        assert server.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def upload(srv, data, purpose, filename):
    return srv.request("POST", f"/api/v1/files?filename={filename}&purpose={purpose}", data, {"Content-Type": "application/json"})


def wait(srv, job_id, timeout=600):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, body = srv.request("GET", f"/api/v1/jobs/{job_id}")
        assert status == 200, body
        job = json.loads(body)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")


def infer(srv, model, version, batch):
    client = httpclient.InferenceServerClient(srv.address)
    tensor = httpclient.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer(model, [tensor], model_version=str(version), headers={"Authorization": f"Bearer {ADMIN}"})
    return result.as_numpy("logits")


def test_efficientnet_static_int8_keeps_its_top1_is_smaller_and_agrees_with_onnx_runtimes_quantiser(srv, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    parent_path = os.path.join(FIXTURES, "efficientnet_lite0.onnx")
    status, body = srv.request("POST", "/api/v1/models", {"name": "effnet"})
    assert status == 201, body
    with open(parent_path, "rb") as f:
        status, body = srv.request("POST", "/api/v1/models/effnet/versions", f.read(), {"Content-Type": "application/octet-stream"})
    assert status == 201, body

    samples = images.calibration_views(16)
    status, body = upload(srv, images.v2_request(samples[:8]) + b"\n" + images.v2_request(samples[8:]), "calibration", "samples.jsonl")
    assert status == 201, body
    calibration = json.loads(body)
    assert calibration["rows"] == 16 and calibration["columns"] == ["input"], calibration

    # Bad calibration is refused before anything runs, naming the field.
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "optimise", "model": "effnet", "params": {"method": "static_int8"}})
    assert status == 400 and b"calibration_file" in body, body
    status, body = upload(srv, b"input\n1\n", "train", "x.csv")
    assert status == 201, body
    csv_id = json.loads(body)["id"]
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "optimise", "model": "effnet", "calibration_file": csv_id,
                                                        "params": {"method": "static_int8"}})
    assert status == 400 and b"purpose calibration" in body, body
    status, body = upload(srv, json.dumps({"inputs": [{"name": "image", "shape": [1, 1], "datatype": "FP32", "data": [0]}]}).encode(),
                          "calibration", "wrong.json")
    assert status == 201, body
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "optimise", "model": "effnet", "calibration_file": json.loads(body)["id"],
                                                        "params": {"method": "static_int8"}})
    assert status == 400 and b"takes" in body and b"input" in body, body
    status, body = upload(srv, b"{\"inputs\": 3}", "calibration", "bad.json")
    assert status == 400 and b"request 1 is not a V2 inference request" in body, body
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "optimise", "model": "effnet", "calibration_file": calibration["id"],
                                                        "params": {"method": "dynamic_int8"}})
    assert status == 400 and b"applies to method static_int8 only" in body, body

    # Through the CLI, which uploads the samples file first (purpose calibration) and names it.
    path = tmp_path / "samples.jsonl"
    path.write_bytes(images.v2_request(samples[:8]) + b"\n" + images.v2_request(samples[8:]))
    env = {**os.environ, "YUNMO_URL": srv.url, "YUNMO_API_KEY": ADMIN}
    made = subprocess.run([BINARY, "jobs", "create", "optimise", "--model", "effnet", "--method", "static_int8",
                           "--calibration-file", str(path), "--detach"], env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    job = wait(srv, made.stdout.strip())
    assert job["status"] == "succeeded", job["error"]
    status, body = srv.request("GET", f"/api/v1/files/{job['calibration_file']}")
    assert status == 200 and json.loads(body)["purpose"] == "calibration" and json.loads(body)["rows"] == 16, body
    metrics = job["metrics"]
    # At least 3x smaller (int8 weights); the speed-up is measured in bench/optimise.py, not asserted here.
    assert metrics["size_ratio"] <= 1 / 3, metrics
    status, body = srv.request("GET", "/api/v1/models/effnet/versions")
    listed = json.loads(body)
    listed = listed["versions"] if isinstance(listed, dict) else listed
    report = listed[-1]["provenance"]["details"]
    assert report["rewrite"]["convs_quantized"] > 40 and report["rewrite"]["calibration_samples"] == 16, report["rewrite"]
    assert "calibration sample" in report["probe"], report["probe"]
    print("static_int8 report:", json.dumps({k: report[k] for k in ("size_ratio", "latency", "agreement")}))

    # The test photos, centre-cropped as in training: the same top-1 class as the parent, through tritonclient.
    photos = np.concatenate([images.preprocess(images.sample_image_path(name)) for name in PHOTOS])
    parent_logits = infer(srv, "effnet", 1, photos)
    ours = infer(srv, "effnet", job["result_version"], photos)
    assert list(parent_logits.argmax(1)) == [698, 985], parent_logits.argmax(1)
    assert list(ours.argmax(1)) == [698, 985], ours.argmax(1)

    # ONNX Runtime's quantiser on the same samples (QDQ, uint8 activations, int8 per-channel weights, min/max).
    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": np.round(samples[:8], 4)}, {"input": np.round(samples[8:], 4)}])

        def get_next(self):
            return next(self.batches, None)

    oracle_path = str(tmp_path / "oracle.onnx")
    quantize_static(parent_path, oracle_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    oracle = onnxruntime.InferenceSession(oracle_path, providers=["CPUExecutionProvider"]).run(None, {"input": photos})[0]
    assert list(oracle.argmax(1)) == [698, 985]
    cosine = lambda a, b: float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    for row in range(2):
        # Ours and ONNX Runtime's agree with each other about as well as each agrees with the parent.
        assert cosine(ours[row], oracle[row]) >= 0.98, (row, cosine(ours[row], oracle[row]))
        assert cosine(ours[row], parent_logits[row]) >= 0.97, (row, cosine(ours[row], parent_logits[row]))
    print("cosine to parent: ours", [cosine(ours[r], parent_logits[r]) for r in range(2)],
          "onnxruntime", [cosine(oracle[r], parent_logits[r]) for r in range(2)])
    assert os.path.getsize(oracle_path) * 0.8 <= metrics["size_ratio"] * os.path.getsize(parent_path) <= os.path.getsize(oracle_path) * 1.2
