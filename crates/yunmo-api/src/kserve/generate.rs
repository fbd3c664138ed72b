//! Triton's generate extension over the same engine as the OpenAI routes:
//! `POST /v2/models/{m}[/versions/{v}]/generate` with `{"text_input", "parameters": {...}}` answers
//! `{"model_name", "model_version", "text_output", "finish_reason", "usage"}`; `/generate_stream` sends
//! one SSE event per piece of text. `parameters` take the OpenAI sampling names (`max_tokens`,
//! `temperature`, `top_p`, `top_k`, `seed`, `stop`, penalties, `logit_bias`); as in Triton, where every
//! top-level field is a model input, they may also be given at the top level (`{"text_input": "...",
//! "max_tokens": 20}`, the TensorRT-LLM style). Any other field is refused by name, like every V2 route.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use yunmo_service::{PromptInput, ServiceError};
use yunmo_types::{FinishReason, ModelRef, TextChunk, Usage};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openai::run::{self, StreamFormat};
use crate::openai::wire::{Sampling, UsageOut};

#[derive(Debug, Deserialize)]
struct GenerateBody {
    #[serde(default)]
    id: Option<String>,
    text_input: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    /// Sampling fields given at the top level; anything else is refused.
    #[serde(flatten)]
    top_level: Map<String, Value>,
}

/// The sampling of a generate request: `parameters` and top-level sampling fields, each named once.
fn sampling(parameters: Option<Map<String, Value>>, top_level: Map<String, Value>) -> Result<Sampling, ServiceError> {
    let mut merged = parameters.unwrap_or_default();
    if let Some(field) = merged.keys().find(|field| !Sampling::FIELDS.contains(&field.as_str())) {
        return Err(ServiceError::invalid(format!("parameters.{field} is not supported; parameters take {}", Sampling::FIELDS.join(", "))));
    }
    for (field, value) in top_level {
        if !Sampling::FIELDS.contains(&field.as_str()) {
            return Err(ServiceError::invalid(format!(
                "unknown field '{field}': a generate request takes text_input, id, parameters and the sampling fields {}",
                Sampling::FIELDS.join(", ")
            )));
        }
        if merged.contains_key(&field) {
            return Err(ServiceError::invalid(format!("'{field}' is given both at the top level and in parameters")));
        }
        merged.insert(field, value);
    }
    serde_json::from_value(Value::Object(merged)).map_err(|error| ServiceError::invalid(format!("invalid sampling parameters: {error}")))
}

pub(super) async fn generate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Response {
    respond(state, caller, Ok(ModelRef::new(name, None)), request, false).await
}

pub(super) async fn generate_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    respond(state, caller, super::model_ref(name, Some(version)), request, false).await
}

pub(super) async fn generate_stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Response {
    respond(state, caller, Ok(ModelRef::new(name, None)), request, true).await
}

pub(super) async fn generate_stream_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    respond(state, caller, super::model_ref(name, Some(version)), request, true).await
}

async fn respond(
    state: AppState,
    caller: Caller,
    model_ref: Result<ModelRef, ApiError>,
    request: axum::extract::Request,
    stream: bool,
) -> Response {
    match model_ref {
        Ok(model_ref) => generate_response(state, caller, model_ref, request, stream).await.unwrap_or_else(IntoResponse::into_response),
        Err(error) => error.into_response(),
    }
}

async fn generate_response(
    state: AppState,
    caller: Caller,
    model_ref: ModelRef,
    request: axum::extract::Request,
    stream: bool,
) -> Result<Response, ApiError> {
    let kserve = ApiError::kserve;
    let (parts, body) = request.into_parts();
    let (bytes, _charge) =
        crate::body::read_body(&state, &parts.headers, body, crate::body::Limit::inference(&state.config)).await.map_err(kserve)?;
    let request: GenerateBody = crate::body::parse_json(&bytes).map_err(kserve)?;
    let mut sampling = sampling(request.parameters, request.top_level).map_err(kserve)?;
    if sampling.n.is_some_and(|n| n != 1) {
        return Err(kserve(ServiceError::invalid("parameters.n must be 1 for generate")));
    }
    sampling.stream = Some(stream);
    let plan = run::plan(&sampling, None).map_err(kserve)?;
    let prompt = caller.prompt(&state, &model_ref, PromptInput::Text(request.text_input)).await.map_err(kserve)?;
    // The answer names the model as the client did.
    let format = GenerateFormat { model: model_ref.name.clone(), version: prompt.version.to_string(), id: request.id };
    // One choice (n is 1), and no stream usage event (`GenerateFormat::usage`): the answer carries its usage.
    let body = |format: &GenerateFormat, collected: &[run::Collected], usage| {
        let answer = collected.first().expect("one choice");
        let mut body = format.base();
        body["text_output"] = json!(answer.text);
        body["finish_reason"] = json!(answer.finish_reason.as_str());
        body["usage"] = json!(UsageOut::from(usage));
        body
    };
    run::respond(&state.service, std::slice::from_ref(&prompt), &plan, format, body).await.map_err(kserve)
}

struct GenerateFormat {
    model: String,
    version: String,
    id: Option<String>,
}

impl GenerateFormat {
    fn base(&self) -> Value {
        let mut value = json!({ "model_name": self.model, "model_version": self.version });
        if let Some(id) = &self.id {
            value["id"] = json!(id);
        }
        value
    }
}

impl StreamFormat for GenerateFormat {
    fn chunk(&self, _index: u32, chunk: &TextChunk, _first: bool) -> Option<Value> {
        if chunk.text.is_empty() {
            return None;
        }
        let mut value = self.base();
        value["text_output"] = json!(chunk.text);
        Some(value)
    }

    fn finish(&self, _index: u32, reason: FinishReason, usage: Usage) -> Option<Value> {
        let mut value = self.base();
        value["text_output"] = json!("");
        value["finish_reason"] = json!(reason.as_str());
        value["usage"] = json!(UsageOut::from(usage));
        Some(value)
    }

    fn usage(&self, _usage: Usage) -> Option<Value> {
        None
    }

    fn error(&self, error: &ServiceError, request_id: Option<&crate::request_id::RequestId>) -> Value {
        crate::openai::run::plain_error(error, request_id)
    }

    fn done_marker(&self) -> bool {
        false
    }
}
