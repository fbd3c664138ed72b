"""Starts the real `yunmo` binary on an ephemeral port for the client tests, and uploads the test models."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))

CACHE = os.environ.get("YUNMO_CACHE", os.path.expanduser("~/.cache/yunmo"))
FIXTURES = os.environ.get("YUNMO_FIXTURES", os.path.join(CACHE, "fixtures"))
# Absolute: some tests start the binary with another working directory (test_helm runs it in a pod root).
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
BINARY = os.path.abspath(os.environ.get("YUNMO_BIN", os.path.join(TARGET, "debug", "yunmo")))


SMOLLM = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")


def smollm_server(prefix, pushes, env=None):
    """A server with SmolLM2 pushed as each (name, version config) of `pushes`; yields it and stops it (a
    generator for module fixtures)."""
    if not os.path.exists(SMOLLM):
        raise RuntimeError(f"missing {SMOLLM}: run scripts/fetch-assets.sh smollm (scripts/test.sh does)")
    data_dir = tempfile.mkdtemp(prefix=prefix)
    server = Server(data_dir, env={"YUNMO__BACKENDS__GGUF__THREADS": "2", **(env or {})})
    for name, config in pushes:
        server.push_file(name, SMOLLM, config=config)
    yield server
    assert server.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def fixture_path(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        raise RuntimeError(f"missing fixture {path}: run scripts/test.sh, which fetches and builds the fixtures")
    return path


# The bootstrap admin key of servers started with auth on (YUNMO__AUTH__BOOTSTRAP_ADMIN_KEY).
ADMIN = "ym_testadmin_" + "A" * 43


def bearer(key):
    """Client headers that present `key` (none without one)."""
    return {"authorization": f"Bearer {key}"} if key else None


def make_key(srv, tenant, scopes, **extra):
    """A new key of `tenant` with `scopes`, made with the admin key; its JSON (with `key` and `id`)."""
    status, body = srv.request("POST", "/api/v1/keys", {"tenant": tenant, "scopes": scopes, **extra}, key=ADMIN)
    assert status == 201, body
    return json.loads(body)


def two_tenants(srv):
    """Tenants `a` and `b`, made with the admin key; {tenant: a key of it that writes, reads and infers}."""
    for tenant in ("a", "b"):
        status, body = srv.request("POST", "/api/v1/tenants", {"name": tenant}, key=ADMIN)
        assert status == 201, body
    return {tenant: make_key(srv, tenant, ["models:write", "models:read", "infer"])["key"] for tenant in ("a", "b")}


def push_as(srv, key, name, path, config=None):
    """Server.push_file with `key`."""
    srv.key = key
    try:
        return srv.push_file(name, path, config)
    finally:
        srv.key = None


def post_json(srv, path, body, key):
    """POSTs `body` as JSON with `key` (none without one); (status, the answer's JSON), errors included."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(srv.url + path, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def usage_requests(srv, tenant, key_id):
    """The requests metered for the key `key_id` of `tenant` (read with the admin key)."""
    status, body = srv.request("GET", f"/api/v1/usage?group_by=key&tenant={tenant}", key=ADMIN)
    assert status == 200, body
    row = next((r for r in json.loads(body)["rows"] if r["group"] == key_id), None)
    return row["requests"] if row else 0


def settled_requests(srv, tenant, key_id, expected):
    """The key's metered requests once `expected` arrived (or 10 s passed) and two more flushes brought nothing."""
    deadline = time.time() + 10
    while usage_requests(srv, tenant, key_id) < expected and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    return usage_requests(srv, tenant, key_id)


class Server:
    def __init__(self, data_dir, env=None, scheme="http"):
        self.data_dir = data_dir
        self.key = None
        self.ssl_context = None
        ready = os.path.join(data_dir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        self.log = open(os.path.join(data_dir, "server.log"), "ab")
        self.process = subprocess.Popen(
            [BINARY, "serve", "--http-port", "0", "--grpc-port", "0", "--data-dir", os.path.join(data_dir, "data"), "--ready-file", ready],
            stdout=self.log, stderr=self.log, env={**os.environ, "YUNMO__AUTH__ENABLED": "false", **(env or {})},
        )
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.process.poll() is not None:
                raise RuntimeError(f"yunmo exited with {self.process.returncode}; see {self.log.name}")
            if time.time() > deadline:
                raise RuntimeError("yunmo did not become ready in 60 s")
            time.sleep(0.05)
        with open(ready) as f:
            addresses = json.load(f)
        self.address = addresses["http"]
        self.grpc_address = addresses["grpc"]
        self.url = f"{scheme}://{self.address}"

    def request(self, method, path, body=None, headers=None, key=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        headers = dict(headers or {})
        if not isinstance(body, (bytes, type(None))):
            headers.setdefault("Content-Type", "application/json")
        key = key or self.key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def push(self, name, file_name, config=None, version=None):
        """Creates the model if needed and uploads a fixture as a version (raw body)."""
        return self.push_file(name, fixture_path(file_name), config, version)

    def push_file(self, name, path, config=None, version=None):
        """Creates the model if needed and uploads the file at `path` as a version (raw body)."""
        status, _ = self.request("GET", f"/api/v1/models/{name}")
        if status == 404:
            status, body = self.request("POST", "/api/v1/models", {"name": name}, {"Content-Type": "application/json"})
            assert status == 201, body
        query = []
        if config is not None:
            query.append("config=" + urllib.request.quote(json.dumps(config)))
        if version is not None:
            query.append(f"version={version}")
        with open(path, "rb") as f:
            status, body = self.request("POST", f"/api/v1/models/{name}/versions" + ("?" + "&".join(query) if query else ""), f.read(),
                                        {"Content-Type": "application/octet-stream"})
        assert status == 201, body
        return json.loads(body)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code


@pytest.fixture(scope="session")
def server():
    data_dir = tempfile.mkdtemp(prefix="yunmo-clients-")
    srv = Server(data_dir)
    srv.push("iris_mlp", "iris_mlp.onnx", config={"labels": ["setosa", "versicolor", "virginica"]})
    srv.push("iris_logreg", "iris_logreg.onnx")
    srv.push("diabetes_linreg", "diabetes_linreg.onnx")
    srv.push("cnn", "cnn.onnx", config={"max_batch_size": 16, "instance_count": 2})
    srv.push("dtypes", "dtypes.onnx")
    srv.push("dtypes_typed", "dtypes_typed.onnx")
    srv.push("efficientnet_lite0", "efficientnet_lite0.onnx")
    srv.push("silero_vad", "silero_vad.onnx")
    srv.push("minilm", "minilm.onnx")
    yield srv
    code = srv.stop()
    assert code == 0, f"yunmo exited with {code} on SIGTERM"
    shutil.rmtree(data_dir, ignore_errors=True)
