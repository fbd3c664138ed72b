"""The `anthropic` Python SDK (2.10.0), unchanged, against Yunmo's Anthropic Messages API (POST /v1/messages and
/v1/messages/count_tokens) on a server with auth on and two tenants: SmolLM2-135M-Instruct (GGUF), and the same
weights under test_reasoning's `<think>` template for thinking blocks. Greedy messages, the SDK's stream helper
equal to whole messages and the raw events in Anthropic's order, max_tokens and stop sequences, forced tool calls
(checked with `jsonschema`) streamed and round trip through a tool_result, count_tokens equal to the message's
input tokens, thinking on and off, errors in Anthropic's shape, both ways of presenting a key, tenant isolation and
exact metering.

This SDK version has no `temperature`, `top_p` or `top_k` arguments: they go in `extra_body`. Its `api_key=` is sent
as `Authorization: Bearer`, like `auth_token=`; `x-api-key` is sent here as a default header."""
import json
import os
import re
import shutil
import tempfile

import anthropic
import jsonschema
import pytest
import test_reasoning  # its thinking template and few-shot conversation

from conftest import two_tenants, ADMIN, SMOLLM, Server, make_key, push_as, settled_requests

ENV = {"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__AUTH__USAGE_FLUSH_MS": "200",
       "YUNMO__BACKENDS__GGUF__THREADS": "2"}
# Not "What is the capital of France?": SmolLM2's greedy first token there is a near tie ("The" against "La" by 0.03
# to 0.35 logits) that any kernel's rounding flips; here "The ... Paris." leads by 1.6 (docs/llm.md, "Flash attention").
QUESTION = [{"role": "user", "content": "Name the capital of France."}]
# As in test_openai: with SmolLM2's default system prompt this small model rambles.
SYSTEM = "You are a helpful assistant."
GREEDY = {"temperature": 0}
THINKING, MESSAGES = test_reasoning.TEMPLATE, test_reasoning.MESSAGES
WEATHER = {"name": "get_weather", "description": "Get the current weather in a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 30},
                                     "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"], "additionalProperties": False}}
TIME = {"name": "get_time", "description": "Get the local time in a timezone", "input_schema": {
    "type": "object", "properties": {"timezone": {"type": "string", "minLength": 1, "maxLength": 40}, "hour24": {"type": "boolean"}},
    "required": ["timezone"], "additionalProperties": False}}
TOOLS = [WEATHER, TIME]
SCHEMAS = {tool["name"]: tool["input_schema"] for tool in TOOLS}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather like in Paris today?"}]
NAMED = {"type": "tool", "name": "get_weather"}
# A 1x1 PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
UNKNOWN_KEY = "ym_unknown_" + "B" * 43
# message_start, then per block its start, one or more deltas and its stop, then message_delta and message_stop.
RAW = {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
ORDER = r"message_start( content_block_start( content_block_delta)+ content_block_stop)+ message_delta message_stop"


@pytest.fixture(autouse=True)
def no_anthropic_environment(monkeypatch):
    # The SDK reads keys, tokens, profiles and a base URL from ANTHROPIC_*: the cases here send only what they say.
    for name in [name for name in os.environ if name.startswith("ANTHROPIC_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def served():
    if not os.path.exists(SMOLLM):
        raise RuntimeError(f"missing {SMOLLM}: run scripts/fetch-assets.sh smollm (scripts/test.sh does)")
    data_dir = tempfile.mkdtemp(prefix="yunmo-anthropic-")
    srv = Server(data_dir, env=ENV)
    keys = two_tenants(srv)
    push_as(srv, keys["a"], "smollm2", SMOLLM)
    push_as(srv, keys["a"], "thinker", SMOLLM, config={"chat_template": THINKING})
    yield srv, keys
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def client(srv, key=None, **kwargs):
    return anthropic.Anthropic(base_url=srv.url, api_key=key, max_retries=0, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def a(served):
    srv, keys = served
    return client(srv, keys["a"])


def arguments(question=QUESTION, model="smollm2", max_tokens=32, system=SYSTEM, extra_body=None, **kwargs):
    """A greedy request (temperature in extra_body: this SDK has no such argument) with the short system prompt."""
    return dict(model=model, max_tokens=max_tokens, system=system, messages=question, extra_body={**GREEDY, **(extra_body or {})}, **kwargs)


def ask(llm, *args, **kwargs):
    return llm.messages.create(**arguments(*args, **kwargs))


def streamed(llm, *args, **kwargs):
    """The SDK's stream helper: (the text from text_stream, the final message)."""
    with llm.messages.stream(**arguments(*args, **kwargs)) as stream:
        text = "".join(stream.text_stream)
        return text, stream.get_final_message()


def text(message):
    return "".join(block.text for block in message.content if block.type == "text")


def tool_uses(message):
    return [block for block in message.content if block.type == "tool_use"]


def check_order(events):
    """The raw events' names in Anthropic's order, each block's events under its own index, counted from 0."""
    names = [event.type for event in events]
    assert re.fullmatch(ORDER, " ".join(names)), names
    block = -1
    for event in events:
        if event.type == "content_block_start":
            block += 1
        if event.type.startswith("content_block_"):
            assert event.index == block, (block, event)


def refused(call, error, status, kind):
    """The message of the `error` that `call` raises, checked to have `status` and Anthropic's error body of `kind`."""
    with pytest.raises(error) as raised:
        call()
    body = raised.value.body
    assert raised.value.status_code == status and body["type"] == "error" and body["error"]["type"] == kind, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]["message"]


def prompt_tokens(usage):
    """The whole prompt: Anthropic's input_tokens leaves out the tokens read from the cache."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0)


def test_greedy_message_says_paris(a):
    message = ask(a, metadata={"user_id": "tester"})
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant", message
    assert message.model == "smollm2" and [block.type for block in message.content] == ["text"], message
    assert "Paris" in text(message) and message.stop_reason in ("end_turn", "max_tokens"), message
    assert message.stop_sequence is None and message.usage.input_tokens > 0 and message.usage.output_tokens > 0, message
    # Greedy: top_k and top_p change nothing; the system prompt as text blocks is the same prompt.
    assert text(ask(a, extra_body={"top_k": 40, "top_p": 0.9})) == text(message)
    blocks = ask(a, system=[{"type": "text", "text": SYSTEM}])
    assert text(blocks) == text(message) and prompt_tokens(blocks.usage) == prompt_tokens(message.usage)


def test_streams_equal_the_whole_message_in_anthropic_order(a):
    whole = ask(a)
    joined, final = streamed(a)
    assert joined == text(final) == text(whole) and "Paris" in joined
    assert [block.type for block in final.content] == ["text"] and final.id.startswith("msg_") and final.model == "smollm2"
    assert (final.stop_reason, final.stop_sequence) == (whole.stop_reason, whole.stop_sequence)
    assert (prompt_tokens(final.usage), final.usage.output_tokens) == (prompt_tokens(whole.usage), whole.usage.output_tokens)
    events = list(a.messages.create(stream=True, **arguments()))
    check_order(events)
    start, delta = events[0], events[-2]
    assert start.message.id.startswith("msg_") and start.message.role == "assistant" and start.message.content == [], start
    # message_start is sent before the prefix cache is consulted: it counts the whole prompt.
    assert start.message.usage.input_tokens == prompt_tokens(whole.usage), start
    assert events[1].content_block.type == "text" and all(e.delta.type == "text_delta" for e in events if e.type == "content_block_delta")
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == text(whole)
    assert (delta.delta.stop_reason, delta.usage.output_tokens) == (whole.stop_reason, whole.usage.output_tokens), delta


def test_max_tokens_and_stop_sequences(a):
    short = ask(a, max_tokens=3)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3, short
    stopped = ask(a, stop_sequences=["Paris"])
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "Paris"), stopped
    assert "Paris" not in text(stopped) and text(stopped).strip(), stopped
    joined, final = streamed(a, stop_sequences=["Paris"])
    assert joined == text(stopped) and (final.stop_reason, final.stop_sequence) == ("stop_sequence", "Paris"), final


def test_forced_tool_calls_validate_and_go_round_trip(a):
    for choice, allowed in ((NAMED, {"get_weather"}), ({"type": "any"}, set(SCHEMAS))):
        message = ask(a, WEATHER_QUESTION, max_tokens=120, tools=TOOLS, tool_choice=choice)
        assert message.stop_reason == "tool_use" and tool_uses(message), (choice, message)
        for call in tool_uses(message):
            assert call.id.startswith("toolu_") and call.name in allowed and isinstance(call.input, dict), call
            jsonschema.validate(call.input, SCHEMAS[call.name])
    named = ask(a, WEATHER_QUESTION, max_tokens=120, tools=TOOLS, tool_choice=NAMED)
    # The assistant's content as the SDK returned it, then a tool_result for each call.
    results = [{"type": "tool_result", "tool_use_id": call.id, "content": json.dumps({"temperature": 22, "sky": "sunny"})}
               for call in tool_uses(named)]
    history = WEATHER_QUESTION + [{"role": "assistant", "content": named.content}, {"role": "user", "content": results}]
    final = ask(a, history, max_tokens=60, tools=TOOLS, tool_choice={"type": "none"})
    assert not tool_uses(final) and text(final).strip() and final.stop_reason in ("end_turn", "max_tokens"), final


def test_a_streamed_tool_call_equals_the_whole_one(a):
    whole = tool_uses(ask(a, WEATHER_QUESTION, max_tokens=120, tools=TOOLS, tool_choice=NAMED))
    events, pieces = [], {}
    with a.messages.stream(**arguments(WEATHER_QUESTION, max_tokens=120, tools=TOOLS, tool_choice=NAMED)) as stream:
        for event in stream:
            if event.type in RAW:  # the helper's own events (text, input_json) come in between
                events.append(event)
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                pieces.setdefault(event.index, []).append(event.delta.partial_json)
        final = stream.get_final_message()
    check_order(events)
    starts = [e.content_block for e in events if e.type == "content_block_start" and e.content_block.type == "tool_use"]
    assert [(s.name, s.id[:6]) for s in starts] == [(call.name, "toolu_") for call in whole], starts
    assert [json.loads("".join(parts)) for _, parts in sorted(pieces.items())] == [call.input for call in whole]
    assert final.stop_reason == "tool_use" and [(c.name, c.input) for c in tool_uses(final)] == [(c.name, c.input) for c in whole]


def test_count_tokens_equals_the_message_input_tokens(a):
    def count(**kwargs):
        return a.messages.count_tokens(**{"model": "smollm2", "system": SYSTEM, "messages": QUESTION, **kwargs}).input_tokens

    plain, with_tools = count(), count(tools=TOOLS)
    assert plain == prompt_tokens(ask(a, max_tokens=1).usage) > 0
    assert with_tools == prompt_tokens(ask(a, max_tokens=1, tools=TOOLS).usage) > plain + 50, (plain, with_tools)
    # A string and the same text as blocks are the same prompt, in system, content and a tool_result.
    assert count(system=[{"type": "text", "text": SYSTEM}]) == plain
    assert count(messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION[0]["content"]}]}]) == plain
    call = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}

    def answered(content, **extra):
        result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": content, **extra}
        turns = [{"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]
        return count(tools=TOOLS, messages=WEATHER_QUESTION + turns)

    assert answered("22 degrees") == answered([{"type": "text", "text": "22 degrees"}]) > with_tools
    assert answered("no such city", is_error=True) > with_tools


def test_thinking_blocks_come_first_and_can_be_disabled(served, a):
    srv, keys = served
    system, conversation = MESSAGES[0]["content"], MESSAGES[1:]

    def completed(opening, max_tokens):
        """The model's raw text after the conversation rendered by hand, from /v1/completions."""
        prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in MESSAGES) + "<|im_start|>assistant\n" + opening
        body = {"model": "thinker", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        status, body = srv.request("POST", "/v1/completions", body, key=keys["a"])
        assert status == 200, body
        return json.loads(body)["choices"][0]["text"]

    # Anthropic wants max_tokens above budget_tokens (at least 1024); greedy SmolLM2 ends its answer long before.
    raw = completed("<think>\n", 1100)
    assert "</think>" in raw, f"the few-shot conversation should make the model close its thinking: {raw!r}"
    thinking, answer = raw.split("</think>", 1)
    on = dict(model="thinker", max_tokens=1100, system=system, messages=conversation, extra_body=GREEDY,
              thinking={"type": "enabled", "budget_tokens": 1024})
    whole = a.messages.create(**on)
    assert [block.type for block in whole.content] == ["thinking", "text"], whole
    assert whole.content[0].thinking.strip() == thinking.strip() and isinstance(whole.content[0].signature, str), whole
    assert text(whole).strip() == answer.strip() and "<think>" not in text(whole) and "</think>" not in text(whole), whole
    events = list(a.messages.create(stream=True, **on))
    check_order(events)
    assert [e.content_block.type for e in events if e.type == "content_block_start"] == ["thinking", "text"]
    deltas = [e.delta for e in events if e.type == "content_block_delta" and e.delta.type != "signature_delta"]
    kinds = [delta.type for delta in deltas]
    assert kinds == sorted(kinds, key=["thinking_delta", "text_delta"].index) and set(kinds) == {"thinking_delta", "text_delta"}, kinds
    assert "".join(d.thinking for d in deltas if d.type == "thinking_delta") == whole.content[0].thinking
    assert "".join(d.text for d in deltas if d.type == "text_delta") == text(whole)
    with a.messages.stream(**on) as stream:
        assert [b.type for b in stream.get_final_message().content] == ["thinking", "text"]
    # Disabled renders the template with enable_thinking false: no thinking block, the answer as the model gives it.
    off = a.messages.create(**{**on, "max_tokens": 20, "thinking": {"type": "disabled"}})
    assert [block.type for block in off.content] == ["text"], off
    assert text(off).strip() == completed("<think>\n\n</think>\n\n", 20).strip(), off


def test_errors_are_anthropic_shaped_and_name_the_field(served, a):
    srv, keys = served
    for stream in (False, True):
        unbounded = dict(model="smollm2", max_tokens=anthropic.omit, messages=QUESTION, stream=stream)  # the SDK then sends none
        assert "max_tokens" in refused(lambda: a.messages.create(**unbounded), anthropic.BadRequestError, 400, "invalid_request_error")
        image = [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                                              {"type": "text", "text": "What is in this picture?"}]}]
        assert "image" in refused(lambda: ask(a, image, stream=stream), anthropic.BadRequestError, 400, "invalid_request_error")
        assert "temperature" in refused(lambda: ask(a, extra_body={"temperature": 1.5}, stream=stream), anthropic.BadRequestError, 400,
                                        "invalid_request_error")
        refused(lambda: ask(a, model="no-such-model", stream=stream), anthropic.NotFoundError, 404, "not_found_error")
    refused(lambda: streamed(a, model="no-such-model"), anthropic.NotFoundError, 404, "not_found_error")
    refused(lambda: a.messages.count_tokens(model="no-such-model", messages=QUESTION), anthropic.NotFoundError, 404, "not_found_error")
    refused(lambda: ask(client(srv, UNKNOWN_KEY), max_tokens=1), anthropic.AuthenticationError, 401, "authentication_error")
    keyless = client(srv, default_headers={"Authorization": anthropic.Omit()})  # the SDK then sends no key at all
    refused(lambda: ask(keyless, max_tokens=1), anthropic.AuthenticationError, 401, "authentication_error")
    refused(lambda: keyless.messages.count_tokens(model="smollm2", messages=QUESTION), anthropic.AuthenticationError, 401,
            "authentication_error")
    reader = client(srv, make_key(srv, "a", ["models:read"])["key"])
    assert "infer" in refused(lambda: ask(reader, max_tokens=1), anthropic.PermissionDeniedError, 403, "permission_error")
    limited = client(srv, make_key(srv, "a", ["infer"], limits={"requests_per_second": 0.001, "requests_burst": 1})["key"])
    ask(limited, max_tokens=1)
    refused(lambda: ask(limited, max_tokens=1), anthropic.RateLimitError, 429, "rate_limit_error")


def test_x_api_key_and_bearer_both_present_a_key(served):
    srv, keys = served
    key = keys["a"]
    for llm in (client(srv, key), anthropic.Anthropic(base_url=srv.url, auth_token=key, max_retries=0, timeout=300),
                client(srv, default_headers={"x-api-key": key})):
        assert ask(llm, max_tokens=1).usage.output_tokens == 1
    # On the wire, without anthropic-version: x-api-key alone, and the whole body's shape.
    body = {"model": "smollm2", "max_tokens": 2, "messages": QUESTION, "system": SYSTEM, "temperature": 0}
    status, raw = srv.request("POST", "/v1/messages", body, headers={"x-api-key": key})
    assert status == 200, raw
    message = json.loads(raw)
    assert {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"} <= set(message), message
    assert message["type"] == "message" and message["stop_reason"] == "max_tokens" and message["stop_sequence"] is None, message
    assert message["usage"]["output_tokens"] == 2 and message["content"][0]["type"] == "text", message
    status, raw = srv.request("POST", "/v1/messages", body, headers={"x-api-key": UNKNOWN_KEY})
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error", raw
    status, raw = srv.request("POST", "/v1/messages", body)
    assert status == 401 and json.loads(raw)["type"] == "error", raw


def test_tenant_b_cannot_use_a_models(served):
    srv, keys = served
    b = client(srv, keys["b"])
    for call in (lambda: ask(b, max_tokens=1), lambda: ask(b, max_tokens=1, stream=True), lambda: streamed(b, max_tokens=1),
                 lambda: b.messages.count_tokens(model="smollm2", messages=QUESTION)):
        refused(call, anthropic.NotFoundError, 404, "not_found_error")


def test_each_message_is_metered_once(served):
    srv, _ = served
    key = make_key(srv, "a", ["infer"])
    metered = client(srv, key["key"])
    for _ in range(2):
        assert ask(metered, max_tokens=4).usage.output_tokens > 0
        assert streamed(metered, max_tokens=4)[1].stop_reason
    assert list(metered.messages.create(stream=True, **arguments(max_tokens=4)))[-1].type == "message_stop"
    assert settled_requests(srv, "a", key["id"], 5) == 5
