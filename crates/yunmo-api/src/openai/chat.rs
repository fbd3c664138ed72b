//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};
use yunmo_service::{PromptInput, ServiceError};
use yunmo_types::{FinishReason, TextChunk, TokenLogprob, Usage};

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
    let prompt = caller.prompt(&state, &model_ref, PromptInput::Chat(messages)).await.map_err(openai)?;
    let format = ChatFormat { envelope: run::Envelope::new("chatcmpl", request.model), logprobs: logprobs.is_some() };
    let body = |format: &ChatFormat, collected: &[run::Collected], usage| {
        let choices: Vec<Value> = collected
            .iter()
            .enumerate()
            .map(|(index, answer)| {
                json!({
                    "index": index,
                    "message": { "role": "assistant", "content": answer.text },
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
}

const CHUNK: &str = "chat.completion.chunk";

impl StreamFormat for ChatFormat {
    fn chunk(&self, index: u32, chunk: &TextChunk, first: bool) -> Option<Value> {
        if chunk.text.is_empty() && !first && chunk.logprobs.is_empty() {
            return None;
        }
        let delta = if first { json!({ "role": "assistant", "content": chunk.text }) } else { json!({ "content": chunk.text }) };
        let logprobs = self.logprobs.then(|| json!({ "content": chunk.logprobs.iter().map(logprob_json).collect::<Vec<_>>() }));
        Some(self.envelope.body(CHUNK, json!([{ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null }])))
    }

    fn finish(&self, index: u32, reason: FinishReason, _usage: Usage) -> Option<Value> {
        Some(self.envelope.body(CHUNK, json!([{ "index": index, "delta": {}, "logprobs": null, "finish_reason": reason.as_str() }])))
    }

    fn usage(&self, usage: Usage) -> Option<Value> {
        Some(self.envelope.with_usage(CHUNK, json!([]), usage))
    }
}
