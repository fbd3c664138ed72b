//! Every metric name Yunmo exports, in one place. Labels are bounded: model, version, outcome.

/// Inference requests, by `model`, `version` and `outcome` (a [`crate::Code`] name or `ok`).
pub const REQUESTS_TOTAL: &str = "yunmo_inference_requests_total";
/// End-to-end time in the service layer, by `model` and `version`.
pub const REQUEST_DURATION_SECONDS: &str = "yunmo_inference_request_duration_seconds";
/// Time a request waited for a worker, by `model` and `version`.
pub const QUEUE_DURATION_SECONDS: &str = "yunmo_inference_queue_duration_seconds";
/// Time the runtime computed, by `model` and `version`.
pub const COMPUTE_DURATION_SECONDS: &str = "yunmo_inference_compute_duration_seconds";
/// Requests dropped before compute because their client went away, by `model` and `version`.
pub const DROPPED_TOTAL: &str = "yunmo_inference_dropped_total";
/// Requests admitted and waiting for a worker, by `model` and `version`.
pub const QUEUE_DEPTH: &str = "yunmo_inference_queue_depth";
/// Rows per runtime call (after dynamic batching), by `model` and `version`.
pub const BATCH_SIZE: &str = "yunmo_inference_batch_size";
/// Requests merged into one runtime call, by `model` and `version`.
pub const BATCH_REQUESTS: &str = "yunmo_inference_batch_requests";
/// Model versions loaded now.
pub const MODELS_LOADED: &str = "yunmo_models_loaded";
/// Time to load a model version (all instances), by `model`.
pub const MODEL_LOAD_DURATION_SECONDS: &str = "yunmo_model_load_duration_seconds";
/// Model loads that failed, by `model`.
pub const MODEL_LOAD_FAILURES_TOTAL: &str = "yunmo_model_load_failures_total";
/// HTTP requests, by route template, method and status class (`2xx`…).
pub const HTTP_REQUESTS_TOTAL: &str = "yunmo_http_requests_total";
/// HTTP request duration, by route template and method.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "yunmo_http_request_duration_seconds";
/// Models unloaded to stay within the memory budget or after idling, by `reason` (`memory`, `idle`).
pub const MODEL_EVICTIONS_TOTAL: &str = "yunmo_model_evictions_total";
/// Generations, by `model` and `outcome` (`ok`, `cancelled`, or a [`crate::Code`] name).
pub const LLM_REQUESTS_TOTAL: &str = "yunmo_llm_requests_total";
/// Prompt tokens admitted, by `model`.
pub const LLM_PROMPT_TOKENS_TOTAL: &str = "yunmo_llm_prompt_tokens_total";
/// Prompt tokens whose KV cells were reused from an earlier request (prefix cache), by model and version.
pub const LLM_PROMPT_CACHED_TOKENS_TOTAL: &str = "yunmo_llm_prompt_cached_tokens_total";
/// Finished generations by whether their prompt reused cached cells (`result`: `hit` or `miss`).
pub const LLM_PREFIX_CACHE_LOOKUPS_TOTAL: &str = "yunmo_llm_prefix_cache_lookups_total";
/// Tokens generated, by `model` (its rate is the model's tokens per second).
pub const LLM_GENERATED_TOKENS_TOTAL: &str = "yunmo_llm_generated_tokens_total";
/// Time from admission to the first generated token, by `model`.
pub const LLM_TIME_TO_FIRST_TOKEN_SECONDS: &str = "yunmo_llm_time_to_first_token_seconds";
/// Time between consecutive tokens of one generation, by `model`.
pub const LLM_INTER_TOKEN_LATENCY_SECONDS: &str = "yunmo_llm_inter_token_latency_seconds";
/// Decode speed of each generation after its first token, by `model`.
pub const LLM_REQUEST_TOKENS_PER_SECOND: &str = "yunmo_llm_request_tokens_per_second";
/// Sequences being prefilled or decoded, by `model` (set at scrape time).
pub const LLM_SEQUENCES_RUNNING: &str = "yunmo_llm_sequences_running";
/// Requests waiting for a sequence slot, by `model` (set at scrape time).
pub const LLM_SEQUENCES_WAITING: &str = "yunmo_llm_sequences_waiting";
/// Share of the KV cache holding tokens, 0 to 1, by `model` (set at scrape time).
pub const LLM_KV_CACHE_USAGE_RATIO: &str = "yunmo_llm_kv_cache_usage_ratio";
/// A feature's drift statistic on its judged window, by `model`, `version`, `feature` and `statistic`
/// (`psi`, `js_distance`, `cosine_distance`; set at scrape time).
pub const DRIFT_SCORE: &str = "yunmo_drift_score";
/// A feature's drift state: 0 ok, 1 warn, 2 alert, -1 not judged yet, by `model`, `version`, `feature`.
pub const DRIFT_STATE: &str = "yunmo_drift_state";
/// Rows in a version's current drift window, by `model`, `version`.
pub const DRIFT_WINDOW_ROWS: &str = "yunmo_drift_window_rows";
/// Samples dropped because the drift worker was behind, by `model`, `version` (since the watch began).
pub const DRIFT_SAMPLES_DROPPED: &str = "yunmo_drift_samples_dropped";
/// Requests forecast for the current hour, by `model` (refreshed every 10 minutes).
pub const FORECAST_REQUESTS_PER_HOUR: &str = "yunmo_forecast_requests_per_hour";
/// The most requests forecast for one hour of the next 24, by `model`.
pub const FORECAST_PEAK_REQUESTS_PER_HOUR: &str = "yunmo_forecast_peak_requests_per_hour";
/// Measured capacity of the version a model serves, requests per hour, by `model` and `version`.
pub const CAPACITY_REQUESTS_PER_HOUR: &str = "yunmo_capacity_requests_per_hour";
/// Tokens embedded, special tokens included, by `model`.
pub const EMBEDDING_TOKENS_TOTAL: &str = "yunmo_embedding_tokens_total";
/// Padded tokens (rows × longest) per encoder call, by `model`.
pub const EMBEDDING_BATCH_TOKENS: &str = "yunmo_embedding_batch_tokens";

/// Bytes of request data held now across all requests (`server.max_inflight_bytes` bounds it); set when
/// `/metrics` is rendered.
pub const INFLIGHT_REQUEST_BYTES: &str = "yunmo_inflight_request_bytes";

/// Connection slots held now (`server.max_connections` bounds them): open connections, HTTP and gRPC, and
/// those still closing.
pub const CONNECTIONS: &str = "yunmo_connections";
/// Requests that may wait for a loaded version (`scheduler.queue_capacity`), by `model` and `version`: with
/// `QUEUE_DEPTH`, its saturation.
pub const QUEUE_CAPACITY: &str = "yunmo_inference_queue_capacity";
/// Instances (sessions on their own threads) of a loaded tensor version, by `model` and `version`.
pub const MODEL_INSTANCES: &str = "yunmo_model_instances";

/// Seconds one step of a pipeline took (labels `model`, `version`, `step`).
pub const PIPELINE_STEP_DURATION_SECONDS: &str = "yunmo_pipeline_step_duration_seconds";

/// Records one pipeline step's duration.
pub(crate) fn pipeline_step(model: &str, version: u64, step: &str, took: std::time::Duration) {
    metrics::histogram!(PIPELINE_STEP_DURATION_SECONDS, "model" => model.to_string(), "version" => version.to_string(), "step" => step.to_string())
        .record(took.as_secs_f64());
}

/// Shadow copies not sent because `routing::MAX_SHADOW_INFLIGHT` were in flight (label `model`).
pub const SHADOW_DROPPED_TOTAL: &str = "yunmo_shadow_dropped_total";
/// Automatic rollbacks of a route's canaries by its guard (labels `model`, `version`).
pub const ROUTE_ROLLBACKS_TOTAL: &str = "yunmo_route_rollbacks_total";

/// Counts a shadow copy dropped for want of a slot.
pub(crate) fn counter_shadow_dropped(model: &str) {
    metrics::counter!(SHADOW_DROPPED_TOTAL, "model" => model.to_string()).increment(1);
}

/// Counts a canary rolled back by a guard.
pub(crate) fn counter_rollback(model: &str, version: u64) {
    metrics::counter!(ROUTE_ROLLBACKS_TOTAL, "model" => model.to_string(), "version" => version.to_string()).increment(1);
}

/// Histogram buckets fitted to each measure: `(metric name, upper bounds)`. Metrics not listed are
/// durations in seconds and take [`SECONDS_BUCKETS`].
pub const BUCKETS: [(&str, &[f64]); 4] = [
    (LLM_REQUEST_TOKENS_PER_SECOND, &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]),
    (BATCH_SIZE, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
    (BATCH_REQUESTS, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
    (EMBEDDING_BATCH_TOKENS, &[16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0]),
];
/// Buckets of every duration histogram, in seconds (100 µs to 30 s).
pub const SECONDS_BUCKETS: [f64; 17] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The per-request metrics of one loaded version, with their label sets built once at load.
pub(crate) struct VersionMetrics {
    /// `REQUESTS_TOTAL` with outcome `ok`.
    pub ok: metrics::Counter,
    /// `REQUEST_DURATION_SECONDS`.
    pub duration: metrics::Histogram,
    /// `QUEUE_DURATION_SECONDS`.
    pub queue: metrics::Histogram,
    /// `COMPUTE_DURATION_SECONDS`.
    pub compute: metrics::Histogram,
    model: String,
    version: String,
}

impl VersionMetrics {
    /// The handles of `model` at `version`.
    pub(crate) fn new(model: &str, version: u64) -> VersionMetrics {
        let (model, version) = (model.to_string(), version.to_string());
        let labels = [("model", model.clone()), ("version", version.clone())];
        VersionMetrics {
            ok: metrics::counter!(REQUESTS_TOTAL, "model" => model.clone(), "version" => version.clone(), "outcome" => "ok"),
            duration: metrics::histogram!(REQUEST_DURATION_SECONDS, &labels),
            queue: metrics::histogram!(QUEUE_DURATION_SECONDS, &labels),
            compute: metrics::histogram!(COMPUTE_DURATION_SECONDS, &labels),
            model,
            version,
        }
    }

    /// Counts a request that failed with `code`.
    pub(crate) fn failed(&self, code: crate::Code) {
        count_failed(&self.model, &self.version, code);
    }
}

/// Counts an inference request to `model` at `version` that failed with `code` (rare: its label set is
/// built each time, and nothing else of the version is registered).
pub(crate) fn count_failed(model: &str, version: &str, code: crate::Code) {
    metrics::counter!(REQUESTS_TOTAL, "model" => model.to_string(), "version" => version.to_string(), "outcome" => code.as_str())
        .increment(1);
}

/// The batching and worker metrics of one loaded tensor version, labelled once at load.
#[derive(Clone)]
pub(crate) struct BatchMetrics {
    /// `QUEUE_DEPTH`.
    pub queue_depth: metrics::Gauge,
    /// `BATCH_SIZE`.
    pub batch_size: metrics::Histogram,
    /// `BATCH_REQUESTS`.
    pub batch_requests: metrics::Histogram,
    /// `DROPPED_TOTAL`.
    pub dropped: metrics::Counter,
}

impl BatchMetrics {
    /// The handles of `model` at `version`.
    pub(crate) fn new(model: &str, version: u64) -> BatchMetrics {
        let labels = [("model", model.to_string()), ("version", version.to_string())];
        BatchMetrics {
            queue_depth: metrics::gauge!(QUEUE_DEPTH, &labels),
            batch_size: metrics::histogram!(BATCH_SIZE, &labels),
            batch_requests: metrics::histogram!(BATCH_REQUESTS, &labels),
            dropped: metrics::counter!(DROPPED_TOTAL, &labels),
        }
    }
}

/// The generation metrics of one loaded LLM version, labelled once at load.
#[derive(Clone)]
pub(crate) struct LlmMetrics {
    /// `LLM_TIME_TO_FIRST_TOKEN_SECONDS`.
    pub ttft: metrics::Histogram,
    /// `LLM_INTER_TOKEN_LATENCY_SECONDS`.
    pub itl: metrics::Histogram,
    /// `LLM_REQUEST_TOKENS_PER_SECOND`.
    pub tokens_per_second: metrics::Histogram,
    /// `LLM_GENERATED_TOKENS_TOTAL`.
    pub generated: metrics::Counter,
    /// `LLM_PROMPT_TOKENS_TOTAL`.
    pub prompt: metrics::Counter,
    /// `LLM_PROMPT_CACHED_TOKENS_TOTAL`.
    pub cached: metrics::Counter,
    /// `LLM_PREFIX_CACHE_LOOKUPS_TOTAL` with `result` `hit` and `miss`.
    pub lookups: [metrics::Counter; 2],
    /// `LLM_REQUESTS_TOTAL` with outcome `ok`.
    ok: metrics::Counter,
    model: String,
    version: String,
}

impl LlmMetrics {
    /// The handles of `model` at `version`.
    pub(crate) fn new(model: &str, version: u64) -> LlmMetrics {
        let labels = [("model", model.to_string()), ("version", version.to_string())];
        LlmMetrics {
            ttft: metrics::histogram!(LLM_TIME_TO_FIRST_TOKEN_SECONDS, &labels),
            itl: metrics::histogram!(LLM_INTER_TOKEN_LATENCY_SECONDS, &labels),
            tokens_per_second: metrics::histogram!(LLM_REQUEST_TOKENS_PER_SECOND, &labels),
            generated: metrics::counter!(LLM_GENERATED_TOKENS_TOTAL, &labels),
            prompt: metrics::counter!(LLM_PROMPT_TOKENS_TOTAL, &labels),
            cached: metrics::counter!(LLM_PROMPT_CACHED_TOKENS_TOTAL, &labels),
            lookups: ["hit", "miss"].map(|result| {
                metrics::counter!(LLM_PREFIX_CACHE_LOOKUPS_TOTAL, "model" => model.to_string(), "version" => version.to_string(), "result" => result)
            }),
            ok: metrics::counter!(LLM_REQUESTS_TOTAL, "model" => model.to_string(), "version" => version.to_string(), "outcome" => "ok"),
            model: model.to_string(),
            version: version.to_string(),
        }
    }

    /// Counts a generation that ended with `outcome` (`ok` through its handle; others are rare).
    pub(crate) fn ended(&self, outcome: &'static str) {
        match outcome {
            "ok" => self.ok.increment(1),
            _ => metrics::counter!(LLM_REQUESTS_TOTAL, "model" => self.model.clone(), "version" => self.version.clone(), "outcome" => outcome)
                .increment(1),
        }
    }
}

/// Registers a help text for each metric.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS_TOTAL, "Inference requests by model, version and outcome.");
    describe_histogram!(REQUEST_DURATION_SECONDS, Unit::Seconds, "Inference time in the service layer.");
    describe_histogram!(QUEUE_DURATION_SECONDS, Unit::Seconds, "Time waiting for a model worker.");
    describe_histogram!(COMPUTE_DURATION_SECONDS, Unit::Seconds, "Time computing in the runtime.");
    describe_counter!(DROPPED_TOTAL, "Requests dropped before compute because the client went away.");
    describe_gauge!(QUEUE_DEPTH, "Requests admitted and waiting for a worker.");
    describe_gauge!(CONNECTIONS, "Connection slots held now (server.max_connections): open connections and those still closing.");
    describe_gauge!(INFLIGHT_REQUEST_BYTES, Unit::Bytes, "Request bytes held now across all requests (server.max_inflight_bytes).");
    describe_histogram!(BATCH_SIZE, Unit::Count, "Rows per runtime call after dynamic batching.");
    describe_histogram!(BATCH_REQUESTS, Unit::Count, "Requests merged into one runtime call.");
    describe_gauge!(MODELS_LOADED, "Model versions loaded.");
    describe_histogram!(PIPELINE_STEP_DURATION_SECONDS, Unit::Seconds, "Time one step of a pipeline took, by model, version and step.");
    describe_counter!(SHADOW_DROPPED_TOTAL, "Shadow copies not sent because too many were in flight.");
    describe_counter!(ROUTE_ROLLBACKS_TOTAL, "Canaries rolled back to 0% by a route's guard.");
    describe_histogram!(MODEL_LOAD_DURATION_SECONDS, Unit::Seconds, "Time to load a model version.");
    describe_counter!(MODEL_LOAD_FAILURES_TOTAL, "Model loads that failed.");
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests by route, method and status class.");
    describe_histogram!(HTTP_REQUEST_DURATION_SECONDS, Unit::Seconds, "HTTP request duration.");
    describe_counter!(MODEL_EVICTIONS_TOTAL, "Models unloaded for the memory budget or after idling.");
    describe_counter!(
        yunmo_auth::LIMIT_STORE_FAILURES_TOTAL,
        "Requests that met an unreachable limit store, by behaviour: deny (503), allow (admitted unlimited), charge_dropped."
    );
    describe_counter!(LLM_REQUESTS_TOTAL, "Generations by model, version and outcome.");
    describe_gauge!(QUEUE_CAPACITY, "Requests that may wait for a loaded version (with the queue depth: saturation).");
    describe_gauge!(MODEL_INSTANCES, "Instances of a loaded tensor version, each on its own thread.");
    describe_counter!(LLM_PROMPT_TOKENS_TOTAL, "Prompt tokens admitted.");
    describe_counter!(LLM_PROMPT_CACHED_TOKENS_TOTAL, "Prompt tokens read from the prefix cache instead of computed.");
    describe_counter!(
        LLM_PREFIX_CACHE_LOOKUPS_TOTAL,
        "Finished generations whose prompt reused cached KV cells (result hit) or not (miss)."
    );
    describe_counter!(LLM_GENERATED_TOKENS_TOTAL, "Tokens generated.");
    describe_histogram!(LLM_TIME_TO_FIRST_TOKEN_SECONDS, Unit::Seconds, "Time to the first generated token.");
    describe_histogram!(LLM_INTER_TOKEN_LATENCY_SECONDS, Unit::Seconds, "Time between tokens of one generation.");
    describe_histogram!(LLM_REQUEST_TOKENS_PER_SECOND, Unit::Count, "Decode tokens per second of each generation.");
    describe_gauge!(LLM_SEQUENCES_RUNNING, "Sequences being prefilled or decoded.");
    describe_gauge!(LLM_SEQUENCES_WAITING, "Requests waiting for a sequence slot.");
    describe_gauge!(LLM_KV_CACHE_USAGE_RATIO, "Share of the KV cache in use.");
    describe_gauge!(DRIFT_SCORE, "Drift statistic of a feature on its judged window.");
    describe_gauge!(FORECAST_REQUESTS_PER_HOUR, "Requests forecast for the current hour.");
    describe_gauge!(FORECAST_PEAK_REQUESTS_PER_HOUR, "Most requests forecast for one hour of the next 24.");
    describe_gauge!(CAPACITY_REQUESTS_PER_HOUR, "Measured capacity of the serving version, requests per hour.");
    describe_gauge!(DRIFT_STATE, "Drift state of a feature: 0 ok, 1 warn, 2 alert, -1 not judged yet.");
    describe_gauge!(DRIFT_WINDOW_ROWS, "Rows in the current drift window.");
    describe_gauge!(DRIFT_SAMPLES_DROPPED, "Drift samples dropped because the drift worker was behind.");
    describe_counter!(EMBEDDING_TOKENS_TOTAL, "Tokens embedded.");
    describe_histogram!(EMBEDDING_BATCH_TOKENS, Unit::Count, "Padded tokens per encoder call.");
}
