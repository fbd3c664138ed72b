//! `POST /api/chat` and `POST /api/generate`: Ollama's requests made into the OpenAI chat request that the
//! shared chat path runs (template, tools, structured output, thinking), answered in Ollama's shapes,
//! streamed as newline-delimited JSON unless `"stream": false` (Ollama streams by default). A `raw`
//! generate sends its prompt as it is, without the template.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use yunmo_service::{PromptInput, ServiceError};
use yunmo_text::tool_calls::ToolCall;
use yunmo_types::{FinishReason, TextChunk, Usage};

use super::{ollama, options};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openai::chat::{ChatReader, Step, Whole};
use crate::openai::run::{self, Collected, StreamFormat};

/// A chat message as Ollama writes it. Other fields (`tool_call_id` and the like, which some clients add)
/// are ignored, as Ollama ignores them.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageIn {
    role: String,
    #[serde(default)]
    content: Option<String>,
    /// An assistant's earlier thinking: not part of the prompt.
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallIn>>,
    /// A `tool` message's function.
    #[serde(default)]
    tool_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ToolCallIn {
    function: FunctionIn,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionIn {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<MessageIn>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    keep_alive: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    context: Option<Vec<i64>>,
    #[serde(default)]
    raw: Option<bool>,
    #[serde(default)]
    images: Option<Vec<String>>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    keep_alive: Option<Value>,
}

fn unsupported_if(present: bool, field: &str, why: &str) -> Result<(), ServiceError> {
    if present { Err(run::unsupported(field, why)) } else { Ok(()) }
}

/// Ollama's messages as OpenAI's. Ollama's tool answers name their function (`tool_name`) but no call id:
/// each answers the earliest call not yet answered of that function (of any, without a name).
fn messages(messages: Vec<MessageIn>) -> Result<Vec<Value>, ServiceError> {
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut out = Vec::with_capacity(messages.len());
    for (index, message) in messages.into_iter().enumerate() {
        let is_tool = message.role == "tool";
        let mut converted = self::message(index, message)?;
        if let Some(calls) = converted.get("tool_calls").and_then(Value::as_array) {
            pending = calls
                .iter()
                .filter_map(|call| Some((call["function"]["name"].as_str()?.to_string(), call["id"].as_str()?.to_string())))
                .collect();
        }
        if is_tool {
            let name = converted.get("name").and_then(Value::as_str).map(str::to_string);
            let found = pending.iter().position(|(function, _)| name.as_ref().is_none_or(|name| name == function));
            let id = match found {
                Some(position) => pending.remove(position).1,
                None => format!("call_{index}"),
            };
            converted["tool_call_id"] = json!(id);
        }
        out.push(converted);
    }
    Ok(out)
}

/// An Ollama message as an OpenAI one.
fn message(index: usize, message: MessageIn) -> Result<Value, ServiceError> {
    let _ = message.thinking;
    unsupported_if(
        message.images.is_some_and(|images| !images.is_empty()),
        &format!("messages[{index}].images"),
        "the models served take text",
    )?;
    let mut out = json!({ "role": message.role, "content": message.content.unwrap_or_default() });
    if let Some(calls) = message.tool_calls.filter(|calls| !calls.is_empty()) {
        let calls: Vec<Value> = calls
            .into_iter()
            .enumerate()
            .map(|(number, call)| {
                let arguments = match call.function.arguments {
                    Value::String(text) => text,
                    Value::Null => "{}".to_string(),
                    other => other.to_string(),
                };
                json!({ "id": format!("call_{index}_{number}"), "type": "function", "function": { "name": call.function.name, "arguments": arguments } })
            })
            .collect();
        out["tool_calls"] = Value::Array(calls);
    }
    if let Some(name) = message.tool_name {
        out["name"] = json!(name);
    }
    Ok(out)
}

/// The OpenAI chat request an Ollama chat asks for.
fn chat_request(model: &str, messages: Vec<Value>, parts: Parts) -> Result<crate::openai::wire::ChatCompletionRequest, ServiceError> {
    let mut request = Map::new();
    request.insert("model".into(), json!(model));
    request.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = parts.tools {
        request.insert("tools".into(), Value::Array(tools));
    }
    if let Some(format) = options::response_format(parts.format)? {
        request.insert("response_format".into(), format);
    }
    if let Some(kwargs) = options::thinking(parts.think)? {
        request.insert("chat_template_kwargs".into(), kwargs);
    }
    options::apply(parts.options, &mut request)?;
    serde_json::from_value(Value::Object(request)).map_err(|error| ServiceError::invalid(error.to_string()))
}

/// What chat and generate share.
struct Parts {
    tools: Option<Vec<Value>>,
    format: Option<Value>,
    think: Option<Value>,
    options: Option<Map<String, Value>>,
}

/// A request without messages or prompt loads the model (as `ollama run` and UIs preload it): answered at
/// once with `done_reason: "load"`. Unloading (`keep_alive: 0`) is Yunmo's management API's.
async fn load(state: &AppState, caller: &Caller, model: &str, keep_alive: Option<&Value>, kind: Kind) -> Result<Response, ServiceError> {
    if keep_alive.is_some_and(|value| {
        value.as_f64() == Some(0.0) || value.as_str().is_some_and(|text| text.trim_start_matches('0').is_empty() || text == "0s")
    }) {
        return Err(ServiceError::invalid(format!(
            "unloading through Ollama's API is not supported: unload with POST /api/v1/models/{}/unload",
            super::model_ref(model)?.name
        )));
    }
    let target = caller.target_ref(state, &super::model_ref(model)?, yunmo_auth::Action::Infer).await?;
    if !state.service.model_ready(&caller.call, &target).await? {
        return Err(ServiceError::not_ready(format!(
            "model '{model}' is unloaded: load it with POST /api/v1/models/{}/load",
            target.name()
        )));
    }
    let format = OllamaFormat::new(model.to_string(), kind, ChatReader::plain());
    let mut line = format.line(String::new(), String::new(), &[], true);
    line["done_reason"] = json!("load");
    Ok(axum::response::IntoResponse::into_response(axum::Json(line)))
}

pub(crate) async fn chat(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let request: ChatRequest = crate::body::parse_json(&body).map_err(ollama)?;
    options::keep_alive(request.keep_alive.as_ref()).map_err(ollama)?;
    if request.messages.is_empty() {
        return load(&state, &caller, &request.model, request.keep_alive.as_ref(), Kind::Chat).await.map_err(ollama);
    }
    let model_ref = super::model_ref(&request.model).map_err(ollama)?;
    let messages = messages(request.messages).map_err(ollama)?;
    let parts = Parts { tools: request.tools, format: request.format, think: request.think, options: request.options };
    let openai_request = chat_request(&openai_name(&model_ref), messages, parts).map_err(ollama)?;
    let prepared = crate::openai::chat::prepare(&state, &caller, openai_request).await.map_err(ollama)?;
    let format = OllamaFormat::new(request.model, Kind::Chat, prepared.reader);
    respond(&state, prepared.plan, prepared.prompt, format, request.stream).await
}

pub(crate) async fn generate(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let request: GenerateRequest = crate::body::parse_json(&body).map_err(ollama)?;
    options::keep_alive(request.keep_alive.as_ref()).map_err(ollama)?;
    unsupported_if(request.images.is_some_and(|images| !images.is_empty()), "images", "the models served take text").map_err(ollama)?;
    unsupported_if(request.suffix.is_some_and(|suffix| !suffix.is_empty()), "suffix", "fill-in-the-middle is not served")
        .map_err(ollama)?;
    unsupported_if(
        request.template.is_some_and(|template| !template.is_empty()),
        "template",
        "a version's chat_template is set through /api/v1/models/{name}/versions/{v}/config",
    )
    .map_err(ollama)?;
    unsupported_if(request.context.is_some_and(|context| !context.is_empty()), "context", "send the conversation to /api/chat")
        .map_err(ollama)?;
    if request.prompt.as_deref().unwrap_or("").is_empty() && request.system.as_deref().unwrap_or("").is_empty() {
        return load(&state, &caller, &request.model, request.keep_alive.as_ref(), Kind::Generate).await.map_err(ollama);
    }
    let model_ref = super::model_ref(&request.model).map_err(ollama)?;
    let prompt_text = request.prompt.unwrap_or_default();
    let parts = Parts { tools: None, format: request.format, think: request.think, options: request.options };
    if request.raw.unwrap_or(false) {
        // The prompt as it is: a completion.
        let mut fields = Map::new();
        options::apply(parts.options, &mut fields).map_err(ollama)?;
        let sampling: crate::openai::wire::Sampling =
            serde_json::from_value(Value::Object(fields)).map_err(|e| ollama(ServiceError::invalid(e.to_string())))?;
        let mut plan = run::plan(&sampling, None).map_err(ollama)?;
        let format = options::response_format(parts.format).map_err(ollama)?;
        plan.constraint = crate::openai::format::response_format(format.as_ref()).map_err(ollama)?.map(|c| (c, "format"));
        let prompt = caller.prompt(&state, &model_ref, PromptInput::Text(prompt_text)).await.map_err(ollama)?;
        let format = OllamaFormat::new(request.model, Kind::Generate, ChatReader::plain());
        return respond(&state, plan, prompt, format, request.stream).await;
    }
    let mut messages = Vec::new();
    if let Some(system) = request.system.filter(|system| !system.is_empty()) {
        messages.push(json!({ "role": "system", "content": system }));
    }
    messages.push(json!({ "role": "user", "content": prompt_text }));
    let openai_request = chat_request(&openai_name(&model_ref), messages, parts).map_err(ollama)?;
    let prepared = crate::openai::chat::prepare(&state, &caller, openai_request).await.map_err(ollama)?;
    let format = OllamaFormat::new(request.model, Kind::Generate, prepared.reader);
    respond(&state, prepared.plan, prepared.prompt, format, request.stream).await
}

/// The model as the OpenAI path names it (`name` or `name:version`).
fn openai_name(model_ref: &yunmo_types::ModelRef) -> String {
    match model_ref.version {
        Some(version) => format!("{}:{version}", model_ref.name),
        None => model_ref.name.clone(),
    }
}

async fn respond(
    state: &AppState,
    mut plan: run::Plan,
    prompt: yunmo_service::Prompt,
    format: OllamaFormat,
    stream: Option<bool>,
) -> Result<Response, ApiError> {
    plan.stream = stream.unwrap_or(true);
    // Ollama stops at the end of the context rather than refusing a large num_predict.
    run::fit_to_context(&mut plan, &prompt);
    let body = |format: &OllamaFormat, collected: &[Collected], usage: Usage| format.whole(collected, usage);
    run::respond(&state.service, std::slice::from_ref(&prompt), &plan, format, body).await.map_err(ollama)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

/// Ollama's answers, whole and streamed.
struct OllamaFormat {
    model: String,
    kind: Kind,
    reader: ChatReader,
    started: Instant,
    first_token: Mutex<Option<Instant>>,
}

impl OllamaFormat {
    fn new(model: String, kind: Kind, reader: ChatReader) -> OllamaFormat {
        OllamaFormat { model, kind, reader, started: Instant::now(), first_token: Mutex::new(None) }
    }

    /// The fields of every line, and the text part in this kind's shape.
    fn line(&self, reasoning: String, content: String, calls: &[ToolCall], done: bool) -> Value {
        let mut line =
            json!({ "model": self.model, "created_at": yunmo_types::calendar::format_utc(yunmo_types::calendar::now_ms()), "done": done });
        match self.kind {
            Kind::Chat => {
                let mut message = json!({ "role": "assistant", "content": content });
                if !reasoning.is_empty() {
                    message["thinking"] = json!(reasoning);
                }
                if !calls.is_empty() {
                    message["tool_calls"] = calls_json(calls);
                }
                line["message"] = message;
            }
            Kind::Generate => {
                line["response"] = json!(content);
                if !reasoning.is_empty() {
                    line["thinking"] = json!(reasoning);
                }
            }
        }
        line
    }

    /// The counts and durations (nanoseconds) of the last line: prompt evaluation up to the first token,
    /// generation after it.
    fn finished(&self, line: &mut Value, reason: FinishReason, usage: Usage) {
        let now = Instant::now();
        let first = self.first_token.lock().unwrap_or_else(std::sync::PoisonError::into_inner).unwrap_or(now);
        let nanos = |from: Instant, to: Instant| to.saturating_duration_since(from).as_nanos() as u64;
        line["done_reason"] = json!(match reason {
            FinishReason::Length => "length",
            _ => "stop",
        });
        line["total_duration"] = json!(nanos(self.started, now));
        line["load_duration"] = json!(0);
        line["prompt_eval_count"] = json!(usage.prompt_tokens);
        line["prompt_eval_duration"] = json!(nanos(self.started, first));
        line["eval_count"] = json!(usage.completion_tokens);
        line["eval_duration"] = json!(nanos(first, now));
    }

    fn whole(&self, collected: &[Collected], usage: Usage) -> Value {
        let Some(answer) = collected.first() else { return json!({ "error": "no answer" }) };
        let Whole { reasoning, content, calls } = self.reader.whole(&answer.text);
        let mut line = self.line(reasoning, content, &calls, true);
        self.finished(&mut line, answer.finish_reason, usage);
        line
    }

    fn step_line(&self, step: Step, done: bool) -> Value {
        self.line(step.reasoning, step.content, &step.calls, done)
    }
}

/// Ollama's tool calls: arguments as an object.
fn calls_json(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .map(|call| {
            let arguments: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
            json!({ "function": { "name": call.name, "arguments": arguments } })
        })
        .collect()
}

impl StreamFormat for OllamaFormat {
    fn chunk(&self, index: u32, chunk: &TextChunk, _first: bool) -> Option<Value> {
        self.first_token.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert_with(Instant::now);
        let step = self.reader.step(index, &chunk.text, false);
        (!step.is_empty()).then(|| self.step_line(step, false))
    }

    fn finish(&self, index: u32, reason: FinishReason, usage: Usage) -> Option<Value> {
        let rest = self.reader.step(index, "", true);
        let mut line = self.step_line(rest, true);
        self.finished(&mut line, reason, usage);
        Some(line)
    }

    fn usage(&self, _usage: Usage) -> Option<Value> {
        None
    }

    fn error(&self, error: &ServiceError, request_id: Option<&crate::request_id::RequestId>) -> Value {
        run::plain_error(error, request_id)
    }

    fn done_marker(&self) -> bool {
        false
    }

    fn ndjson(&self) -> bool {
        true
    }
}
