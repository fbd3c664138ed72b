"""The shipped Prometheus rules and Grafana dashboards (deploy/prometheus, deploy/grafana; docs/monitoring.md).

promtool checks and unit-tests the rules; the dashboards must take their data source from a variable and offer
model, version and tenant variables; and a real Prometheus scraping a real Yunmo (an ONNX model and the SmolLM2
LLM, both under traffic) must evaluate every panel query of every dashboard without error and with data.
"""
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

from conftest import CACHE, ROOT, Server

RULES = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
RULE_TESTS = os.path.join(ROOT, "deploy", "prometheus", "alerts_test.yml")
DASHBOARDS = sorted(glob.glob(os.path.join(ROOT, "deploy", "grafana", "*.json")))
SMOLLM = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")
# What Grafana puts in place of its variables when the panels are drawn ("All" for model and version).
SUBSTITUTIONS = {"datasource": "prometheus", "model": ".*", "version": ".*", "tenant": "", "__rate_interval": "1m",
                 "__interval": "15s", "__range": "5m", "__range_s": "300", "__interval_ms": "15000"}


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run scripts/system-deps.sh (it installs the Debian package prometheus)")
    return path


def test_promtool_checks_and_unit_tests_the_rules():
    for args in (["check", "rules", RULES], ["test", "rules", RULE_TESTS]):
        result = subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    text = "\n".join(line for line in open(RULES) if not line.lstrip().startswith("#"))
    assert "holt_winters" not in text and "double_exponential_smoothing" not in text, "rules must run on Prometheus 2.x and 3.x"


def load(path):
    with open(path) as f:
        return json.load(f)


def panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard):
    """(panel title, expr) of every query of the dashboard."""
    return [(panel["title"], target["expr"]) for panel in panels(dashboard) for target in panel.get("targets", [])]


def datasource_refs(node):
    """Every `datasource` value anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


def test_dashboards_take_their_datasource_from_a_variable_and_offer_model_version_tenant():
    assert {os.path.basename(path) for path in DASHBOARDS} >= {"yunmo-overview.json", "yunmo-llm.json"}
    for path in DASHBOARDS:
        dashboard = load(path)
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus", path
        assert {"model", "version", "tenant"} <= set(variables), f"{path}: {sorted(variables)}"
        for name in ("model", "version"):
            assert variables[name]["type"] == "query" and "label_values(" in json.dumps(variables[name]["query"]), (path, name)
        assert "usage API" in dashboard["description"], f"{path}: say where per-tenant figures come from"
        refs = list(datasource_refs(dashboard))
        assert refs, path
        for ref in refs:
            uid = ref.get("uid") if isinstance(ref, dict) else ref
            assert uid == "${datasource}", f"{path}: fixed datasource {ref!r}"
        assert "__inputs" not in dashboard, f"{path}: an export with fixed inputs"
        for panel in panels(dashboard):
            if panel["type"] != "row":
                assert panel.get("datasource", {}).get("uid") == "${datasource}", (path, panel["title"])
                assert panel["targets"], (path, panel["title"])
                for target in panel["targets"]:
                    assert target["datasource"]["uid"] == "${datasource}", (path, panel["title"])


def substitute(expr):
    def value(match):
        name = match.group(1) or match.group(2)
        assert name in SUBSTITUTIONS, f"unknown variable ${name} in {expr}"
        return SUBSTITUTIONS[name]

    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)
    assert "$" not in out, out
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_get(base, path, **params):
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=30) as response:
        return json.load(response)


class Traffic(threading.Thread):
    """Keeps requests flowing to the ONNX model and the LLM, so every rate and quantile has fresh data."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.stop, self.errors = server, threading.Event(), []

    def run(self):
        tensor = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}
        llm = threading.Thread(target=self.generate, daemon=True)
        llm.start()
        while not self.stop.is_set():
            status, body = self.server.request("POST", "/v2/models/iris_mlp/infer", tensor)
            if status != 200:
                self.errors.append((status, body[:200]))
            self.server.request("POST", "/v2/models/no_such_model/infer", tensor)  # an error outcome, a 4xx class
            time.sleep(0.1)
        llm.join(timeout=30)

    def generate(self):
        while not self.stop.is_set():
            status, body = self.server.request("POST", "/v1/completions", {"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})
            if status != 200:
                self.errors.append((status, body[:200]))


@pytest.fixture(scope="module")
def monitored():
    """A Yunmo (auth off) with iris_mlp and smollm2 under traffic, scraped every second by a real Prometheus."""
    prometheus = tool("prometheus")
    tool("promtool")
    if not os.path.exists(SMOLLM):
        raise RuntimeError(f"missing {SMOLLM}: run scripts/fetch-assets.sh smollm (scripts/test.sh does)")
    work = tempfile.mkdtemp(prefix="yunmo-prometheus-")
    # Alerts every second, so the forecast gauges exist from the first seconds.
    server = Server(work, env={"YUNMO__ALERTS__INTERVAL_S": "1"})
    traffic = None
    process = None
    try:
        # A small drift baseline and window, so the drift panels have judged features within seconds.
        server.push("iris_mlp", "iris_mlp.onnx", config={"drift": {"baseline_rows": 20, "min_count": 10}})
        server.push_file("smollm2", SMOLLM)
        traffic = Traffic(server)
        traffic.start()
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            json.dump({  # JSON is YAML
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [RULES],
                "scrape_configs": [{"job_name": "yunmo", "metrics_path": "/metrics", "static_configs": [{"targets": [server.address]}]}],
            }, f)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(os.path.join(work, "prometheus.log"), "wb")
        process = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        deadline = time.time() + 60
        # Ready once the LLM and the tensor model have each shown work in rates over a full window.
        ready = 'count(rate(yunmo_llm_generated_tokens_total[1m]) > 0) + count(rate(yunmo_inference_requests_total{model="iris_mlp",outcome="ok"}[1m]) > 0)'
        while True:
            assert process.poll() is None, f"prometheus exited with {process.returncode}; see {log.name}"
            try:
                result = prometheus_get(base, "/api/v1/query", query=ready)["data"]["result"]
                if result and float(result[0]["value"][1]) == 2:
                    break
            except OSError:
                pass
            assert time.time() < deadline, f"no data in Prometheus after 60 s; see {log.name} and {server.log.name}"
            time.sleep(0.5)
        time.sleep(5)  # a few more scrapes, so each rate window holds several samples
        yield base, traffic
    finally:
        if traffic is not None:
            traffic.stop.set()
            traffic.join(timeout=30)
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        assert server.stop() == 0
        shutil.rmtree(work, ignore_errors=True)


def test_prometheus_scrapes_yunmo_and_evaluates_the_rules(monitored):
    base, traffic = monitored
    up = prometheus_get(base, "/api/v1/query", query='up{job="yunmo"}')["data"]["result"]
    assert [s["value"][1] for s in up] == ["1"], up
    deadline = time.time() + 10
    while True:  # rules are evaluated every second; each must have run once without error
        groups = prometheus_get(base, "/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule["health"] == "ok" for rule in rules):
            break
        assert time.time() < deadline, [(rule["name"], rule["health"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
        time.sleep(0.5)
    assert len(rules) == 16, [rule["name"] for rule in rules]
    recorded = prometheus_get(base, "/api/v1/query", query='yunmo:inference_requests:rate5m{model="iris_mlp", outcome="ok"}')["data"]["result"]
    assert recorded and float(recorded[0]["value"][1]) > 0, recorded
    assert not traffic.errors, traffic.errors[:3]


@pytest.mark.parametrize("path", DASHBOARDS, ids=os.path.basename)
def test_every_dashboard_query_evaluates_with_data(monitored, path):
    base, _ = monitored
    failures = []
    queries = targets(load(path))
    assert queries
    for title, expr in queries:
        query = substitute(expr)
        try:
            answer = prometheus_get(base, "/api/v1/query", query=query)
        except urllib.error.HTTPError as error:
            failures.append((title, query, error.read().decode()[:300]))
            continue
        if answer.get("status") != "success" or answer.get("error") or answer.get("warnings"):
            failures.append((title, query, answer))
        elif not answer["data"]["result"]:
            failures.append((title, query, "no series"))
    assert not failures, "\n".join(map(str, failures))
