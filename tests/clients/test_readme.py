"""README.md's snippets, run as the README shows them. Every fenced block of README.md is either a file of
docs/examples/, verbatim, or one of the few non-runnable blocks listed below, so a new snippet cannot go in
untested. Each example runs against the real server with auth on, as `scripts/demo.sh` starts it (its admin key
read from `yunmo-data/bootstrap-admin.key`), with the demo's models under the demo's names; only the address
is changed, from the demo's port 8080 to the test server's."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

import images
from conftest import BINARY, CACHE, ROOT, Server, fixture_path

README = os.path.join(ROOT, "README.md")
EXAMPLES = os.path.join(ROOT, "docs", "examples")
SMOLLM = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")
TOKENIZER = os.path.join(CACHE, "models", "minilm-tokenizer.json")
DEMO_ADDRESSES = ("localhost:8080", "127.0.0.1:8080")
DEMO_GRPC = ("localhost:8081", "127.0.0.1:8081")
FENCE_LANGUAGE = {".sh": "sh", ".py": "python"}
# The only blocks that are not run: the two top commands and the cluster's (they build, install and serve;
# scripts/test.sh runs this very test) and the CLI synopsis, whose placeholders (NAME, FILE, [--version N]) are
# not runnable.
NOT_RUN = {"scripts/demo.sh\n", "scripts/test.sh\n", "scripts/cluster-demo.sh\n"}
SYNOPSIS_FIRST_LINE = "yunmo serve ["


def fenced_blocks(text):
    """(info string, body) of every fenced code block (``` or ~~~, indented or not) of a Markdown text."""
    blocks, lines, i = [], text.splitlines(keepends=True), 0
    while i < len(lines):
        opening = re.match(r"\s*(`{3,}|~{3,})(.*)$", lines[i])
        i += 1
        if not opening:
            continue
        fence, body = opening.group(1), []
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md: a code block opened with {fence} is never closed"
        i += 1
        blocks.append((opening.group(2).strip(), "".join(body)))
    return blocks


def examples():
    """{file name: text} of docs/examples/."""
    found = {}
    for name in sorted(os.listdir(EXAMPLES)):
        with open(os.path.join(EXAMPLES, name)) as f:
            found[name] = f.read()
    return found


def readme_examples():
    """The example files in the order the README shows them."""
    with open(README) as f:
        bodies = [body for _, body in fenced_blocks(f.read())]
    return [name for body in bodies for name, text in examples().items() if text == body]


def is_synopsis(body):
    return body.startswith(SYNOPSIS_FIRST_LINE) and all(line.startswith("yunmo ") for line in body.splitlines())


def test_every_readme_block_is_an_example_file_or_listed_as_not_runnable():
    with open(README) as f:
        blocks = fenced_blocks(f.read())
    files = examples()
    assert files, "docs/examples/ is empty"
    shown = []
    for info, body in blocks:
        named = [name for name, text in files.items() if text == body]
        if named:
            name = named[0]
            assert info == FENCE_LANGUAGE[os.path.splitext(name)[1]], f"README shows {name} in a ```{info} block"
            shown.append(name)
        else:
            assert body in NOT_RUN or is_synopsis(body), (
                "this README block is neither a file of docs/examples/ (verbatim) nor a listed non-runnable block; "
                f"put it in docs/examples/ so test_readme.py runs it:\n{body}")
    assert sorted(shown) == sorted(files), f"every file of docs/examples/ is shown once in README.md: shown {shown}"
    assert sum(is_synopsis(body) for _, body in blocks) == 1


@pytest.fixture(scope="module")
def demo():
    """A server with auth on and no configured key, as scripts/demo.sh starts it, holding the demo's models; and a
    working folder laid out like the repository root after the demo: yunmo-data/ (with bootstrap-admin.key),
    iris.onnx, and `yunmo` on the PATH."""
    for path in (SMOLLM, TOKENIZER):
        if not os.path.exists(path):
            raise RuntimeError(f"missing {path}: run scripts/fetch-assets.sh smollm minilm (scripts/test.sh does)")
    data_dir = tempfile.mkdtemp(prefix="yunmo-readme-")
    srv = Server(data_dir, env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ""})
    with open(os.path.join(data_dir, "data", "bootstrap-admin.key")) as f:
        srv.key = f.read().strip()
    # The models scripts/demo.sh pushes, under its names and configs.
    srv.push("iris", "iris_mlp.onnx", config={"labels": ["setosa", "versicolor", "virginica"]})
    srv.push_file("smollm2", SMOLLM)
    srv.push("minilm", "minilm.onnx", config={"embedding": {"pooling": "mean", "normalize": True}, "max_batch_size": 64})
    with open(TOKENIZER, "rb") as f:
        status, body = srv.request("PUT", "/api/v1/models/minilm/versions/1/tokenizer", f.read(), {"Content-Type": "application/json"})
    assert status == 200, body
    # The image pipeline, as the demo pushes it (deploy/demo/imagenet-pipeline.json), over EfficientNet-Lite0
    # with the demo's ImageNet labels when they are fetched (npm; scripts/demo.sh does), else class numbers.
    srv.push("efficientnet_lite0", "efficientnet_lite0.onnx", config={"labels": imagenet_labels()})
    status, body = srv.request("POST", "/api/v1/models", {"name": "imagenet", "task": "classification"})
    assert status == 201, body
    with open(os.path.join(ROOT, "deploy", "demo", "imagenet-pipeline.json"), "rb") as f:
        status, body = srv.request("POST", "/api/v1/models/imagenet/versions", f.read(), {"Content-Type": "application/json"})
    assert status == 201, body
    os.makedirs(os.path.join(data_dir, "data", "images"))
    shutil.copy(images.sample_image_path("china.jpg"), os.path.join(data_dir, "data", "images"))
    work = os.path.join(data_dir, "repo")
    os.makedirs(os.path.join(work, "bin"))
    os.symlink(os.path.join(data_dir, "data"), os.path.join(work, "yunmo-data"))
    os.symlink(os.path.abspath(BINARY), os.path.join(work, "bin", "yunmo"))
    shutil.copy(fixture_path("iris_mlp.onnx"), os.path.join(work, "iris.onnx"))
    yield srv, work
    assert srv.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def run_example(demo, name):
    """Runs docs/examples/`name` as the README shows it, with the demo's address replaced by the test server's;
    returns its stdout."""
    srv, work = demo
    with open(os.path.join(EXAMPLES, name)) as f:
        text = f.read()
    assert any(address in text for address in DEMO_ADDRESSES + DEMO_GRPC), f"{name} does not call the demo's address"
    for address in DEMO_ADDRESSES:
        text = text.replace(address, srv.address)
    for address in DEMO_GRPC:
        text = text.replace(address, srv.grpc_address)
    assert ":8080" not in text and ":8081" not in text, f"{name} names port 8080 or 8081 in a form this test does not replace"
    script = os.path.join(work, name)
    with open(script, "w") as f:
        f.write(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YUNMO_", "OPENAI_"))}
    env.update(PATH=os.path.join(work, "bin") + os.pathsep + env.get("PATH", ""), YUNMO_URL=srv.url)
    # keys.sh exports the key itself, from yunmo-data/bootstrap-admin.key; the others run after it, in the same shell.
    if name != "keys.sh":
        env["YUNMO_API_KEY"] = srv.key
    command = ["bash", "-euo", "pipefail", script] if name.endswith(".sh") else [sys.executable, script]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{name} exited with {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert '"error":' not in done.stdout, f"{name} got an error from the server:\n{done.stdout}"
    assert done.stdout.strip(), f"{name} printed nothing\nstderr:\n{done.stderr}"
    return done.stdout


def json_values(text):
    """The JSON values printed one after another (curl adds no newline between responses)."""
    decoder, values, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        value, i = decoder.raw_decode(text, i)
        values.append(value)
    return values


def check_keys(srv, out):
    assert re.search(r'"name": "acme"', out), out
    assert re.search(r"^ym_[a-z0-9]{4,32}_[A-Za-z0-9_-]{20,}$", out, re.M), "keys create prints the new key"
    assert re.search(r"^\w+ +acme +.*models:write,models:read,infer", out, re.M), "keys ls shows acme's key"
    assert '"version": 2' in out, "the priced iris is a new version"
    assert '"sharing":{"public":false,"tenants":["acme"]}' in out
    assert re.search(r"^TENANT +MODEL +REQUESTS", out, re.M), "yunmo usage prints its table"
    status, body = srv.request("GET", "/api/v1/models/iris/versions/2")
    assert status == 200 and json.loads(body)["config"]["price"]["per_request"] == 0.001, body


def check_curl(srv, out):
    created, pushed, inferred = json_values(out)
    assert created["name"] == "flowers" and created["task"] == "classification"
    assert pushed["version"] == 1 and pushed["config"]["instance_count"] == 2
    outputs = {o["name"]: o["data"] for o in inferred["outputs"]}
    assert outputs["label"] == [0], "setosa"
    assert outputs["probabilities"] == pytest.approx([0.995, 0.005, 0.0], abs=0.01)


def check_tritonclient(srv, out):
    # The README says: about [[0.995 0.005 0.000]].
    probabilities = [float(x) for x in re.findall(r"[-+0-9.e]+", out)]
    assert probabilities == pytest.approx([0.995, 0.005, 0.0], abs=0.01), out


def check_openai_curl(srv, out):
    decoder = json.JSONDecoder()
    chat, end = decoder.raw_decode(out)
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["content"].strip(), chat
    done = out.index("data: [DONE]")
    events = [json.loads(line[len("data: "):]) for line in out[end:done].splitlines() if line.startswith("data: ")]
    assert events and "".join(e["choices"][0]["text"] for e in events if e["choices"]).strip(), out[end:done]
    embeddings = json.loads(out[done + len("data: [DONE]"):])
    vector = embeddings["data"][0]["embedding"]
    assert len(vector) == 384 and sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-3)


def check_openai_client(srv, out):
    assert "CompletionUsage(" in out and "completion_tokens=" in out, out
    first_four = ast.literal_eval(out.strip().splitlines()[-1])
    assert len(first_four) == 4 and all(isinstance(x, float) for x in first_four), out


def check_openai_structured(srv, out):
    # The raw JSON answer, then the SDK's parsed object.
    lines = out.strip().splitlines()
    city = json.loads(lines[0])
    assert set(city) == {"name", "country", "population_millions"} and 0 <= city["population_millions"] <= 50, out
    assert lines[1].startswith("name=") and "population_millions=" in lines[1], out


def check_openai_tools(srv, out):
    # The call (finish reason, function, arguments), then the answer written after the tool's result.
    lines = out.strip().splitlines()
    reason, name, arguments = lines[0].split(" ", 2)
    assert (reason, name) == ("tool_calls", "get_weather") and isinstance(json.loads(arguments)["city"], str), out
    assert len(lines) > 1 and lines[1].strip(), out


def imagenet_labels():
    """The demo's ImageNet class names, or `class N` when they are not in the cache."""
    path = os.path.join(CACHE, "models", "imagenet_labels.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return [f"class {index}" for index in range(1000)]


def check_image(srv, out):
    # scikit-learn's china.jpg is a palace: ImageNet class 698, first of the top 5 (about 0.38; 442, bell cote, next at 0.15).
    answer = json.loads(out)
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert answer["model_name"] == "imagenet" and outputs["labels"]["shape"] == [1, 5], answer
    assert outputs["labels"]["data"][0] == imagenet_labels()[698], outputs["labels"]
    assert outputs["scores"]["data"][0] > 0.3 and outputs["scores"]["data"] == sorted(outputs["scores"]["data"], reverse=True), outputs


def check_canary(srv, out):
    assert re.search(r"^v1 +stable +90 ", out, re.M) and re.search(r"^v2 +canary +10 ", out, re.M), out
    assert "every request now goes to version 2" in out, out
    model = json.loads(out.strip().splitlines()[-1])
    assert model["name"] == "fraud" and model["version_policy"] == {"kind": "pinned", "version": 2}, model


def check_langchain(srv, out):
    # The same vector as the openai SDK's for the same text (the README's claim).
    first_four = ast.literal_eval(out.strip().splitlines()[-1])
    status, body = srv.request("POST", "/v1/embeddings", {"model": "minilm", "input": "A man is eating food."})
    assert status == 200, body
    assert first_four == pytest.approx(json.loads(body)["data"][0]["embedding"][:4], abs=1e-5), out


def check_ollama(srv, out):
    # The models the key sees, the greedy answer, the embedding's length.
    lines = out.strip().splitlines()
    assert "smollm2" in ast.literal_eval(lines[0]) and "Paris" in out and lines[-1] == "384", out


def check_anthropic(srv, out):
    # The stop reason and the greedy answer, then the token count of a one-word message.
    first, count = out.strip().splitlines()[0], out.strip().splitlines()[-1]
    assert first.split()[0] in ("end_turn", "max_tokens") and "Paris" in out and int(count) > 0, out


def check_openai_responses(srv, out):
    # The greedy answer, then the continued conversation's answer and whether its prompt held the first turn.
    lines = out.strip().splitlines()
    assert "Paris" in lines[0] and lines[-1].endswith(" True"), out


def check_triton_stats(srv, out):
    # The configuration's inputs (the demo's iris is not batched: max_batch_size 0, so dims keep the batch
    # dimension, as Triton writes them) and the statistics of the iris model.
    assert "'name': 'X'" in out and "'dims': ['-1', '4']}] 0" in out, out
    name, inferences, successes = out.strip().splitlines()[-1].split()
    assert name == "iris" and int(inferences) >= 1 and int(successes) >= 1, out


CHECKS = {"keys.sh": check_keys, "curl.sh": check_curl, "tritonclient_iris.py": check_tritonclient,
          "openai.sh": check_openai_curl, "openai_client.py": check_openai_client, "openai_structured.py": check_openai_structured,
          "openai_tools.py": check_openai_tools, "langchain_embeddings.py": check_langchain,
          "image.sh": check_image, "canary.sh": check_canary, "ollama_chat.py": check_ollama, "anthropic_messages.py": check_anthropic, "triton_stats.py": check_triton_stats,
          "openai_responses.py": check_openai_responses}


def test_every_example_has_a_check():
    assert sorted(CHECKS) == sorted(examples())


@pytest.mark.parametrize("name", readme_examples())
def test_readme_example_runs_as_shown(demo, name):
    srv, _ = demo
    CHECKS[name](srv, run_example(demo, name))
