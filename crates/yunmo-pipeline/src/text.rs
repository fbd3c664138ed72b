//! Text steps: tokenisation with the pipeline version's `tokenizer.json` (the same tokenizer and padding as
//! the embeddings route) and pooling of an encoder's token states into one vector per text.

use serde::Deserialize;
use yunmo_text::embed::{EmbedTokenizer, Encoded, Spanned};
use yunmo_types::{DataType, Pooling, Tensor, TensorData};

use crate::StepError;

/// Largest `max_length` a tokenize step may set.
pub const MAX_TOKENS: usize = 8192;

/// `tokenize`: BYTES `text` (UTF-8, one per row) → INT64 `input_ids`, `attention_mask`, `token_type_ids`,
/// `word_ids` `[rows, longest]` (padded with the tokenizer's pad id) and `offsets` `[rows, longest, 2]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokenize {
    /// Most tokens per text, special tokens included (1 to 8192).
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Cut longer texts to `max_length` (keeping the closing special token) instead of refusing them.
    #[serde(default)]
    pub truncate: bool,
}

fn default_max_length() -> usize {
    512
}

/// `pool`: FP32 `hidden` `[rows, tokens, width]` and INT64 `attention_mask` `[rows, tokens]` → FP32
/// `embedding` `[rows, width]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// `mean` of the unmasked tokens, or the first token's state (`cls`).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Scale each vector to length 1.
    #[serde(default = "default_normalize")]
    pub normalize: bool,
}

fn default_mode() -> String {
    "mean".to_string()
}

fn default_normalize() -> bool {
    true
}

impl Tokenize {
    /// Checks the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=MAX_TOKENS).contains(&self.max_length) {
            return Err(format!("max_length: must be 2 to {MAX_TOKENS}, got {}", self.max_length));
        }
        Ok(())
    }

    /// Tokenises every text of `texts` (BYTES, one per row): `input_ids`, `attention_mask`,
    /// `token_type_ids` and `word_ids` (`[rows, longest]`; -1 for special tokens and padding) and `offsets`
    /// (`[rows, longest, 2]`: each token's character start and end in its text; 0, 0 where it has none).
    pub fn run(&self, texts: &Tensor, tokenizer: &EmbedTokenizer, owner: &str) -> Result<[Tensor; 5], StepError> {
        let TensorData::Bytes(items) = texts.data() else {
            return Err(StepError::Invalid(format!("{owner}: text must be BYTES, got {}", texts.datatype())));
        };
        let mut tokenized: Vec<Spanned> = Vec::with_capacity(items.len());
        for (row, item) in items.iter().enumerate() {
            let text = std::str::from_utf8(item).map_err(|_| StepError::Invalid(format!("{owner}: text[{row}] is not UTF-8")))?;
            let mut one =
                tokenizer.encode_with_spans(text).map_err(|error| StepError::Invalid(format!("{owner}: text[{row}]: {error}")))?;
            if one.encoded.ids.len() > self.max_length {
                if !self.truncate {
                    return Err(StepError::Invalid(format!(
                        "{owner}: text[{row}] is {} tokens, more than max_length {} (set truncate to cut it)",
                        one.encoded.ids.len(),
                        self.max_length
                    )));
                }
                truncate(&mut one.encoded, self.max_length);
                keep_ends(&mut one.offsets, self.max_length);
                keep_ends(&mut one.word_ids, self.max_length);
            }
            tokenized.push(one);
        }
        let refs: Vec<&Encoded> = tokenized.iter().map(|one| &one.encoded).collect();
        let batch = yunmo_text::embed::pad(&refs, tokenizer.pad_id());
        let (rows, length) = (batch.rows, batch.length);
        let mut offsets = vec![0i64; rows * length * 2];
        let mut word_ids = vec![-1i64; rows * length];
        for (row, one) in tokenized.iter().enumerate() {
            for (token, (&(start, end), word)) in one.offsets.iter().zip(&one.word_ids).enumerate() {
                let at = row * length + token;
                if let Some(word) = word {
                    offsets[2 * at] = start as i64;
                    offsets[2 * at + 1] = end as i64;
                    word_ids[at] = i64::from(*word);
                }
            }
        }
        let tensor = |name: &str, shape: Vec<i64>, values: Vec<i64>| {
            let bytes: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
            Tensor::new(name, DataType::Int64, shape, TensorData::Fixed(bytes.into()))
                .map_err(|error| StepError::Invalid(error.to_string()))
        };
        let shape = vec![rows as i64, length as i64];
        Ok([
            tensor("input_ids", shape.clone(), batch.input_ids)?,
            tensor("attention_mask", shape.clone(), batch.attention_mask)?,
            tensor("token_type_ids", shape.clone(), batch.token_type_ids)?,
            tensor("word_ids", shape, word_ids)?,
            tensor("offsets", vec![rows as i64, length as i64, 2], offsets)?,
        ])
    }
}

/// Keeps the first `length - 1` values and the last one, as [`truncate`] keeps tokens.
fn keep_ends<T: Copy>(values: &mut Vec<T>, length: usize) {
    if let Some(&last) = values.last() {
        values.truncate(length - 1);
        values.push(last);
    }
}

/// Keeps the first `length - 1` tokens and the last one (the closing special token, `[SEP]`).
fn truncate(encoded: &mut Encoded, length: usize) {
    keep_ends(&mut encoded.ids, length);
    keep_ends(&mut encoded.type_ids, length);
}

impl Pool {
    /// Checks the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.pooling().map(|_| ())
    }

    fn pooling(&self) -> Result<Pooling, String> {
        match self.mode.as_str() {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            other => Err(format!("mode: must be 'mean' or 'cls', got '{other}'")),
        }
    }

    /// Pools `hidden` `[rows, tokens, width]` over the tokens `mask` `[rows, tokens]` keeps.
    pub fn run(&self, hidden: &Tensor, mask: &Tensor, owner: &str) -> Result<Tensor, StepError> {
        let pooling = self.pooling().map_err(|error| StepError::Config(format!("{owner}.pool.{error}")))?;
        let (&[rows, tokens, width], &[mask_rows, mask_tokens]) = (hidden.shape(), mask.shape()) else {
            return Err(StepError::Invalid(format!(
                "{owner}: hidden must be [rows, tokens, width] and attention_mask [rows, tokens], got {:?} and {:?}",
                hidden.shape(),
                mask.shape()
            )));
        };
        if (rows, tokens) != (mask_rows, mask_tokens) || hidden.datatype() != DataType::Fp32 || mask.datatype() != DataType::Int64 {
            return Err(StepError::Invalid(format!(
                "{owner}: hidden {} {:?} and attention_mask {} {:?} do not match",
                hidden.datatype(),
                hidden.shape(),
                mask.datatype(),
                mask.shape()
            )));
        }
        let (states, mask) = (crate::post::fp32_values(hidden, owner)?, crate::post::int64_values(mask, owner)?);
        let vectors = yunmo_text::embed::pool(&states, rows as usize, tokens as usize, &mask, pooling, self.normalize);
        let bytes: Vec<u8> = vectors.iter().flatten().flat_map(|value| value.to_le_bytes()).collect();
        Tensor::new("embedding", DataType::Fp32, vec![rows, width], TensorData::Fixed(bytes.into()))
            .map_err(|error| StepError::Invalid(format!("{owner}: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_closing_token_and_refusal_names_the_bound() {
        let mut encoded = Encoded { ids: vec![101, 1, 2, 3, 102], type_ids: vec![0; 5] };
        truncate(&mut encoded, 3);
        assert_eq!(encoded.ids, vec![101, 1, 102]);
        assert_eq!(encoded.type_ids.len(), 3);
        assert!(Tokenize { max_length: 1, truncate: false }.validate().unwrap_err().starts_with("max_length"));
        assert!(Pool { mode: "max".into(), normalize: true }.validate().unwrap_err().starts_with("mode"));
    }

    #[test]
    fn mean_pooling_skips_masked_tokens() {
        let states: Vec<u8> = [1.0f32, 0.0, 3.0, 0.0, 100.0, 100.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let hidden = Tensor::new("h", DataType::Fp32, vec![1, 3, 2], TensorData::Fixed(states.into())).unwrap();
        let mask: Vec<u8> = [1i64, 1, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mask = Tensor::new("m", DataType::Int64, vec![1, 3], TensorData::Fixed(mask.into())).unwrap();
        let pooled = Pool { mode: "mean".into(), normalize: false }.run(&hidden, &mask, "step 'p'").unwrap();
        assert_eq!(crate::post::fp32_values(&pooled, "p").unwrap(), vec![2.0, 0.0]);
        assert_eq!(pooled.shape(), &[1, 2]);
    }
}
