"""The built-in alerts: a rule fires, its notification reaches a webhook receiver started here in
Alertmanager's webhook format (version 4), retried when the receiver fails; it resolves when its condition
goes, and both changes are in GET /api/v1/alerts."""
import datetime
import http.server
import json
import os
import queue
import shutil
import tempfile
import threading
import time

import pytest

from conftest import Server

ADMIN = "ym_alertsadmin_" + "L" * 41
IRIS = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
# Alertmanager's webhook payload (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
TOP_FIELDS = {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
              "commonAnnotations", "externalURL", "alerts"}
ALERT_FIELDS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


class Receiver:
    """An HTTP receiver on 127.0.0.1 that answers 503 to its first `failures` POSTs, then 200."""

    def __init__(self, failures=0):
        self.received = queue.Queue()
        self.attempts = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= failures:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.put((self.headers["Content-Type"], json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, status, alertname="YunmoLatencyObjective", timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                content_type, payload = self.received.get(timeout=0.2)
            except queue.Empty:
                continue
            assert content_type.startswith("application/json")
            if payload["status"] == status and payload["groupLabels"]["alertname"] == alertname:
                return payload
        raise AssertionError(f"no {status} notification within {timeout} s")


@pytest.fixture(scope="module")
def alerting():
    receiver = Receiver(failures=1)
    data_dir = tempfile.mkdtemp(prefix="yunmo-alerts-")
    srv = Server(data_dir, env={
        "YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN,
        "YUNMO__ALERTS__INTERVAL_S": "1", "YUNMO__ALERTS__WINDOW_S": "3", "YUNMO__ALERTS__MIN_REQUESTS": "5",
        # Any latency passes this objective: the rule fires as soon as a version has 5 requests in 3 s.
        "YUNMO__ALERTS__P99_MS": "0.0001",
        "YUNMO__ALERTS__WEBHOOKS": json.dumps([receiver.url]),
        "YUNMO__ALERTS__EXTERNAL_URL": "http://yunmo.example:8080",
        "YUNMO__AUTH__USAGE_FLUSH_MS": "200",
    })
    srv.key = ADMIN
    srv.push("iris", "iris_mlp.onnx")
    yield srv, receiver, data_dir
    assert srv.stop() == 0
    receiver.server.shutdown()
    shutil.rmtree(data_dir, ignore_errors=True)


def rfc3339(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def test_an_alert_fires_reaches_the_webhook_in_alertmanagers_format_and_resolves(alerting):
    srv, receiver, data_dir = alerting
    for _ in range(10):
        status, body = srv.request("POST", "/v2/models/iris/infer", IRIS)
        assert status == 200, body
    fired = receiver.next("firing")
    assert set(fired) == TOP_FIELDS, fired
    assert (fired["version"], fired["receiver"], fired["truncatedAlerts"]) == ("4", "yunmo", 0)
    assert fired["groupLabels"] == {"alertname": "YunmoLatencyObjective"}
    assert fired["groupKey"] == '{}:{alertname="YunmoLatencyObjective"}'
    assert fired["externalURL"] == "http://yunmo.example:8080"
    alert = fired["alerts"][0]
    assert set(alert) == ALERT_FIELDS, alert
    assert alert["labels"] == {"alertname": "YunmoLatencyObjective", "severity": "warning", "model": "iris", "version": "1", "tenant": "default"}
    assert fired["commonLabels"] == alert["labels"]
    assert "p99 latency" in alert["annotations"]["description"] and alert["annotations"]["summary"]
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert abs((rfc3339(alert["startsAt"]) - datetime.datetime.utcnow()).total_seconds()) < 60
    assert alert["generatorURL"] == "http://yunmo.example:8080/ui/#/alerts"
    assert len(alert["fingerprint"]) == 16
    assert receiver.attempts >= 2, "the first delivery was refused (503) and retried"

    status, body = srv.request("GET", "/api/v1/alerts")
    assert status == 200, body
    listed = json.loads(body)
    assert [(a["name"], a["status"], a["labels"]["model"]) for a in listed["firing"]] == [("YunmoLatencyObjective", "firing", "iris")]

    # No more requests: after the 3 s window the condition is gone and the alert resolves.
    resolved = receiver.next("resolved")
    alert = resolved["alerts"][0]
    assert (alert["status"], alert["fingerprint"]) == ("resolved", fired["alerts"][0]["fingerprint"])
    assert rfc3339(alert["endsAt"]) >= rfc3339(alert["startsAt"])
    status, body = srv.request("GET", "/api/v1/alerts")
    listed = json.loads(body)
    assert listed["firing"] == []
    assert [entry["status"] for entry in listed["history"][:2]] == ["resolved", "firing"], "newest first"
    with open(os.path.join(data_dir, "server.log"), encoding="utf-8") as log:
        assert "secret-token" not in log.read(), "the receiver's URL is a secret"


def test_a_tenant_key_sees_only_alerts_about_what_its_tenant_can_see(alerting):
    srv, _, _ = alerting
    status, body = srv.request("POST", "/api/v1/tenants", {"name": "other"}, key=ADMIN)
    assert status == 201, body
    status, body = srv.request("POST", "/api/v1/keys", {"tenant": "other", "scopes": ["models:read"]}, key=ADMIN)
    key = json.loads(body)["key"]
    status, body = srv.request("GET", "/api/v1/alerts", key=key)
    assert status == 200, body
    listed = json.loads(body)
    assert listed["firing"] == [] and listed["history"] == [], "the default tenant's private model is not the other tenant's"
    status, body = srv.request("GET", "/api/v1/alerts?limit=0", key=ADMIN)
    assert status == 400 and "limit must be between 1 and 1000, got 0" in json.loads(body)["error"]["message"]


def test_drift_and_a_quota_running_out_fire_their_alerts(alerting):
    srv, receiver, _ = alerting
    # Drift: a baseline of 20 identical rows, then 10 rows far off on X[2] only.
    srv.push("watched", "iris_mlp.onnx", config={"drift": {"baseline_rows": 20, "min_count": 10}})
    shifted = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 6.5, 0.2]}]}
    for body in [IRIS] * 20 + [shifted] * 10:
        assert srv.request("POST", "/v2/models/watched/infer", body)[0] == 200
    drift = receiver.next("firing", "YunmoDrift")
    labels = {(a["labels"]["model"], a["labels"]["feature"], a["labels"]["severity"]) for a in drift["alerts"]}
    assert ("watched", "X[2]", "critical") in labels, drift
    assert not any(feature == "X[0]" for _, feature, _ in labels), "an unshifted feature does not alert"
    # A tenant that used all its 10 monthly requests (the projection before that is unit-tested in
    # yunmo-service's alerts.rs: it depends on the day of the month).
    status, body = srv.request("POST", "/api/v1/tenants", {"name": "metered", "limits": {"monthly_requests": 10}}, key=ADMIN)
    assert status == 201, body
    status, body = srv.request("POST", "/api/v1/keys", {"tenant": "metered", "scopes": ["models:write", "infer"]}, key=ADMIN)
    key = json.loads(body)["key"]
    srv.key = key
    srv.push("mine", "iris_mlp.onnx")
    srv.key = ADMIN
    for _ in range(10):
        assert srv.request("POST", "/v2/models/mine/infer", IRIS, key=key)[0] == 200
    quota = receiver.next("firing", "YunmoQuotaRunningOut")
    alert = quota["alerts"][0]
    assert alert["labels"] == {"alertname": "YunmoQuotaRunningOut", "severity": "critical", "tenant": "metered", "quota": "monthly_requests"}
    assert "10 of 10 used this month" in alert["annotations"]["description"]
    status, body = srv.request("GET", "/api/v1/alerts", key=key)
    names = {entry["name"] for entry in json.loads(body)["firing"]}
    assert "YunmoQuotaRunningOut" in names and "YunmoDrift" not in names, names
