"""The real tritonclient (http and grpc) against the real yunmo server: health, metadata, repository,
inference with binary/raw and JSON/typed tensors on every fixture model, compared with ONNX Runtime's
Python API to 1e-5. Every test runs once per protocol."""
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from conftest import fixture_path
from models import inputs_for, reference
from tritonclients import Client

MODELS = ["iris_mlp", "iris_logreg", "diabetes_linreg", "cnn", "efficientnet_lite0", "silero_vad", "minilm"]


@pytest.fixture(scope="module", params=["http", "grpc"])
def client(request, server):
    return Client(request.param, server)


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.server_metadata()
    assert metadata["name"] == "yunmo"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_is_read_from_the_graph(client):
    metadata = client.metadata("iris_mlp")
    assert metadata["name"] == "iris_mlp"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnx_onnxv1"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {"label": "INT64", "probabilities": "FP32"}
    assert client.metadata("efficientnet_lite0", version="1")["inputs"][0]["shape"] == [-1, 3, 224, 224]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", MODELS)
def test_outputs_match_onnxruntime(client, model, binary):
    inputs = inputs_for(model)
    expected = reference(fixture_path(model + ".onnx"), inputs)
    result = client.infer(model, inputs, binary, outputs=list(expected))
    for name, want in expected.items():
        got = result.as_numpy(name)
        assert got is not None, f"output {name} missing"
        assert got.shape == want.shape, name
        assert got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{model}:{name}")


def test_efficientnet_recognises_the_sample_photos(client):
    result = client.infer("efficientnet_lite0", inputs_for("efficientnet_lite0"), True)
    assert result.as_numpy("logits").argmax(axis=1).tolist() == [698, 985]  # palace, daisy


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(client, binary):
    arrays = {
        "bool": np.array([[True, False, True]]), "uint8": np.array([[0, 7, 255]], np.uint8),
        "uint16": np.array([[0, 7, 65535]], np.uint16), "uint32": np.array([[0, 7, 2**32 - 1]], np.uint32),
        "uint64": np.array([[0, 7, 2**64 - 1]], np.uint64), "int8": np.array([[-128, 0, 127]], np.int8),
        "int16": np.array([[-32768, 0, 32767]], np.int16), "int32": np.array([[-2**31, 0, 2**31 - 1]], np.int32),
        "int64": np.array([[-2**63, 0, 2**63 - 1]], np.int64), "fp16": np.array([[-1.5, 0.25, 65504]], np.float16),
        "fp32": np.array([[-1.5, 3.25e-8, 1e30]], np.float32), "fp64": np.array([[-1.5, 1e-300, 1e300]], np.float64),
        "string": np.array([[b"alpha", b"", "\u4e91\u6a21".encode()]], dtype=np.object_),
    }
    model = "dtypes"
    if client.protocol == "grpc" and not binary:
        # gRPC's typed contents have no FP16 field: FP16 travels raw only (the binary case covers it).
        del arrays["fp16"]
        model = "dtypes_typed"
    inputs = {f"in_{name}": array for name, array in arrays.items()}
    result = client.infer(model, inputs, binary, outputs=[f"out_{name}" for name in arrays])
    for name, array in arrays.items():
        got = result.as_numpy(f"out_{name}")
        assert got.shape == array.shape, name
        if name == "string":
            # tritonclient hands JSON BYTES back as str (as it does with Triton) and binary ones as bytes.
            as_bytes = [[v if isinstance(v, bytes) else v.encode() for v in row] for row in got.tolist()]
            assert as_bytes == array.tolist()
        else:
            assert got.dtype == array.dtype, name
            np.testing.assert_array_equal(got, array, err_msg=name)


def test_classification_extension_uses_version_labels(client):
    rows = inputs_for("iris_mlp")["X"][:2]
    result = client.infer("iris_mlp", {"X": rows}, True, outputs=["probabilities"], class_count=2)
    top = result.as_numpy("probabilities")
    assert top.shape == (2, 2)
    first = top[0][0].decode().split(":")
    assert first[1:] == ["0", "setosa"]
    assert float(first[0]) > 0.9


def test_request_id_is_echoed_and_version_selected(client, server):
    model = f"versioned_{client.protocol}"
    server.push(model, "iris_logreg.onnx")
    server.push(model, "iris_mlp.onnx")
    inputs = inputs_for("iris_mlp")
    latest = client.infer(model, inputs, True, request_id="req-42")
    assert client.response_field(latest, "id") == "req-42"
    assert client.response_field(latest, "model_version") == "2"
    first = client.infer(model, inputs, True, model_version="1")
    assert client.response_field(first, "model_version") == "1"
    want = reference(fixture_path("iris_logreg.onnx"), inputs)["probabilities"]
    np.testing.assert_allclose(first.as_numpy("probabilities"), want, rtol=1e-5, atol=1e-5)
    assert client.metadata(model)["versions"] == ["1", "2"]


def test_repository_extension_loads_and_unloads(client, server):
    model = f"repo_{client.protocol}"
    server.push(model, "iris_logreg.onnx")
    assert client.is_model_ready(model)  # loads lazily
    index = {(m["name"], m["version"]): m["state"] for m in client.index()}
    assert index[(model, "1")] == "READY"
    client.unload_model(model)
    assert not client.is_model_ready(model)
    with pytest.raises(InferenceServerException) as error:
        client.infer(model, inputs_for("iris_logreg"), True)
    assert error.value.status() == client.status["unavailable"]
    client.load_model(model)
    assert client.is_model_ready(model)
    assert client.infer(model, inputs_for("iris_logreg"), True).as_numpy("label") is not None
    # Model files come through the management API, not the repository extension.
    with pytest.raises(InferenceServerException) as error:
        client.load_model(model, config="{}", files={"file:1/model.onnx": b"\x08\x01"})
    assert error.value.status() == client.status["invalid"]
    assert "upload model files through POST /api/v1/models" in error.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_errors_reach_the_client_with_their_status(client, binary):
    with pytest.raises(InferenceServerException) as error:
        client.infer("no_such_model", inputs_for("iris_mlp"), binary)
    assert error.value.status() == client.status["not_found"]
    with pytest.raises(InferenceServerException) as error:
        client.infer("iris_mlp", {"X": np.zeros((1, 5), np.float32)}, binary)
    assert error.value.status() == client.status["invalid"]
    assert "expected shape [-1, 4]" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.infer("iris_mlp", {"X": np.zeros((1, 4), np.float64)}, binary)
    assert "expected datatype FP32, got FP64" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.infer("cnn", {"x": np.zeros((17, 1, 8, 8), np.float32)}, binary)
    assert "batch size 17 exceeds max_batch_size 16" in error.value.message()
    assert not client.is_model_ready("no_such_model")


def test_grpc_health_v1_reports_serving(server):
    import grpc

    channel = grpc.insecure_channel(server.grpc_address)
    check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    # HealthCheckRequest{service=""} is empty; HealthCheckResponse{status=SERVING(1)} is field 1 varint 1.
    assert check(b"", timeout=10) == b"\x08\x01"
    named = b"\x0a" + bytes([len(b"inference.GRPCInferenceService")]) + b"inference.GRPCInferenceService"
    assert check(named, timeout=10) == b"\x08\x01"


def test_header_limits_refuse_oversized_metadata_on_http_and_grpc():
    """server.max_header_bytes bounds HTTP headers (431) and gRPC's HTTP/2 header list alike."""
    import shutil
    import tempfile

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from conftest import Server

    data_dir = tempfile.mkdtemp(prefix="yunmo-headers-")
    srv = Server(data_dir, env={"YUNMO__SERVER__MAX_HEADER_BYTES": "4096"})
    try:
        srv.push("iris", "iris_mlp.onnx")
        grpc = grpcclient.InferenceServerClient(srv.grpc_address)
        http = httpclient.InferenceServerClient(srv.address)
        assert grpc.is_model_ready("iris", headers={"x-note": "x" * 3000})
        assert http.is_model_ready("iris", headers={"x-note": "x" * 3000})
        with pytest.raises(InferenceServerException) as error:
            grpc.is_model_ready("iris", headers={"x-note": "x" * 5000})
        assert "431" in str(error.value)
        status, body = srv.request("GET", "/v2/models/iris/ready", headers={"x-note": "x" * 5000})
        assert status == 431 and b"max_header_bytes = 4096" in body, body
        assert grpc.is_model_ready("iris"), "the server goes on serving"
    finally:
        assert srv.stop() == 0
        shutil.rmtree(data_dir, ignore_errors=True)


def test_header_limits_can_be_raised_past_the_parser_defaults():
    """server.max_headers above hyper's default of 100 lets 120 headers through, and refuses 160 with the
    V2 error body (not the parser's bare 431)."""
    import json
    import shutil
    import tempfile

    from conftest import Server

    data_dir = tempfile.mkdtemp(prefix="yunmo-headers-")
    srv = Server(data_dir, env={"YUNMO__SERVER__MAX_HEADERS": "150"})
    try:
        headers = lambda n: {f"x-extra-{i}": "1" for i in range(n)}
        status, body = srv.request("GET", "/v2/health/ready", headers=headers(120))
        assert status == 200, body
        status, body = srv.request("GET", "/v2/health/ready", headers=headers(160))
        assert status == 431 and "more than max_headers = 150" in json.loads(body)["error"], body
    finally:
        assert srv.stop() == 0
        shutil.rmtree(data_dir, ignore_errors=True)
