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

/// Registers a help text for each metric.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS_TOTAL, "Inference requests by model, version and outcome.");
    describe_histogram!(REQUEST_DURATION_SECONDS, Unit::Seconds, "Inference time in the service layer.");
    describe_histogram!(QUEUE_DURATION_SECONDS, Unit::Seconds, "Time waiting for a model worker.");
    describe_histogram!(COMPUTE_DURATION_SECONDS, Unit::Seconds, "Time computing in the runtime.");
    describe_counter!(DROPPED_TOTAL, "Requests dropped before compute because the client went away.");
    describe_gauge!(QUEUE_DEPTH, "Requests admitted and waiting for a worker.");
    describe_histogram!(BATCH_SIZE, Unit::Count, "Rows per runtime call after dynamic batching.");
    describe_histogram!(BATCH_REQUESTS, Unit::Count, "Requests merged into one runtime call.");
    describe_gauge!(MODELS_LOADED, "Model versions loaded.");
    describe_histogram!(MODEL_LOAD_DURATION_SECONDS, Unit::Seconds, "Time to load a model version.");
    describe_counter!(MODEL_LOAD_FAILURES_TOTAL, "Model loads that failed.");
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests by route, method and status class.");
    describe_histogram!(HTTP_REQUEST_DURATION_SECONDS, Unit::Seconds, "HTTP request duration.");
}
