//! The one configuration struct: compiled-in defaults, then a file, then `YUNMO__*` env, then flags.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The reference configuration, compiled in as the defaults.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");

/// Everything `yunmo serve` can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP server and request limits.
    pub server: ServerSettings,
    /// Where data lives.
    pub storage: StorageSettings,
    /// Runtimes.
    pub backends: BackendSettings,
    /// Queues.
    pub scheduler: SchedulerSettings,
    /// Logs and metrics.
    pub telemetry: TelemetrySettings,
    /// API keys and metering.
    pub auth: AuthSettings,
    /// Where rate limits and quotas are counted.
    pub limits: LimitSettings,
    /// Drift monitoring defaults (each version's config may override them field by field).
    pub drift: yunmo_drift::DriftSettings,
    /// The built-in alert rules and where their notifications go.
    pub alerts: AlertSettings,
    /// Background jobs (training) and their dataset files.
    pub jobs: JobSettings,
    /// Limits of pipelines' built-in steps.
    pub pipelines: PipelineSettings,
    /// Ollama's API.
    pub ollama: OllamaSettings,
    /// OpenAI's Responses API.
    pub responses: ResponsesSettings,
}

/// `[responses]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesSettings {
    /// Seconds a stored response is kept (0: responses are never stored).
    pub retention_s: u64,
}

/// `[ollama]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaSettings {
    /// A Yunmo key that requests to the Ollama routes without a key act as ("" = none: they need a key).
    pub key: Secret,
}

/// `[pipelines]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// Largest encoded image an image step decodes, bytes.
    pub max_image_bytes: usize,
    /// Most pixels (width x height) of a decoded image.
    pub max_image_pixels: u64,
    /// Longest side of a decoded image, pixels.
    pub max_image_side: u32,
}

/// `[jobs]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Jobs this replica runs at once (0: it runs none; other replicas do).
    pub workers: usize,
    /// Seconds a claim on a running job lasts without renewal (renewed twice a second).
    pub lease_s: u64,
    /// Runs of one job before it is failed for good.
    pub max_attempts: u32,
    /// Longest a job may run, seconds.
    pub max_runtime_s: u64,
    /// Largest dataset file, bytes.
    pub max_file_bytes: u64,
    /// Most data rows of a dataset file.
    pub max_rows: usize,
    /// Most columns of a dataset file.
    pub max_columns: usize,
}

/// `[alerts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// Evaluate the built-in rules at all.
    pub enabled: bool,
    /// Seconds between evaluations.
    pub interval_s: u64,
    /// Window of the error-rate and latency rules, seconds (1 to 900).
    pub window_s: u64,
    /// Requests a version needs in the window before those rules judge it.
    pub min_requests: u64,
    /// Share of requests failing (error, timeout, overload) that fires `YunmoHighErrorRate`.
    pub error_rate: f64,
    /// p99 latency objective, milliseconds (`YunmoLatencyObjective`).
    pub p99_ms: f64,
    /// Queue depth over capacity that fires `YunmoQueueSaturated`.
    pub queue_saturation: f64,
    /// How far ahead a monthly quota's projected run-out fires `YunmoQuotaRunningOut`, seconds.
    pub quota_horizon_s: u64,
    /// How far ahead forecast demand above measured capacity fires `YunmoCapacityForecast`, hours.
    pub capacity_horizon_h: usize,
    /// Changes kept in the history `GET /api/v1/alerts` shows.
    pub history: usize,
    /// Webhook receivers (URLs, which may hold tokens: secrets), sent Alertmanager's webhook JSON.
    pub webhooks: Vec<Secret>,
    /// This server's address as people reach it, for the notifications' links (default: the HTTP address).
    pub external_url: String,
    /// Longest wait for one delivery, milliseconds.
    pub webhook_timeout_ms: u64,
    /// Tries per receiver and notification (doubling backoff from 500 ms).
    pub webhook_attempts: u32,
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// "local" (this process) or "redis" (shared by replicas).
    pub store: String,
    /// Redis URL when `store` is "redis" (a secret).
    pub redis_url: Secret,
    /// Longest wait for Redis, in milliseconds, before it counts as down.
    pub store_timeout_ms: u64,
    /// "deny" (503) or "allow" (no limits) while Redis is down.
    pub on_store_failure: String,
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Require keys.
    pub enabled: bool,
    /// Paths served without a key.
    pub open_paths: Vec<String>,
    /// Bootstrap admin key to install on an empty database (a secret: printed and logged as `***`).
    pub bootstrap_key: Secret,
    /// Where a generated bootstrap key is written.
    pub bootstrap_key_file: String,
    /// How often usage events are written, in milliseconds.
    pub usage_flush_ms: u64,
    /// How long a key read from the database is reused, in milliseconds (0: not cached).
    pub key_cache_ms: u64,
    /// How long a key last read from the database is still accepted while the database cannot be reached.
    pub key_outage_ms: u64,
}

/// A setting that holds a secret (a key, password, token or credential). It reads like a string, but its
/// `Debug`, `Display` and `Serialize` forms are `***` (or `""` when unset), so neither the logged effective
/// configuration nor `--print-config` can show it. Only [`Secret::expose`] gives the value.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Marker shown instead of a set secret.
    pub const REDACTED: &'static str = "***";

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { Self::REDACTED }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

/// `[server.tls]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Bind address.
    pub host: String,
    /// HTTP port (0: any free port).
    pub http_port: u16,
    /// gRPC port (0: any free port).
    pub grpc_port: u16,
    /// Largest inference body.
    pub max_body_bytes: usize,
    /// Largest model upload.
    pub max_upload_bytes: u64,
    /// Largest JSON body of the management API.
    pub max_json_bytes: usize,
    /// Request bytes (bodies and tensors decoded from them) all requests together may hold in memory.
    pub max_inflight_bytes: usize,
    /// Most elements per tensor.
    pub max_tensor_elements: usize,
    /// Most headers per HTTP request.
    pub max_headers: usize,
    /// Most bytes of header names and values per request (HTTP, and gRPC's header list).
    pub max_header_bytes: usize,
    /// Open connections, HTTP and gRPC together.
    pub max_connections: usize,
    /// An HTTP/1 request head must arrive within this many seconds.
    pub header_read_timeout_seconds: u64,
    /// A connection with no request in flight and no bytes moving is closed after this many seconds.
    pub idle_timeout_seconds: u64,
    /// Async runtime threads (0 = one per core).
    pub worker_threads: usize,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace_seconds: u64,
    /// TLS.
    pub tls: TlsSettings,
    /// CORS for browser clients.
    pub cors: yunmo_api::cors::CorsConfig,
}

/// `[storage]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// File holding the AES-256 key for model files at rest ("" = no encryption).
    pub encryption_key_file: String,
    /// Key files model files may still be sealed with; they are re-sealed under the current key at start.
    pub previous_encryption_key_files: Vec<String>,
    /// Seconds an unreferenced stored file must be old before the start sweep removes it.
    pub orphan_grace_s: u64,
    /// PostgreSQL URL of the metadata store shared by replicas ("" = SQLite in `data_dir`).
    pub postgres_url: Secret,
    /// Connections to PostgreSQL per process.
    pub postgres_max_connections: u32,
    /// Model files in an S3 bucket instead of `data_dir`.
    pub s3: S3Settings,
}

/// `[storage.s3]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Bucket ("" = model files in `data_dir/artifacts`).
    pub bucket: String,
    /// Key prefix inside the bucket.
    pub prefix: String,
    /// Endpoint of an S3-compatible server ("" = AWS).
    pub endpoint: String,
    /// Region ("" = `AWS_REGION`, else us-east-1).
    pub region: String,
    /// Access key id ("" = `AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// Secret access key ("" = `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Secret,
    /// Path-style requests (most S3-compatible servers need them).
    pub path_style: bool,
    /// Bytes of model files this replica keeps in `data_dir/cache`.
    pub cache_max_bytes: u64,
}

/// `[backends]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// ONNX Runtime.
    pub onnx: OnnxSettings,
    /// llama.cpp for GGUF LLMs.
    pub gguf: GgufSettings,
}

/// `[backends.gguf]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GgufSettings {
    /// CPU threads per model (0 = all cores).
    pub threads: usize,
    /// Sequences decoded together per model.
    pub max_sequences: u32,
    /// Tokens per sequence (prompt plus completion).
    pub context_per_sequence: u32,
    /// Most tokens per decode step.
    pub batch_tokens: u32,
    /// Layers offloaded to the GPU (cuda builds only).
    pub gpu_layers: u32,
    /// Reuse the KV cells of an earlier request that shares the prompt's prefix.
    pub prefix_cache: bool,
    /// Tokens per prefill chunk, the unit of prefix reuse.
    pub prefill_chunk: u32,
}

/// `[backends.onnx]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxSettings {
    /// libonnxruntime path ("" = default lookup).
    pub library_path: String,
    /// Intra-op threads per instance (0 = ONNX Runtime's default).
    pub intra_op_threads: usize,
}

/// `[scheduler]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Queue capacity per loaded version.
    pub queue_capacity: usize,
    /// Per-request timeout in milliseconds.
    pub request_timeout_ms: u64,
    /// Estimated bytes all loaded models may hold (0 = no limit).
    pub memory_budget_bytes: u64,
    /// Unload models unused this long (0 = never).
    pub idle_unload_seconds: u64,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// tracing filter.
    pub log_level: String,
    /// "text" or "json".
    pub log_format: String,
    /// Serve /metrics.
    pub metrics: bool,
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FlagOverrides {
    /// `--host`.
    pub host: Option<String>,
    /// `--http-port`.
    pub http_port: Option<u16>,
    /// `--grpc-port`.
    pub grpc_port: Option<u16>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
}

impl Settings {
    /// Loads the layers in order. `env` is the process environment (passed in so tests need not mutate it).
    pub fn load(
        config_file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &FlagOverrides,
    ) -> Result<Settings, String> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(format!("config file '{}' does not exist", path.display()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let env: Vec<(String, String)> = env.into_iter().filter(|(key, _)| key.starts_with("YUNMO__")).collect();
        let env_toml = env_to_toml(&env)?;
        figment = figment.merge(Toml::string(&env_toml));
        let mut overrides = serde_json::Map::new();
        let mut section = |name: &str, key: &str, value: serde_json::Value| {
            let entry = overrides.entry(name.to_string()).or_insert_with(|| serde_json::json!({}));
            entry[key] = value;
        };
        if let Some(host) = &flags.host {
            section("server", "host", host.clone().into());
        }
        if let Some(port) = flags.http_port {
            section("server", "http_port", port.into());
        }
        if let Some(port) = flags.grpc_port {
            section("server", "grpc_port", port.into());
        }
        if let Some(dir) = &flags.data_dir {
            section("storage", "data_dir", dir.display().to_string().into());
        }
        if let Some(level) = &flags.log_level {
            section("telemetry", "log_level", level.clone().into());
        }
        figment = figment.merge(Serialized::defaults(serde_json::Value::Object(overrides)));
        let settings: Settings = figment.extract().map_err(|error| format!("invalid configuration: {error}"))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks bounds; messages name the key, the bound and the value.
    pub fn validate(&self) -> Result<(), String> {
        self.drift.validate()?;
        self.validate_alerts()?;
        self.server.cors.layer()?;
        let server = &self.server;
        let at_least_one = [
            ("server.max_body_bytes", server.max_body_bytes as u64),
            ("server.max_json_bytes", server.max_json_bytes as u64),
            ("server.max_tensor_elements", server.max_tensor_elements as u64),
            ("server.max_connections", server.max_connections as u64),
            ("server.header_read_timeout_seconds", server.header_read_timeout_seconds),
            ("server.idle_timeout_seconds", server.idle_timeout_seconds),
            ("server.max_headers", server.max_headers as u64),
            ("scheduler.queue_capacity", self.scheduler.queue_capacity as u64),
            ("scheduler.request_timeout_ms", self.scheduler.request_timeout_ms),
            ("auth.usage_flush_ms", self.auth.usage_flush_ms),
        ];
        if let Some((setting, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{setting} must be at least 1, got 0"));
        }
        if server.max_inflight_bytes < server.max_body_bytes {
            return Err(format!(
                "server.max_inflight_bytes must be at least server.max_body_bytes = {}, got {}",
                server.max_body_bytes, server.max_inflight_bytes
            ));
        }
        if !self.storage.previous_encryption_key_files.is_empty() && self.storage.encryption_key_file.is_empty() {
            return Err("storage.previous_encryption_key_files needs storage.encryption_key_file (the key to re-encrypt under)".into());
        }
        if !(1024..=u32::MAX as usize).contains(&server.max_header_bytes) {
            return Err(format!("server.max_header_bytes must be between 1024 and {}, got {}", u32::MAX, server.max_header_bytes));
        }
        if self.server.tls.cert_file.is_empty() != self.server.tls.key_file.is_empty() {
            return Err("server.tls.cert_file and server.tls.key_file must be set together".into());
        }
        let url = self.storage.postgres_url.expose();
        if !(url.is_empty() || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("storage.postgres_url must start with postgres:// or postgresql://".into());
        }
        if self.storage.postgres_max_connections < 3 {
            // One listens for changes for good and one holds the maintenance lock during the sweep.
            return Err(format!("storage.postgres_max_connections must be at least 3, got {}", self.storage.postgres_max_connections));
        }
        if !self.storage.s3.bucket.is_empty() && self.storage.s3.cache_max_bytes == 0 {
            return Err("storage.s3.cache_max_bytes must be at least 1 when storage.s3.bucket is set, got 0".into());
        }
        self.validate_limits()?;
        if !matches!(self.telemetry.log_format.as_str(), "text" | "json") {
            return Err(format!("telemetry.log_format must be \"text\" or \"json\", got {:?}", self.telemetry.log_format));
        }
        Ok(())
    }

    fn validate_alerts(&self) -> Result<(), String> {
        let alerts = &self.alerts;
        let counts = [
            ("alerts.interval_s", alerts.interval_s, 1, 86_400),
            ("alerts.window_s", alerts.window_s, 1, 900),
            ("alerts.history", alerts.history as u64, 1, 100_000),
            ("alerts.capacity_horizon_h", alerts.capacity_horizon_h as u64, 1, 24),
            ("alerts.webhook_timeout_ms", alerts.webhook_timeout_ms, 1, 600_000),
            ("alerts.webhook_attempts", u64::from(alerts.webhook_attempts), 1, 100),
        ];
        for (name, value, low, high) in counts {
            if !(low..=high).contains(&value) {
                return Err(format!("{name} must be between {low} and {high}, got {value}"));
            }
        }
        let shares = [("alerts.error_rate", alerts.error_rate), ("alerts.queue_saturation", alerts.queue_saturation)];
        for (name, value) in shares {
            if !(value > 0.0 && value <= 1.0) {
                return Err(format!("{name} must be in (0, 1], got {value}"));
            }
        }
        if !(alerts.p99_ms.is_finite() && alerts.p99_ms > 0.0) {
            return Err(format!("alerts.p99_ms must be a positive number, got {}", alerts.p99_ms));
        }
        for url in &alerts.webhooks {
            if !(url.expose().starts_with("http://") || url.expose().starts_with("https://")) {
                return Err("alerts.webhooks: every receiver must be an http:// or https:// URL".into());
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), String> {
        let limits = &self.limits;
        match limits.store.as_str() {
            "local" => {}
            "redis" if limits.redis_url.expose().is_empty() => return Err("limits.store = \"redis\" needs limits.redis_url".into()),
            "redis" => {}
            other => return Err(format!("limits.store must be \"local\" or \"redis\", got {other:?}")),
        }
        if !matches!(limits.on_store_failure.as_str(), "deny" | "allow") {
            return Err(format!("limits.on_store_failure must be \"deny\" or \"allow\", got {:?}", limits.on_store_failure));
        }
        if limits.store_timeout_ms == 0 {
            return Err("limits.store_timeout_ms must be at least 1, got 0".into());
        }
        Ok(())
    }

    /// The ONNX Runtime library to load.
    pub fn onnx_library(&self) -> PathBuf {
        if !self.backends.onnx.library_path.is_empty() {
            return PathBuf::from(&self.backends.onnx.library_path);
        }
        if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
            return PathBuf::from(path);
        }
        let cache = std::env::var_os("YUNMO_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/yunmo"));
        cache.join("lib/libonnxruntime.so.1.31.1")
    }
}

/// Turns `YUNMO__SECTION__KEY=value` pairs into TOML, reading each value as TOML when it parses
/// (numbers, booleans) and as a string otherwise. Keys are lower-cased; nested sections use more `__`.
fn env_to_toml(env: &[(String, String)]) -> Result<String, String> {
    let mut root = toml_edit_like::Table::default();
    for (key, value) in env {
        let path: Vec<String> = key["YUNMO__".len()..].split("__").map(str::to_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("environment variable {key}: empty section or key"));
        }
        root.insert(&path, value);
    }
    Ok(root.render())
}

/// A tiny nested map rendered as TOML (enough for env overrides).
mod toml_edit_like {
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct Table {
        values: BTreeMap<String, String>,
        tables: BTreeMap<String, Table>,
    }

    impl Table {
        pub fn insert(&mut self, path: &[String], value: &str) {
            match path {
                [key] => {
                    self.values.insert(key.clone(), literal(value));
                }
                [section, rest @ ..] => self.tables.entry(section.clone()).or_default().insert(rest, value),
                [] => {}
            }
        }

        pub fn render(&self) -> String {
            let mut out = String::new();
            self.render_into("", &mut out);
            out
        }

        fn render_into(&self, prefix: &str, out: &mut String) {
            if !prefix.is_empty() && !self.values.is_empty() {
                out.push_str(&format!("[{prefix}]\n"));
            }
            for (key, value) in &self.values {
                out.push_str(&format!("{key} = {value}\n"));
            }
            for (name, table) in &self.tables {
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                table.render_into(&path, out);
            }
        }
    }

    /// Numbers and booleans stay typed, a JSON array of scalars becomes a TOML array (JSON's string
    /// escapes are valid in TOML); everything else becomes a quoted string.
    fn literal(value: &str) -> String {
        let typed = value == "true" || value == "false" || value.parse::<i64>().is_ok() || value.parse::<f64>().is_ok();
        if typed {
            return value.to_string();
        }
        if let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(value)
            && items.iter().all(|item| item.is_string() || item.is_number() || item.is_boolean())
        {
            let items: Vec<String> = items.iter().map(serde_json::Value::to_string).collect();
            return format!("[{}]", items.join(", "));
        }
        serde_json::Value::String(value.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let settings = Settings::load(None, Vec::new(), &FlagOverrides::default()).unwrap();
        assert_eq!(settings.server.http_port, 8080);
        assert_eq!(settings.server.grpc_port, 8081);
        assert_eq!(settings.server.host, "127.0.0.1");
        assert_eq!(settings.server.max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(settings.storage.data_dir, PathBuf::from("./yunmo-data"));
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("yunmo.toml");
        std::fs::write(&file, "[server]\nhttp_port = 9000\nhost = \"0.0.0.0\"\n[scheduler]\nqueue_capacity = 7\n").unwrap();
        let env = vec![
            ("YUNMO__SERVER__HTTP_PORT".to_string(), "9100".to_string()),
            ("YUNMO__TELEMETRY__LOG_FORMAT".to_string(), "json".to_string()),
            ("YUNMO__BACKENDS__ONNX__INTRA_OP_THREADS".to_string(), "2".to_string()),
            ("YUNMO__AUTH__OPEN_PATHS".to_string(), r#"["/v2/health/*", "/odd \"path\""]"#.to_string()),
            ("YUNMO__AUTH__BOOTSTRAP_KEY_FILE".to_string(), r#"C:\keys\a "b".key"#.to_string()),
            ("OTHER".to_string(), "ignored".to_string()),
        ];
        let flags = FlagOverrides { http_port: Some(0), ..FlagOverrides::default() };
        let settings = Settings::load(Some(&file), env.clone(), &flags).unwrap();
        assert_eq!(settings.server.http_port, 0, "flags win");
        assert_eq!(settings.server.host, "0.0.0.0", "file beats defaults");
        assert_eq!(settings.scheduler.queue_capacity, 7);
        assert_eq!(settings.telemetry.log_format, "json", "env beats defaults");
        assert_eq!(settings.backends.onnx.intra_op_threads, 2, "nested env sections");
        assert_eq!(settings.auth.open_paths, ["/v2/health/*", "/odd \"path\""], "a JSON array in env is a list");
        assert_eq!(settings.auth.bootstrap_key_file, r#"C:\keys\a "b".key"#, "any other text is a string, as is");
        let settings = Settings::load(Some(&file), env, &FlagOverrides::default()).unwrap();
        assert_eq!(settings.server.http_port, 9100, "env beats file");
    }

    #[test]
    fn secrets_never_print() {
        let key = "ym_abcd_0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
        let env = vec![("YUNMO__AUTH__BOOTSTRAP_KEY".to_string(), key.to_string())];
        let settings = Settings::load(None, env, &FlagOverrides::default()).unwrap();
        assert_eq!(settings.auth.bootstrap_key.expose(), key);
        for shown in [serde_json::to_string(&settings).unwrap(), format!("{settings:?}"), format!("{}", settings.auth.bootstrap_key)] {
            assert!(!shown.contains(key) && !shown.contains("0123456789abcdef"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        let unset = Settings::load(None, Vec::new(), &FlagOverrides::default()).unwrap();
        assert_eq!(serde_json::to_value(&unset).unwrap()["auth"]["bootstrap_key"], "", "an unset secret shows as empty");
    }

    #[test]
    fn bad_values_are_named() {
        let env = vec![("YUNMO__SCHEDULER__QUEUE_CAPACITY".to_string(), "0".to_string())];
        let error = Settings::load(None, env, &FlagOverrides::default()).unwrap_err();
        assert_eq!(error, "scheduler.queue_capacity must be at least 1, got 0");
        let env = vec![("YUNMO__SERVER__BOGUS".to_string(), "1".to_string())];
        let error = Settings::load(None, env, &FlagOverrides::default()).unwrap_err();
        assert!(error.contains("bogus"), "{error}");
        let error = Settings::load(Some(Path::new("/nonexistent.toml")), Vec::new(), &FlagOverrides::default()).unwrap_err();
        assert!(error.contains("does not exist"), "{error}");
    }
}
