//! `POST /v1/embeddings`.

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use serde_json::{Value, json};
use yunmo_service::{EmbedInput, ServiceError};

use super::wire::{EmbeddingRequest, PromptIn};
use super::{OpenAiJson, OpenAiResult, model_ref, openai};
use crate::AppState;

/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

pub(crate) async fn embeddings(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    OpenAiJson(request): OpenAiJson<EmbeddingRequest>,
) -> OpenAiResult<Json<Value>> {
    super::fields::check(super::fields::Route::Embeddings, &request.extra).map_err(openai)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(openai(ServiceError::invalid(format!("encoding_format must be 'float' or 'base64', got '{other}'"))));
        }
    };
    let input = match request.input {
        PromptIn::Text(text) => EmbedInput::Texts(vec![text]),
        PromptIn::Texts(texts) => EmbedInput::Texts(texts),
        PromptIn::Tokens(tokens) => EmbedInput::Tokens(vec![tokens.into_iter().map(i64::from).collect()]),
        PromptIn::TokenLists(lists) => {
            EmbedInput::Tokens(lists.into_iter().map(|list| list.into_iter().map(i64::from).collect()).collect())
        }
    };
    let count = input.len();
    if count == 0 || count > MAX_INPUTS {
        return Err(openai(ServiceError::invalid(format!("input must hold 1 to {MAX_INPUTS} items, got {count}"))));
    }
    if request.dimensions == Some(0) {
        return Err(openai(ServiceError::invalid("dimensions must be at least 1, got 0")));
    }
    let model_ref = model_ref(&request.model).map_err(openai)?;
    let target = caller.target_ref(&state, &model_ref, yunmo_auth::Action::Infer).await.map_err(openai)?;
    let embeddings = state.service.embed(&caller.call, &target, input, request.dimensions).await.map_err(openai)?;
    let data: Vec<Value> = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|value| value.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": { "prompt_tokens": embeddings.prompt_tokens, "total_tokens": embeddings.prompt_tokens },
    })))
}
