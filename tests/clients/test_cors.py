"""CORS for browser apps (`[server.cors]`): a page of an allowed origin calls the V2 and OpenAI routes with a
key from a real browser (Debian's chromium driven by Playwright); a page of another origin is blocked by
the browser; the preflight is answered without a key while the call itself still needs one; with CORS off
(the default) no CORS header is sent; a bad origin in the settings stops the start, named."""
import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
import urllib.request

import pytest
from playwright import sync_api as playwright_sync

from conftest import ADMIN, Server, fixture_path, make_key, push_as

CHROMIUM = os.environ.get("YUNMO_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGE = b"<!doctype html><title>app</title><p>an app on another origin</p>"
ROW = [5.1, 3.5, 1.4, 0.2]


def page_server():
    """A static page on an ephemeral port of 127.0.0.1: the browser app's origin."""
    directory = tempfile.mkdtemp(prefix="yunmo-cors-page-")
    with open(os.path.join(directory, "index.html"), "wb") as f:
        f.write(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def raw(method, url, headers):
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


@pytest.fixture(scope="module")
def setup():
    allowed, allowed_origin = page_server()
    other, other_origin = page_server()
    data_dir = tempfile.mkdtemp(prefix="yunmo-cors-")
    srv = Server(data_dir, env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN,
                                "YUNMO__SERVER__CORS__ENABLED": "true",
                                "YUNMO__SERVER__CORS__ALLOWED_ORIGINS": json.dumps([allowed_origin])})
    status, body = srv.request("POST", "/api/v1/tenants", {"name": "web"}, key=ADMIN)
    assert status == 201, body
    key = make_key(srv, "web", ["models:write", "models:read", "infer"])["key"]
    push_as(srv, key, "iris", fixture_path("iris_mlp.onnx"))
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield srv, key, browser, allowed_origin, other_origin
        browser.close()
    assert srv.stop() == 0
    for httpd in (allowed, other):
        httpd.shutdown()
    shutil.rmtree(data_dir, ignore_errors=True)


FETCH = """async ([url, key, body]) => {
  try {
    const response = await fetch(url, {method: body ? "POST" : "GET",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"}, body: body ? JSON.stringify(body) : undefined});
    return {status: response.status, body: await response.json(), requestId: response.headers.get("x-request-id"),
            version: response.headers.get("x-yunmo-model-version")};
  } catch (error) {
    return {blocked: String(error)};
  }
}"""


def browser_fetch(browser, origin, url, key, body=None):
    page = browser.new_page()
    try:
        page.goto(origin + "/index.html")
        return page.evaluate(FETCH, [url, key, body])
    finally:
        page.close()


def test_a_page_of_an_allowed_origin_calls_v2_and_openai_routes_from_a_browser(setup):
    srv, key, browser, allowed, _ = setup
    infer = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
    answer = browser_fetch(browser, allowed, srv.url + "/v2/models/iris/infer", key, infer)
    assert answer.get("status") == 200, answer
    assert [o["name"] for o in answer["body"]["outputs"]] == ["label", "probabilities"]
    assert answer["requestId"] and answer["version"] == "1", "exposed headers are readable by the page"
    models = browser_fetch(browser, allowed, srv.url + "/v1/models", key)
    assert models.get("status") == 200 and [m["id"] for m in models["body"]["data"]] == ["iris"], models
    # The call itself still needs a valid key: the browser gets the 401 (with CORS headers, so it can read it).
    refused = browser_fetch(browser, allowed, srv.url + "/v1/models", "ym_not_a_key")
    assert refused.get("status") == 401, refused


def test_a_page_of_another_origin_is_blocked_by_the_browser(setup):
    srv, key, browser, _, other = setup
    answer = browser_fetch(browser, other, srv.url + "/v1/models", key)
    assert "blocked" in answer and "Failed to fetch" in answer["blocked"], answer


def test_the_preflight_is_answered_without_a_key_and_only_for_allowed_origins(setup):
    srv, _, _, allowed, other = setup
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    status, headers = raw("OPTIONS", srv.url + "/v2/models/iris/infer", {"Origin": allowed, **ask})
    assert status == 200, (status, headers)
    assert headers["access-control-allow-origin"] == allowed
    assert "POST" in headers["access-control-allow-methods"] and "authorization" in headers["access-control-allow-headers"]
    assert headers["access-control-max-age"] == "600"
    status, headers = raw("OPTIONS", srv.url + "/v2/models/iris/infer", {"Origin": other, **ask})
    assert "access-control-allow-origin" not in headers, headers
    # The request itself needs a key: without one it is a 401 that the page may read (CORS headers on).
    status, headers = raw("GET", srv.url + "/v2/models/iris", {"Origin": allowed})
    assert status == 401 and headers["access-control-allow-origin"] == allowed, (status, headers)
    assert "x-request-id" in headers["access-control-expose-headers"]


def test_cors_is_off_by_default_and_a_bad_origin_stops_the_start():
    data_dir = tempfile.mkdtemp(prefix="yunmo-cors-off-")
    srv = Server(data_dir)
    try:
        ask = {"Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "GET"}
        _, headers = raw("OPTIONS", srv.url + "/v2/health/ready", ask)
        assert "access-control-allow-origin" not in headers, headers
        _, headers = raw("GET", srv.url + "/v2/health/ready", {"Origin": "http://127.0.0.1:9"})
        assert "access-control-allow-origin" not in headers, headers
    finally:
        assert srv.stop() == 0
    bad_dir = tempfile.mkdtemp(prefix="yunmo-cors-bad-")
    with pytest.raises(RuntimeError):
        Server(bad_dir, env={"YUNMO__SERVER__CORS__ENABLED": "true", "YUNMO__SERVER__CORS__ALLOWED_ORIGINS": '["app.example.com"]'})
    with open(os.path.join(bad_dir, "server.log")) as f:
        assert "server.cors.allowed_origins: 'app.example.com' is not an origin" in f.read()
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(bad_dir, ignore_errors=True)
