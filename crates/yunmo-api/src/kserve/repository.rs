//! Triton's model repository extension, mapped onto the registry: index, load, unload.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use yunmo_service::ServiceError;

use crate::AppState;
use crate::auth::Caller;
use crate::body::LazyJson;
use crate::error::ApiError;
use yunmo_auth::Action;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/repository/index", post(index))
        .route("/v2/repository/models/{name}/load", post(load))
        .route("/v2/repository/models/{name}/unload", post(unload))
}

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

#[derive(Deserialize, Default)]
struct LoadRequest {
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn index(State(state): State<AppState>, caller: Caller, body: LazyJson<IndexRequest>) -> Result<Json<Value>, ApiError> {
    let request = body.read_optional(&state).await.map_err(ApiError::kserve)?;
    let entries = state.service.repository_index(&caller.call).await.map_err(ApiError::kserve)?;
    let tenant = &caller.principal().tenant;
    let entries: Vec<Value> = entries
        .into_iter()
        .filter(|entry| !request.ready || entry.state == "READY")
        .map(|entry| {
            json!({ "name": yunmo_registry::name_for(&entry.name, tenant), "version": entry.version.to_string(),
                "state": entry.state, "reason": entry.reason })
        })
        .collect();
    Ok(Json(Value::Array(entries)))
}

fn version_parameter(parameters: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match parameters.get("version") {
        None => Ok(None),
        Some(Value::String(text)) => super::parse_version(text).map(Some).map_err(ApiError::kserve),
        Some(value) => {
            value.as_u64().filter(|v| *v > 0).map(Some).ok_or_else(|| {
                ApiError::kserve(ServiceError::invalid(format!("parameter 'version' must be a positive integer, got {value}")))
            })
        }
    }
}

async fn load(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: LazyJson<LoadRequest>,
) -> Result<Json<Value>, ApiError> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(ApiError::kserve)?;
    let request = body.read_optional(&state).await.map_err(ApiError::kserve)?;
    yunmo_service::InferenceService::check_repository_load(&name, request.parameters.keys().map(String::as_str))
        .map_err(ApiError::kserve)?;
    let target = target.with_version(version_parameter(&request.parameters)?);
    state.service.load(&caller.call, &target).await.map_err(ApiError::kserve)?;
    Ok(Json(json!({})))
}

async fn unload(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: LazyJson<LoadRequest>,
) -> Result<Json<Value>, ApiError> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(ApiError::kserve)?;
    let request = body.read_optional(&state).await.map_err(ApiError::kserve)?;
    let target = target.with_version(version_parameter(&request.parameters)?);
    state.service.unload(&caller.call, &target).await.map_err(ApiError::kserve)?;
    Ok(Json(json!({})))
}
