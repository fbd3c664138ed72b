#!/usr/bin/env bash
# Makes the Python virtual environment the tests, fixtures and demo use (default ./.venv), with pinned
# packages from PyPI. Prints the venv's python path on stdout. Re-running is cheap once installed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${YUNMO_VENV:-$ROOT/.venv}"
REQ="$ROOT/tests/clients/requirements.txt"
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "yunmo: installing Python packages into $VENV ..." >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" >&2
  echo "$want" > "$STAMP"
fi
echo "$VENV/bin/python"
