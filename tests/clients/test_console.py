"""The web console (/ui/) in a real browser: Debian's chromium driven by Playwright (`executable_path`, never
`playwright install`), against a real server with auth on, tenants, an ONNX model and an LLM.

Every page is screenshotted into $YUNMO_SCREENSHOTS (default: screenshots/ in the repository, ignored by git)
for a person to look at; docs/images/console-overview.png in the README is the overview shot of this test.
"""
import csv
import hashlib
import io
import json
import math
import os
import shutil
import sqlite3
import tempfile
import time
import urllib.parse

import numpy as np
import pytest
import tritonclient.http as httpclient
from playwright import sync_api as playwright_sync

from conftest import ROOT, Server, fixture_path


CACHE = os.environ.get("YUNMO_CACHE", os.path.expanduser("~/.cache/yunmo"))
SMOLLM = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")
CHROMIUM = os.environ.get("YUNMO_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("YUNMO_SCREENSHOTS", os.path.join(ROOT, "screenshots"))
ADMIN = "ym_consoleadmin_" + "C" * 40
IRIS = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
# Chromium's flags for this closed network (no background connections, no first-run work).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def api(srv, method, path, body=None, key=ADMIN):
    status, data = srv.request(method, path, body, key=key)
    return status, (json.loads(data) if data and data[:1] in (b"{", b"[") else data)


@pytest.fixture(scope="module")
def console():
    data_dir = tempfile.mkdtemp(prefix="yunmo-console-")
    srv = Server(data_dir, env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__AUTH__USAGE_FLUSH_MS": "200",
                                "YUNMO__ALERTS__INTERVAL_S": "1"})
    keys = {}
    for tenant in ("a", "b"):
        status, body = api(srv, "POST", "/api/v1/tenants", {"name": tenant, "limits": {"monthly_requests": 100000}})
        assert status == 201, body
        status, body = api(srv, "POST", "/api/v1/keys",
                           {"tenant": tenant, "name": f"{tenant}-owner", "scopes": ["models:write", "models:read", "infer", "keys:write"]})
        assert status == 201, body
        keys[tenant] = body["key"]
    srv.key = keys["a"]
    # A small drift baseline, so that the model page has verdicts to show after a few requests. Windows are
    # aligned to the clock (multiples of window_s since 1970): with hourly ones, rows sent just before a full
    # hour and just after it landed in different windows and the counts below came out short. 31 days is the
    # longest window allowed; a boundary falls inside a test run about once in 20,000 runs.
    srv.push("a_iris", "iris_mlp.onnx", config={"drift": {"baseline_rows": 20, "min_count": 10, "window_s": 31 * 86400}})
    srv.key = keys["b"]
    srv.push("b_iris", "iris_mlp.onnx")
    srv.push_file("b_llm", SMOLLM)
    srv.key = None
    backfill_usage(os.path.join(data_dir, "data", "yunmo.db"), "a/a_iris", "a")
    os.makedirs(SCREENSHOTS, exist_ok=True)
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield srv, keys, browser
        browser.close()
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def backfill_usage(database, model, tenant, days=4):
    """Writes `days` of hourly usage with a daily pattern for `model`, as the meter would have written it
    (one row per hour and subject), so that the forecast panel has history to forecast from. SQLite in WAL
    mode takes this writer beside the running server."""
    hour_ms = 3_600_000
    this_hour = int(time.time() * 1000) // hour_ms
    rows = []
    for t in range(this_hour - days * 24, this_hour):
        noise = (t * 7919) % 7 - 3
        requests = 40 + noise + round(30 * max(-0.5, math.sin(math.pi * ((t % 24) - 8) / 12)))
        rows.append((t * hour_ms, tenant, "backfill", model, 1, "rest", "ok", requests, 0, 0, 4 * requests, 3 * requests, 0, requests, 0, 0, 0.0))
    with sqlite3.connect(database, timeout=10) as connection:
        connection.executemany(
            "INSERT INTO usage_events (at_ms, tenant, key_id, model, version, protocol, outcome, requests, input_tokens, output_tokens,"
            " input_elements, output_elements, queue_ms, compute_ms, bytes_in, bytes_out, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows)


class Tab:
    """A browser context and page that collects console errors and accepts confirmation dialogs."""

    def __init__(self, browser, srv):
        self.context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
        self.page = self.context.new_page()
        self.srv = srv
        self.errors = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("dialog", lambda dialog: dialog.accept())

    def go(self, hash_path):
        self.page.goto(f"{self.srv.url}/ui/#/{hash_path}")

    def sign_in(self, key):
        self.go("overview")
        self.page.wait_for_selector("[data-testid=signin]")
        self.page.fill("[data-testid=key]", key)
        self.page.click("[data-testid=signin] button")
        self.page.wait_for_selector("[data-testid=total-requests]")

    def open(self, hash_path, ready):
        """Goes to a page and waits for the element `ready` selects."""
        self.go(hash_path)
        self.page.wait_for_selector(ready)

    def create_key(self, name, scopes, tenant=None):
        """Creates a key on the keys page; returns the secret it shows."""
        self.page.fill("[data-testid=key-name]", name)
        if tenant:
            self.page.fill("[data-testid=key-tenant]", tenant)
        for scope in scopes:
            self.page.check(f"[data-testid='key-scope-{scope}']")
        self.page.click("[data-testid=create-key] button[type=submit]")
        self.page.wait_for_selector("[data-testid=new-key]")
        return self.page.text_content("[data-testid=new-key]")

    def revoke(self, key_id):
        """Revokes a key from the keys page (accepting the confirmation) and waits for the list to say so."""
        self.page.click(f"[data-testid='revoke-{key_id}']")
        self.page.wait_for_function(f"() => document.querySelector(\"[data-testid='key-state-{key_id}']\").textContent.startsWith('revoked')")

    def shot(self, name):
        self.page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)

    def close(self):
        self.context.close()
        assert self.errors == [], "the browser's console showed errors"


def infer(srv, model, key, count):
    client = httpclient.InferenceServerClient(srv.address)
    tensor = httpclient.InferInput("X", list(IRIS.shape), "FP32")
    tensor.set_data_from_numpy(IRIS)
    for _ in range(count):
        client.infer(model, [tensor], headers={"authorization": f"Bearer {key}"})


def test_the_overview_counts_exactly_the_requests_sent_and_its_chart_holds_them(console):
    srv, keys, browser = console
    infer(srv, "a_iris", keys["a"], 37)
    tab = Tab(browser, srv)
    tab.sign_in(ADMIN)
    # The admin names tenant a's model as a/a_iris; the chart is registered under that name.
    status, stats = api(srv, "GET", "/api/v1/stats?seconds=300")
    assert status == 200, stats
    name = next(version["model"] for version in stats["versions"] if version["model"].endswith("a_iris"))
    tab.page.wait_for_function(
        "name => { const el = document.querySelector(`[data-testid='requests-${name}:1']`); return el && el.textContent === '37'; }",
        arg=name, timeout=15000)
    series = tab.page.evaluate("id => window.yunmo.charts[id].data.map(column => Array.from(column))", f"requests:{name}:1")
    assert sum(series[1]) == 37, "the chart's requests column sums to the requests sent"
    assert sum(value for value in series[2] if value) == 0, "none failed"
    assert all(b - a == 1 for a, b in zip(series[0], series[0][1:])), "one point per second"
    assert tab.page.text_content("[data-testid=total-requests]") == "37"
    # A generation gives the LLM panels their tokens and token timings.
    status, body = api(srv, "POST", "/v1/completions", {"model": "b_llm", "prompt": "One, two,", "max_tokens": 8}, key=keys["b"])
    assert status == 200, body
    llm = next(version["model"] for version in api(srv, "GET", "/api/v1/stats?seconds=300")[1]["versions"] if version["model"].endswith("b_llm"))
    tab.page.wait_for_function("id => window.yunmo.charts[id] && window.yunmo.charts[id].data[1].some(v => v > 0)", arg=f"tokens:{llm}:1", timeout=15000)
    tokens = tab.page.evaluate("id => Array.from(window.yunmo.charts[id].data[1])", f"tokens:{llm}:1")
    assert sum(tokens) == body["usage"]["completion_tokens"]
    # The generation is a drift sample of the LLM (token counts, finish reason): its baseline holds one row.
    deadline = time.time() + 10
    while api(srv, "GET", "/api/v1/models/b%2Fb_llm/versions/1/drift")[1]["baseline"]["rows"] != 1 and time.time() < deadline:
        time.sleep(0.05)
    assert api(srv, "GET", "/api/v1/models/b%2Fb_llm/versions/1/drift")[1]["baseline"]["rows"] == 1
    tab.page.wait_for_timeout(2500)  # one more refresh, so the shot shows the sequence chart's samples
    tab.shot("overview")
    tab.close()


def test_models_page_lists_pushed_models_uploads_with_progress_and_loads(console):
    srv, keys, browser = console
    tab = Tab(browser, srv)
    tab.sign_in(ADMIN)
    tab.open("models", "[data-testid=models]")
    text = tab.page.text_content("[data-testid=models]")
    for model in ("a/a_iris", "b/b_iris", "b/b_llm"):
        assert model in text, model
    tab.page.fill("[data-testid=upload-model]", "console_upload")
    tab.page.set_input_files("[data-testid=upload-file]", fixture_path("iris_logreg.onnx"))
    tab.page.click("[data-testid=upload] button[type=submit]")
    tab.page.wait_for_function("() => document.querySelector('[data-testid=upload-status]').textContent.startsWith('stored')", timeout=15000)
    assert tab.page.eval_on_selector("[data-testid=upload-progress]", "bar => bar.value") == 100
    status, model = api(srv, "GET", "/api/v1/models/console_upload")
    assert status == 200 and [version["version"] for version in model["versions"]] == [1], model
    with open(fixture_path("iris_logreg.onnx"), "rb") as f:
        assert model["versions"][0]["sha256"] == hashlib.sha256(f.read()).hexdigest(), "the stored file is the one chosen"
    # Load it from the page; the registry then says it is loaded.
    tab.page.wait_for_selector("[data-testid='load-console_upload-1']")
    tab.page.click("[data-testid='load-console_upload-1']")
    tab.page.wait_for_selector("[data-testid='unload-console_upload-1']", timeout=15000)
    assert api(srv, "GET", "/api/v1/models/console_upload")[1]["versions"][0]["loaded"] is True
    tab.shot("models")
    tab.open("model/console_upload", "[data-testid=versions]")
    tab.page.wait_for_selector("[data-testid='version-console_upload:1']", timeout=10000)
    tab.shot("model")
    tab.close()


def test_the_model_page_shows_each_features_drift_as_the_api_does(console):
    srv, keys, browser = console
    # After the overview test's 37 identical rows (20 of them the baseline), rows elsewhere on X[2] and X[3].
    client = httpclient.InferenceServerClient(srv.address)
    tensor = httpclient.InferInput("X", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.array([[5.1, 3.5, 6.0, 2.2]], dtype=np.float32))
    for _ in range(15):
        client.infer("a_iris", [tensor], headers={"authorization": f"Bearer {keys['a']}"})
    path = "/api/v1/models/a%2Fa_iris/versions/1/drift"
    deadline = time.time() + 10
    while True:  # the drift worker counts off the request path
        status, report = api(srv, "GET", path)
        assert status == 200, report
        counts = {feature["name"]: feature["window_count"] for feature in report["features"]}
        if counts.get("X[2]") == 17 + 15 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert counts.get("X[2]") == 32, report
    tab = Tab(browser, srv)
    tab.sign_in(ADMIN)
    tab.open("model/a%2Fa_iris", "[data-testid=drift-1]")
    status, report = api(srv, "GET", path)
    for feature in report["features"]:
        shown = tab.page.text_content(f"[data-testid='drift-1-{feature['name']}']")
        assert shown == feature["state"].replace("_", " "), (feature["name"], shown, feature["state"])
    states = {feature["name"]: feature["state"] for feature in report["features"]}
    assert states["X[2]"] == "alert" and states["X[0]"] == "ok", states
    # The forecast panel plots what the API forecasts from the four backfilled days.
    status, forecast = api(srv, "GET", "/api/v1/models/a%2Fa_iris/forecast")
    assert status == 200 and forecast["method"] == "holt_winters" and forecast["backtest"], forecast
    assert tab.page.text_content("[data-testid=forecast-method]").startswith("method: holt winters")
    data = tab.page.evaluate("id => window.yunmo.charts[id].data.map(column => Array.from(column))", "forecast:a/a_iris")
    assert data[2][-24:] == forecast["forecast"]["requests"], "the chart's forecast column is the API's"
    assert data[1][-25] == forecast["history"]["requests"][-1], "and its history column ends with the API's last hour"
    tab.shot("model-drift")
    tab.close()


def test_keys_are_created_shown_once_and_revoked_from_the_page(console):
    srv, keys, browser = console
    tab = Tab(browser, srv)
    tab.sign_in(ADMIN)
    tab.open("keys", "[data-testid=keys]")
    secret = tab.create_key("from-the-console", ["infer", "models:read"], tenant="a")
    status, who = api(srv, "GET", "/api/v1/whoami", key=secret)
    assert status == 200 and who["tenant"] == "a" and sorted(who["scopes"]) == ["infer", "models:read"], who
    tab.shot("keys")
    key_id = who["key_id"]
    tab.revoke(key_id)
    assert api(srv, "GET", "/api/v1/whoami", key=secret)[0] == 401, "a revoked key is refused"
    tab.go("audit")
    tab.go("keys")
    tab.page.wait_for_selector(f"[data-testid='key-state-{key_id}']")
    assert secret not in tab.page.content(), "the secret is shown once: the key list never holds it"
    tab.close()


def test_a_tenant_key_sees_only_its_own_models_usage_and_keys_and_manages_its_keys(console):
    srv, keys, browser = console
    infer(srv, "b_iris", keys["b"], 5)
    tab = Tab(browser, srv)
    tab.sign_in(keys["a"])
    tab.open("models", "[data-testid=models]")
    text = tab.page.text_content("[data-testid=models]")
    assert "a_iris" in text and "b_iris" not in text and "b_llm" not in text, text
    assert tab.page.query_selector("#nav a[href='#/tenants']") is None, "no tenants page without admin"
    tab.go("overview")
    tab.page.wait_for_selector("[data-testid=total-versions]")
    tab.page.wait_for_function("() => document.querySelector('[data-testid=live]').dataset.updated")
    assert tab.page.query_selector("[data-testid^='version-b']") is None
    tab.open("usage", "[data-testid=usage]")
    tenants = {cell.strip() for cell in tab.page.eval_on_selector_all("[data-testid=usage] tbody tr td:first-child", "cells => cells.map(c => c.textContent)")}
    assert tenants == {"a"}, tenants
    tab.page.wait_for_selector("[data-testid=runout-monthly_requests]")
    tab.shot("usage")
    # Self-service: a keys:write key makes a key of its own tenant with a scope it holds, and revokes it.
    tab.open("keys", "[data-testid=keys]")
    listed = tab.page.eval_on_selector_all("[data-testid=keys] tbody tr td:nth-child(3)", "cells => cells.map(c => c.textContent)")
    assert set(listed) == {"a"}, listed
    assert tab.page.query_selector("[data-testid=key-scope-admin]") is None, "admin is never offered to a tenant key"
    secret = tab.create_key("self-service", ["infer"])
    status, who = api(srv, "GET", "/api/v1/whoami", key=secret)
    assert status == 200 and who["tenant"] == "a" and who["scopes"] == ["infer"], who
    tab.revoke(who["key_id"])
    assert api(srv, "GET", "/api/v1/whoami", key=secret)[0] == 401
    tab.close()


def test_the_usage_csv_from_the_page_equals_the_apis(console):
    srv, keys, browser = console
    tab = Tab(browser, srv)
    tab.sign_in(ADMIN)
    tab.open("usage", "[data-testid=usage]")
    tab.page.select_option("[data-testid=usage-group]", "day")
    tab.page.click("form button[type=submit]")
    tab.page.wait_for_selector("[data-testid=usage]")
    with tab.page.expect_download() as download:
        tab.page.click("[data-testid=usage-csv]")
    with open(download.value.path(), encoding="utf-8") as f:
        from_page = f.read()
    query = urllib.parse.urlencode({
        "from": tab.page.input_value("[data-testid=usage-from]"), "to": tab.page.input_value("[data-testid=usage-to]"),
        "group_by": "day", "format": "csv"})
    status, from_api = srv.request("GET", f"/api/v1/usage?{query}", key=ADMIN)
    assert status == 200
    assert from_page == from_api.decode(), "the page saves the API's CSV byte for byte"
    rows = list(csv.DictReader(io.StringIO(from_page)))
    assert {row["tenant"] for row in rows} >= {"a", "b"} and sum(int(row["requests"]) for row in rows) >= 42
    tab.shot("usage-by-day")
    tab.close()


def test_every_other_page_renders_without_errors(console):
    srv, keys, browser = console
    tab = Tab(browser, srv)
    tab.sign_in(ADMIN)
    for page, ready in (("tenants", "[data-testid=tenants]"), ("audit", "[data-testid=audit]"), ("alerts", "[data-testid=firing]")):
        tab.open(page, ready)
        tab.shot(page)
    # The drifting model of the drift test fires YunmoDrift; the page lists what the API lists.
    status, listed = api(srv, "GET", "/api/v1/alerts")
    assert status == 200 and any(alert["name"] == "YunmoDrift" for alert in listed["firing"]), listed
    assert len(tab.page.query_selector_all("[data-testid=firing] tbody tr")) == len(listed["firing"])
    assert "YunmoDrift" in tab.page.text_content("[data-testid=firing]")
    tab.open("audit", "[data-testid=audit]")
    audit = tab.page.text_content("[data-testid=audit]")
    assert "POST /api/v1/keys" in audit and "DELETE /api/v1/keys/" in audit, "the page shows the key actions"
    tab.close()


def test_the_api_page_needs_no_key_and_lists_every_operation(console):
    srv, _, browser = console
    tab = Tab(browser, srv)
    tab.open("api", "[data-testid=operation]")
    status, document = srv.request("GET", "/api/v1/openapi.json")
    assert status == 200, "the OpenAPI document is public"
    operations = sum(len([m for m in item if m in ("get", "post", "put", "patch", "delete")]) for item in json.loads(document)["paths"].values())
    assert len(tab.page.query_selector_all("[data-testid=operation]")) == operations
    assert "/api/v1/stats" in tab.page.text_content("main")
    tab.shot("api")
    tab.open("signin", "[data-testid=signin]")
    tab.shot("signin")
    tab.close()


def test_the_readme_shows_the_overview_screenshot_under_2_mb():
    path = os.path.join(ROOT, "docs", "images", "console-overview.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) < 2 * 1024 * 1024
    with open(os.path.join(ROOT, "README.md")) as f:
        assert "](docs/images/console-overview.png)" in f.read()
