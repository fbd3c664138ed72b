#!/usr/bin/env bash
# Refreshes the console's vendored charting library, uPlot (MIT licence), from the npm registry:
#   scripts/refresh-uplot.sh            # the pinned version below
#   scripts/refresh-uplot.sh 1.6.33     # another version (then update UPLOT_VERSION here and commit)
# It copies dist/uPlot.iife.min.js, dist/uPlot.min.css and LICENSE into crates/yunmo-console/assets/vendor/,
# which the binary embeds (nothing is fetched at build or run time). Needs npm.
set -euo pipefail
UPLOT_VERSION="${1:-1.6.32}"
cd "$(dirname "$0")/.."
vendor=crates/yunmo-console/assets/vendor
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$UPLOT_VERSION" > /dev/null && tar xzf "uplot-$UPLOT_VERSION.tgz")
head -c 100 "$work/package/dist/uPlot.iife.min.js" | grep -q "(v$UPLOT_VERSION)" \
  || { echo "refresh-uplot: the package's uPlot.iife.min.js does not name v$UPLOT_VERSION" >&2; exit 1; }
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$vendor/"
cp "$work/package/LICENSE" "$vendor/uPlot.LICENSE"
sha256sum "$vendor"/uPlot.*
echo "uPlot $UPLOT_VERSION is in $vendor; rebuild the binary to embed it."
