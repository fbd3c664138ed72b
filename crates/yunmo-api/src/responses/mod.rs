//! OpenAI's Responses API (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`, `GET
//! /v1/responses/{id}/input_items`), as the `openai` SDK's `client.responses` and Codex CLI speak it: the
//! request's conversation (its `input`, after the stored conversation that `previous_response_id` names)
//! made into the OpenAI chat request that the shared chat path runs (template, tools, thinking, structured
//! output), answered as output items, whole or in the Responses stream events. A response is stored for
//! its tenant (`store`, on by default; `[responses] retention_s`) in the metadata store, so every replica
//! reads it. Errors are OpenAI's.

mod convert;
mod output;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use yunmo_service::ServiceError;
use yunmo_service::responses::NewResponse;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openai::run;
use crate::openai::{OpenAiJson, openai};

/// The Responses routes; creating one is admitted and metered like a chat completion.
pub fn routes(state: &AppState) -> axum::Router<AppState> {
    let create = axum::Router::new()
        .route("/v1/responses", post(create))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::meter));
    axum::Router::new()
        .route("/v1/responses/{id}", get(retrieve).delete(delete))
        .route("/v1/responses/{id}/input_items", get(input_items))
        .merge(create)
}

/// A Responses request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponsesRequest {
    pub model: String,
    /// A string (one user message) or a list of input items.
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {...}, "verbosity": ...}`.
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Kept as sent (f64), so the response echoes the same number.
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// `include_obfuscation`: accepted; nothing is padded.
    #[serde(default)]
    pub stream_options: Option<Value>,
    #[serde(default)]
    pub store: Option<bool>,
    /// Up to 16 string pairs, echoed and stored.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// `{"effort": ...}`: `none` turns a thinking model's thinking off, any other effort on.
    #[serde(default)]
    pub reasoning: Option<Value>,
    /// Hints for the caller's own records and OpenAI's caches: accepted, echoed where OpenAI echoes them.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub safety_identifier: Option<String>,
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    #[serde(default)]
    pub service_tier: Option<String>,
    /// Only `disabled`: a conversation longer than the context is an error, never cut silently.
    #[serde(default)]
    pub truncation: Option<String>,
    /// Extra output to include (`reasoning.encrypted_content`, ...): accepted; reasoning is returned as text.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    #[serde(default)]
    pub background: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
}

/// Most metadata pairs, and the longest key and value (OpenAI's bounds).
const METADATA_PAIRS: usize = 16;
const METADATA_KEY_CHARS: usize = 64;
const METADATA_VALUE_CHARS: usize = 512;

/// Refuses what this server cannot honour, naming the field.
fn check(request: &ResponsesRequest) -> Result<(), ServiceError> {
    if request.background == Some(true) {
        return Err(run::unsupported("background", "responses run in the request; send background: false or leave it out"));
    }
    if let Some(mode) = request.truncation.as_deref().filter(|mode| *mode != "disabled") {
        return Err(run::unsupported(
            &format!("truncation '{mode}'"),
            "a conversation longer than the model's context is refused, never cut; use 'disabled'",
        ));
    }
    if request.top_logprobs.is_some_and(|top| top > 0) {
        return Err(run::unsupported("top_logprobs", "use /v1/chat/completions with logprobs"));
    }
    if request.max_output_tokens == Some(0) {
        return Err(ServiceError::invalid("max_output_tokens: must be at least 1, got 0"));
    }
    let _ = (&request.stream_options, &request.safety_identifier, &request.prompt_cache_key, &request.service_tier, &request.include);
    if let Some(metadata) = &request.metadata {
        if metadata.len() > METADATA_PAIRS {
            return Err(ServiceError::invalid(format!("metadata: at most {METADATA_PAIRS} pairs, got {}", metadata.len())));
        }
        for (key, value) in metadata {
            let Some(text) = value.as_str() else {
                return Err(ServiceError::invalid(format!("metadata.{key}: values must be strings, got {value}")));
            };
            if key.chars().count() > METADATA_KEY_CHARS || text.chars().count() > METADATA_VALUE_CHARS {
                return Err(ServiceError::invalid(format!(
                    "metadata.{key}: keys are at most {METADATA_KEY_CHARS} characters and values at most {METADATA_VALUE_CHARS}"
                )));
            }
        }
    }
    Ok(())
}

/// `POST /v1/responses`.
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    OpenAiJson(request): OpenAiJson<ResponsesRequest>,
) -> Result<Response, ApiError> {
    check(&request).map_err(openai)?;
    let previous = match &request.previous_response_id {
        Some(id) => Some(
            state
                .service
                .stored_response(&caller.call, id)
                .await
                .map_err(|error| openai(ServiceError::new(error.code, format!("previous_response_id: {}", error.message))))?,
        ),
        None => None,
    };
    let conversation = convert::conversation(previous.as_ref(), request.input.as_ref()).map_err(openai)?;
    let chat = convert::chat_request(&request, &conversation).map_err(openai)?;
    let prepared = crate::openai::chat::prepare(&state, &caller, chat).await.map_err(|error| openai(in_responses_terms(error)))?;
    let mut plan = prepared.plan;
    plan.stream = request.stream.unwrap_or(false);
    run::fit_to_context(&mut plan, &prepared.prompt);
    let store = request.store.unwrap_or(true).then(|| output::Storing {
        service: state.service.clone(),
        call: caller.call.clone(),
        input: Value::Array(conversation).to_string(),
    });
    let envelope = output::Envelope::new(&request);
    let format = output::ResponseFormat::new(envelope, prepared.reader, store);
    let prompts = std::slice::from_ref(&prepared.prompt);
    if plan.stream {
        return run::stream(&state.service, prompts, &plan, format).await.map_err(openai);
    }
    let (collected, usage) = run::complete(&state.service, prompts, &plan).await.map_err(openai)?;
    let body = format.finished(&collected, usage).await.map_err(openai)?;
    Ok(Json(body).into_response())
}

/// An error of the shared chat path in the Responses API's field names: chat's `response_format` is
/// `text.format`, a chat tool's `function.` fields are the tool's own.
fn in_responses_terms(mut error: ServiceError) -> ServiceError {
    error.message = error
        .message
        .replace("response_format.json_schema.", "text.format.")
        .replace("response_format.json_schema", "text.format")
        .replace("response_format", "text.format")
        .replace("].function.", "].");
    error
}

/// A response as stored (the object `create` returned).
pub(crate) fn stored_body(id: &str, body: &str) -> Result<Value, ServiceError> {
    serde_json::from_str(body).map_err(|error| ServiceError::internal(format!("stored response '{id}' is not JSON: {error}")))
}

/// `GET /v1/responses/{id}`.
async fn retrieve(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let stored = state.service.stored_response(&caller.call, &id).await.map_err(openai)?;
    Ok(Json(stored_body(&id, &stored.body).map_err(openai)?))
}

/// `DELETE /v1/responses/{id}`.
async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.service.delete_response(&caller.call, &id).await.map_err(openai)?;
    Ok(Json(json!({ "id": id, "object": "response.deleted", "deleted": true })))
}

/// The query of `GET /v1/responses/{id}/input_items`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    after: Option<String>,
    /// Extra fields to include: accepted.
    #[serde(default, rename = "include[]")]
    include: Option<String>,
}

/// Most input items one page lists.
const MAX_ITEMS_PAGE: usize = 100;

/// `GET /v1/responses/{id}/input_items`: the conversation the response answered, a page at a time.
async fn input_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ItemsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| openai(ServiceError::invalid(rejection.body_text())))?;
    let _ = &query.include;
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_ITEMS_PAGE).contains(&limit) {
        return Err(openai(ServiceError::invalid(format!("limit: must be between 1 and {MAX_ITEMS_PAGE}, got {limit}"))));
    }
    let descending = match query.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => return Err(openai(ServiceError::invalid(format!("order: must be 'asc' or 'desc', got '{other}'")))),
    };
    let stored = state.service.stored_response(&caller.call, &id).await.map_err(openai)?;
    let mut items: Vec<Value> = match serde_json::from_str(&stored.input) {
        Ok(Value::Array(items)) => items,
        _ => return Err(openai(ServiceError::internal(format!("stored input of response '{id}' is not a list")))),
    };
    if descending {
        items.reverse();
    }
    let start = match &query.after {
        Some(after) => match items.iter().position(|item| item["id"] == after.as_str()) {
            Some(at) => at + 1,
            None => return Err(openai(ServiceError::invalid(format!("after: no input item '{after}' in response '{id}'")))),
        },
        None => 0,
    };
    let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < items.len();
    Ok(Json(json!({
        "object": "list",
        "data": page,
        "first_id": page.first().map(|item| item["id"].clone()),
        "last_id": page.last().map(|item| item["id"].clone()),
        "has_more": has_more,
    })))
}

/// What `create` hands the store.
pub(crate) fn new_response(id: &str, model: &str, body: &Value, input: String) -> NewResponse {
    NewResponse { id: id.to_string(), model: model.to_string(), body: body.to_string(), input }
}
