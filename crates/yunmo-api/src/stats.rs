//! Live statistics (`GET /api/v1/stats`): each loaded version's requests, failures, tokens and latency
//! quantiles second by second over the last 15 minutes, as column arrays that a chart plots directly.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Query;

/// The statistics routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/stats", get(live_stats))
}

/// Which statistics.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Only this model (as the caller names it).
    pub model: Option<String>,
    /// The last this many seconds, 1 to 900 (default 60).
    pub seconds: Option<u64>,
}

/// Live statistics of the loaded versions the caller can see.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsDto {
    /// The newest second of every series (Unix seconds).
    pub now: u64,
    /// Seconds in every series.
    pub seconds: u64,
    /// One entry per loaded version, by model and version.
    pub versions: Vec<VersionStatsDto>,
}

/// One loaded version's live statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionStatsDto {
    /// Model name, as the caller names it.
    pub model: String,
    /// Version number.
    pub version: u64,
    /// `tensor` (ONNX models and embeddings) or `generate` (LLMs).
    pub kind: String,
    /// Requests waiting now (for LLMs, sequences waiting for a slot).
    pub queue_depth: u64,
    /// The most that may wait (`scheduler.queue_capacity`; tensor versions).
    pub queue_capacity: Option<u64>,
    /// LLMs: sequences being prefilled or decoded now.
    pub running: Option<u64>,
    /// LLMs: share of the KV cache holding tokens now, 0 to 1.
    pub kv_cache_usage: Option<f64>,
    /// Requests and failures over the whole window.
    pub totals: TotalsDto,
    /// The series, one entry per second, oldest first.
    pub series: SeriesDto,
}

/// Sums over the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotalsDto {
    /// Requests that ended (answered or failed).
    pub requests: u64,
    /// Of them, failed.
    pub failed: u64,
    /// Tokens generated.
    pub tokens: u64,
}

/// Column arrays of equal length, one entry per second.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesDto {
    /// Unix seconds.
    pub t: Vec<u64>,
    /// Requests that ended in that second.
    pub requests: Vec<u64>,
    /// Of them, failed (every kind).
    pub failed: Vec<u64>,
    /// Failures by kind: `invalid` (the caller's mistake: a bad input, an unknown model), `overloaded` (a full
    /// queue, a limit, a model not ready, a store down), `timeout`, `failed` (the runtime or server),
    /// `cancelled` (the client left before the end).
    pub failures: std::collections::BTreeMap<String, Vec<u64>>,
    /// Tokens generated in that second (LLMs).
    pub tokens: Vec<u64>,
    /// Median latency, milliseconds (the upper bound of its power-of-two bucket from 0.1 ms); null without requests.
    pub p50_ms: Vec<Option<f64>>,
    /// 99th percentile latency, milliseconds, likewise.
    pub p99_ms: Vec<Option<f64>>,
    /// LLMs: median time to first token, milliseconds, likewise (absent for tensor versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_token_p50_ms: Option<Vec<Option<f64>>>,
    /// LLMs: median time between tokens, milliseconds, likewise (absent for tensor versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inter_token_p50_ms: Option<Vec<Option<f64>>>,
}

/// Live statistics of the loaded versions the caller can see (needs `models:read`, `models:write` or
/// `metrics`): what the console's live charts plot.
#[utoipa::path(get, path = "/api/v1/stats", params(StatsQuery), responses((status = 200, body = StatsDto)))]
pub async fn live_stats(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<StatsQuery>,
) -> Result<Json<StatsDto>, ApiError> {
    let seconds = query.seconds.unwrap_or(60);
    let (now, found) = state.service.live_stats(&caller.call, query.model.as_deref(), seconds).await.map_err(ApiError::admin)?;
    let versions = found
        .into_iter()
        .map(|stats| {
            let series = stats.series;
            VersionStatsDto {
                model: stats.model,
                version: stats.version,
                kind: stats.kind.to_string(),
                queue_depth: stats.queue_depth as u64,
                queue_capacity: stats.queue_capacity.map(|capacity| capacity as u64),
                running: stats.running.map(|running| running as u64),
                kv_cache_usage: stats.kv_cache_usage,
                totals: TotalsDto {
                    requests: series.requests.iter().sum(),
                    failed: series.failed.iter().sum(),
                    tokens: series.tokens.iter().sum(),
                },
                series: SeriesDto {
                    t: series.seconds,
                    requests: series.requests,
                    failed: series.failed,
                    failures: yunmo_service::stats::FAILURE_KINDS
                        .iter()
                        .zip(series.failures)
                        .map(|(kind, counts)| (kind.as_str().to_string(), counts))
                        .collect(),
                    tokens: series.tokens,
                    p50_ms: series.p50_ms,
                    p99_ms: series.p99_ms,
                    first_token_p50_ms: (stats.kind == "generate").then_some(series.first_token_p50_ms),
                    inter_token_p50_ms: (stats.kind == "generate").then_some(series.inter_token_p50_ms),
                },
            }
        })
        .collect();
    Ok(Json(StatsDto { now, seconds, versions }))
}
