//! Running generations for the OpenAI and V2 generate routes: sampling parameters from the wire, `n`
//! choices per prompt, collecting whole answers, and Server-Sent Event streams that cancel every
//! generation when the client goes away (the response stream, and with it each generation, is dropped).

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::Value;
use yunmo_backend::GenerateEvent;
use yunmo_backend::Grammar;
use yunmo_service::{Code, Generation, InferenceService, Prompt, ServiceError};
use yunmo_types::{Constraint, FinishReason, GenerateParams, TextChunk, TokenLogprob, Usage};

use super::wire::Sampling;
use crate::request_id::RequestId;

/// Most choices per prompt.
pub const MAX_N: u32 = 16;

/// Parameters read from the wire.
pub struct Plan {
    /// Sampling; the seed is the first choice's (choice `i` uses seed + `i`).
    pub params: GenerateParams,
    /// `max_tokens` as asked (`None`: the rest of the context).
    pub max_tokens: Option<u32>,
    /// Choices per prompt.
    pub n: u32,
    /// Stream SSE.
    pub stream: bool,
    /// Send a usage chunk at the end of a stream.
    pub include_usage: bool,
    /// The language the output must be in, enforced while sampling, and the request field that asked for
    /// it (named in errors).
    pub constraint: Option<(Constraint, &'static str)>,
}

/// Reads sampling fields; `logprobs`: `Some(alternatives)` to return log-probabilities.
pub fn plan(sampling: &Sampling, logprobs: Option<u32>) -> Result<Plan, ServiceError> {
    let n = sampling.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return Err(ServiceError::invalid(format!("n must be between 1 and {MAX_N}, got {n}")));
    }
    let top_k = match sampling.top_k {
        None | Some(0) | Some(-1) => 0,
        Some(k) if k > 0 => u32::try_from(k).unwrap_or(u32::MAX),
        Some(k) => {
            return Err(ServiceError::invalid(format!("top_k must be -1, 0 (off) or positive, got {k}")));
        }
    };
    let seed = match sampling.seed {
        Some(seed) => seed as u64,
        None => random_seed(),
    };
    let mut logit_bias = Vec::new();
    for (token, bias) in sampling.logit_bias.iter().flatten() {
        let id = token.parse::<u32>().map_err(|_| ServiceError::invalid(format!("logit_bias: keys must be token ids, got {token:?}")))?;
        logit_bias.push((id, *bias));
    }
    let params = GenerateParams {
        max_tokens: 1,
        temperature: sampling.temperature.unwrap_or(1.0),
        top_p: sampling.top_p.unwrap_or(1.0),
        top_k,
        seed,
        stop: sampling.stop.clone().map(|stop| stop.into_vec()).unwrap_or_default(),
        presence_penalty: sampling.presence_penalty.unwrap_or(0.0),
        frequency_penalty: sampling.frequency_penalty.unwrap_or(0.0),
        repetition_penalty: sampling.repetition_penalty.unwrap_or(1.0),
        logprobs,
        logit_bias,
        special_tokens: false,
    };
    yunmo_service::generate::validate_params(&params)?;
    let max_tokens = sampling.max_completion_tokens.or(sampling.max_tokens);
    if max_tokens == Some(0) {
        return Err(ServiceError::invalid("max_tokens must be at least 1, got 0"));
    }
    Ok(Plan {
        params,
        max_tokens,
        n,
        stream: sampling.stream.unwrap_or(false),
        include_usage: sampling.stream_options.as_ref().is_some_and(|options| options.include_usage),
        constraint: None,
    })
}

pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

/// Starts `n` choices for each prompt; choice indices run prompt-major. Fails (cancelling those
/// started) if any cannot start.
fn start(
    service: &InferenceService,
    prompts: &[Prompt],
    plan: &Plan,
    grammar: Option<Grammar>,
) -> Result<Vec<(u32, Generation)>, ServiceError> {
    let mut choices = Vec::with_capacity(prompts.len() * plan.n as usize);
    for prompt in prompts {
        for choice in 0..plan.n {
            let params = GenerateParams { seed: plan.params.seed.wrapping_add(u64::from(choice)), ..plan.params.clone() };
            choices.push((choices.len() as u32, service.generate(prompt, plan.max_tokens, params, grammar.clone())?));
        }
    }
    Ok(choices)
}

/// A whole answer.
pub struct Collected {
    /// The text.
    pub text: String,
    /// Log-probabilities per token, when asked.
    pub logprobs: Vec<TokenLogprob>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens.
    pub usage: Usage,
}

/// Reads a generation to its end.
async fn collect(mut generation: Generation) -> Result<Collected, ServiceError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(event) = generation.next().await {
        match event {
            GenerateEvent::Chunk(chunk) => {
                text.push_str(&chunk.text);
                logprobs.extend(chunk.logprobs);
            }
            GenerateEvent::Finished { reason, usage } => {
                return Ok(Collected { text, logprobs, finish_reason: reason, usage });
            }
            GenerateEvent::Failed(error) => return Err(error.into()),
        }
    }
    Err(ServiceError::internal("the generation ended without a result"))
}

/// Starts every choice of `prompts` and answers: an SSE stream in `format` when the plan streams, else one
/// JSON body that `body` makes from the format, the collected answers (in choice order) and their usage.
pub async fn respond<F: StreamFormat>(
    service: &InferenceService,
    prompts: &[Prompt],
    plan: &Plan,
    format: F,
    body: impl FnOnce(&F, &[Collected], Usage) -> Value,
) -> Result<Response, ServiceError> {
    if plan.stream {
        return stream(service, prompts, plan, format).await;
    }
    let (collected, usage) = complete(service, prompts, plan).await?;
    Ok(axum::Json(body(&format, &collected, usage)).into_response())
}

/// Runs every choice of `prompts` to its end: the answers, in choice order, and their total usage.
pub async fn complete(service: &InferenceService, prompts: &[Prompt], plan: &Plan) -> Result<(Vec<Collected>, Usage), ServiceError> {
    let collected = collect_all(start_all(service, prompts, plan).await?).await?;
    let usage = total_usage(&collected, plan.n);
    Ok((collected, usage))
}

/// Starts every choice of `prompts` and streams them in `format` (SSE, or NDJSON where the format says).
pub async fn stream<F: StreamFormat>(
    service: &InferenceService,
    prompts: &[Prompt],
    plan: &Plan,
    format: F,
) -> Result<Response, ServiceError> {
    let choices = start_all(service, prompts, plan).await?;
    let ndjson = format.ndjson();
    let frames = frames(choices, format, plan.include_usage, plan.n);
    Ok(if ndjson { ndjson_response(frames) } else { sse_response(frames) })
}

/// Compiles the plan's constraint and starts every choice.
async fn start_all(service: &InferenceService, prompts: &[Prompt], plan: &Plan) -> Result<Vec<(u32, Generation)>, ServiceError> {
    // Compiled once (every prompt is for the same model), before anything streams: a schema the model
    // cannot enforce is a 400.
    let grammar = match (&plan.constraint, prompts.first()) {
        (Some((constraint, field)), Some(prompt)) => Some(
            service
                .constrain(prompt, constraint.clone())
                .await
                .map_err(|error| ServiceError::new(error.code, format!("{field}: {}", error.message)))?,
        ),
        _ => None,
    };
    start(service, prompts, plan, grammar)
}

/// Reads every choice to its end, concurrently, in index order.
async fn collect_all(choices: Vec<(u32, Generation)>) -> Result<Vec<Collected>, ServiceError> {
    futures::future::join_all(choices.into_iter().map(|(_, generation)| collect(generation))).await.into_iter().collect()
}

/// Sums usage over choices, counting each prompt once.
fn total_usage(collected: &[Collected], n: u32) -> Usage {
    let mut usage = Usage::default();
    for (index, answer) in collected.iter().enumerate() {
        if (index as u32).is_multiple_of(n) {
            usage.prompt_tokens += answer.usage.prompt_tokens;
            usage.cached_tokens += answer.usage.cached_tokens;
        }
        usage.completion_tokens += answer.usage.completion_tokens;
    }
    usage
}

/// The fields every OpenAI response and stream chunk carries.
pub struct Envelope {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model as the request named it.
    pub model: String,
}

impl Envelope {
    /// A new response id with `prefix`, created now.
    pub fn new(prefix: &str, model: String) -> Self {
        Envelope { id: response_id(prefix), created: created(), model }
    }

    /// `{"id", "object", "created", "model", "choices"}`.
    pub fn body(&self, object: &str, choices: Value) -> Value {
        serde_json::json!({ "id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices })
    }

    /// The body with `usage` and these `choices` (the whole response, or a stream's usage chunk with none).
    pub fn with_usage(&self, object: &str, choices: Value, usage: Usage) -> Value {
        let mut value = self.body(object, choices);
        value["usage"] = serde_json::json!(super::wire::UsageOut::from(usage));
        value
    }
}

/// How one protocol writes stream events. A format of one JSON value per event implements `chunk`,
/// `finish` and `usage`; one that writes several (named) events per step implements the `*_frames` methods
/// instead. The other defaults are OpenAI's.
pub trait StreamFormat: Send + 'static {
    /// The event for new text of choice `index` (`first`: its first event); `None` sends nothing.
    fn chunk(&self, _index: u32, _chunk: &TextChunk, _first: bool) -> Option<Value> {
        None
    }
    /// The event that ends choice `index`.
    fn finish(&self, _index: u32, _reason: FinishReason, _usage: Usage) -> Option<Value> {
        None
    }
    /// The event with total usage, after every choice ended (when `include_usage`).
    fn usage(&self, _usage: Usage) -> Option<Value> {
        None
    }
    /// The event for a failure of the request `request_id`.
    fn error(&self, error: &ServiceError, request_id: Option<&RequestId>) -> Value {
        crate::error::openai_body(error.code, &crate::error::client_message_for(error.code, &error.message, request_id))
    }
    /// Whether to end with `data: [DONE]`.
    fn done_marker(&self) -> bool {
        true
    }
    /// Whether the stream is newline-delimited JSON (Ollama's) instead of Server-Sent Events.
    fn ndjson(&self) -> bool {
        false
    }
    /// What opens the stream (Anthropic's `message_start`).
    fn opening(&self) -> Vec<Frame> {
        Vec::new()
    }
    /// The payloads for new text of choice `index` (by default [`StreamFormat::chunk`]'s).
    fn chunk_frames(&self, index: u32, chunk: &TextChunk, first: bool) -> Vec<Frame> {
        self.chunk(index, chunk, first).map(Frame::Json).into_iter().collect()
    }
    /// The payloads that end choice `index` (by default [`StreamFormat::finish`]'s).
    fn finish_frames(&self, index: u32, reason: FinishReason, usage: Usage) -> Vec<Frame> {
        self.finish(index, reason, usage).map(Frame::Json).into_iter().collect()
    }
    /// The payload of a failure (by default [`StreamFormat::error`]'s).
    fn error_frame(&self, error: &ServiceError, request_id: Option<&RequestId>) -> Frame {
        Frame::Json(self.error(error, request_id))
    }
    /// What ends the stream once every choice has ended (`failed`: one failed), after the work it waits
    /// for (the Responses API stores the response before `response.completed`); by default nothing.
    fn closing(&self, _failed: bool) -> Option<BoxFuture<'static, Vec<Frame>>> {
        None
    }
}

/// One payload of a stream: a JSON value, one with an SSE event name, or the end marker.
pub enum Frame {
    /// A JSON value (SSE `data:`, or one NDJSON line).
    Json(Value),
    /// A JSON value with an SSE event name (`event: message_start`).
    Event(&'static str, Value),
    /// OpenAI's `data: [DONE]`.
    Done,
}

enum Item {
    Event(u32, GenerateEvent),
    AllEnded,
}

/// The payloads of a stream over every choice, in the order events arrive.
fn frames<F: StreamFormat>(choices: Vec<(u32, Generation)>, format: F, include_usage: bool, n: u32) -> BoxStream<'static, Frame> {
    let count = choices.len();
    // The stream is sent after the handler returns, outside the request's scope.
    let request_id = crate::request_id::current();
    let per_choice: Vec<BoxStream<'static, Item>> = choices
        .into_iter()
        .map(|(index, generation)| {
            stream::unfold(generation, move |mut generation| async move {
                generation.next().await.map(|event| (Item::Event(index, event), generation))
            })
            .boxed()
        })
        .collect();
    let merged = stream::select_all(per_choice).chain(stream::once(async { Item::AllEnded }));
    let opening = stream::iter(format.opening());
    let mut started = vec![false; count];
    let mut usage = Usage::default();
    let mut failed = false;
    let events = merged
        .filter_map(move |item| {
            let event = match item {
                Item::Event(_, _) if failed => None,
                Item::Event(index, GenerateEvent::Chunk(chunk)) => {
                    let first = !std::mem::replace(&mut started[index as usize], true);
                    Some(format.chunk_frames(index, &chunk, first))
                }
                Item::Event(index, GenerateEvent::Finished { reason, usage: choice_usage }) => {
                    if index % n == 0 {
                        usage.prompt_tokens += choice_usage.prompt_tokens;
                        usage.cached_tokens += choice_usage.cached_tokens;
                    }
                    usage.completion_tokens += choice_usage.completion_tokens;
                    Some(format.finish_frames(index, reason, choice_usage))
                }
                Item::Event(_, GenerateEvent::Failed(error)) => {
                    failed = true;
                    Some(vec![format.error_frame(&error.into(), request_id.as_ref())])
                }
                Item::AllEnded => {
                    let mut tail = Vec::new();
                    if include_usage
                        && !failed
                        && let Some(value) = format.usage(usage)
                    {
                        tail.push(Frame::Json(value));
                    }
                    let closing = format.closing(failed);
                    let done = format.done_marker();
                    return Either::Right(async move {
                        if let Some(closing) = closing {
                            tail.extend(closing.await);
                        }
                        if done {
                            tail.push(Frame::Done);
                        }
                        Some(stream::iter(tail))
                    });
                }
            };
            Either::Left(futures::future::ready(event.map(stream::iter)))
        })
        .flatten();
    opening.chain(events).boxed()
}

/// Server-Sent Events: `data: <json>` per payload, `data: [DONE]` at the end.
fn sse_response(frames: BoxStream<'static, Frame>) -> Response {
    let events = frames.map(|frame| {
        Ok::<Event, Infallible>(match frame {
            Frame::Json(value) => Event::default().data(value.to_string()),
            Frame::Event(name, value) => Event::default().event(name).data(value.to_string()),
            Frame::Done => Event::default().data("[DONE]"),
        })
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// Newline-delimited JSON (`application/x-ndjson`), one object per line.
fn ndjson_response(frames: BoxStream<'static, Frame>) -> Response {
    let lines = frames.filter_map(|frame| {
        futures::future::ready(match frame {
            Frame::Json(value) | Frame::Event(_, value) => Some(Ok::<String, Infallible>(format!("{value}\n"))),
            Frame::Done => None,
        })
    });
    let mut response = axum::body::Body::from_stream(lines).into_response();
    response.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-ndjson"));
    response
}

/// Unix seconds now.
fn created() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A response id with `prefix`.
fn response_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", random_seed())
}

/// `max_tokens` as a ceiling, not a demand: cut to the room the context leaves after `prompt` (Anthropic's
/// and Ollama's clients send large values, such as Claude Code's 32000, whatever the model). With no room
/// at all it stays, so the request fails naming the bound.
pub(crate) fn fit_to_context(plan: &mut Plan, prompt: &Prompt) {
    let room = prompt.context.saturating_sub(prompt.tokens.len() as u32);
    if room > 0 {
        plan.max_tokens = plan.max_tokens.map(|requested| requested.min(room));
    }
}

/// A stream's failure as `{"error": "..."}` (the V2 generate extension's and Ollama's shape).
pub(crate) fn plain_error(error: &ServiceError, request_id: Option<&RequestId>) -> Value {
    serde_json::json!({ "error": crate::error::client_message_for(error.code, &error.message, request_id) })
}

/// The error for fields we cannot honour.
pub fn unsupported(field: &str, why: &str) -> ServiceError {
    ServiceError::new(Code::InvalidRequest, format!("{field} is not supported: {why}"))
}
