//! Post-processing steps on class scores: softmax and sigmoid over the last axis, and the top k classes
//! of each row with their scores, indices and labels.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use yunmo_types::{DataType, Tensor, TensorData};

use crate::StepError;

/// The FP32 values of `tensor`, or a 400 naming the step's input.
pub(crate) fn fp32_values(tensor: &Tensor, owner: &str) -> Result<Vec<f32>, StepError> {
    match (tensor.datatype(), tensor.data()) {
        (DataType::Fp32, TensorData::Fixed(bytes)) => {
            Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
        (other, _) => Err(StepError::Invalid(format!("{owner}: expects FP32 scores, got {other}"))),
    }
}

/// The values of an INT64 tensor; a 400 naming it otherwise.
pub(crate) fn int64_values(tensor: &Tensor, owner: &str) -> Result<Vec<i64>, StepError> {
    match (tensor.datatype(), tensor.data()) {
        (DataType::Int64, TensorData::Fixed(bytes)) => {
            Ok(bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
        }
        (other, _) => Err(StepError::Invalid(format!("{owner}: '{}' must be INT64, got {other}", tensor.name()))),
    }
}

/// Rows of the last axis: `(rows, width)`, or a 400 when the tensor has fewer than two dimensions.
fn rows(tensor: &Tensor, owner: &str) -> Result<(usize, usize), StepError> {
    let shape = tensor.shape();
    if shape.len() < 2 {
        return Err(StepError::Invalid(format!("{owner}: expects [batch, classes] scores, got shape {shape:?}")));
    }
    let width = *shape.last().expect("two dimensions") as usize;
    Ok((tensor.element_count() / width.max(1), width))
}

pub(crate) fn fp32_tensor(name: &str, shape: Vec<i64>, values: &[f32]) -> Result<Tensor, StepError> {
    let bytes: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
    Tensor::new(name, DataType::Fp32, shape, TensorData::Fixed(bytes.into())).map_err(|error| StepError::Invalid(error.to_string()))
}

/// Softmax over the last axis (numerically stable: the row's largest value is subtracted first).
pub fn softmax(scores: &Tensor, output: &str, owner: &str) -> Result<Tensor, StepError> {
    let (count, width) = rows(scores, owner)?;
    let mut values = fp32_values(scores, owner)?;
    for row in values.chunks_mut(width.max(1)).take(count) {
        let largest = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f32;
        for value in row.iter_mut() {
            *value = (*value - largest).exp();
            total += *value;
        }
        for value in row.iter_mut() {
            *value /= total;
        }
    }
    fp32_tensor(output, scores.shape().to_vec(), &values)
}

/// The logistic function of every value.
pub fn sigmoid(scores: &Tensor, output: &str, owner: &str) -> Result<Tensor, StepError> {
    let values: Vec<f32> = fp32_values(scores, owner)?.into_iter().map(|value| 1.0 / (1.0 + (-value).exp())).collect();
    fp32_tensor(output, scores.shape().to_vec(), &values)
}

/// The element-wise mean of FP32 tensors of one shape (an ensemble's scores averaged).
pub fn mean(tensors: &[&Tensor], output: &str, owner: &str) -> Result<Tensor, StepError> {
    let Some(first) = tensors.first() else { return Err(StepError::Config(format!("{owner}: averages at least two values"))) };
    let mut sum: Vec<f32> = fp32_values(first, owner)?;
    for tensor in &tensors[1..] {
        if tensor.shape() != first.shape() {
            return Err(StepError::Invalid(format!(
                "{owner}: shapes {:?} and {:?} differ; mean takes values of one shape",
                first.shape(),
                tensor.shape()
            )));
        }
        for (total, value) in sum.iter_mut().zip(fp32_values(tensor, owner)?) {
            *total += value;
        }
    }
    let count = tensors.len() as f32;
    let values: Vec<f32> = sum.into_iter().map(|total| total / count).collect();
    fp32_tensor(output, first.shape().to_vec(), &values)
}

/// The `top_k` step's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopK {
    /// Classes kept per row (1 to 1000).
    pub k: usize,
    /// Class names by index (default: the labels of the model step named in `labels_from`, or none).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// A model step whose version's labels name the classes.
    #[serde(default)]
    pub labels_from: Option<String>,
}

/// The top `k` of each row: scores (FP32), indices (INT64) and, when labels are known, labels (BYTES),
/// each `[rows, k]`, highest first (ties: the lower index first).
pub fn top_k(scores: &Tensor, k: usize, labels: Option<&[String]>, owner: &str) -> Result<[Option<Tensor>; 3], StepError> {
    let (count, width) = rows(scores, owner)?;
    let values = fp32_values(scores, owner)?;
    let k = k.min(width);
    if let Some(labels) = labels
        && labels.len() < width
    {
        return Err(StepError::Invalid(format!("{owner}: {width} classes but only {} labels", labels.len())));
    }
    let (mut top_scores, mut top_indices, mut top_labels) = (Vec::with_capacity(count * k), Vec::with_capacity(count * k), Vec::new());
    for row in values.chunks(width.max(1)).take(count) {
        let mut order: Vec<usize> = (0..width).collect();
        // NaN sorts last.
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or_else(|| row[a].is_nan().cmp(&row[b].is_nan())).then(a.cmp(&b)));
        for &index in order.iter().take(k) {
            top_scores.push(row[index]);
            top_indices.push(index as i64);
            if let Some(labels) = labels {
                top_labels.push(Bytes::from(labels[index].clone()));
            }
        }
    }
    let shape = vec![count as i64, k as i64];
    let invalid = |error: yunmo_types::TensorError| StepError::Invalid(error.to_string());
    let indices: Vec<u8> = top_indices.iter().flat_map(|value| value.to_le_bytes()).collect();
    Ok([
        Some(fp32_tensor("scores", shape.clone(), &top_scores)?),
        Some(Tensor::new("indices", DataType::Int64, shape.clone(), TensorData::Fixed(indices.into())).map_err(invalid)?),
        match labels {
            Some(_) => Some(Tensor::new("labels", DataType::Bytes, shape, TensorData::Bytes(top_labels)).map_err(invalid)?),
            None => None,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(rows: usize, values: &[f32]) -> Tensor {
        fp32_tensor("x", vec![rows as i64, (values.len() / rows) as i64], values).unwrap()
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_their_order() {
        let out = softmax(&scores(2, &[1.0, 2.0, 3.0, 1000.0, 1000.0, 0.0]), "y", "step").unwrap();
        let values = fp32_values(&out, "y").unwrap();
        assert!((values[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6 && values[2] > values[1]);
        assert!((values[3] - 0.5).abs() < 1e-6 && values[5] < 1e-30, "large logits do not overflow: {values:?}");
        let sig = sigmoid(&scores(1, &[0.0, 100.0]), "y", "step").unwrap();
        assert_eq!(fp32_values(&sig, "y").unwrap(), [0.5, 1.0]);
    }

    #[test]
    fn top_k_names_the_best_classes_first() {
        let labels: Vec<String> = ["cat", "dog", "fish"].map(String::from).to_vec();
        let [values, indices, names] = top_k(&scores(2, &[0.1, 0.7, 0.2, 0.5, 0.5, 0.0]), 2, Some(&labels), "top").unwrap();
        assert_eq!(fp32_values(&values.unwrap(), "s").unwrap(), [0.7, 0.2, 0.5, 0.5]);
        let indices = indices.unwrap();
        let TensorData::Fixed(bytes) = indices.data() else { panic!() };
        let indices: Vec<i64> = bytes.chunks(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(indices, [1, 2, 0, 1], "a tie keeps the lower index first");
        let names = names.unwrap();
        let TensorData::Bytes(names) = names.data() else { panic!() };
        assert_eq!(names, &[Bytes::from("dog"), Bytes::from("fish"), Bytes::from("cat"), Bytes::from("dog")]);
        let error = top_k(&scores(1, &[0.0; 4]), 2, Some(&labels), "top").unwrap_err();
        assert_eq!(error.to_string(), "top: 4 classes but only 3 labels");
        let flat = fp32_tensor("x", vec![3], &[0.0; 3]).unwrap();
        assert!(top_k(&flat, 1, None, "top").unwrap_err().to_string().contains("expects [batch, classes]"));
    }
}
