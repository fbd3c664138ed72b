#!/usr/bin/env bash
# Checks the Helm chart (deploy/helm/yunmo) offline, with no cluster:
#  1. `helm lint --strict` with the default values and each values file in deploy/helm/yunmo/ci, for each
#     Kubernetes version below;
#  2. `helm template` of each of those, every rendered object validated strictly (unknown fields are errors)
#     against that version's schemas by kubernetes-validate. The KEDA ScaledObject and the ServiceMonitor
#     are CRDs it has no schemas for: they only warn there, and are checked here by hand instead (the
#     Deployment and Service they point at exist, the port they scrape exists);
#  3. no Secret is rendered and no secret setting is a plain value (secrets by reference only);
#  4. the rendered yunmo.toml parses, and its keys and the schema's `config` keys are the keys of
#     config/default.toml (the server refuses unknown keys); with a yunmo binary at hand ($YUNMO_BIN, else
#     $CARGO_TARGET_DIR/debug/yunmo) the server itself also loads each rendered config with the rendered
#     environment (`yunmo serve --print-config`);
#  5. negative checks: values files that miss a required value or break a rule must fail with a message
#     naming the value.
#
# Usage: scripts/check-chart.sh
# Needs helm (scripts/fetch-assets.sh helm puts it in $YUNMO_CACHE/bin) and kubernetes-validate in .venv
# (scripts/python-env.sh installs tests/clients/requirements.txt). Exits non-zero on the first failing step,
# after printing every error of that step.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"
HELM="${HELM:-$CACHE/bin/helm}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CHART="$ROOT/deploy/helm/yunmo"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.29.0 1.33.0 1.35.0}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${YUNMO_BIN:-$TARGET/debug/yunmo}"

say() { echo "check-chart: $*" >&2; }
die() { echo "check-chart: error: $*" >&2; exit 1; }

[ -x "$HELM" ] || die "no helm at $HELM: run scripts/fetch-assets.sh helm"
"$PY" -c 'import kubernetes_validate, yaml' 2>/dev/null \
  || die "$PY cannot import kubernetes_validate: run scripts/python-env.sh (tests/clients/requirements.txt pins kubernetes-validate)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

values_files=("")
for file in "$CHART"/ci/*-values.yaml; do values_files+=("$file"); done
[ "${#values_files[@]}" -gt 1 ] || die "no values files in $CHART/ci"
name_of() { if [ -z "$1" ]; then echo defaults; else basename "$1" .yaml; fi; }

# 1 and 2: lint and render each values file for each Kubernetes version.
for version in $KUBE_VERSIONS; do
  for file in "${values_files[@]}"; do
    name="$(name_of "$file")"
    args=(--kube-version "$version")
    [ -n "$file" ] && args+=(-f "$file")
    "$HELM" lint --strict "$CHART" "${args[@]}" >"$work/lint.log" 2>&1 \
      || { cat "$work/lint.log" >&2; die "helm lint --strict failed for $name on Kubernetes $version"; }
    "$HELM" template yunmo "$CHART" --namespace yunmo "${args[@]}" >"$work/$name@$version.yaml" 2>"$work/template.log" \
      || { cat "$work/template.log" >&2; die "helm template failed for $name on Kubernetes $version"; }
  done
  say "helm lint --strict and helm template on Kubernetes $version: defaults and $(( ${#values_files[@]} - 1 )) values files in ci/"
done

# 2, 3 and 4: validate every rendered object.
latest="${KUBE_VERSIONS##* }"
"$PY" - "$work" "$ROOT/config/default.toml" "$CHART/values.schema.json" "$BIN" "$latest" <<'PYEOF'
import glob, json, os, subprocess, sys, tempfile, tomllib

import yaml
import kubernetes_validate.utils as kv

work, default_toml, schema_path, binary, latest = sys.argv[1:6]
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
# Environment variables that carry secrets: only ever valueFrom.secretKeyRef.
SECRET_ENV = ("YUNMO__STORAGE__POSTGRES_URL", "YUNMO__STORAGE__S3__ACCESS_KEY_ID", "YUNMO__STORAGE__S3__SECRET_ACCESS_KEY",
              "YUNMO__LIMITS__REDIS_URL", "YUNMO__AUTH__BOOTSTRAP_KEY", "YUNMO__OLLAMA__KEY", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
errors, warnings = [], []


def keys_of(table, prefix=""):
    """Every dotted key of a TOML table, and the type name of its value."""
    out = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(keys_of(value, path + "."))
        else:
            out[path] = type(value).__name__
    return out


defaults = keys_of(tomllib.load(open(default_toml, "rb")))

# The schema's config keys are default.toml's keys (a key missing from the schema cannot be set; one the
# schema has beyond them would pass `helm lint` and stop the server at start).
def schema_keys(node, prefix=""):
    out = {}
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        if sub.get("type") == "object" and "properties" in sub:
            out.update(schema_keys(sub, path + "."))
        else:
            out[path] = sub.get("type", "enum")
    return out

TYPES = {"int": "integer", "str": "string", "bool": "boolean", "list": "array", "float": "number"}
in_schema = schema_keys(json.load(open(schema_path))["properties"]["config"])
for key, kind in sorted(defaults.items()):
    if key not in in_schema:
        errors.append(f"values.schema.json: config.{key} (in config/default.toml) is missing from properties.config")
    elif in_schema[key] not in (TYPES[kind], "enum"):
        errors.append(f"values.schema.json: config.{key} is {in_schema[key]}, config/default.toml has a {TYPES[kind]}")
for key in sorted(set(in_schema) - set(defaults)):
    errors.append(f"values.schema.json: config.{key} is not a setting in config/default.toml (the server would refuse it)")


def env_of(container):
    """The container's environment with secrets, field references and other references filled with stand-ins."""
    env = {}
    for item in container.get("env", []):
        source = item.get("valueFrom")
        if source is None:
            env[item["name"]] = item.get("value", "")
        elif "secretKeyRef" in source:
            name = item["name"]
            env[name] = {"YUNMO__STORAGE__POSTGRES_URL": "postgres://yunmo:secret@postgres:5432/yunmo",
                         "YUNMO__LIMITS__REDIS_URL": "redis://redis:6379/0",
                         "YUNMO__AUTH__BOOTSTRAP_KEY": "ym_check_0123456789abcdef0123456789abcdef"}.get(name, "stand-in")
        else:
            env[item["name"]] = "stand-in"
    return env


def check_config(label, objects):
    """The ConfigMap each server pod mounts holds TOML with known keys; the binary, when at hand, loads it."""
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    for workload in (o for o in objects if o["kind"] in ("Deployment", "Job")):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "configMap" not in volume:
                continue
            config_map = config_maps.get(volume["configMap"]["name"])
            if config_map is None:
                errors.append(f"{label}: {workload['kind']} {workload['metadata']['name']} mounts ConfigMap {volume['configMap']['name']}, which is not rendered")
                continue
            text = config_map["data"]["yunmo.toml"]
            try:
                rendered = keys_of(tomllib.loads(text))
            except tomllib.TOMLDecodeError as error:
                errors.append(f"{label}: ConfigMap {config_map['metadata']['name']}: yunmo.toml is not TOML: {error}")
                continue
            for key, kind in rendered.items():
                if key not in defaults:
                    errors.append(f"{label}: yunmo.toml sets {key}, which config/default.toml does not have")
                elif kind != defaults[key]:
                    errors.append(f"{label}: yunmo.toml sets {key} as {TYPES[kind]}, config/default.toml has a {TYPES[defaults[key]]}")
            if workload["kind"] == "Deployment" and os.access(binary, os.X_OK):
                container = pod["containers"][0]
                with tempfile.NamedTemporaryFile("w", suffix=".toml") as file:
                    file.write(text)
                    file.flush()
                    env = {"PATH": os.environ.get("PATH", ""), **env_of(container)}
                    result = subprocess.run([binary, "serve", "--config", file.name, "--print-config"], env=env,
                                            capture_output=True, text=True)
                    if result.returncode != 0:
                        errors.append(f"{label}: {binary} refuses the rendered config: {result.stderr.strip()}")


def check_references(label, objects):
    """What the CRDs (not schema-checked) and Services point at is rendered."""
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    deployments = by_kind.get("Deployment", {})
    for so in by_kind.get("ScaledObject", {}).values():
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            errors.append(f"{label}: ScaledObject {so['metadata']['name']} scales {target}, which is not rendered")
        for trigger in so["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                query = trigger["metadata"]["query"]
                if "yunmo_inference_queue_depth" not in query and "yunmo_llm_sequences_waiting" not in query:
                    warnings.append(f"{label}: the ScaledObject's query names neither queue-depth metric: {query}")
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        if hpa["spec"]["scaleTargetRef"]["name"] not in deployments:
            errors.append(f"{label}: HorizontalPodAutoscaler {hpa['metadata']['name']} scales a Deployment that is not rendered")
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]
        port_names = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        if not set(deployment["spec"]["selector"]["matchLabels"].items()) <= set(pod["metadata"]["labels"].items()):
            errors.append(f"{label}: Deployment {deployment['metadata']['name']}'s selector does not match its pods")
        for service in by_kind.get("Service", {}).values():
            if not set(service["spec"]["selector"].items()) <= set(pod["metadata"]["labels"].items()):
                errors.append(f"{label}: Service {service['metadata']['name']} selects no pod of the Deployment")
            for port in service["spec"]["ports"]:
                if isinstance(port["targetPort"], str) and port["targetPort"] not in port_names:
                    errors.append(f"{label}: Service {service['metadata']['name']} targets port {port['targetPort']}, which the pod does not name")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            for container in pod["spec"]["containers"]:
                if probe not in container:
                    errors.append(f"{label}: container {container['name']} has no {probe}")
    for monitor in by_kind.get("ServiceMonitor", {}).values():
        wanted = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in by_kind.get("Service", {}).values() if set(wanted.items()) <= set(s["metadata"]["labels"].items())]
        if not services:
            errors.append(f"{label}: ServiceMonitor {monitor['metadata']['name']} selects no rendered Service")
        for endpoint in monitor["spec"]["endpoints"]:
            if not any(endpoint["port"] == p["name"] for s in services for p in s["spec"]["ports"]):
                errors.append(f"{label}: ServiceMonitor {monitor['metadata']['name']} scrapes port {endpoint['port']}, which its Services lack")
    for ingress in by_kind.get("Ingress", {}).values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                if path["backend"]["service"]["name"] not in by_kind.get("Service", {}):
                    errors.append(f"{label}: Ingress {ingress['metadata']['name']} routes to a Service that is not rendered")


def check_secrets(label, objects):
    for o in objects:
        if o["kind"] == "Secret":
            errors.append(f"{label}: renders Secret {o['metadata']['name']}: the chart takes secrets by reference only")
        if o["kind"] in ("Deployment", "Job"):
            for container in o["spec"]["template"]["spec"]["containers"]:
                for item in container.get("env", []):
                    if item["name"] in SECRET_ENV and "secretKeyRef" not in item.get("valueFrom", {}):
                        errors.append(f"{label}: {o['kind']} {o['metadata']['name']} sets {item['name']} without a secretKeyRef")
        if o["kind"] == "ConfigMap":
            settings = tomllib.loads(o["data"].get("yunmo.toml", ""))
            for section, key in (("storage", "postgres_url"), ("auth", "bootstrap_key"), ("limits", "redis_url"), ("ollama", "key")):
                if settings.get(section, {}).get(key):
                    errors.append(f"{label}: ConfigMap {o['metadata']['name']} holds {section}.{key}, a secret")
            if settings.get("storage", {}).get("s3", {}).get("secret_access_key"):
                errors.append(f"{label}: ConfigMap {o['metadata']['name']} holds storage.s3.secret_access_key, a secret")


rendered_files = sorted(glob.glob(os.path.join(work, "*@*.yaml")))
counts = {}
for path in rendered_files:
    label = os.path.basename(path)[:-len(".yaml")]
    version = label.split("@")[1]
    objects = [o for o in yaml.safe_load_all(open(path)) if o]
    for o in objects:
        kind_name = f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        try:
            kv.validate(o, version, strict=True)
            counts[version] = counts.get(version, 0) + 1
        except kv.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(f"{label}: {kind_name} does not validate against Kubernetes {error.version}: {where}: {error.message}")
        except kv.SchemaNotFoundError as error:
            if o["apiVersion"].startswith(CRD_GROUPS):
                warnings.append(f"{label}: {kind_name}: no schema for the CRD {o['apiVersion']} (checked by reference only)")
            else:
                errors.append(f"{label}: {kind_name}: {error.message}")
    check_secrets(label, objects)
    check_references(label, objects)
    if version == latest:  # the config does not depend on the Kubernetes version
        check_config(label, objects)

for warning in sorted(set(warnings)):
    print(f"check-chart: warning: {warning}", file=sys.stderr)
for error in errors:
    print(f"check-chart: error: {error}", file=sys.stderr)
if errors:
    sys.exit(1)
for version, count in sorted(counts.items()):
    print(f"check-chart: kubernetes-validate --strict: {count} objects valid on Kubernetes {version}", file=sys.stderr)
if os.access(binary, os.X_OK):
    print(f"check-chart: every rendered config loads in {binary}", file=sys.stderr)
else:
    print(f"check-chart: note: no yunmo binary at {binary} (cargo build makes it): rendered configs were checked against config/default.toml only", file=sys.stderr)
PYEOF

# 5: values that must be refused, each with a message naming what to change. `helm template` (and so
# `helm install`) must fail; a value the schema refuses (marked "schema") must fail `helm lint` too. Helm 4's
# lint only logs a template's `fail` (level=INFO "funcMap fail"), so rules checked in templates fail at
# template and install time, not at lint.
negative() {
  local what="$1" expected="$2" values="$3" kind="${4:-template}" file="$work/negative.yaml" output
  printf '%s\n' "$values" >"$file"
  if output="$("$HELM" template yunmo "$CHART" -f "$file" 2>&1 >/dev/null)"; then
    die "negative check '$what': helm template accepted $(tr '\n' ' ' <"$file")"
  fi
  [[ "$output" == *"$expected"* ]] || die "negative check '$what': the error does not say '$expected': $output"
  if [ "$kind" = schema ] && output="$("$HELM" lint --strict "$CHART" -f "$file" 2>&1)"; then
    die "negative check '$what': helm lint accepted it: $output"
  fi
  negatives=$((negatives + 1))
}
negatives=0
negative "cluster without a bucket" "s3.bucket is empty" 'externalPostgresql: {existingSecret: yunmo-postgres}'
negative "a secret as a plain value" "secrets by reference only: set externalPostgresql.existingSecret" \
  'config: {storage: {postgres_url: "postgres://yunmo:secret@db/yunmo"}}'
negative "an S3 key as a plain value" "config.storage.s3 is set by the chart" 'config: {storage: {s3: {secret_access_key: abc}}}'
negative "a misspelt setting" "additional properties 'queue_capacty' not allowed" 'config: {scheduler: {queue_capacty: 8}}' schema
negative "a misspelt value" "additional properties 'replicas' not allowed" 'replicas: 3' schema
negative "a setting of the wrong type" "/config/scheduler/queue_capacity" 'config: {scheduler: {queue_capacity: "many"}}' schema
negative "replicas without shared storage" "needs shared storage" 'replicaCount: 3'
negative "autoscaling without shared storage" "needs shared storage" 'autoscaling: {hpa: {enabled: true}}'
negative "two autoscalers" "enable one" \
  'externalPostgresql: {existingSecret: p}
s3: {bucket: b}
autoscaling: {keda: {enabled: true}, hpa: {enabled: true}}'
negative "a ServiceMonitor without a key" "serviceMonitor.bearerTokenSecret.name" 'serviceMonitor: {enabled: true}'
negative "a cache larger than its volume" "must be larger than s3.cacheMaxBytes" 's3: {bucket: b}
data: {size: 8Gi}'
negative "a grace period shorter than the drain" "must exceed the preStop sleep" 'drain: {terminationGracePeriodSeconds: 10}'
negative "an ingress without hosts" "ingress.http.hosts" 'ingress: {http: {enabled: true}}'
negative "an unknown limit store behaviour" "/redis/onStoreFailure" 'redis: {existingSecret: r, onStoreFailure: ignore}' schema
negative "a previous key without its Secret" "/encryption/previousKeys/0" 'encryption: {previousKeys: [{key: model.key}]}' schema
say "negative checks: $negatives bad values files refused, each with a message naming the value"
say "passed"
