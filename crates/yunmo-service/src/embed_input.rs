//! What an embedding request carries, and the checks every encoder applies to its tokenised inputs.

use yunmo_types::EmbeddingConfig;

use crate::ServiceError;

/// Inputs to embed.
#[derive(Debug, Clone)]
pub enum EmbedInput {
    /// Texts, tokenised here.
    Texts(Vec<String>),
    /// Token ids, wrapped in the tokenizer's special tokens.
    Tokens(Vec<Vec<i64>>),
    /// (query, document) pairs for a reranker (`task = "rerank"`), each tokenised as one input; each
    /// answer is a one-element vector, the pair's logit.
    Pairs(Vec<(String, String)>),
}

impl EmbedInput {
    /// How many inputs (texts, token lists or pairs).
    pub fn len(&self) -> usize {
        match self {
            EmbedInput::Texts(texts) => texts.len(),
            EmbedInput::Tokens(lists) => lists.len(),
            EmbedInput::Pairs(pairs) => pairs.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fails when a token id of `lists` is outside the model's vocabulary of `vocab` ids (one past it would
/// fail inside the runtime's lookup).
pub(crate) fn check_vocabulary<T: Copy + Into<i64>>(lists: &[Vec<T>], vocab: i64, model: &str) -> Result<(), ServiceError> {
    for (index, ids) in lists.iter().enumerate() {
        if let Some(bad) = ids.iter().map(|id| (*id).into()).find(|id| !(0..vocab).contains(id)) {
            return Err(ServiceError::invalid(format!(
                "input[{index}]: token id {bad} is out of the vocabulary of model '{model}' (0..{vocab}); token ids must come from this model's own tokenizer"
            )));
        }
    }
    Ok(())
}

/// Where input `index` of `length` tokens must be cut (`None`: it fits), or the 400 when it is too long
/// and `embedding.truncate` is off.
pub(crate) fn cut_at(index: usize, length: usize, config: &EmbeddingConfig, model: &str) -> Result<Option<usize>, ServiceError> {
    let limit = config.max_tokens as usize;
    if length <= limit {
        return Ok(None);
    }
    if !config.truncate {
        return Err(ServiceError::invalid(format!(
            "input[{index}] has {length} tokens; model '{model}' takes at most {limit} (embedding.max_tokens)"
        )));
    }
    Ok(Some(limit))
}

/// Cuts `ids` to `limit`, keeping the closing special token.
pub(crate) fn cut<T: Copy>(ids: &mut Vec<T>, limit: usize) {
    if let Some(&last) = ids.last() {
        ids.truncate(limit);
        ids[limit - 1] = last;
    }
}
