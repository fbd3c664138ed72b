#!/usr/bin/env bash
# One command for the cluster benchmark (bench/cluster.py): builds the release server and load generator and
# the test servers' starter, fetches the models, and runs it. Usage: bench/cluster.sh [cluster.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
export YUNMO_CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
scripts/system-deps.sh
cargo build --release --locked -p yunmo-server -p yunmo-loadgen >&2
cargo build --locked -p yunmo-testkit --bin yunmo-testkit >&2
PY=$(scripts/python-env.sh)
scripts/fetch-assets.sh ort efficientnet smollm seaweedfs >&2
FIXTURES="$YUNMO_CACHE/bench-models"
"$PY" tests/fixtures/make_models.py "$FIXTURES" "$YUNMO_CACHE" >&2
exec "$PY" bench/cluster.py --fixtures "$FIXTURES" "$@"
