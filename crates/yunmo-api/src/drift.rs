//! Drift of a model version: `GET /api/v1/models/{m}/versions/{v}/drift`, and its baseline: set from a
//! reference sample (`PUT .../drift/baseline` with a V2 inference body) or started over (`DELETE`).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use yunmo_auth::Action;
use yunmo_drift::report::{BinShare, FeatureReport, Report, WindowSpan};
use yunmo_service::drift::DriftReport;

use crate::AppState;
use crate::auth::Caller;
use crate::body::{Limit, read_body};
use crate::error::ApiError;
use crate::kserve::{decode, parse_version};

/// The drift routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/models/{name}/versions/{version}/drift", get(drift))
        .route("/api/v1/models/{name}/versions/{version}/drift/baseline", axum::routing::put(set_baseline).delete(reset_baseline))
}

/// A version's drift.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftDto {
    /// Whether the version is watched (`drift.enabled`).
    pub enabled: bool,
    /// Share of requests sampled.
    pub sampling: f64,
    /// Samples dropped because the drift worker was behind.
    pub dropped: u64,
    /// `collecting_baseline`, `insufficient_data` (no window has `min_count` rows yet), `ok`, `warn` or
    /// `alert` (the worst feature); `not_watched` when drift is off, `not_loaded` before the version served
    /// since the server started.
    pub state: String,
    /// The baseline.
    pub baseline: Option<BaselineDto>,
    /// The tumbling windows.
    pub window: Option<WindowsDto>,
    /// Each feature.
    pub features: Vec<FeatureDto>,
}

/// The baseline.
#[derive(Debug, Serialize, ToSchema)]
pub struct BaselineDto {
    /// `first_requests` or `reference` (an uploaded sample).
    pub source: String,
    /// Rows in it (so far, while collecting).
    pub rows: u64,
    /// Rows the first-requests baseline freezes at (`baseline_rows`).
    pub target_rows: u64,
    /// When it froze, Unix seconds.
    pub frozen_at: Option<u64>,
}

/// The windows.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowsDto {
    /// Length, seconds.
    pub seconds: u64,
    /// Rows a window needs before it is judged.
    pub min_count: u64,
    /// The window now filling.
    pub current: WindowDto,
    /// The window before it.
    pub last: Option<WindowDto>,
}

/// One window.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowDto {
    /// Start, Unix seconds.
    pub start: u64,
    /// End (exclusive), Unix seconds.
    pub end: u64,
    /// Rows counted.
    pub rows: u64,
}

/// One feature's drift.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureDto {
    /// `X[2]` (column 2 of input X), `X.mean` (each row's mean), `text` (a string input),
    /// `probabilities.class` (the class an output's scores pick), `prompt_tokens`, `completion_tokens`,
    /// `finish_reason`, `embedding`, `input_tokens`.
    pub name: String,
    /// `input`, `output`, `generation` or `embedding`.
    pub source: String,
    /// `numeric`, `categorical` or `vector`.
    pub kind: String,
    /// `psi` (numeric), `js_distance` (categorical) or `cosine_distance` (between mean vectors).
    pub statistic: String,
    /// Its value on the judged window (null before any row).
    pub value: Option<f64>,
    /// The value at which it warns.
    pub warn: f64,
    /// The value at which it alerts.
    pub alert: f64,
    /// `insufficient_data`, `ok`, `warn` or `alert`.
    pub state: String,
    /// The Jensen-Shannon distance too (numeric and categorical).
    pub js_distance: Option<f64>,
    /// The largest difference of one value's share (categorical).
    pub linf: Option<f64>,
    /// `current` or `last`: the window judged (the current one once it has `min_count` rows).
    pub window: String,
    /// Rows of this feature in that window.
    pub window_count: u64,
    /// Rows of this feature in the baseline.
    pub baseline_count: u64,
    /// Each bin's share of the baseline and of the window.
    pub bins: Vec<BinDto>,
}

/// One bin.
#[derive(Debug, Serialize, ToSchema)]
pub struct BinDto {
    /// What falls in it (`[0.2, 0.7)`, `< 0.1`, `setosa`, `(other)`).
    pub label: String,
    /// Its share of the baseline.
    pub baseline: f64,
    /// Its share of the window.
    pub window: f64,
}

fn window_dto(window: WindowSpan) -> WindowDto {
    WindowDto { start: window.start, end: window.end, rows: window.rows }
}

fn feature_dto(feature: FeatureReport) -> FeatureDto {
    FeatureDto {
        name: feature.name,
        source: feature.source.to_string(),
        kind: feature.kind.to_string(),
        statistic: feature.statistic.to_string(),
        value: feature.value,
        warn: feature.threshold.warn,
        alert: feature.threshold.alert,
        state: feature.state.as_str().to_string(),
        js_distance: feature.js_distance,
        linf: feature.linf,
        window: feature.window.to_string(),
        window_count: feature.window_count,
        baseline_count: feature.baseline_count,
        bins: feature.bins.into_iter().map(|BinShare { label, baseline, window }| BinDto { label, baseline, window }).collect(),
    }
}

fn dto(found: DriftReport) -> DriftDto {
    let (state, report) = match found.report {
        Some(report) => (report.state.as_str().to_string(), Some(report)),
        None if !found.enabled => ("not_watched".to_string(), None),
        None => ("not_loaded".to_string(), None),
    };
    let (baseline, window, features) = match report {
        Some(Report { baseline, window, features, .. }) => (
            Some(BaselineDto {
                source: baseline.source.to_string(),
                rows: baseline.rows,
                target_rows: baseline.target_rows,
                frozen_at: baseline.frozen_at,
            }),
            Some(WindowsDto {
                seconds: window.seconds,
                min_count: window.min_count,
                current: window_dto(window.current),
                last: window.last.map(window_dto),
            }),
            features.into_iter().map(feature_dto).collect(),
        ),
        None => (None, None, Vec::new()),
    };
    DriftDto { enabled: found.enabled, sampling: found.sampling, dropped: found.dropped, state, baseline, window, features }
}

/// A version's drift: per feature its statistic, value, thresholds, state and window counts (needs read
/// access to the model).
#[utoipa::path(get, path = "/api/v1/models/{name}/versions/{version}/drift", responses((status = 200, body = DriftDto), (status = 404, body = crate::schema::ErrorBody)))]
pub async fn drift(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<DriftDto>, ApiError> {
    let target = caller.target(&state, &name, Action::Read).await.map_err(ApiError::admin)?;
    let version = parse_version(&version).map_err(ApiError::admin)?;
    Ok(Json(dto(state.service.drift_report(&caller.call, &target, version).await.map_err(ApiError::admin)?)))
}

/// Sets the version's drift baseline from a reference sample: the body is a V2 inference request (JSON),
/// which the version runs (so its outputs get a reference too); its rows become the baseline, frozen at
/// once, and the windows start over (needs write access).
#[utoipa::path(put, path = "/api/v1/models/{name}/versions/{version}/drift/baseline", request_body(content = Object, description = "A KServe V2 inference request: {\"inputs\": [...]}", content_type = "application/json"), responses((status = 200, body = DriftDto), (status = 400, body = crate::schema::ErrorBody)))]
pub async fn set_baseline(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DriftDto>, ApiError> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(ApiError::admin)?;
    let version = parse_version(&version).map_err(ApiError::admin)?;
    let (body, charge) = read_body(&state, &headers, body, Limit::inference(&state.config)).await.map_err(ApiError::admin)?;
    let limits = decode::DecodeLimits { max_tensor_elements: state.config.max_tensor_elements };
    let decoded = decode::decode_request(body, None, limits).map_err(ApiError::admin)?;
    let found = state.service.set_drift_reference(&caller.call, &target, version, decoded.input).await.map_err(ApiError::admin)?;
    drop(charge);
    Ok(Json(dto(found)))
}

/// Starts the version's drift baseline over from its next requests (needs write access).
#[utoipa::path(delete, path = "/api/v1/models/{name}/versions/{version}/drift/baseline", responses((status = 200, body = DriftDto)))]
pub async fn reset_baseline(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<DriftDto>, ApiError> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(ApiError::admin)?;
    let version = parse_version(&version).map_err(ApiError::admin)?;
    Ok(Json(dto(state.service.reset_drift(&caller.call, &target, version).await.map_err(ApiError::admin)?)))
}
