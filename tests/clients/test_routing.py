"""The shipped load-balancer configuration (deploy/haproxy/yunmo.cfg) in front of three real replicas.

HAProxy runs the shipped file with only its replica list and listen addresses replaced
(deploy/haproxy/render.py); each replica has its own data folder with the same models pushed to it. Where a
request went is read from each replica's /metrics: `yunmo_inference_requests_total{model}` (V2 REST and gRPC
inference), `yunmo_embedding_tokens_total{model}` (/v1/embeddings) and `yunmo_http_requests_total{route}`.
Requests are sent one at a time, so each model lands on one replica, its home. The bounded load can still
spill one now and then (HAProxy may count the previous request in flight while it accepts the next, and at
such low load a replica's bound is one request): a model may show a second replica with a few requests.
See docs/routing.md.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pytest

from conftest import CACHE, ROOT, Server, fixture_path

sys.path.insert(0, os.path.join(ROOT, "deploy", "haproxy"))
import render  # noqa: E402  (deploy/haproxy/render.py)

# Small tensor models (input X: [n, 4] FP32), two files under six names, plus an encoder for /v1/embeddings.
MODELS = {"alpha": "iris_mlp.onnx", "bravo": "iris_logreg.onnx", "charlie": "iris_mlp.onnx",
          "delta": "iris_logreg.onnx", "echo": "iris_mlp.onnx", "foxtrot": "iris_logreg.onnx"}
ENCODER = "minilm-embed"
TOKENIZER = os.path.join(CACHE, "models", "minilm-tokenizer.json")
ROWS = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
REQUESTS_PER_MODEL = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", body=None, headers=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def counters(replica, name, label):
    """{label value: count} of the counter `name` on one replica (summed over its other labels)."""
    status, body = http(replica.url + "/metrics")
    assert status == 200, body
    found = {}
    for line in body.decode().splitlines():
        match = re.match(rf'^{name}{{(.*)}} (\S+)$', line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if label in labels and labels.get("outcome", "ok") == "ok":
                found[labels[label]] = found.get(labels[label], 0) + float(match.group(2))
    return found


class Cluster:
    """Three replicas and HAProxy with the shipped configuration in front of them."""

    def __init__(self, work):
        self.work = work
        self.replicas = []
        self.haproxy = None
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def start(self):
        work = self.work
        for index in range(3):
            data_dir = os.path.join(work, f"replica{index + 1}")
            os.makedirs(data_dir)
            self.replicas.append(Server(data_dir))
        with open(TOKENIZER) as f:
            tokenizer = f.read()
        for replica in self.replicas:
            for name, file_name in MODELS.items():
                replica.push(name, file_name)
            replica.push(ENCODER, "minilm.onnx", config={"embedding": {"pooling": "mean", "normalize": True, "max_tokens": 64}})
            status, body = replica.request("PUT", f"/api/v1/models/{ENCODER}/versions/1/tokenizer", tokenizer.encode(),
                                           {"Content-Type": "application/json"})
            assert status == 200, body
        self.http_port, self.grpc_port, self.stats_port = free_port(), free_port(), free_port()
        servers = [(r.address.rsplit(":", 1)[0], int(r.address.rsplit(":", 1)[1]), int(r.grpc_address.rsplit(":", 1)[1])) for r in self.replicas]
        config = os.path.join(work, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(render.render(servers, {"yunmo_http": f"127.0.0.1:{self.http_port}", "yunmo_grpc": f"127.0.0.1:{self.grpc_port}",
                                            "stats": f"127.0.0.1:{self.stats_port}"}))
        self.haproxy_log = open(os.path.join(work, "haproxy.log"), "wb")
        self.haproxy = subprocess.Popen([shutil.which("haproxy"), "-f", config, "-db"], stdout=self.haproxy_log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.wait_for(lambda states: len(states) == 3 and all(s == "UP" for s in states.values()), "all replicas UP")

    def server_states(self):
        """{server name: status} of backend yunmo_http, from HAProxy's stats CSV."""
        try:
            status, body = http(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2)
        except OSError:
            return {}
        if status != 200:
            return {}
        lines = body.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == "yunmo_http" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_for(self, condition, what, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.haproxy.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.haproxy.returncode}; see {self.haproxy_log.name}")
            states = self.server_states()
            if condition(states):
                return states
            time.sleep(0.1)
        raise AssertionError(f"HAProxy never saw {what}: {self.server_states()}")

    def infer_counts(self):
        """{model: {replica index: ok inference requests}} over the live replicas."""
        counts = {}
        for index, replica in enumerate(self.replicas):
            if replica.process.poll() is not None:
                continue
            for model, n in counters(replica, "yunmo_inference_requests_total", "model").items():
                counts.setdefault(model, {})[index] = n
        return counts

    def stop(self):
        if self.haproxy is not None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=10)
            self.haproxy_log.close()
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.stop()
            else:
                replica.log.close()


def delta(after, before):
    """Per model, the replicas whose count grew, and by how much."""
    changed = {}
    for model, per_replica in after.items():
        for index, n in per_replica.items():
            grown = n - before.get(model, {}).get(index, 0)
            if grown:
                changed.setdefault(model, {})[index] = grown
    return changed


def home(per_replica):
    """The replica that served most of a model's requests."""
    return max(per_replica, key=per_replica.get)


def assert_affine(model, per_replica, total):
    """All of `total` requests served, by one replica, or two when the bounded load spilled a few."""
    assert sum(per_replica.values()) == total, f"{model}: {per_replica}, expected {total} requests"
    assert len(per_replica) <= 2 and per_replica[home(per_replica)] >= 0.75 * total, \
        f"{model} was served by replicas {per_replica}: expected one (two when the bounded load spills)"


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed: run scripts/system-deps.sh (Debian package haproxy, 2.6 or newer)")
    if not os.path.exists(TOKENIZER):
        raise RuntimeError(f"missing {TOKENIZER}: run scripts/fetch-assets.sh minilm (scripts/test.sh does)")
    fixture_path("minilm.onnx")
    work = tempfile.mkdtemp(prefix="yunmo-routing-")
    cluster = Cluster(work)
    yield cluster
    cluster.stop()
    shutil.rmtree(work, ignore_errors=True)


def test_the_shipped_configuration_and_its_kubernetes_variants_are_valid(tmp_path):
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed: run scripts/system-deps.sh (Debian package haproxy, 2.6 or newer)")
    with open(render.SHIPPED) as f:
        shipped = f.read()
    # The commented Kubernetes lines, switched on in place of the static list: StatefulSet names, then
    # server-template (names that do not resolve here only disable their servers).
    k8s = re.sub(r"\n    server yunmo\d [^\n]*", "", shipped).replace("NAMESPACE", "default")
    k8s = re.sub(r"(?m)^# (resolvers k8s)$", r"\1", k8s)
    k8s = re.sub(r"(?m)^#( {4}\S)", r"\1", k8s)
    variants = {
        "shipped": shipped,
        "statefulset": re.sub(r"\n    #   server-template [^\n]*", "", k8s).replace("    #   server ", "    server "),
        "server-template": re.sub(r"\n    #   server [^\n]*", "", k8s).replace("    #   server-template ", "    server-template "),
    }
    for name, text in variants.items():
        if name != "shipped":
            assert text.count("resolvers k8s") > 2 and "\nresolvers k8s\n" in text, f"{name}: the commented lines were not found"
        path = tmp_path / f"{name}.cfg"
        path.write_text(text)
        result = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{name}: {result.stdout + result.stderr}"


def test_each_model_goes_to_one_replica_by_path_and_by_header(cluster):
    before = cluster.infer_counts()
    for _ in range(REQUESTS_PER_MODEL):
        for model in MODELS:
            status, body = http(f"{cluster.url}/v2/models/{model}/infer", "POST", ROWS)
            assert status == 200, body
            # Versioned paths and readiness checks hash on the same name.
            status, body = http(f"{cluster.url}/v2/models/{model}/versions/1/infer", "POST", ROWS)
            assert status == 200, body
    routed = delta(cluster.infer_counts(), before)
    assert set(routed) == set(MODELS), routed
    for model, per_replica in routed.items():
        assert_affine(model, per_replica, 2 * REQUESTS_PER_MODEL)
    homes = {model: home(per_replica) for model, per_replica in routed.items()}
    # With six models on three replicas, the ring gives more than one replica some work.
    assert len(set(homes.values())) >= 2, routed

    # A route that names no model in its path: the X-Yunmo-Model header is the key.
    tokens_before = [counters(r, "yunmo_embedding_tokens_total", "model").get(ENCODER, 0) for r in cluster.replicas]
    for _ in range(REQUESTS_PER_MODEL):
        status, body = http(f"{cluster.url}/v1/embeddings", "POST", {"model": ENCODER, "input": ["A man is eating food."]},
                            {"X-Yunmo-Model": ENCODER})
        assert status == 200, body
    tokens = [counters(r, "yunmo_embedding_tokens_total", "model").get(ENCODER, 0) - b for r, b in zip(cluster.replicas, tokens_before)]
    embedded = {index: n for index, n in enumerate(tokens) if n}
    assert len(embedded) <= 2 and max(tokens) >= 0.75 * sum(tokens), f"{ENCODER} embedded tokens per replica {tokens}, expected one replica"

    # The header wins over the path (alpha keyed as bravo goes to bravo's replica); a version suffix is not
    # part of the key (alpha:1 goes to alpha's).
    for header, owner in (("bravo", "bravo"), ("alpha:1", "alpha")):
        before = cluster.infer_counts()
        for _ in range(4):
            status, body = http(f"{cluster.url}/v2/models/alpha/infer", "POST", ROWS, {"X-Yunmo-Model": header})
            assert status == 200, body
        keyed = delta(cluster.infer_counts(), before)["alpha"]
        assert_affine(f"alpha keyed as {header}", keyed, 4)
        assert home(keyed) == homes[owner], f"alpha keyed as {header} went to {keyed}, {owner} lives on {homes[owner]}"


def test_routes_without_a_model_spread_over_every_replica(cluster):
    def route_counts():
        per_replica = [counters(r, "yunmo_http_requests_total", "route") for r in cluster.replicas]
        return [sum(counts.get(route, 0) for route in ("/v2/health/live", "/api/v1/models", "/v2")) for counts in per_replica]

    before = route_counts()
    for _ in range(10):
        for path in ("/v2/health/live", "/api/v1/models", "/v2"):
            status, body = http(cluster.url + path)
            assert status == 200, body
    grown = [a - b for a, b in zip(route_counts(), before)]
    # Without a key HAProxy walks the hash ring (round robin in proportion to the weights, not strict
    # turns), so each replica gets about a third.
    assert sum(grown) == 30 and all(n >= 5 for n in grown), f"requests without a model went {grown} to the three replicas"


def rest_homes(cluster):
    """{model: the replica REST requests for it go to}, from three requests per model by V2 path."""
    before = cluster.infer_counts()
    for _ in range(3):
        for model in MODELS:
            assert http(f"{cluster.url}/v2/models/{model}/infer", "POST", ROWS)[0] == 200
    return {model: home(per_replica) for model, per_replica in delta(cluster.infer_counts(), before).items()}


def test_grpc_follows_the_header_to_the_same_replica_as_rest(cluster):
    import tritonclient.grpc as grpcclient

    rest_home = rest_homes(cluster)

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{cluster.grpc_port}")
    x = grpcclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
    before = cluster.infer_counts()
    for _ in range(4):
        for model in MODELS:
            result = client.infer(model, [x], headers={"x-yunmo-model": model})
            assert result.get_response().model_name == model
    routed = delta(cluster.infer_counts(), before)
    for model, per_replica in routed.items():
        assert_affine(f"{model} over gRPC", per_replica, 4)
    grpc_home = {model: home(per_replica) for model, per_replica in routed.items()}
    assert grpc_home == rest_home, f"gRPC with x-yunmo-model went to {routed}, REST to {rest_home}"

    # Without the metadata, HAProxy cannot see the model (it is inside the protobuf body): round robin.
    before = cluster.infer_counts()
    for _ in range(6):
        client.infer("alpha", [x])
    spread = delta(cluster.infer_counts(), before)["alpha"]
    assert len(spread) == 3, f"gRPC without x-yunmo-model went to replicas {spread}, expected all three"
    client.close()


def test_a_killed_replicas_models_move_to_the_others_and_only_they_move(cluster):
    placed = rest_homes(cluster)
    by_replica = {}
    for model, index in placed.items():
        by_replica.setdefault(index, []).append(model)
    victim = max(by_replica, key=lambda index: len(by_replica[index]))
    moved = set(by_replica[victim])

    # SIGKILL: no drain, its connections reset. HAProxy has not noticed yet: the refused connections are
    # retried on the next replica on the ring (option redispatch), so every request is still answered.
    cluster.replicas[victim].process.send_signal(signal.SIGKILL)
    cluster.replicas[victim].process.wait(timeout=10)
    for model in MODELS:
        status, body = http(f"{cluster.url}/v2/models/{model}/infer", "POST", ROWS)
        assert status == 200, f"{model} right after its replica {victim} was killed: {status} {body}"

    cluster.wait_for(lambda states: states.get(f"yunmo{victim + 1}", "").startswith("DOWN"), f"yunmo{victim + 1} DOWN")
    before = cluster.infer_counts()
    for _ in range(4):
        for model in MODELS:
            status, body = http(f"{cluster.url}/v2/models/{model}/infer", "POST", ROWS)
            assert status == 200, body
    after = delta(cluster.infer_counts(), before)
    for model in MODELS:
        assert_affine(f"{model} after the kill", after[model], 4)
        if model not in moved:
            assert home(after[model]) == placed[model], f"{model} moved from replica {placed[model]} to {after[model]} though its replica is up"
