//! Text around models, with no IO: chat templates rendered with minijinja ([`chat`]), and embedding
//! tokenisation, padding and pooling with Hugging Face `tokenizers` ([`embed`]). Pure Rust at run time.
#![warn(missing_docs)]

pub mod chat;
pub mod embed;
