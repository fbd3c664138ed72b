#!/usr/bin/env python3
"""Cluster benchmark: one replica on PostgreSQL + S3 (+ Redis limits) against one on the embedded defaults
(SQLite + local folder), on the same model and load, interleaved; the database's CPU per 1,000 metered
requests; and cold start of a new replica to its first EfficientNet and SmolLM2 answer, from S3 and from its
local cache.

Usage: bench/cluster.sh [--rounds 3] [--duration 5] [--concurrency 16]

Each replica runs as shipped (auth on, every request with an admin key: checked, limited, metered) pinned
to CPU 0 with one async-runtime and one ONNX Runtime thread (bench/run.py's Yunmo); the load generator runs
pinned to CPU 1; PostgreSQL, SeaweedFS and Redis (started by yunmo-testkit) share the machine. The admin's
tenant gets a high requests/s limit so that every request goes through the limit store. PostgreSQL's CPU is
read from /proc (every postgres process, plus what exited backends left in the postmaster's children time).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm  # noqa: E402
import run  # noqa: E402

TESTKIT = os.path.join(run.TARGET, "debug", "yunmo-testkit")
PSQL_DIRS = sorted(d for d in os.listdir("/usr/lib/postgresql")) if os.path.isdir("/usr/lib/postgresql") else []


class Services:
    """PostgreSQL, S3 and Redis from `yunmo-testkit services`, stopped when closed."""

    def __init__(self):
        if not os.path.exists(TESTKIT):
            raise SystemExit(f"missing {TESTKIT}: cargo build -p yunmo-testkit (bench/cluster.sh does)")
        self.process = subprocess.Popen([TESTKIT, "services", "--postgres", "--s3", "--redis"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.process.stdout.readline())
        self.databases = 0

    def database(self):
        """A new empty database's URL."""
        self.databases += 1
        name = f"bench{self.databases}"
        psql = f"/usr/lib/postgresql/{PSQL_DIRS[-1]}/bin/psql"
        subprocess.run([psql, "-q", self.info["postgres_url"], "-c", f"CREATE DATABASE {name}"], check=True)
        return self.info["postgres_url"].rsplit("/", 1)[0] + "/" + name

    def env(self, database, prefix):
        s3 = self.info["s3"]
        return {"YUNMO__STORAGE__POSTGRES_URL": database, "YUNMO__STORAGE__S3__BUCKET": s3["bucket"], "YUNMO__STORAGE__S3__PREFIX": prefix,
                "YUNMO__STORAGE__S3__ENDPOINT": s3["endpoint"], "YUNMO__STORAGE__S3__ACCESS_KEY_ID": s3["access_key_id"],
                "YUNMO__STORAGE__S3__SECRET_ACCESS_KEY": s3["secret_access_key"], "YUNMO__LIMITS__STORE": "redis",
                "YUNMO__LIMITS__REDIS_URL": self.info["redis_url"]}

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=120)


def postgres_cpu_seconds():
    """CPU seconds of every process running as user postgres, plus the children time of those that exited."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next(line for line in f if line.startswith("Uid:")).split()[1]
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, StopIteration):
            continue
        if int(uid) == postgres_uid():
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / run.CLK_TCK
    return total


def postgres_uid():
    import pwd
    return pwd.getpwnam("postgres").pw_uid


def replica(work, env, models, fixtures):
    """bench/run.py's Yunmo with `env`; the admin's tenant limited high, so every request uses the limit store."""
    cls = type("Replica", (run.Yunmo,), {"name": "yunmo", "extra_env": env})
    server = cls(work, models, fixtures)
    body = json.dumps({"requests_per_second": 1e9, "requests_burst": 1000000}).encode()
    request = urllib.request.Request(server.url + "/api/v1/tenants/default/limits", data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {run.BENCH_KEY}", "Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    return server


SIDES = [
    ("SQLite + local folder", "embedded"),
    ("PostgreSQL + S3, limits in memory", "shared"),
    ("PostgreSQL + S3 + Redis limits", "cluster"),
]


def side_env(services, kind, round_index):
    if kind == "embedded":
        return {}
    env = services.env(services.database(), f"round{round_index}-{kind}/")
    if kind == "shared":
        env = {k: v for k, v in env.items() if not k.startswith("YUNMO__LIMITS__")}
    return env


def throughput(args, services, fixtures, body):
    results = {kind: [] for _, kind in SIDES}
    db_cpu = []
    for round_index in range(args.rounds):
        for label, kind in SIDES:
            work = tempfile.mkdtemp(prefix=f"yunmo-cluster-{kind}-")
            run.log(f"== round {round_index + 1}: {label}")
            server = replica(work, side_env(services, kind, round_index), ["mlp"], fixtures)
            try:
                extra = ["http", "--url", server.infer_url("mlp"), "--body", body, "--concurrency", str(args.concurrency)] + server.http_auth()
                before = postgres_cpu_seconds()
                result = run.measure(server, args, f"mlp rest c={args.concurrency}", extra)
                # Let the last usage batch land before reading the database's CPU.
                time.sleep(1.5)
                if kind != "embedded":
                    db_cpu.append((postgres_cpu_seconds() - before) / max(result["requests"], 1) * 1000)
                results[kind].append(result)
            finally:
                server.stop()
                shutil.rmtree(work, ignore_errors=True)
    med = lambda kind, key: statistics.median(r[key] for r in results[kind])
    lines = ["| replica | req/s | ratio to embedded | p99 ms | replica CPU s/1k |", "|---|---|---|---|---|"]
    for label, kind in SIDES:
        lines.append(f"| {label} | {med(kind, 'rps'):.0f} | {med(kind, 'rps') / med('embedded', 'rps'):.2f}x | {med(kind, 'p99_ms'):.2f} | "
                     f"{med(kind, 'cpu_s_per_1k'):.3f} |")
    lines += ["", f"PostgreSQL CPU per 1,000 metered requests: {statistics.median(db_cpu) * 1000:.1f} ms (median of {len(db_cpu)} runs)"]
    return lines


def first_answer(server_url, model, body, deadline_s=300):
    """Seconds until `model` answers 200 (the first request loads it lazily)."""
    started = time.time()
    while time.time() - started < deadline_s:
        try:
            run.post(f"{server_url}/v2/models/{model}/infer", body, key=run.BENCH_KEY)
            return time.time() - started
        except Exception:  # noqa: BLE001  (not ready yet)
            time.sleep(0.05)
    raise RuntimeError(f"{model} did not answer in {deadline_s} s")


def cold_start(services, fixtures):
    env = services.env(services.database(), "cold/")
    work = tempfile.mkdtemp(prefix="yunmo-cluster-cold-")
    # One replica uploads EfficientNet and SmolLM2 to the bucket, then goes away.
    os.makedirs(os.path.join(work, "seed"))
    seed = replica(os.path.join(work, "seed"), env, ["efficientnet"], fixtures)
    subprocess.run([run.YUNMO, "models", "push", "--url", seed.url, "--name", "smollm2", llm.GGUF], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "YUNMO_API_KEY": run.BENCH_KEY})
    seed.stop()
    efficientnet = json.dumps(run.efficientnet_body()).encode()
    completion = json.dumps({"model": "smollm2", "prompt": "Hello", "max_tokens": 1}).encode()
    lines = ["| new replica | to first EfficientNet answer s | to first SmolLM2 token s |", "|---|---|---|"]
    fresh = os.path.join(work, "fresh")
    os.makedirs(fresh)
    for label in ("from S3 (empty cache)", "from its local cache (restart)"):
        started = time.time()
        cls = type("Replica", (run.Yunmo,), {"name": "yunmo", "extra_env": env})
        server = cls(fresh, [], fixtures)
        ready = time.time() - started
        image = ready + first_answer(server.url, "efficientnet", efficientnet)
        started_llm = time.time()
        run.post(f"{server.url}/v1/completions", completion, key=run.BENCH_KEY)
        text = ready + (time.time() - started_llm)
        lines.append(f"| {label} | {image:.2f} (ready after {ready:.2f}) | {text:.2f} |")
        server.stop()
    shutil.rmtree(work, ignore_errors=True)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fixtures", default=os.path.join(run.CACHE, "bench-models"))
    args = parser.parse_args()
    body_dir = tempfile.mkdtemp(prefix="yunmo-cluster-body-")
    body = os.path.join(body_dir, "mlp.json")
    with open(body, "w") as f:
        json.dump(run.mlp_body(), f)
    services = Services()
    try:
        lines = throughput(args, services, args.fixtures, body) + [""] + cold_start(services, args.fixtures)
    finally:
        services.close()
        shutil.rmtree(body_dir, ignore_errors=True)
    print(f"bench/cluster.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.rounds} interleaved rounds of {args.duration:.0f} s, "
          f"MLP over V2 REST at concurrency {args.concurrency}, auth on (as shipped)\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
