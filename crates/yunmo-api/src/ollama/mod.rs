//! Ollama's API (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`, `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/version`), translated onto the same generation and embedding path as the OpenAI routes:
//! the same keys, access checks, limits and metering. Errors are Ollama's `{"error": "..."}`. Model
//! management (`pull`, `push`, `create`, `copy`, `delete`) is Yunmo's own API, named in the refusal.
//!
//! A model is named as in Yunmo (`smollm2`), with Ollama's tag: `smollm2:latest` is the model's policy,
//! `smollm2:3` its version 3.

mod chat;
mod embed;
pub(crate) mod options;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use yunmo_service::ServiceError;
use yunmo_types::ModelRef;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// The version Ollama clients are told (`/api/version`): the Ollama API this follows.
pub const OLLAMA_VERSION: &str = "0.12.0";

/// The Ollama routes; chat, generate and embeddings are admitted and metered.
pub fn routes(state: &AppState) -> Router<AppState> {
    let inference = Router::new()
        .route("/api/chat", post(chat::chat))
        .route("/api/generate", post(chat::generate))
        .route("/api/embed", post(embed::embed))
        .route("/api/embeddings", post(embed::embeddings))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::meter));
    Router::new()
        .route("/", get(running).head(running))
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/pull", post(manage))
        .route("/api/push", post(manage))
        .route("/api/create", post(manage))
        .route("/api/copy", post(manage))
        .route("/api/delete", delete(manage))
        .merge(inference)
}

pub(crate) fn ollama(error: ServiceError) -> ApiError {
    ApiError::kserve(error)
}

/// `name`, `name:latest` (the model's policy) or `name:N` (version N).
pub(crate) fn model_ref(model: &str) -> Result<ModelRef, ServiceError> {
    if model.is_empty() {
        return Err(ServiceError::invalid("model is required"));
    }
    match model.rsplit_once(':') {
        Some((name, "latest")) => Ok(ModelRef::new(name, None)),
        Some((name, tag)) => match tag.parse::<u64>() {
            Ok(version) if version > 0 => Ok(ModelRef::new(name, Some(version))),
            _ => Err(ServiceError::new(
                yunmo_types::Code::ModelNotFound,
                format!("model '{model}' not found: a tag is 'latest' or a version number"),
            )),
        },
        None => Ok(ModelRef::new(model, None)),
    }
}

async fn running() -> &'static str {
    "Ollama is running"
}

async fn version() -> Json<Value> {
    Json(json!({ "version": OLLAMA_VERSION }))
}

async fn manage() -> Response {
    let message = "Yunmo manages models through its own API: upload with POST /api/v1/models/{name}/versions (or `yunmo models push`), delete with DELETE /api/v1/models/{name}; see /api/v1/openapi.json";
    (StatusCode::NOT_IMPLEMENTED, Json(json!({ "error": message }))).into_response()
}

/// Ollama's `details` of a version.
fn details(format: &str, version: &yunmo_registry::VersionRecord) -> Value {
    let family = if format == "gguf" { "gguf" } else { format };
    json!({
        "parent_model": "",
        "format": format,
        "family": family,
        "families": [family],
        "parameter_size": "",
        "quantization_level": "",
        "version": version.version,
    })
}

fn modified_at(created_at: i64) -> String {
    yunmo_types::calendar::format_utc(created_at.saturating_mul(1000))
}

/// `GET /api/tags`: every model the key can see, at the version a request naming it would get.
async fn tags(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let served = state.service.list_served(&caller.call).await.map_err(ollama)?;
    let models: Vec<Value> = served
        .into_iter()
        .filter_map(|(model, version)| {
            let version = version?;
            let name = model.name_for(&caller.principal().tenant).to_string();
            Some(json!({
                "name": name,
                "model": name,
                "modified_at": modified_at(version.created_at),
                "size": version.size_bytes,
                "digest": version.sha256,
                "details": details(&version.format, &version),
            }))
        })
        .collect();
    Ok(Json(json!({ "models": models })))
}

/// `GET /api/ps`: the loaded versions the key can see.
async fn ps(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let loaded = state.service.all_statistics(&caller.call).await.map_err(ollama)?;
    let served = state.service.list_served(&caller.call).await.map_err(ollama)?;
    let tenant = caller.principal().tenant.clone();
    let models: Vec<Value> = loaded
        .iter()
        .filter_map(|entry| {
            let (_, version) = served.iter().find(|(model, _)| model.name_for(&tenant) == entry.model)?;
            let version = version.as_ref()?;
            Some(json!({
                "name": entry.model,
                "model": entry.model,
                "size": version.size_bytes,
                "digest": version.sha256,
                "details": details(&version.format, version),
                "expires_at": "0001-01-01T00:00:00Z",
                "size_vram": 0,
            }))
        })
        .collect();
    Ok(Json(json!({ "models": models })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowRequest {
    #[serde(alias = "name")]
    model: String,
    #[serde(default)]
    verbose: Option<bool>,
}

/// `POST /api/show`: what a model is and can do.
async fn show(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let request: ShowRequest = crate::body::parse_json(&body).map_err(ollama)?;
    let _ = request.verbose;
    let model_ref = model_ref(&request.model).map_err(ollama)?;
    let target = caller.target_ref(&state, &model_ref, yunmo_auth::Action::Read).await.map_err(ollama)?;
    let metadata = state.service.model_metadata(&caller.call, &target).await.map_err(ollama)?;
    // A GGUF file generates unless it holds an encoder (an embedding config).
    let generates = metadata.format == "gguf" && metadata.config.embedding.is_none();
    let mut capabilities = Vec::new();
    if generates {
        // Calls are read per model family, or guaranteed by a grammar where the template has no tools.
        capabilities.extend(["completion", "tools"]);
    }
    if metadata.config.embedding.as_ref().is_some_and(|embedding| embedding.task == yunmo_types::EncoderTask::Embed) {
        capabilities.push("embedding");
    }
    let template = metadata.config.chat_template.clone().unwrap_or_default();
    if template.contains("<think>") {
        capabilities.push("thinking");
    }
    let record = target.record();
    Ok(Json(json!({
        "modelfile": format!("# Served by Yunmo: model '{}' version {}\n", request.model, metadata.version),
        "parameters": "",
        "template": template,
        "details": {
            "parent_model": "", "format": metadata.format, "family": metadata.format, "families": [metadata.format],
            "parameter_size": "", "quantization_level": "",
        },
        "model_info": {
            "general.architecture": metadata.platform,
            "yunmo.version": metadata.version,
            "yunmo.inputs": metadata.signature.inputs.iter().map(|spec| spec.name.clone()).collect::<Vec<_>>(),
        },
        "capabilities": capabilities,
        "modified_at": modified_at(record.created_at),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_versions_and_other_tags_are_not_found() {
        assert_eq!(model_ref("smollm2").unwrap(), ModelRef::new("smollm2", None));
        assert_eq!(model_ref("smollm2:latest").unwrap(), ModelRef::new("smollm2", None));
        assert_eq!(model_ref("smollm2:3").unwrap(), ModelRef::new("smollm2", Some(3)));
        assert_eq!(model_ref("smollm2:3b").unwrap_err().code, yunmo_types::Code::ModelNotFound);
        assert!(model_ref("").is_err());
        assert!(crate::auth::is_ollama_path("/api/chat") && crate::auth::is_ollama_path("/"));
        assert!(!crate::auth::is_ollama_path("/api/v1/models"));
    }
}
