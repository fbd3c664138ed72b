#!/usr/bin/env python3
"""Training time and peak memory: Yunmo's trainers against scikit-learn, same data, same core.

Usage: bench/train.py --binary target/release/yunmo [--rows 10000,100000,1000000] [--families ...] [--rounds 1]

For each family and size it generates a dataset (numeric features, 10 columns; a linear target with noise,
or three classes from a linear score; ratings from low-rank factors for matrix factorisation), writes it as
CSV, and runs, each pinned to CPU 0 with `taskset`:
- Yunmo: `yunmo job-run SPEC` — the child process a job runs in, without the server: reading and checking
  the CSV, the split, the fit, the evaluation and the ONNX export;
- scikit-learn: reading the same CSV with pandas, the same split, StandardScaler + the same model with the
  same options (Ridge(alpha=1), LogisticRegression(C=1, lbfgs), MLPClassifier/Regressor with the same layers,
  epochs and batch, KMeans(k-means++)), and the same metric.
Peak memory is each process's maximum resident set (getrusage of the child). The table gives seconds, peak
MiB, the metric each reached, and Yunmo / scikit-learn ratios (below 1: Yunmo faster or smaller).
Build the binary first: `cargo build --release -p yunmo-server`.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

SKLEARN = r'''
import json, sys, time
import numpy as np, pandas
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn import metrics
family, path, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
frame = pandas.read_csv(path)
target = params.get("target")
features = [c for c in frame.columns if c != target]
if family == "kmeans":
    from sklearn.cluster import KMeans
    model = make_pipeline(StandardScaler(), KMeans(n_clusters=params["clusters"], n_init=params.get("restarts", 4), random_state=0))
    model.fit(frame[features])
    print(json.dumps({"metric": float(model[-1].inertia_)}))
    sys.exit(0)
train, valid = train_test_split(frame, test_size=0.2, random_state=0)
if family == "linear_regression":
    from sklearn.linear_model import Ridge
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(train[features], train[target])
    print(json.dumps({"metric": metrics.r2_score(valid[target], model.predict(valid[features]))}))
elif family == "logistic_regression":
    from sklearn.linear_model import LogisticRegression
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=200)).fit(train[features], train[target])
    print(json.dumps({"metric": metrics.accuracy_score(valid[target], model.predict(valid[features]))}))
elif family == "mlp_classifier":
    from sklearn.neural_network import MLPClassifier
    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=tuple(params["hidden_layers"]), max_iter=params["epochs"],
        batch_size=params["batch_size"], learning_rate_init=params["learning_rate"], alpha=1e-4, n_iter_no_change=10**9, tol=0, random_state=0))
    model.fit(train[features], train[target])
    print(json.dumps({"metric": metrics.accuracy_score(valid[target], model.predict(valid[features]))}))
'''


def dataset(family, rows, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 10))
    columns = {f"x{i}": x[:, i] for i in range(10)}
    score = x @ rng.normal(size=10)
    if family == "linear_regression":
        columns["y"] = score + rng.normal(size=rows)
    elif family in ("logistic_regression", "mlp_classifier"):
        columns["y"] = np.digitize(score + rng.normal(size=rows) * 0.5, np.quantile(score, [1 / 3, 2 / 3]))
    return columns


def write_csv(path, columns):
    names = list(columns)
    data = np.column_stack([columns[name] for name in names])
    integer = [np.issubdtype(np.asarray(columns[name]).dtype, np.integer) for name in names]
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        fmt = ",".join("%d" if whole else "%.6f" for whole in integer)
        np.savetxt(f, data, fmt=fmt)


def measure(command):
    """Seconds and peak RSS (MiB) of a command pinned to CPU 0, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(["taskset", "-c", "0", *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stderr[-2000:]}")
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run the small sizes first.
    return seconds, max(peak, before) / 1024, done.stdout


PARAMS = {
    "linear_regression": {"target": "y", "l2": 1.0},
    "logistic_regression": {"target": "y", "max_iter": 200},
    "mlp_classifier": {"target": "y", "hidden_layers": [32], "epochs": 10, "batch_size": 200, "learning_rate": 0.001},
    "kmeans": {"clusters": 8, "restarts": 4, "validation_fraction": 0},
}
METRIC = {"linear_regression": "r2", "logistic_regression": "accuracy", "mlp_classifier": "accuracy", "kmeans": "train_inertia"}


def yunmo(binary, family, path, work):
    output = os.path.join(work, "out")
    os.makedirs(output, exist_ok=True)
    params = {"family": family, **PARAMS[family]}
    spec = {"job": "bench", "kind": "train", "params": params, "training": path, "validation": None, "output": output,
            "max_rows": 100_000_000, "max_columns": 1000}
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    seconds, peak, stdout = measure([binary, "job-run", spec_path])
    done = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")][-1]
    if done["type"] != "done":
        raise RuntimeError(done)
    return seconds, peak, done["metrics"][METRIC[family]]


def sklearn(family, path):
    params = {**PARAMS[family]}
    seconds, peak, stdout = measure([sys.executable, "-c", SKLEARN, family, path, json.dumps(params)])
    return seconds, peak, json.loads(stdout.splitlines()[-1])["metric"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--families", default=",".join(PARAMS))
    args = parser.parse_args()
    print(f"{'family':<20} {'rows':>8} | {'yunmo s':>8} {'MiB':>6} {'metric':>9} | {'sklearn s':>9} {'MiB':>6} {'metric':>9} | {'time':>5} {'mem':>5}")
    for family in args.families.split(","):
        for rows in [int(n) for n in args.rows.split(",")]:
            with tempfile.TemporaryDirectory(prefix="yunmo-train-bench-") as work:
                path = os.path.join(work, "data.csv")
                write_csv(path, dataset(family, rows))
                # Each measured in a fresh interpreter of this script, so ru_maxrss belongs to one process.
                ours = json.loads(subprocess.run([sys.executable, __file__, "--one", "yunmo", args.binary, family, path, work],
                                                 capture_output=True, text=True, check=True).stdout)
                theirs = json.loads(subprocess.run([sys.executable, __file__, "--one", "sklearn", args.binary, family, path, work],
                                                   capture_output=True, text=True, check=True).stdout)
            print(f"{family:<20} {rows:>8} | {ours[0]:>8.2f} {ours[1]:>6.0f} {ours[2]:>9.4g} | {theirs[0]:>9.2f} {theirs[1]:>6.0f} "
                  f"{theirs[2]:>9.4g} | {ours[0] / theirs[0]:>5.2f} {ours[1] / theirs[1]:>5.2f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        who, binary, family, path, work = sys.argv[2:7]
        result = yunmo(binary, family, path, work) if who == "yunmo" else sklearn(family, path)
        print(json.dumps(result))
    else:
        main()
