{{/* Names and labels. */}}
{{- define "yunmo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "yunmo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A name derived from the full name, within 63 characters: (dict "root" $ "suffix" "grpc"). */}}
{{- define "yunmo.suffixed" -}}
{{- $full := include "yunmo.fullname" .root -}}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix -}}
{{- end -}}

{{- define "yunmo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "yunmo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "yunmo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "yunmo.labels" -}}
helm.sh/chart: {{ include "yunmo.chart" . }}
{{ include "yunmo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: yunmo
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "yunmo.serverSelectorLabels" -}}
{{ include "yunmo.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "yunmo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "yunmo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "yunmo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when replicas share PostgreSQL and S3 (cluster mode), "" in standalone mode. */}}
{{- define "yunmo.clusterMode" -}}
{{- if .Values.externalPostgresql.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "yunmo.autoscaling" -}}
{{- if or .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled -}}true{{- end -}}
{{- end -}}

{{/* The data volume's kind after resolving "auto". */}}
{{- define "yunmo.dataVolume" -}}
{{- if eq .Values.data.volume "auto" -}}
{{- if include "yunmo.clusterMode" . -}}emptyDir{{- else -}}persistentVolumeClaim{{- end -}}
{{- else -}}
{{- .Values.data.volume -}}
{{- end -}}
{{- end -}}

{{- define "yunmo.dataClaimName" -}}
{{- default (include "yunmo.suffixed" (dict "root" . "suffix" "data")) .Values.data.existingClaim -}}
{{- end -}}

{{/* Paths inside the pod. */}}
{{- define "yunmo.configDir" -}}/etc/yunmo/config{{- end -}}
{{- define "yunmo.configFile" -}}{{ include "yunmo.configDir" . }}/yunmo.toml{{- end -}}
{{- define "yunmo.tlsDir" -}}/etc/yunmo/tls{{- end -}}
{{- define "yunmo.keyDir" -}}/etc/yunmo/keys{{- end -}}

{{/* A Kubernetes quantity (32Gi, 500M, 1073741824) in bytes, or "" when it has another form. */}}
{{- define "yunmo.quantityBytes" -}}
{{- $q := toString . -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- if regexMatch "^[0-9]+(k|M|G|T|Ki|Mi|Gi|Ti)?$" $q -}}
{{- $number := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $number $q -}}
{{- mul (int64 $number) (get $units $unit) -}}
{{- end -}}
{{- end -}}

{{- define "yunmo.shutdownGraceSeconds" -}}
{{- int (dig "server" "shutdown_grace_seconds" 30 (.Values.config | default dict)) -}}
{{- end -}}

{{/* preStop's sleep action is on by default from Kubernetes 1.30. */}}
{{- define "yunmo.preStopSleep" -}}
{{- if and (gt (int .Values.drain.preStopSleepSeconds) 0) (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) -}}
{{- int .Values.drain.preStopSleepSeconds -}}
{{- else -}}0{{- end -}}
{{- end -}}

{{- define "yunmo.terminationGracePeriodSeconds" -}}
{{- $needed := add (int (include "yunmo.preStopSleep" .)) (int (include "yunmo.shutdownGraceSeconds" .)) -}}
{{- if gt (int .Values.drain.terminationGracePeriodSeconds) 0 -}}
{{- int .Values.drain.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add $needed 10 -}}
{{- end -}}
{{- end -}}

{{/*
Checks that values combine sensibly; each failure names the value to change.
*/}}
{{- define "yunmo.validate" -}}
{{- $config := .Values.config | default dict -}}
{{- $owned := list
  (list "server" "host" "set bindAddress (YUNMO__SERVER__HOST)")
  (list "server" "http_port" "set ports.http")
  (list "server" "grpc_port" "set ports.grpc")
  (list "server" "tls" "set tls.existingSecret")
  (list "storage" "data_dir" "set data.mountPath (YUNMO__STORAGE__DATA_DIR)")
  (list "storage" "postgres_url" "secrets by reference only: set externalPostgresql.existingSecret and externalPostgresql.urlKey")
  (list "storage" "postgres_max_connections" "set externalPostgresql.maxConnections")
  (list "storage" "s3" "set s3.* (and s3.credentials.existingSecret for the keys)")
  (list "storage" "encryption_key_file" "set encryption.existingSecret and encryption.key")
  (list "storage" "previous_encryption_key_files" "set encryption.previousKeys")
  (list "auth" "bootstrap_key" "secrets by reference only: set auth.bootstrapKey.existingSecret")
  (list "limits" "store" "set redis.existingSecret for the shared store")
  (list "limits" "redis_url" "secrets by reference only: set redis.existingSecret and redis.urlKey")
  (list "limits" "on_store_failure" "set redis.onStoreFailure")
-}}
{{- range $owned -}}
{{- $section := index . 0 -}}{{- $key := index . 1 -}}
{{- if hasKey (get $config $section | default dict) $key -}}
{{- fail (printf "config.%s.%s is set by the chart: %s." $section $key (index . 2)) -}}
{{- end -}}
{{- end -}}
{{- $cluster := include "yunmo.clusterMode" . -}}
{{- if and (not $cluster) (or (gt (int .Values.replicaCount) 1) (include "yunmo.autoscaling" .)) -}}
{{- fail "More than one replica (replicaCount > 1 or autoscaling) needs shared storage: set externalPostgresql.existingSecret (PostgreSQL) and s3.bucket (S3); standalone mode keeps SQLite and model files in one pod's volume." -}}
{{- end -}}
{{- if and $cluster (not .Values.s3.bucket) -}}
{{- fail "externalPostgresql is set but s3.bucket is empty: replicas sharing PostgreSQL must share model files too (set s3.bucket)." -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled -}}
{{- fail "autoscaling.keda.enabled and autoscaling.hpa.enabled are both true: KEDA makes its own HPA; enable one." -}}
{{- end -}}
{{- if and .Values.s3.credentials.existingSecret (not .Values.s3.bucket) -}}
{{- fail "s3.credentials.existingSecret is set but s3.bucket is empty." -}}
{{- end -}}
{{- $volume := include "yunmo.dataVolume" . -}}
{{- if and (eq $volume "persistentVolumeClaim") (or (gt (int .Values.replicaCount) 1) (include "yunmo.autoscaling" .)) -}}
{{- fail "data.volume persistentVolumeClaim is one claim for every replica: with more than one replica use emptyDir or ephemeral (one volume per pod)." -}}
{{- end -}}
{{- if .Values.s3.bucket -}}
{{- $size := include "yunmo.quantityBytes" .Values.data.size -}}
{{- if and $size (le (int64 $size) (int64 .Values.s3.cacheMaxBytes)) -}}
{{- fail (printf "data.size (%s = %s bytes) must be larger than s3.cacheMaxBytes (%d bytes): the model cache lives in the data volume, with uploads staged beside it." (toString .Values.data.size) $size (int64 .Values.s3.cacheMaxBytes)) -}}
{{- end -}}
{{- end -}}
{{- if gt (int .Values.drain.terminationGracePeriodSeconds) 0 -}}
{{- $needed := add (int (include "yunmo.preStopSleep" .)) (int (include "yunmo.shutdownGraceSeconds" .)) -}}
{{- if le (int .Values.drain.terminationGracePeriodSeconds) $needed -}}
{{- fail (printf "drain.terminationGracePeriodSeconds (%d) must exceed the preStop sleep plus config.server.shutdown_grace_seconds (%d), or in-flight requests are killed." (int .Values.drain.terminationGracePeriodSeconds) $needed) -}}
{{- end -}}
{{- end -}}
{{- if .Values.serviceMonitor.enabled -}}
{{- $open := dig "auth" "open_paths" (list) $config -}}
{{- if and (not .Values.serviceMonitor.bearerTokenSecret.name) (not (has "/metrics" $open)) -}}
{{- fail "serviceMonitor.enabled needs serviceMonitor.bearerTokenSecret.name (a Secret holding a key with the 'metrics' scope), unless config.auth.open_paths lists \"/metrics\"." -}}
{{- end -}}
{{- end -}}
{{- range $kind := list "http" "grpc" -}}
{{- $ingress := get $.Values.ingress $kind -}}
{{- if and $ingress.enabled (not $ingress.hosts) -}}
{{- fail (printf "ingress.%s.enabled needs at least one entry in ingress.%s.hosts." $kind $kind) -}}
{{- end -}}
{{- end -}}
{{- if and (eq (int .Values.ports.http) (int .Values.ports.grpc)) -}}
{{- fail "ports.http and ports.grpc must differ." -}}
{{- end -}}
{{- end -}}

{{/*
The settings the ConfigMap holds, as JSON: the user's config with the chart's own settings over it.
*/}}
{{- define "yunmo.configJson" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- /* server.host and storage.data_dir are environment variables (yunmo.env), over the image's ENV of the same names. */ -}}
{{- $server := dict "http_port" (int .Values.ports.http) "grpc_port" (int .Values.ports.grpc) -}}
{{- if .Values.tls.existingSecret -}}
{{- $_ := set $server "tls" (dict "cert_file" (printf "%s/tls.crt" (include "yunmo.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "yunmo.tlsDir" .))) -}}
{{- end -}}
{{- $storage := dict -}}
{{- if include "yunmo.clusterMode" . -}}
{{- $_ := set $storage "postgres_max_connections" (int .Values.externalPostgresql.maxConnections) -}}
{{- end -}}
{{- if .Values.s3.bucket -}}
{{- $_ := set $storage "s3" (dict "bucket" .Values.s3.bucket "prefix" .Values.s3.prefix "endpoint" .Values.s3.endpoint "region" .Values.s3.region "path_style" .Values.s3.pathStyle "cache_max_bytes" (int64 .Values.s3.cacheMaxBytes)) -}}
{{- end -}}
{{- if .Values.encryption.existingSecret -}}
{{- $_ := set $storage "encryption_key_file" (printf "%s/current/model.key" (include "yunmo.keyDir" .)) -}}
{{- end -}}
{{- if .Values.encryption.previousKeys -}}
{{- $previous := list -}}
{{- range $index, $_ := .Values.encryption.previousKeys -}}
{{- $previous = append $previous (printf "%s/previous-%d/model.key" (include "yunmo.keyDir" $) $index) -}}
{{- end -}}
{{- $_ := set $storage "previous_encryption_key_files" $previous -}}
{{- end -}}
{{- $chart := dict "server" $server "storage" $storage -}}
{{- if .Values.redis.existingSecret -}}
{{- $_ := set $chart "limits" (dict "store" "redis" "on_store_failure" .Values.redis.onStoreFailure) -}}
{{- end -}}
{{- toJson (mustMergeOverwrite $config $chart) -}}
{{- end -}}

{{/* yunmo.toml: the settings above as TOML (Helm's toToml writes whole numbers as floats, which the server refuses). */}}
{{- define "yunmo.configToml" -}}
# Rendered by the Yunmo chart: the chart's values layered over config/default.toml.
{{ include "yunmo.toml.table" (dict "path" "" "table" (include "yunmo.configJson" . | fromJson)) | trim }}
{{- end -}}

{{- define "yunmo.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "yunmo.toml.value" -}}
{{- $value := .value -}}
{{- if kindIs "string" $value -}}
{{- toJson $value -}}
{{- else if kindIs "bool" $value -}}
{{- ternary "true" "false" $value -}}
{{- else if or (kindIs "float64" $value) (kindIs "float32" $value) -}}
{{- if eq (floor $value) (float64 $value) -}}{{- printf "%d" (int64 $value) -}}{{- else -}}{{- toString $value -}}{{- end -}}
{{- else if or (kindIs "int" $value) (kindIs "int64" $value) (kindIs "int32" $value) (kindIs "uint64" $value) -}}
{{- printf "%d" $value -}}
{{- else if kindIs "slice" $value -}}
{{- $items := list -}}
{{- range $value -}}
{{- $items = append $items (include "yunmo.toml.value" (dict "value" . "path" $.path)) -}}
{{- end -}}
[{{ join ", " $items }}]
{{- else if kindIs "invalid" $value -}}
{{- fail (printf "config.%s is null: give it a value or leave it out." .path) -}}
{{- else -}}
{{- fail (printf "config.%s: a %s cannot be written to yunmo.toml." .path (kindOf $value)) -}}
{{- end -}}
{{- end -}}

{{- define "yunmo.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- $scalars := 0 -}}{{- $tables := 0 -}}
{{- range $key, $value := $table -}}
{{- if kindIs "map" $value -}}{{- $tables = add1 $tables -}}{{- else -}}{{- $scalars = add1 $scalars -}}{{- end -}}
{{- end -}}
{{- /* A table with only sub-tables needs no header of its own. */ -}}
{{- if and $path (or (gt $scalars 0) (eq $tables 0)) }}

[{{ $path }}]
{{- end -}}
{{- range $key := keys $table | sortAlpha -}}
{{- $value := get $table $key -}}
{{- if not (kindIs "map" $value) }}
{{ include "yunmo.toml.key" $key }} = {{ include "yunmo.toml.value" (dict "value" $value "path" (trimPrefix "." (printf "%s.%s" $path $key))) }}
{{- end -}}
{{- end -}}
{{- range $key := keys $table | sortAlpha -}}
{{- $value := get $table $key -}}
{{- if kindIs "map" $value -}}
{{- include "yunmo.toml.table" (dict "path" (trimPrefix "." (printf "%s.%s" $path (include "yunmo.toml.key" $key))) "table" $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The server's environment: where it binds and keeps data (the image sets both too; these win), secrets by reference, then extraEnv. */}}
{{- define "yunmo.env" -}}
- name: YUNMO__SERVER__HOST
  value: {{ .Values.bindAddress | quote }}
- name: YUNMO__STORAGE__DATA_DIR
  value: {{ .Values.data.mountPath | quote }}
{{- if .Values.externalPostgresql.existingSecret }}
- name: YUNMO__STORAGE__POSTGRES_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalPostgresql.existingSecret | quote }}
      key: {{ .Values.externalPostgresql.urlKey | quote }}
{{- end }}
{{- if .Values.s3.credentials.existingSecret }}
- name: YUNMO__STORAGE__S3__ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.credentials.existingSecret | quote }}
      key: {{ .Values.s3.credentials.accessKeyIdKey | quote }}
- name: YUNMO__STORAGE__S3__SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.credentials.existingSecret | quote }}
      key: {{ .Values.s3.credentials.secretAccessKeyKey | quote }}
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: YUNMO__LIMITS__REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | quote }}
      key: {{ .Values.redis.urlKey | quote }}
{{- end }}
{{- if .Values.auth.bootstrapKey.existingSecret }}
- name: YUNMO__AUTH__BOOTSTRAP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.bootstrapKey.existingSecret | quote }}
      key: {{ .Values.auth.bootstrapKey.key | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes of a server or migration pod: (dict "root" $ "configMap" NAME "data" BOOL). */}}
{{- define "yunmo.volumes" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $values.tmp.sizeLimit | quote }}
{{- $volume := include "yunmo.dataVolume" $root }}
- name: data
{{- if or (not .data) (eq $volume "emptyDir") }}
  emptyDir:
    {{- if $values.data.medium }}
    medium: {{ $values.data.medium | quote }}
    {{- end }}
    sizeLimit: {{ $values.data.size | quote }}
{{- else if eq $volume "ephemeral" }}
  ephemeral:
    volumeClaimTemplate:
      metadata:
        labels:
          {{- include "yunmo.serverSelectorLabels" $root | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml $values.data.accessModes | nindent 10 }}
        {{- if $values.data.storageClassName }}
        storageClassName: {{ $values.data.storageClassName | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ $values.data.size | quote }}
{{- else }}
  persistentVolumeClaim:
    claimName: {{ include "yunmo.dataClaimName" $root }}
{{- end }}
{{- if $values.tls.existingSecret }}
- name: tls
  secret:
    secretName: {{ $values.tls.existingSecret | quote }}
    defaultMode: 288  # 0440: the server's group (fsGroup) reads, nobody else
    items:
      - key: {{ $values.tls.certKey | quote }}
        path: tls.crt
      - key: {{ $values.tls.keyKey | quote }}
        path: tls.key
{{- end }}
{{- if $values.encryption.existingSecret }}
- name: encryption-key
  secret:
    secretName: {{ $values.encryption.existingSecret | quote }}
    defaultMode: 288  # 0440: the server's group (fsGroup) reads, nobody else
    items:
      - key: {{ $values.encryption.key | quote }}
        path: model.key
{{- end }}
{{- range $index, $previous := $values.encryption.previousKeys }}
- name: previous-key-{{ $index }}
  secret:
    secretName: {{ $previous.existingSecret | quote }}
    defaultMode: 288  # 0440: the server's group (fsGroup) reads, nobody else
    items:
      - key: {{ $previous.key | quote }}
        path: model.key
{{- end }}
{{- with $values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "yunmo.volumeMounts" -}}
- name: config
  mountPath: {{ include "yunmo.configDir" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ .Values.data.mountPath }}
{{- if .Values.tls.existingSecret }}
- name: tls
  mountPath: {{ include "yunmo.tlsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.encryption.existingSecret }}
- name: encryption-key
  mountPath: {{ include "yunmo.keyDir" . }}/current
  readOnly: true
{{- end }}
{{- range $index, $_ := .Values.encryption.previousKeys }}
- name: previous-key-{{ $index }}
  mountPath: {{ include "yunmo.keyDir" $ }}/previous-{{ $index }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* HTTP or HTTPS for probes and scrapes. */}}
{{- define "yunmo.scheme" -}}
{{- if .Values.tls.existingSecret -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
