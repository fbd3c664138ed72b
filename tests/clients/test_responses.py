"""The `openai` Python SDK (3.54.0), unchanged, against Yunmo's OpenAI Responses API (POST /v1/responses, GET and
DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items) on a server with auth on and two tenants:
SmolLM2-135M-Instruct (GGUF), and the same weights under test_reasoning's `<think>` template for reasoning items.
Greedy responses stored and retrieved as they were returned, the stream's named events in the Responses order with
sequence numbers 0, 1, 2, ... (raw and through the SDK's `responses.stream` helper) equal to the whole response,
`max_output_tokens` cutting to `incomplete`, `previous_response_id` continuing the stored conversation and
`input_items` listing it (both orders, pages), forced function calls (checked with `jsonschema`) streamed and round
trip through a `function_call_output`, `text.format` JSON schemas, `store: false` and deletion, errors in OpenAI's
shape naming the field, tenant isolation of models and stored responses, exact metering of creates only, and
`[responses] retention_s` (expiry, and 0 storing nothing) on servers of their own."""
import contextlib
import json
import os
import re
import shutil
import tempfile
import time

import jsonschema
import openai
import pydantic
import pytest
import test_reasoning  # its thinking template and few-shot conversation

from conftest import two_tenants, ADMIN, SMOLLM, Server, make_key, push_as, settled_requests, smollm_server

ENV = {"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__AUTH__USAGE_FLUSH_MS": "200",
       "YUNMO__BACKENDS__GGUF__THREADS": "2"}
# Not "What is the capital of France?": SmolLM2's greedy first token there is a near tie ("The" against "La" by 0.03
# to 0.35 logits) that any kernel's rounding flips; here "The ... Paris." leads by 1.6 (docs/llm.md, "Flash attention").
QUESTION = "Name the capital of France."
# As in test_openai: with SmolLM2's default system prompt this small model rambles.
SYSTEM = "You are a helpful assistant."
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 30},
                                                           "unit": {"enum": ["celsius", "fahrenheit"]}},
                          "required": ["city", "unit"], "additionalProperties": False}}
WEATHER_QUESTION = "What is the weather like in Paris today?"
NAMED = {"type": "function", "name": "get_weather"}
CITY = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 20}}, "required": ["city"],
        "additionalProperties": False}
CITY_QUESTION = "Which city is the capital of France? Answer in JSON."
# A 1x1 PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
UNKNOWN_KEY = "ym_unknown_" + "B" * 43
ERROR_FIELDS = {"message", "type", "param", "code"}
# The events of one output item (names less `response.`): a message or reasoning item with its content part and text
# deltas, or a function call with its arguments.
MESSAGE = r"output_item\.added content_part\.added( output_text\.delta)+ output_text\.done content_part\.done output_item\.done"
REASONING = MESSAGE.replace("output_text", "reasoning_text")
CALL = r"output_item\.added function_call_arguments\.delta function_call_arguments\.done output_item\.done"
ANY_ITEM = f"(?:{MESSAGE}|{REASONING}|{CALL})"


class City(pydantic.BaseModel):
    city: str = pydantic.Field(min_length=1, max_length=20)


@pytest.fixture(autouse=True)
def no_openai_environment(monkeypatch):
    # The SDK reads keys, organizations and a base URL from OPENAI_*: the cases here send only what they say.
    for name in [name for name in os.environ if name.startswith("OPENAI_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def served():
    if not os.path.exists(SMOLLM):
        raise RuntimeError(f"missing {SMOLLM}: run scripts/fetch-assets.sh smollm (scripts/test.sh does)")
    data_dir = tempfile.mkdtemp(prefix="yunmo-responses-")
    srv = Server(data_dir, env=ENV)
    keys = two_tenants(srv)
    push_as(srv, keys["a"], "smollm2", SMOLLM)
    push_as(srv, keys["a"], "thinker", SMOLLM, config={"chat_template": test_reasoning.TEMPLATE})
    yield srv, keys
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def client(srv, key):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def llm(served):
    srv, keys = served
    return client(srv, keys["a"])


def arguments(question=QUESTION, model="smollm2", max_output_tokens=32, instructions=SYSTEM, **kwargs):
    """A greedy request with the short instructions."""
    return dict(model=model, input=question, instructions=instructions, max_output_tokens=max_output_tokens, temperature=0, **kwargs)


def ask(llm, **kwargs):
    return llm.responses.create(**arguments(**kwargs))


def streamed(llm, **kwargs):
    """The raw stream's events."""
    return list(llm.responses.create(stream=True, **arguments(**kwargs)))


def calls(response):
    return [item for item in response.output if item.type == "function_call"]


def joined(events, kind):
    """The concatenated deltas of the events of `kind` (`output_text`, `reasoning_text`, `function_call_arguments`)."""
    return "".join(event.delta for event in events if event.type == f"response.{kind}.delta")


def check_events(events, items=ANY_ITEM, end="completed"):
    """The events in the Responses order (lifecycle events around `items`), numbered 0, 1, 2, ..., each item's events
    under its own index and id; the final response (the last event's), whose output is the items as they were done."""
    names = " ".join(event.type.removeprefix("response.") for event in events)
    assert re.fullmatch(rf"created in_progress(?: {items})+ {end}", names), names
    assert [event.sequence_number for event in events] == list(range(len(events))), [e.sequence_number for e in events]
    created, final = events[0].response, events[-1].response
    assert created.id == final.id and created.id.startswith("resp_") and created.status == "in_progress", created
    assert created.output == [] and created.usage is None and events[1].response.id == created.id, events[1]
    index, item_id, done = -1, None, []
    for event in events[2:-1]:
        if event.type == "response.output_item.added":
            index, item_id = index + 1, event.item.id
            assert event.item.status == "in_progress", event
        assert event.output_index == index and getattr(event, "item_id", item_id) == item_id, (index, item_id, event)
        if event.type == "response.output_item.done":
            assert event.item.id == item_id and event.item.status in ("completed", "incomplete"), event
            done.append(event.item.to_dict())
    assert [item.to_dict() for item in final.output] == done, final
    return final


def refused(call, error, status):
    """The message of the `error` that `call` raises, checked to have `status` and OpenAI's error body."""
    with pytest.raises(error) as raised:
        call()
    body = raised.value.body
    assert raised.value.status_code == status and set(body) == ERROR_FIELDS, body
    assert isinstance(body["message"], str) and body["message"], body
    return body["message"]


def test_a_greedy_response_is_stored_as_returned(llm):
    response = ask(llm, metadata={"purpose": "test"}, user="tester")
    assert response.id.startswith("resp_") and response.object == "response" and response.model == "smollm2", response
    assert response.store is True and response.metadata == {"purpose": "test"} and response.instructions == SYSTEM, response
    assert (response.temperature, response.max_output_tokens, response.tool_choice) == (0, 32, "auto"), response
    assert response.text.format.type == "text" and response.previous_response_id is None and response.error is None, response
    # As test_openai's greedy chat: the answer ends well within 32 tokens.
    assert response.status == "completed" and response.incomplete_details is None, response
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_"), message
    assert message.status == "completed" and [part.type for part in message.content] == ["output_text"], message
    assert "Paris" in response.output_text, response
    usage = response.usage
    assert usage.input_tokens > 0 and 0 < usage.output_tokens < 32, usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens and usage.output_tokens_details.reasoning_tokens == 0, usage
    assert llm.responses.retrieve(response.id).to_dict() == response.to_dict()
    # Greedy: the same request answers the same, under a new id.
    again = ask(llm, store=False)
    assert again.output_text == response.output_text and again.id != response.id and again.store is False, again
    assert (again.usage.input_tokens, again.usage.output_tokens) == (usage.input_tokens, usage.output_tokens), again


def test_streams_equal_the_whole_response_in_order(served, llm):
    srv, keys = served
    whole = ask(llm, store=False)
    events = streamed(llm)
    final = check_events(events, MESSAGE, "completed")
    [done] = [event for event in events if event.type == "response.output_text.done"]
    assert joined(events, "output_text") == done.text == final.output_text == whole.output_text and "Paris" in done.text
    assert final.status == "completed" and final.store is True and len(final.output) == 1, final
    assert (final.usage.input_tokens, final.usage.output_tokens) == (whole.usage.input_tokens, whole.usage.output_tokens)
    # Stored before response.completed was sent.
    assert llm.responses.retrieve(final.id).to_dict() == final.to_dict()
    # The SDK's helper accumulates the same response.
    with llm.responses.stream(**arguments()) as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        helped = stream.get_final_response()
    assert text == helped.output_text == whole.output_text and helped.status == "completed" and helped.id != final.id
    # On the wire: each SSE event named as its data's type, and no [DONE].
    body = {"model": "smollm2", "input": QUESTION, "instructions": SYSTEM, "max_output_tokens": 32, "temperature": 0, "stream": True}
    status, raw = srv.request("POST", "/v1/responses", body, key=keys["a"])
    text = raw.decode()
    names, data = re.findall(r"^event: (.+)$", text, re.M), [json.loads(d) for d in re.findall(r"^data: (.+)$", text, re.M)]
    assert status == 200 and "[DONE]" not in text and names == [d["type"] for d in data] and names[-1] == "response.completed", text
    assert data[-1]["response"]["output"][0]["content"][0]["text"] == whole.output_text


def test_max_output_tokens_cuts_the_response_to_incomplete(llm):
    short = ask(llm, max_output_tokens=3)
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens", short
    assert short.usage.output_tokens == 3 and short.output[0].status == "incomplete" and short.output_text, short
    events = streamed(llm, max_output_tokens=3)
    final = check_events(events, MESSAGE, "incomplete")
    assert (final.status, final.incomplete_details.reason, final.output_text) == ("incomplete", "max_output_tokens", short.output_text)
    assert final.usage.output_tokens == 3 and joined(events, "output_text") == short.output_text, final
    assert llm.responses.retrieve(final.id).status == "incomplete"


def test_previous_response_id_continues_the_stored_conversation(llm):
    first = ask(llm, max_output_tokens=16)
    second = ask(llm, question="And of Italy?", previous_response_id=first.id, max_output_tokens=16)
    assert second.previous_response_id == first.id and second.output_text, second
    # The second prompt holds the first's, its answer and the new question.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens, (first.usage, second.usage)
    [question] = llm.responses.input_items.list(first.id).data
    desc = llm.responses.input_items.list(second.id).data
    assert [(item.type, item.role) for item in desc] == [("message", "user"), ("message", "assistant"), ("message", "user")], desc
    assert [item.id for item in desc[1:]] == [first.output[0].id, question.id], desc
    assert [item.content[0].text for item in desc] == ["And of Italy?", first.output_text, QUESTION], desc
    asc = llm.responses.input_items.list(second.id, order="asc").data
    assert [item.id for item in asc] == [item.id for item in reversed(desc)]
    page = llm.responses.input_items.list(second.id, limit=1)
    assert [item.id for item in page.data] == [desc[0].id] and page.has_more is True, page
    page = llm.responses.input_items.list(second.id, limit=2, after=desc[0].id)
    assert [item.id for item in page.data] == [desc[1].id, desc[2].id] and page.has_more is False, page
    # The SDK pages on by itself with `after`.
    assert [item.id for item in llm.responses.input_items.list(second.id, limit=1)] == [item.id for item in desc]
    unknown = "resp_" + "0" * 32
    message = refused(lambda: ask(llm, previous_response_id=unknown, max_output_tokens=2), openai.NotFoundError, 404)
    assert message.startswith("previous_response_id:") and unknown in message, message


def test_forced_function_calls_validate_and_go_round_trip(llm):
    for choice in ("required", NAMED):
        response = ask(llm, question=WEATHER_QUESTION, max_output_tokens=120, tools=[WEATHER], tool_choice=choice,
                       parallel_tool_calls=False)
        assert response.status == "completed" and len(calls(response)) == 1, (choice, response)
        [call] = calls(response)
        assert call.name == "get_weather" and call.id.startswith("fc_") and call.call_id.startswith("call_"), call
        assert call.status == "completed" and call.call_id != call.id, call
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    result = {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temperature": 22, "sky": "sunny"})}
    final = ask(llm, question=[result], previous_response_id=response.id, max_output_tokens=40, tools=[WEATHER], tool_choice="none")
    assert not calls(final) and final.output_text.strip() and final.status in ("completed", "incomplete"), final
    items = llm.responses.input_items.list(final.id, order="asc").data
    assert [item.type for item in items] == ["message"] + [item.type for item in response.output] + ["function_call_output"], items
    assert items[-1].call_id == call.call_id and [item.id for item in items if item.type == "function_call"] == [call.id], items


def test_a_streamed_function_call_equals_the_whole_one(llm):
    kwargs = dict(question=WEATHER_QUESTION, max_output_tokens=120, tools=[WEATHER], tool_choice=NAMED, parallel_tool_calls=False)
    whole = ask(llm, store=False, **kwargs)
    events = streamed(llm, **kwargs)
    final = check_events(events)
    assert final.status == "completed" and [item.type for item in final.output] == [item.type for item in whole.output], final
    done = [event.arguments for event in events if event.type == "response.function_call_arguments.done"]
    assert done == [call.arguments for call in calls(whole)] == [call.arguments for call in calls(final)], (done, whole, final)
    assert done == [joined(events, "function_call_arguments")], events
    assert [call.name for call in calls(final)] == ["get_weather"], final
    with llm.responses.stream(**arguments(**kwargs)) as stream:
        helped = stream.get_final_response()
    # A strict function tool's arguments come back parsed.
    assert [call.parsed_arguments for call in calls(helped)] == [json.loads(call.arguments) for call in calls(whole)], helped


def test_json_schema_text_format_validates(llm):
    schema = {"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}}
    response = ask(llm, question=CITY_QUESTION, max_output_tokens=64, text=schema)
    assert response.status == "completed" and response.text.format.type == "json_schema", response
    jsonschema.validate(json.loads(response.output_text), CITY)
    events = streamed(llm, question=CITY_QUESTION, max_output_tokens=64, text=schema)
    assert check_events(events, MESSAGE).output_text == joined(events, "output_text") == response.output_text
    # The SDK's parse helper sends a Pydantic model's schema as text.format and reads the answer back into it.
    parsed = llm.responses.parse(**arguments(question=CITY_QUESTION, max_output_tokens=64), text_format=City)
    assert isinstance(parsed.output_parsed, City), parsed
    loose = ask(llm, question="Describe Paris in JSON.", max_output_tokens=24, text={"format": {"type": "json_object"}})
    assert loose.output_text.lstrip().startswith("{"), loose


def test_unstored_and_deleted_responses_are_gone(llm):
    unstored = ask(llm, max_output_tokens=4, store=False)
    streamed_unstored = streamed(llm, max_output_tokens=4, store=False)[-1].response
    stored = ask(llm, max_output_tokens=4)
    assert (unstored.store, streamed_unstored.store, stored.store) == (False, False, True)
    assert llm.responses.retrieve(stored.id).id == stored.id
    assert llm.responses.delete(stored.id) is None
    for gone in (unstored.id, streamed_unstored.id, stored.id):
        refused(lambda: llm.responses.retrieve(gone), openai.NotFoundError, 404)
        refused(lambda: llm.responses.delete(gone), openai.NotFoundError, 404)
        refused(lambda: llm.responses.input_items.list(gone), openai.NotFoundError, 404)
        message = refused(lambda: ask(llm, max_output_tokens=2, previous_response_id=gone), openai.NotFoundError, 404)
        assert message.startswith("previous_response_id:"), message


def test_errors_are_openai_shaped_and_name_the_field(served, llm):
    srv, keys = served
    image = [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64," + PNG, "detail": "auto"},
                                          {"type": "input_text", "text": "What is in this picture?"}]}]
    cases = [
        (dict(background=True), "background"),
        (dict(truncation="auto"), "truncation"),
        (dict(top_logprobs=2), "top_logprobs"),
        (dict(max_output_tokens=0), "max_output_tokens"),
        (dict(question=image), "input[0].content[0]: part type 'input_image'"),
        (dict(question=[{"type": "item_reference", "id": "msg_1"}]), "input[0]: item references"),
        (dict(tools=[{"type": "web_search"}]), "tools[0].type: 'web_search'"),
        (dict(tools=[WEATHER], tool_choice="sometimes"), "tool_choice"),
        (dict(text={"format": {"type": "xml"}}), "text.format.type"),
        (dict(reasoning={"effort": "extreme"}), "reasoning.effort"),
        (dict(metadata={"count": 1}), "metadata.count"),
        (dict(extra_body={"frobnicate": 1}), "frobnicate"),
    ]
    for extra, named in cases:
        for stream in (False, True):
            message = refused(lambda: list(llm.responses.create(stream=True, **arguments(**extra))) if stream else ask(llm, **extra),
                              openai.BadRequestError, 400)
            assert named in message, (extra, stream, message)
    refused(lambda: ask(llm, model="no-such-model", max_output_tokens=2), openai.NotFoundError, 404)
    mine = ask(llm, max_output_tokens=2)
    for query, named in ((dict(limit=0), "limit"), (dict(limit=101), "limit"), (dict(order="sideways"), "order"),
                         (dict(after="msg_nope"), "after")):
        assert named in refused(lambda: llm.responses.input_items.list(mine.id, **query), openai.BadRequestError, 400), query
    stranger = client(srv, UNKNOWN_KEY)
    for call in (lambda: ask(stranger, max_output_tokens=2), lambda: stranger.responses.retrieve(mine.id)):
        refused(call, openai.AuthenticationError, 401)
    # No key at all, on every route.
    for method, path, body in (("POST", "/v1/responses", {"model": "smollm2", "input": "Hi"}), ("GET", f"/v1/responses/{mine.id}", None),
                               ("DELETE", f"/v1/responses/{mine.id}", None), ("GET", f"/v1/responses/{mine.id}/input_items", None)):
        status, raw = srv.request(method, path, body)
        error = json.loads(raw)["error"]
        assert status == 401 and error["type"] == "authentication_error" and set(error) == ERROR_FIELDS, (method, path, raw)
    assert llm.responses.retrieve(mine.id).id == mine.id


def test_tenant_b_cannot_use_a_models_or_see_a_responses(served, llm):
    srv, keys = served
    b = client(srv, keys["b"])
    mine = ask(llm, max_output_tokens=2)
    refused(lambda: ask(b, max_output_tokens=2), openai.NotFoundError, 404)
    refused(lambda: streamed(b, max_output_tokens=2), openai.NotFoundError, 404)
    for call in (lambda: b.responses.retrieve(mine.id), lambda: b.responses.delete(mine.id), lambda: b.responses.input_items.list(mine.id)):
        refused(call, openai.NotFoundError, 404)
    message = refused(lambda: ask(b, max_output_tokens=2, previous_response_id=mine.id), openai.NotFoundError, 404)
    assert message.startswith("previous_response_id:"), message
    assert llm.responses.retrieve(mine.id).to_dict() == mine.to_dict(), "b's delete left a's response alone"


def test_each_create_is_metered_once_and_reads_are_not(served):
    srv, _ = served
    key = make_key(srv, "a", ["infer"])
    metered = client(srv, key["key"])
    first = ask(metered, max_output_tokens=4)
    assert first.usage.output_tokens > 0
    assert streamed(metered, max_output_tokens=4)[-1].type == "response.incomplete"
    with metered.responses.stream(**arguments(max_output_tokens=4)) as stream:
        stream.until_done()
    ask(metered, max_output_tokens=4, previous_response_id=first.id, question="And of Italy?")
    refused(lambda: ask(metered, background=True), openai.BadRequestError, 400)
    # Reading and deleting stored responses is not inference.
    assert metered.responses.retrieve(first.id).id == first.id
    assert len(metered.responses.input_items.list(first.id).data) == 1
    metered.responses.delete(first.id)
    refused(lambda: metered.responses.retrieve(first.id), openai.NotFoundError, 404)
    assert settled_requests(srv, "a", key["id"], 5) == 5


def test_thinking_is_a_reasoning_item_before_the_message(llm):
    system, conversation = test_reasoning.MESSAGES[0]["content"], test_reasoning.MESSAGES[1:]
    raw = llm.completions.create(model="thinker", prompt=test_reasoning.render(test_reasoning.MESSAGES), max_tokens=60,
                                 temperature=0).choices[0].text
    assert "</think>" in raw, f"the few-shot conversation should make the model close its thinking: {raw!r}"
    thinking, answer = raw.split("</think>", 1)
    kwargs = dict(model="thinker", instructions=system, question=conversation, max_output_tokens=60)
    whole = ask(llm, **kwargs)
    assert [item.type for item in whole.output] == ["reasoning", "message"], whole
    reasoning = whole.output[0]
    assert reasoning.id.startswith("rs_") and [part.text for part in reasoning.content] == [thinking], reasoning
    assert whole.output_text == answer.lstrip() and "<think>" not in whole.output_text, whole
    events = streamed(llm, **kwargs)
    final = check_events(events, end="(?:completed|incomplete)")
    assert [item.type for item in final.output] == ["reasoning", "message"], final
    assert (joined(events, "reasoning_text"), joined(events, "output_text")) == (thinking, whole.output_text)
    # Effort none renders the template with enable_thinking false: no reasoning item.
    off = ask(llm, reasoning={"effort": "none"}, **{**kwargs, "max_output_tokens": 20})
    assert [item.type for item in off.output] == ["message"] and off.output_text, off


@contextlib.contextmanager
def retaining(seconds):
    """A client of a server of its own (auth off) that keeps responses `seconds`."""
    servers = smollm_server(f"yunmo-responses-{seconds}s-", [("smollm2", None)], env={"YUNMO__RESPONSES__RETENTION_S": str(seconds)})
    srv = next(servers)
    try:
        yield client(srv, "unused")
    finally:
        next(servers, None)  # stops it


def test_retention_expires_responses_and_zero_stores_none():
    with retaining(2) as kept:
        response = ask(kept, max_output_tokens=2)
        assert response.store is True and kept.responses.retrieve(response.id).to_dict() == response.to_dict()
        time.sleep(2.5)
        refused(lambda: kept.responses.retrieve(response.id), openai.NotFoundError, 404)
        refused(lambda: kept.responses.input_items.list(response.id), openai.NotFoundError, 404)
        message = refused(lambda: ask(kept, max_output_tokens=2, previous_response_id=response.id), openai.NotFoundError, 404)
        assert message.startswith("previous_response_id:"), message
    with retaining(0) as unkept:
        whole = ask(unkept, max_output_tokens=2)
        final = streamed(unkept, max_output_tokens=2)[-1].response
        assert (whole.store, final.store) == (False, False), (whole, final)
        for response in (whole, final):
            refused(lambda: unkept.responses.retrieve(response.id), openai.NotFoundError, 404)
