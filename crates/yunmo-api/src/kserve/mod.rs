//! KServe V2 / Open Inference Protocol over REST, with Triton's binary tensor and model repository extensions.

pub mod decode;
pub mod encode;
mod fast_json;
mod generate;
mod repository;
pub(crate) mod triton;
pub(crate) mod v1;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use yunmo_service::ServiceError;
use yunmo_types::{ModelRef, TensorSpec};

use crate::AppState;
use crate::auth::Caller;
use crate::body::{Limit, read_body};
use crate::error::ApiError;
use yunmo_auth::Action;

/// Extensions advertised at `/v2`.
pub const EXTENSIONS: [&str; 6] =
    ["binary_tensor_data", "classification", "model_repository", "generate", "statistics", "model_configuration"];

/// The V2 routes; inference routes are admitted and metered.
pub fn routes(state: &AppState) -> Router<AppState> {
    let inference = Router::new()
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_version))
        .route("/v2/models/{name}/generate", post(generate::generate))
        .route("/v2/models/{name}/versions/{version}/generate", post(generate::generate_version))
        .route("/v2/models/{name}/generate_stream", post(generate::generate_stream))
        .route("/v2/models/{name}/versions/{version}/generate_stream", post(generate::generate_stream_version))
        // KServe V1's predict (`{model}:predict`), next to OpenAI's `GET /v1/models/{model}`, which also
        // answers V1's readiness.
        .route("/v1/models/{model}", post(v1::predict))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::meter));
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata_version))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready_version))
        .merge(inference)
        .merge(repository::routes())
        .merge(triton::routes())
}

/// Parses a version path segment.
pub(crate) fn parse_version(text: &str) -> Result<u64, ServiceError> {
    text.parse::<u64>()
        .ok()
        .filter(|version| *version > 0)
        .ok_or_else(|| ServiceError::invalid(format!("version must be a positive integer, got '{text}'")))
}

fn model_ref(name: String, version: Option<String>) -> Result<ModelRef, ApiError> {
    let version = version.as_deref().map(parse_version).transpose().map_err(ApiError::kserve)?;
    Ok(ModelRef::new(name, version))
}

async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({ "name": "yunmo", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS }))
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.shutting_down() {
        return ApiError::kserve(ServiceError::not_ready("the server is shutting down")).into_response();
    }
    Json(json!({ "ready": true })).into_response()
}

fn specs(specs: &[TensorSpec]) -> serde_json::Value {
    specs.iter().map(|spec| json!({ "name": spec.name, "datatype": spec.datatype.as_str(), "shape": spec.shape })).collect()
}

async fn metadata(state: AppState, caller: Caller, model_ref: ModelRef) -> Result<Json<serde_json::Value>, ApiError> {
    let target = caller.target_ref(&state, &model_ref, Action::Read).await.map_err(ApiError::kserve)?;
    let metadata = state.service.model_metadata(&caller.call, &target).await.map_err(ApiError::kserve)?;
    Ok(Json(json!({
        "name": model_ref.name,
        "versions": metadata.versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": metadata.platform,
        "inputs": specs(&metadata.signature.inputs),
        "outputs": specs(&metadata.signature.outputs),
    })))
}

async fn model_metadata(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    metadata(state, caller, model_ref(name, None)?).await
}

async fn model_metadata_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    metadata(state, caller, model_ref(name, Some(version))?).await
}

async fn readiness(state: AppState, caller: Caller, model_ref: ModelRef) -> Response {
    let target = match caller.target_ref(&state, &model_ref, Action::Read).await {
        Ok(target) => target,
        Err(error) => return ApiError::kserve(error).into_response(),
    };
    match state.service.model_ready(&caller.call, &target).await {
        Ok(true) => Json(json!({ "name": model_ref.name, "ready": true })).into_response(),
        Ok(false) => {
            let mut response = Json(json!({ "name": model_ref.name, "ready": false })).into_response();
            *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            response
        }
        Err(error) => ApiError::kserve(error).into_response(),
    }
}

async fn model_ready(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> Response {
    match model_ref(name, None) {
        Ok(model_ref) => readiness(state, caller, model_ref).await,
        Err(error) => error.into_response(),
    }
}

async fn model_ready_version(State(state): State<AppState>, caller: Caller, Path((name, version)): Path<(String, String)>) -> Response {
    match model_ref(name, Some(version)) {
        Ok(model_ref) => readiness(state, caller, model_ref).await,
        Err(error) => error.into_response(),
    }
}

/// The response header (and gRPC metadata key) naming the version that served an inference request.
pub const MODEL_VERSION_HEADER: &str = "x-yunmo-model-version";

/// Version numbers below 64 as static text: most answers name one of them, and a static header value is
/// not allocated per request.
const SMALL_VERSIONS: [&str; 64] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23",
    "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45",
    "46", "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61", "62", "63",
];

/// `version` as static text, when it is below 64.
pub(crate) fn small_version(version: u64) -> Option<&'static str> {
    SMALL_VERSIONS.get(usize::try_from(version).ok()?).copied()
}

/// The value of [`MODEL_VERSION_HEADER`] for `version`.
fn version_header(version: u64) -> axum::http::HeaderValue {
    small_version(version).map_or_else(|| axum::http::HeaderValue::from(version), axum::http::HeaderValue::from_static)
}

async fn run_infer(state: AppState, caller: Caller, model_ref: ModelRef, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let target = caller.target_ref(&state, &model_ref, Action::Infer).await.map_err(ApiError::kserve)?;
    let header_length = match headers.get(encode::HEADER_LENGTH) {
        None => None,
        Some(value) => Some(value.to_str().ok().and_then(|text| text.trim().parse::<usize>().ok()).ok_or_else(|| {
            ApiError::kserve(ServiceError::invalid(format!(
                "Inference-Header-Content-Length must be a non-negative integer, got {value:?}"
            )))
        })?),
    };
    let (body, mut charge) = read_body(&state, &headers, body, Limit::inference(&state.config)).await.map_err(ApiError::kserve)?;
    let limits = decode::DecodeLimits { max_tensor_elements: state.config.max_tensor_elements };
    let decode::Decoded { input, encoding, model_name, model_version } = match raw_media_type(&headers) {
        Some(media) => {
            let signature = state.service.signature(&caller.call, &target).await.map_err(ApiError::kserve)?;
            decode::raw_request(&signature, media, body.clone()).map_err(ApiError::kserve)?
        }
        None => decode::decode_request(body.clone(), header_length, limits).map_err(ApiError::kserve)?,
    };
    let model_ref = check_body_model(model_ref, model_name, model_version).map_err(ApiError::kserve)?;
    let mut target = target.with_version(model_ref.version);
    if let Some(value) = target.sticky_header().and_then(|name| headers.get(name)) {
        target = target.with_sticky_value(value.as_bytes());
    }
    // Tensors decoded from JSON are new memory (binary ones are slices of the body): charged too, and held
    // with the body until the answer is encoded.
    charge.merge(state.budget.charge(decode::allocated_bytes(&input, &body)).map_err(ApiError::kserve)?);
    drop(body);
    let output = state.service.infer(&caller.call, &target, input).await.map_err(ApiError::kserve)?;
    let mut response = encode::encode_response(&model_ref.name, &output, &encoding);
    response.headers_mut().insert(MODEL_VERSION_HEADER, version_header(output.model_version));
    drop(charge);
    Ok(response)
}

/// The media type of a request whose body is one raw file for the model's single BYTES input (an image,
/// an audio clip, a document: `curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg'`), not a V2 body.
fn raw_media_type(headers: &HeaderMap) -> Option<&str> {
    let media = headers.get(axum::http::header::CONTENT_TYPE)?.to_str().ok()?.split(';').next()?.trim();
    ["image/", "audio/", "video/", "text/plain"].iter().any(|prefix| media.starts_with(prefix)).then_some(media)
}

/// The model a request body names (`model_name`, `model_version`, as Open Inference Protocol clients send
/// them) must be the one in the path; a version only in the body selects that version.
fn check_body_model(path: ModelRef, name: Option<String>, version: Option<String>) -> Result<ModelRef, ServiceError> {
    if let Some(name) = name.filter(|name| *name != path.name) {
        return Err(ServiceError::invalid(format!("model_name '{name}' in the body does not match the model '{}' in the path", path.name)));
    }
    let Some(text) = version else { return Ok(path) };
    let version = parse_version(&text).map_err(|error| ServiceError::invalid(format!("model_version: {}", error.message)))?;
    match path.version {
        Some(in_path) if in_path != version => {
            Err(ServiceError::invalid(format!("model_version '{version}' in the body does not match version {in_path} in the path")))
        }
        _ => Ok(ModelRef::new(path.name, Some(version))),
    }
}

async fn infer(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run_infer(state, caller, model_ref(name, None)?, headers, body).await
}

async fn infer_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    run_infer(state, caller, model_ref(name, Some(version))?, headers, body).await
}
