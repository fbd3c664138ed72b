"""Structured outputs (docs/llm.md) through the unchanged `openai` SDK on SmolLM2-135M: `response_format` with
JSON schemas is enforced while sampling, so every answer parses and validates (checked with `jsonschema`),
streamed or not, on chat and on completions; `client.chat.completions.parse` with a Pydantic model works;
schemas with features that cannot be enforced get a 400 naming them."""
import concurrent.futures
import json

import jsonschema
import openai
import pydantic
import pytest

from conftest import smollm_server

# Every string and array is bounded, so that a complete answer always fits max_tokens.
PERSON = {
    "type": "object",
    "properties": {
        "person": {
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 30},
                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 1, "maxItems": 3},
    },
    "required": ["person", "hobbies"],
    "additionalProperties": False,
}
SENTIMENT = {
    "type": "object",
    "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]},
                   "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["sentiment", "confidence"],
    "additionalProperties": False,
}
BASKET = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "maxItems": 4, "items": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 16},
                           "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
                           "fresh": {"type": "boolean"}},
            "required": ["name", "price", "fresh"],
            "additionalProperties": False}},
        "currency": {"const": "EUR"},
    },
    "required": ["items", "currency"],
    "additionalProperties": False,
}
CASES = [
    ("person", PERSON, "Invent a person and their hobbies."),
    ("sentiment", SENTIMENT, "How does this review feel: 'The soup was cold and the waiter rude.'"),
    ("basket", BASKET, "List what is in a shopping basket at a market."),
]


@pytest.fixture(scope="module")
def server():
    yield from smollm_server("yunmo-structured-", [("smollm2", None)], env={"YUNMO__BACKENDS__GGUF__MAX_SEQUENCES": "8"})


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def json_schema_format(name, schema):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def test_sampled_answers_always_validate_against_their_schema(server):
    def ask(job):
        (name, schema, question), seed = job
        response = client(server).chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": question}], temperature=1.0, top_p=0.95, seed=seed,
            max_tokens=300, response_format=json_schema_format(name, schema))
        return schema, response.choices[0]

    # 51 answers: 17 sampled per schema, eight at a time.
    jobs = [(case, seed) for seed in range(17) for case in CASES]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, jobs))
    distinct = set()
    for schema, choice in answers:
        assert choice.finish_reason == "stop", choice
        value = json.loads(choice.message.content)
        jsonschema.validate(value, schema)
        distinct.add(choice.message.content)
    assert len(distinct) > 20, "sampling still varies the answers within the schema"


def test_streamed_answers_validate_and_equal_the_whole_answer(server):
    for name, schema, question in CASES:
        arguments = dict(model="smollm2", messages=[{"role": "user", "content": question}], temperature=0.8, seed=7,
                         max_tokens=300, response_format=json_schema_format(name, schema))
        whole = client(server).chat.completions.create(**arguments).choices[0].message.content
        pieces = [chunk.choices[0].delta.content or "" for chunk in client(server).chat.completions.create(stream=True, **arguments)
                  if chunk.choices]
        assert "".join(pieces) == whole
        jsonschema.validate(json.loads(whole), schema)


def test_json_object_and_completions(server):
    answer = client(server).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Describe a cat in JSON."}], temperature=0, max_tokens=200,
        response_format={"type": "json_object"})
    choice = answer.choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    else:
        assert choice.message.content.startswith("{")
    completion = client(server).completions.create(
        model="smollm2", prompt="<|im_start|>user\nRate this film from 1 to 5.<|im_end|>\n<|im_start|>assistant\n", max_tokens=50,
        temperature=0, extra_body={"response_format": json_schema_format("rating", {
            "type": "object", "properties": {"stars": {"type": "integer", "minimum": 1, "maximum": 5}},
            "required": ["stars"], "additionalProperties": False})})
    assert 1 <= json.loads(completion.choices[0].text)["stars"] <= 5


class Event(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    day: str = pydantic.Field(max_length=20)
    participants: list[str] = pydantic.Field(max_length=4)


def test_the_sdk_parse_helper_returns_the_pydantic_object(server):
    completion = client(server).chat.completions.parse(
        model="smollm2", temperature=0, max_tokens=300, response_format=Event,
        messages=[{"role": "system", "content": "Extract the event information."},
                  {"role": "user", "content": "Alice and Bob are going to a science fair on Friday."}])
    event = completion.choices[0].message.parsed
    assert isinstance(event, Event), completion
    assert len(event.participants) <= 4


def test_unsupported_schemas_and_bad_formats_are_400s_naming_the_problem(server):
    bad = [
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "if": {"required": ["a"]}}}}, '"if"'),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "not": {"required": ["a"]}}}}, '"not"'),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"oneOf": [{"type": "integer"}, {"type": "number"}]}}}, "oneOf"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}}, "missing"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}}, "response_format.json_schema.schema"),
        ({"type": "yaml"}, "response_format.type"),
    ]
    for response_format, named in bad:
        with pytest.raises(openai.BadRequestError) as raised:
            client(server).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=5,
                                                   response_format=response_format)
        message = raised.value.body["message"]
        assert named in message and message.startswith("response_format"), (response_format, raised.value.body)
        # Refused before anything streams, too.
        with pytest.raises(openai.BadRequestError):
            list(client(server).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=5,
                                                        stream=True, response_format=response_format))
