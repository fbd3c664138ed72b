//! `POST /api/embed` (`input`: a text or a list → `embeddings`) and the older `POST /api/embeddings`
//! (`prompt` → `embedding`), on the embedding path of `/v1/embeddings`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use yunmo_service::{EmbedInput, ServiceError};

use super::{ollama, options};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbedRequest {
    model: String,
    input: Input,
    /// Cut inputs longer than the model's context (Ollama's default): Yunmo's encoders cut at their
    /// `max_tokens` anyway; `false` is refused rather than ignored.
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    keep_alive: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingsRequest {
    model: String,
    prompt: String,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    keep_alive: Option<Value>,
}

async fn run(
    state: &AppState,
    caller: &Caller,
    model: &str,
    texts: Vec<String>,
    dimensions: Option<usize>,
) -> Result<(Vec<Vec<f32>>, u64), ServiceError> {
    if texts.is_empty() || texts.len() > crate::openai::embeddings::MAX_INPUTS {
        return Err(ServiceError::invalid(format!(
            "input must hold 1 to {} texts, got {}",
            crate::openai::embeddings::MAX_INPUTS,
            texts.len()
        )));
    }
    if dimensions == Some(0) {
        return Err(ServiceError::invalid("dimensions must be at least 1, got 0"));
    }
    let model_ref = super::model_ref(model)?;
    let target = caller.target_ref(state, &model_ref, yunmo_auth::Action::Infer).await?;
    let embeddings = state.service.embed(&caller.call, &target, EmbedInput::Texts(texts), dimensions).await?;
    Ok((embeddings.vectors, embeddings.prompt_tokens))
}

/// Options of an embedding request: only the runtime ones mean anything here, and they are Yunmo's.
fn check_options(options: Option<Map<String, Value>>) -> Result<(), ServiceError> {
    let mut ignored = Map::new();
    options::apply(options, &mut ignored)
}

pub(crate) async fn embed(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let request: EmbedRequest = crate::body::parse_json(&body).map_err(ollama)?;
    options::keep_alive(request.keep_alive.as_ref()).map_err(ollama)?;
    check_options(request.options).map_err(ollama)?;
    if request.truncate == Some(false) {
        return Err(ollama(run_unsupported()));
    }
    let texts = match request.input {
        Input::Text(text) => vec![text],
        Input::Texts(texts) => texts,
    };
    let (vectors, tokens) = run(&state, &caller, &request.model, texts, request.dimensions).await.map_err(ollama)?;
    Ok(Json(json!({
        "model": request.model,
        "embeddings": vectors,
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": 0,
        "prompt_eval_count": tokens,
    })))
}

fn run_unsupported() -> ServiceError {
    crate::openai::run::unsupported("truncate: false", "Yunmo's encoders cut inputs at their max_tokens")
}

pub(crate) async fn embeddings(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let request: EmbeddingsRequest = crate::body::parse_json(&body).map_err(ollama)?;
    options::keep_alive(request.keep_alive.as_ref()).map_err(ollama)?;
    check_options(request.options).map_err(ollama)?;
    let (vectors, _) = run(&state, &caller, &request.model, vec![request.prompt], None).await.map_err(ollama)?;
    Ok(Json(json!({ "embedding": vectors.into_iter().next().unwrap_or_default() })))
}
