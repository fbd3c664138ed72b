"""Reranking and scoring on a cross-encoder: POST /v1/rerank (Cohere's, Jina's and vLLM's shape) through plain HTTP,
POST /v2/rerank through the `cohere` SDK's ClientV2.rerank (7.3.1, unchanged), and vLLM's POST /v1/score, on a
server with auth on and two tenants.

The model is the fixture cross_encoder.onnx (tests/fixtures/make_models.py): all-MiniLM-L6-v2 with a head that
scores a (query, document) pair, tokenised as one input with the document as the second segment, by the cosine of
the two segments' mean states. No trained reranker can be had offline; this one runs exactly as one (pair
tokenisation, one logit per pair) and ranks by meaning. Every score is checked against ONNX Runtime's own run of
the same file on the same pairs (tokenised by Hugging Face's tokenizers), and the ranking against the obvious
answer. Also: the model routes list its task, errors in OpenAI's shape naming the field, tenant isolation and
exact metering (requests and input tokens)."""
import json
import math
import os
import shutil
import tempfile

import cohere
import numpy as np
import onnxruntime
import pytest
import tokenizers

from conftest import two_tenants, ADMIN, CACHE, Server, fixture_path, make_key, push_as, settled_requests, post_json as post

ENV = {"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__AUTH__USAGE_FLUSH_MS": "200"}
TOKENIZER = os.path.join(CACHE, "models", "minilm-tokenizer.json")
RERANK = {"embedding": {"task": "rerank", "max_tokens": 256}}
QUERY = "What is the capital of France?"
DOCUMENTS = ["Bananas are yellow fruits rich in potassium.", "Paris is the capital and largest city of France.",
             "The Eiffel Tower is in Paris.", "Berlin is the capital of Germany."]


@pytest.fixture(scope="module")
def served():
    data_dir = tempfile.mkdtemp(prefix="yunmo-rerank-")
    srv = Server(data_dir, env=ENV)
    keys = two_tenants(srv)
    with open(TOKENIZER, "rb") as f:
        tokenizer = f.read()
    for name, file_name, config in [("reranker", "cross_encoder.onnx", RERANK),
                                    ("minilm", "minilm.onnx", {"embedding": {"pooling": "mean", "normalize": True}})]:
        push_as(srv, keys["a"], name, fixture_path(file_name), config)
        status, body = srv.request("PUT", f"/api/v1/models/{name}/versions/1/tokenizer", tokenizer,
                                   {"Content-Type": "application/json"}, key=keys["a"])
        assert status == 200, body
    yield srv, keys
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def reference(query, documents):
    """ONNX Runtime's sigmoid(logit) of each (query, document) pair, one pair per run, and the pairs' tokens."""
    tokenizer = tokenizers.Tokenizer.from_file(TOKENIZER)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    session = onnxruntime.InferenceSession(fixture_path("cross_encoder.onnx"))
    scores, tokens = [], 0
    for document in documents:
        encoding = tokenizer.encode(query, document)
        ids = np.array([encoding.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.array([encoding.type_ids], dtype=np.int64)}
        logit = float(session.run(None, feeds)[0][0][0])
        scores.append(1 / (1 + math.exp(-logit)))
        tokens += len(encoding.ids)
    return scores, tokens


def test_rerank_orders_the_documents_by_the_models_scores(served):
    srv, keys = served
    expected, tokens = reference(QUERY, DOCUMENTS)
    status, body = post(srv, "/v1/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS}, keys["a"])
    assert status == 200, body
    results = body["results"]
    assert [r["index"] for r in results] == sorted(range(4), key=lambda i: -expected[i]), (results, expected)
    assert results[0]["index"] == 1 and results[-1]["index"] == 0, "the capital of France first, bananas last"
    for result in results:
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-4)
        assert result["document"] == {"text": DOCUMENTS[result["index"]]}
    assert body["usage"]["total_tokens"] == tokens and body["model"] == "reranker" and body["id"].startswith("rerank-")
    # top_n, documents as objects (Jina's), no documents back (Cohere's default).
    status, top = post(srv, "/v1/rerank", {"model": "reranker", "query": QUERY, "documents": [{"text": d} for d in DOCUMENTS],
                                           "top_n": 2, "return_documents": False}, keys["a"])
    assert status == 200, top
    assert [(r["index"], r["relevance_score"]) for r in top["results"]] == [(r["index"], r["relevance_score"]) for r in results[:2]]
    assert all("document" not in r for r in top["results"])


def test_the_cohere_sdk_reranks_unchanged(served):
    srv, keys = served
    client = cohere.ClientV2(api_key=keys["a"], base_url=srv.url, timeout=60)
    answer = client.rerank(model="reranker", query=QUERY, documents=DOCUMENTS, top_n=3)
    expected, _ = reference(QUERY, DOCUMENTS)
    ranked = sorted(range(4), key=lambda i: -expected[i])[:3]
    assert [r.index for r in answer.results] == ranked
    assert [r.relevance_score for r in answer.results] == pytest.approx([expected[i] for i in ranked], abs=1e-4)
    with pytest.raises(cohere.core.api_error.ApiError) as refused:
        cohere.ClientV2(api_key=keys["b"], base_url=srv.url, timeout=60).rerank(model="reranker", query=QUERY, documents=DOCUMENTS)
    assert refused.value.status_code == 404, refused.value


def test_score_pairs_one_against_many_and_pairwise(served):
    srv, keys = served
    expected, tokens = reference(QUERY, DOCUMENTS)
    status, body = post(srv, "/v1/score", {"model": "reranker", "text_1": QUERY, "text_2": DOCUMENTS}, keys["a"])
    assert status == 200, body
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3] and all(d["object"] == "score" for d in body["data"])
    assert [d["score"] for d in body["data"]] == pytest.approx(expected, abs=1e-4)
    assert body["usage"]["prompt_tokens"] == tokens and body["object"] == "list"
    queries = ["Where is the Eiffel Tower?", "Which fruit is yellow?"]
    status, pairwise = post(srv, "/v1/score", {"model": "reranker", "text_1": queries, "text_2": DOCUMENTS[2::-2]}, keys["a"])
    assert status == 200, pairwise
    want = [reference(q, [d])[0][0] for q, d in zip(queries, DOCUMENTS[2::-2])]
    assert [d["score"] for d in pairwise["data"]] == pytest.approx(want, abs=1e-4)
    status, body = post(srv, "/v1/score", {"model": "reranker", "text_1": queries, "text_2": DOCUMENTS}, keys["a"])
    assert status == 400 and "text_1" in body["error"]["message"], body


def test_the_model_routes_list_the_rerank_task(served):
    srv, keys = served
    status, body = srv.request("GET", "/v1/models", key=keys["a"])
    assert status == 200, body
    tasks = {m["id"]: m["task"] for m in json.loads(body)["data"]}
    assert tasks["reranker"] == "rerank" and tasks["minilm"] == "embedding", tasks
    status, body = srv.request("GET", "/v1/models/reranker", key=keys["a"])
    assert status == 200 and json.loads(body)["task"] == "rerank", body


@pytest.mark.parametrize("path, body, status, words", [
    ("/v1/rerank", {"model": "minilm", "query": QUERY, "documents": DOCUMENTS}, 400, "not a reranker"),
    ("/v1/embeddings", {"model": "reranker", "input": "hello"}, 400, "is a reranker"),
    ("/v1/rerank", {"model": "reranker", "query": QUERY, "documents": []}, 400, "documents must hold 1 to 1024"),
    ("/v1/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS, "top_n": 0}, 400, "top_n"),
    ("/v1/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS, "max_tokens_per_doc": 64}, 400, "max_tokens_per_doc"),
    ("/v1/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS, "colour": 1}, 400, "colour"),
    ("/v1/rerank", {"model": "reranker", "query": "word " * 300, "documents": ["x"]}, 400, "embedding.max_tokens"),
    ("/v1/score", {"model": "reranker", "text_1": QUERY}, 400, "text_2"),
    ("/v2/rerank", {"model": "nope", "query": QUERY, "documents": DOCUMENTS}, 404, "nope"),
])
def test_bad_requests_are_refused_naming_the_field(served, path, body, status, words):
    srv, keys = served
    got, answer = post(srv, path, body, keys["a"])
    assert got == status and words in answer["error"]["message"], answer
    assert set(answer["error"]) >= {"message", "type"}


def test_no_key_and_another_tenants_model_are_refused(served):
    srv, keys = served
    for path, body in [("/v1/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS}),
                       ("/v2/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS}),
                       ("/v1/score", {"model": "reranker", "text_1": QUERY, "text_2": DOCUMENTS})]:
        status, answer = post(srv, path, body, None)
        assert status == 401 and "error" in answer, (path, answer)
        status, answer = post(srv, path, body, keys["b"])
        assert status == 404 and "reranker" in answer["error"]["message"], (path, answer)


def test_each_request_is_metered_once_with_its_tokens(served):
    srv, _ = served
    key = make_key(srv, "a", ["infer"])
    _, tokens = reference(QUERY, DOCUMENTS)
    for path, body in [("/v1/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS}),
                       ("/v2/rerank", {"model": "reranker", "query": QUERY, "documents": DOCUMENTS, "top_n": 1}),
                       ("/v1/score", {"model": "reranker", "text_1": QUERY, "text_2": DOCUMENTS}),
                       ("/v1/rerank", {"model": "reranker", "query": QUERY, "documents": []})]:
        post(srv, path, body, key["key"])
    assert settled_requests(srv, "a", key["id"], 4) == 4
    status, body = srv.request("GET", "/api/v1/usage?group_by=key&tenant=a", key=ADMIN)
    row = next(r for r in json.loads(body)["rows"] if r["group"] == key["id"])
    assert row["failed"] == 1 and row["input_tokens"] == 3 * tokens, row
