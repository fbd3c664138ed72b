"""Request ids through real clients: `x-request-id` is taken from the request (HTTP header, gRPC metadata) or
made, echoed on every answer, written into the message of every 5xx, and named by the server's log lines of
the request."""

import json
import os
import re
import shutil
import tempfile
import urllib.request

import numpy as np
import pytest

from conftest import Server

GENERATED = re.compile(r"^[0-9a-f]{18}$")


@pytest.fixture(scope="module")
def srv():
    data_dir = tempfile.mkdtemp(prefix="yunmo-request-id-")
    server = Server(data_dir)
    server.push("iris_mlp", "iris_mlp.onnx")
    # `fails` is a valid model whose runtime fails on every request: a real 500.
    server.push("fails", "fails.onnx")
    yield server
    assert server.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def http(srv, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(srv.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


FAILING = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def test_http_ids_are_echoed_or_made_and_name_every_5xx_and_its_log_lines(srv):
    status, headers, _ = http(srv, "GET", "/v2/health/live")
    assert status == 200 and GENERATED.match(headers["x-request-id"]), headers
    first = headers["x-request-id"]
    _, headers, _ = http(srv, "GET", "/v2/health/live")
    assert headers["x-request-id"] != first, "each request gets its own id"

    status, headers, _ = http(srv, "GET", "/v2/health/live", headers={"x-request-id": "client-trace-01"})
    assert headers["x-request-id"] == "client-trace-01"
    status, headers, _ = http(srv, "GET", "/v2/models/nope", headers={"x-request-id": "client-trace-02"})
    assert status == 404 and headers["x-request-id"] == "client-trace-02", "errors echo it too"
    _, headers, _ = http(srv, "GET", "/v2/health/live", headers={"x-request-id": "x" * 129})
    assert GENERATED.match(headers["x-request-id"]), "an over-long id is replaced"

    # A 500: its body names the id, in the KServe and the OpenAI shapes.
    status, headers, body = http(srv, "POST", "/v2/models/fails/infer", FAILING, {"x-request-id": "trace-500-kserve"})
    assert status == 500 and headers["x-request-id"] == "trace-500-kserve"
    assert "[request id trace-500-kserve]" in json.loads(body)["error"], body
    status, headers, body = http(srv, "POST", "/v2/models/fails/infer", FAILING)
    made = headers["x-request-id"]
    assert status == 500 and f"[request id {made}]" in json.loads(body)["error"], body
    # A 4xx carries no id in its message: it is the client's to fix.
    status, _, body = http(srv, "POST", "/v2/models/iris_mlp/infer", {"inputs": []}, {"x-request-id": "trace-400"})
    assert status == 400 and "trace-400" not in body.decode(), body

    # The server's log line of the failure names the id (the span of the request).
    with open(os.path.join(srv.data_dir, "server.log"), encoding="utf-8", errors="replace") as log:
        lines = [line for line in log if "trace-500-kserve" in line]
    assert any("Request failed" in line for line in lines), lines


def test_grpc_ids_are_echoed_in_metadata_and_name_every_5xx():
    import grpc
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    from tritonclient.utils import InferenceServerException

    data_dir = tempfile.mkdtemp(prefix="yunmo-request-id-grpc-")
    server = Server(data_dir)
    try:
        server.push("fails", "fails.onnx")
        channel = grpc.insecure_channel(server.grpc_address)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ServerLive.with_call(service_pb2.ServerLiveRequest(), metadata=[("x-request-id", "grpc-trace-01")])
        assert dict(call.initial_metadata())["x-request-id"] == "grpc-trace-01"
        _, call = stub.ServerLive.with_call(service_pb2.ServerLiveRequest())
        assert GENERATED.match(dict(call.initial_metadata())["x-request-id"])

        client = grpcclient.InferenceServerClient(server.grpc_address)
        x = grpcclient.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
        with pytest.raises(InferenceServerException) as failed:
            client.infer("fails", [x], headers={"x-request-id": "grpc-trace-500"})
        assert "[request id grpc-trace-500]" in failed.value.message(), failed.value
        assert failed.value.status() == "StatusCode.INTERNAL"
        channel.close()
    finally:
        assert server.stop() == 0
        shutil.rmtree(data_dir, ignore_errors=True)
