//! Triton's classification extension: an output replaced by its top-k classes as `"score:index[:label]"`.

use bytes::Bytes;
use yunmo_types::{DataType, Tensor, TensorData};

use crate::ServiceError;

/// Scores of a numeric tensor as f64, row-major.
fn scores(tensor: &Tensor) -> Result<Vec<f64>, ServiceError> {
    let TensorData::Fixed(bytes) = tensor.data() else {
        return Err(ServiceError::invalid(format!("output '{}': classification needs a numeric output, it is BYTES", tensor.name())));
    };
    macro_rules! read {
        ($ty:ty, $n:expr) => {
            bytes.chunks_exact($n).map(|chunk| <$ty>::from_le_bytes(chunk.try_into().unwrap()) as f64).collect()
        };
    }
    Ok(match tensor.datatype() {
        DataType::Fp32 => read!(f32, 4),
        DataType::Fp64 => read!(f64, 8),
        DataType::Int64 => read!(i64, 8),
        DataType::Int32 => read!(i32, 4),
        DataType::Uint8 => read!(u8, 1),
        DataType::Fp16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        other => {
            return Err(ServiceError::invalid(format!("output '{}': classification is not supported for datatype {other}", tensor.name())));
        }
    })
}

/// Replaces `tensor` by its top `class_count` classes per row: shape `[batch, k]` for a `[batch, classes]`
/// output, `[k]` for a 1-D one.
pub(crate) fn classify(tensor: &Tensor, class_count: usize, labels: &[String]) -> Result<Tensor, ServiceError> {
    let values = scores(tensor)?;
    let shape = tensor.shape();
    let (rows, classes) = match shape {
        [] => (1, 1),
        [n] => (1, *n as usize),
        [batch, rest @ ..] => (*batch as usize, rest.iter().product::<i64>() as usize),
    };
    let k = class_count.min(classes);
    let mut items = Vec::with_capacity(rows * k);
    for row in 0..rows {
        let row_values = &values[row * classes..(row + 1) * classes];
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| row_values[b].total_cmp(&row_values[a]).then(a.cmp(&b)));
        for &index in order.iter().take(k) {
            let text = match labels.get(index) {
                Some(label) => format!("{:.6}:{index}:{label}", row_values[index]),
                None => format!("{:.6}:{index}", row_values[index]),
            };
            items.push(Bytes::from(text));
        }
    }
    let out_shape = if shape.len() <= 1 { vec![k as i64] } else { vec![rows as i64, k as i64] };
    Tensor::new(tensor.name(), DataType::Bytes, out_shape, TensorData::Bytes(items))
        .map_err(|error| ServiceError::internal(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_per_row_with_labels() {
        let values: Vec<u8> = [0.1f32, 0.7, 0.2, 0.5, 0.3, 0.2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensor = Tensor::new("probs", DataType::Fp32, vec![2, 3], TensorData::Fixed(values.into())).unwrap();
        let labels = vec!["a".to_string(), "b".to_string()];
        let out = classify(&tensor, 2, &labels).unwrap();
        assert_eq!(out.shape(), &[2, 2]);
        let TensorData::Bytes(items) = out.data() else { panic!("BYTES expected") };
        let texts: Vec<&str> = items.iter().map(|b| std::str::from_utf8(b).unwrap()).collect();
        assert_eq!(texts, ["0.700000:1:b", "0.200000:2", "0.500000:0:a", "0.300000:1:b"]);
    }
}
