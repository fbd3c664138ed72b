#!/usr/bin/env bash
# Compares the current release binary's CPU per request on the small-model hot path with the recorded
# baseline (bench/baseline.json): builds the release binaries, fetches and makes the models, then runs
# bench/baseline.py. Usage: bench/baseline.sh [baseline.py options: --rounds 3 --duration 5 --record]
set -euo pipefail
cd "$(dirname "$0")/.."
export YUNMO_CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
scripts/system-deps.sh
cargo build --release --locked -p yunmo-server -p yunmo-loadgen >&2
PY=$(scripts/python-env.sh)
scripts/fetch-assets.sh ort >&2
FIXTURES="$YUNMO_CACHE/bench-models"
"$PY" tests/fixtures/make_models.py "$FIXTURES" "$YUNMO_CACHE" >&2
exec "$PY" bench/baseline.py --fixtures "$FIXTURES" "$@"
