#!/usr/bin/env bash
# Runs a Yunmo cluster on this machine: three replicas of the release binary on PostgreSQL (metadata), an S3
# server (SeaweedFS: model files) and Redis (limits), all started here on 127.0.0.1 by `yunmo-testkit
# services` with their data in temporary folders, behind HAProxy with the shipped configuration
# (deploy/haproxy/yunmo.cfg) on 127.0.0.1:8080 (REST) and 127.0.0.1:8081 (gRPC). Prints the admin key and
# pushes the iris demo model through one replica. Ctrl-C stops everything and removes the stores' data.
# For real stores, start the replicas yourself with the variables below (see docs/cluster.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export YUNMO_CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
scripts/system-deps.sh
echo "==> Building yunmo (release) and yunmo-testkit" >&2
cargo build --release --locked -p yunmo-server >&2
cargo build --locked -p yunmo-testkit --bin yunmo-testkit >&2
target="${CARGO_TARGET_DIR:-target}"
YUNMO="$target/release/yunmo"
PY=$(scripts/python-env.sh)
scripts/fetch-assets.sh ort seaweedfs
DEMO="$YUNMO_CACHE/demo"
"$PY" tests/fixtures/make_models.py "$DEMO" "$YUNMO_CACHE" >/dev/null

work=$(mktemp -d -t yunmo-cluster-XXXX)
pids=()
services=""
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # The stores stop (and remove their data) when their starter's stdin closes; a signal would orphan them.
  exec 3>&- 2>/dev/null || true
  [ -n "$services" ] && wait "$services" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "==> Starting PostgreSQL, S3 and Redis" >&2
mkfifo "$work/services.in"
"$target/debug/yunmo-testkit" services --postgres --s3 --redis < "$work/services.in" > "$work/services.json" &
services=$!
exec 3> "$work/services.in"   # held open: the services stop when this script ends
for _ in $(seq 600); do [ -s "$work/services.json" ] && break; sleep 0.1; done
field() { "$PY" -c "import json,sys; d=json.load(open('$work/services.json')); print(eval(sys.argv[1]))" "$1"; }
export YUNMO__STORAGE__POSTGRES_URL="$(field 'd["postgres_url"]')"
export YUNMO__STORAGE__S3__BUCKET="$(field 'd["s3"]["bucket"]')" YUNMO__STORAGE__S3__ENDPOINT="$(field 'd["s3"]["endpoint"]')"
export AWS_ACCESS_KEY_ID="$(field 'd["s3"]["access_key_id"]')" AWS_SECRET_ACCESS_KEY="$(field 'd["s3"]["secret_access_key"]')"
export YUNMO__LIMITS__STORE=redis YUNMO__LIMITS__REDIS_URL="$(field 'd["redis_url"]')"
export YUNMO__AUTH__BOOTSTRAP_KEY="${YUNMO__AUTH__BOOTSTRAP_KEY:-ym_cluster_$(openssl rand -hex 24)}"

echo "==> Starting three replicas" >&2
servers=()
for i in 1 2 3; do
  "$YUNMO" serve --http-port "818$i" --grpc-port "918$i" --data-dir "$work/replica-$i" --ready-file "$work/ready-$i" \
    > "$work/replica-$i.log" 2>&1 &
  pids+=($!)
  servers+=(--server "127.0.0.1:818$i:918$i")
done
for i in 1 2 3; do
  for _ in $(seq 600); do [ -f "$work/ready-$i" ] && break; sleep 0.1; done
  [ -f "$work/ready-$i" ] || { echo "replica $i did not start: $work/replica-$i.log" >&2; tail -20 "$work/replica-$i.log" >&2; exit 1; }
done

"$PY" deploy/haproxy/render.py "${servers[@]}" --http-bind 127.0.0.1:8080 --grpc-bind 127.0.0.1:8081 > "$work/haproxy.cfg"
haproxy -f "$work/haproxy.cfg" -db > "$work/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:8080/v2/health/ready >/dev/null && break; sleep 0.1; done

export YUNMO_API_KEY="$YUNMO__AUTH__BOOTSTRAP_KEY"
"$YUNMO" models push "$DEMO/iris_mlp.onnx" --name iris --url http://127.0.0.1:8181 \
  --config '{"labels": ["setosa", "versicolor", "virginica"]}' >/dev/null
cat >&2 <<TEXT

Yunmo cluster: REST http://127.0.0.1:8080, gRPC 127.0.0.1:8081 (HAProxy), replicas on 8181-8183 / 9181-9183.
Admin key: $YUNMO_API_KEY
Try:  YUNMO_API_KEY=$YUNMO_API_KEY $YUNMO infer iris --input '{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}'
Logs in $work. Ctrl-C stops everything.
TEXT
wait
