//! Anthropic's answers: the whole message (`content` blocks: `thinking`, `text`, `tool_use`), and the stream
//! of named events: `message_start`, then per block `content_block_start`, `content_block_delta`
//! (`thinking_delta`, `text_delta`, `input_json_delta`), `content_block_stop`, then `message_delta` (stop
//! reason, output tokens) and `message_stop`; a failure is an `error` event.

use std::sync::Mutex;

use serde_json::{Value, json};
use yunmo_service::ServiceError;
use yunmo_text::tool_calls::ToolCall;
use yunmo_types::{FinishReason, TextChunk, Usage};

use crate::openai::chat::{ChatReader, Step, Whole};
use crate::openai::run::{Collected, Frame, StreamFormat, random_seed};

/// The kinds of block a stream opens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
}

#[derive(Default)]
struct Blocks {
    /// The block open now.
    open: Option<Block>,
    /// Blocks started so far (the next one's index).
    count: usize,
    /// Whether any tool_use block was sent.
    called: bool,
}

pub(crate) struct MessageFormat {
    id: String,
    model: String,
    stops: Vec<String>,
    input_tokens: u64,
    reader: ChatReader,
    blocks: Mutex<Blocks>,
}

/// Anthropic's usage: `input_tokens` excludes the tokens read from the (prefix) cache, which
/// `cache_read_input_tokens` counts.
fn usage_json(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens.saturating_sub(usage.cached_tokens),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    })
}

fn tool_use_id() -> String {
    format!("toolu_{:016x}{:08x}", random_seed(), random_seed() as u32)
}

fn tool_use(call: &ToolCall) -> Value {
    let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
    json!({ "type": "tool_use", "id": tool_use_id(), "name": call.name, "input": input })
}

impl MessageFormat {
    pub(crate) fn new(model: String, stops: Vec<String>, input_tokens: u64, reader: ChatReader) -> MessageFormat {
        MessageFormat {
            id: format!("msg_{:016x}", random_seed()),
            model,
            stops,
            input_tokens,
            reader,
            blocks: Mutex::new(Blocks::default()),
        }
    }

    /// `stop_reason` and `stop_sequence`.
    fn stop(&self, reason: FinishReason, called: bool) -> (&'static str, Value) {
        match reason {
            _ if called => ("tool_use", Value::Null),
            FinishReason::Length => ("max_tokens", Value::Null),
            FinishReason::StopString(index) => ("stop_sequence", self.stops.get(index as usize).map_or(Value::Null, |stop| json!(stop))),
            FinishReason::Stop => ("end_turn", Value::Null),
        }
    }

    /// The whole message.
    pub(crate) fn whole(&self, collected: &[Collected], usage: Usage) -> Value {
        let Some(answer) = collected.first() else { return json!({}) };
        let Whole { reasoning, content, calls } = self.reader.whole(&answer.text);
        let mut blocks = Vec::new();
        if !reasoning.is_empty() {
            blocks.push(json!({ "type": "thinking", "thinking": reasoning, "signature": "" }));
        }
        if !content.is_empty() || calls.is_empty() {
            blocks.push(json!({ "type": "text", "text": content }));
        }
        blocks.extend(calls.iter().map(tool_use));
        let (stop_reason, stop_sequence) = self.stop(answer.finish_reason, !calls.is_empty());
        json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": blocks,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": usage_json(usage),
        })
    }

    /// The events of one step of the answer: deltas into the open block, opening and closing blocks as the
    /// kind changes; each call is a whole tool_use block.
    fn events(&self, step: Step) -> Vec<Frame> {
        let mut blocks = self.blocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut frames = Vec::new();
        for (kind, text) in [(Block::Thinking, step.reasoning), (Block::Text, step.content)] {
            if text.is_empty() {
                continue;
            }
            if blocks.open != Some(kind) {
                close(&mut blocks, &mut frames);
                let block = match kind {
                    Block::Thinking => json!({ "type": "thinking", "thinking": "", "signature": "" }),
                    Block::Text => json!({ "type": "text", "text": "" }),
                };
                frames.push(Frame::Event(
                    "content_block_start",
                    json!({ "type": "content_block_start", "index": blocks.count, "content_block": block }),
                ));
                blocks.open = Some(kind);
                blocks.count += 1;
            }
            let delta = match kind {
                Block::Thinking => json!({ "type": "thinking_delta", "thinking": text }),
                Block::Text => json!({ "type": "text_delta", "text": text }),
            };
            frames.push(Frame::Event(
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": blocks.count - 1, "delta": delta }),
            ));
        }
        for call in &step.calls {
            close(&mut blocks, &mut frames);
            let mut block = tool_use(call);
            let input = std::mem::replace(&mut block["input"], json!({}));
            let index = blocks.count;
            frames.push(Frame::Event(
                "content_block_start",
                json!({ "type": "content_block_start", "index": index, "content_block": block }),
            ));
            let delta = json!({ "type": "input_json_delta", "partial_json": input.to_string() });
            frames.push(Frame::Event("content_block_delta", json!({ "type": "content_block_delta", "index": index, "delta": delta })));
            frames.push(Frame::Event("content_block_stop", json!({ "type": "content_block_stop", "index": index })));
            blocks.count += 1;
            blocks.called = true;
        }
        frames
    }
}

/// Closes the open block, if any.
fn close(blocks: &mut Blocks, frames: &mut Vec<Frame>) {
    if blocks.open.take().is_some() {
        frames.push(Frame::Event("content_block_stop", json!({ "type": "content_block_stop", "index": blocks.count - 1 })));
    }
}

impl StreamFormat for MessageFormat {
    fn done_marker(&self) -> bool {
        false
    }

    fn opening(&self) -> Vec<Frame> {
        let message = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": { "input_tokens": self.input_tokens, "output_tokens": 0 },
        });
        vec![
            Frame::Event("message_start", json!({ "type": "message_start", "message": message })),
            Frame::Event("ping", json!({ "type": "ping" })),
        ]
    }

    fn chunk_frames(&self, index: u32, chunk: &TextChunk, _first: bool) -> Vec<Frame> {
        self.events(self.reader.step(index, &chunk.text, false))
    }

    fn finish_frames(&self, index: u32, reason: FinishReason, usage: Usage) -> Vec<Frame> {
        let mut frames = self.events(self.reader.step(index, "", true));
        let mut blocks = self.blocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if blocks.count == 0 {
            // An empty answer is still one (empty) text block, as the whole message has.
            frames.push(Frame::Event(
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
            ));
            blocks.open = Some(Block::Text);
            blocks.count = 1;
        }
        close(&mut blocks, &mut frames);
        let (stop_reason, stop_sequence) = self.stop(reason, blocks.called);
        frames.push(Frame::Event(
            "message_delta",
            // The final counts, with the cache reads known only now.
            json!({ "type": "message_delta", "delta": { "stop_reason": stop_reason, "stop_sequence": stop_sequence }, "usage": usage_json(usage) }),
        ));
        frames.push(Frame::Event("message_stop", json!({ "type": "message_stop" })));
        frames
    }

    fn error_frame(&self, error: &ServiceError, request_id: Option<&crate::request_id::RequestId>) -> Frame {
        let message = crate::error::client_message_for(error.code, &error.message, request_id);
        Frame::Event("error", crate::error::anthropic_body(error.code, &message))
    }
}
