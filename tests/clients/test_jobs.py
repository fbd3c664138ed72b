"""Training jobs end to end on the real binary: CSV files uploaded through /api/v1/files, jobs created
through /api/v1/jobs and the CLI, trained in a child process, served as new versions and called with
tritonclient. Quality is checked against scikit-learn on the same split (the reference is computed here);
the served version's answers must reproduce the job's own evaluation."""
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, log_loss, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import BINARY, Server

ADMIN = "ym_jobsadmin_" + "J" * 43
LEASE_S = 2


def csv_text(frame):
    out = io.StringIO()
    frame.to_csv(out, index=False)
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def srv():
    data_dir = tempfile.mkdtemp(prefix="yunmo-jobs-")
    env = {"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN, "YUNMO__JOBS__LEASE_S": str(LEASE_S),
           "YUNMO__JOBS__MAX_FILE_BYTES": "3000000"}
    server = Server(data_dir, env=env)
    server.key = ADMIN
    server.env = env
    server.keys = {}
    for tenant in ("alpha", "beta"):
        status, body = server.request("POST", "/api/v1/tenants", {"name": tenant})
        assert status == 201, body
        status, body = server.request("POST", "/api/v1/keys", {"tenant": tenant, "scopes": ["models:write", "models:read", "infer"]})
        assert status == 201, body
        server.keys[tenant] = json.loads(body)["key"]
    yield server
    if server.process.poll() is None:
        assert server.stop() == 0
    shutil.rmtree(data_dir, ignore_errors=True)


def upload(srv, data, key, filename="data.csv", purpose="train"):
    status, body = srv.request("POST", f"/api/v1/files?filename={filename}&purpose={purpose}", data, {"Content-Type": "text/csv"}, key=key)
    assert status == 201, body
    return json.loads(body)


def create(srv, body, key):
    status, answer = srv.request("POST", "/api/v1/jobs", body, key=key)
    assert status == 201, answer
    return json.loads(answer)


def wait(srv, job_id, key, until=("succeeded", "failed", "cancelled"), timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, body = srv.request("GET", f"/api/v1/jobs/{job_id}", key=key)
        assert status == 200, body
        job = json.loads(body)
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {until} in {timeout} s: {job}")




def versions(srv, model, key):
    status, body = srv.request("GET", f"/api/v1/models/{model}/versions", key=key)
    assert status == 200, body
    listed = json.loads(body)
    return listed["versions"] if isinstance(listed, dict) else listed


def infer_columns(srv, model, version, frame, outputs):
    inputs = []
    for column in frame.columns:
        values = frame[column].to_numpy()
        if values.dtype == object:
            tensor = httpclient.InferInput(column, [len(values), 1], "BYTES")
            tensor.set_data_from_numpy(values.reshape(-1, 1).astype(object))
        else:
            tensor = httpclient.InferInput(column, [len(values), 1], "FP32")
            tensor.set_data_from_numpy(values.astype(np.float32).reshape(-1, 1))
        inputs.append(tensor)
    client = httpclient.InferenceServerClient(srv.address)
    result = client.infer(model, inputs, model_version=str(version), outputs=[httpclient.InferRequestedOutput(name) for name in outputs],
                          headers={"Authorization": f"Bearer {srv.keys['alpha']}"})
    return [result.as_numpy(name) for name in outputs]


def test_ridge_on_diabetes_matches_scikit_learn_and_the_served_version_reproduces_its_evaluation(srv):
    frame = datasets.load_diabetes(as_frame=True).frame
    train, valid = train_test_split(frame, test_size=0.2, random_state=0)
    key = srv.keys["alpha"]
    training = upload(srv, csv_text(train), key, "diabetes-train.csv")
    validation = upload(srv, csv_text(valid), key, "diabetes-valid.csv", "validation")
    assert training["rows"] == len(train) and training["columns"] == list(frame.columns)
    job = create(srv, {"kind": "train", "model": "diabetes_ridge", "training_file": training["id"], "validation_file": validation["id"],
                       "params": {"family": "linear_regression", "target": "target", "l2": 1.0}}, key)
    assert job["status"] == "queued" and job["model"] == "diabetes_ridge"
    job = wait(srv, job["id"], key)
    assert job["status"] == "succeeded", job
    features = [column for column in frame.columns if column != "target"]
    reference = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(train[features], train["target"])
    expected = r2_score(valid["target"], reference.predict(valid[features]))
    # The same model (ridge on standardised features, unpenalised intercept): the same figure to rounding.
    assert abs(job["metrics"]["r2"] - expected) < 1e-6, (job["metrics"], expected)
    (prediction,) = infer_columns(srv, "diabetes_ridge", job["result_version"], valid[features], ["prediction"])
    served = r2_score(valid["target"], prediction[:, 0].astype(np.float64))
    assert abs(served - job["metrics"]["r2"]) < 1e-4, (served, job["metrics"])
    status, body = srv.request("GET", f"/api/v1/models/diabetes_ridge/versions/{job['result_version']}", key=key)
    provenance = json.loads(body)["provenance"]
    assert provenance["job"] == job["id"] and provenance["method"] == "linear_regression"
    assert provenance["training_file"] == training["id"] and provenance["metrics"] == job["metrics"]
    status, body = srv.request("GET", f"/api/v1/jobs/{job['id']}/events", key=key)
    messages = [event["message"] for event in json.loads(body)["data"]]
    assert messages[0].startswith("Job created") and messages[-1].startswith("Succeeded: version"), messages


def test_logistic_regression_on_iris_matches_scikit_learn_with_text_labels(srv):
    iris = datasets.load_iris(as_frame=True)
    frame = iris.frame.copy()
    frame["species"] = [iris.target_names[t] for t in frame.pop("target")]
    train, valid = train_test_split(frame, test_size=0.3, random_state=1, stratify=frame["species"])
    key = srv.keys["alpha"]
    training = upload(srv, csv_text(train), key)
    validation = upload(srv, csv_text(valid), key, purpose="validation")
    job = create(srv, {"kind": "train", "model": "iris_logistic", "training_file": training["id"], "validation_file": validation["id"],
                       "params": {"family": "logistic_regression", "target": "species"}}, key)
    job = wait(srv, job["id"], key)
    assert job["status"] == "succeeded", job
    features = list(iris.feature_names)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(train[features], train["species"])
    probabilities = reference.predict_proba(valid[features])
    assert abs(job["metrics"]["accuracy"] - accuracy_score(valid["species"], reference.predict(valid[features]))) <= 1 / len(valid) + 1e-9
    assert abs(job["metrics"]["log_loss"] - log_loss(valid["species"], probabilities, labels=reference.classes_)) < 0.01, job["metrics"]
    label, scores = infer_columns(srv, "iris_logistic", job["result_version"], valid[features], ["label", "probabilities"])
    served_accuracy = float(np.mean([value.decode() == truth for value, truth in zip(label[:, 0], valid["species"])]))
    assert abs(served_accuracy - job["metrics"]["accuracy"]) < 1e-9
    assert scores.shape == (len(valid), 3) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    status, body = srv.request("GET", f"/api/v1/models/iris_logistic/versions/{job['result_version']}", key=key)
    assert json.loads(body)["config"]["labels"] == ["setosa", "versicolor", "virginica"]


def test_mlp_and_kmeans_train_and_serve(srv):
    iris = datasets.load_iris(as_frame=True)
    frame = iris.frame.rename(columns={"target": "species"})
    key = srv.keys["alpha"]
    training = upload(srv, csv_text(frame), key)
    mlp = create(srv, {"kind": "train", "model": "iris_mlp_trained", "training_file": training["id"],
                       "params": {"family": "mlp_classifier", "target": "species",
                                  "hidden_layers": [16], "epochs": 300, "learning_rate": 0.01, "seed": 3}}, key)
    features = list(iris.feature_names)
    kmeans = create(srv, {"kind": "train", "model": "iris_clusters", "training_file": training["id"],
                          "params": {"family": "kmeans", "features": features, "clusters": 3, "seed": 0, "validation_fraction": 0}}, key)
    mlp, kmeans = wait(srv, mlp["id"], key), wait(srv, kmeans["id"], key)
    assert mlp["status"] == "succeeded" and mlp["metrics"]["accuracy"] >= 0.9, mlp
    assert kmeans["status"] == "succeeded", kmeans
    reference = KMeans(n_clusters=3, n_init=10, random_state=0).fit(StandardScaler().fit_transform(frame[features]))
    # Inertia on the standardised features, within 1% of scikit-learn's best of ten starts.
    assert abs(kmeans["metrics"]["train_inertia"] - reference.inertia_) <= 0.01 * reference.inertia_, (kmeans["metrics"], reference.inertia_)
    cluster, distances = infer_columns(srv, "iris_clusters", kmeans["result_version"], frame[features], ["cluster", "distances"])
    assert cluster.shape == (150, 1) and set(cluster[:, 0]) == {0, 1, 2}
    assert np.isclose(distances.min(axis=1).sum(), kmeans["metrics"]["train_inertia"], rtol=1e-3)


def test_bad_files_and_options_get_clear_errors(srv):
    key = srv.keys["alpha"]
    for data, needle in [(b"", "empty"), (b"a,b\n", "no data rows"), (b"a,b\n1,2\n3\n", "line 3"), (b"a,a\n1,2\n", "appears twice")]:
        status, body = srv.request("POST", "/api/v1/files", data, {"Content-Type": "text/csv"}, key=key)
        assert status == 400 and needle in json.loads(body)["error"]["message"], (data, body)
    status, body = srv.request("POST", "/api/v1/files", b"a\n" + b"1\n" * 1_600_000, {"Content-Type": "text/csv"}, key=key)
    assert status == 413 and "jobs.max_file_bytes" in json.loads(body)["error"]["message"], body
    file = upload(srv, b"x,y\n1,2\n2,oops\n3,5\n4,6\n5,7\n", key)
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "train", "model": "bad", "training_file": file["id"],
                                                        "params": {"family": "linear_regression", "target": "z"}}, key=key)
    assert status == 400 and "params.target" in json.loads(body)["error"]["message"] and "no column 'z'" in body.decode(), body
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "train", "model": "bad", "training_file": file["id"],
                                                        "params": {"family": "ridge", "target": "y"}}, key=key)
    assert status == 400 and "params" in json.loads(body)["error"]["message"], body
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "train", "model": "bad", "training_file": "file-missing",
                                                        "params": {"family": "linear_regression", "target": "y"}}, key=key)
    assert status == 400 and "training_file" in json.loads(body)["error"]["message"], body
    job = create(srv, {"kind": "train", "model": "bad", "training_file": file["id"], "params": {"family": "linear_regression", "target": "y"}}, key)
    job = wait(srv, job["id"], key)
    assert job["status"] == "failed" and "line 3, column 'y': 'oops' is not a finite number" in job["error"], job
    assert srv.request("GET", "/api/v1/models/bad", key=key)[0] == 404, "a failed job makes no model"


def test_a_tenants_jobs_and_files_are_invisible_to_another(srv):
    alpha, beta = srv.keys["alpha"], srv.keys["beta"]
    file = upload(srv, b"x,y\n1,2\n2,4\n3,6\n4,8\n5,10\n", alpha)
    job = create(srv, {"kind": "train", "model": "secret", "training_file": file["id"], "params": {"family": "linear_regression", "target": "y"}}, alpha)
    for method, path in [("GET", f"/api/v1/jobs/{job['id']}"), ("GET", f"/api/v1/jobs/{job['id']}/events"), ("POST", f"/api/v1/jobs/{job['id']}/cancel"),
                         ("GET", f"/api/v1/files/{file['id']}"), ("GET", f"/api/v1/files/{file['id']}/content"), ("DELETE", f"/api/v1/files/{file['id']}")]:
        status, body = srv.request(method, path, key=beta)
        assert status == 404, (method, path, body)
    assert job["id"] not in srv.request("GET", "/api/v1/jobs", key=beta)[1].decode()
    assert file["id"] not in srv.request("GET", "/api/v1/files", key=beta)[1].decode()
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "train", "model": "stolen", "training_file": file["id"],
                                                        "params": {"family": "linear_regression", "target": "y"}}, key=beta)
    assert status == 400 and "training_file" in body.decode()
    assert wait(srv, job["id"], alpha)["status"] == "succeeded"
    status, body = srv.request("GET", f"/api/v1/files/{file['id']}/content", key=alpha)
    assert status == 200 and body == b"x,y\n1,2\n2,4\n3,6\n4,8\n5,10\n"


def long_job(srv, model, epochs=100000):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 8))
    frame = {f"x{i}": x[:, i] for i in range(8)}
    frame["y"] = x @ rng.normal(size=8) + rng.normal(size=4000) * 0.1
    import pandas
    file = upload(srv, csv_text(pandas.DataFrame(frame)), srv.keys["alpha"])
    return create(srv, {"kind": "train", "model": model, "training_file": file["id"],
                        "params": {"family": "mlp_regressor", "target": "y", "hidden_layers": [32], "epochs": epochs}}, srv.keys["alpha"])


def children(job_id):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    command = f.read()
                if b"job-run" in command and job_id.encode() in command:
                    found.append(int(pid))
            except OSError:
                pass
    return found


def test_cancelling_a_running_job_stops_its_process_and_makes_no_version(srv):
    key = srv.keys["alpha"]
    job = long_job(srv, "cancelled_model")
    job = wait(srv, job["id"], key, until=("running",))
    deadline = time.time() + 10
    while not children(job["id"]) and time.time() < deadline:
        time.sleep(0.1)
    assert children(job["id"]), "the job runs in a child process"
    status, body = srv.request("POST", f"/api/v1/jobs/{job['id']}/cancel", key=key)
    assert status == 200, body
    job = wait(srv, job["id"], key, timeout=10)
    assert job["status"] == "cancelled" and job["result_version"] is None, job
    assert not children(job["id"]), "the child process is gone"
    assert srv.request("GET", "/api/v1/models/cancelled_model", key=key)[0] == 404


def test_a_job_survives_a_server_restart_and_makes_one_version(srv):
    key = srv.keys["alpha"]
    job = long_job(srv, "restarted_model", epochs=1500)
    job = wait(srv, job["id"], key, until=("running",))
    srv.process.send_signal(signal.SIGKILL)
    srv.process.wait(timeout=30)
    srv.log.close()
    deadline = time.time() + 10
    while children(job["id"]) and time.time() < deadline:
        time.sleep(0.1)
    assert not children(job["id"]), "the child dies with the server"
    restarted = Server(srv.data_dir, env=srv.env)
    srv.process, srv.log, srv.address, srv.url, srv.grpc_address = restarted.process, restarted.log, restarted.address, restarted.url, restarted.grpc_address
    job = wait(srv, job["id"], key, timeout=300)
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    assert [v["version"] for v in versions(srv, "restarted_model", key)] == [job["result_version"]]


def test_the_cli_trains_with_a_progress_bar_and_prints_the_metrics(srv, tmp_path):
    iris = datasets.load_iris(as_frame=True)
    path = tmp_path / "iris.csv"
    path.write_bytes(csv_text(iris.frame))
    env = {**os.environ, "YUNMO_URL": srv.url, "YUNMO_API_KEY": srv.keys["alpha"]}
    done = subprocess.run([BINARY, "jobs", "create", "train", "--model", "cli_iris", "--file", str(path), "--family", "logistic_regression",
                           "--target", "target", "--param", "max_iter=300"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "succeeded: version 1 of model 'cli_iris'" in done.stdout and "accuracy" in done.stdout, done.stdout
    listed = subprocess.run([BINARY, "jobs", "ls"], env=env, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and "cli_iris" in listed.stdout
    failed = subprocess.run([BINARY, "jobs", "create", "train", "--model", "cli_iris", "--file", str(path), "--family", "linear_regression",
                             "--target", "nope"], env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "params.target" in failed.stderr, failed.stderr


def test_matrix_factorization_on_movielens_recommends_and_refuses_unknown_ids(srv):
    import pandas
    from conftest import CACHE
    ratings = pandas.read_csv(os.path.join(CACHE, "data", "ml-100k.inter"), sep="\t")
    ratings.columns = ["user", "item", "rating", "timestamp"]
    ratings = ratings[["user", "item", "rating"]].astype({"user": str, "item": str})
    train, valid = train_test_split(ratings, test_size=0.2, random_state=0)
    key = srv.keys["alpha"]
    training = upload(srv, csv_text(train), key, "ml-100k-train.csv")
    validation = upload(srv, csv_text(valid), key, "ml-100k-valid.csv", "validation")
    job = create(srv, {"kind": "train", "model": "movies", "training_file": training["id"], "validation_file": validation["id"],
                       "params": {"family": "matrix_factorization", "target": "rating", "seed": 0}}, key)
    job = wait(srv, job["id"], key, timeout=300)
    assert job["status"] == "succeeded", job
    metrics = job["metrics"]
    # Predicting the mean gives about 1.13; biased MF reaches 0.91-0.94 on this data.
    assert metrics["rmse"] <= 0.95 and metrics["rmse_of_the_mean"] > 1.1, metrics
    known_users, known_items = set(train["user"]), set(train["item"])
    warm = valid[valid["user"].isin(known_users) & valid["item"].isin(known_items)]
    assert len(warm) > 0.99 * len(valid)
    served = []
    for start in range(0, len(warm), 1024):
        (chunk,) = infer_columns(srv, "movies", job["result_version"], warm[["user", "item"]].iloc[start:start + 1024], ["rating"])
        served.extend(chunk[:, 0])
    served_rmse = float(np.sqrt(np.mean((np.array(served) - warm["rating"].to_numpy()) ** 2)))
    # The job's figure also counts the few validation rows whose user or item never occurs in training.
    assert abs(served_rmse - metrics["rmse"]) < 0.005, (served_rmse, metrics)
    rating, top_items, top_scores = infer_columns(srv, "movies", job["result_version"], warm[["user", "item"]].head(1024),
                                                  ["rating", "top_items", "top_scores"])
    assert top_items.shape == (1024, 10) and top_scores.shape == (1024, 10)
    assert np.all(np.diff(top_scores, axis=1) <= 1e-6), "top scores come best first"
    assert all(item.decode() in known_items for item in top_items[0])
    unknown = pandas.DataFrame({"user": ["no-such-user"], "item": [next(iter(known_items))]})
    with pytest.raises(Exception) as refused:
        infer_columns(srv, "movies", job["result_version"], unknown, ["rating"])
    assert "400" in str(refused.value) or "known_values" in str(refused.value), refused.value
    assert "element 0 ('no-such-user')" in str(refused.value)


def test_a_trained_mlp_is_pruned_and_quantised_into_smaller_versions_that_agree_with_it(srv):
    iris = datasets.load_iris(as_frame=True)
    frame = iris.frame.rename(columns={"target": "species"})
    key = srv.keys["alpha"]
    training = upload(srv, csv_text(frame), key)
    parent = wait(srv, create(srv, {"kind": "train", "model": "iris_wide", "training_file": training["id"],
                                    "params": {"family": "mlp_classifier", "target": "species", "hidden_layers": [64],
                                               "epochs": 300, "learning_rate": 0.01, "seed": 1}}, key)["id"], key)
    assert parent["status"] == "succeeded", parent
    features = list(iris.feature_names)
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "optimise", "model": "iris_wide", "params": {"method": "prune", "epochs": 3}}, key=key)
    assert status == 400 and "epochs" in body.decode(), body
    pruned = wait(srv, create(srv, {"kind": "optimise", "model": "iris_wide", "version": parent["result_version"],
                                    "params": {"method": "prune", "keep_fraction": 0.75, "min_cosine": 0.95, "min_top1": 0.95}}, key)["id"], key)
    assert pruned["status"] == "succeeded" and pruned["parent_version"] == parent["result_version"], pruned["error"]
    assert pruned["metrics"]["size_ratio"] < 0.9 and pruned["metrics"]["min_top1"] >= 0.95, pruned["metrics"]
    status, body = srv.request("GET", f"/api/v1/models/iris_wide/versions/{pruned['result_version']}", key=key)
    record = json.loads(body)
    assert record["provenance"]["parent_version"] == parent["result_version"] and record["provenance"]["method"] == "prune"
    layer = record["provenance"]["details"]["rewrite"]["layers"][0]
    assert (layer["hidden"], layer["kept"]) == (64, 48), layer
    assert record["config"]["labels"] == ["0", "1", "2"], "the pruned version serves as its parent did"
    accuracy = {}
    for version in (parent["result_version"], pruned["result_version"]):
        (label,) = infer_columns(srv, "iris_wide", version, frame[features], ["label"])
        accuracy[version] = float(np.mean([value.decode() == str(truth) for value, truth in zip(label[:, 0], frame["species"])]))
    assert accuracy[pruned["result_version"]] >= accuracy[parent["result_version"]] - 0.05, accuracy
    # The job measured the same: both models' accuracy on the parent's data (here its 150 training rows).
    assert abs(pruned["metrics"]["parent_accuracy"] - accuracy[parent["result_version"]]) < 1e-9, pruned["metrics"]
    assert abs(pruned["metrics"]["result_accuracy"] - accuracy[pruned["result_version"]]) < 1e-9, pruned["metrics"]
    quantised = wait(srv, create(srv, {"kind": "optimise", "model": "iris_wide", "version": parent["result_version"],
                                       "params": {"method": "dynamic_int8", "min_elements": 1}}, key)["id"], key)
    assert quantised["status"] == "succeeded" and quantised["metrics"]["min_cosine"] >= 0.99, quantised
    # Refused when the agreement asked for cannot be met, and nothing is registered.
    strict = wait(srv, create(srv, {"kind": "optimise", "model": "iris_wide", "version": parent["result_version"],
                                    "params": {"method": "prune", "keep_fraction": 0.02, "min_cosine": 1.0}}, key)["id"], key)
    assert strict["status"] == "failed" and "agrees too little" in strict["error"] and strict["result_version"] is None, strict
    assert [v["version"] for v in versions(srv, "iris_wide", key)] == [1, 2, 3]


def test_dynamic_int8_of_a_float_encoder_agrees_with_its_parent_and_with_onnx_runtimes_quantiser(srv, tmp_path):
    from conftest import CACHE
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import onnxruntime
    parent_path = os.path.join(CACHE, "models", "paraphrase-minilm-l3-fp32.onnx")
    key = srv.keys["alpha"]
    status, body = srv.request("POST", "/api/v1/models", {"name": "paraphrase"}, key=key)
    assert status == 201, body
    with open(parent_path, "rb") as f:
        status, body = srv.request("POST", "/api/v1/models/paraphrase/versions", f.read(), {"Content-Type": "application/octet-stream"}, key=key)
    assert status == 201, body
    job = wait(srv, create(srv, {"kind": "optimise", "model": "paraphrase", "params": {"method": "dynamic_int8"}}, key)["id"], key, timeout=600)
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["size_ratio"] < 0.3 and job["metrics"]["min_cosine"] >= 0.99, job["metrics"]
    # Real sentences (token ids of the BERT uncased vocabulary both models share), through tritonclient.
    ids = np.array([[101, 1037, 2158, 2003, 5983, 2833, 1012, 102, 0, 0], [101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 102]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    inputs = []
    for name, values in (("input_ids", ids), ("attention_mask", mask)):
        tensor = httpclient.InferInput(name, list(values.shape), "INT64")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    client = httpclient.InferenceServerClient(srv.address)
    served = {}
    for version in (1, job["result_version"]):
        result = client.infer("paraphrase", inputs, model_version=str(version), outputs=[httpclient.InferRequestedOutput("461")],
                              headers={"Authorization": f"Bearer {key}"})
        served[version] = result.as_numpy("461")
    cosine = lambda a, b: float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    for row in range(2):
        assert cosine(served[1][row], served[job["result_version"]][row]) >= 0.99
    # ONNX Runtime's own quantiser on the same parent (per channel, int8 weights) is the oracle.
    oracle_path = str(tmp_path / "oracle.onnx")
    quantize_dynamic(parent_path, oracle_path, per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    oracle = onnxruntime.InferenceSession(oracle_path, providers=["CPUExecutionProvider"]).run(["461"], {"input_ids": ids, "attention_mask": mask})[0]
    for row in range(2):
        assert cosine(oracle[row], served[job["result_version"]][row]) >= 0.995, row
    # ONNX Runtime's own graph optimisations, saved: the same outputs.
    fused = wait(srv, create(srv, {"kind": "optimise", "model": "paraphrase", "version": 1, "params": {"method": "ort_optimize"}}, key)["id"], key, timeout=600)
    assert fused["status"] == "succeeded" and fused["metrics"]["min_cosine"] >= 0.9999, fused
    report = versions(srv, "paraphrase", key)[-1]["provenance"]["details"]
    assert report["rewrite"] == {"level": "extended"} and report["load_ms"]["result"] > 0, report


def test_smollm2_requantised_by_llama_cpp_still_answers_and_reports_its_perplexity(srv):
    from conftest import CACHE
    from openai import OpenAI
    key = srv.keys["alpha"]
    status, body = srv.request("POST", "/api/v1/models", {"name": "smollm2"}, key=key)
    assert status == 201, body
    with open(os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf"), "rb") as f:
        status, body = srv.request("POST", "/api/v1/models/smollm2/versions", f.read(), {"Content-Type": "application/octet-stream"}, key=key)
    assert status == 201, body
    status, body = srv.request("POST", "/api/v1/jobs", {"kind": "optimise", "model": "smollm2", "params": {"method": "dynamic_int8"}}, key=key)
    assert status == 400 and "applies to onnx models" in body.decode(), body
    job = wait(srv, create(srv, {"kind": "optimise", "model": "smollm2", "params": {"method": "requantize", "type": "Q4_0"}}, key)["id"], key, timeout=600)
    assert job["status"] == "succeeded", job["error"]
    metrics = job["metrics"]
    assert metrics["size_ratio"] < 1.0 and metrics["perplexity_result"] <= 1.25 * metrics["perplexity_parent"], metrics
    # The newest version serves the model's name: the chat goes to the re-quantised one.
    assert job["result_version"] == 2
    client = OpenAI(base_url=srv.url + "/v1", api_key=key)
    reply = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=16,
                                           messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in reply.choices[0].message.content, reply
    status, body = srv.request("GET", "/api/v1/models/smollm2/versions/2", key=key)
    report = json.loads(body)["provenance"]["details"]
    assert report["type"] == "Q4_0" and report["perplexity"]["tokens"] > 100, report


@pytest.mark.parametrize("encoding", ["one_hot", "index"])
def test_text_categories_are_encoded_inside_the_served_graph(srv, encoding):
    import pandas
    rng = np.random.default_rng(5)
    colors = rng.choice(["red", "green", "blue", "dark red"], size=600)
    size = rng.normal(size=600)
    # The class depends on the colour and the size; the colour arrives as text.
    score = np.where(colors == "red", 1.5, 0.0) + np.where(colors == "blue", -1.5, 0.0) + np.where(colors == "dark red", 3.0, 0.0) + size
    frame = pandas.DataFrame({"color": colors, "size": size, "label_class": np.where(score > 0.5, "yes", "no")})
    key = srv.keys["alpha"]
    training = upload(srv, csv_text(frame), key)
    job = wait(srv, create(srv, {"kind": "train", "model": f"colors_{encoding}", "training_file": training["id"],
                                 "params": {"family": "logistic_regression", "target": "label_class", "encoding": encoding,
                                            "validation_fraction": 0}}, key)["id"], key)
    assert job["status"] == "succeeded", job["error"]
    features = frame[["color", "size"]].copy()
    features["color"] = features["color"].astype(object)
    (label,) = infer_columns(srv, f"colors_{encoding}", job["result_version"], features, ["label"])
    served = float(np.mean([value.decode() == truth for value, truth in zip(label[:, 0], frame["label_class"])]))
    assert abs(served - job["metrics"]["train_accuracy"]) < 1e-9, (served, job["metrics"])
    if encoding == "one_hot":
        assert served > 0.8, served
    # An unseen colour is encoded as nothing (one-hot zeros / index -1), never an error.
    (unseen,) = infer_columns(srv, f"colors_{encoding}", job["result_version"], pandas.DataFrame({"color": np.array(["purple"], dtype=object), "size": [0.0]}), ["label"])
    assert unseen.shape == (1, 1)
