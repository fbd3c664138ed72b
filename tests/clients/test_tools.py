"""Tool calling (docs/llm.md) through the unchanged `openai` SDK on SmolLM2-135M, whose own template has no
tools: Yunmo offers them in a system message and a grammar makes every call valid (the "smollm2" version); and
with a template in the shape of Qwen 2.5's, which renders `tools` itself (the "qwenish" version). Calls under
`tool_choice` "required" or a named function always validate against the tool's schema (checked with
`jsonschema`), streamed calls equal whole ones, a call goes round trip through a `tool` message, and bad tool
requests are 400s naming the field."""
import concurrent.futures
import json

import jsonschema
import openai
import pydantic
import pytest

from conftest import smollm_server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 30},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the local time in a timezone",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string", "minLength": 1, "maxLength": 40},
                                                    "hour24": {"type": "boolean"}},
                   "required": ["timezone"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIME]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
QUESTIONS = ["What is the weather like in Paris today?", "What time is it in Tokyo?", "Should I take an umbrella in London?"]

# Qwen 2.5's chat template, cut to its tool parts (the version config's chat_template).
QWEN = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


@pytest.fixture(scope="module")
def server():
    yield from smollm_server("yunmo-tools-", [("smollm2", None), ("qwenish", {"chat_template": QWEN})],
                             env={"YUNMO__BACKENDS__GGUF__MAX_SEQUENCES": "8"})


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def named(name):
    return {"type": "function", "function": {"name": name}}


def check_calls(calls, allowed):
    assert calls, "no calls"
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_"), call
        assert call.function.name in allowed, call
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


@pytest.mark.parametrize("model", ["smollm2", "qwenish"])
def test_required_and_named_calls_always_validate(server, model):
    def ask(job):
        question, choice, seed = job
        response = client(server).chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], tools=TOOLS, tool_choice=choice,
            parallel_tool_calls=False, temperature=1.0, top_p=0.95, seed=seed, max_tokens=120)
        return choice, response.choices[0]

    choices = ["required", named("get_time"), named("get_weather")]
    jobs = [(QUESTIONS[seed % 3], choice, seed) for seed in range(6) for choice in choices]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, jobs))
    arguments = set()
    for choice, answer in answers:
        assert answer.finish_reason == "tool_calls", answer
        assert len(answer.message.tool_calls) == 1, "parallel_tool_calls false: one call"
        allowed = SCHEMAS if choice == "required" else [choice["function"]["name"]]
        check_calls(answer.message.tool_calls, allowed)
        arguments.add(answer.message.tool_calls[0].function.arguments)
    assert len(arguments) > 6, "sampling still varies the arguments within the schema"


def test_parallel_calls_are_bounded_and_valid(server):
    response = client(server).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is the weather in Paris, Oslo and Rome?"}],
        tools=TOOLS, tool_choice="required", temperature=0, max_tokens=400)
    answer = response.choices[0]
    assert answer.finish_reason == "tool_calls", answer
    assert 1 <= len(answer.message.tool_calls) <= 8
    check_calls(answer.message.tool_calls, SCHEMAS)


@pytest.mark.parametrize("model", ["smollm2", "qwenish"])
def test_streamed_calls_equal_the_whole_answer(server, model):
    arguments = dict(model=model, messages=[{"role": "user", "content": QUESTIONS[0]}], tools=TOOLS, tool_choice="required",
                     temperature=0.7, seed=3, max_tokens=300)
    whole = client(server).chat.completions.create(**arguments).choices[0]
    calls, reasons = {}, []
    for chunk in client(server).chat.completions.create(stream=True, **arguments):
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                calls.setdefault(delta.index, []).append(delta)
            reasons.append(choice.finish_reason)
    streamed = [(deltas[0].function.name, "".join(d.function.arguments for d in deltas)) for _, deltas in sorted(calls.items())]
    assert streamed == [(call.function.name, call.function.arguments) for call in whole.message.tool_calls]
    assert reasons[-1] == whole.finish_reason == "tool_calls"


class GetWeather(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=30)
    unit: str = pydantic.Field(pattern="^(celsius|fahrenheit)$")


def test_a_call_goes_round_trip(server):
    messages = [{"role": "user", "content": "What is the weather like in Paris today?"}]
    # The SDK's strict function tool from a Pydantic model; `parse` reads the arguments back into it.
    first = client(server).chat.completions.parse(
        model="smollm2", messages=messages, tools=[openai.pydantic_function_tool(GetWeather)], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=100)
    message = first.choices[0].message
    call = message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, GetWeather), call
    assert call.function.parsed_arguments.city == "Paris"
    # The assistant message as the SDK returned it, then the tool's answer.
    messages += [message, {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 22, "sky": "sunny"})}]
    final = client(server).chat.completions.create(model="smollm2", messages=messages, tools=[openai.pydantic_function_tool(GetWeather)],
                                                   tool_choice="none", temperature=0, max_tokens=60)
    answer = final.choices[0]
    assert answer.message.tool_calls is None and "22" in answer.message.content, answer
    # Under auto, a model whose template has no tools answers in text or with a valid call.
    auto = client(server).chat.completions.create(model="smollm2", messages=messages, tools=TOOLS, temperature=0, max_tokens=100)
    answer = auto.choices[0]
    if answer.finish_reason == "tool_calls":
        check_calls(answer.message.tool_calls, SCHEMAS)
    else:
        assert answer.message.content and not answer.message.content.startswith("<"), answer


def test_tools_reach_the_prompt(server):
    for model in ["smollm2", "qwenish"]:
        usage = {}
        for tools in ([], TOOLS):
            extra = {"tools": tools} if tools else {}
            usage[bool(tools)] = client(server).chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, **extra).usage.prompt_tokens
        assert usage[True] > usage[False] + 100, (model, usage)
        none = client(server).chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1,
                                                      tools=TOOLS, tool_choice="none")
        assert none.usage.prompt_tokens == usage[False], "tool_choice none: the tools are not shown"


def test_bad_tool_requests_are_400s_naming_the_field(server):
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": "}}
    cases = [
        (dict(tools=[{"type": "function", "function": {"name": "bad name"}}]), "tools[0].function.name"),
        (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]), "tools[0].function.parameters"),
        (dict(tools=TOOLS, tool_choice="sometimes"), "tool_choice must be none, auto, required or a function"),
        (dict(tools=TOOLS, tool_choice=named("get_stock")), "'get_stock', which is not in tools"),
        (dict(tool_choice="required"), "'required' needs tools"),
        (dict(tools=TOOLS, tool_choice="required", response_format={"type": "json_object"}), "response_format cannot be combined with tools"),
        (dict(messages=[{"role": "assistant", "content": None, "tool_calls": [call]}]), "messages[0].tool_calls[0].function.arguments"),
        (dict(messages=[{"role": "tool", "content": "22"}]), "messages[0].tool_call_id is required"),
    ]
    for extra, expected in cases:
        arguments = dict(model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
        arguments.update(extra)
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as raised:
                client(server).chat.completions.create(stream=stream, **arguments)
            assert expected in raised.value.body["message"], (extra, raised.value.body)
