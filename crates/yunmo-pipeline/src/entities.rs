//! `entities`: a token classifier's scores to entity spans in the original text, as Hugging Face's
//! token-classification pipeline answers them with `aggregation_strategy="first"`: each word takes the
//! class of its first token (its score: that class's probability), and adjacent words of one entity type
//! (`B-X` starts an entity, `I-X` or `X` continues one of type X, `O` is none) form one entity with the mean
//! of their scores and the character span from the first word's start to the last word's end.

use serde::{Deserialize, Serialize};
use yunmo_types::{DataType, Tensor, TensorData};

use crate::StepError;

/// The step's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entities {
    /// Class names by index, e.g. `["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]`.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// A model step whose version's labels name the classes.
    #[serde(default)]
    pub labels_from: Option<String>,
    /// Classes that are no entity (default `["O"]`).
    #[serde(default = "default_ignore")]
    pub ignore: Vec<String>,
}

fn default_ignore() -> Vec<String> {
    vec!["O".to_string()]
}

/// One entity found in a text.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entity {
    /// Its type (the class without its `B-`/`I-` prefix).
    pub entity_group: String,
    /// The mean score of its words.
    pub score: f32,
    /// The text it spans.
    pub word: String,
    /// Character offsets of its span in the text.
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
}

/// What a step needs of one row.
struct Row<'a> {
    logits: &'a [f32],
    offsets: &'a [i64],
    words: &'a [i64],
    text: &'a str,
}

impl Entities {
    /// The entities of every row, each row's as a JSON array in a BYTES element.
    pub fn run(&self, inputs: [&Tensor; 4], labels: &[String], owner: &str) -> Result<Tensor, StepError> {
        let [logits, offsets, words, texts] = inputs;
        let invalid = |message: String| StepError::Invalid(format!("{owner}: {message}"));
        let &[rows, tokens, classes] = logits.shape() else {
            return Err(invalid(format!("logits must be [rows, tokens, classes], got {:?}", logits.shape())));
        };
        if offsets.shape() != [rows, tokens, 2] || words.shape() != [rows, tokens] || texts.shape() != [rows] {
            return Err(invalid(format!(
                "offsets {:?}, word_ids {:?} and text {:?} do not match logits {:?}",
                offsets.shape(),
                words.shape(),
                texts.shape(),
                logits.shape()
            )));
        }
        if labels.len() != classes as usize {
            return Err(invalid(format!("{} labels for {classes} classes", labels.len())));
        }
        let logits = crate::post::fp32_values(logits, owner)?;
        let (offsets, words) = (crate::post::int64_values(offsets, owner)?, crate::post::int64_values(words, owner)?);
        let TensorData::Bytes(texts) = texts.data() else { return Err(invalid("text must be BYTES".into())) };
        let (tokens, classes) = (tokens as usize, classes as usize);
        let mut answers = Vec::with_capacity(texts.len());
        for (row, text) in texts.iter().enumerate() {
            let text = std::str::from_utf8(text).map_err(|_| invalid(format!("text[{row}] is not UTF-8")))?;
            let row = Row {
                logits: &logits[row * tokens * classes..(row + 1) * tokens * classes],
                offsets: &offsets[row * tokens * 2..(row + 1) * tokens * 2],
                words: &words[row * tokens..(row + 1) * tokens],
                text,
            };
            let found = self.row_entities(&row, labels, classes);
            answers.push(bytes::Bytes::from(serde_json::to_vec(&found).map_err(|error| invalid(error.to_string()))?));
        }
        Tensor::new("entities", DataType::Bytes, vec![rows], TensorData::Bytes(answers)).map_err(|error| invalid(error.to_string()))
    }

    fn row_entities(&self, row: &Row<'_>, labels: &[String], classes: usize) -> Vec<Entity> {
        // Words: (label index, score, start, end), from each word's first token.
        let mut words: Vec<(usize, f32, usize, usize)> = Vec::new();
        let mut current_word = -1;
        for (token, &word) in row.words.iter().enumerate() {
            let (start, end) = (row.offsets[2 * token].max(0) as usize, row.offsets[2 * token + 1].max(0) as usize);
            if word < 0 {
                continue;
            }
            if word == current_word {
                if let Some(last) = words.last_mut() {
                    last.3 = end;
                }
                continue;
            }
            current_word = word;
            let (class, score) = best_class(&row.logits[token * classes..(token + 1) * classes]);
            words.push((class, score, start, end));
        }
        let mut entities: Vec<(String, Vec<f32>, usize, usize)> = Vec::new();
        let mut open = false;
        for (class, score, start, end) in words {
            let label = &labels[class];
            if self.ignore.contains(label) {
                open = false;
                continue;
            }
            let (begins, kind) = match label.split_once('-') {
                Some(("B", kind)) => (true, kind),
                Some(("I", kind)) => (false, kind),
                _ => (false, label.as_str()),
            };
            match entities.last_mut() {
                Some(last) if open && !begins && last.0 == kind => {
                    last.1.push(score);
                    last.3 = end;
                }
                _ => entities.push((kind.to_string(), vec![score], start, end)),
            }
            open = true;
        }
        entities
            .into_iter()
            .map(|(kind, scores, start, end)| Entity {
                entity_group: kind,
                score: scores.iter().sum::<f32>() / scores.len() as f32,
                word: row.text.chars().skip(start).take(end.saturating_sub(start)).collect(),
                start,
                end,
            })
            .collect()
    }
}

/// The most probable class of a token's logits and its probability (softmax).
fn best_class(logits: &[f32]) -> (usize, f32) {
    let largest = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|value| (value - largest).exp()).sum();
    let best = logits.iter().enumerate().fold(0, |best, (index, value)| if *value > logits[best] { index } else { best });
    (best, (logits[best] - largest).exp() / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, datatype: DataType, shape: Vec<i64>, bytes: Vec<u8>) -> Tensor {
        Tensor::new(name, datatype, shape, TensorData::Fixed(bytes.into())).unwrap()
    }

    #[test]
    fn words_take_their_first_tokens_class_and_adjacent_words_merge() {
        // "Ann Lee went to Rome": [CLS] ann lee went to ro ##me [SEP], classes O, B-PER, I-PER, B-LOC.
        let labels: Vec<String> = ["O", "B-PER", "I-PER", "B-LOC"].iter().map(|s| s.to_string()).collect();
        let best = [0usize, 1, 2, 0, 0, 3, 0, 0];
        let logits: Vec<u8> =
            best.iter().flat_map(|&class| (0..4).map(move |c| if c == class { 5.0f32 } else { 0.0 })).flat_map(f32::to_le_bytes).collect();
        let offsets: Vec<u8> = [0i64, 0, 0, 3, 4, 7, 8, 12, 13, 15, 16, 18, 18, 20, 0, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let words: Vec<u8> = [-1i64, 0, 1, 2, 3, 4, 4, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let text = Tensor::new("t", DataType::Bytes, vec![1], TensorData::Bytes(vec![bytes::Bytes::from("Ann Lee went to Rome")])).unwrap();
        let step = Entities { labels: None, labels_from: None, ignore: default_ignore() };
        let found = step
            .run(
                [
                    &tensor("l", DataType::Fp32, vec![1, 8, 4], logits),
                    &tensor("o", DataType::Int64, vec![1, 8, 2], offsets),
                    &tensor("w", DataType::Int64, vec![1, 8], words),
                    &text,
                ],
                &labels,
                "step 'ner'",
            )
            .unwrap();
        let TensorData::Bytes(rows) = found.data() else { panic!() };
        let entities: serde_json::Value = serde_json::from_slice(&rows[0]).unwrap();
        assert_eq!(entities[0]["entity_group"], "PER");
        assert_eq!(entities[0]["word"], "Ann Lee");
        assert_eq!((entities[0]["start"].as_u64(), entities[0]["end"].as_u64()), (Some(0), Some(7)));
        assert_eq!(entities[1]["word"], "Rome", "the word's second token ('##me', class O) follows its first");
        assert_eq!(entities.as_array().unwrap().len(), 2);
    }
}
