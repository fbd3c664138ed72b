//! `POST /v1/completions` (legacy text completion).

use axum::extract::State;
use axum::response::Response;
use serde_json::{Map, Value, json};
use yunmo_service::{Prompt, PromptInput, ServiceError};
use yunmo_types::{FinishReason, TextChunk, TokenLogprob, Usage};

use super::run::{self, StreamFormat};
use super::wire::{CompletionRequest, PromptIn};
use super::{OpenAiJson, OpenAiResult, model_ref, openai};
use crate::AppState;

/// Most prompts in one request.
const MAX_PROMPTS: usize = 64;

pub(crate) async fn completions(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    OpenAiJson(request): OpenAiJson<CompletionRequest>,
) -> OpenAiResult<Response> {
    super::fields::check(super::fields::Route::Completions, &request.extra).map_err(openai)?;
    if request.suffix.as_ref().is_some_and(|suffix| !suffix.is_empty()) {
        return Err(openai(run::unsupported("suffix", "fill-in-the-middle needs a model-specific prompt format")));
    }
    let mut plan = run::plan(&request.sampling, request.logprobs).map_err(openai)?;
    plan.constraint = super::format::response_format(request.response_format.as_ref()).map_err(openai)?.map(|c| (c, "response_format"));
    let model_ref = model_ref(&request.model).map_err(openai)?;
    let inputs = prompt_inputs(request.prompt).map_err(openai)?;
    let mut prompts: Vec<Prompt> = Vec::with_capacity(inputs.len());
    for input in inputs {
        prompts.push(caller.prompt(&state, &model_ref, input).await.map_err(openai)?);
    }
    if request.echo && plan.stream {
        return Err(openai(ServiceError::invalid("echo is not supported with stream")));
    }
    let format = CompletionFormat { envelope: run::Envelope::new("cmpl", request.model), logprobs: request.logprobs.is_some() };
    let body = |format: &CompletionFormat, collected: &[run::Collected], usage| {
        let choices: Vec<Value> = collected
            .iter()
            .enumerate()
            .map(|(index, answer)| {
                let mut text = answer.text.clone();
                if request.echo {
                    text.insert_str(0, &prompts[index / plan.n as usize].text);
                }
                json!({
                    "index": index,
                    "text": text,
                    "logprobs": format.logprobs.then(|| legacy_logprobs(&answer.logprobs)),
                    "finish_reason": answer.finish_reason.as_str(),
                })
            })
            .collect();
        format.envelope.with_usage(OBJECT, json!(choices), usage)
    };
    run::respond(&state.service, &prompts, &plan, format, body).await.map_err(openai)
}

fn prompt_inputs(prompt: PromptIn) -> Result<Vec<PromptInput>, ServiceError> {
    let inputs: Vec<PromptInput> = match prompt {
        PromptIn::Text(text) => vec![PromptInput::Text(text)],
        PromptIn::Texts(texts) => texts.into_iter().map(PromptInput::Text).collect(),
        PromptIn::Tokens(tokens) => vec![PromptInput::Tokens(tokens)],
        PromptIn::TokenLists(lists) => lists.into_iter().map(PromptInput::Tokens).collect(),
    };
    if inputs.is_empty() || inputs.len() > MAX_PROMPTS {
        return Err(ServiceError::invalid(format!("prompt must hold 1 to {MAX_PROMPTS} prompts, got {}", inputs.len())));
    }
    Ok(inputs)
}

/// The completions API's log-probability object.
fn legacy_logprobs(logprobs: &[TokenLogprob]) -> Value {
    let mut offset = 0;
    let mut text_offset = Vec::with_capacity(logprobs.len());
    for logprob in logprobs {
        text_offset.push(offset);
        offset += logprob.token.len();
    }
    json!({
        "tokens": logprobs.iter().map(|l| l.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": logprobs.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": logprobs.iter().map(|l| {
            l.top.iter().map(|(token, _, value)| (token.clone(), json!(value))).collect::<Map<String, Value>>()
        }).collect::<Vec<_>>(),
        "text_offset": text_offset,
    })
}

struct CompletionFormat {
    envelope: run::Envelope,
    logprobs: bool,
}

/// The `object` of completion responses and their stream chunks alike.
const OBJECT: &str = "text_completion";

impl StreamFormat for CompletionFormat {
    fn chunk(&self, index: u32, chunk: &TextChunk, _first: bool) -> Option<Value> {
        if chunk.text.is_empty() && chunk.logprobs.is_empty() {
            return None;
        }
        let logprobs = self.logprobs.then(|| legacy_logprobs(&chunk.logprobs));
        Some(self.envelope.body(OBJECT, json!([{ "index": index, "text": chunk.text, "logprobs": logprobs, "finish_reason": null }])))
    }

    fn finish(&self, index: u32, reason: FinishReason, _usage: Usage) -> Option<Value> {
        Some(self.envelope.body(OBJECT, json!([{ "index": index, "text": "", "logprobs": null, "finish_reason": reason.as_str() }])))
    }

    fn usage(&self, usage: Usage) -> Option<Value> {
        Some(self.envelope.with_usage(OBJECT, json!([]), usage))
    }
}
