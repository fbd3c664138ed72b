//! KServe V2 response encoding: JSON `data`, or Triton's binary extension when asked for.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::json;
use yunmo_types::{DataType, InferOutput, Tensor, TensorData};

use super::decode::OutputEncoding;

/// The header that carries the JSON length of a binary response.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The elements of a tensor as a flat JSON array.
struct Elements<'a>(&'a Tensor);

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tensor = self.0;
        let mut seq = serializer.serialize_seq(Some(tensor.element_count()))?;
        let bytes = match tensor.data() {
            TensorData::Bytes(items) => {
                for item in items {
                    seq.serialize_element(&String::from_utf8_lossy(item))?;
                }
                return seq.end();
            }
            TensorData::Fixed(bytes) => bytes,
        };
        macro_rules! each {
            ($n:expr, |$c:ident| $conv:expr) => {
                for $c in bytes.chunks_exact($n) {
                    seq.serialize_element(&$conv)?;
                }
            };
        }
        match tensor.datatype() {
            DataType::Bool => each!(1, |c| c[0] != 0),
            DataType::Uint8 => each!(1, |c| c[0]),
            DataType::Int8 => each!(1, |c| c[0] as i8),
            DataType::Uint16 => each!(2, |c| u16::from_le_bytes([c[0], c[1]])),
            DataType::Int16 => each!(2, |c| i16::from_le_bytes([c[0], c[1]])),
            DataType::Uint32 => each!(4, |c| u32::from_le_bytes(c.try_into().unwrap())),
            DataType::Int32 => each!(4, |c| i32::from_le_bytes(c.try_into().unwrap())),
            DataType::Uint64 => each!(8, |c| u64::from_le_bytes(c.try_into().unwrap())),
            DataType::Int64 => each!(8, |c| i64::from_le_bytes(c.try_into().unwrap())),
            DataType::Fp16 => each!(2, |c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            DataType::Bf16 => each!(2, |c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            DataType::Fp32 => each!(4, |c| f32::from_le_bytes(c.try_into().unwrap())),
            DataType::Fp64 => each!(8, |c| f64::from_le_bytes(c.try_into().unwrap())),
            DataType::Bytes => unreachable!("BYTES tensors hold TensorData::Bytes"),
        }
        seq.end()
    }
}

fn append_binary(tensor: &Tensor, out: &mut BytesMut) {
    match tensor.data() {
        TensorData::Fixed(bytes) => out.put_slice(bytes),
        TensorData::Bytes(items) => {
            for item in items {
                out.put_u32_le(item.len() as u32);
                out.put_slice(item);
            }
        }
    }
}

/// Encodes an inference response.
pub fn encode_response(model_name: &str, output: &InferOutput, encoding: &OutputEncoding) -> Response {
    let mut binary = BytesMut::new();
    let mut any_binary = false;
    let outputs: Vec<serde_json::Value> = output
        .outputs
        .iter()
        .map(|tensor| {
            if encoding.is_binary(tensor.name()) {
                any_binary = true;
                append_binary(tensor, &mut binary);
                json!({
                    "name": tensor.name(), "datatype": tensor.datatype().as_str(), "shape": tensor.shape(),
                    "parameters": { "binary_data_size": tensor.binary_size() },
                })
            } else {
                json!({
                    "name": tensor.name(), "datatype": tensor.datatype().as_str(), "shape": tensor.shape(),
                    "data": Elements(tensor),
                })
            }
        })
        .collect();
    let mut header_json = json!({
        "model_name": model_name,
        "model_version": output.model_version.to_string(),
        "outputs": outputs,
    });
    if let Some(id) = &output.id {
        header_json["id"] = json!(id);
    }
    let header_bytes = serde_json::to_vec(&header_json).expect("JSON values serialize. This is a bug.");
    if !any_binary {
        return ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], header_bytes).into_response();
    }
    let header_length = header_bytes.len();
    let mut body = BytesMut::with_capacity(header_length + binary.len());
    body.put_slice(&header_bytes);
    body.put_slice(&binary);
    let mut response = Bytes::from(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(HEADER_LENGTH, HeaderValue::from(header_length));
    response
}
