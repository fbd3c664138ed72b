"""Pipeline models end to end: EfficientNet-Lite0 behind image steps, softmax and top-5, declared as a
version, called with tritonclient (HTTP and gRPC) with JPEG and PNG bytes, against the same preprocessing
done here with Pillow + NumPy and the model run by ONNX Runtime in Python."""
import io
import json
import os
import shutil
import tempfile

import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

import images
from conftest import FIXTURES, Server
from test_image_steps import pillow

LABELS = [f"class {index}" for index in range(1000)]
PIPELINE = {
    "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
    "steps": [
        {"name": "top5", "top_k": {"k": 5, "labels_from": "classify"}, "inputs": {"scores": "probabilities"},
         "outputs": {"labels": "labels", "scores": "scores"}},
        {"name": "preprocess", "image": {"resize": {"shorter_side": 256}, "center_crop": [224, 224],
                                         "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
         "inputs": {"image": "image"}, "outputs": {"tensor": "pixels"}},
        {"name": "classify", "model": {"name": "effnet"}, "inputs": {"input": "pixels"}, "outputs": {"logits": "logits"}},
        {"name": "softmax", "softmax": {}, "inputs": {"x": "logits"}, "outputs": {"y": "probabilities"}},
    ],
    "outputs": ["labels", "scores", "probabilities"],
}


@pytest.fixture(scope="module")
def srv():
    data_dir = tempfile.mkdtemp(prefix="yunmo-pipelines-")
    server = Server(data_dir)
    server.push("effnet", "efficientnet_lite0.onnx", config={"labels": LABELS, "max_batch_size": 8})
    status, body = server.request("POST", "/api/v1/models", {"name": "imagenet"})
    assert status == 201, body
    status, body = server.request("POST", "/api/v1/models/imagenet/versions", json.dumps(PIPELINE).encode(), {"Content-Type": "application/json"})
    assert status == 201, body
    server.pipeline_version = json.loads(body)
    yield server
    if server.process.poll() is None:
        assert server.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def photo_bytes(name, encoding):
    if encoding == "JPEG":
        return open(images.sample_image_path(name), "rb").read()
    buffer = io.BytesIO()
    Image.open(images.sample_image_path(name)).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def reference(encoded):
    """Pillow + NumPy preprocessing, ONNX Runtime, softmax."""
    x = np.stack([pillow(Image.open(io.BytesIO(data)).convert("RGB")) for data in encoded]).astype(np.float32)
    session = onnxruntime.InferenceSession(os.path.join(FIXTURES, "efficientnet_lite0.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": x})[0].astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_the_declaration_is_stored_with_models_pinned_and_its_signature(srv):
    version = srv.pipeline_version
    assert version["format"] == "pipeline", version
    outputs = {spec["name"]: spec["datatype"] for spec in version["outputs"]}
    assert outputs == {"labels": "BYTES", "scores": "FP32", "probabilities": "FP32"}
    client = httpclient.InferenceServerClient(srv.address)
    metadata = client.get_model_metadata("imagenet")
    assert metadata["platform"] == "yunmo_pipeline" and metadata["inputs"][0]["datatype"] == "BYTES"


@pytest.mark.parametrize("encoding", ["PNG", "JPEG"])
def test_images_in_labels_out_equal_pillow_and_onnxruntime(srv, encoding):
    encoded = [photo_bytes(name, encoding) for name in ("china.jpg", "flower.jpg")]
    expected = reference(encoded)
    client = httpclient.InferenceServerClient(srv.address)
    tensor = httpclient.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(encoded, dtype=object))
    result = client.infer("imagenet", [tensor])
    labels, scores, probabilities = (result.as_numpy(name) for name in ("labels", "scores", "probabilities"))
    assert labels.shape == (2, 5) and scores.shape == (2, 5)
    for row in range(2):
        top5 = np.argsort(-expected[row], kind="stable")[:5]
        assert [label.decode() for label in labels[row]] == [LABELS[index] for index in top5], (row, labels[row], top5)
        # The same decoded pixels (JPEG through libjpeg-turbo's decoder, as Pillow's) give the same probabilities.
        assert np.abs(scores[row] - expected[row][top5]).max() < 1e-4, (scores[row], expected[row][top5])
    assert [labels[0][0].decode(), labels[1][0].decode()] == ["class 698", "class 985"]
    assert np.abs(probabilities - expected).max() < 1e-5, np.abs(probabilities - expected).max()


def test_grpc_clients_call_the_pipeline_too(srv):
    client = grpcclient.InferenceServerClient(srv.grpc_address)
    tensor = grpcclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([photo_bytes("flower.jpg", "PNG")], dtype=object))
    result = client.infer("imagenet", [tensor], outputs=[grpcclient.InferRequestedOutput("labels")])
    assert result.as_numpy("labels")[0][0].decode() == "class 985"


def png_header(width, height):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data, message", [
    (lambda: photo_bytes("china.jpg", "JPEG")[:30000], "the JPEG data is truncated"),
    (lambda: png_header(20000, 20000), "20000x20000 pixels, more than the limits"),
    (lambda: b"this is not an image", "not a JPEG, PNG or WebP image"),
])
def test_bad_images_get_a_400_naming_the_image(srv, data, message):
    client = httpclient.InferenceServerClient(srv.address)
    tensor = httpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([data()], dtype=object))
    with pytest.raises(Exception) as raised:
        client.infer("imagenet", [tensor])
    assert message in str(raised.value) and "images[0]" in str(raised.value), str(raised.value)
    status, answer = srv.request("POST", "/v2/models/imagenet/infer", {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["not an image"]}]})
    assert status == 400 and b"images[0]" in answer, answer


def test_a_broken_declaration_is_refused_and_nothing_is_stored(srv):
    broken = json.loads(json.dumps(PIPELINE))
    broken["steps"][1]["image"]["center_crop"] = [200, 200]
    status, body = srv.request("POST", "/api/v1/models/imagenet/versions", json.dumps(broken).encode(), {"Content-Type": "application/json"})
    assert status == 400, body
    assert "steps[2] ('classify').inputs.input: 'pixels' has shape [-1, 3, 200, 200], the step takes [-1, 3, 224, 224]" in body.decode(), body
    unknown = json.loads(json.dumps(PIPELINE))
    unknown["steps"][2]["model"]["name"] = "nope"
    status, body = srv.request("POST", "/api/v1/models/imagenet/versions", json.dumps(unknown).encode(), {"Content-Type": "application/json"})
    assert status in (400, 404) and b"model step 'nope'" in body, body
    status, body = srv.request("GET", "/api/v1/models/imagenet/versions")
    listed = json.loads(body)
    listed = listed["versions"] if isinstance(listed, dict) else listed
    assert len(listed) == 1, listed


def test_a_raw_image_body_is_the_one_bytes_input_and_other_models_refuse_it(srv):
    status, body = srv.request("POST", "/v2/models/imagenet/infer", photo_bytes("flower.jpg", "JPEG"), {"Content-Type": "image/jpeg"})
    assert status == 200, body
    labels = {output["name"]: output for output in json.loads(body)["outputs"]}["labels"]
    assert labels["shape"] == [1, 5] and labels["data"][0] == "class 985", labels
    status, body = srv.request("POST", "/v2/models/effnet/infer", photo_bytes("flower.jpg", "JPEG"), {"Content-Type": "image/jpeg"})
    assert status == 400 and b"input 'input' is FP32" in body and b"send a V2 inference request" in body, body


def test_the_image_limits_are_configurable(tmp_path):
    """[pipelines] max_image_side (YUNMO__PIPELINES__MAX_IMAGE_SIDE) bounds what an image step decodes."""
    server = Server(str(tmp_path), env={"YUNMO__PIPELINES__MAX_IMAGE_SIDE": "300", "YUNMO__PIPELINES__MAX_IMAGE_BYTES": "100000"})
    try:
        server.push("effnet", "efficientnet_lite0.onnx", config={"labels": LABELS})
        status, body = server.request("POST", "/api/v1/models", {"name": "imagenet"})
        assert status == 201, body
        status, body = server.request("POST", "/api/v1/models/imagenet/versions", json.dumps(PIPELINE).encode(), {"Content-Type": "application/json"})
        assert status == 201, body
        small = io.BytesIO()
        Image.open(images.sample_image_path("china.jpg")).convert("RGB").resize((300, 224)).save(small, "JPEG")
        status, body = server.request("POST", "/v2/models/imagenet/infer", small.getvalue(), {"Content-Type": "image/jpeg"})
        assert status == 200, body
        status, body = server.request("POST", "/v2/models/imagenet/infer", photo_bytes("china.jpg", "PNG")[:90000], {"Content-Type": "image/png"})
        assert status == 400 and b"640x427" in body and b"images[0]" in body, body
        status, body = server.request("POST", "/v2/models/imagenet/infer", photo_bytes("china.jpg", "JPEG"), {"Content-Type": "image/jpeg"})
        assert status == 400 and b"100000" in body, body
    finally:
        assert server.stop() == 0
