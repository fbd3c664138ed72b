"""The KServe Python SDK (`kserve.InferenceRESTClient` and `kserve.InferenceGRPCClient`), unchanged, against
the real server: health, and inference on iris_mlp over REST (JSON and binary tensors) and gRPC (raw and typed
contents), compared with ONNX Runtime's Python API. The SDK puts `model_name` in the V2 REST body, so these
also check that a body naming its model is accepted when it matches the path and refused when not.

The SDK cannot be imported next to tritonclient.grpc (both register the V2 protobuf messages under different
file names), so each test makes its SDK calls in a child process, kserve_sdk.py, and checks what it prints."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import fixture_path
from models import inputs_for, reference

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kserve_sdk.py")
X = inputs_for("iris_mlp")["X"]
EXPECTED = reference(fixture_path("iris_mlp.onnx"), {"X": X})


def sdk(server, call, **arguments):
    """Runs one kserve_sdk.py call against `server` with the iris rows; returns its JSON result."""
    arguments = {"call": call, "url": server.url, "grpc": server.grpc_address, "x": X.tolist(), **arguments}
    done = subprocess.run([sys.executable, HELPER, json.dumps(arguments)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def assert_matches_onnxruntime(outputs):
    assert set(EXPECTED) <= set(outputs), outputs
    assert outputs["label"]["datatype"] == "INT64" and outputs["probabilities"]["datatype"] == "FP32"
    np.testing.assert_array_equal(np.asarray(outputs["label"]["data"]), EXPECTED["label"])
    probabilities = np.asarray(outputs["probabilities"]["data"], np.float32)
    assert probabilities.shape == EXPECTED["probabilities"].shape == (len(X), 3)
    np.testing.assert_allclose(probabilities, EXPECTED["probabilities"], rtol=1e-5, atol=1e-5)


def test_rest_and_grpc_health(server):
    health = sdk(server, "health", model="iris_mlp")
    for protocol in ("rest", "grpc"):
        assert health[protocol] == {"live": True, "ready": True, "model": True, "missing": False}, (protocol, health)


def test_rest_json_infer_matches_onnxruntime(server):
    result = sdk(server, "rest_infer", binary=False, body_model="iris_mlp", path_model="iris_mlp", id="kserve-json")
    assert result["sent"] == {"binary": False, "body_model_name": "iris_mlp"}
    assert result["status"] == 200, result
    assert result["model_name"] == "iris_mlp" and result["id"] == "kserve-json"
    assert "inference-header-content-length" not in result["headers"], "JSON in, JSON out"
    assert_matches_onnxruntime(result["outputs"])


def test_rest_binary_infer_matches_onnxruntime(server):
    # Binary input after the JSON header, and binary_data_output asks for binary outputs.
    result = sdk(server, "rest_infer", binary=True, body_model="iris_mlp", path_model="iris_mlp")
    assert result["sent"] == {"binary": True, "body_model_name": "iris_mlp"}
    assert result["status"] == 200, result
    headers = result["headers"]
    assert headers["content-type"] == "application/octet-stream" and int(headers["inference-header-content-length"]) > 0, headers
    assert_matches_onnxruntime(result["outputs"])


@pytest.mark.parametrize("binary", [True, False], ids=["raw", "typed"])
def test_grpc_infer_matches_onnxruntime(server, binary):
    result = sdk(server, "grpc_infer", binary=binary, body_model="iris_mlp", version="1", id="kserve-grpc")
    assert result["sent"] == {"raw": binary}
    assert result["model_name"] == "iris_mlp" and result["model_version"] == "1" and result["id"] == "kserve-grpc"
    assert_matches_onnxruntime(result["outputs"])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_rest_body_model_name_must_match_the_path(server, binary):
    # The SDK writes InferRequest.model_name into the body and infer(model_name=...) into the path.
    result = sdk(server, "rest_infer", binary=binary, body_model="iris_logreg", path_model="iris_mlp")
    assert result["sent"]["body_model_name"] == "iris_logreg"
    assert result["status"] == 400, result
    message = result["body"]["error"]
    assert "iris_logreg" in message and "iris_mlp" in message, message


def test_rest_body_model_version_must_match_the_path(server):
    body = {"model_name": "iris_mlp", "model_version": "1", "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": X[0].tolist()}]}
    status, raw = server.request("POST", "/v2/models/iris_mlp/versions/1/infer", body)
    assert status == 200, raw
    assert json.loads(raw)["outputs"][0]["data"] == EXPECTED["label"][:1].tolist()
    status, raw = server.request("POST", "/v2/models/iris_mlp/versions/1/infer", {**body, "model_version": "2"})
    assert status == 400, raw
    message = json.loads(raw)["error"]
    assert "'2'" in message and "1" in message, message


def test_v1_protocol_readiness_and_predict_match_onnxruntime(server):
    """KServe V1 (the SDK's default protocol): `GET /v1/models/{m}` is ready, `:predict` answers a row per
    instance (an object of the outputs, the model having two), a bad row is a 400 in V2's error shape, and a
    missing model a 404."""
    result = sdk(server, "v1", model="iris_mlp")
    assert result["ready"] is True
    predictions = result["predictions"]
    assert len(predictions) == len(X) and all(set(p) == {"label", "probabilities"} for p in predictions), predictions
    np.testing.assert_array_equal([p["label"] for p in predictions], EXPECTED["label"])
    np.testing.assert_allclose([p["probabilities"] for p in predictions], EXPECTED["probabilities"], rtol=1e-5, atol=1e-5)
    assert result["bad"]["status"] == 400 and "input 'X'" in result["bad"]["body"]["error"], result["bad"]
    assert result["missing"]["status"] == 404, result["missing"]
