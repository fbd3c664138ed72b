#!/usr/bin/env bash
# One command for the side-by-side benchmark: builds release binaries, fetches models, installs the peers
# that can be installed here (with --install; uses ../shared/peers/*/install.sh), and runs bench/run.py.
# Usage: bench/run.sh [--install] [run.py options: --duration 10 --concurrency 1,8,64 --peers ... --models ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export YUNMO_CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
SHARED="${YUNMO_SHARED:-$(cd .. && pwd)/shared}"
if [ "${1:-}" = "--install" ]; then
  shift
  for peer in ort-fastapi mlserver kserve; do bash "$SHARED/peers/$peer/install.sh" >&2 || echo "install of $peer failed" >&2; done
  bash "$SHARED/peers/triton/install_server.sh" >&2 || echo "install of triton failed" >&2
  # Yunmo's KServe adapter (bench/peers/kserve_server.py) runs ONNX models with onnxruntime.
  "${PEERS_DIR:-/tmp/peers}/kserve/venv/bin/pip" install -q onnxruntime >&2 || echo "onnxruntime for kserve failed" >&2
  # TorchServe: torch + Java frontend (several GB of wheels); Yunmo's handler runs the ONNX file with onnxruntime.
  bash "$SHARED/peers/torchserve/install.sh" >&2 && "${PEERS_DIR:-/tmp/peers}/torchserve/venv/bin/pip" install -q onnxruntime >&2 \
    || echo "install of torchserve failed" >&2
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
cargo build --release --locked -p yunmo-server -p yunmo-loadgen >&2
PY=$(scripts/python-env.sh)
scripts/fetch-assets.sh ort minilm efficientnet >&2
FIXTURES="$YUNMO_CACHE/bench-models"
"$PY" tests/fixtures/make_models.py "$FIXTURES" "$YUNMO_CACHE" >&2
exec "$PY" bench/run.py --fixtures "$FIXTURES" "$@"
