"""GGUF rerankers and encoders on llama.cpp: POST /v1/rerank, /v2/rerank (the `cohere` SDK) and /v1/score on a GGUF
reranker, and /v1/embeddings and Ollama's /api/embed on the same file loaded as an embedding model, on a server with
auth on and two tenants.

The model is the fixture reranker.gguf (tests/fixtures/gguf_reranker.py): paraphrase-MiniLM-L3-v2 written as
llama.cpp's `bert` with rank pooling and a seeded head. Every score is checked against an independent computation:
ONNX Runtime's hidden states of the source ONNX file on the pair as Hugging Face's tokenizer encodes it, through the
head read back from the GGUF file. Uploaded without a config, the file is recognised as a reranker by its pooling
type. Also: concurrent requests (packed into shared forward passes) score as alone, errors name the setting, tenant
isolation, and exact metering."""
import concurrent.futures
import json
import math
import os
import shutil
import sys
import tempfile

import cohere
import numpy as np
import ollama
import pytest
import tokenizers

from conftest import two_tenants, ADMIN, CACHE, Server, fixture_path, make_key, push_as, settled_requests, post_json as post

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import gguf_reranker  # noqa: E402

ENV = {"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__AUTH__USAGE_FLUSH_MS": "200"}
TOKENIZER = os.path.join(CACHE, "models", "minilm-tokenizer.json")
QUERY = "What is the capital of France?"
DOCUMENTS = ["Bananas are yellow fruits rich in potassium.", "Paris is the capital and largest city of France.",
             "The Eiffel Tower is in Paris.", "Berlin is the capital of Germany."]
EMBED = {"embedding": {"task": "embed", "pooling": "mean", "normalize": True}}


@pytest.fixture(scope="module")
def served():
    data_dir = tempfile.mkdtemp(prefix="yunmo-rerank-gguf-")
    srv = Server(data_dir, env=ENV)
    keys = two_tenants(srv)
    push_as(srv, keys["a"], "ggrank", fixture_path("reranker.gguf"))
    push_as(srv, keys["a"], "ggembed", fixture_path("reranker.gguf"), EMBED)
    yield srv, keys
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def hf_tokenizer():
    tokenizer = tokenizers.Tokenizer.from_file(TOKENIZER)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def reference(query, documents):
    """sigmoid(logit) of each (query, document) pair from ONNX Runtime's states and the file's head, and the tokens."""
    tokenizer = hf_tokenizer()
    scores, tokens = [], 0
    for document in documents:
        ids = tokenizer.encode(query, document).ids
        logit = gguf_reranker.reference_logit(fixture_path("reranker.gguf"), CACHE, ids)
        scores.append(1 / (1 + math.exp(-logit)))
        tokens += len(ids)
    return scores, tokens


def reference_embedding(text):
    """The unit mean of ONNX Runtime's states of [CLS] text [SEP]."""
    states = gguf_reranker.reference_states(CACHE, hf_tokenizer().encode(text).ids)
    mean = states.mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_an_uploaded_gguf_reranker_is_recognised_and_listed_with_its_task(served):
    srv, keys = served
    status, body = srv.request("GET", "/api/v1/models/ggrank/versions/1", key=keys["a"])
    assert status == 200, body
    assert json.loads(body)["config"]["embedding"]["task"] == "rerank", body
    status, body = srv.request("GET", "/v1/models", key=keys["a"])
    tasks = {m["id"]: m["task"] for m in json.loads(body)["data"]}
    assert tasks["ggrank"] == "rerank" and tasks["ggembed"] == "embedding", tasks


def test_rerank_scores_equal_the_reference_and_order_the_documents(served):
    srv, keys = served
    expected, tokens = reference(QUERY, DOCUMENTS)
    status, body = post(srv, "/v1/rerank", {"model": "ggrank", "query": QUERY, "documents": DOCUMENTS}, keys["a"])
    assert status == 200, body
    results = body["results"]
    assert [r["index"] for r in results] == sorted(range(4), key=lambda i: -expected[i]), (results, expected)
    for result in results:
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-3)
    assert body["usage"]["total_tokens"] == tokens, (body["usage"], tokens)
    # The scores are spread (the head is not a constant), so the order above is a real check.
    assert max(expected) - min(expected) > 0.05, expected


def test_the_cohere_sdk_and_score_route_work_on_the_gguf_reranker(served):
    srv, keys = served
    expected, tokens = reference(QUERY, DOCUMENTS)
    answer = cohere.ClientV2(api_key=keys["a"], base_url=srv.url, timeout=60).rerank(model="ggrank", query=QUERY,
                                                                                      documents=DOCUMENTS, top_n=2)
    ranked = sorted(range(4), key=lambda i: -expected[i])[:2]
    assert [r.index for r in answer.results] == ranked
    assert [r.relevance_score for r in answer.results] == pytest.approx([expected[i] for i in ranked], abs=1e-3)
    status, body = post(srv, "/v1/score", {"model": "ggrank", "text_1": QUERY, "text_2": DOCUMENTS}, keys["a"])
    assert status == 200, body
    assert [d["score"] for d in body["data"]] == pytest.approx(expected, abs=1e-3)
    assert body["usage"]["prompt_tokens"] == tokens


def test_concurrent_requests_score_as_they_do_alone(served):
    """Inputs of concurrent requests share forward passes: each must still attend only to its own tokens."""
    srv, keys = served
    queries = [f"Which city is number {i} on the list of capitals?" if i % 2 else QUERY for i in range(12)]
    documents = [DOCUMENTS[i % 4:] + DOCUMENTS[:i % 4] for i in range(12)]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: post(srv, "/v1/score", {"model": "ggrank", "text_1": queries[i],
                                                                   "text_2": documents[i]}, keys["a"]), range(12)))
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        expected, _ = reference(queries[i], documents[i])
        assert [d["score"] for d in body["data"]] == pytest.approx(expected, abs=1e-3), i


def test_the_same_file_serves_embeddings_with_a_config(served):
    srv, keys = served
    texts = ["A man is eating food.", "Paris is the capital of France."]
    status, body = post(srv, "/v1/embeddings", {"model": "ggembed", "input": texts}, keys["a"])
    assert status == 200, body
    for item, text in zip(body["data"], texts):
        assert len(item["embedding"]) == 384
        assert np.allclose(item["embedding"], reference_embedding(text), atol=2e-3), text
    assert body["usage"]["prompt_tokens"] == sum(len(hf_tokenizer().encode(t).ids) for t in texts)
    client = ollama.Client(host=srv.url, headers={"Authorization": f"Bearer {keys['a']}"})
    embedded = client.embed(model="ggembed", input=texts[1])
    assert np.allclose(embedded.embeddings[0], reference_embedding(texts[1]), atol=2e-3)


@pytest.mark.parametrize("path, body, status, words", [
    ("/v1/embeddings", {"model": "ggrank", "input": "hello"}, 400, "is a reranker"),
    ("/v1/rerank", {"model": "ggembed", "query": QUERY, "documents": DOCUMENTS}, 400, "not a reranker"),
    ("/v1/chat/completions", {"model": "ggrank", "messages": [{"role": "user", "content": "hi"}]}, 400, "it is a reranker"),
    ("/v1/embeddings", {"model": "ggembed", "input": [[101, 40000]]}, 400, "out of the vocabulary"),
    ("/v1/rerank", {"model": "ggrank", "query": "word " * 300, "documents": ["x"]}, 400, "embedding.max_tokens"),
    ("/v2/models/ggrank/infer", {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
     400, "text encoder"),
])
def test_wrong_uses_are_refused_naming_the_setting(served, path, body, status, words):
    srv, keys = served
    got, answer = post(srv, path, body, keys["a"])
    message = answer["error"]["message"] if isinstance(answer.get("error"), dict) else answer.get("error")
    assert got == status and words in message, answer


def test_a_config_without_embedding_keeps_a_gguf_reranker_a_reranker(served):
    srv, keys = served
    push_as(srv, keys["a"], "ggbare", fixture_path("reranker.gguf"))
    status, body = srv.request("PUT", "/api/v1/models/ggbare/versions/1/config", {"max_batch_size": 0}, key=keys["a"])
    assert status == 200, body
    assert json.loads(body)["config"]["embedding"]["task"] == "rerank", body
    expected, _ = reference(QUERY, DOCUMENTS[:2])
    status, answer = post(srv, "/v1/score", {"model": "ggbare", "text_1": QUERY, "text_2": DOCUMENTS[:2]}, keys["a"])
    assert status == 200 and [d["score"] for d in answer["data"]] == pytest.approx(expected, abs=1e-3), answer


def test_token_ids_embed_as_their_text_does(served):
    srv, keys = served
    text = "A man is eating food."
    ids = hf_tokenizer().encode(text).ids[1:-1]
    status, body = post(srv, "/v1/embeddings", {"model": "ggembed", "input": [ids]}, keys["a"])
    assert status == 200, body
    assert np.allclose(body["data"][0]["embedding"], reference_embedding(text), atol=2e-3)


@pytest.mark.parametrize("config, words", [
    ({"embedding": {"task": "rerank", "max_tokens": 1024}}, "trained on inputs of at most 512 tokens"),
    ({"embedding": {"task": "embed"}}, "serve it with embedding.task \"rerank\", or set embedding.pooling"),
])
def test_configs_the_file_cannot_serve_are_refused_at_load_naming_the_setting(served, config, words):
    srv, keys = served
    name = "ggwide" if "max_tokens" in config["embedding"] else "ggnopool"
    push_as(srv, keys["a"], name, fixture_path("reranker.gguf"), config)
    route, body = (("/v1/rerank", {"model": name, "query": QUERY, "documents": DOCUMENTS}) if name == "ggwide"
                   else ("/v1/embeddings", {"model": name, "input": "hello"}))
    status, answer = post(srv, route, body, keys["a"])
    assert status in (400, 503) and words in answer["error"]["message"], answer


def test_isolation_and_metering(served):
    srv, keys = served
    body = {"model": "ggrank", "query": QUERY, "documents": DOCUMENTS}
    status, answer = post(srv, "/v1/rerank", body, keys["b"])
    assert status == 404 and "ggrank" in answer["error"]["message"], answer
    key = make_key(srv, "a", ["infer"])
    _, tokens = reference(QUERY, DOCUMENTS)
    for path, request in [("/v1/rerank", body), ("/v1/score", {"model": "ggrank", "text_1": QUERY, "text_2": DOCUMENTS}),
                          ("/v1/rerank", {"model": "ggrank", "query": QUERY, "documents": []})]:
        post(srv, path, request, key["key"])
    assert settled_requests(srv, "a", key["id"], 3) == 3
    status, usage = srv.request("GET", "/api/v1/usage?group_by=key&tenant=a", key=ADMIN)
    row = next(r for r in json.loads(usage)["rows"] if r["group"] == key["id"])
    assert row["failed"] == 1 and row["input_tokens"] == 2 * tokens, row
