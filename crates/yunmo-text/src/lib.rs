//! Text around models, with no IO: chat templates rendered with minijinja ([`chat`]), embedding
//! tokenisation, padding and pooling with Hugging Face `tokenizers` ([`embed`]), and tool calls read back
//! from a model's output per model family ([`tool_calls`]), tools offered to a model: checked, described
//! and enforced by a grammar ([`tools`]). Pure Rust at run time.
#![warn(missing_docs)]

pub mod chat;
pub mod embed;
pub mod tool_calls;
pub mod tools;
