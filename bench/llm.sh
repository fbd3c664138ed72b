#!/usr/bin/env bash
# One command for the LLM and embedding benchmark: builds release binaries, fetches the models, installs the
# peers with --install (llama-cpp-python's server and infinity-emb, via ../shared/peers/*/install.sh), and
# runs bench/llm.py (Yunmo against llama-cpp-python on SmolLM2-135M-Instruct GGUF, and against infinity-emb
# on all-MiniLM-L6-v2). Usage: bench/llm.sh [--install] [llm.py options: --duration 20 --streams 1,4,8,16 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export YUNMO_CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
SHARED="${YUNMO_SHARED:-$(cd .. && pwd)/shared}"
if [ "${1:-}" = "--install" ]; then
  shift
  bash "$SHARED/peers/llamacpp/install.sh" >&2 || echo "install of llama-cpp-python failed" >&2
  bash "$SHARED/peers/infinity/install.sh" >&2 || echo "install of infinity-emb failed" >&2
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
scripts/system-deps.sh
cargo build --release --locked -p yunmo-server -p yunmo-loadgen >&2
PY=$(scripts/python-env.sh)
scripts/fetch-assets.sh ort minilm smollm >&2
exec "$PY" bench/llm.py "$@"
