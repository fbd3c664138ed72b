"""The Helm chart, run: `helm template` renders deploy/helm/yunmo with ci/full-values.yaml (PostgreSQL, S3, Redis,
a bootstrap key, encrypted model files), and this machine runs what the pods would run, against real
PostgreSQL, S3 (SeaweedFS) and Redis from `yunmo-testkit services`:

1. the migration Job's container, to completion (as Helm's pre-install hook would), then
2. three replicas of the Deployment's container, each with exactly the rendered command, arguments and
   environment: the image's entrypoint is this build's binary; `value`s are taken verbatim, `secretKeyRef`s
   from SECRETS below (a reference to a Secret or key the test does not know fails), `fieldRef`s from the
   pod's stand-in metadata; each volume mount is a folder of the replica (ConfigMaps and Secrets written
   into it, emptyDir and claims empty), and pod paths in arguments, environment values and ConfigMap files
   are replaced by those folders. The only additions: `--ready-file` (to learn the ports), and
   YUNMO__SERVER__HTTP_PORT=0 / YUNMO__SERVER__GRPC_PORT=0 (environment outranks the ConfigMap's ports), so
   three replicas share one machine.

Then: every replica passes the rendered startup, readiness and liveness probes; a model uploaded through
replica 1 is listed by replicas 2 and 3 and answers the same on all three (REST and gRPC, equal to ONNX
Runtime's reference); a tenant's rate limit is counted once across replicas (Redis); the metrics the KEDA
ScaledObject queries exist; and each replica drains and exits 0 on SIGTERM within the rendered grace period.

Needs helm (scripts/fetch-assets.sh helm), yunmo-testkit (cargo build -p yunmo-testkit; scripts/test.sh
builds the workspace), ONNX Runtime (scripts/fetch-assets.sh ort) and the fixtures (scripts/test.sh).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tomllib
import urllib.request

import numpy as np
import pytest
import yaml

from conftest import BINARY, CACHE, ROOT, TARGET, Server, fixture_path
from models import inputs_for, reference

HELM = os.environ.get("HELM", os.path.join(CACHE, "bin", "helm"))
TESTKIT = os.path.join(TARGET, "debug", "yunmo-testkit")
ORT_LIBRARY = os.path.join(CACHE, "lib", "libonnxruntime.so.1.31.1")
CHART = os.path.join(ROOT, "deploy", "helm", "yunmo")
VALUES = os.path.join(CHART, "ci", "full-values.yaml")
NAMESPACE = "yunmo-test"
ADMIN = "ym_helm_chart-admin-secret-0123456789abcdef"
REPLICAS = 3

# The image (Dockerfile, scripts/build-image.sh): entrypoint and command, and its ENV, whose library path is
# this machine's copy of the same file.
IMAGE_ENTRYPOINT = ["/usr/local/bin/yunmo"]
IMAGE_CMD = ["serve"]
IMAGE_ORT = "/usr/local/lib/libonnxruntime.so.1.31.1"
IMAGE_ENV = {"YUNMO__SERVER__HOST": "0.0.0.0", "YUNMO__STORAGE__DATA_DIR": "/var/lib/yunmo", "ORT_DYLIB_PATH": IMAGE_ORT}


def require(path, made_by):
    if not os.path.exists(path):
        pytest.fail(f"missing {path}: {made_by} makes it")


def helm_template(*values_files):
    """The chart rendered as `helm template` would install it, as a list of objects."""
    command = [HELM, "template", "yunmo", CHART, "--namespace", NAMESPACE]
    for file in values_files:
        command += ["-f", file]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"helm template failed: {done.stderr}"
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def only(objects, kind, component=None):
    found = [o for o in objects if o["kind"] == kind
             and (component is None or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"expected one {kind} ({component}), rendered {[o['metadata']['name'] for o in found]}"
    return found[0]


class PodOnHost:
    """One pod's container as a local process: its volumes as folders under `root`, its environment resolved.

    `secrets` maps (Secret name, key) to the value; `objects` are the rendered objects (ConfigMaps)."""

    def __init__(self, pod_template, container_name, objects, secrets, root, pod_name):
        self.root = root
        self.pod_name = pod_name
        spec = pod_template["spec"]
        self.container = next(c for c in spec["containers"] if c["name"] == container_name)
        self.config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
        self.secrets = secrets
        self.pending = []  # ConfigMap files, written once every mount is known (to_host needs them all)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = self.container.get("volumeMounts", [])
        # Pod path → folder here, longest first, so /etc/yunmo/keys/current wins over a mount at /etc/yunmo.
        self.paths = {m["mountPath"]: os.path.join(root, "mounts", m["name"]) for m in mounts}
        self.paths[IMAGE_ORT] = ORT_LIBRARY
        for mount in mounts:
            assert "subPath" not in mount and "subPathExpr" not in mount, f"subPath mounts are not handled: {mount}"
            self.materialize(volumes[mount["name"]], self.paths[mount["mountPath"]])

    def to_host(self, text):
        """`text` with every pod path under a mount replaced by the folder standing in for it (in one pass: the
        folders themselves may lie under a mounted path such as /tmp)."""
        alternatives = "|".join(re.escape(path) for path in sorted(self.paths, key=len, reverse=True))
        pattern = r"(?<![\w./-])(" + alternatives + r")(?=/|$|[\"'\s,\]])"
        return re.sub(pattern, lambda match: self.paths[match.group(1)], text)

    def secret(self, name, key):
        if (name, key) not in self.secrets:
            pytest.fail(f"the chart references Secret {name!r} key {key!r}, which the test's secrets do not have: {sorted(self.secrets)}")
        return self.secrets[(name, key)]

    def materialize(self, volume, folder):
        os.makedirs(folder, exist_ok=True)
        if "configMap" in volume:
            config_map = self.config_maps.get(volume["configMap"]["name"])
            assert config_map is not None, f"the pod mounts ConfigMap {volume['configMap']['name']}, which is not rendered"
            items = volume["configMap"].get("items") or [{"key": key, "path": key} for key in config_map.get("data", {})]
            for item in items:
                self.pending.append((os.path.join(folder, item["path"]), config_map["data"][item["key"]]))
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            items = volume["secret"].get("items")
            assert items, f"Secret volume {name} mounts every key; the chart names the keys it needs"
            for item in items:
                path = os.path.join(folder, item["path"])
                with open(path, "w") as f:
                    f.write(self.secret(name, item["key"]))
                os.chmod(path, volume["secret"].get("defaultMode", 0o644) & 0o777)
        elif not any(kind in volume for kind in ("emptyDir", "ephemeral", "persistentVolumeClaim")):
            pytest.fail(f"volume type not handled: {volume}")

    def files(self):
        for path, content in self.pending:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(self.to_host(content))
        self.pending = []

    def environment(self):
        """The image's ENV, then the container's env in order (later entries win, as in Kubernetes)."""
        env = dict(IMAGE_ENV)
        for source in self.container.get("envFrom", []):
            pytest.fail(f"envFrom is not handled: {source}")
        for item in self.container.get("env", []):
            name, source = item["name"], item.get("valueFrom")
            if source is None:
                env[name] = item.get("value", "")
            elif "secretKeyRef" in source:
                env[name] = self.secret(source["secretKeyRef"]["name"], source["secretKeyRef"]["key"])
            elif "configMapKeyRef" in source:
                env[name] = self.config_maps[source["configMapKeyRef"]["name"]]["data"][source["configMapKeyRef"]["key"]]
            elif "fieldRef" in source:
                env[name] = {"metadata.name": self.pod_name, "metadata.namespace": NAMESPACE, "status.podIP": "127.0.0.1",
                             "status.hostIP": "127.0.0.1", "spec.nodeName": "node-1",
                             "spec.serviceAccountName": "default"}[source["fieldRef"]["fieldPath"]]
            else:
                pytest.fail(f"env source not handled: {item}")
        return {name: self.to_host(value) for name, value in env.items()}

    def argv(self):
        command = self.container.get("command") or IMAGE_ENTRYPOINT
        args = self.container.get("args") if "args" in self.container else ([] if "command" in self.container else IMAGE_CMD)
        assert command[0] in IMAGE_ENTRYPOINT, f"the container runs {command[0]}, not the image's binary"
        self.files()
        return [BINARY, *command[1:], *[self.to_host(arg) for arg in args]]


class Replica(Server):
    """A server replica started from a PodOnHost, with conftest's request and push helpers."""

    def __init__(self, pod, overrides):
        self.data_dir = pod.root
        self.key = ADMIN
        self.ssl_context = None
        self.pod = pod
        ready = os.path.join(pod.root, "ready.json")
        self.log = open(os.path.join(pod.root, "server.log"), "ab")
        self.argv = pod.argv() + ["--ready-file", ready]
        self.env = {**pod.environment(), **overrides}
        self.process = subprocess.Popen(self.argv, stdout=self.log, stderr=self.log, env=self.env, cwd=pod.root)
        self.ready_path = ready

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while not os.path.exists(self.ready_path):
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.pod.pod_name} exited with {self.process.returncode}: {tail(self.log.name)}")
            if time.time() > deadline:
                raise RuntimeError(f"replica {self.pod.pod_name} not ready in {timeout} s: {tail(self.log.name)}")
            time.sleep(0.05)
        with open(self.ready_path) as f:
            addresses = json.load(f)
        # The chart binds 0.0.0.0; this machine reaches it on loopback.
        self.ports = {kind: int(addresses[kind].rsplit(":", 1)[1]) for kind in ("http", "grpc")}
        self.address = f"127.0.0.1:{self.ports['http']}"
        self.grpc_address = f"127.0.0.1:{self.ports['grpc']}"
        self.url = f"http://{self.address}"


def tail(path, n=4000):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")[-n:]


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """Real PostgreSQL, S3 and Redis, up until the module's tests end."""
    require(TESTKIT, "cargo build -p yunmo-testkit (scripts/test.sh builds the workspace)")
    log = open(tmp_path_factory.mktemp("testkit") / "services.log", "w+")
    process = subprocess.Popen([TESTKIT, "services", "--postgres", "--s3", "--redis"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=log, text=True)
    line = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=120)
    if not line or not line[0].strip():
        process.kill()
        process.wait()
        log.seek(0)
        pytest.fail(f"yunmo-testkit services printed no addresses within 120 s: {log.read()[-4000:]}")
    yield json.loads(line[0])
    process.stdin.close()  # it stops the servers and removes their data
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


@pytest.fixture(scope="module")
def chart():
    """The chart rendered with ci/full-values.yaml alone (no servers needed)."""
    require(HELM, "scripts/fetch-assets.sh helm")
    return helm_template(VALUES)


@pytest.fixture(scope="module")
def rendered(services, tmp_path_factory):
    require(HELM, "scripts/fetch-assets.sh helm")
    require(ORT_LIBRARY, "scripts/fetch-assets.sh ort")
    s3 = services["s3"]
    # Only where the servers are (not secrets) goes into values; everything else is ci/full-values.yaml's.
    endpoints = tmp_path_factory.mktemp("values") / "endpoints.yaml"
    endpoints.write_text(yaml.safe_dump({"s3": {"bucket": s3["bucket"], "endpoint": s3["endpoint"], "region": s3["region"]}}))
    return helm_template(VALUES, str(endpoints))


@pytest.fixture(scope="module")
def secrets(services):
    """The Secrets ci/full-values.yaml references, as (name, key) → value."""
    return {
        ("yunmo-postgres", "url"): services["postgres_url"],
        ("yunmo-s3", "access-key-id"): services["s3"]["access_key_id"],
        ("yunmo-s3", "secret-access-key"): services["s3"]["secret_access_key"],
        ("yunmo-redis", "url"): services["redis_url"],
        ("yunmo-admin", "bootstrap-key"): ADMIN,
        ("yunmo-model-key", "model.key"): "5f" * 32 + "\n",
        ("yunmo-model-key-2025", "model.key"): "a7" * 32 + "\n",
    }


@pytest.fixture(scope="module")
def cluster(rendered, secrets):
    work = tempfile.mkdtemp(prefix="yunmo-helm-")
    # The migration Job first, to completion, as Helm's pre-install hook runs it.
    job = only(rendered, "Job", "migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    migrate = PodOnHost(job["spec"]["template"], "migrate", rendered, secrets, os.path.join(work, "migrate"), "yunmo-migrate-x1")
    with open(os.path.join(work, "migrate.log"), "wb") as log:
        done = subprocess.run(migrate.argv(), env=migrate.environment(), stdout=log, stderr=log, cwd=migrate.root,
                              timeout=min(job["spec"]["activeDeadlineSeconds"], 300))
    assert done.returncode == 0, f"the migration Job's command failed ({done.returncode}): {tail(log.name)}"

    deployment = only(rendered, "Deployment")
    pod_template = deployment["spec"]["template"]
    overrides = {"YUNMO__SERVER__HTTP_PORT": "0", "YUNMO__SERVER__GRPC_PORT": "0"}
    replicas = []
    try:
        for index in range(REPLICAS):
            pod = PodOnHost(pod_template, "yunmo", rendered, secrets, os.path.join(work, f"replica-{index}"), f"yunmo-7d9f8c6b5-r{index}")
            rendered_env = {item["name"] for item in pod.container.get("env", [])}
            assert not set(overrides) & rendered_env, "the rendered env sets the ports the test overrides"
            replicas.append(Replica(pod, overrides))
        for replica in replicas:
            replica.wait_ready()
        yield deployment, replicas
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait()
            replica.log.close()
    # Reached only when the replicas started: a failed start keeps the folder for its logs.
    shutil.rmtree(work, ignore_errors=True)


def test_the_rendering_references_only_secrets_the_values_name(chart):
    """No Secret is rendered, and every secret setting is a secretKeyRef (scripts/check-chart.sh checks more)."""
    assert not [o for o in chart if o["kind"] == "Secret"]
    container = only(chart, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for item in container["env"]:
        if item["name"] in ("YUNMO__STORAGE__POSTGRES_URL", "YUNMO__STORAGE__S3__SECRET_ACCESS_KEY", "YUNMO__LIMITS__REDIS_URL",
                            "YUNMO__AUTH__BOOTSTRAP_KEY"):
            assert "secretKeyRef" in item["valueFrom"], item


def probes(deployment):
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    found = {}
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[name]["httpGet"]
        port = ports.get(probe["port"], probe["port"])
        found[name] = (probe["path"], port, probe.get("scheme", "HTTP"))
    return found, ports


def test_the_pods_ports_are_the_ports_the_server_listens_on(chart):
    deployment = only(chart, "Deployment")
    _, ports = probes(deployment)
    mounted = {v["configMap"]["name"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v}
    config_map = next(o for o in chart if o["kind"] == "ConfigMap" and o["metadata"]["name"] in mounted)
    server = tomllib.loads(config_map["data"]["yunmo.toml"]).get("server", {})
    assert ports == {"http": server.get("http_port", 8080), "grpc": server.get("grpc_port", 8081)}
    for service in (o for o in chart if o["kind"] == "Service"):
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_replicas_pass_the_rendered_probes(cluster):
    deployment, replicas = cluster
    found, ports = probes(deployment)
    by_container_port = {ports["http"]: "http", ports["grpc"]: "grpc"}
    for replica in replicas:
        for name, (path, port, scheme) in found.items():
            assert scheme == "HTTP"
            # As the kubelet probes: no key, the pod's port (here the replica's port standing in for it).
            url = f"http://127.0.0.1:{replica.ports[by_container_port[port]]}{path}"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
            assert status == 200, (replica.pod.pod_name, name, url, body)


def ensure_iris(replicas):
    """Uploads iris through the first replica unless there already."""
    if replicas[0].request("GET", "/api/v1/models/iris")[0] == 404:
        replicas[0].push("iris", "iris_mlp.onnx")


def test_a_model_uploaded_through_one_replica_serves_the_same_on_all(cluster):
    _, replicas = cluster
    first, others = replicas[0], replicas[1:]
    assert first.request("GET", "/api/v1/models/iris")[0] == 404
    first.push("iris", "iris_mlp.onnx")
    x = inputs_for("iris_mlp")["X"]
    expected = reference(fixture_path("iris_mlp.onnx"), {"X": x})
    request = {"inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32", "data": x.flatten().tolist()}]}

    for replica in others:
        deadline = time.time() + 10
        while True:
            status, body = replica.request("GET", "/api/v1/models")
            names = [m["name"] for m in json.loads(body)["models"]] if status == 200 else []
            if "iris" in names:
                break
            assert time.time() < deadline, f"{replica.pod.pod_name} does not list iris: {status} {body}"
            time.sleep(0.1)

    answers = []
    for replica in replicas:
        status, body = replica.request("POST", "/v2/models/iris/infer", request)
        assert status == 200, (replica.pod.pod_name, body)
        outputs = {output["name"]: output for output in json.loads(body)["outputs"]}
        answers.append(outputs)
        np.testing.assert_array_equal(np.asarray(outputs["label"]["data"]).reshape(outputs["label"]["shape"]), expected["label"])
        probabilities = np.asarray(outputs["probabilities"]["data"], np.float32).reshape(outputs["probabilities"]["shape"])
        np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=1e-5, atol=1e-5)
    assert answers[1] == answers[0] and answers[2] == answers[0]

    # The gRPC port (the gRPC Service's target) serves the same model.
    import tritonclient.grpc as grpcclient

    for replica in replicas:
        client = grpcclient.InferenceServerClient(replica.grpc_address)
        assert client.is_server_ready()
        tensor = grpcclient.InferInput("X", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("iris", [tensor], headers={"authorization": f"Bearer {ADMIN}"})
        np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
        client.close()


def test_the_openai_sdk_gets_the_same_embeddings_from_every_replica(cluster):
    """An embedding model (ONNX + tokenizer.json) uploaded through one replica answers the `openai` SDK on
    the others, identically."""
    import openai

    _, replicas = cluster
    tokenizer_path = os.path.join(CACHE, "models", "minilm-tokenizer.json")
    if not os.path.exists(tokenizer_path):
        raise RuntimeError(f"missing {tokenizer_path}: run scripts/fetch-assets.sh minilm (scripts/test.sh does)")
    replicas[0].push("minilm-embed", "minilm.onnx", config={"embedding": {"pooling": "mean", "normalize": True, "max_tokens": 256}})
    with open(tokenizer_path, "rb") as f:
        status, body = replicas[0].request("PUT", "/api/v1/models/minilm-embed/versions/1/tokenizer", f.read(), {"Content-Type": "application/json"})
    assert status == 200, body
    sentences = ["A cluster of three replicas.", "一个模型服务。"]
    vectors = []
    for replica in replicas[1:]:
        client = openai.OpenAI(base_url=f"{replica.url}/v1", api_key=ADMIN, max_retries=0)
        deadline = time.time() + 10
        while True:
            try:
                answer = client.embeddings.create(model="minilm-embed", input=sentences)
                break
            except openai.APIStatusError as error:
                # The tokenizer reaches the other replicas through PostgreSQL's notifications, within a second.
                assert time.time() < deadline, f"{replica.pod.pod_name}: {error}"
                time.sleep(0.2)
        vectors.append([item.embedding for item in answer.data])
    assert len(vectors[0]) == 2 and len(vectors[0][0]) == 384
    np.testing.assert_allclose(vectors[0], vectors[1], rtol=0, atol=1e-6)

    # A tokenizer replaced through one replica is used by the others, which had loaded the old one: with
    # lowercasing off, "HELLO" becomes other tokens (the vocabulary is lowercase) and another vector.
    client = openai.OpenAI(base_url=f"{replicas[2].url}/v1", api_key=ADMIN, max_retries=0)
    before = client.embeddings.create(model="minilm-embed", input="HELLO WORLD").data[0].embedding
    with open(tokenizer_path) as f:
        cased = json.load(f)
    cased["normalizer"]["lowercase"] = False
    status, body = replicas[0].request("PUT", "/api/v1/models/minilm-embed/versions/1/tokenizer", json.dumps(cased).encode(), {"Content-Type": "application/json"})
    assert status == 200, body
    deadline = time.time() + 3
    while np.allclose(client.embeddings.create(model="minilm-embed", input="HELLO WORLD").data[0].embedding, before, atol=1e-6):
        assert time.time() < deadline, "replica 2 still embeds with the old tokenizer"
        time.sleep(0.1)


def test_a_tenant_limit_is_counted_once_across_replicas(cluster):
    """With Redis as the limit store, a burst of 3 allows 3 requests in all, not 3 per replica."""
    _, replicas = cluster
    first = replicas[0]
    ensure_iris(replicas)
    status, body = first.request("PUT", "/api/v1/models/iris/sharing", {"public": True})
    assert status == 200, body
    status, body = first.request("POST", "/api/v1/tenants", {"name": "helm", "limits": {"requests_per_second": 0.01, "requests_burst": 3}})
    assert status == 201, body
    status, body = first.request("POST", "/api/v1/keys", {"tenant": "helm", "scopes": ["models:read", "infer"]})
    assert status == 201, body
    key = json.loads(body)["key"]
    request = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    statuses = [replica.request("POST", "/v2/models/iris/infer", request, key=key)[0] for replica in replicas]
    assert statuses == [200, 200, 200], statuses
    statuses = [replica.request("POST", "/v2/models/iris/infer", request, key=key)[0] for replica in replicas]
    assert statuses == [429, 429, 429], f"each replica counted alone (Redis not used?): {statuses}"


def test_the_metrics_the_scaled_object_queries_exist(rendered, cluster):
    _, replicas = cluster
    scaled_object = only(rendered, "ScaledObject")
    query = scaled_object["spec"]["triggers"][0]["metadata"]["query"]
    names = set(re.findall(r"\byunmo_[a-z_]+\b", query))
    assert names, query
    with open(os.path.join(ROOT, "crates", "yunmo-service", "src", "metrics.rs")) as f:
        declared = set(re.findall(r'"(yunmo_[a-z_]+)"', f.read()))
    assert names <= declared, f"the ScaledObject queries metrics Yunmo does not export: {names - declared}"
    # The tensor queue gauge appears once a model version is loaded.
    ensure_iris(replicas)
    request = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    assert replicas[1].request("POST", "/v2/models/iris/infer", request)[0] == 200
    status, body = replicas[1].request("GET", "/metrics")
    assert status == 200, body
    assert re.search(r"^yunmo_inference_queue_depth\{", body.decode(), re.M), "no yunmo_inference_queue_depth on /metrics"


def test_replicas_drain_and_exit_cleanly_within_the_grace_period(cluster):
    deployment, replicas = cluster
    spec = deployment["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    sleep = spec["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    for replica in replicas:
        replica.process.send_signal(signal.SIGTERM)
    for replica in replicas:
        code = replica.process.wait(timeout=grace - sleep)
        assert code == 0, f"{replica.pod.pod_name} exited with {code} on SIGTERM: {tail(replica.log.name)}"
