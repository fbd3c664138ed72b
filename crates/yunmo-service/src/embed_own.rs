//! Embeddings and pair scores from encoders that tokenise and batch by themselves (GGUF files, whose
//! vocabulary is inside the model): tokenised with the model's own tokenizer off the async runtime, checked
//! against `embedding.max_tokens`, then queued to the backend, which packs concurrent inputs into one pass.

use std::sync::Arc;

use yunmo_backend::{EncodeBackend, EncodeOptions};
use yunmo_types::{EmbeddingConfig, EncoderTask};

use crate::ServiceError;
use crate::embed_input::{EmbedInput, check_vocabulary, cut, cut_at};

/// How the backend loads a version with `config`.
pub(crate) fn options(config: &EmbeddingConfig) -> EncodeOptions {
    EncodeOptions { task: config.task, pooling: config.pooling, max_tokens: config.max_tokens }
}

/// Tokenises and checks every input, then encodes them all.
pub(crate) async fn embed(
    backend: &Arc<dyn EncodeBackend>,
    config: &EmbeddingConfig,
    model: &str,
    input: EmbedInput,
) -> Result<(Vec<Vec<f32>>, u64), ServiceError> {
    let tokenizing = backend.clone();
    let limits = config.clone();
    let name = model.to_string();
    let inputs = tokio::task::spawn_blocking(move || tokenize(tokenizing.as_ref(), &limits, &name, input))
        .await
        .map_err(|error| ServiceError::internal(format!("tokenization panicked: {error}")))??;
    let prompt_tokens: u64 = inputs.iter().map(|ids| ids.len() as u64).sum();
    let answer = backend.encode(inputs)?;
    let mut vectors =
        answer.recv_async().await.map_err(|_| ServiceError::internal(format!("the encoder of model '{model}' stopped")))??;
    if config.normalize && config.task == EncoderTask::Embed {
        yunmo_text::embed::l2_normalize(&mut vectors);
    }
    Ok((vectors, prompt_tokens))
}

fn tokenize(backend: &dyn EncodeBackend, config: &EmbeddingConfig, model: &str, input: EmbedInput) -> Result<Vec<Vec<u32>>, ServiceError> {
    let mut inputs = match input {
        EmbedInput::Texts(texts) => texts.iter().map(|text| backend.tokenize(text)).collect::<Result<Vec<_>, _>>()?,
        EmbedInput::Pairs(pairs) => {
            pairs.iter().map(|(query, document)| backend.tokenize_pair(query, document)).collect::<Result<Vec<_>, _>>()?
        }
        EmbedInput::Tokens(lists) => {
            check_vocabulary(&lists, i64::from(backend.info().vocab_size), model)?;
            lists.iter().map(|ids| backend.wrap(&ids.iter().map(|id| *id as u32).collect::<Vec<_>>())).collect()
        }
    };
    for (index, ids) in inputs.iter_mut().enumerate() {
        if ids.is_empty() {
            // Nothing to pool: llama.cpp would fail the whole forward pass it shares with other requests.
            return Err(ServiceError::invalid(format!("input[{index}] is empty (0 tokens with the special tokens of model '{model}')")));
        }
        if let Some(limit) = cut_at(index, ids.len(), config, model)? {
            cut(ids, limit);
        }
    }
    Ok(inputs)
}
