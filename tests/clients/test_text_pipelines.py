"""Text and classification pipelines (docs/pipelines.md): a text pipeline (tokenize -> MiniLM -> pool), pushed
with its tokenizer.json by the CLI, answers the same vectors as the /v1/embeddings route on the same model;
a classification pipeline over a model this test trains and exports (scikit-learn -> skl2onnx) answers its
labels; bad text and a tokenize step without a tokenizer get 400s."""
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx

from conftest import BINARY, CACHE, Server

TOKENIZER = os.path.join(CACHE, "models", "minilm-tokenizer.json")
SENTENCES = ["A man is eating food.", "The quick brown fox jumps over the lazy dog near the riverbank at dawn.", "Hi"]
SPECIES = ["setosa", "versicolor", "virginica"]

TEXT_PIPELINE = {
    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
    "steps": [
        {"name": "tokenize", "tokenize": {"max_length": 128}, "inputs": {"text": "text"},
         "outputs": {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "types"}},
        {"name": "encode", "model": {"name": "minilm"}, "inputs": {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "types"},
         "outputs": {"last_hidden_state": "states"}},
        {"name": "pool", "pool": {"mode": "mean", "normalize": True}, "inputs": {"hidden": "states", "attention_mask": "mask"},
         "outputs": {"embedding": "embedding"}},
    ],
    "outputs": ["embedding"],
}


@pytest.fixture(scope="module")
def srv():
    data_dir = tempfile.mkdtemp(prefix="yunmo-text-pipelines-")
    server = Server(data_dir)
    server.push("minilm", "minilm.onnx", config={"embedding": {"pooling": "mean", "normalize": True}, "max_batch_size": 64})
    with open(TOKENIZER, "rb") as f:
        status, body = server.request("PUT", "/api/v1/models/minilm/versions/1/tokenizer", f.read(), {"Content-Type": "application/json"})
    assert status == 200, body
    server.dir = data_dir
    yield server
    assert server.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def push_declaration(srv, name, declaration, *extra):
    path = os.path.join(srv.dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(declaration, f)
    return subprocess.run([BINARY, "models", "push", path, "--name", name, *extra], env={**os.environ, "YUNMO_URL": srv.url},
                          capture_output=True, text=True, timeout=60)


def test_a_text_pipeline_equals_the_embeddings_route(srv):
    pushed = push_declaration(srv, "sentences", TEXT_PIPELINE, "--tokenizer", TOKENIZER)
    assert pushed.returncode == 0, pushed.stderr
    client = httpclient.InferenceServerClient(srv.address)
    text = httpclient.InferInput("text", [len(SENTENCES)], "BYTES")
    text.set_data_from_numpy(np.array([s.encode() for s in SENTENCES], dtype=object))
    vectors = client.infer("sentences", [text]).as_numpy("embedding")
    status, body = srv.request("POST", "/v1/embeddings", {"model": "minilm", "input": SENTENCES})
    assert status == 200, body
    expected = np.array([item["embedding"] for item in json.loads(body)["data"]], np.float32)
    assert vectors.shape == (3, 384)
    assert np.abs(vectors - expected).max() < 1e-5, np.abs(vectors - expected).max()
    # Over gRPC too, one text at a time (no padding): the same vector.
    grpc = grpcclient.InferenceServerClient(srv.grpc_address)
    one = grpcclient.InferInput("text", [1], "BYTES")
    one.set_data_from_numpy(np.array([SENTENCES[1].encode()], dtype=object))
    assert np.abs(grpc.infer("sentences", [one]).as_numpy("embedding")[0] - expected[1]).max() < 1e-5


def test_bad_text_and_a_missing_tokenizer_get_400s(srv):
    client = httpclient.InferenceServerClient(srv.address)
    text = httpclient.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"fine", b"\xff\xfe not utf-8"], dtype=object))
    with pytest.raises(Exception) as refused:
        client.infer("sentences", [text])
    assert "400" in str(refused.value) and "text[1] is not UTF-8" in str(refused.value)
    long = httpclient.InferInput("text", [1], "BYTES")
    long.set_data_from_numpy(np.array([("word " * 300).encode()], dtype=object))
    with pytest.raises(Exception) as refused:
        client.infer("sentences", [long])
    assert "400" in str(refused.value) and "more than max_length 128" in str(refused.value)
    pushed = push_declaration(srv, "no_tokenizer", TEXT_PIPELINE)
    assert pushed.returncode != 0 and "tokenizer.json" in pushed.stderr, pushed.stderr


def test_a_classification_pipeline_over_a_model_trained_here_answers_labels(srv):
    iris = load_iris()
    x, y = iris.data.astype(np.float32), iris.target
    model = LogisticRegression(max_iter=500).fit(x, y)
    path = os.path.join(srv.dir, "species.onnx")
    with open(path, "wb") as f:
        f.write(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
    srv.push_file("species_model", path)
    declaration = {
        "inputs": [{"name": "measurements", "datatype": "FP32", "shape": [-1, 4]}],
        "steps": [
            {"name": "classify", "model": {"name": "species_model"}, "inputs": {"X": "measurements"},
             "outputs": {"probabilities": "probabilities"}},
            {"name": "best", "top_k": {"k": 2, "labels": SPECIES}, "inputs": {"scores": "probabilities"},
             "outputs": {"labels": "species", "scores": "confidence"}},
        ],
        "outputs": ["species", "confidence"],
    }
    pushed = push_declaration(srv, "species", declaration)
    assert pushed.returncode == 0, pushed.stderr
    rows = x[::15]
    client = httpclient.InferenceServerClient(srv.address)
    tensor = httpclient.InferInput("measurements", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer("species", [tensor])
    species, confidence = result.as_numpy("species"), result.as_numpy("confidence")
    expected = model.predict_proba(rows)
    assert [row[0].decode() for row in species] == [SPECIES[i] for i in expected.argmax(axis=1)]
    assert np.abs(confidence - np.sort(expected, axis=1)[:, ::-1][:, :2]).max() < 1e-4


TOPICS = {
    "food": ["I ate a sandwich for lunch.", "This soup is delicious.", "She baked bread this morning.", "We ordered pizza and pasta.",
             "The salad had fresh tomatoes.", "He cooked rice and beans."],
    "sport": ["The team won the football match.", "She runs a marathon every year.", "He scored a goal in the last minute.",
              "The tennis final went to five sets.", "They play basketball on Sundays.", "The cyclist won the race."],
}


def test_predict_classifies_text_with_a_pipeline_trained_here(srv):
    """/predict (TEI's shape) over a pipeline tokenize -> MiniLM -> pool -> a logistic regression fitted here on
    MiniLM vectors of labelled sentences -> top_k with the labels."""
    sentences = [text for label in TOPICS for text in TOPICS[label]]
    targets = [index for index, label in enumerate(TOPICS) for _ in TOPICS[label]]
    status, body = srv.request("POST", "/v1/embeddings", {"model": "minilm", "input": sentences})
    assert status == 200, body
    vectors = np.array([item["embedding"] for item in json.loads(body)["data"]], np.float32)
    head = LogisticRegression(max_iter=1000, C=10).fit(vectors, targets)
    path = os.path.join(srv.dir, "topic_head.onnx")
    with open(path, "wb") as f:
        f.write(to_onnx(head, vectors[:1], options={"zipmap": False}).SerializeToString())
    srv.push_file("topic_head", path)
    declaration = json.loads(json.dumps(TEXT_PIPELINE))
    declaration["steps"] += [
        {"name": "classify", "model": {"name": "topic_head"}, "inputs": {"X": "embedding"}, "outputs": {"probabilities": "probabilities"}},
        {"name": "best", "top_k": {"k": 2, "labels": list(TOPICS)}, "inputs": {"scores": "probabilities"}, "outputs": {"labels": "labels", "scores": "scores"}},
    ]
    declaration["outputs"] = ["labels", "scores"]
    pushed = push_declaration(srv, "topic", declaration, "--tokenizer", TOKENIZER)
    assert pushed.returncode == 0, pushed.stderr
    status, body = srv.request("POST", "/predict", {"model": "topic", "inputs": "We had noodles and dumplings for dinner."})
    assert status == 200, body
    answer = json.loads(body)
    assert [item["label"] for item in answer] == ["food", "sport"] and answer[0]["score"] > 0.5, answer
    assert abs(sum(item["score"] for item in answer) - 1) < 1e-4
    status, body = srv.request("POST", "/predict", {"model": "topic", "inputs": ["The striker kicked the ball.", "A bowl of noodles."]})
    assert status == 200, body
    assert [rows[0]["label"] for rows in json.loads(body)] == ["sport", "food"], body
    # A tensor model is refused with the reason; so is an empty input list.
    status, body = srv.request("POST", "/predict", {"model": "topic_head", "inputs": "text"})
    assert status == 400 and b"does not take one text input" in body, body
    status, body = srv.request("POST", "/predict", {"model": "topic", "inputs": []})
    assert status == 400 and b"inputs must hold 1 to 1024 texts" in body, body


def test_rerank_orders_texts_by_the_cosine_of_their_embeddings(srv):
    texts = ["The girl is carrying a baby.", "A man is eating a piece of bread.", "A man is riding a horse."]
    status, body = srv.request("POST", "/rerank", {"model": "minilm", "query": "A man is eating food.", "texts": texts, "return_text": True})
    assert status == 200, body
    ranked = json.loads(body)
    assert [item["index"] for item in ranked][0] == 1 and ranked[0]["text"] == texts[1], ranked
    # The reference: cos("A man is eating food.", "A man is eating a piece of bread.") = 0.755 (fp32 MiniLM).
    assert abs(ranked[0]["score"] - 0.755) < 0.02, ranked
    status, body = srv.request("POST", "/v1/embeddings", {"model": "minilm", "input": ["A man is eating food."] + texts})
    vectors = np.array([item["embedding"] for item in json.loads(body)["data"]])
    for item in ranked:
        expected = vectors[0] @ vectors[item["index"] + 1] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[item["index"] + 1])
        assert abs(item["score"] - expected) < 1e-5, (item, expected)
    assert [item["score"] for item in ranked] == sorted((item["score"] for item in ranked), reverse=True)
    status, body = srv.request("POST", "/rerank", {"model": "minilm", "query": "q", "texts": ["a"], "raw_scores": True})
    assert status == 400 and b"raw_scores" in body, body


def test_an_ensemble_averages_two_classifiers(srv):
    iris = load_iris()
    x, y = iris.data.astype(np.float32), iris.target
    models = {"strong": LogisticRegression(max_iter=500, C=10).fit(x, y), "weak": LogisticRegression(max_iter=500, C=0.01).fit(x, y)}
    for name, model in models.items():
        path = os.path.join(srv.dir, f"{name}.onnx")
        with open(path, "wb") as f:
            f.write(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
        srv.push_file(f"iris_{name}", path)
    declaration = {
        "inputs": [{"name": "measurements", "datatype": "FP32", "shape": [-1, 4]}],
        "steps": [
            {"name": "strong", "model": {"name": "iris_strong"}, "inputs": {"X": "measurements"}, "outputs": {"probabilities": "p_strong"}},
            {"name": "weak", "model": {"name": "iris_weak"}, "inputs": {"X": "measurements"}, "outputs": {"probabilities": "p_weak"}},
            {"name": "average", "mean": {}, "inputs": {"a": "p_strong", "b": "p_weak"}, "outputs": {"y": "probabilities"}},
            {"name": "best", "top_k": {"k": 3, "labels": SPECIES}, "inputs": {"scores": "probabilities"}, "outputs": {"labels": "species", "scores": "confidence"}},
        ],
        "outputs": ["species", "confidence", "probabilities"],
    }
    pushed = push_declaration(srv, "iris_ensemble", declaration)
    assert pushed.returncode == 0, pushed.stderr
    rows = x[::10]
    client = grpcclient.InferenceServerClient(srv.grpc_address)
    tensor = grpcclient.InferInput("measurements", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer("iris_ensemble", [tensor])
    expected = (models["strong"].predict_proba(rows) + models["weak"].predict_proba(rows)) / 2
    assert np.abs(result.as_numpy("probabilities") - expected).max() < 1e-5
    assert [row[0].decode() for row in result.as_numpy("species")] == [SPECIES[i] for i in expected.argmax(axis=1)]
    one_input = json.loads(json.dumps(declaration))
    one_input["steps"][2]["inputs"] = {"a": "p_strong"}
    refused = push_declaration(srv, "iris_ensemble", one_input)
    assert refused.returncode != 0 and "mean averages 2 to 16 values, got 1" in refused.stderr, refused.stderr


NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_entities_are_spans_of_the_original_text_with_words_whole(srv):
    """tokenize -> a token classifier (a lookup table from token id to class scores, made here with onnx.helper,
    labelling the first pieces of chosen words) -> entities: spans in the original text, words kept whole."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    with open(TOKENIZER) as f:
        vocab = json.load(f)["model"]["vocab"]

    def first_piece(word):
        word = word.lower()
        return next(vocab[word[:end]] for end in range(len(word), 0, -1) if word[:end] in vocab)

    table = np.zeros((len(vocab), len(NER_LABELS)), np.float32)
    table[:, 0] = 4.0
    for word, label in [("Alice", "B-PER"), ("Kowalczyk", "I-PER"), ("Paris", "B-LOC"), ("New", "B-LOC"), ("York", "I-LOC")]:
        table[first_piece(word)] = 0.0
        table[first_piece(word), NER_LABELS.index(label)] = 4.0
    assert first_piece("Kowalczyk") != vocab.get("kowalczyk"), "the surname is several word pieces"
    graph = helper.make_graph([helper.make_node("Gather", ["table", "input_ids"], ["logits"], axis=0)], "ner",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "L"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "L", len(NER_LABELS)])],
                              initializer=[numpy_helper.from_array(table, "table")])
    path = os.path.join(srv.dir, "ner.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    srv.push_file("ner_model", path, config={"labels": NER_LABELS})
    declaration = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "steps": [
            {"name": "tokenize", "tokenize": {}, "inputs": {"text": "text"},
             "outputs": {"input_ids": "ids", "offsets": "offsets", "word_ids": "words"}},
            {"name": "tag", "model": {"name": "ner_model"}, "inputs": {"input_ids": "ids"}, "outputs": {"logits": "logits"}},
            {"name": "spans", "entities": {"labels_from": "tag"},
             "inputs": {"logits": "logits", "offsets": "offsets", "word_ids": "words", "text": "text"}, "outputs": {"entities": "entities"}},
        ],
        "outputs": ["entities"],
    }
    pushed = push_declaration(srv, "ner", declaration, "--tokenizer", TOKENIZER)
    assert pushed.returncode == 0, pushed.stderr
    texts = ["Alice Kowalczyk flew from Paris to New York.", "Nothing to see here"]
    client = httpclient.InferenceServerClient(srv.address)
    tensor = httpclient.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
    first, second = (json.loads(row) for row in client.infer("ner", [tensor]).as_numpy("entities"))
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in first] == [
        ("PER", "Alice Kowalczyk", 0, 15), ("LOC", "Paris", 26, 31), ("LOC", "New York", 35, 43)], first
    assert all(abs(e["score"] - np.exp(4) / (np.exp(4) + 4)) < 1e-5 for e in first), first
    assert all(texts[0][e["start"]:e["end"]] == e["word"] for e in first)
    assert second == []
