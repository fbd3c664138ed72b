//! The OpenAI-compatible API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! and vLLM's `/v1/tokenize`. Errors use OpenAI's body (`{"error": {"message", "type", "param", "code"}}`).
//! A model is named `name` (its version policy decides) or `name:version`.

mod chat;
mod completions;
mod embeddings;
pub mod run;
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
    Router::new().route("/v1/models", get(list_models)).route("/v1/tokenize", post(tokenize)).merge(inference)
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
        let bytes = crate::read_body(request.into_body(), state.config.max_body_bytes).await.map_err(openai)?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| openai(ServiceError::invalid(format!("invalid request body at '{}': {}", error.path(), error.inner()))))?;
        Ok(OpenAiJson(value))
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

/// Flattens chat messages to text (only text parts are supported).
pub(crate) fn chat_messages(messages: Vec<wire::ChatMessageIn>) -> Result<Vec<ChatMessage>, ServiceError> {
    if messages.is_empty() {
        return Err(ServiceError::invalid("messages must hold at least one message, got 0"));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
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
            Ok(ChatMessage { role: message.role, content })
        })
        .collect()
}

async fn list_models(State(state): State<AppState>, caller: crate::auth::Caller) -> OpenAiResult<Json<Value>> {
    let visible = caller.visible_names(&state).await.map_err(openai)?;
    let served = state.service.list_served().await.map_err(openai)?;
    let data: Vec<Value> = served
        .into_iter()
        .filter(|(model, _)| visible.contains(&model.name))
        .filter_map(|(model, version)| {
            let version = version?;
            Some(json!({
                "id": model.name,
                "object": "model",
                "created": model.created_at,
                "owned_by": model.tenant,
                "version": version.version,
                "format": version.format,
            }))
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

async fn tokenize(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    OpenAiJson(request): OpenAiJson<wire::TokenizeRequest>,
) -> OpenAiResult<Json<Value>> {
    let input = match (request.prompt, request.messages) {
        (Some(prompt), None) => PromptInput::Text(prompt),
        (None, Some(messages)) => PromptInput::Chat(chat_messages(messages).map_err(openai)?),
        _ => {
            return Err(openai(ServiceError::invalid("give exactly one of prompt and messages")));
        }
    };
    let model_ref = model_ref(&request.model).map_err(openai)?;
    caller.model(&state, &model_ref.name, yunmo_auth::Action::Read).await.map_err(openai)?;
    let prompt = state.service.prepare_prompt(&model_ref, input).await.map_err(openai)?;
    Ok(Json(json!({ "tokens": prompt.tokens, "count": prompt.tokens.len(), "max_model_len": prompt.context })))
}
