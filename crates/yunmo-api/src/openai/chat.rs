//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};
use yunmo_service::{PromptInput, ServiceError};
use yunmo_types::{FinishReason, TextChunk, TokenLogprob, Usage};

use super::reasoning::{self, Splitter};
use super::run::{self, StreamFormat};
use super::wire::ChatCompletionRequest;
use super::{OpenAiJson, OpenAiResult, chat_messages, model_ref, openai};
use crate::AppState;

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    OpenAiJson(request): OpenAiJson<ChatCompletionRequest>,
) -> OpenAiResult<Response> {
    super::fields::check(super::fields::Route::Chat, &request.extra).map_err(openai)?;
    if request.tools.as_ref().is_some_and(|tools| !tools.is_empty()) {
        return Err(openai(run::unsupported("tools", "this server does not call tools")));
    }
    let logprobs = match (request.logprobs.unwrap_or(false), request.top_logprobs) {
        (true, top) => Some(top.unwrap_or(0)),
        (false, Some(_)) => {
            return Err(openai(ServiceError::invalid("top_logprobs needs logprobs: true")));
        }
        (false, None) => None,
    };
    let mut plan = run::plan(&request.sampling, logprobs).map_err(openai)?;
    plan.constraint = super::format::response_format(request.response_format.as_ref()).map_err(openai)?.map(|c| (c, "response_format"));
    let model_ref = model_ref(&request.model).map_err(openai)?;
    let messages = chat_messages(request.messages).map_err(openai)?;
    let input = PromptInput::Chat(messages, request.chat_template_kwargs.unwrap_or_default());
    let prompt = caller.prompt(&state, &model_ref, input).await.map_err(openai)?;
    let format = ChatFormat {
        envelope: run::Envelope::new("chatcmpl", request.model),
        logprobs: logprobs.is_some(),
        thinking: prompt.thinking,
        splitters: Default::default(),
    };
    let body = |format: &ChatFormat, collected: &[run::Collected], usage| {
        let choices: Vec<Value> = collected
            .iter()
            .enumerate()
            .map(|(index, answer)| {
                json!({
                    "index": index,
                    "message": format.message(&answer.text),
                    "logprobs": format.logprobs.then(|| json!({ "content": answer.logprobs.iter().map(logprob_json).collect::<Vec<_>>() })),
                    "finish_reason": answer.finish_reason.as_str(),
                })
            })
            .collect();
        format.envelope.with_usage("chat.completion", json!(choices), usage)
    };
    run::respond(&state.service, std::slice::from_ref(&prompt), &plan, format, body).await.map_err(openai)
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
    /// `Some(inside)` when the model thinks in `<think>...</think>` (see `Prompt::thinking`).
    thinking: Option<bool>,
    /// Per streamed choice: its thinking and answer, split as text arrives.
    splitters: std::sync::Mutex<std::collections::HashMap<u32, Splitter>>,
}

impl ChatFormat {
    /// The assistant message of a whole answer: thinking in `reasoning_content`, the rest in `content`.
    fn message(&self, text: &str) -> Value {
        match self.thinking {
            None => json!({ "role": "assistant", "content": text }),
            Some(inside) => {
                let split = reasoning::split(text, inside);
                json!({ "role": "assistant", "content": split.content, "reasoning_content": non_empty(split.reasoning) })
            }
        }
    }

    /// The split of choice `index`'s new text (all of it is answer when the model does not think).
    fn split(&self, index: u32, text: &str, end: bool) -> reasoning::Split {
        let Some(inside) = self.thinking else {
            return reasoning::Split { reasoning: String::new(), content: text.to_string() };
        };
        let mut splitters = self.splitters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let splitter = splitters.entry(index).or_insert_with(|| Splitter::new(inside));
        let mut split = splitter.push(text);
        if end {
            let rest = splitter.finish();
            split.reasoning.push_str(&rest.reasoning);
            split.content.push_str(&rest.content);
        }
        split
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A stream delta with the parts that have text (`role` and an empty `content` on a choice's first).
fn delta(split: reasoning::Split, first: bool) -> Value {
    let mut delta = serde_json::Map::new();
    if first {
        delta.insert("role".into(), json!("assistant"));
    }
    if !split.reasoning.is_empty() {
        delta.insert("reasoning_content".into(), json!(split.reasoning));
    }
    if !split.content.is_empty() || (first && split.reasoning.is_empty()) {
        delta.insert("content".into(), json!(split.content));
    }
    Value::Object(delta)
}

const CHUNK: &str = "chat.completion.chunk";

impl StreamFormat for ChatFormat {
    fn chunk(&self, index: u32, chunk: &TextChunk, first: bool) -> Option<Value> {
        let split = self.split(index, &chunk.text, false);
        if split.content.is_empty() && split.reasoning.is_empty() && !first && chunk.logprobs.is_empty() {
            return None;
        }
        let delta = delta(split, first);
        let logprobs = self.logprobs.then(|| json!({ "content": chunk.logprobs.iter().map(logprob_json).collect::<Vec<_>>() }));
        Some(self.envelope.body(CHUNK, json!([{ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null }])))
    }

    fn finish(&self, index: u32, reason: FinishReason, _usage: Usage) -> Option<Value> {
        // What the splitter still held (a possible marker's start) goes out with the finish.
        let rest = self.split(index, "", true);
        let delta = if rest.content.is_empty() && rest.reasoning.is_empty() { json!({}) } else { delta(rest, false) };
        Some(self.envelope.body(CHUNK, json!([{ "index": index, "delta": delta, "logprobs": null, "finish_reason": reason.as_str() }])))
    }

    fn usage(&self, usage: Usage) -> Option<Value> {
        Some(self.envelope.with_usage(CHUNK, json!([]), usage))
    }
}
