#!/usr/bin/env python3
"""Side-by-side benchmark: Yunmo and peer model servers, one at a time, on the same machine, models and load.

Usage: bench/run.sh [--duration S] [--warmup S] [--concurrency 1,8,64] [--peers yunmo-noauth,ort-fastapi,mlserver,triton]
                    [--models mlp,efficientnet,minilm]

`yunmo` runs as shipped, with auth on and a key on every request; the `yunmo-noauth` "peer" is the same binary
with auth off, so its ratio is the cost of authentication, access checks, limits and metering.

Each server runs pinned to CPU 0 with one ONNX Runtime intra-op thread and one model instance; the load
generator (bench/loadgen, closed loop) runs pinned to CPU 1. For every model and concurrency it records
requests/s, p50 and p99 latency, server CPU seconds per 1,000 requests (process tree, from /proc) and peak
RSS (sum of VmHWM over the process tree), then prints a table with the ratio Yunmo/peer. The floor is the
same model and input run in-process through ONNX Runtime with no server (one thread, back to back).
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SHARED = os.environ.get("YUNMO_SHARED", os.path.abspath(os.path.join(ROOT, "..", "shared")))
PEERS = os.environ.get("PEERS_DIR", "/tmp/peers")
CACHE = os.environ.get("YUNMO_CACHE", os.path.expanduser("~/.cache/yunmo"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
LOADGEN = os.path.join(TARGET, "release", "yunmo-loadgen")
YUNMO = os.path.join(TARGET, "release", "yunmo")
ORT_LIB = os.path.join(CACHE, "lib", "libonnxruntime.so.1.31.1")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# name -> (fixture file, V2 JSON request body builder)
def mlp_body():
    return {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


def efficientnet_body():
    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
    import images  # noqa: E402  (needs numpy + pillow from the venv)

    x = images.preprocess(images.sample_image_path("china.jpg"))
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": [round(float(v), 6) for v in x.flatten()]}]}


def minilm_body():
    ids = [101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 1998, 2003, 2200, 3407, 2055, 2009, 102]  # 16 tokens
    n = len(ids)
    return {"inputs": [
        {"name": "input_ids", "shape": [1, n], "datatype": "INT64", "data": ids},
        {"name": "attention_mask", "shape": [1, n], "datatype": "INT64", "data": [1] * n},
        {"name": "token_type_ids", "shape": [1, n], "datatype": "INT64", "data": [0] * n},
    ]}


MODELS = {
    "mlp": ("iris_mlp.onnx", mlp_body),
    "efficientnet": ("efficientnet_lite0.onnx", efficientnet_body),
    "minilm": ("minilm.onnx", minilm_body),
}
# Yunmo's per-version configs: dynamic batching on (and, for EfficientNet, a second copy with it off).
YUNMO_CONFIGS = {
    "mlp": {"max_batch_size": 64},
    "efficientnet": {"max_batch_size": 16},
    "efficientnet_nobatch": {"max_batch_size": 0},
    "minilm": {"max_batch_size": 32},
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        except OSError:
            pass
    return total / CLK_TCK


def peak_rss_mb(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def wait_ready(url, seconds=180, expect=None):
    """Waits until `url` answers 200 (and, if `expect` is given, its body contains it)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and (expect is None or expect in r.read()):
                    return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {seconds}s")


def copy_models(work, models, fixtures):
    """Copies each model's ONNX file to WORK/models/<name>.onnx and returns that folder."""
    model_dir = os.path.join(work, "models")
    os.makedirs(model_dir)
    for model in models:
        shutil.copy(os.path.join(fixtures, MODELS[model][0]), os.path.join(model_dir, model + ".onnx"))
    return model_dir


def post(url, body, content_type="application/json", key=None):
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


class Server:
    name = "?"
    grpc = None  # host:port when the server speaks V2 gRPC
    process = None

    def infer_url(self, model):
        return f"{self.url}/v2/models/{model}/infer"

    def health_url(self):
        return self.url + "/v2/health/live"

    def http_auth(self):
        """Extra loadgen arguments that authenticate HTTP requests (none for servers without auth)."""
        return []

    def grpc_auth(self):
        return []

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def spawn(self, cmd, env=None, cwd=None, log_name="server.log"):
        self.log = open(os.path.join(self.work, log_name), "wb")
        self.process = subprocess.Popen(["taskset", "-c", "0"] + cmd, env={**os.environ, **(env or {})}, cwd=cwd,
                                        stdout=self.log, stderr=self.log, start_new_session=True)


BENCH_KEY = "ym_benchadmin_" + "B" * 43


def supported_settings(binary, env):
    """`env` without the YUNMO__SECTION__KEY settings `binary` does not know (an older build, in bench/ab.py,
    refuses unknown settings): read from its `serve --print-config`."""
    out = subprocess.run([binary, "serve", "--print-config"], capture_output=True, text=True, env={**os.environ, **{k: v for k, v in env.items() if not k.startswith("YUNMO__")}})
    if out.returncode != 0:
        return env
    config = json.loads(out.stdout)

    def known(key):
        node = config
        for part in key[len("YUNMO__"):].lower().split("__"):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True
    return {k: v for k, v in env.items() if not k.startswith("YUNMO__") or known(k)}


class Yunmo(Server):
    """Yunmo as shipped: auth on, every request carries an admin key (checked, access-checked and metered)."""
    name = "yunmo"
    auth = True
    binary = YUNMO
    extra_env = {}

    def http_auth(self):
        return ["--header", f"Authorization: Bearer {BENCH_KEY}"] if self.auth else []

    def grpc_auth(self):
        return ["--metadata", f"authorization: Bearer {BENCH_KEY}"] if self.auth else []

    def __init__(self, work, models, fixtures):
        self.work, self.port = work, 18080
        self.grpc = f"127.0.0.1:{self.port + 1}"
        self.url = f"http://127.0.0.1:{self.port}"
        # One core, like the peers: one ONNX Runtime thread and one async runtime thread.
        env = {"YUNMO__BACKENDS__ONNX__INTRA_OP_THREADS": "1", "YUNMO__SERVER__WORKER_THREADS": "1",
               "YUNMO__TELEMETRY__LOG_LEVEL": "warn", "ORT_DYLIB_PATH": ORT_LIB,
               "YUNMO__AUTH__ENABLED": "true" if self.auth else "false", "YUNMO__AUTH__BOOTSTRAP_KEY": BENCH_KEY, **self.extra_env}
        env = supported_settings(self.binary, env)
        key = BENCH_KEY if self.auth else None
        self.spawn([self.binary, "serve", "--http-port", str(self.port), "--grpc-port", str(self.port + 1),
                    "--data-dir", os.path.join(work, "data")], env=env)
        wait_ready(self.url + "/v2/health/ready")
        for model in models:
            variants = [model] + (["efficientnet_nobatch"] if model == "efficientnet" else [])
            for variant in variants:
                post(self.url + "/api/v1/models", json.dumps({"name": variant}).encode(), key=key)
                config = urllib.request.quote(json.dumps(YUNMO_CONFIGS[variant]))
                with open(os.path.join(fixtures, MODELS[model][0]), "rb") as f:
                    post(f"{self.url}/api/v1/models/{variant}/versions?config={config}", f.read(), "application/octet-stream", key=key)


class YunmoNoAuth(Yunmo):
    """The same binary with auth.enabled = false: the difference to `yunmo` is the cost of authentication,
    access checks, limits and metering."""
    name = "yunmo-noauth"
    auth = False


class OrtFastapi(Server):
    name = "ort-fastapi"

    def __init__(self, work, models, fixtures):
        self.work, self.port = work, 18000
        self.url = f"http://127.0.0.1:{self.port}"
        model_dir = copy_models(work, models, fixtures)
        venv = os.path.join(PEERS, "ort-fastapi", "venv")
        self.spawn([os.path.join(venv, "bin", "uvicorn"), "server:app", "--host", "127.0.0.1", "--port", str(self.port),
                    "--workers", "1", "--no-access-log", "--log-level", "warning"],
                   env={"MODEL_DIR": model_dir, "ORT_THREADS": "1"}, cwd=os.path.join(SHARED, "peers", "ort-fastapi"))
        wait_ready(self.url + "/v2/health/ready")


class MLServer(Server):
    name = "mlserver"

    def __init__(self, work, models, fixtures):
        self.work, self.port = work, 18180
        self.url = f"http://127.0.0.1:{self.port}"
        repo = os.path.join(work, "repo")
        os.makedirs(repo)
        shutil.copy(os.path.join(ROOT, "bench", "peers", "mlserver_runtime.py"), repo)
        with open(os.path.join(repo, "settings.json"), "w") as f:
            json.dump({"host": "127.0.0.1", "http_port": self.port, "grpc_port": self.port + 1, "metrics_port": self.port + 2,
                       "debug": False, "parallel_workers": 1}, f)
        for model in models:
            os.makedirs(os.path.join(repo, model))
            shutil.copy(os.path.join(fixtures, MODELS[model][0]), os.path.join(repo, model, "model.onnx"))
            with open(os.path.join(repo, model, "model-settings.json"), "w") as f:
                json.dump({"name": model, "implementation": "mlserver_runtime.OnnxModel", "parameters": {"uri": "./model.onnx"}}, f)
        venv = os.path.join(PEERS, "mlserver", "venv")
        self.spawn([os.path.join(venv, "bin", "mlserver"), "start", "."], cwd=repo,
                   env={"PATH": os.path.join(venv, "bin") + ":" + os.environ["PATH"]})
        for model in models:
            wait_ready(f"{self.url}/v2/models/{model}/ready")


class KServe(Server):
    name = "kserve"

    def __init__(self, work, models, fixtures):
        self.work, self.port = work, 18090
        self.url = f"http://127.0.0.1:{self.port}"
        model_dir = copy_models(work, models, fixtures)
        venv = os.path.join(PEERS, "kserve", "venv")
        self.spawn([os.path.join(venv, "bin", "python"), os.path.join(ROOT, "bench", "peers", "kserve_server.py"),
                    "--model_dir", model_dir, "--http_port", str(self.port), "--enable_grpc", "false",
                    "--enable_latency_logging", "false"])
        for model in models:
            wait_ready(f"{self.url}/v2/models/{model}/ready")


class TorchServe(Server):
    name = "torchserve"

    def __init__(self, work, models, fixtures):
        self.work, self.port = work, 18085
        self.url = f"http://127.0.0.1:{self.port}"
        venv_bin = os.path.join(PEERS, "torchserve", "venv", "bin")
        store = os.path.join(work, "store")
        os.makedirs(store)
        model_dir = copy_models(work, models, fixtures)
        for model in models:
            src = os.path.join(model_dir, model + ".onnx")
            subprocess.run([os.path.join(venv_bin, "torch-model-archiver"), "--model-name", model, "--version", "1.0",
                            "--handler", os.path.join(ROOT, "bench", "peers", "torchserve_handler.py"),
                            "--extra-files", src, "--export-path", store, "--force"], check=True)
        config = os.path.join(work, "config.properties")
        with open(config, "w") as f:
            f.write(f"inference_address=http://127.0.0.1:{self.port}\nmanagement_address=http://127.0.0.1:{self.port + 1}\n"
                    f"metrics_address=http://127.0.0.1:{self.port + 2}\ngrpc_inference_address=127.0.0.1\n"
                    "grpc_management_address=127.0.0.1\ngrpc_inference_port=17070\ngrpc_management_port=17071\n"
                    "disable_token_authorization=true\nenable_model_api=true\ndefault_workers_per_model=1\n"
                    f"model_store={store}\nload_models={','.join(m + '.mar' for m in models)}\n"
                    "install_py_dep_per_model=false\ndisable_system_metrics=true\n")
        logs = os.path.join(work, "logs")
        os.makedirs(logs)
        self.spawn([os.path.join(venv_bin, "torchserve"), "--start", "--foreground", "--ncs", "--ts-config", config,
                    "--model-store", store], cwd=work,
                   env={"PATH": venv_bin + ":" + os.environ["PATH"], "LOG_LOCATION": logs, "METRICS_LOCATION": logs})
        for model in models:
            wait_ready(f"http://127.0.0.1:{self.port + 1}/models/{model}", expect=b'"READY"')

    def infer_url(self, model):
        return f"{self.url}/predictions/{model}"

    def health_url(self):
        return self.url + "/ping"


TRITON_TYPES = {"FP32": "TYPE_FP32", "INT64": "TYPE_INT64", "FP64": "TYPE_FP64", "INT32": "TYPE_INT32"}


def spawn_triton(server, repo):
    """Starts nvidia-pytriton's tritonserver (bench/run.sh --install) on `server.port` (+1 gRPC, +2 metrics)
    with the model repository `repo`."""
    p = os.path.join(PEERS, "triton")
    py = os.path.join(p, "venv", "bin", "python")
    sp = subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    libpy = subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"], text=True).strip()
    env = {"LD_LIBRARY_PATH": f"{sp}/nvidia_pytriton.libs:{libpy}:" + os.environ.get("LD_LIBRARY_PATH", ""),
           "PATH": os.path.join(p, "venv", "bin") + ":" + os.environ["PATH"]}
    server.spawn([os.path.join(p, "server", "bin", "tritonserver"), f"--model-repository={repo}",
                  f"--backend-directory={p}/server/backends", f"--cache-directory={p}/server/caches",
                  "--http-address=127.0.0.1", f"--http-port={server.port}", "--grpc-address=127.0.0.1",
                  f"--grpc-port={server.port + 1}", "--metrics-address=127.0.0.1", f"--metrics-port={server.port + 2}",
                  "--allow-gpu-metrics=false"], env=env)


class Triton(Server):
    name = "triton"

    def __init__(self, work, models, fixtures):
        import onnx  # from the Yunmo venv: reads the signatures for config.pbtxt

        self.work, self.port = work, 18100
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc = f"127.0.0.1:{self.port + 1}"
        repo = os.path.join(work, "repo")
        for model in models:
            os.makedirs(os.path.join(repo, model, "1"))
            src = os.path.join(fixtures, MODELS[model][0])
            shutil.copy(src, os.path.join(repo, model, "1", "model.onnx"))
            shutil.copy(os.path.join(ROOT, "bench", "peers", "triton_model.py"), os.path.join(repo, model, "1", "model.py"))
            graph = onnx.load(src).graph
            init = {i.name for i in graph.initializer}

            def spec(values):
                out = []
                for v in values:
                    if v.name in init:
                        continue
                    t = v.type.tensor_type
                    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
                    v2 = {1: "FP32", 7: "INT64", 11: "FP64", 6: "INT32"}[t.elem_type]
                    out.append(f'{{ name: "{v.name}" data_type: {TRITON_TYPES[v2]} dims: [ {", ".join(map(str, dims))} ] }}')
                return ",\n  ".join(out)

            with open(os.path.join(repo, model, "config.pbtxt"), "w") as f:
                f.write(f'name: "{model}"\nbackend: "python"\nmax_batch_size: 0\n'
                        f"input [\n  {spec(graph.input)}\n]\noutput [\n  {spec(graph.output)}\n]\n"
                        "instance_group [ { kind: KIND_CPU count: 1 } ]\n")
        spawn_triton(self, repo)
        wait_ready(self.url + "/v2/health/ready")
        for model in models:
            wait_ready(f"{self.url}/v2/models/{model}/ready")


PEER_CLASSES = {"yunmo-noauth": (YunmoNoAuth, None),
                "ort-fastapi": (OrtFastapi, "ort-fastapi/venv/bin/uvicorn"),
                "mlserver": (MLServer, "mlserver/venv/bin/mlserver"),
                "triton": (Triton, "triton/server/bin/tritonserver"),
                "kserve": (KServe, "kserve/venv/bin/python"),
                "torchserve": (TorchServe, "torchserve/venv/bin/torchserve")}


def loadgen(args, extra):
    cmd = ["taskset", "-c", "1", LOADGEN] + extra + ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + args.warmup + 120)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(server, args, label, extra):
    before = cpu_seconds(server.process.pid)
    result = loadgen(args, extra)
    used = cpu_seconds(server.process.pid) - before
    result["cpu_s_per_1k"] = used / max(result["requests"], 1) * 1000
    result["label"] = label
    log(f"  {label}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, errors {result['errors']}")
    return result


def run_server(cls, args, fixtures, bodies):
    work = tempfile.mkdtemp(prefix=f"yunmo-bench-{cls.name}-")
    log(f"== {cls.name}")
    server = cls(work, args.models, fixtures)
    rows = []
    try:
        # Transport baseline: a bare GET round trip (client, loopback, HTTP stack) at concurrency 1.
        r = measure(server, args, "GET health c=1", ["http", "--url", server.health_url(), "--method", "GET",
                                                               "--body", bodies[args.models[0]], "--concurrency", "1"])
        rows.append({"server": cls.name, "model": "(health GET)", "concurrency": 1, "protocol": "rest", **r})
        for model in args.models:
            variants = [model] + (["efficientnet_nobatch"] if model == "efficientnet" and cls is Yunmo else [])
            auth = {"http": server.http_auth(), "grpc": server.grpc_auth()}
            for variant in variants:
                for c in args.concurrency:
                    url = server.infer_url(variant)
                    r = measure(server, args, f"{variant} c={c} rest", ["http", "--url", url, "--body", bodies[model], "--concurrency", str(c)] + auth["http"])
                    rows.append({"server": cls.name, "model": variant, "concurrency": c, "protocol": "rest", **r})
                    if model == "efficientnet" and issubclass(cls, (Yunmo, Triton)):
                        r = measure(server, args, f"{variant} c={c} binary", ["http", "--url", url, "--body", bodies["efficientnet.bin"],
                                                                               "--header", f"Inference-Header-Content-Length: {bodies['efficientnet.hdr']}",
                                                                               "--header", "Content-Type: application/octet-stream",
                                                                               "--concurrency", str(c)] + auth["http"])
                        rows.append({"server": cls.name, "model": variant, "concurrency": c, "protocol": "binary", **r})
                    if server.grpc and model in ("mlp", "efficientnet"):
                        r = measure(server, args, f"{variant} c={c} grpc", ["grpc", "--address", server.grpc, "--model", variant,
                                                                             "--body", bodies[model], "--concurrency", str(c)] + auth["grpc"])
                        rows.append({"server": cls.name, "model": variant, "concurrency": c, "protocol": "grpc", **r})
        peak = peak_rss_mb(server.process.pid)
        for row in rows:
            row["peak_rss_mb"] = peak
    finally:
        server.stop()
    shutil.rmtree(work, ignore_errors=True)
    return rows


def floor(args, fixtures, bodies):
    rows = []
    log("== floor (in-process ONNX Runtime, 1 thread)")
    for model in args.models:
        batches = [1, 4, 8, 16] if model == "efficientnet" else [1]
        for b in batches:
            r = loadgen(args, ["floor", "--model", os.path.join(fixtures, MODELS[model][0]), "--body", bodies[model],
                               "--batch", str(b), "--threads", "1", "--library", ORT_LIB])
            log(f"  {model} batch {b}: {r['rps']:.1f} calls/s, {r['rows_per_second']:.1f} rows/s, p50 {r['p50_ms']:.3f} ms")
            rows.append({"server": "floor", "model": model, "batch": b, **r})
    return rows


def table(rows, floors, args):
    lines = []
    peers = [p for p in ["floor"] + list(args.peers)]
    lines.append("| model | protocol | conc | server | req/s | p50 ms | p99 ms | CPU s/1k req | peak RSS MB | Yunmo/peer req/s | Yunmo/peer p99 |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    index = {(r["server"], r["model"], r["protocol"], r["concurrency"]): r for r in rows}
    for model in ["(health GET)"] + [m for m in args.models] + (["efficientnet_nobatch"] if "efficientnet" in args.models else []):
        for protocol in ["rest", "binary", "grpc"]:
            for c in args.concurrency:
                y = index.get(("yunmo", model, protocol, c))
                if not y:
                    continue
                base_model = "efficientnet" if model == "efficientnet_nobatch" else model
                for server in ["yunmo"] + list(args.peers):
                    r = y if server == "yunmo" else index.get((server, base_model, protocol, c))
                    if not r:
                        continue
                    ratio = "" if server == "yunmo" else f"{y['rps'] / max(r['rps'], 1e-9):.2f}x"
                    p99 = "" if server == "yunmo" else f"{y['p99_ms'] / max(r['p99_ms'], 1e-9):.2f}"
                    lines.append(f"| {model} | {protocol} | {c} | {server} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                                 f"{r['cpu_s_per_1k']:.3f} | {r['peak_rss_mb']:.0f} | {ratio} | {p99} |")
    lines.append("")
    lines.append("| floor: model | batch | calls/s | rows/s | p50 ms |")
    lines.append("|---|---|---|---|---|")
    for f in floors:
        lines.append(f"| {f['model']} | {f['batch']} | {f['rps']:.1f} | {f['rows_per_second']:.1f} | {f['p50_ms']:.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--peers", default="yunmo-noauth,ort-fastapi,mlserver,triton,kserve,torchserve")
    parser.add_argument("--models", default="mlp,efficientnet,minilm")
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.models = [m for m in args.models.split(",") if m]
    wanted = [p for p in args.peers.split(",") if p]
    args.peers = []
    for peer in wanted:
        if PEER_CLASSES[peer][1] is None or os.path.exists(os.path.join(PEERS, PEER_CLASSES[peer][1])):
            args.peers.append(peer)
        else:
            log(f"peer {peer} is not installed (run bench/run.sh --install); skipped")
    bodies = {}
    body_dir = tempfile.mkdtemp(prefix="yunmo-bench-bodies-")
    for model in args.models:
        path = os.path.join(body_dir, model + ".json")
        with open(path, "w") as f:
            json.dump(MODELS[model][1](), f)
        bodies[model] = path
    decode = []
    for model in args.models:
        out = subprocess.run([LOADGEN, "decode", "--body", bodies[model]], capture_output=True, text=True, check=True)
        decode.append({"model": model, **json.loads(out.stdout)})
        log(f"decode {model}: {decode[-1]}")
    if "efficientnet" in args.models:
        bodies["efficientnet.bin"] = os.path.join(body_dir, "efficientnet.bin")
        out = subprocess.run([LOADGEN, "binary", "--body", bodies["efficientnet"], "--out", bodies["efficientnet.bin"]],
                             capture_output=True, text=True, check=True)
        bodies["efficientnet.hdr"] = out.stdout.strip()
    floors = floor(args, args.fixtures, bodies)
    rows = run_server(Yunmo, args, args.fixtures, bodies)
    for peer in args.peers:
        try:
            rows += run_server(PEER_CLASSES[peer][0], args, args.fixtures, bodies)
        except Exception as error:  # a peer that fails to start is reported, not fatal
            log(f"peer {peer} failed: {error}")
    text = table(rows, floors, args)
    text += "\n\n| decode: model | elements | JSON bytes | JSON ms | JSON MB/s | binary ms |\n|---|---|---|---|---|---|\n"
    text += "\n".join(f"| {d['model']} | {d['elements']} | {d['json_bytes']} | {d['json_ms']:.3f} | {d['json_mb_per_s']:.0f} | {d['binary_ms']:.4f} |" for d in decode)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H-%M")
    with open(os.path.join(args.out, f"{stamp}.json"), "w") as f:
        json.dump({"args": vars(args), "rows": rows, "floor": floors, "decode": decode}, f, indent=1)
    with open(os.path.join(args.out, f"{stamp}.md"), "w") as f:
        f.write(text + "\n")
    log(f"results in {args.out}/{stamp}.{{json,md}}")


if __name__ == "__main__":
    main()
