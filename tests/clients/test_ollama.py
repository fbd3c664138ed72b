"""The `ollama` Python client (0.6.3), unchanged, against Yunmo's Ollama-compatible API (/api/chat, /api/generate,
/api/embed, /api/embeddings, /api/tags, /api/show, /api/ps, /api/version) on a server with auth on and two
tenants: SmolLM2-135M-Instruct (GGUF) for chat and generate (and under a `<think>` template for thinking),
all-MiniLM-L6-v2 (ONNX + tokenizer.json) for embeddings. Greedy answers, streamed equal to whole ones, options,
JSON formats (checked with `jsonschema`), tools, errors, the management routes pointing at /api/v1/models,
tenant isolation, exact metering, and `ollama.key`, which serves Ollama clients that send no key."""
import json
import os
import shutil
import tempfile
from collections.abc import Mapping

import jsonschema
import numpy as np
import ollama
import pytest
import test_reasoning  # its thinking template and few-shot conversation

from conftest import two_tenants, ADMIN, CACHE, SMOLLM, Server, bearer, fixture_path, make_key, push_as, settled_requests

TOKENIZER = os.path.join(CACHE, "models", "minilm-tokenizer.json")
ENV = {"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__AUTH__USAGE_FLUSH_MS": "200",
       "YUNMO__BACKENDS__GGUF__THREADS": "2"}
A_MODELS = {"smollm2", "thinker", "minilm-embed"}
# Not "What is the capital of France?": SmolLM2's greedy first token there is a near tie ("The" against "La" by 0.03
# to 0.35 logits) that any kernel's rounding flips; here "The ... Paris." leads by 1.6 (docs/llm.md, "Flash attention").
QUESTION = [{"role": "user", "content": "Name the capital of France."}]
# As in test_openai: with SmolLM2's default system prompt this small model rambles.
SYSTEM = [{"role": "system", "content": "You are a helpful assistant."}]
GREEDY = {"temperature": 0, "seed": 1}
# test_reasoning's template in the shape of Qwen3's, and its few-shot conversation that makes greedy SmolLM2 close
# its thinking with </think> and then answer.
THINKING, MESSAGES = test_reasoning.TEMPLATE, test_reasoning.MESSAGES
# Every string is bounded, so that a complete answer always fits num_predict.
CAPITAL = {"type": "object", "properties": {"country": {"type": "string", "minLength": 1, "maxLength": 30},
                                            "capital": {"type": "string", "minLength": 1, "maxLength": 30}},
           "required": ["country", "capital"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]}}}
ARGUMENTS = WEATHER["function"]["parameters"]


def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
      city: The city to get the weather for

    Returns:
      str: The weather
    """
    return "sunny"


@pytest.fixture(autouse=True)
def no_ollama_environment(monkeypatch):
    # The client sends $OLLAMA_API_KEY when given no Authorization header: the keyless cases must send none.
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


@pytest.fixture(scope="module")
def served():
    for path in (SMOLLM, TOKENIZER):
        if not os.path.exists(path):
            raise RuntimeError(f"missing {path}: run scripts/fetch-assets.sh smollm minilm (scripts/test.sh does)")
    data_dir = tempfile.mkdtemp(prefix="yunmo-ollama-")
    srv = Server(data_dir, env=ENV)
    keys = two_tenants(srv)
    push_as(srv, keys["a"], "smollm2", SMOLLM)
    push_as(srv, keys["a"], "thinker", SMOLLM, config={"chat_template": THINKING})
    push_as(srv, keys["a"], "minilm-embed", fixture_path("minilm.onnx"),
            config={"embedding": {"pooling": "mean", "normalize": True, "max_tokens": 256}})
    with open(TOKENIZER, "rb") as f:
        status, body = srv.request("PUT", "/api/v1/models/minilm-embed/versions/1/tokenizer", f.read(), {"Content-Type": "application/json"},
                                   key=keys["a"])
    assert status == 200, body
    yield srv, keys
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def client(srv, key=None):
    return ollama.Client(host=srv.url, headers=bearer(key), timeout=300)


@pytest.fixture(scope="module")
def a(served):
    srv, keys = served
    return client(srv, keys["a"])


def chat(llm, question=QUESTION, model="smollm2", options=None, **kwargs):
    return llm.chat(model=model, messages=SYSTEM + question, options={**GREEDY, **(options or {})}, **kwargs)


def refused(call, status):
    """The ResponseError `call` raises, checked to have `status` and a string message (Ollama's error shape)."""
    with pytest.raises(ollama.ResponseError) as raised:
        call()
    assert raised.value.status_code == status and isinstance(raised.value.error, str), raised.value
    return raised.value.error


def test_version_root_tags_show_and_ps(served, a):
    srv, keys = served
    status, body = srv.request("GET", "/api/version", key=keys["a"])
    assert status == 200 and isinstance(json.loads(body)["version"], str) and json.loads(body)["version"], body
    status, body = srv.request("GET", "/", key=keys["a"])
    assert status == 200 and "Ollama is running" in body.decode(), body
    assert srv.request("HEAD", "/", key=keys["a"])[0] == 200
    status, body = srv.request("GET", "/api/tags", key=keys["a"])
    assert status == 200, body
    tags = {m["name"]: m for m in json.loads(body)["models"]}
    assert set(tags) == A_MODELS, tags
    smol = tags["smollm2"]
    assert smol["model"] == "smollm2" and smol["size"] > 0 and smol["digest"], smol
    assert smol["details"]["format"] == "gguf", smol
    assert {"format", "family", "families", "parameter_size", "quantization_level"} <= set(smol["details"]), smol
    listed = a.list().models  # the client's own parsing: modified_at as a datetime, size as bytes
    assert {m.model for m in listed} == A_MODELS and all(m.modified_at and m.size > 0 for m in listed), listed
    shown = a.show("smollm2")
    assert {"completion", "tools"} <= set(shown.capabilities) and not {"embedding", "thinking"} & set(shown.capabilities), shown
    assert shown.details.format == "gguf" and shown.modelinfo is not None
    assert "thinking" in a.show("thinker").capabilities
    embedder = a.show("minilm-embed").capabilities
    assert "embedding" in embedder and "completion" not in embedder, embedder
    # name:latest and name:N (a version) name the model too.
    assert a.show("smollm2:latest").details == shown.details and a.show("smollm2:1").details == shown.details
    assert "no version 7" in refused(lambda: a.show("smollm2:7"), 404)
    assert "not found" in refused(lambda: a.show("no-such-model"), 404)
    assert "not found" in refused(lambda: chat(a, model="no-such-model"), 404)
    chat(a, options={"num_predict": 1})
    loaded = {m.model: m for m in a.ps().models}
    assert "smollm2" in loaded, loaded
    assert loaded["smollm2"].name == "smollm2" and loaded["smollm2"].size_vram == 0 and loaded["smollm2"].expires_at, loaded


def test_greedy_chat_says_paris_whole_and_streamed(served, a):
    srv, keys = served
    whole = chat(a, options={"num_predict": 32})
    assert whole.message.role == "assistant" and "Paris" in whole.message.content, whole
    assert whole.model == "smollm2" and whole.created_at and whole.done is True and whole.done_reason in ("stop", "length")
    assert whole.eval_count > 0 and whole.prompt_eval_count > 0 and whole.total_duration > 0, whole
    parts = list(chat(a, options={"num_predict": 32}, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].done is True and not any(p.done for p in parts[:-1])
    last = parts[-1]
    assert (last.done_reason, last.eval_count, last.prompt_eval_count) == (whole.done_reason, whole.eval_count, whole.prompt_eval_count)
    # Without "stream" (the client always sends it) Ollama's default is to stream NDJSON.
    body = {"model": "smollm2", "messages": SYSTEM + QUESTION, "options": {**GREEDY, "num_predict": 32}}
    status, raw = srv.request("POST", "/api/chat", body, key=keys["a"])
    lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    assert status == 200 and len(lines) > 1 and lines[-1]["done"] is True, raw
    assert "".join(line.get("message", {}).get("content", "") for line in lines) == whole.message.content


def test_generate_whole_and_streamed(a):
    arguments = dict(model="smollm2", prompt="The capital of France is", options={"num_predict": 8, "temperature": 0})
    whole = a.generate(**arguments)
    assert whole.done is True and whole.response and 0 < whole.eval_count <= 8, whole
    parts = list(a.generate(stream=True, **arguments))
    assert "".join(p.response or "" for p in parts) == whole.response
    assert parts[-1].done is True and parts[-1].eval_count == whole.eval_count


def test_options_bound_stop_and_unknown_names_are_refused(a):
    short = chat(a, options={"num_predict": 3})
    assert short.eval_count == 3 and short.done_reason == "length", short
    unbounded = chat(a, options={"num_predict": -1})
    assert "Paris" in unbounded.message.content and unbounded.done_reason == "stop", unbounded
    stopped = chat(a, options={"num_predict": 32, "stop": ["Paris"]})
    assert stopped.done_reason == "stop" and "Paris" not in stopped.message.content and stopped.message.content.strip(), stopped
    # Greedy: top_k, top_p, no repeat penalty, a num_ctx within the model's and keep_alive change nothing.
    plain = chat(a, options={"num_predict": 32}).message.content
    for keep_alive in ("5m", 300):
        same = chat(a, options={"num_predict": 32, "top_k": 40, "top_p": 0.9, "repeat_penalty": 1.0, "num_ctx": 512}, keep_alive=keep_alive)
        assert same.message.content == plain, keep_alive
    assert "not_an_option" in refused(lambda: chat(a, options={"num_predict": 2, "not_an_option": 1}), 400)
    # Refused before anything streams, and on generate too.
    assert "not_an_option" in refused(lambda: list(chat(a, options={"num_predict": 2, "not_an_option": 1}, stream=True)), 400)
    assert "not_an_option" in refused(lambda: a.generate(model="smollm2", prompt="Hi", options={"not_an_option": 1}), 400)


def test_format_schema_and_json(a):
    answer = chat(a, options={"num_predict": 300}, format=CAPITAL)
    assert answer.done_reason == "stop", answer
    jsonschema.validate(json.loads(answer.message.content), CAPITAL)
    generated = a.generate(model="smollm2", prompt="Name a country and its capital.", format=CAPITAL, options={**GREEDY, "num_predict": 300})
    assert generated.done_reason == "stop", generated
    jsonschema.validate(json.loads(generated.response), CAPITAL)
    free = chat(a, [{"role": "user", "content": "Describe a cat in JSON."}], options={"num_predict": 200}, format="json")
    if free.done_reason == "stop":
        json.loads(free.message.content)
    else:
        assert free.message.content.lstrip().startswith(("{", "[")), free


def check_answer(response):
    """A tool call (SmolLM2 may or may not call under Ollama's only mode, auto) is to get_weather with valid
    arguments, as an object; otherwise the answer is text."""
    message = response.message
    assert response.done is True and message.role == "assistant", response
    if message.tool_calls:
        for call in message.tool_calls:
            assert call.function.name == "get_weather" and isinstance(call.function.arguments, Mapping), call
            jsonschema.validate(dict(call.function.arguments), ARGUMENTS)
    else:
        assert message.content and not message.content.startswith("<"), response


def calls(message):
    return [(c.function.name, dict(c.function.arguments)) for c in message.tool_calls or []]


def test_tools_as_schemas_and_python_functions(a):
    question = [{"role": "user", "content": "What is the weather like in Paris today?"}]
    for tools in ([WEATHER], [get_weather]):
        whole = chat(a, question, tools=tools, options={"num_predict": 100})
        check_answer(whole)
        parts = list(chat(a, question, tools=tools, options={"num_predict": 100}, stream=True))
        assert "".join(p.message.content or "" for p in parts) == (whole.message.content or "")
        assert [call for p in parts for call in calls(p.message)] == calls(whole.message)
    # A call round trip in Ollama's shape: arguments as an object, the tool's answer named by tool_name (no id).
    messages = SYSTEM + question + [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": json.dumps({"temperature": 22, "sky": "sunny"}), "tool_name": "get_weather"}]
    check_answer(a.chat(model="smollm2", messages=messages, tools=[WEATHER], options={**GREEDY, "num_predict": 60}))


def test_thinking_goes_to_message_thinking(served, a):
    srv, keys = served

    def completed(opening, max_tokens):
        """The model's raw text after the conversation rendered by hand, from /v1/completions."""
        prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in MESSAGES) + "<|im_start|>assistant\n" + opening
        body = {"model": "thinker", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        status, body = srv.request("POST", "/v1/completions", body, key=keys["a"])
        assert status == 200, body
        return json.loads(body)["choices"][0]["text"]

    raw = completed("<think>\n", 60)
    assert "</think>" in raw, f"the few-shot conversation should make the model close its thinking: {raw!r}"
    thinking, answer = raw.split("</think>", 1)
    arguments = dict(model="thinker", messages=MESSAGES, options={"num_predict": 60, "temperature": 0})
    on = a.chat(think=True, **arguments).message
    assert (on.thinking or "").strip() == thinking.strip() and on.content.strip() == answer.strip(), on
    parts = list(a.chat(think=True, stream=True, **arguments))
    assert "".join(p.message.thinking or "" for p in parts) == on.thinking
    assert "".join(p.message.content or "" for p in parts) == on.content
    generated = a.generate(model="thinker", prompt=MESSAGES[-1]["content"], think=True, options={"num_predict": 60, "temperature": 0})
    assert "<think>" not in generated.response and "</think>" not in generated.response, generated
    # think false renders the template with enable_thinking false: no thinking, the answer as the model gives it.
    off = a.chat(think=False, **{**arguments, "options": {"num_predict": 20, "temperature": 0}}).message
    assert not off.thinking and off.content.strip() == completed("<think>\n\n</think>\n\n", 20).strip(), off


def test_embed_and_legacy_embeddings(a):
    sentences = ["A man is eating food.", "A man is eating a piece of bread."]
    vectors = np.asarray(a.embed(model="minilm-embed", input=sentences).embeddings)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert abs(float(vectors[0] @ vectors[1]) - 0.755) < 0.01
    single = np.asarray(a.embed(model="minilm-embed", input=sentences[0]).embeddings)
    assert single.shape == (1, 384)
    np.testing.assert_allclose(single[0], vectors[0], atol=1e-5)
    legacy = np.asarray(a.embeddings(model="minilm-embed", prompt=sentences[0]).embedding)
    np.testing.assert_allclose(legacy, vectors[0], atol=1e-5)


def test_management_routes_point_to_the_yunmo_api(a):
    for name, call in {"pull": lambda: a.pull("smollm2"), "push": lambda: a.push("smollm2"),
                       "create": lambda: a.create(model="smollm2-copy", from_="smollm2"),
                       "copy": lambda: a.copy("smollm2", "smollm2-copy"), "delete": lambda: a.delete("smollm2")}.items():
        with pytest.raises(ollama.ResponseError) as raised:
            call()
        assert raised.value.status_code in (400, 501) and "/api/v1/models" in raised.value.error, (name, raised.value)
    assert {m.model for m in a.list().models} == A_MODELS


def test_every_route_needs_a_key(served):
    anonymous = client(served[0])
    for call in (anonymous.list, anonymous.ps, lambda: anonymous.show("smollm2"), lambda: chat(anonymous, options={"num_predict": 1}),
                 lambda: list(chat(anonymous, options={"num_predict": 1}, stream=True)),
                 lambda: anonymous.generate(model="smollm2", prompt="Hi", options={"num_predict": 1}),
                 lambda: anonymous.embed(model="minilm-embed", input="hi"), lambda: anonymous.embeddings(model="minilm-embed", prompt="hi")):
        refused(call, 401)


def test_tenant_b_neither_sees_nor_uses_a_models(served):
    srv, keys = served
    b = client(srv, keys["b"])
    assert not A_MODELS & {m.model for m in b.list().models}
    assert not A_MODELS & {m.model for m in b.ps().models}, "A's loaded models are not shown to B"
    for call in (lambda: chat(b, options={"num_predict": 1}), lambda: list(chat(b, options={"num_predict": 1}, stream=True)),
                 lambda: b.generate(model="smollm2", prompt="Hi", options={"num_predict": 1}), lambda: b.show("smollm2"),
                 lambda: b.embed(model="minilm-embed", input="hi"), lambda: b.embeddings(model="minilm-embed", prompt="hi")):
        assert "not found" in refused(call, 404)


def test_each_chat_is_metered_once(served):
    srv, _ = served
    key = make_key(srv, "a", ["infer"])
    metered = client(srv, key["key"])
    for _ in range(2):
        chat(metered, options={"num_predict": 4})
        assert list(chat(metered, options={"num_predict": 4}, stream=True))[-1].done is True
    assert settled_requests(srv, "a", key["id"], 4) == 4


def test_the_configured_ollama_key_serves_keyless_clients_on_ollama_routes_only():
    data_dir = tempfile.mkdtemp(prefix="yunmo-ollama-key-")
    srv = Server(data_dir, env=ENV)
    try:
        for tenant in ("a", "b"):
            status, body = srv.request("POST", "/api/v1/tenants", {"name": tenant}, key=ADMIN)
            assert status == 201, body
        push_as(srv, make_key(srv, "a", ["models:write", "models:read"])["key"], "smollm2", SMOLLM)
        bound = make_key(srv, "a", ["models:read", "infer"])
        other = make_key(srv, "b", ["models:read", "infer"])["key"]
    finally:
        assert srv.stop() == 0
    # The same data directory, served again with ollama.key set to A's key.
    srv = Server(data_dir, env={**ENV, "YUNMO__OLLAMA__KEY": bound["key"]})
    try:
        keyless = client(srv)
        chat(keyless, options={"num_predict": 4})
        assert list(chat(keyless, options={"num_predict": 4}, stream=True))[-1].done is True
        assert settled_requests(srv, "a", bound["id"], 2) == 2, "keyless requests are metered under the configured key"
        assert [m.model for m in keyless.list().models] == ["smollm2"]
        # A request that carries a key is that key's: B sees and uses nothing of A's; an unknown key is refused.
        b = client(srv, other)
        assert "smollm2" not in {m.model for m in b.list().models}
        assert "not found" in refused(lambda: chat(b, options={"num_predict": 1}), 404)
        refused(client(srv, "ym_unknown_" + "B" * 43).list, 401)
        # A browser's request (it sends Origin) is never bound: no web page may spend the key.
        status, raw = srv.request("GET", "/api/tags", headers={"Origin": "http://127.0.0.1:9"})
        assert status == 401, raw
        # Other routes still want a key.
        for method, path, body in (("GET", "/api/v1/models", None), ("GET", "/v1/models", None),
                                   ("POST", "/v1/chat/completions", {"model": "smollm2", "messages": QUESTION, "max_tokens": 1})):
            status, raw = srv.request(method, path, body)
            assert status == 401, (method, path, raw)
    finally:
        assert srv.stop() == 0
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_request_without_messages_or_prompt_loads_the_model(a):
    """What `ollama run` and UIs send to preload a model: answered at once, done_reason "load"; unloading
    belongs to Yunmo's management API."""
    for loaded in (a.chat(model="smollm2", messages=[]), a.generate(model="smollm2")):
        assert loaded.done is True and loaded.done_reason == "load", loaded
    assert "/api/v1/models/smollm2/unload" in refused(lambda: a.generate(model="smollm2", keep_alive=0), 400)
    assert "not found" in refused(lambda: a.chat(model="no-such-model", messages=[]), 404)
