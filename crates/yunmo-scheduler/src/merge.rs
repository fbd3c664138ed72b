use bytes::BytesMut;
use yunmo_types::{DataType, Tensor, TensorData};

/// What requests must share to be merged: input names, data types and dimensions after the first, and
/// the outputs asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey(Vec<(String, DataType, Vec<i64>)>, Vec<String>);

impl BatchKey {
    /// A key no other request shares (for requests that cannot be batched).
    pub fn unique(id: u64) -> BatchKey {
        BatchKey(vec![(format!("#unique-{id}"), DataType::Bytes, vec![])], Vec::new())
    }

    #[cfg(test)]
    pub(crate) fn for_test(id: u8) -> BatchKey {
        BatchKey(vec![(id.to_string(), DataType::Fp32, vec![])], Vec::new())
    }
}

/// The key and row count of a request, or `None` if it cannot be batched (an input of rank 0, or inputs
/// that disagree on their first dimension).
pub fn batch_key(inputs: &[Tensor], outputs: &[String]) -> Option<(BatchKey, usize)> {
    let rows = *inputs.first()?.shape().first()? as usize;
    let mut parts = Vec::with_capacity(inputs.len());
    for tensor in inputs {
        let (first, rest) = tensor.shape().split_first()?;
        if *first as usize != rows {
            return None;
        }
        parts.push((tensor.name().to_string(), tensor.datatype(), rest.to_vec()));
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    Some((BatchKey(parts, outputs.to_vec()), rows))
}

/// Why outputs could not be split back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(pub String);

fn concat(name: &str, parts: Vec<Tensor>, rows: usize) -> Tensor {
    let first = &parts[0];
    let datatype = first.datatype();
    let mut shape = first.shape().to_vec();
    shape[0] = rows as i64;
    let data = if datatype == DataType::Bytes {
        let mut items = Vec::new();
        for part in parts {
            if let TensorData::Bytes(part_items) = part.into_parts().3 {
                items.extend(part_items);
            }
        }
        TensorData::Bytes(items)
    } else {
        let total: usize = parts.iter().map(Tensor::binary_size).sum();
        let mut bytes = BytesMut::with_capacity(total);
        for part in &parts {
            if let TensorData::Fixed(part_bytes) = part.data() {
                bytes.extend_from_slice(part_bytes);
            }
        }
        TensorData::Fixed(bytes.freeze())
    };
    Tensor::new(name, datatype, shape, data).expect("parts share type and trailing shape, rows add up. This is a bug.")
}

/// Joins the inputs of several requests (same [`BatchKey`]) along the first dimension, in request order.
pub fn merge(mut requests: Vec<Vec<Tensor>>, rows: usize) -> Vec<Tensor> {
    if requests.len() == 1 {
        return requests.pop().expect("one request");
    }
    for request in &mut requests {
        request.sort_by(|a, b| a.name().cmp(b.name()));
    }
    let count = requests[0].len();
    let mut columns: Vec<Vec<Tensor>> = (0..count).map(|_| Vec::with_capacity(requests.len())).collect();
    for request in requests {
        for (column, tensor) in columns.iter_mut().zip(request) {
            column.push(tensor);
        }
    }
    columns
        .into_iter()
        .map(|parts| {
            let name = parts[0].name().to_string();
            concat(&name, parts, rows)
        })
        .collect()
}

/// Cuts each output of a merged call back into per-request tensors with `rows[i]` rows each.
pub fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, MergeError> {
    let total: usize = rows.iter().sum();
    let mut per_request: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    if rows.len() == 1 {
        per_request[0] = outputs;
        return Ok(per_request);
    }
    for output in outputs {
        let first = output.shape().first().copied().unwrap_or(-1);
        if first != total as i64 {
            return Err(MergeError(format!(
                "output '{}' has shape {:?}, which is not batched along its first dimension ({total} rows were sent); \
                 serve this model with max_batch_size 0",
                output.name(),
                output.shape()
            )));
        }
        let (name, datatype, shape, data) = output.into_parts();
        let row_elements: usize = shape[1..].iter().map(|d| *d as usize).product();
        let mut offset_rows = 0usize;
        for (index, request_rows) in rows.iter().enumerate() {
            let mut request_shape = shape.clone();
            request_shape[0] = *request_rows as i64;
            let part = match &data {
                TensorData::Fixed(bytes) => {
                    let size = datatype.element_size().expect("fixed type");
                    let start = offset_rows * row_elements * size;
                    let end = start + request_rows * row_elements * size;
                    TensorData::Fixed(bytes.slice(start..end))
                }
                TensorData::Bytes(items) => {
                    let start = offset_rows * row_elements;
                    TensorData::Bytes(items[start..start + request_rows * row_elements].to_vec())
                }
            };
            let tensor = Tensor::new(name.clone(), datatype, request_shape, part).map_err(|e| MergeError(e.to_string()))?;
            per_request[index].push(tensor);
            offset_rows += request_rows;
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn fp32(name: &str, shape: Vec<i64>, values: &[f32]) -> Tensor {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::new(name, DataType::Fp32, shape, TensorData::Fixed(bytes.into())).unwrap()
    }

    #[test]
    fn merge_then_split_gives_back_each_request() {
        let a = vec![
            fp32("x", vec![1, 2], &[1.0, 2.0]),
            Tensor::new("s", DataType::Bytes, vec![1], TensorData::Bytes(vec![Bytes::from("a")])).unwrap(),
        ];
        let b = vec![
            Tensor::new("s", DataType::Bytes, vec![2], TensorData::Bytes(vec![Bytes::from("b"), Bytes::from("c")])).unwrap(),
            fp32("x", vec![2, 2], &[3.0, 4.0, 5.0, 6.0]),
        ];
        let (key_a, rows_a) = batch_key(&a, &[]).unwrap();
        let (key_b, rows_b) = batch_key(&b, &[]).unwrap();
        assert_eq!(key_a, key_b, "input order does not matter");
        let merged = merge(vec![a.clone(), b.clone()], rows_a + rows_b);
        let x = merged.iter().find(|t| t.name() == "x").unwrap();
        assert_eq!(x, &fp32("x", vec![3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let parts = split(merged, &[rows_a, rows_b]).unwrap();
        let mut sorted_a = a;
        sorted_a.sort_by(|p, q| p.name().cmp(q.name()));
        let mut sorted_b = b;
        sorted_b.sort_by(|p, q| p.name().cmp(q.name()));
        assert_eq!(parts, vec![sorted_a, sorted_b]);
    }

    #[test]
    fn different_trailing_shapes_do_not_share_a_key() {
        let a = vec![fp32("x", vec![1, 2], &[1.0, 2.0])];
        let b = vec![fp32("x", vec![1, 1], &[1.0])];
        assert_ne!(batch_key(&a, &[]).unwrap().0, batch_key(&b, &[]).unwrap().0);
        assert_ne!(batch_key(&a, &["y".into()]).unwrap().0, batch_key(&a, &[]).unwrap().0);
        assert!(batch_key(&[fp32("x", vec![], &[1.0])], &[]).is_none(), "scalars cannot batch");
    }

    #[test]
    fn outputs_not_batched_along_dim_0_are_an_error() {
        let error = split(vec![fp32("y", vec![4], &[0.0; 4])], &[1, 2]).unwrap_err();
        assert!(error.0.contains("not batched along its first dimension (3 rows were sent)"), "{}", error.0);
    }
}
