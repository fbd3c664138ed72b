"""Traffic control between versions (docs/pipelines.md, "Traffic control"): weighted canary routes, sticky
routes, a shadow version, explicit versions bypassing the route, a guard that rolls a failing canary back
(audited), and promotion, set through the CLI and called with tritonclient (HTTP and gRPC)."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import grpc
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import BINARY, Server

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.1, 4.4, 1.4]], np.float32)


@pytest.fixture(scope="module")
def srv():
    data_dir = tempfile.mkdtemp(prefix="yunmo-traffic-")
    server = Server(data_dir)
    for file_name in ("iris_mlp.onnx", "iris_logreg.onnx", "iris_mlp.onnx"):
        server.push("irises", file_name)
    identity = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "passes",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])]),
        opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    passes = os.path.join(data_dir, "passes.onnx")
    onnx.save(identity, passes)
    server.push_file("guarded", passes)
    server.push("guarded", "fails.onnx")
    server.push("mixed", "iris_mlp.onnx")
    server.push_file("mixed", passes)
    yield server
    assert server.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def cli(srv, *args):
    env = {**os.environ, "YUNMO_URL": srv.url}
    done = subprocess.run([BINARY, "models", *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def iris_inputs(client_module):
    tensor = client_module.InferInput("X", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    return [tensor]


def served_versions(client, count, model="irises", **kwargs):
    inputs = iris_inputs(httpclient)
    return [client.infer(model, inputs, **kwargs).get_response()["model_version"] for _ in range(count)]


def route_status(srv, model):
    status, body = srv.request("GET", f"/api/v1/models/{model}/route")
    assert status == 200, body
    return json.loads(body)


def test_a_weighted_route_splits_within_the_binomial_interval_and_names_the_version(srv):
    out = cli(srv, "route", "irises", "v1=90", "v2=10")
    assert "ROLE" in out and "canary" in out, out
    client = httpclient.InferenceServerClient(srv.address)
    versions = served_versions(client, 2000)
    canary = versions.count("2")
    assert versions.count("1") + canary == 2000
    # Binomial(2000, 0.1): mean 200, sd 13.4; the two-sided 99.9% interval is 200 +- 3.29 sd.
    assert 156 <= canary <= 244, canary
    # The answer names the version in a header too, and it is the one the body names.
    request = urllib.request.Request(srv.url + "/v2/models/irises/infer", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32",
                                                                  "data": ROWS.ravel().tolist()}]}).encode())
    with urllib.request.urlopen(request) as response:
        assert response.headers["x-yunmo-model-version"] == json.loads(response.read())["model_version"]
    counts = {entry["version"]: entry["requests"] for entry in route_status(srv, "irises")["versions"]}
    assert counts[2] >= canary and counts[1] >= 2000 - canary, counts


def test_an_explicit_version_bypasses_the_route(srv):
    cli(srv, "route", "irises", "v1=90", "v2=10")
    client = httpclient.InferenceServerClient(srv.address)
    assert set(served_versions(client, 100, model_version="2")) == {"2"}
    assert set(served_versions(client, 100, model_version="1")) == {"1"}


def test_a_sticky_route_keeps_each_caller_on_one_version_over_http_and_grpc(srv):
    cli(srv, "route", "irises", "v1=50", "v2=50", "--sticky", "header:x-user")
    client = httpclient.InferenceServerClient(srv.address)
    seen = {}
    for user in range(24):
        versions = set(served_versions(client, 6, headers={"x-user": f"user-{user}"}))
        assert len(versions) == 1, (user, versions)
        seen[user] = versions.pop()
    assert set(seen.values()) == {"1", "2"}, "24 users at 50/50 all landed on one version"
    # gRPC: the metadata key is the header, and the answer's metadata names the version.
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(srv.grpc_address))
    request = service_pb2.ModelInferRequest(model_name="irises")
    tensor = request.inputs.add(name="X", datatype="FP32", shape=list(ROWS.shape))
    tensor.contents.fp32_contents.extend(ROWS.ravel().tolist())
    for user in range(6):
        for _ in range(3):
            response, call = stub.ModelInfer.with_call(request, metadata=[("x-user", f"user-{user}")])
            assert response.model_version == seen[user], (user, response.model_version)
            assert dict(call.initial_metadata())["x-yunmo-model-version"] == response.model_version


def test_a_shadow_gets_every_routed_request_and_answers_none(srv):
    cli(srv, "route", "irises", "v1=100", "--shadow", "v3")
    before = route_status(srv, "irises")
    assert [entry["requests"] for entry in before["versions"] if entry["role"] == "shadow"] == [0]
    client = grpcclient.InferenceServerClient(srv.grpc_address)
    served = {client.infer("irises", iris_inputs(grpcclient)).get_response().model_version for _ in range(150)}
    assert served == {"1"}
    deadline = time.time() + 20
    while True:
        shadow = [entry for entry in route_status(srv, "irises")["versions"] if entry["role"] == "shadow"][0]
        if shadow["requests"] >= 150 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert shadow["requests"] == 150 and shadow["failed"] == 0, shadow


def test_a_failing_canary_is_rolled_back_by_its_guard_and_the_rollback_is_audited(srv):
    out = cli(srv, "route", "guarded", "v1=50", "v2=50", "--guard", "--guard-min-requests", "20")
    assert "guarded" in out, out
    client = httpclient.InferenceServerClient(srv.address)
    inputs = [httpclient.InferInput("x", [2, 3], "FP32")]
    inputs[0].set_data_from_numpy(np.ones((2, 3), np.float32))
    failures = 0
    for sent in range(600):
        try:
            client.infer("guarded", inputs)
        except Exception as error:  # tritonclient raises InferenceServerException on a 500
            assert "Reshape" in str(error) or "500" in str(error) or "failed" in str(error), error
            failures += 1
        route = route_status(srv, "guarded")["version_policy"]
        if [entry["weight"] for entry in route["versions"]] == [50, 0]:
            break
    assert [entry["weight"] for entry in route["versions"]] == [50, 0], f"not rolled back after {sent + 1} requests"
    assert failures >= 20, failures
    # After the rollback every request succeeds on the stable version.
    assert {client.infer("guarded", inputs).get_response()["model_version"] for _ in range(50)} == {"1"}
    status, body = srv.request("GET", "/api/v1/audit?limit=100")
    assert status == 200, body
    rollbacks = [entry for entry in json.loads(body) if entry["action"] == "route rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["target"] == "/api/v1/models/guarded/route", rollbacks
    assert "version 2 failed" in rollbacks[0]["outcome"], rollbacks
    assert "v2" in cli(srv, "route", "guarded")


def test_promotion_sends_everything_to_one_version_and_is_audited(srv):
    cli(srv, "route", "irises", "v1=90", "v2=10")
    assert "version 2" in cli(srv, "promote", "irises", "v2")
    client = httpclient.InferenceServerClient(srv.address)
    assert set(served_versions(client, 50)) == {"2"}
    assert "not routed" in cli(srv, "route", "irises")
    status, body = srv.request("GET", "/api/v1/audit?limit=100")
    assert any(entry["action"] == "POST /api/v1/models/irises/route/promote" for entry in json.loads(body)), body


@pytest.mark.parametrize("model, route, field", [
    ("irises", {"versions": [{"version": 1, "weight": 50}, {"version": 9, "weight": 50}]}, "versions: version 9"),
    ("irises", {"versions": [{"version": 1, "weight": 50}], "shadow": 1}, "shadow"),
    ("irises", {"versions": [{"version": 1, "weight": 0}]}, "versions"),
    ("irises", {"versions": [{"version": 1, "weight": 50}], "sticky": "cookie"}, "sticky"),
    ("irises", {"versions": [{"version": 1, "weight": 50}], "guard": {"window_seconds": 1}}, "guard.window_seconds"),
    ("irises", {"versions": [{"version": 1, "weight": 50}], "weights": [1]}, "weights"),
    ("mixed", {"versions": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}, "other inputs"),
])
def test_bad_routes_get_400s_naming_the_field(srv, model, route, field):
    before = route_status(srv, model)["version_policy"]
    status, body = srv.request("PUT", f"/api/v1/models/{model}/route", route)
    assert status == 400 and field in json.loads(body)["error"]["message"], body
    assert route_status(srv, model)["version_policy"] == before, "a refused route changes nothing"


def test_a_routed_version_cannot_be_deleted(srv):
    cli(srv, "route", "mixed", "v1=100")
    status, body = srv.request("DELETE", "/api/v1/models/mixed/versions/1")
    assert status == 400 and "routed" in json.loads(body)["error"]["message"], body
