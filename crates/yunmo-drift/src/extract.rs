//! Samples from what a request carried: its input and output tensors, an LLM generation's token counts and
//! finish reason, an embedding request's vectors.
//!
//! Features of a tensor named `X`:
//! - a 2-D numeric input `[rows, columns]` with at most `max_columns` columns: one numeric feature per column,
//!   `X[0]`, `X[1]`, ...; a 1-D one: `X`; any other numeric input: `X.mean`, each row's mean;
//! - a BYTES input of one string per row: the categorical feature `X` (the first 64 characters);
//! - a 2-D numeric output `[rows, classes]` with two or more columns: the categorical `X.class`, the column of
//!   the row's largest score; with one column, the numeric `X`; a 1-D output: numeric `X` when it holds floats,
//!   categorical `X` (class labels) when integers or strings.

use yunmo_types::{DataType, Tensor, TensorData};

use crate::feature::Values;
use crate::monitor::{Observation, Sample, Source};

/// Longest category kept, in characters.
const CATEGORY_CHARS: usize = 64;

/// The elements of a fixed-size tensor as numbers (`None` for BYTES).
pub fn numbers(tensor: &Tensor) -> Option<Vec<f64>> {
    let TensorData::Fixed(bytes) = tensor.data() else { return None };
    macro_rules! each {
        ($size:expr, $convert:expr) => {
            bytes.chunks_exact($size).map($convert).collect()
        };
    }
    Some(match tensor.datatype() {
        DataType::Bool | DataType::Uint8 => bytes.iter().map(|byte| f64::from(*byte)).collect(),
        DataType::Int8 => bytes.iter().map(|byte| f64::from(*byte as i8)).collect(),
        DataType::Uint16 => each!(2, |c: &[u8]| f64::from(u16::from_le_bytes([c[0], c[1]]))),
        DataType::Int16 => each!(2, |c: &[u8]| f64::from(i16::from_le_bytes([c[0], c[1]]))),
        DataType::Uint32 => each!(4, |c: &[u8]| f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        DataType::Int32 => each!(4, |c: &[u8]| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        DataType::Uint64 => each!(8, |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or_default()) as f64),
        DataType::Int64 => each!(8, |c: &[u8]| i64::from_le_bytes(c.try_into().unwrap_or_default()) as f64),
        DataType::Fp16 => each!(2, |c: &[u8]| f64::from(half::f16::from_le_bytes([c[0], c[1]]).to_f32())),
        DataType::Bf16 => each!(2, |c: &[u8]| f64::from(half::bf16::from_le_bytes([c[0], c[1]]).to_f32())),
        DataType::Fp32 => each!(4, |c: &[u8]| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        DataType::Fp64 => each!(8, |c: &[u8]| f64::from_le_bytes(c.try_into().unwrap_or_default())),
        DataType::Bytes => return None,
    })
}

fn strings(tensor: &Tensor) -> Option<Vec<String>> {
    let TensorData::Bytes(items) = tensor.data() else { return None };
    Some(items.iter().map(|item| String::from_utf8_lossy(item).chars().take(CATEGORY_CHARS).collect()).collect())
}

fn rows_of(tensor: &Tensor) -> usize {
    tensor.shape().first().map_or(1, |rows| *rows as usize)
}

fn observation(feature: String, source: Source, values: Values) -> Observation {
    Observation { feature, source, values }
}

/// The features of one input tensor.
fn input_features(tensor: &Tensor, max_columns: usize, out: &mut Vec<Observation>) {
    let name = tensor.name();
    let rows = rows_of(tensor);
    if let Some(values) = strings(tensor) {
        if values.len() == rows {
            out.push(observation(name.to_string(), Source::Input, Values::Categorical(values)));
        }
        return;
    }
    let Some(values) = numbers(tensor) else { return };
    match tensor.shape() {
        [_] => out.push(observation(name.to_string(), Source::Input, Values::Numeric(values))),
        [_, columns] if (1..=max_columns as i64).contains(columns) => {
            let columns = *columns as usize;
            for column in 0..columns {
                let feature: Vec<f64> = values.iter().skip(column).step_by(columns).copied().collect();
                out.push(observation(format!("{name}[{column}]"), Source::Input, Values::Numeric(feature)));
            }
        }
        _ if rows > 0 && !values.is_empty() => {
            let per_row = values.len() / rows;
            let means = values.chunks(per_row.max(1)).map(|row| row.iter().sum::<f64>() / row.len() as f64).collect();
            out.push(observation(format!("{name}.mean"), Source::Input, Values::Numeric(means)));
        }
        _ => {}
    }
}

/// The features of one output tensor.
fn output_features(tensor: &Tensor, out: &mut Vec<Observation>) {
    let name = tensor.name();
    if let Some(values) = strings(tensor) {
        if tensor.shape().len() == 1 {
            out.push(observation(name.to_string(), Source::Output, Values::Categorical(values)));
        }
        return;
    }
    let Some(values) = numbers(tensor) else { return };
    match tensor.shape() {
        [_] if tensor.datatype().is_float() => out.push(observation(name.to_string(), Source::Output, Values::Numeric(values))),
        [_] => {
            let labels = values.iter().map(|value| format!("{value}")).collect();
            out.push(observation(name.to_string(), Source::Output, Values::Categorical(labels)));
        }
        [_, 1] => out.push(observation(name.to_string(), Source::Output, Values::Numeric(values))),
        [_, classes] if *classes >= 2 => {
            let picks = values
                .chunks(*classes as usize)
                .map(|scores| {
                    let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(index, _)| index);
                    best.to_string()
                })
                .collect();
            out.push(observation(format!("{name}.class"), Source::Output, Values::Categorical(picks)));
        }
        _ => {}
    }
}

/// The sample of a tensor request and its answer (`outputs` empty when it failed).
pub fn request(inputs: &[Tensor], outputs: &[Tensor], max_columns: usize) -> Sample {
    let mut observations = Vec::new();
    for tensor in inputs {
        input_features(tensor, max_columns, &mut observations);
    }
    for tensor in outputs {
        output_features(tensor, &mut observations);
    }
    Sample { rows: inputs.first().map_or(1, rows_of) as u64, observations }
}

/// The sample of one LLM generation.
pub fn generation(prompt_tokens: u64, completion_tokens: u64, finish_reason: &str) -> Sample {
    let numeric = |name: &str, value: u64| observation(name.into(), Source::Generation, Values::Numeric(vec![value as f64]));
    Sample {
        rows: 1,
        observations: vec![
            numeric("prompt_tokens", prompt_tokens),
            numeric("completion_tokens", completion_tokens),
            observation("finish_reason".into(), Source::Generation, Values::Categorical(vec![finish_reason.to_string()])),
        ],
    }
}

/// The sample of an embedding request: its vectors and their token counts.
pub fn embeddings(vectors: &[Vec<f32>], tokens: u64) -> Sample {
    let rows = vectors.len() as u64;
    let vectors = vectors.iter().map(|vector| vector.iter().map(|value| f64::from(*value)).collect()).collect();
    let per_input = if rows == 0 { 0.0 } else { tokens as f64 / rows as f64 };
    Sample {
        rows,
        observations: vec![
            observation("embedding".into(), Source::Embedding, Values::Vectors(vectors)),
            observation("input_tokens".into(), Source::Embedding, Values::Numeric(vec![per_input; rows as usize])),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn fp32(name: &str, shape: Vec<i64>, values: &[f32]) -> Tensor {
        let bytes: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        Tensor::new(name, DataType::Fp32, shape, TensorData::Fixed(Bytes::from(bytes))).unwrap()
    }

    #[test]
    fn a_2d_input_gives_one_feature_per_column_and_scores_give_the_class() {
        let input = fp32("X", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let output = fp32("probabilities", vec![2, 2], &[0.9, 0.1, 0.2, 0.8]);
        let sample = request(&[input], &[output], 64);
        assert_eq!(sample.rows, 2);
        let by_name: Vec<(&str, &Values)> = sample.observations.iter().map(|o| (o.feature.as_str(), &o.values)).collect();
        assert_eq!(by_name[0], ("X[0]", &Values::Numeric(vec![1.0, 4.0])));
        assert_eq!(by_name[2], ("X[2]", &Values::Numeric(vec![3.0, 6.0])));
        assert_eq!(by_name[3], ("probabilities.class", &Values::Categorical(vec!["0".into(), "1".into()])));
    }

    #[test]
    fn wide_or_deep_inputs_give_each_rows_mean() {
        let image = fp32("image", vec![2, 1, 2, 2], &[1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 4.0, 6.0]);
        let sample = request(&[image], &[], 64);
        assert_eq!(sample.observations[0].feature, "image.mean");
        assert_eq!(sample.observations[0].values, Values::Numeric(vec![1.0, 3.0]));
        let wide = fp32("X", vec![1, 3], &[3.0, 6.0, 9.0]);
        assert_eq!(request(&[wide], &[], 2).observations[0].values, Values::Numeric(vec![6.0]));
    }

    #[test]
    fn strings_are_categories() {
        let text = Tensor::new("text", DataType::Bytes, vec![2], TensorData::Bytes(vec![Bytes::from("a"), Bytes::from("b")])).unwrap();
        let sample = request(&[text], &[], 64);
        assert_eq!(sample.observations[0].values, Values::Categorical(vec!["a".into(), "b".into()]));
        let generation = generation(12, 7, "stop");
        assert_eq!(generation.observations[2].values, Values::Categorical(vec!["stop".into()]));
    }
}
