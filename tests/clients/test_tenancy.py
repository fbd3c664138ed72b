"""Multi-tenancy through real clients on a server with auth on: tenant isolation on REST (tritonclient.http),
gRPC (tritonclient.grpc with metadata) and the OpenAI API (openai SDK); revoked keys; scopes; rate limits and
quotas under 32 concurrent clients; exact metering of 10,000 requests from 16 clients; TLS."""
import concurrent.futures
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time

import httpx2 as httpx  # the HTTP client package the openai SDK is built on
import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import ADMIN, BINARY, Server, bearer, fixture_path, make_key, push_as

CACHE = os.environ.get("YUNMO_CACHE", os.path.expanduser("~/.cache/yunmo"))
SMOLLM = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")
IRIS = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)








@pytest.fixture(scope="module")
def tenants():
    data_dir = tempfile.mkdtemp(prefix="yunmo-tenancy-")
    srv = Server(data_dir, env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__AUTH__USAGE_FLUSH_MS": "200"})
    for tenant in ("a", "b"):
        status, body = srv.request("POST", "/api/v1/tenants", {"name": tenant}, key=ADMIN)
        assert status == 201, body
    keys = {tenant: make_key(srv, tenant, ["models:write", "models:read", "infer"])["key"] for tenant in ("a", "b")}
    push_as(srv, keys["a"], "a_iris", fixture_path("iris_mlp.onnx"))
    push_as(srv, keys["b"], "b_iris", fixture_path("iris_mlp.onnx"))
    push_as(srv, keys["b"], "b_llm", SMOLLM)
    yield srv, keys
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def http_infer(client, model, key, data=IRIS):
    tensor = httpclient.InferInput("X", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return client.infer(model, [tensor], headers=bearer(key))


def test_rest_tenant_a_cannot_see_read_infer_or_delete_b_models(tenants):
    srv, keys = tenants
    status, body = srv.request("GET", "/api/v1/models", key=keys["a"])
    assert status == 200 and [m["name"] for m in json.loads(body)["models"]] == ["a_iris"]
    for method, path in [("GET", "/api/v1/models/b_iris"), ("GET", "/api/v1/models/b_iris/versions"), ("DELETE", "/api/v1/models/b_iris"),
                         ("GET", "/v2/models/b_iris"), ("POST", "/v2/repository/models/b_iris/unload"),
                         ("GET", "/v2/models/b_iris/stats"), ("GET", "/v2/models/b_iris/config"), ("GET", "/v1/models/b_iris")]:
        status, body = srv.request(method, path, key=keys["a"])
        assert status == 404, (method, path, body)
    # KServe V1 predict: B's model is not found for A (V2's error shape), A's own answers.
    v1_body = {"instances": IRIS.tolist()}
    status, body = srv.request("POST", "/v1/models/b_iris:predict", v1_body, key=keys["a"])
    assert status == 404 and "not found" in json.loads(body)["error"], body
    status, body = srv.request("POST", "/v1/models/a_iris:predict", v1_body, key=keys["a"])
    assert status == 200 and set(json.loads(body)["predictions"][0]) == {"label", "probabilities"}, body
    client = httpclient.InferenceServerClient(srv.address)
    assert http_infer(client, "a_iris", keys["a"]).as_numpy("label") is not None
    with pytest.raises(InferenceServerException) as error:
        http_infer(client, "b_iris", keys["a"])
    assert "not found" in str(error.value)
    index = client.get_model_repository_index(headers=bearer(keys["a"]))
    assert {entry["name"] for entry in index} == {"a_iris"}
    # B's model is still there for B.
    assert http_infer(client, "b_iris", keys["b"]).as_numpy("label") is not None


def test_grpc_tenant_isolation_with_metadata(tenants):
    srv, keys = tenants
    client = grpcclient.InferenceServerClient(srv.grpc_address)
    tensor = grpcclient.InferInput("X", [1, 4], "FP32")
    tensor.set_data_from_numpy(IRIS)
    assert client.infer("a_iris", [tensor], headers=bearer(keys["a"])).as_numpy("label") is not None
    assert client.get_model_metadata("a_iris", headers={"api-key": keys["a"]}).name == "a_iris"
    for call in (lambda: client.infer("b_iris", [tensor], headers=bearer(keys["a"])),
                 lambda: client.get_model_metadata("b_iris", headers=bearer(keys["a"])),
                 lambda: client.unload_model("b_iris", headers=bearer(keys["a"]))):
        with pytest.raises(InferenceServerException) as error:
            call()
        assert error.value.status() == "StatusCode.NOT_FOUND", error.value
    assert client.is_model_ready("b_iris", headers=bearer(keys["a"])) is False
    assert [m.name for m in client.get_model_repository_index(headers=bearer(keys["a"])).models] == ["a_iris"]
    # Without a key only liveness and readiness answer.
    assert client.is_server_live() and client.is_server_ready()
    for call in (lambda: client.get_server_metadata(), lambda: client.get_model_metadata("a_iris"), lambda: client.infer("a_iris", [tensor]),
                 lambda: client.get_model_repository_index(), lambda: client.load_model("a_iris")):
        with pytest.raises(InferenceServerException) as error:
            call()
        assert error.value.status() == "StatusCode.UNAUTHENTICATED", error.value


def test_openai_tenant_isolation(tenants):
    srv, keys = tenants
    a = openai.OpenAI(base_url=srv.url + "/v1", api_key=keys["a"], max_retries=0)
    b = openai.OpenAI(base_url=srv.url + "/v1", api_key=keys["b"], max_retries=0)
    assert "b_llm" not in [m.id for m in a.models.list()]
    assert "b_llm" in [m.id for m in b.models.list()]
    with pytest.raises(openai.NotFoundError):
        a.chat.completions.create(model="b_llm", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        a.completions.create(model="b_llm", prompt="hi", max_tokens=2)
    assert b.completions.create(model="b_llm", prompt="The capital of France is", max_tokens=2, temperature=0).usage.completion_tokens == 2
    # Shared with A, B's model answers A too, but A still cannot change it.
    status, body = srv.request("PUT", "/api/v1/models/b_llm/sharing", {"tenants": ["a"]}, key=keys["b"])
    assert status == 200, body
    assert a.completions.create(model="b_llm", prompt="Hi", max_tokens=1).usage.completion_tokens == 1
    status, _ = srv.request("DELETE", "/api/v1/models/b_llm", key=keys["a"])
    assert status == 403
    status, body = srv.request("PUT", "/api/v1/models/b_llm/sharing", {"tenants": []}, key=keys["b"])
    assert status == 200, body
    assert json.loads(body)["sharing"] == {"public": False, "tenants": []}
    with pytest.raises(openai.NotFoundError):
        a.completions.create(model="b_llm", prompt="Hi", max_tokens=1)


def test_revoked_key_is_refused_on_every_protocol(tenants):
    srv, _ = tenants
    created = make_key(srv, "a", ["infer", "models:read"])
    key = created["key"]
    http = httpclient.InferenceServerClient(srv.address)
    grpc = grpcclient.InferenceServerClient(srv.grpc_address)
    llm = openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
    http_infer(http, "a_iris", key)
    assert grpc.get_model_metadata("a_iris", headers=bearer(key)).name == "a_iris"
    llm.models.list()
    status, _ = srv.request("DELETE", f"/api/v1/keys/{created['id']}", key=ADMIN)
    assert status == 200
    with pytest.raises(InferenceServerException) as error:
        http_infer(http, "a_iris", key)
    assert "revoked" in str(error.value)
    with pytest.raises(InferenceServerException) as error:
        grpc.get_model_metadata("a_iris", headers=bearer(key))
    assert error.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(openai.AuthenticationError):
        llm.models.list()


def test_scopes_a_key_without_models_write_cannot_upload_or_delete(tenants):
    srv, keys = tenants
    infer_only = make_key(srv, "a", ["infer"])["key"]
    with open(fixture_path("iris_mlp.onnx"), "rb") as f:
        model = f.read()
    status, body = srv.request("POST", "/api/v1/models/a_iris/versions", model, {"Content-Type": "application/octet-stream"}, key=infer_only)
    assert status == 403 and "models:write" in json.loads(body)["error"]["message"]
    status, _ = srv.request("POST", "/api/v1/models", {"name": "sneaky"}, key=infer_only)
    assert status == 403
    status, _ = srv.request("DELETE", "/api/v1/models/a_iris", key=infer_only)
    assert status == 403
    status, _ = srv.request("POST", "/api/v1/keys", {"scopes": ["admin"]}, key=keys["a"])
    assert status == 403, "only admins make keys"
    status, body = srv.request("GET", "/api/v1/audit?limit=1000", key=ADMIN)
    refused = [e for e in json.loads(body) if e["action"] == "POST /api/v1/models/a_iris/versions" and e["outcome"] == "403"]
    assert refused and all(e["remote"].startswith("127.0.0.1:") for e in refused), refused


def burst(n, call):
    """Runs `call` n times at once from n threads; returns the results."""
    barrier = threading.Barrier(n)

    def run(_):
        barrier.wait()
        return call()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def raw_infer(address, key, body):
    connection = http.client.HTTPConnection(address)
    connection.request("POST", "/v2/models/a_iris/infer", body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = connection.getresponse()
    result = (response.status, response.getheader("Retry-After"), response.read())
    connection.close()
    return result


BODY = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}).encode()


def test_rate_limit_and_quota_trip_at_the_right_count_under_32_clients(tenants):
    srv, _ = tenants
    limited = make_key(srv, "a", ["infer"], limits={"requests_per_second": 0.001, "requests_burst": 10})["key"]
    results = burst(32, lambda: raw_infer(srv.address, limited, BODY))
    assert sorted(status for status, _, _ in results).count(200) == 10, results
    refused = [r for r in results if r[0] == 429]
    assert len(refused) == 22 and all(int(retry) >= 1 for _, retry, _ in refused)
    assert "requests_per_second" in json.loads(refused[0][2])["error"]
    quota = make_key(srv, "a", ["infer"], limits={"monthly_requests": 20})["key"]
    results = burst(32, lambda: [raw_infer(srv.address, quota, BODY) for _ in range(2)])
    statuses = [status for pair in results for status, _, _ in pair]
    assert statuses.count(200) == 20 and statuses.count(429) == 44, statuses
    message = json.loads(next(body for pair in results for status, _, body in pair if status == 429))["error"]
    assert "monthly_requests" in message and "resets at" in message


def test_openai_quota_answers_insufficient_quota(tenants):
    srv, keys = tenants
    status, body = srv.request("POST", "/api/v1/tenants", {"name": "tiny", "limits": {"monthly_requests": 2}}, key=ADMIN)
    assert status == 201, body
    key = make_key(srv, "tiny", ["infer"])["key"]
    srv.request("PUT", "/api/v1/models/b_llm/sharing", {"public": True}, key=keys["b"])
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
        for _ in range(2):
            client.completions.create(model="b_llm", prompt="Hi", max_tokens=1)
        with pytest.raises(openai.RateLimitError) as error:
            client.completions.create(model="b_llm", prompt="Hi", max_tokens=1)
        assert error.value.code == "insufficient_quota" and error.value.body["type"] == "insufficient_quota"
        assert "tenant 'tiny'" in error.value.body["message"]
    finally:
        srv.request("PUT", "/api/v1/models/b_llm/sharing", {}, key=keys["b"])


def test_metering_is_exact_for_10000_requests_from_16_clients(tenants):
    srv, _ = tenants
    status, body = srv.request("POST", "/api/v1/tenants", {"name": "metered"}, key=ADMIN)
    assert status == 201, body
    writer = make_key(srv, "metered", ["models:write", "models:read", "infer"])
    price = {"per_request": 0.002, "per_compute_second": 0.5, "per_1k_input_tokens": 0.1}
    push_as(srv, writer["key"], "m_iris", fixture_path("iris_mlp.onnx"), config={"price": price})
    key = make_key(srv, "metered", ["infer"])
    good = json.dumps({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2] * 2}]}).encode()
    bad_shape = json.dumps({"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).encode()
    total, per_client = 10_000, 625
    sent = {"bytes": 0, "ok": 0, "failed": 0}
    lock = threading.Lock()

    def client(index):
        connection = http.client.HTTPConnection(srv.address)
        counts = {"bytes": 0, "ok": 0, "failed": 0}
        for i in range(per_client):
            n = index * per_client + i
            path, body = "/v2/models/m_iris/infer", good
            if n % 10 == 3:
                body = bad_shape
            elif n % 10 == 7:
                path = "/v2/models/m_iris/versions/9/infer"
            connection.request("POST", path, body, {"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            counts["bytes"] += len(body)
            counts["ok" if response.status == 200 else "failed"] += 1
        connection.close()
        with lock:
            for name, value in counts.items():
                sent[name] += value
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(client, range(16)))
    assert sent["ok"] + sent["failed"] == total and sent["failed"] == 2000
    status, body = srv.request("GET", "/api/v1/usage?group_by=key&tenant=metered", key=ADMIN)
    rows = json.loads(body)["rows"]
    row = next(r for r in rows if r["group"] == key["id"])
    assert row["requests"] == total and row["failed"] == sent["failed"]
    assert row["bytes_in"] == sent["bytes"]
    assert row["input_elements"] == 8 * sent["ok"] and row["output_elements"] > 0
    expected = sent["ok"] * price["per_request"] + row["compute_ms"] / 1000 * price["per_compute_second"]
    assert abs(row["cost"] - expected) < 1e-6 * max(1.0, expected), (row, expected)
    # The key's tenant sees the same totals; another tenant's key cannot read them.
    status, body = srv.request("GET", "/api/v1/usage?group_by=model&format=csv", key=writer["key"])
    assert status == 200 and body.decode().splitlines()[0].startswith("tenant,group,requests")
    assert any(line.startswith(f"metered,m_iris,{total},{sent['failed']},") for line in body.decode().splitlines()), body
    status, _ = srv.request("GET", "/api/v1/usage?tenant=a", key=writer["key"])
    assert status == 403


def make_certificates(directory):
    ca_key, ca, key, csr, cert, ext = (os.path.join(directory, n) for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "san.cnf"))
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Yunmo test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    return ca, cert, key


def test_tls_with_tritonclient_openai_and_the_cli_given_the_ca():
    data_dir = tempfile.mkdtemp(prefix="yunmo-tls-")
    ca, cert, key = make_certificates(data_dir)
    srv = Server(data_dir, scheme="https", env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN,
                                                 "YUNMO__SERVER__TLS__CERT_FILE": cert, "YUNMO__SERVER__TLS__KEY_FILE": key})
    try:
        srv.ssl_context = ssl.create_default_context(cafile=ca)
        push_as(srv, ADMIN, "iris", fixture_path("iris_mlp.onnx"))
        triton = httpclient.InferenceServerClient(srv.address, ssl=True, ssl_context_factory=lambda: ssl.create_default_context(cafile=ca))
        assert http_infer(triton, "iris", ADMIN).as_numpy("label") is not None
        grpc = grpcclient.InferenceServerClient(srv.grpc_address, ssl=True, root_certificates=ca)
        assert grpc.get_model_metadata("iris", headers=bearer(ADMIN)).name == "iris"
        llm = openai.OpenAI(base_url=srv.url + "/v1", api_key=ADMIN, max_retries=0, http_client=httpx.Client(verify=ssl.create_default_context(cafile=ca)))
        assert "iris" in [m.id for m in llm.models.list()]
        # The yunmo CLI over TLS, trusting the CA with --ca-file.
        cli = lambda *args: subprocess.run([BINARY, "models", "ls", "--url", srv.url, "--api-key", ADMIN, *args], capture_output=True, text=True, timeout=60)
        listed = cli("--ca-file", ca)
        assert listed.returncode == 0 and "iris" in listed.stdout, listed.stderr
        untrusted = cli()
        assert untrusted.returncode != 0 and "certificate" in untrusted.stderr.lower(), untrusted.stderr
        # Without the CA the certificate is not trusted; plain HTTP gets no answer.
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/v2/health/live")
        plain = http.client.HTTPConnection(srv.address, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/v2/health/live")
            plain.getresponse()
    finally:
        assert srv.stop() == 0
        shutil.rmtree(data_dir, ignore_errors=True)


def test_metrics_need_a_key_with_the_metrics_scope(tenants):
    srv, keys = tenants
    status, body = srv.request("GET", "/metrics")
    assert status == 401, body
    assert "error" in json.loads(body)
    status, body = srv.request("GET", "/metrics", key=keys["a"])
    assert status == 403 and "'metrics' scope" in json.loads(body)["error"], body
    metrics = make_key(srv, "a", ["metrics"])["key"]
    connection = http.client.HTTPConnection(srv.address)
    connection.request("GET", "/metrics", headers=bearer(metrics))
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    assert response.status == 200, text
    assert response.getheader("Content-Type").startswith("text/plain")
    assert "# TYPE yunmo_http_requests_total counter" in text
    # The metrics scope alone reads nothing else.
    status, _ = srv.request("GET", "/api/v1/models", key=metrics)
    assert status == 403


def test_a_sharing_list_is_shown_whole_only_to_the_owner_and_admins(tenants):
    srv, keys = tenants
    status, body = srv.request("POST", "/api/v1/tenants", {"name": "c"}, key=ADMIN)
    assert status == 201, body
    readers = {tenant: make_key(srv, tenant, ["models:read", "infer"])["key"] for tenant in ("b", "c")}
    push_as(srv, keys["a"], "a_shared", fixture_path("iris_mlp.onnx"))
    try:
        status, body = srv.request("PUT", "/api/v1/models/a_shared/sharing", {"tenants": ["b", "c"]}, key=keys["a"])
        assert status == 200, body

        def sharing(key):
            status, body = srv.request("GET", "/api/v1/models/a_shared", key=key)
            assert status == 200, body
            return json.loads(body)["sharing"]["tenants"]

        assert sharing(keys["a"]) == ["b", "c"]
        assert sharing(ADMIN) == ["b", "c"]
        assert sharing(readers["b"]) == ["b"]
        assert sharing(readers["c"]) == ["c"]
        status, body = srv.request("GET", "/api/v1/models", key=readers["b"])
        listed = [m for m in json.loads(body)["models"] if m["name"].endswith("a_shared")]
        assert len(listed) == 1 and listed[0]["sharing"]["tenants"] == ["b"], listed
        # B can use the shared model.
        client = httpclient.InferenceServerClient(srv.address)
        assert http_infer(client, "a_shared", readers["b"]).as_numpy("label") is not None
    finally:
        status, body = srv.request("DELETE", "/api/v1/models/a_shared", key=keys["a"])
        assert status == 204, body


def test_kserve_v1_predicts_are_metered_once_each(tenants):
    srv, keys = tenants
    key = make_key(srv, "a", ["infer"])
    good, bad = {"instances": IRIS.tolist() * 3}, {"instances": [[1.0, 2.0]]}
    statuses = [srv.request("POST", "/v1/models/a_iris:predict", body, key=key["key"])[0] for body in [good] * 5 + [bad] * 2]
    assert statuses == [200] * 5 + [400] * 2
    deadline = time.time() + 10
    while True:
        status, body = srv.request("GET", "/api/v1/usage?group_by=key&tenant=a", key=ADMIN)
        row = next((r for r in json.loads(body)["rows"] if r["group"] == key["id"]), None)
        if (row and row["requests"] == 7) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert row["requests"] == 7 and row["failed"] == 2, row
    assert row["input_elements"] == 5 * 12, row
