"""The real tritonclient.http package against the real yunmo server: health, metadata, repository,
inference with binary and JSON tensors on every fixture model, compared with ONNX Runtime's Python API."""
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from conftest import fixture_path
from models import inputs_for, reference

MODELS = ["iris_mlp", "iris_logreg", "diabetes_linreg", "cnn", "efficientnet_lite0", "silero_vad", "minilm"]


@pytest.fixture(scope="module")
def client(server):
    return httpclient.InferenceServerClient(url=server.address, network_timeout=120)


def infer(client, model, inputs, binary, outputs=None, **kwargs):
    request_inputs = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        request_inputs.append(tensor)
    requested = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in outputs] if outputs else None
    return client.infer(model, request_inputs, outputs=requested, **kwargs)


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "yunmo"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_is_read_from_the_graph(client):
    metadata = client.get_model_metadata("iris_mlp")
    assert metadata["name"] == "iris_mlp"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnx_onnxv1"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {"label": "INT64", "probabilities": "FP32"}
    assert client.get_model_metadata("efficientnet_lite0", model_version="1")["inputs"][0]["shape"] == [-1, 3, 224, 224]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", MODELS)
def test_outputs_match_onnxruntime(client, model, binary):
    inputs = inputs_for(model)
    expected = reference(fixture_path(model + ".onnx"), inputs)
    result = infer(client, model, inputs, binary, outputs=list(expected))
    for name, want in expected.items():
        got = result.as_numpy(name)
        assert got is not None, f"output {name} missing"
        assert got.shape == want.shape, name
        assert got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{model}:{name}")


def test_efficientnet_recognises_the_sample_photos(client):
    result = infer(client, "efficientnet_lite0", inputs_for("efficientnet_lite0"), True)
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
    inputs = {f"in_{name}": array for name, array in arrays.items()}
    result = infer(client, "dtypes", inputs, binary, outputs=[f"out_{name}" for name in arrays])
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
    tensor = httpclient.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    output = httpclient.InferRequestedOutput("probabilities", class_count=2)
    result = client.infer("iris_mlp", [tensor], outputs=[output])
    top = result.as_numpy("probabilities")
    assert top.shape == (2, 2)
    first = top[0][0].decode().split(":")
    assert first[1:] == ["0", "setosa"]
    assert float(first[0]) > 0.9


def test_request_id_is_echoed_and_version_selected(client, server):
    server.push("versioned", "iris_logreg.onnx")
    server.push("versioned", "iris_mlp.onnx")
    inputs = inputs_for("iris_mlp")
    latest = infer(client, "versioned", inputs, True, request_id="req-42")
    assert latest.get_response()["id"] == "req-42"
    assert latest.get_response()["model_version"] == "2"
    first = infer(client, "versioned", inputs, True, model_version="1")
    assert first.get_response()["model_version"] == "1"
    want = reference(fixture_path("iris_logreg.onnx"), inputs)["probabilities"]
    np.testing.assert_allclose(first.as_numpy("probabilities"), want, rtol=1e-5, atol=1e-5)
    assert client.get_model_metadata("versioned")["versions"] == ["1", "2"]


def test_repository_extension_loads_and_unloads(client, server):
    server.push("repo_model", "iris_logreg.onnx")
    assert client.is_model_ready("repo_model")  # loads lazily
    index = {(m["name"], m["version"]): m["state"] for m in client.get_model_repository_index()}
    assert index[("repo_model", "1")] == "READY"
    client.unload_model("repo_model")
    assert not client.is_model_ready("repo_model")
    with pytest.raises(InferenceServerException) as error:
        infer(client, "repo_model", inputs_for("iris_logreg"), True)
    assert error.value.status() == "503"
    client.load_model("repo_model")
    assert client.is_model_ready("repo_model")
    assert infer(client, "repo_model", inputs_for("iris_logreg"), True).as_numpy("label") is not None


def test_errors_reach_the_client_with_their_status(client):
    with pytest.raises(InferenceServerException) as error:
        infer(client, "no_such_model", inputs_for("iris_mlp"), True)
    assert error.value.status() == "404"
    with pytest.raises(InferenceServerException) as error:
        infer(client, "iris_mlp", {"X": np.zeros((1, 5), np.float32)}, True)
    assert error.value.status() == "400"
    assert "expected shape [-1, 4]" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        infer(client, "iris_mlp", {"X": np.zeros((1, 4), np.float64)}, False)
    assert "expected datatype FP32, got FP64" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        infer(client, "cnn", {"x": np.zeros((17, 1, 8, 8), np.float32)}, True)
    assert "batch size 17 exceeds max_batch_size 16" in error.value.message()
    assert not client.is_model_ready("no_such_model")
