//! A Responses answer: the response object (echoing the request's settings) with its output items
//! (`reasoning`, `message` with `output_text`, `function_call`), whole or as the stream of events:
//! `response.created`, `response.in_progress`, then per item `response.output_item.added`, its content part
//! (`response.content_part.added`), deltas (`response.output_text.delta`, `response.reasoning_text.delta`,
//! `response.function_call_arguments.delta`) and their `.done` events, `response.output_item.done`; and at
//! the end, once the response is stored, `response.completed` (or `response.incomplete` when cut by
//! `max_output_tokens`). Every event carries its `sequence_number`.

use std::sync::Mutex;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use yunmo_service::{Call, InferenceService, ServiceError};
use yunmo_text::tool_calls::ToolCall;
use yunmo_types::{FinishReason, TextChunk, Usage};

use super::ResponsesRequest;
use super::convert::item_id;
use crate::openai::chat::{ChatReader, Step, Whole};
use crate::openai::run::{Collected, Frame, StreamFormat};
use crate::request_id::RequestId;

/// Where a response is stored when the request asked (`store`, on by default).
pub(crate) struct Storing {
    pub service: InferenceService,
    pub call: Call,
    /// The conversation answered, as stored input items (JSON).
    pub input: String,
}

/// The response object's own fields and those it echoes from the request.
pub(crate) struct Envelope {
    id: String,
    model: String,
    fields: Map<String, Value>,
}

impl Envelope {
    pub(crate) fn new(request: &ResponsesRequest) -> Envelope {
        let id = item_id("resp");
        let created_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let echo = json!({
            "id": id, "object": "response", "created_at": created_at, "model": request.model, "error": null,
            "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
            "previous_response_id": request.previous_response_id,
            "tools": request.tools.clone().unwrap_or_default(),
            "tool_choice": request.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            "parallel_tool_calls": request.parallel_tool_calls.unwrap_or(true),
            "temperature": request.temperature.unwrap_or(1.0), "top_p": request.top_p.unwrap_or(1.0),
            "text": request.text.clone().unwrap_or_else(|| json!({ "format": { "type": "text" } })),
            "reasoning": request.reasoning.clone().unwrap_or_else(|| json!({ "effort": null, "summary": null })),
            "store": request.store.unwrap_or(true), "metadata": request.metadata.clone().unwrap_or_default(),
            "user": request.user, "truncation": "disabled", "background": false, "service_tier": "default",
        });
        let Value::Object(fields) = echo else { unreachable!("a JSON object") };
        Envelope { id, model: request.model.clone(), fields }
    }

    /// The response object with this status, output and usage.
    fn object(&self, status: &str, output: &[Value], usage: Option<Usage>) -> Value {
        let mut object = self.fields.clone();
        object.insert("status".into(), json!(status));
        let incomplete = (status == "incomplete").then(|| json!({ "reason": "max_output_tokens" }));
        object.insert("incomplete_details".into(), incomplete.unwrap_or(Value::Null));
        object.insert("output".into(), json!(output));
        object.insert("usage".into(), usage.map_or(Value::Null, usage_json));
        Value::Object(object)
    }
}

/// Responses' usage. Thinking tokens are counted in `output_tokens`, not apart (`reasoning_tokens` is 0).
fn usage_json(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": { "cached_tokens": usage.cached_tokens, "cache_write_tokens": 0 },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// Whether the answer was cut by `max_output_tokens` (a response that called tools is complete).
fn status_of(reason: FinishReason, called: bool) -> &'static str {
    if reason == FinishReason::Length && !called { "incomplete" } else { "completed" }
}

fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({ "type": "message", "id": id, "status": status, "role": "assistant", "content": [output_text(text)] })
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({ "type": "reasoning", "id": id, "summary": [], "content": [{ "type": "reasoning_text", "text": text }], "status": "completed" })
}

fn call_item(id: &str, call: &ToolCall, arguments: &str, status: &str) -> Value {
    json!({ "type": "function_call", "id": id, "call_id": item_id("call"), "name": call.name, "arguments": arguments, "status": status })
}

/// The output items of a whole answer.
fn output_items(whole: Whole, status: &str) -> Vec<Value> {
    let mut items = Vec::new();
    if !whole.reasoning.is_empty() {
        items.push(reasoning_item(&item_id("rs"), &whole.reasoning));
    }
    if !whole.content.is_empty() || whole.calls.is_empty() {
        items.push(message_item(&item_id("msg"), &whole.content, status));
    }
    items.extend(whole.calls.iter().map(|call| call_item(&item_id("fc"), call, &call.arguments, "completed")));
    items
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reasoning,
    Message,
}

/// The item a stream is writing into.
struct Open {
    kind: Kind,
    id: String,
    index: usize,
    text: String,
}

#[derive(Default)]
struct StreamState {
    /// The next event's sequence number.
    seq: u64,
    /// Output items so far (an open one as it was added).
    items: Vec<Value>,
    open: Option<Open>,
    called: bool,
    end: Option<(FinishReason, Usage)>,
    /// The failure's `{"code", "message"}`, when the generation failed.
    failure: Option<Value>,
}

impl StreamState {
    fn event(&mut self, frames: &mut Vec<Frame>, name: &'static str, body: Value) {
        let mut body = body;
        body["type"] = json!(name);
        body["sequence_number"] = json!(self.seq);
        self.seq += 1;
        frames.push(Frame::Event(name, body));
    }

    fn open(&mut self, frames: &mut Vec<Frame>, kind: Kind) {
        let index = self.items.len();
        let (id, item, part) = match kind {
            Kind::Reasoning => {
                let id = item_id("rs");
                let item = json!({ "type": "reasoning", "id": id, "summary": [], "content": [], "status": "in_progress" });
                (id, item, json!({ "type": "reasoning_text", "text": "" }))
            }
            Kind::Message => {
                let id = item_id("msg");
                let item = json!({ "type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": [] });
                (id, item, output_text(""))
            }
        };
        self.items.push(item.clone());
        self.event(frames, "response.output_item.added", json!({ "output_index": index, "item": item }));
        self.event(
            frames,
            "response.content_part.added",
            json!({ "item_id": id, "output_index": index, "content_index": 0, "part": part }),
        );
        self.open = Some(Open { kind, id, index, text: String::new() });
    }

    fn delta(&mut self, frames: &mut Vec<Frame>, kind: Kind, text: String) {
        if self.open.as_ref().map(|open| open.kind) != Some(kind) {
            self.close(frames, "completed");
            self.open(frames, kind);
        }
        let Some(open) = self.open.as_mut() else { return };
        open.text.push_str(&text);
        let (id, index) = (open.id.clone(), open.index);
        match kind {
            Kind::Reasoning => self.event(
                frames,
                "response.reasoning_text.delta",
                json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": text }),
            ),
            Kind::Message => self.event(
                frames,
                "response.output_text.delta",
                json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": [] }),
            ),
        }
    }

    /// Ends the open item, if any (a message with `status`).
    fn close(&mut self, frames: &mut Vec<Frame>, status: &str) {
        let Some(Open { kind, id, index, text }) = self.open.take() else { return };
        let at = json!({ "item_id": id, "output_index": index, "content_index": 0 });
        let (done, part, item) = match kind {
            Kind::Reasoning => {
                ("response.reasoning_text.done", json!({ "type": "reasoning_text", "text": text }), reasoning_item(&id, &text))
            }
            Kind::Message => ("response.output_text.done", output_text(&text), message_item(&id, &text, status)),
        };
        let mut body = at.clone();
        body["text"] = json!(text);
        if kind == Kind::Message {
            body["logprobs"] = json!([]);
        }
        self.event(frames, done, body);
        let mut body = at;
        body["part"] = part;
        self.event(frames, "response.content_part.done", body);
        self.items[index] = item.clone();
        self.event(frames, "response.output_item.done", json!({ "output_index": index, "item": item }));
    }

    fn call(&mut self, frames: &mut Vec<Frame>, call: &ToolCall) {
        self.close(frames, "completed");
        let index = self.items.len();
        let id = item_id("fc");
        let mut item = call_item(&id, call, "", "in_progress");
        self.items.push(item.clone());
        self.event(frames, "response.output_item.added", json!({ "output_index": index, "item": item }));
        let at = json!({ "item_id": id, "output_index": index });
        let mut body = at.clone();
        body["delta"] = json!(call.arguments);
        self.event(frames, "response.function_call_arguments.delta", body);
        let mut body = at;
        body["arguments"] = json!(call.arguments);
        body["name"] = json!(call.name);
        self.event(frames, "response.function_call_arguments.done", body);
        item["arguments"] = json!(call.arguments);
        item["status"] = json!("completed");
        self.items[index] = item.clone();
        self.event(frames, "response.output_item.done", json!({ "output_index": index, "item": item }));
        self.called = true;
    }
}

pub(crate) struct ResponseFormat {
    envelope: Envelope,
    reader: ChatReader,
    store: Mutex<Option<Storing>>,
    state: Mutex<StreamState>,
    /// The request's id, named in a failure to store (the stream ends outside the request's scope).
    request_id: Option<RequestId>,
}

/// Stores `body` where `store` says; whether it was stored (not when the server keeps no responses).
async fn store(store: Option<Storing>, id: &str, model: &str, body: &Value) -> Result<bool, ServiceError> {
    match store {
        Some(storing) => {
            let record = super::new_response(id, model, body, storing.input);
            storing.service.store_response(&storing.call, record).await
        }
        None => Ok(false),
    }
}

impl ResponseFormat {
    pub(crate) fn new(envelope: Envelope, reader: ChatReader, store: Option<Storing>) -> ResponseFormat {
        ResponseFormat { envelope, reader, store: Mutex::new(store), state: Mutex::default(), request_id: crate::request_id::current() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The whole response of a collected answer, stored when asked.
    pub(crate) async fn finished(self, collected: &[Collected], usage: Usage) -> Result<Value, ServiceError> {
        let Some(answer) = collected.first() else { return Err(ServiceError::internal("no answer was collected")) };
        let whole = self.reader.whole(&answer.text);
        let status = status_of(answer.finish_reason, !whole.calls.is_empty());
        let mut body = self.envelope.object(status, &output_items(whole, status), Some(usage));
        let storing = self.store.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        body["store"] = json!(store(storing, &self.envelope.id, &self.envelope.model, &body).await?);
        Ok(body)
    }

    fn step_frames(&self, step: Step) -> Vec<Frame> {
        let mut state = self.state();
        let mut frames = Vec::new();
        for (kind, text) in [(Kind::Reasoning, step.reasoning), (Kind::Message, step.content)] {
            if !text.is_empty() {
                state.delta(&mut frames, kind, text);
            }
        }
        for call in &step.calls {
            state.call(&mut frames, call);
        }
        frames
    }
}

impl StreamFormat for ResponseFormat {
    fn done_marker(&self) -> bool {
        false
    }

    fn opening(&self) -> Vec<Frame> {
        let mut state = self.state();
        let mut frames = Vec::new();
        let response = self.envelope.object("in_progress", &[], None);
        state.event(&mut frames, "response.created", json!({ "response": response }));
        state.event(&mut frames, "response.in_progress", json!({ "response": response }));
        frames
    }

    fn chunk_frames(&self, index: u32, chunk: &TextChunk, _first: bool) -> Vec<Frame> {
        self.step_frames(self.reader.step(index, &chunk.text, false))
    }

    fn finish_frames(&self, index: u32, reason: FinishReason, usage: Usage) -> Vec<Frame> {
        let mut frames = self.step_frames(self.reader.step(index, "", true));
        let mut state = self.state();
        let status = status_of(reason, state.called);
        state.close(&mut frames, status);
        if !state.called && !state.items.iter().any(|item| item["type"] == "message") {
            // An answer with no text and no call still has one (empty) message, as the whole response has.
            state.open(&mut frames, Kind::Message);
            state.close(&mut frames, status);
        }
        state.end = Some((reason, usage));
        frames
    }

    fn error_frame(&self, error: &ServiceError, request_id: Option<&RequestId>) -> Frame {
        let message = crate::error::client_message_for(error.code, &error.message, request_id);
        let mut frames = Vec::new();
        let mut state = self.state();
        state.event(&mut frames, "error", json!({ "code": error.code.as_str(), "message": message, "param": null }));
        state.failure = Some(json!({ "code": error.code.as_str(), "message": message }));
        frames.pop().unwrap_or(Frame::Done)
    }

    fn closing(&self, failed: bool) -> Option<BoxFuture<'static, Vec<Frame>>> {
        if failed {
            // As OpenAI ends a failed stream: `response.failed`, with the error, after the `error` event. A failed
            // response is not stored.
            let mut state = self.state();
            let mut body = self.envelope.object("failed", &state.items, None);
            body["error"] = state.failure.clone().unwrap_or(Value::Null);
            let mut frames = Vec::new();
            state.event(&mut frames, "response.failed", json!({ "response": body }));
            return Some(Box::pin(futures::future::ready(frames)));
        }
        let state = self.state();
        let (reason, usage) = state.end?;
        let status = status_of(reason, state.called);
        let mut body = self.envelope.object(status, &state.items, Some(usage));
        let seq = state.seq;
        let storing = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let (id, model) = (self.envelope.id.clone(), self.envelope.model.clone());
        let request_id = self.request_id.clone();
        Some(Box::pin(async move {
            let name = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
            let (name, mut event) = match store(storing, &id, &model, &body).await {
                Ok(stored) => {
                    body["store"] = json!(stored);
                    (name, json!({ "response": body }))
                }
                Err(error) => {
                    let message = crate::error::client_message_for(error.code, &error.message, request_id.as_ref());
                    (
                        "error",
                        json!({ "code": error.code.as_str(), "message": format!("the response was not stored: {message}"), "param": null }),
                    )
                }
            };
            event["type"] = json!(name);
            event["sequence_number"] = json!(seq);
            vec![Frame::Event(name, event)]
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(frames: &[Frame]) -> Vec<(&'static str, u64)> {
        frames
            .iter()
            .map(|frame| match frame {
                Frame::Event(name, body) => (*name, body["sequence_number"].as_u64().unwrap_or(u64::MAX)),
                _ => ("?", u64::MAX),
            })
            .collect()
    }

    fn format() -> ResponseFormat {
        let request: ResponsesRequest = serde_json::from_value(json!({ "model": "m", "input": "hi" })).unwrap();
        ResponseFormat::new(Envelope::new(&request), ChatReader::plain(), None)
    }

    #[test]
    fn a_failed_stream_ends_with_response_failed_carrying_the_error() {
        let format = format();
        let mut frames = format.opening();
        frames.extend(format.chunk_frames(0, &TextChunk { text: "Par".into(), logprobs: Vec::new() }, true));
        frames.push(format.error_frame(&ServiceError::internal("the engine stopped"), None));
        frames.extend(futures::executor::block_on(format.closing(true).expect("a failed stream still ends")));
        let names = names(&frames);
        let expected: Vec<&str> = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "error",
            "response.failed",
        ];
        assert_eq!(names.iter().map(|(name, _)| *name).collect::<Vec<_>>(), expected);
        assert_eq!(names.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(), (0..7).collect::<Vec<u64>>());
        let Frame::Event(_, failed) = frames.last().unwrap() else { panic!("an event") };
        assert_eq!(failed["response"]["status"], "failed");
        assert_eq!(failed["response"]["error"]["code"], "internal");
        assert!(failed["response"]["usage"].is_null());
    }

    #[test]
    fn an_empty_answer_is_one_empty_message_as_in_the_whole_response() {
        let format = format();
        let mut frames = format.opening();
        frames.extend(format.finish_frames(0, FinishReason::Stop, Usage::default()));
        let done: Vec<&str> = names(&frames).into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            done[2..],
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done"
            ]
        );
        let closing = futures::executor::block_on(format.closing(false).expect("a finished stream ends"));
        let Frame::Event(name, completed) = &closing[0] else { panic!("an event") };
        assert_eq!(*name, "response.completed");
        assert_eq!(completed["response"]["output"][0]["content"][0]["text"], "");
        assert_eq!(completed["response"]["store"], false, "nothing to store it in");
    }
}
