//! Embedding encoders: tokenisation with a Hugging Face `tokenizer.json`, padding of a batch, and pooling
//! of the per-token states into one L2-normalised vector per input.

use yunmo_types::Pooling;

/// Why text could not be tokenised.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The uploaded `tokenizer.json` is not a valid tokenizer.
    #[error("invalid tokenizer.json: {0}")]
    InvalidTokenizer(String),
    /// Tokenisation failed.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
}

/// A tokenizer for one encoder.
pub struct EmbedTokenizer {
    tokenizer: tokenizers::Tokenizer,
}

/// One tokenised input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<i64>,
    /// Token type ids (segment ids).
    pub type_ids: Vec<i64>,
}

/// One tokenised input with where its tokens came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The tokens.
    pub encoded: Encoded,
    /// Each token's character offsets `(start, end)` in the text (`(0, 0)` for special tokens).
    pub offsets: Vec<(usize, usize)>,
    /// The index of the word each token is part of (`None` for special tokens).
    pub word_ids: Vec<Option<u32>>,
}

impl EmbedTokenizer {
    /// Reads a `tokenizer.json`. Padding and truncation stored in it are turned off: batches are padded here
    /// and over-long inputs are the service's decision.
    pub fn from_json(json: &[u8]) -> Result<Self, EmbedError> {
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(json).map_err(|error| EmbedError::InvalidTokenizer(error.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|error| EmbedError::InvalidTokenizer(error.to_string()))?;
        Ok(EmbedTokenizer { tokenizer })
    }

    /// Tokenises one text with the model's special tokens.
    pub fn encode(&self, text: &str) -> Result<Encoded, EmbedError> {
        let encoding = self.tokenizer.encode(text, true).map_err(|error| EmbedError::Tokenize(error.to_string()))?;
        Ok(Encoded {
            ids: encoding.get_ids().iter().map(|id| i64::from(*id)).collect(),
            type_ids: encoding.get_type_ids().iter().map(|id| i64::from(*id)).collect(),
        })
    }

    /// Tokenises a pair (a query and a document, for a cross-encoder) as one input, the second text as the
    /// second segment, with the model's special tokens.
    pub fn encode_pair(&self, first: &str, second: &str) -> Result<Encoded, EmbedError> {
        let encoding = self.tokenizer.encode((first, second), true).map_err(|error| EmbedError::Tokenize(error.to_string()))?;
        Ok(Encoded {
            ids: encoding.get_ids().iter().map(|id| i64::from(*id)).collect(),
            type_ids: encoding.get_type_ids().iter().map(|id| i64::from(*id)).collect(),
        })
    }

    /// Tokenises one text and tells where each token came from, as Hugging Face's Python tokenizers
    /// report it.
    pub fn encode_with_spans(&self, text: &str) -> Result<Spanned, EmbedError> {
        let encoding = self.tokenizer.encode_char_offsets(text, true).map_err(|error| EmbedError::Tokenize(error.to_string()))?;
        let encoded = Encoded {
            ids: encoding.get_ids().iter().map(|id| i64::from(*id)).collect(),
            type_ids: encoding.get_type_ids().iter().map(|id| i64::from(*id)).collect(),
        };
        Ok(Spanned { encoded, offsets: encoding.get_offsets().to_vec(), word_ids: encoding.get_word_ids().to_vec() })
    }

    /// Ids of the special tokens the tokenizer adds around a text (e.g. `[CLS]` and `[SEP]`), for
    /// wrapping token-id inputs the same way.
    pub fn wrap_ids(&self, ids: &[i64]) -> Result<Encoded, EmbedError> {
        let empty = self.tokenizer.encode("", true).map_err(|error| EmbedError::Tokenize(error.to_string()))?;
        let specials = empty.get_ids();
        // The first special token goes before the ids ([CLS]), the rest after them ([SEP]).
        let (head, tail) = specials.split_at(specials.len().min(1));
        let mut wrapped: Vec<i64> = head.iter().map(|id| i64::from(*id)).collect();
        wrapped.extend_from_slice(ids);
        wrapped.extend(tail.iter().map(|id| i64::from(*id)));
        Ok(Encoded { type_ids: vec![0; wrapped.len()], ids: wrapped })
    }

    /// Tokens in the vocabulary (added tokens included): valid ids are `0..vocab_size`.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Id used to pad a batch.
    pub fn pad_id(&self) -> i64 {
        self.tokenizer.get_padding().map_or(0, |padding| i64::from(padding.pad_id))
    }
}

/// A padded batch: row-major `[rows, length]` ids, mask and type ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Inputs in the batch.
    pub rows: usize,
    /// Longest input's length.
    pub length: usize,
    /// Token ids, padded with the pad id.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids, padded with 0.
    pub token_type_ids: Vec<i64>,
}

/// Pads `inputs` to the longest one.
pub fn pad(inputs: &[&Encoded], pad_id: i64) -> PaddedBatch {
    let length = inputs.iter().map(|input| input.ids.len()).max().unwrap_or(0);
    let rows = inputs.len();
    let mut batch = PaddedBatch {
        rows,
        length,
        input_ids: vec![pad_id; rows * length],
        attention_mask: vec![0; rows * length],
        token_type_ids: vec![0; rows * length],
    };
    for (row, input) in inputs.iter().enumerate() {
        let start = row * length;
        batch.input_ids[start..start + input.ids.len()].copy_from_slice(&input.ids);
        batch.token_type_ids[start..start + input.type_ids.len()].copy_from_slice(&input.type_ids);
        batch.attention_mask[start..start + input.ids.len()].fill(1);
    }
    batch
}

/// Pools an encoder output into one vector per row. `states` is `[rows, length, hidden]` for `Mean` and
/// `Cls`, `[rows, hidden]` for `None`; `mask` is the batch's attention mask.
pub fn pool(states: &[f32], rows: usize, length: usize, mask: &[i64], pooling: Pooling, normalize: bool) -> Vec<Vec<f32>> {
    let mut vectors: Vec<Vec<f32>> = match pooling {
        Pooling::None => {
            let hidden = states.len() / rows.max(1);
            states.chunks(hidden.max(1)).map(<[f32]>::to_vec).collect()
        }
        Pooling::Cls | Pooling::Mean => {
            let hidden = states.len() / (rows * length).max(1);
            (0..rows)
                .map(|row| {
                    let token = |position: usize| {
                        let start = (row * length + position) * hidden;
                        &states[start..start + hidden]
                    };
                    if pooling == Pooling::Cls {
                        return token(0).to_vec();
                    }
                    let mut sum = vec![0f32; hidden];
                    let mut count = 0f32;
                    for position in 0..length {
                        if mask[row * length + position] != 0 {
                            for (total, value) in sum.iter_mut().zip(token(position)) {
                                *total += value;
                            }
                            count += 1.0;
                        }
                    }
                    let count = count.max(1e-9);
                    sum.iter_mut().for_each(|value| *value /= count);
                    sum
                })
                .collect()
        }
    };
    if normalize {
        l2_normalize(&mut vectors);
    }
    vectors
}

/// Scales each vector to unit length (a zero vector stays zero).
pub fn l2_normalize(vectors: &mut [Vec<f32>]) {
    for vector in vectors {
        let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt().max(1e-12);
        vector.iter_mut().for_each(|value| *value /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_and_masked_mean() {
        let short = Encoded { ids: vec![101, 7, 102], type_ids: vec![0; 3] };
        let long = Encoded { ids: vec![101, 7, 8, 9, 102], type_ids: vec![0; 5] };
        let batch = pad(&[&short, &long], 0);
        assert_eq!((batch.rows, batch.length), (2, 5));
        assert_eq!(batch.input_ids, vec![101, 7, 102, 0, 0, 101, 7, 8, 9, 102]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
        // hidden 2; padding positions hold 100 and must not count.
        let mut states = vec![0f32; 2 * 5 * 2];
        for position in 0..5 {
            states[position * 2] = if position < 3 { position as f32 } else { 100.0 };
            states[position * 2 + 1] = 1.0;
        }
        let pooled = pool(&states, 2, 5, &batch.attention_mask, Pooling::Mean, false);
        assert_eq!(pooled[0], vec![1.0, 1.0]);
        let normalised = pool(&states, 2, 5, &batch.attention_mask, Pooling::Mean, true);
        let norm: f32 = normalised[0].iter().map(|v| v * v).sum::<f32>();
        assert!((norm - 1.0).abs() < 1e-6);
        let cls = pool(&states, 2, 5, &batch.attention_mask, Pooling::Cls, false);
        assert_eq!(cls[0], vec![0.0, 1.0]);
    }
}
