//! KServe V2 response encoding: JSON `data`, or Triton's binary extension when asked for.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use yunmo_types::{DataType, InferOutput, Tensor, TensorData};

use super::decode::OutputEncoding;

/// The header that carries the JSON length of a binary response.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The elements of a tensor as a flat JSON array.
pub(crate) struct Elements<'a>(pub(crate) &'a Tensor);

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

/// The JSON part of a response, serialized straight from the tensors (no `serde_json::Value` tree, which
/// would cost tens of bytes per element).
#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputJson<'a>>,
}

#[derive(Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Elements<'a>>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// Encodes an inference response.
pub fn encode_response(model_name: &str, output: &InferOutput, encoding: &OutputEncoding) -> Response {
    let mut binary = BytesMut::new();
    let outputs: Vec<OutputJson<'_>> = output
        .outputs
        .iter()
        .map(|tensor| {
            let binary_output = encoding.is_binary(tensor.name());
            if binary_output {
                append_binary(tensor, &mut binary);
            }
            OutputJson {
                name: tensor.name(),
                datatype: tensor.datatype().as_str(),
                shape: tensor.shape(),
                parameters: binary_output.then(|| BinaryParameters { binary_data_size: tensor.binary_size() }),
                data: (!binary_output).then_some(Elements(tensor)),
            }
        })
        .collect();
    let any_binary = outputs.iter().any(|output| output.parameters.is_some());
    let header_json = ResponseJson { model_name, model_version: output.model_version.to_string(), id: output.id.as_deref(), outputs };
    let header_bytes = serde_json::to_vec(&header_json).expect("tensors serialize to JSON. This is a bug.");
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
