//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};
use yunmo_service::{PromptInput, ServiceError};
use yunmo_text::chat::Chat;
use yunmo_text::tool_calls::{self, Piece, ToolCall};
use yunmo_types::{FinishReason, TextChunk, TokenLogprob, Usage};

use super::reasoning::{self, Splitter};
use super::run::{self, StreamFormat};
use super::tools::{self, ToolOutput};
use super::wire::ChatCompletionRequest;
use super::{OpenAiJson, OpenAiResult, chat_messages, model_ref, openai};
use crate::AppState;

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    OpenAiJson(request): OpenAiJson<ChatCompletionRequest>,
) -> OpenAiResult<Response> {
    super::fields::check(super::fields::Route::Chat, &request.extra).map_err(openai)?;
    let model = request.model.clone();
    let prepared = prepare(&state, &caller, request).await.map_err(openai)?;
    let format = ChatFormat {
        envelope: run::Envelope::new("chatcmpl", model),
        logprobs: prepared.plan.params.logprobs.is_some(),
        reader: prepared.reader,
    };
    let (plan, prompt) = (prepared.plan, prepared.prompt);
    let body = |format: &ChatFormat, collected: &[run::Collected], usage| {
        let choices: Vec<Value> = collected
            .iter()
            .enumerate()
            .map(|(index, answer)| {
                let (message, called) = format.reader.message(&answer.text);
                json!({
                    "index": index,
                    "message": message,
                    "logprobs": format.logprobs.then(|| json!({ "content": answer.logprobs.iter().map(logprob_json).collect::<Vec<_>>() })),
                    "finish_reason": finish_reason(answer.finish_reason, called),
                })
            })
            .collect();
        format.envelope.with_usage("chat.completion", json!(choices), usage)
    };
    run::respond(&state.service, std::slice::from_ref(&prompt), &plan, format, body).await.map_err(openai)
}

/// A chat request made ready to run: its sampling plan (with the constraint of its `response_format` or
/// tools), its rendered prompt, and the reader that splits the answer into thinking, text and calls. What
/// every chat API (OpenAI's, Ollama's, Anthropic's, Responses) shares.
pub(crate) struct Prepared {
    pub plan: run::Plan,
    pub prompt: yunmo_service::Prompt,
    pub reader: ChatReader,
}

/// Reads the request's tools, sampling and format, renders its conversation through the model's template.
pub(crate) async fn prepare(
    state: &AppState,
    caller: &crate::auth::Caller,
    request: ChatCompletionRequest,
) -> Result<Prepared, ServiceError> {
    let tool_plan = tools::plan(request.tools, request.tool_choice.as_ref(), request.parallel_tool_calls)?;
    let logprobs = match (request.logprobs.unwrap_or(false), request.top_logprobs) {
        (true, top) => Some(top.unwrap_or(0)),
        (false, Some(_)) => return Err(ServiceError::invalid("top_logprobs needs logprobs: true")),
        (false, None) => None,
    };
    let mut plan = run::plan(&request.sampling, logprobs)?;
    plan.constraint = super::format::response_format(request.response_format.as_ref())?.map(|c| (c, "response_format"));
    let model_ref = model_ref(&request.model)?;
    let chat =
        Chat { messages: chat_messages(request.messages)?, tools: Vec::new(), kwargs: request.chat_template_kwargs.unwrap_or_default() };
    let prompt = caller.prompt(state, &model_ref, PromptInput::Chat(chat, tool_plan.tools.clone())).await?;
    if let Some(format) = prompt.tool_format {
        // Control tokens that open calls (`<|python_tag|>`) must reach the parser.
        plan.params.special_tokens = true;
        if let Some(grammar) = tool_plan.constraint(format) {
            if plan.constraint.is_some() {
                return Err(ServiceError::invalid(
                    "response_format cannot be combined with tools here: the answer follows the tool-call grammar (tool_choice required or named, or a model whose template has no tools)",
                ));
            }
            plan.constraint = Some((grammar, "tools"));
        }
    }
    let reader = ChatReader { thinking: prompt.thinking, tools: tool_plan.output(prompt.tool_format), choices: Default::default() };
    Ok(Prepared { plan, prompt, reader })
}

/// `tool_calls` when the answer called tools, else why it ended.
fn finish_reason(reason: FinishReason, called: bool) -> &'static str {
    if called { "tool_calls" } else { reason.as_str() }
}

/// OpenAI's chat log-probability entry.
fn logprob_json(logprob: &TokenLogprob) -> Value {
    json!({
        "token": logprob.token,
        "logprob": logprob.logprob,
        "bytes": logprob.bytes,
        "top_logprobs": logprob.top.iter().map(|(token, bytes, value)| json!({ "token": token, "logprob": value, "bytes": bytes })).collect::<Vec<_>>(),
    })
}

struct ChatFormat {
    envelope: run::Envelope,
    logprobs: bool,
    reader: ChatReader,
}

/// Splits a chat answer, whole or as it streams, into thinking, text and tool calls.
pub(crate) struct ChatReader {
    /// `Some(inside)` when the model thinks in `<think>...</think>` (see `Prompt::thinking`).
    thinking: Option<bool>,
    /// How calls are read, when tools are offered.
    tools: Option<ToolOutput>,
    /// Per streamed choice: its thinking, answer and calls, split as text arrives.
    choices: std::sync::Mutex<std::collections::HashMap<u32, ChoiceStream>>,
}

/// A streamed choice's readers.
struct ChoiceStream {
    splitter: Option<Splitter>,
    calls: Option<tool_calls::Stream>,
    /// Calls sent so far.
    called: usize,
}

/// What a piece of a choice's text adds: thinking, answer, and calls (numbered from `first_call`).
#[derive(Default)]
pub(crate) struct Step {
    pub reasoning: String,
    pub content: String,
    pub calls: Vec<ToolCall>,
    pub first_call: usize,
}

/// A whole answer, split.
pub(crate) struct Whole {
    pub reasoning: String,
    pub content: String,
    pub calls: Vec<ToolCall>,
}

impl Step {
    pub(crate) fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty() && self.calls.is_empty()
    }
}

impl ChatReader {
    /// A reader that passes text through (a prompt without a chat template).
    pub(crate) fn plain() -> ChatReader {
        ChatReader { thinking: None, tools: None, choices: Default::default() }
    }

    /// A whole answer's thinking, text and calls.
    pub(crate) fn whole(&self, text: &str) -> Whole {
        let (reasoning, content) = match self.thinking {
            None => (String::new(), text.to_string()),
            Some(inside) => {
                let split = reasoning::split(text, inside);
                (split.reasoning, split.content)
            }
        };
        let (content, calls) = match &self.tools {
            Some(tools) => tools.parse(&content),
            None => (content, Vec::new()),
        };
        Whole { reasoning, content, calls }
    }

    /// The assistant message of a whole answer (thinking in `reasoning_content`, calls in `tool_calls`, the
    /// rest in `content`), and whether it called tools.
    fn message(&self, text: &str) -> (Value, bool) {
        let Whole { reasoning, content, calls } = self.whole(text);
        let mut message = json!({ "role": "assistant", "content": content });
        if self.thinking.is_some() {
            message["reasoning_content"] = json!(non_empty(reasoning));
        }
        if !calls.is_empty() {
            message["content"] = json!(non_empty(content));
            message["tool_calls"] = tools::calls_json(&calls, 0, false);
        }
        (message, !calls.is_empty())
    }

    /// What choice `index`'s new text adds (`end`: the choice is over; what the readers held comes out).
    pub(crate) fn step(&self, index: u32, text: &str, end: bool) -> Step {
        let mut choices = self.choices.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let choice = choices.entry(index).or_insert_with(|| ChoiceStream {
            splitter: self.thinking.map(Splitter::new),
            calls: self.tools.as_ref().map(ToolOutput::stream),
            called: 0,
        });
        let mut step = Step { first_call: choice.called, ..Step::default() };
        match &mut choice.splitter {
            None => step.content = text.to_string(),
            Some(splitter) => {
                let mut split = splitter.push(text);
                if end {
                    let rest = splitter.finish();
                    split.reasoning.push_str(&rest.reasoning);
                    split.content.push_str(&rest.content);
                }
                (step.reasoning, step.content) = (split.reasoning, split.content);
            }
        }
        if let (Some(stream), Some(tools)) = (&mut choice.calls, &self.tools) {
            let mut pieces = stream.push(&step.content);
            if end {
                pieces.extend(tools.finish(stream));
            }
            step.content.clear();
            for piece in pieces {
                match piece {
                    Piece::Content(text) => step.content.push_str(&text),
                    Piece::Call(call) => step.calls.push(call),
                }
            }
        }
        choice.called += step.calls.len();
        step
    }

    /// Whether choice `index` called tools.
    pub(crate) fn called(&self, index: u32) -> bool {
        self.choices.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&index).is_some_and(|choice| choice.called > 0)
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A stream delta with the parts that have something (`role` and an empty `content` on a choice's first).
fn delta(step: Step, first: bool) -> Value {
    let mut delta = serde_json::Map::new();
    if first {
        delta.insert("role".into(), json!("assistant"));
    }
    if !step.reasoning.is_empty() {
        delta.insert("reasoning_content".into(), json!(step.reasoning));
    }
    if !step.content.is_empty() || (first && step.reasoning.is_empty() && step.calls.is_empty()) {
        delta.insert("content".into(), json!(step.content));
    }
    if !step.calls.is_empty() {
        delta.insert("tool_calls".into(), tools::calls_json(&step.calls, step.first_call, true));
    }
    Value::Object(delta)
}

const CHUNK: &str = "chat.completion.chunk";

impl StreamFormat for ChatFormat {
    fn chunk(&self, index: u32, chunk: &TextChunk, first: bool) -> Option<Value> {
        let step = self.reader.step(index, &chunk.text, false);
        if step.is_empty() && !first && chunk.logprobs.is_empty() {
            return None;
        }
        let delta = delta(step, first);
        let logprobs = self.logprobs.then(|| json!({ "content": chunk.logprobs.iter().map(logprob_json).collect::<Vec<_>>() }));
        Some(self.envelope.body(CHUNK, json!([{ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null }])))
    }

    fn finish(&self, index: u32, reason: FinishReason, _usage: Usage) -> Option<Value> {
        // What the readers still held (a possible marker's start, the calls) goes out with the finish.
        let rest = self.reader.step(index, "", true);
        let delta = if rest.is_empty() { json!({}) } else { delta(rest, false) };
        let reason = finish_reason(reason, self.reader.called(index));
        Some(self.envelope.body(CHUNK, json!([{ "index": index, "delta": delta, "logprobs": null, "finish_reason": reason }])))
    }

    fn usage(&self, usage: Usage) -> Option<Value> {
        Some(self.envelope.with_usage(CHUNK, json!([]), usage))
    }
}
