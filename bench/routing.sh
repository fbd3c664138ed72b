#!/usr/bin/env bash
# One command for the routing benchmark: installs HAProxy if missing (scripts/system-deps.sh), builds the release
# binary, fetches MiniLM, and runs bench/routing.py: the shipped deploy/haproxy/yunmo.cfg (model-affine
# consistent hashing with bounded load) against the same file with round robin, back to back, in front of
# three replicas whose memory budget holds fewer models than are requested. See docs/routing.md.
# Usage: bench/routing.sh [routing.py options: --models 6 --fit 2 --concurrency 6 --duration 20 --rounds 1 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export YUNMO_CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
scripts/system-deps.sh
cargo build --release --locked -p yunmo-server >&2
PY=$(scripts/python-env.sh)
scripts/fetch-assets.sh ort minilm >&2
exec "$PY" bench/routing.py "$@"
