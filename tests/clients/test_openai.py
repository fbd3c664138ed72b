"""The `openai` Python SDK, unchanged, against the real server: SmolLM2-135M-Instruct (GGUF) for chat and
completions, all-MiniLM-L6-v2 (ONNX + tokenizer.json) for embeddings."""
import base64
import concurrent.futures
import json
import os
import threading
import time

import numpy as np
import openai
import pytest

from conftest import CACHE

SMOLLM = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")
TOKENIZER = os.path.join(CACHE, "models", "minilm-tokenizer.json")
# Not "What is the capital of France?": SmolLM2's greedy first token there is a near tie ("The" against "La" by 0.03
# to 0.35 logits) that any kernel's rounding flips; here "The ... Paris." leads by 1.6 (docs/llm.md, "Flash attention").
QUESTION = [{"role": "user", "content": "Name the capital of France."}]
# SmolLM2's own template adds a default system prompt when none is given; with it this small model
# rambles, so the chat tests pass a short system prompt (as most clients do).
SYSTEM = [{"role": "system", "content": "You are a helpful assistant."}]


@pytest.fixture(scope="module")
def llm(server):
    for path in (SMOLLM, TOKENIZER):
        if not os.path.exists(path):
            raise RuntimeError(f"missing {path}: run scripts/fetch-assets.sh smollm minilm (scripts/test.sh does)")
    server.push_file("smollm2", SMOLLM)
    # The same weights under a second name with its own template: two engines loaded at once.
    server.push_file("smollm2-plain", SMOLLM, config={"chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"})
    with open(TOKENIZER, "rb") as f:
        tokenizer = f.read()
    server.push("minilm-embed", "minilm.onnx", config={"embedding": {"pooling": "mean", "normalize": True, "max_tokens": 256}})
    status, body = server.request("PUT", "/api/v1/models/minilm-embed/versions/1/tokenizer", tokenizer, {"Content-Type": "application/json"})
    assert status == 200, body
    return server


@pytest.fixture(scope="module")
def client(llm):
    return openai.OpenAI(base_url=llm.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def chat(client, question=QUESTION, **kwargs):
    return client.chat.completions.create(model="smollm2", messages=SYSTEM + question, temperature=0, seed=1, **kwargs)


def test_models_lists_the_llm(client):
    ids = [model.id for model in client.models.list().data]
    assert "smollm2" in ids and "minilm-embed" in ids


def test_greedy_chat_says_paris(client):
    response = chat(client, max_tokens=32)
    assert "Paris" in response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.object == "chat.completion"


def test_a_streamed_generation_logs_its_end_under_the_request_id(client, llm):
    # The stream outlives the handler (hyper polls the body after it returned): the generation's last log
    # line must still carry the request's id.
    stream = chat(client, max_tokens=8, stream=True, extra_headers={"x-request-id": "trace-stream-end"})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    deadline = time.time() + 10
    while True:
        with open(os.path.join(llm.data_dir, "server.log"), encoding="utf-8", errors="replace") as log:
            lines = [line for line in log if "Generation ended." in line and "trace-stream-end" in line]
        if lines or time.time() > deadline:
            break
        time.sleep(0.05)
    assert lines, "the end of a streamed generation is logged without its request id"


def test_streaming_equals_non_streaming(client):
    whole = chat(client, max_tokens=40).choices[0].message.content
    stream = chat(client, max_tokens=40, stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_same_seed_samples_the_same_text(client):
    kwargs = dict(model="smollm2", messages=SYSTEM + [{"role": "user", "content": "Write a short poem about the sea."}], max_tokens=24, temperature=1.0, top_p=0.95)
    first = client.chat.completions.create(seed=42, **kwargs).choices[0].message.content
    again = client.chat.completions.create(seed=42, **kwargs).choices[0].message.content
    other = client.chat.completions.create(seed=43, **kwargs).choices[0].message.content
    assert first == again
    assert first != other


def test_stop_and_max_tokens_finish_reasons(client):
    length = chat(client, max_tokens=3)
    assert length.choices[0].finish_reason == "length"
    assert length.usage.completion_tokens == 3
    stopped = chat(client, max_tokens=32, stop=["Paris"])
    assert stopped.choices[0].finish_reason == "stop"
    assert "Paris" not in stopped.choices[0].message.content
    assert stopped.choices[0].message.content.strip() != ""


def tokenize(server, **body):
    status, raw = server.request("POST", "/v1/tokenize", {"model": "smollm2", **body}, {"Content-Type": "application/json"})
    assert status == 200, raw
    return json.loads(raw)["tokens"]


def test_tokenizer_golden_ids_and_usage_counts(llm, client):
    assert tokenize(llm, prompt="The capital of France is") == [504, 3575, 282, 4649, 314]
    response = chat(client, max_tokens=5)
    assert response.usage.prompt_tokens == len(tokenize(llm, messages=SYSTEM + QUESTION))
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5 == len(tokenize(llm, prompt=response.choices[0].message.content))
    assert response.usage.total_tokens == response.usage.prompt_tokens + 5
    completion = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert completion.usage.prompt_tokens == 5
    assert completion.usage.completion_tokens == 6


def test_metric_buckets_fit_their_measures(llm, client):
    """Tokens per second are counted in token-rate buckets (not the seconds buckets, where every rate above 30
    lands in +Inf), with the model's version; loaded tensor versions show their queue capacity and instances."""
    client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=8, temperature=0)
    llm.push("iris-gauges", "iris_mlp.onnx", config={"instance_count": 2})
    assert llm.request("POST", "/v2/models/iris-gauges/infer", {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})[0] == 200
    status, body = llm.request("GET", "/metrics")
    assert status == 200
    samples = {}
    for line in body.decode().splitlines():
        if not line.startswith("#") and " " in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    prefix = 'yunmo_llm_request_tokens_per_second_bucket{model="smollm2",version="1",le='
    buckets = {name[len(prefix):].strip('"}'): value for name, value in samples.items() if name.startswith(prefix)}
    assert {"1", "100", "5000", "+Inf"} <= set(buckets), sorted(buckets)
    assert buckets["+Inf"] >= 1 and buckets["5000"] == buckets["+Inf"], f"a generation's tokens/s fell past the last bucket: {buckets}"
    assert samples['yunmo_inference_queue_capacity{model="iris-gauges",version="1"}'] == 1024
    assert samples['yunmo_model_instances{model="iris-gauges",version="1"}'] == 2


def prompt_tokens_counted(server):
    status, body = server.request("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith('yunmo_llm_prompt_tokens_total{model="smollm2",version="1"}'):
            return float(line.split()[-1])
    return 0.0


def test_completions_text_logprobs_and_n(llm, client):
    response = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2, echo=True)
    choice = response.choices[0]
    assert choice.text.startswith("The capital of France is Paris")
    assert len(choice.logprobs.tokens) == 4 and all(lp <= 0 for lp in choice.logprobs.token_logprobs)
    assert choice.logprobs.tokens[0] == " Paris" and list(choice.logprobs.top_logprobs[0])[0] == " Paris"
    before = prompt_tokens_counted(llm)
    many = client.completions.create(model="smollm2", prompt=["Once upon a time", "The sky is"], max_tokens=4, temperature=0.9, n=2, seed=3)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert many.usage.prompt_tokens == len(tokenize(llm, prompt="Once upon a time")) + len(tokenize(llm, prompt="The sky is"))
    assert prompt_tokens_counted(llm) - before == many.usage.prompt_tokens, "with n=2 each prompt is metered once"
    chat_lp = chat(client, max_tokens=3, logprobs=True, top_logprobs=3)
    content = chat_lp.choices[0].logprobs.content
    assert len(content) == 3 and len(content[0].top_logprobs) == 3
    assert content[0].top_logprobs[0].logprob >= content[0].top_logprobs[1].logprob


QUESTIONS = ["What is the capital of France?", "Name three colours.", "What is 2 plus 2?", "Say hello.",
             "What is the largest ocean?", "Name a fruit.", "What colour is the sky?", "Count to three."]


def test_eight_concurrent_streams_equal_one_at_a_time(client):
    def run(question, stream):
        kwargs = dict(model="smollm2", messages=SYSTEM + [{"role": "user", "content": question}], max_tokens=24, temperature=0, seed=5)
        if not stream:
            return client.chat.completions.create(**kwargs).choices[0].message.content
        return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs) if c.choices)

    alone = [run(q, False) for q in QUESTIONS]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda q: run(q, True), QUESTIONS))
    assert together == alone


def test_cancelled_stream_frees_its_slot(llm, client):
    def sequences_running():
        status, body = llm.request("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith('yunmo_llm_sequences_running{model="smollm2",version="1"}'):
                return float(line.split()[-1])
        return 0.0

    # Fill every slot (8) with long generations, then cancel them all after their first chunk.
    streams = [client.chat.completions.create(model="smollm2", messages=SYSTEM + [{"role": "user", "content": "Tell me a very long story."}],
                                              max_tokens=1500, temperature=0.8, seed=i, stream=True) for i in range(8)]
    try:
        for stream in streams:
            next(iter(stream))
        assert sequences_running() == 8
        status, body = llm.request("GET", "/metrics")
        text = body.decode()
        # Recorded while the streams run (the token counters and per-request speed are written when each ends).
        for name in ("yunmo_llm_time_to_first_token_seconds_bucket", "yunmo_llm_inter_token_latency_seconds_bucket", "yunmo_llm_sequences_waiting"):
            assert name + '{' in text, (name, [line for line in text.splitlines() if "yunmo_llm" in line][:20])
        kv = [float(line.split()[-1]) for line in text.splitlines() if line.startswith('yunmo_llm_kv_cache_usage_ratio{model="smollm2",version="1"}')]
        assert kv and kv[0] > 0, "eight running sequences hold KV cells"
        for stream in streams:
            stream.close()
    finally:
        for stream in streams:
            stream.close()
    deadline = time.time() + 10
    while sequences_running() > 0 and time.time() < deadline:
        time.sleep(0.05)
    assert sequences_running() == 0, "cancelled sequences kept their slots"
    status, body = llm.request("GET", "/metrics")
    assert 'yunmo_llm_requests_total{model="smollm2",version="1",outcome="cancelled"}' in body.decode()
    started = time.time()
    response = chat(client, max_tokens=4)
    assert response.choices[0].finish_reason == "length"
    assert time.time() - started < 10


def test_errors_use_the_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert missing.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad:
        chat(client, max_tokens=100_000)
    assert "max_tokens" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=3)
    assert "temperature must be between 0 and 2" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="smollm2", input="hello")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="minilm-embed", messages=QUESTION)
    assert "does not generate text" in bad.value.body["message"]


def test_two_llms_and_an_encoder_at_once(llm, client):
    def plain():
        return client.chat.completions.create(model="smollm2-plain", messages=QUESTION, max_tokens=8, temperature=0)

    def embed():
        return client.embeddings.create(model="minilm-embed", input=["hello world"] * 4)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(chat, client, max_tokens=8), pool.submit(plain), pool.submit(embed)]
        results = [f.result() for f in futures]
    assert results[0].usage.completion_tokens > 0 and results[1].usage.completion_tokens > 0
    assert results[0].usage.prompt_tokens != results[1].usage.prompt_tokens, "each model rendered its own template"
    assert len(results[2].data) == 4
    status, body = llm.request("GET", "/v2/repository/index", None)
    status, body = llm.request("POST", "/v2/repository/index", b"{}", {"Content-Type": "application/json"})
    ready = {entry["name"] for entry in json.loads(body) if entry.get("state") == "READY"}
    assert {"smollm2", "smollm2-plain", "minilm-embed"} <= ready


def cosine(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_embeddings_reference_similarity_and_batching(client):
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.", "A man is riding a horse."]
    batch = client.embeddings.create(model="minilm-embed", input=sentences)
    vectors = [d.embedding for d in batch.data]
    assert len(vectors[0]) == 384
    assert abs(np.linalg.norm(vectors[0]) - 1) < 1e-5
    assert abs(cosine(vectors[0], vectors[1]) - 0.755) < 0.01
    singles = [client.embeddings.create(model="minilm-embed", input=s).data[0].embedding for s in sentences]
    np.testing.assert_allclose(np.asarray(singles), np.asarray(vectors), atol=1e-5)
    assert batch.usage.prompt_tokens > len(sentences)
    encoded = client.embeddings.create(model="minilm-embed", input=sentences[:1], encoding_format="base64")
    raw = encoded.data[0].embedding
    decoded = np.frombuffer(base64.b64decode(raw), dtype="<f4") if isinstance(raw, str) else np.asarray(raw, dtype=np.float32)
    np.testing.assert_allclose(decoded, vectors[0], atol=1e-6)
    same = client.embeddings.create(model="minilm-embed", input=sentences[:1], dimensions=384)
    np.testing.assert_allclose(same.data[0].embedding, vectors[0], atol=1e-6)
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="minilm-embed", input="x", dimensions=64)
    assert "dimensions must be 384" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="minilm-embed", input="word " * 300)
    assert "at most 256" in bad.value.body["message"]


def test_v2_generate_extension(llm):
    body = {"text_input": "The capital of France is", "parameters": {"max_tokens": 4, "temperature": 0}}
    status, raw = llm.request("POST", "/v2/models/smollm2/generate", body, {"Content-Type": "application/json"})
    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["model_name"] == "smollm2" and answer["text_output"].startswith(" Paris")
    status, raw = llm.request("POST", "/v2/models/smollm2/generate_stream", body, {"Content-Type": "application/json"})
    events = [json.loads(line[5:]) for line in raw.decode().splitlines() if line.startswith("data:")]
    assert "".join(e["text_output"] for e in events) == answer["text_output"]
    assert events[-1]["finish_reason"] == "length"


def completion_tokens(client, prompt, **kwargs):
    """The token texts of a greedy completion (from logprobs)."""
    response = client.completions.create(model="smollm2", prompt=prompt, temperature=0, logprobs=1, **kwargs)
    return response.choices[0].logprobs.tokens


def test_logit_bias_bans_the_greedy_token(llm, client):
    prompt = "The capital of France is"
    first = completion_tokens(client, prompt, max_tokens=1)[0]
    [first_id] = tokenize(llm, prompt=first)
    assert first == " Paris"
    banned = completion_tokens(client, prompt, max_tokens=3, logit_bias={str(first_id): -100})
    assert banned[0] != first and first not in banned, banned


def test_logit_bias_forces_a_token(llm, client):
    [paris] = tokenize(llm, prompt=" Paris")
    prompt = "Once upon a time"
    assert completion_tokens(client, prompt, max_tokens=4)[0] != " Paris"
    forced = client.completions.create(model="smollm2", prompt=prompt, max_tokens=4, temperature=0, logit_bias={str(paris): 100})
    assert forced.choices[0].text == " Paris" * 4
    assert tokenize(llm, prompt=forced.choices[0].text) == [paris] * 4
    # Chat takes the same map.
    assert chat(client, max_tokens=4, logit_bias={str(paris): 100}).choices[0].message.content == " Paris" * 4


def test_logit_bias_out_of_range_or_unknown_token_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="smollm2", prompt="Hi", max_tokens=1, logit_bias={"7042": 150})
    assert "logit_bias" in bad.value.body["message"] and "150" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        chat(client, max_tokens=1, logit_bias={"10000000": 5})
    assert "logit_bias" in bad.value.body["message"] and "10000000" in bad.value.body["message"]
    assert bad.value.body["type"] == "invalid_request_error"


def test_unknown_fields_are_refused_not_ignored(client):
    with pytest.raises(openai.BadRequestError) as bad:
        chat(client, max_tokens=2, extra_body={"min_p": 0.1})
    assert "Unrecognized request argument supplied: min_p" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="smollm2", prompt="Hi", max_tokens=1, extra_body={"min_p": 0.1})
    assert "Unrecognized request argument supplied: min_p" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="minilm-embed", input="hi", extra_body={"min_p": 0.1})
    assert "Unrecognized request argument supplied: min_p" in bad.value.body["message"]


def test_fields_that_cannot_be_honoured_are_refused(client):
    with pytest.raises(openai.BadRequestError) as bad:
        chat(client, max_tokens=2, store=True)
    assert "store" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        chat(client, max_tokens=2, tool_choice="required")
    assert "tool_choice" in bad.value.body["message"]


def test_no_op_fields_are_accepted(client):
    plain = chat(client, max_tokens=4)
    for kwargs in ({"store": False}, {"user": "x"}, {"service_tier": "auto"}):
        response = chat(client, max_tokens=4, **kwargs)
        assert response.choices[0].message.content == plain.choices[0].message.content, kwargs


def test_models_retrieve(client):
    model = client.models.retrieve("smollm2")
    assert model.id == "smollm2" and model.object == "model"
    assert client.models.retrieve("minilm-embed").id == "minilm-embed"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    body = missing.value.body
    assert body["type"] == "invalid_request_error" and "no-such-model" in body["message"], body
    assert set(body) >= {"message", "type", "param", "code"}, body


def test_embedding_token_ids_are_checked_against_the_vocabulary(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="minilm-embed", input=[[101, 999999]])
    message = bad.value.body["message"]
    assert "999999" in message and "30522" in message, message
    # all-MiniLM-L6-v2's vocabulary has 30522 ids: 30521 is the last.
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="minilm-embed", input=[101, 30522])
    assert "30522" in bad.value.body["message"]
    for ids in ([[101, 7592, 2088, 102]], [101, 30521]):
        vector = np.asarray(client.embeddings.create(model="minilm-embed", input=ids).data[0].embedding)
        assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-5


def test_langchain_openai_embeddings_equal_the_sdk(llm, client):
    from langchain_openai import OpenAIEmbeddings

    # tiktoken cannot fetch its BPE files offline; check_embedding_ctx_length=False sends the strings as they are.
    embeddings = OpenAIEmbeddings(model="minilm-embed", base_url=llm.url + "/v1", api_key="unused", check_embedding_ctx_length=False, max_retries=0)
    sentences = ["A man is eating food.", "The girl is carrying a baby."]
    documents = embeddings.embed_documents(sentences)
    query = embeddings.embed_query(sentences[0])
    want = [d.embedding for d in client.embeddings.create(model="minilm-embed", input=sentences).data]
    assert len(documents) == 2 and len(query) == 384
    assert cosine(query, want[0]) > 0.9999
    assert all(cosine(got, expected) > 0.9999 for got, expected in zip(documents, want))
    assert cosine(documents[0], documents[1]) < 0.9


def generate(server, body):
    status, raw = server.request("POST", "/v2/models/smollm2/generate", body, {"Content-Type": "application/json"})
    return status, json.loads(raw)


def test_v2_generate_takes_top_level_sampling_fields(llm):
    status, answer = generate(llm, {"text_input": "The capital of France is", "max_tokens": 3, "temperature": 0})
    assert status == 200, answer
    assert answer["usage"]["completion_tokens"] == 3 and answer["finish_reason"] == "length"
    assert answer["text_output"].startswith(" Paris")
    status, answer = generate(llm, {"text_input": "The capital of France is", "max_tokens": 3, "parameters": {"max_tokens": 3}})
    assert status == 400 and "max_tokens" in answer["error"], answer
    status, answer = generate(llm, {"text_input": "The capital of France is", "max_tokens": 3, "bogus_field": 1})
    assert status == 400 and "bogus_field" in answer["error"], answer
    status, answer = generate(llm, {"text_input": "The capital of France is", "parameters": {"max_new_tokens": 3}})
    assert status == 400 and "max_new_tokens" in answer["error"], answer
