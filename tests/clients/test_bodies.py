"""Request bodies through real clients: tritonclient's request compression (gzip and deflate give the same
outputs as plain bodies), other Content-Encodings refused with 415, a compressed body measured against
server.max_body_bytes after decoding (413), and refusals that reach plain HTTP clients (urllib.request,
http.client, requests) as a status and a JSON body, never a broken pipe or a reset, however much of the body
the server did not want: 401 before the key check read it, 413 past server.max_body_bytes."""
import http.client
import json
import shutil
import tempfile
import urllib.request
import zlib

import brotli
import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import Server, fixture_path
from models import inputs_for, reference

ADMIN = "ym_testadmin_" + "A" * 43
MAX_BODY = 1_000_000
X = inputs_for("iris_mlp")["X"]
SMALL = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": X[0].tolist()}]}).encode()


@pytest.fixture(scope="module")
def guarded():
    """A server with auth on and server.max_body_bytes = 1,000,000, serving iris_mlp."""
    data_dir = tempfile.mkdtemp(prefix="yunmo-bodies-")
    srv = Server(data_dir, env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN,
                                "YUNMO__SERVER__MAX_BODY_BYTES": str(MAX_BODY)})
    srv.key = ADMIN
    srv.push("iris_mlp", "iris_mlp.onnx")
    srv.key = None
    yield srv
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def v2_body(size):
    """A valid V2 JSON request for iris_mlp of about `size` bytes (rows of long FP32 literals)."""
    rows = max(1, size // 80)
    data = np.random.default_rng(7).uniform(0.1, 7.9, (rows, 4)).round(15).tolist()
    body = json.dumps({"inputs": [{"name": "X", "shape": [rows, 4], "datatype": "FP32", "data": data}]}).encode()
    assert 0.8 * size < len(body) < 1.2 * size, len(body)
    return body


def triton_infer(address, algorithm, binary, headers=None, data=X):
    client = httpclient.InferenceServerClient(address, network_timeout=120)
    tensor = httpclient.InferInput("X", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("label", "probabilities")]
    try:
        return client.infer("iris_mlp", [tensor], outputs=outputs, headers=headers, request_compression_algorithm=algorithm)
    finally:
        client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests_give_the_same_outputs(server, algorithm, binary):
    plain = triton_infer(server.address, None, binary)
    compressed = triton_infer(server.address, algorithm, binary)
    want = reference(fixture_path("iris_mlp.onnx"), {"X": X})
    for name in ("label", "probabilities"):
        np.testing.assert_array_equal(compressed.as_numpy(name), plain.as_numpy(name), err_msg=name)
        np.testing.assert_allclose(compressed.as_numpy(name), want[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_raw_deflate_and_gzip_bodies_are_decoded(server):
    # zlib-wrapped deflate (what HTTP's "deflate" means and tritonclient sends) and gzip, sent by hand.
    for encoding, body in (("deflate", zlib.compress(SMALL)), ("gzip", zlib.compress(SMALL, wbits=31))):
        status, raw = server.request("POST", "/v2/models/iris_mlp/infer", body, {"Content-Type": "application/json", "Content-Encoding": encoding})
        assert status == 200, (encoding, raw)
        assert json.loads(raw)["outputs"][0]["data"] == [0], (encoding, raw)


@pytest.mark.parametrize("encoding, body", [("br", brotli.compress(SMALL)), ("zstd", SMALL)], ids=["br", "zstd"])
def test_other_content_encodings_get_415_naming_them(server, encoding, body):
    status, raw = server.request("POST", "/v2/models/iris_mlp/infer", body, {"Content-Type": "application/json", "Content-Encoding": encoding})
    assert status == 415, raw
    message = json.loads(raw)["error"]
    assert f'"{encoding}"' in message and "gzip" in message, message


def test_a_body_corrupt_for_its_encoding_is_a_400(server):
    status, raw = server.request("POST", "/v2/models/iris_mlp/infer", b"this is not gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 400, raw
    assert "gzip" in json.loads(raw)["error"]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_a_compressed_body_is_limited_after_decoding(guarded, algorithm):
    auth = {"Authorization": f"Bearer {ADMIN}"}
    # 200,000 x 4 zeros: 3.2 MB of binary tensor data that compresses to a few KB.
    zeros = np.zeros((200_000, 4), np.float32)
    with pytest.raises(InferenceServerException) as error:
        triton_infer(guarded.address, algorithm, True, headers=auth, data=zeros)
    assert error.value.status() == "413", error.value
    assert "server.max_body_bytes = 1000000" in error.value.message() and algorithm in error.value.message()
    # The same compression on a body that fits once decoded is served.
    fits = triton_infer(guarded.address, algorithm, True, headers=auth, data=np.zeros((1_000, 4), np.float32))
    assert fits.as_numpy("label").shape == (1_000,)


def test_a_gzip_bomb_gets_413_json(guarded):
    body = zlib.compress(b" " * (3 * MAX_BODY) + SMALL, wbits=31)
    assert len(body) < MAX_BODY // 100
    status, raw = guarded.request("POST", "/v2/models/iris_mlp/infer", body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, key=ADMIN)
    assert status == 413, raw
    assert "server.max_body_bytes" in json.loads(raw)["error"]


def post_urllib(server, body, key):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(server.url + "/v2/models/iris_mlp/infer", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post_http_client(server, body, key):
    connection = http.client.HTTPConnection(server.address, timeout=60)
    try:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        connection.request("POST", "/v2/models/iris_mlp/infer", body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def post_requests(server, body, key):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    response = requests.post(server.url + "/v2/models/iris_mlp/infer", data=body, headers=headers, timeout=60)
    return response.status_code, response.content


CLIENTS = {"urllib": post_urllib, "http.client": post_http_client, "requests": post_requests}


@pytest.mark.parametrize("client", CLIENTS)
def test_401_reaches_the_client_before_a_72kb_body_is_read(guarded, client):
    body = v2_body(72_000)
    results = [CLIENTS[client](guarded, body, None) for _ in range(10)]
    for status, raw in results:
        assert status == 401, raw
        assert "no API key" in json.loads(raw)["error"]
    # The same body with the key is served: the refusal was the key, not the body.
    status, raw = CLIENTS[client](guarded, body, ADMIN)
    assert status == 200, raw[:200]


@pytest.mark.parametrize("client", CLIENTS)
def test_401_reaches_the_client_for_an_8mb_body(guarded, client):
    status, raw = CLIENTS[client](guarded, v2_body(8_000_000), None)
    assert status == 401, raw
    assert "no API key" in json.loads(raw)["error"]


@pytest.mark.parametrize("client", CLIENTS)
def test_413_reaches_the_client_for_a_3mb_body_with_a_key(guarded, client):
    status, raw = CLIENTS[client](guarded, v2_body(3_000_000), ADMIN)
    assert status == 413, raw
    assert "server.max_body_bytes = 1000000" in json.loads(raw)["error"]


@pytest.mark.parametrize("status, size, key", [(401, 72_000, None), (413, 3_000_000, ADMIN)], ids=["401", "413"])
def test_refusals_on_a_kept_alive_http_client_connection_reach_the_client(guarded, status, size, key):
    """A kept-alive connection (http.client here; requests.Session and other pooled clients alike) carries the
    next request after the refused one unless the answer says `Connection: close` (response.will_close): the
    server must either keep the connection usable or say it will close it."""
    body = v2_body(size)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    connection = http.client.HTTPConnection(guarded.address, timeout=60)
    try:
        for _ in range(5):
            connection.request("POST", "/v2/models/iris_mlp/infer", body, headers)
            response = connection.getresponse()
            assert response.status == status
            assert "error" in json.loads(response.read())
            if response.will_close:
                connection.close()
                connection = http.client.HTTPConnection(guarded.address, timeout=60)
    finally:
        connection.close()
