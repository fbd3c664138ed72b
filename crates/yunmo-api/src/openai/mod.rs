//! The OpenAI-compatible API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! and vLLM's `/v1/tokenize`. Errors use OpenAI's body (`{"error": {"message", "type", "param", "code"}}`).
//! A model is named `name` (its version policy decides) or `name:version`.

pub(crate) mod chat;
mod completions;
pub(crate) mod embeddings;
pub mod fields;
pub(crate) mod format;
mod reasoning;
pub mod run;
pub(crate) mod tools;
pub mod wire;

use axum::extract::{FromRequest, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use yunmo_service::{PromptInput, ServiceError};
use yunmo_text::chat::ChatMessage;
use yunmo_types::ModelRef;

use crate::AppState;
use crate::error::ApiError;

/// The OpenAI routes; inference routes are admitted and metered.
pub fn routes(state: &AppState) -> Router<AppState> {
    let inference = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::meter));
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(get_model))
        .route("/v1/tokenize", post(tokenize))
        .merge(inference)
}

pub(crate) type OpenAiResult<T> = Result<T, ApiError>;

pub(crate) fn openai(error: ServiceError) -> ApiError {
    ApiError::openai(error)
}

/// JSON body (up to `max_body_bytes`) whose errors use the OpenAI shape and name the field.
pub struct OpenAiJson<T>(pub T);

impl<T: for<'de> Deserialize<'de>> FromRequest<AppState> for OpenAiJson<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let limit = crate::body::Limit::inference(&state.config);
        let (bytes, _charge) = crate::body::read_body(state, &parts.headers, body, limit).await.map_err(openai)?;
        Ok(OpenAiJson(crate::body::parse_json(&bytes).map_err(openai)?))
    }
}

/// `name` or `name:version`.
pub(crate) fn model_ref(model: &str) -> Result<ModelRef, ServiceError> {
    match model.rsplit_once(':') {
        Some((name, version)) => {
            let version = version
                .parse::<u64>()
                .map_err(|_| ServiceError::invalid(format!("model must be 'name' or 'name:version', got '{model}'")))?;
            Ok(ModelRef::new(name, Some(version)))
        }
        None => Ok(ModelRef::new(model, None)),
    }
}

/// Whether a JSON value asks for nothing: null, false, "", [] or {}.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Bool(true) | Value::Number(_) => false,
    }
}

/// Flattens chat messages to text (only text parts are supported); assistant calls keep their arguments
/// as JSON objects, as chat templates write them.
pub(crate) fn chat_messages(messages: Vec<wire::ChatMessageIn>) -> Result<Vec<ChatMessage>, ServiceError> {
    if messages.is_empty() {
        return Err(ServiceError::invalid("messages must hold at least one message, got 0"));
    }
    messages.into_iter().enumerate().map(|(index, message)| chat_message(index, message)).collect()
}

fn chat_message(index: usize, message: wire::ChatMessageIn) -> Result<ChatMessage, ServiceError> {
    if let Some((field, value)) = message.extra.iter().find(|(_, value)| !is_empty(value)) {
        return Err(ServiceError::invalid(format!("messages[{index}].{field} is not supported, got {value}")));
    }
    let content = match message.content {
        None => String::new(),
        Some(wire::MessageContent::Text(text)) => text,
        Some(wire::MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(part_text)) => text.push_str(&part_text),
                    (kind, _) => {
                        return Err(ServiceError::invalid(format!(
                            "messages[{index}].content: part type '{kind}' is not supported (text models take 'text' parts)"
                        )));
                    }
                }
            }
            text
        }
    };
    let tool_calls = message
        .tool_calls
        .filter(|calls| !calls.is_empty())
        .map(|calls| {
            calls
                .into_iter()
                .enumerate()
                .map(|(number, call)| {
                    let at = format!("messages[{index}].tool_calls[{number}]");
                    if call.kind.as_deref().is_some_and(|kind| kind != "function") {
                        return Err(ServiceError::invalid(format!("{at}.type must be 'function'")));
                    }
                    let arguments: Value = serde_json::from_str(&call.function.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .ok_or_else(|| ServiceError::invalid(format!("{at}.function.arguments must be a JSON object as text")))?;
                    Ok(json!({ "id": call.id, "type": "function", "function": { "name": call.function.name, "arguments": arguments } }))
                })
                .collect::<Result<Vec<_>, ServiceError>>()
        })
        .transpose()?;
    if message.role == "tool" && message.tool_call_id.is_none() {
        return Err(ServiceError::invalid(format!("messages[{index}].tool_call_id is required for role 'tool'")));
    }
    Ok(ChatMessage { role: message.role, content, tool_calls, tool_call_id: message.tool_call_id, name: message.name })
}

async fn list_models(State(state): State<AppState>, caller: crate::auth::Caller) -> OpenAiResult<Json<Value>> {
    let served = state.service.list_served(&caller.call).await.map_err(openai)?;
    let data: Vec<Value> = served
        .into_iter()
        .filter_map(|(model, version)| {
            let version = version?;
            Some(json!({
                "id": model.name_for(&caller.principal().tenant),
                "object": "model",
                "created": model.created_at,
                "owned_by": model.tenant,
                "version": version.version,
                "format": version.format,
                "task": task_of(&version.format, &version.config, &model.task),
            }))
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// What a version serves, as the model routes list it: `generate` (an LLM), `embedding`, `rerank` (a
/// cross-encoder), else the model's own task (`inference` when it has none).
fn task_of(format: &str, config: &yunmo_types::VersionConfig, model_task: &str) -> String {
    match (&config.embedding, format) {
        (Some(embedding), _) if embedding.task == yunmo_types::EncoderTask::Rerank => "rerank".into(),
        (Some(_), _) => "embedding".into(),
        (None, "gguf") => "generate".into(),
        _ if model_task.is_empty() => "inference".into(),
        _ => model_task.to_string(),
    }
}

/// `GET /v1/models/{model}` (`client.models.retrieve`): a model the caller can see, as `/v1/models` lists it.
async fn get_model(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    axum::extract::Path(model): axum::extract::Path<String>,
) -> OpenAiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let model_ref = model_ref(&model).map_err(openai)?;
    let target = caller.target_ref(&state, &model_ref, yunmo_auth::Action::Read).await.map_err(openai)?;
    let metadata = state.service.model_metadata(&caller.call, &target).await.map_err(openai)?;
    // KServe V1's readiness is this route too: its `name` and `ready` (loaded or loadable; reading does not
    // load it), 503 when a version was unloaded.
    let ready = state.service.model_available(&caller.call, &target).await.map_err(openai)?;
    let record = target.record();
    let mut response = Json(json!({
        "id": model,
        "object": "model",
        "created": record.created_at,
        "owned_by": record.tenant,
        "version": metadata.version,
        "task": task_of(&metadata.format, &metadata.config, &record.task),
        "name": model,
        "ready": ready,
    }))
    .into_response();
    if !ready {
        *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    Ok(response)
}

async fn tokenize(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    OpenAiJson(request): OpenAiJson<wire::TokenizeRequest>,
) -> OpenAiResult<Json<Value>> {
    fields::check(fields::Route::Tokenize, &request.extra).map_err(openai)?;
    let input = match (request.prompt, request.messages) {
        (Some(prompt), None) => PromptInput::Text(prompt),
        (None, Some(messages)) => {
            let chat = yunmo_text::chat::Chat { messages: chat_messages(messages).map_err(openai)?, ..Default::default() };
            PromptInput::Chat(chat, None)
        }
        _ => {
            return Err(openai(ServiceError::invalid("give exactly one of prompt and messages")));
        }
    };
    let model_ref = model_ref(&request.model).map_err(openai)?;
    let target = caller.target_ref(&state, &model_ref, yunmo_auth::Action::Read).await.map_err(openai)?;
    let (tokens, context) = state.service.tokenize(&caller.call, &target, input).await.map_err(openai)?;
    Ok(Json(json!({ "count": tokens.len(), "tokens": tokens, "max_model_len": context })))
}
