//! Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`), as Claude Code and the
//! `anthropic` SDK speak it: the request made into the OpenAI chat request that the shared chat path runs
//! (template, tools, thinking), answered in Anthropic's shapes and stream events. The key comes in
//! `x-api-key` (or `Authorization: Bearer`); errors are Anthropic's `{"type": "error", "error": {...}}`.

mod convert;
mod stream;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use yunmo_service::{PromptInput, ServiceError};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openai::run::{self, Collected};

/// The Messages routes; both are admitted and metered (counting tokens renders and tokenises the prompt).
pub fn routes(state: &AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::meter))
}

pub(crate) fn anthropic(error: ServiceError) -> ApiError {
    ApiError::anthropic(error)
}

/// A Messages request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessagesRequest {
    pub model: String,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    pub messages: Vec<convert::MessageIn>,
    #[serde(default)]
    pub system: Option<Value>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// `user_id` for the caller's own records: accepted, not used.
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub thinking: Option<Value>,
    /// `auto` or `standard_only`: accepted; there is one tier.
    #[serde(default)]
    pub service_tier: Option<Value>,
}

/// `POST /v1/messages`.
async fn messages(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let request: MessagesRequest = crate::body::parse_json(&body).map_err(anthropic)?;
    let Some(max_tokens) = request.max_tokens else {
        return Err(anthropic(ServiceError::invalid("max_tokens: Field required")));
    };
    if max_tokens == 0 {
        return Err(anthropic(ServiceError::invalid("max_tokens: must be at least 1, got 0")));
    }
    if let Some(temperature) = request.temperature.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(anthropic(ServiceError::invalid(format!("temperature: must be between 0 and 1, got {temperature}"))));
    }
    let model = request.model.clone();
    let stops = request.stop_sequences.clone().unwrap_or_default();
    let stream = request.stream.unwrap_or(false);
    let chat = convert::chat_request(request, true).map_err(anthropic)?;
    let prepared = crate::openai::chat::prepare(&state, &caller, chat).await.map_err(anthropic)?;
    let mut plan = prepared.plan;
    plan.stream = stream;
    run::fit_to_context(&mut plan, &prepared.prompt);
    let input_tokens = prepared.prompt.tokens.len() as u64;
    let format = stream::MessageFormat::new(model, stops, input_tokens, prepared.reader);
    let body = |format: &stream::MessageFormat, collected: &[Collected], usage| format.whole(collected, usage);
    run::respond(&state.service, std::slice::from_ref(&prepared.prompt), &plan, format, body).await.map_err(anthropic)
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens as the model's template renders it.
async fn count_tokens(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let request: MessagesRequest = crate::body::parse_json(&body).map_err(anthropic)?;
    let chat = convert::chat_request(request, false).map_err(anthropic)?;
    let model_ref = crate::openai::model_ref(&chat.model).map_err(anthropic)?;
    let tools = crate::openai::tools::plan(chat.tools, chat.tool_choice.as_ref(), chat.parallel_tool_calls).map_err(anthropic)?.tools;
    let conversation = yunmo_text::chat::Chat {
        messages: crate::openai::chat_messages(chat.messages).map_err(anthropic)?,
        tools: Vec::new(),
        kwargs: chat.chat_template_kwargs.unwrap_or_default(),
    };
    let prompt = caller.prompt(&state, &model_ref, PromptInput::Chat(conversation, tools)).await.map_err(anthropic)?;
    Ok(Json(json!({ "input_tokens": prompt.tokens.len() })))
}
