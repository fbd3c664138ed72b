//! KServe's V1 protocol (the KServe SDK's default): `POST /v1/models/{m}:predict` with `{"instances": [...]}`
//! answered `{"predictions": [...]}`, on the same service path as V2. Readiness (`GET /v1/models/{m}`) is
//! answered by the OpenAI model route, whose body also carries V1's `name` and `ready`.
//!
//! The instances are rows: with one input, each instance is that input's row; with several, each is an object
//! of rows by input name. They become V2 JSON tensors of `[rows, ...the first row's shape]` with the
//! signature's types and go through the V2 decoder, so every check and error is the same. With one output,
//! each prediction is its row; with several, an object of rows by output name.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Body};
use serde_json::{Map, Value, json};
use yunmo_service::ServiceError;
use yunmo_types::{Signature, Tensor};

use crate::AppState;
use crate::auth::Caller;
use crate::body::{Limit, read_body};
use crate::error::ApiError;
use yunmo_auth::Action;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::kserve(ServiceError::invalid(message))
}

/// `POST /v1/models/{m}:predict` (also `{m}:{version}:predict`); the segment is split at its last `:`.
pub(crate) async fn predict(
    State(state): State<AppState>,
    caller: Caller,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some((model, verb)) = segment.rsplit_once(':') else {
        return Err(ApiError::kserve(ServiceError::new(
            yunmo_types::Code::MethodNotAllowed,
            format!("/v1/models/{segment} does not take POST; predict at /v1/models/{segment}:predict"),
        )));
    };
    if verb != "predict" {
        return Err(invalid(format!("'{verb}' is not supported: KServe V1 models answer ':predict' only")));
    }
    let model_ref = crate::openai::model_ref(model).map_err(ApiError::kserve)?;
    let target = caller.target_ref(&state, &model_ref, Action::Infer).await.map_err(ApiError::kserve)?;
    let (bytes, mut charge) = read_body(&state, &headers, body, Limit::inference(&state.config)).await.map_err(ApiError::kserve)?;
    let request: Map<String, Value> = crate::body::parse_json(&bytes).map_err(ApiError::kserve)?;
    drop(bytes);
    let signature = state.service.signature(&caller.call, &target).await.map_err(ApiError::kserve)?;
    let v2 = v2_request(&signature, request)?;
    let limits = super::decode::DecodeLimits { max_tensor_elements: state.config.max_tensor_elements };
    let encoded = bytes::Bytes::from(serde_json::to_vec(&v2).map_err(|error| invalid(error.to_string()))?);
    let decoded = super::decode::decode_request(encoded.clone(), None, limits).map_err(ApiError::kserve)?;
    charge.merge(state.budget.charge(super::decode::allocated_bytes(&decoded.input, &encoded)).map_err(ApiError::kserve)?);
    let output = state.service.infer(&caller.call, &target, decoded.input).await.map_err(ApiError::kserve)?;
    let predictions = predictions(&output.outputs)?;
    drop(charge);
    let mut response = Json(json!({ "predictions": predictions })).into_response();
    response.headers_mut().insert(super::MODEL_VERSION_HEADER, axum::http::HeaderValue::from(output.model_version));
    Ok(response)
}

/// The V2 JSON request that the instances describe.
fn v2_request(signature: &Signature, mut request: Map<String, Value>) -> Result<Value, ApiError> {
    if let Some(field) = request.keys().find(|key| *key != "instances") {
        let hint = if field == "inputs" { " (V1's columnar 'inputs' is not supported: send 'instances')" } else { "" };
        return Err(invalid(format!("unknown field '{field}' in a V1 predict request; send 'instances'{hint}")));
    }
    let Some(Value::Array(instances)) = request.remove("instances") else {
        return Err(invalid("'instances' must be an array of rows"));
    };
    if instances.is_empty() {
        return Err(invalid("'instances' is empty"));
    }
    let inputs = &signature.inputs;
    let columns: Vec<Vec<Value>> = match inputs.as_slice() {
        [_] => vec![instances],
        _ => {
            let mut columns = vec![Vec::with_capacity(instances.len()); inputs.len()];
            for (row, instance) in instances.into_iter().enumerate() {
                let Value::Object(mut fields) = instance else {
                    let names: Vec<&str> = inputs.iter().map(|spec| spec.name.as_str()).collect();
                    return Err(invalid(format!(
                        "instances[{row}] must be an object of the inputs {names:?}: the model has {} inputs",
                        inputs.len()
                    )));
                };
                for (column, spec) in columns.iter_mut().zip(inputs) {
                    let value =
                        fields.remove(&spec.name).ok_or_else(|| invalid(format!("instances[{row}] has no input '{}'", spec.name)))?;
                    column.push(value);
                }
                if let Some(extra) = fields.keys().next() {
                    return Err(invalid(format!("instances[{row}] names '{extra}', which is not an input of the model")));
                }
            }
            columns
        }
    };
    let tensors: Vec<Value> = inputs
        .iter()
        .zip(columns)
        .map(|(spec, rows)| {
            let mut shape = vec![rows.len() as i64];
            let mut first = &rows[0];
            while let Value::Array(items) = first {
                shape.push(items.len() as i64);
                match items.first() {
                    Some(item) => first = item,
                    None => break,
                }
            }
            json!({ "name": spec.name, "datatype": spec.datatype.as_str(), "shape": shape, "data": rows })
        })
        .collect();
    Ok(json!({ "inputs": tensors }))
}

/// Each output split into its rows, nested by its shape.
fn predictions(outputs: &[Tensor]) -> Result<Vec<Value>, ApiError> {
    let mut columns = Vec::with_capacity(outputs.len());
    for tensor in outputs {
        let text = serde_json::to_string(&super::encode::Elements(tensor)).map_err(|error| invalid(error.to_string()))?;
        let Value::Array(flat) = serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))? else {
            return Err(invalid("an output did not encode as an array"));
        };
        let dims: Vec<usize> = tensor.shape().iter().map(|d| (*d).max(0) as usize).collect();
        let rows = dims.first().copied().unwrap_or(1);
        let row_dims = dims.get(1..).unwrap_or_default();
        let mut values = flat.into_iter();
        columns.push((0..rows).map(|_| nest(&mut values, row_dims)).collect::<Vec<Value>>());
    }
    let rows = columns.first().map_or(0, Vec::len);
    if outputs.len() == 1 {
        return Ok(columns.pop().unwrap_or_default());
    }
    Ok((0..rows)
        .map(|row| {
            let fields: Map<String, Value> = outputs
                .iter()
                .zip(&columns)
                .filter_map(|(tensor, column)| Some((tensor.name().to_string(), column.get(row)?.clone())))
                .collect();
            Value::Object(fields)
        })
        .collect())
}

/// The next values of `flat` nested as `dims` (a scalar when `dims` is empty).
fn nest(flat: &mut impl Iterator<Item = Value>, dims: &[usize]) -> Value {
    match dims.split_first() {
        None => flat.next().unwrap_or(Value::Null),
        Some((size, rest)) => Value::Array((0..*size).map(|_| nest(flat, rest)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunmo_types::{DataType, TensorSpec};

    fn spec(name: &str, datatype: DataType, shape: Vec<i64>) -> TensorSpec {
        TensorSpec { name: name.into(), datatype, shape }
    }

    #[test]
    fn instances_become_v2_tensors_of_rows() {
        let one = Signature { inputs: vec![spec("X", DataType::Fp32, vec![-1, 2])], outputs: vec![] };
        let request = json!({"instances": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}).as_object().unwrap().clone();
        let v2 = v2_request(&one, request).unwrap();
        assert_eq!(v2["inputs"][0]["shape"], json!([3, 2]));
        assert_eq!(v2["inputs"][0]["datatype"], "FP32");
        let two = Signature { inputs: vec![spec("a", DataType::Int64, vec![-1]), spec("b", DataType::Bytes, vec![-1])], outputs: vec![] };
        let request = json!({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}).as_object().unwrap().clone();
        let v2 = v2_request(&two, request).unwrap();
        assert_eq!(v2["inputs"][1], json!({"name": "b", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]}));
        for (body, message) in [
            (json!({"instances": []}), "'instances' is empty"),
            (json!({"inputs": [1]}), "columnar 'inputs' is not supported"),
            (json!({"instances": [{"a": 1}]}), "instances[0] has no input 'b'"),
            (json!({"instances": [[1, 2]]}), "instances[0] must be an object of the inputs"),
        ] {
            let error = v2_request(&two, body.as_object().unwrap().clone()).unwrap_err();
            assert!(format!("{error:?}").contains(message), "{error:?} should say {message}");
        }
    }

    #[test]
    fn predictions_are_rows_by_output() {
        let labels = Tensor::new(
            "label",
            DataType::Int64,
            vec![2],
            yunmo_types::TensorData::Fixed([1i64.to_le_bytes(), 0i64.to_le_bytes()].concat().into()),
        )
        .unwrap();
        let probabilities: Vec<u8> = [0.25f32, 0.75, 0.5, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let probabilities = Tensor::new("p", DataType::Fp32, vec![2, 2], yunmo_types::TensorData::Fixed(probabilities.into())).unwrap();
        assert_eq!(predictions(std::slice::from_ref(&probabilities)).unwrap(), vec![json!([0.25, 0.75]), json!([0.5, 0.5])]);
        assert_eq!(
            predictions(&[labels, probabilities]).unwrap(),
            vec![json!({"label": 1, "p": [0.25, 0.75]}), json!({"label": 0, "p": [0.5, 0.5]})]
        );
    }
}
