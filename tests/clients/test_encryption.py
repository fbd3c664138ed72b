"""Model files encrypted at rest (storage.encryption_key_file): through real clients (tritonclient.http and the
openai SDK) against the real binary, restarted between phases on the same data directory."""
import glob
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import openai
import pytest
import tritonclient.http as httpclient

from conftest import BINARY, Server, fixture_path

CACHE = os.environ.get("YUNMO_CACHE", os.path.expanduser("~/.cache/yunmo"))
SMOLLM = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")
IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def write_key(path, hex_digits):
    with open(path, "w") as f:
        f.write(hex_digits + "\n")
    os.chmod(path, 0o600)
    return path


def iris_probabilities(srv):
    tensor = httpclient.InferInput("X", list(IRIS.shape), "FP32")
    tensor.set_data_from_numpy(IRIS)
    result = httpclient.InferenceServerClient(srv.address).infer("iris", [tensor], outputs=[httpclient.InferRequestedOutput("probabilities")])
    return result.as_numpy("probabilities")


def stored_files(data_dir):
    return sorted(glob.glob(os.path.join(data_dir, "data", "artifacts", "sha256", "*")))


def distinctive_runs(path, count=8, width=32):
    """Byte runs from inside a file, to look for in what is stored."""
    with open(path, "rb") as f:
        data = f.read()
    step = len(data) // (count + 1)
    return [data[step * i:step * i + width] for i in range(1, count + 1)]


@pytest.fixture()
def data_dir():
    path = tempfile.mkdtemp(prefix="yunmo-encryption-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_models_are_encrypted_at_rest_and_served_only_with_the_key(data_dir):
    key = write_key(os.path.join(data_dir, "model.key"), "5e" * 32)
    iris_file = fixture_path("iris_mlp.onnx")

    # A plaintext store from before encryption was turned on.
    srv = Server(data_dir)
    srv.push_file("iris", iris_file)
    expected = iris_probabilities(srv)
    assert srv.stop() == 0

    # Started with a key, the existing file is sealed in place and a GGUF upload is sealed on commit.
    srv = Server(data_dir, env={"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": key})
    np.testing.assert_array_equal(iris_probabilities(srv), expected)
    srv.push_file("smollm2", SMOLLM)
    answer = chat(srv)
    assert answer.choices[0].message.content and answer.usage.completion_tokens > 0
    assert srv.stop() == 0

    files = stored_files(data_dir)
    assert len(files) == 2, files
    needles = distinctive_runs(iris_file) + distinctive_runs(SMOLLM)
    for path in files:
        with open(path, "rb") as f:
            stored = f.read()
        assert stored.startswith(b"YMSEAL01"), path
        assert not any(needle in stored for needle in needles), f"{path} holds bytes of a model file in plaintext"
    assert os.listdir(os.path.join(data_dir, "data", "artifacts", "staging")) == []

    # Restarted with the same key, both models load from their sealed files and answer the same.
    srv = Server(data_dir, env={"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": key})
    assert_serves(srv, expected, answer)
    assert srv.stop() == 0

    # Without the key, or with another one, nothing is served and the error says why.
    wrong = write_key(os.path.join(data_dir, "wrong.key"), "a7" * 32)
    for env, expected_message in [({}, "storage.encryption_key_file"), ({"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": wrong}, "not with the configured key")]:
        srv = Server(data_dir, env=env)
        assert_refused(srv, expected_message)
        assert srv.stop() == 0
    for path in files:
        with open(path, "rb") as f:
            assert f.read(8) == b"YMSEAL01", "a refused start changed a stored file"

    # Rotation: a new key with the old one listed re-encrypts every file at start; then the new key alone
    # serves the same answers and the old key is refused.
    new_key = write_key(os.path.join(data_dir, "new.key"), "c3" * 32)
    srv = Server(data_dir, env={"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": new_key, "YUNMO__STORAGE__PREVIOUS_ENCRYPTION_KEY_FILES": json.dumps([key])})
    assert srv.stop() == 0
    assert os.listdir(os.path.join(data_dir, "data", "artifacts", "staging")) == []
    srv = Server(data_dir, env={"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": new_key})
    assert_serves(srv, expected, answer)
    assert srv.stop() == 0
    srv = Server(data_dir, env={"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": key})
    assert_refused(srv, "not with the configured key")
    assert srv.stop() == 0


def chat(srv):
    llm = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    return llm.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Say hi."}], temperature=0, seed=1, max_tokens=8)


def assert_serves(srv, expected_probabilities, expected_answer):
    """Both models load from their sealed files and answer as before."""
    np.testing.assert_array_equal(iris_probabilities(srv), expected_probabilities)
    assert chat(srv).choices[0].message.content == expected_answer.choices[0].message.content


def assert_refused(srv, expected_message):
    """Both models answer 503 with `expected_message`, over V2 REST and the OpenAI API."""
    status, body = srv.request("POST", "/v2/models/iris/infer",
                               {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
    assert status == 503 and expected_message in body.decode(), (status, body)
    with pytest.raises(openai.APIStatusError) as error:
        openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0).completions.create(model="smollm2", prompt="hi", max_tokens=2)
    assert error.value.status_code == 503 and expected_message in str(error.value)


def test_a_bad_key_file_stops_the_server_with_a_message_naming_it(data_dir):
    short = os.path.join(data_dir, "short.key")
    with open(short, "w") as f:
        f.write("abcd")
    good = write_key(os.path.join(data_dir, "good.key"), "5e" * 32)
    missing = os.path.join(data_dir, "missing.key")
    cases = [
        ({"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": short}, ["64 hex digits", short]),
        ({"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": missing}, ["cannot read the encryption key file", missing]),
        ({"YUNMO__STORAGE__ENCRYPTION_KEY_FILE": good, "YUNMO__STORAGE__PREVIOUS_ENCRYPTION_KEY_FILES": json.dumps([missing])}, [missing]),
        ({"YUNMO__STORAGE__PREVIOUS_ENCRYPTION_KEY_FILES": json.dumps([good])}, ["needs storage.encryption_key_file"]),
    ]
    for env, expected in cases:
        result = subprocess.run([BINARY, "serve", "--http-port", "0", "--grpc-port", "0", "--data-dir", os.path.join(data_dir, "data")],
                                env={**os.environ, "YUNMO__AUTH__ENABLED": "false", **env}, capture_output=True, timeout=60)
        assert result.returncode != 0
        assert all(text in result.stderr.decode() for text in expected), result.stderr
