//! KServe V2 request decoding: JSON tensors (flat or nested `data`) and Triton's binary tensor extension.
//!
//! The JSON body is parsed once; each input's `data` is kept as raw JSON text and flattened straight into
//! little-endian bytes of the declared datatype, so no intermediate `serde_json::Value` tree is built.
//! Binary inputs are slices of the request body (no copy).

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use yunmo_service::ServiceError;
use yunmo_types::{DataType, InferInput, RequestedOutput, Tensor, TensorData};

/// Bounds applied while decoding, before anything large is allocated.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most elements one tensor may have.
    pub max_tensor_elements: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestDto<'a> {
    #[serde(default)]
    id: Option<String>,
    /// Sent by the Open Inference Protocol's clients (the KServe SDK); must name the model in the path.
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    inputs: Vec<InputDto<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputDto>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputDto<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputDto {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// A decoded V2 request.
#[derive(Debug)]
pub struct Decoded {
    /// The tensors and requested outputs.
    pub input: InferInput,
    /// How to encode the answer.
    pub encoding: OutputEncoding,
    /// `model_name` from the body, if sent.
    pub model_name: Option<String>,
    /// `model_version` from the body, if sent and not empty.
    pub model_version: Option<String>,
}

/// A request whose body is one raw file (`media`, e.g. `image/jpeg`) for a model with one BYTES input:
/// that input, with shape `[1]`, holds the body; every output is answered in JSON.
pub fn raw_request(signature: &yunmo_types::Signature, media: &str, body: Bytes) -> Result<Decoded, ServiceError> {
    let [spec] = signature.inputs.as_slice() else {
        return Err(invalid(format!(
            "a {media} body is the one BYTES input of a model that takes one; this model takes {} inputs: send a V2 inference request",
            signature.inputs.len()
        )));
    };
    if spec.datatype != DataType::Bytes {
        return Err(invalid(format!(
            "a {media} body is for a BYTES input; input '{}' is {}: send a V2 inference request",
            spec.name, spec.datatype
        )));
    }
    // One element: every dimension the model leaves open is 1 (`[-1]` becomes `[1]`).
    let shape: Vec<i64> = spec.shape.iter().map(|dim| if *dim < 0 { 1 } else { *dim }).collect();
    if shape.iter().product::<i64>() != 1 {
        return Err(invalid(format!(
            "a {media} body is one element; input '{}' takes shape {:?}: send a V2 inference request",
            spec.name, spec.shape
        )));
    }
    let tensor = Tensor::new(spec.name.clone(), DataType::Bytes, shape, TensorData::Bytes(vec![body]))
        .map_err(|error| invalid(error.to_string()))?;
    let input = InferInput { id: None, inputs: vec![tensor], outputs: Vec::new() };
    Ok(Decoded { input, encoding: OutputEncoding::default(), model_name: None, model_version: None })
}

/// How each output of the response is to be encoded.
#[derive(Debug, Clone, Default)]
pub struct OutputEncoding {
    /// Request-level `binary_data_output`.
    pub binary_default: bool,
    /// Per requested output: `Some(binary)` when the output set `binary_data`.
    pub binary: Vec<(String, bool)>,
}

impl OutputEncoding {
    /// Whether output `name` goes out as binary.
    pub fn is_binary(&self, name: &str) -> bool {
        self.binary.iter().find(|(output, _)| output == name).map_or(self.binary_default, |(_, binary)| *binary)
    }
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(message)
}

fn bool_param(parameters: &Option<Map<String, Value>>, key: &str, owner: &str) -> Result<Option<bool>, ServiceError> {
    match parameters.as_ref().and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(other) => Err(invalid(format!("{owner}: parameter '{key}' must be a boolean, got {other}"))),
    }
}

fn uint_param(parameters: &Option<Map<String, Value>>, key: &str, owner: &str) -> Result<Option<u64>, ServiceError> {
    match parameters.as_ref().and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{owner}: parameter '{key}' must be a non-negative integer, got {value}"))),
    }
}

/// Decodes a V2 infer body. `header_length` is the `Inference-Header-Content-Length` header, if sent.
pub fn decode_request(body: Bytes, header_length: Option<usize>, limits: DecodeLimits) -> Result<Decoded, ServiceError> {
    let header_length = header_length.unwrap_or(body.len());
    if header_length > body.len() {
        return Err(invalid(format!("Inference-Header-Content-Length is {header_length} but the body has only {} bytes", body.len())));
    }
    let header = &body[..header_length];
    let dto: RequestDto<'_> =
        serde_json::from_slice(header).map_err(|error| invalid(format!("malformed inference request JSON: {error}")))?;
    let mut offset = header_length;
    let mut inputs = Vec::with_capacity(dto.inputs.len());
    for input in dto.inputs {
        let owner = format!("input '{}'", input.name);
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            invalid(format!(
                "{owner}: unknown datatype '{}' (expected one of BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BF16, BYTES)",
                input.datatype
            ))
        })?;
        let count = checked_count(&input.name, &input.shape, limits)?;
        let binary_size = uint_param(&input.parameters, "binary_data_size", &owner)?;
        let data = match (binary_size, input.data) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!("{owner}: has both 'data' and 'binary_data_size'")));
            }
            (None, None) => {
                return Err(invalid(format!("{owner}: has neither 'data' nor 'binary_data_size'")));
            }
            (Some(size), None) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                let end = offset.checked_add(size).filter(|end| *end <= body.len()).ok_or_else(|| {
                    invalid(format!(
                        "{owner}: binary_data_size {size} runs past the end of the body ({} bytes after the header remain)",
                        body.len() - offset
                    ))
                })?;
                let chunk = body.slice(offset..end);
                offset = end;
                binary_data(&owner, datatype, chunk)?
            }
            (None, Some(raw)) => json_data(&owner, datatype, raw, count)?,
        };
        let tensor = Tensor::new(input.name, datatype, input.shape, data).map_err(|error| invalid(error.to_string()))?;
        inputs.push(tensor);
    }
    if offset != body.len() {
        return Err(invalid(format!("the body has {} bytes after the header and binary inputs that no input claims", body.len() - offset)));
    }
    let binary_default = bool_param(&dto.parameters, "binary_data_output", "request")?.unwrap_or(false);
    let mut encoding = OutputEncoding { binary_default, binary: Vec::new() };
    let mut outputs = Vec::new();
    for output in dto.outputs.unwrap_or_default() {
        let owner = format!("output '{}'", output.name);
        if let Some(binary) = bool_param(&output.parameters, "binary_data", &owner)? {
            encoding.binary.push((output.name.clone(), binary));
        }
        let class_count = uint_param(&output.parameters, "classification", &owner)?.filter(|k| *k > 0).map(|k| k as usize);
        outputs.push(RequestedOutput { name: output.name, class_count });
    }
    Ok(Decoded {
        input: InferInput { id: dto.id, inputs, outputs },
        encoding,
        model_name: dto.model_name,
        model_version: dto.model_version.filter(|version| !version.is_empty()),
    })
}

/// Bytes the decoded tensors of `input` hold outside `body`: tensors decoded from JSON; binary tensors are
/// slices of the body and hold nothing more.
pub fn allocated_bytes(input: &InferInput, body: &Bytes) -> usize {
    let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
    let outside = |bytes: &Bytes| if range.contains(&(bytes.as_ptr() as usize)) { 0 } else { bytes.len() };
    input
        .inputs
        .iter()
        .map(|tensor| match tensor.data() {
            TensorData::Fixed(bytes) => outside(bytes),
            TensorData::Bytes(items) => items.iter().map(outside).sum(),
        })
        .sum()
}

pub(crate) fn checked_count(name: &str, shape: &[i64], limits: DecodeLimits) -> Result<usize, ServiceError> {
    if let Some(dim) = shape.iter().find(|dim| **dim < 0) {
        return Err(invalid(format!("input '{name}': shape {shape:?} has a negative dimension {dim}")));
    }
    let count = yunmo_types::element_count_of(shape);
    match count {
        Some(count) if count <= limits.max_tensor_elements => Ok(count),
        _ => Err(invalid(format!(
            "input '{name}': shape {shape:?} has more than max_tensor_elements = {} elements",
            limits.max_tensor_elements
        ))),
    }
}

pub(crate) fn binary_data(owner: &str, datatype: DataType, chunk: Bytes) -> Result<TensorData, ServiceError> {
    if datatype != DataType::Bytes {
        return Ok(TensorData::Fixed(chunk));
    }
    let mut items = Vec::new();
    let mut rest = 0usize;
    while rest < chunk.len() {
        if chunk.len() - rest < 4 {
            return Err(invalid(format!("{owner}: BYTES element {} has a truncated 4-byte length", items.len())));
        }
        let len = u32::from_le_bytes(chunk[rest..rest + 4].try_into().expect("4 bytes")) as usize;
        rest += 4;
        if chunk.len() - rest < len {
            return Err(invalid(format!(
                "{owner}: BYTES element {} declares {len} bytes but only {} remain",
                items.len(),
                chunk.len() - rest
            )));
        }
        items.push(chunk.slice(rest..rest + len));
        rest += len;
    }
    Ok(TensorData::Bytes(items))
}

fn json_data(owner: &str, datatype: DataType, raw: &RawValue, count: usize) -> Result<TensorData, ServiceError> {
    if let Some(bytes) = super::fast_json::float_array(raw.get(), datatype, count) {
        return Ok(TensorData::Fixed(Bytes::from(bytes)));
    }
    let mut sink = Sink::new(datatype, count);
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    Flatten { sink: &mut sink }.deserialize(&mut deserializer).map_err(|error| {
        let detail = sink.error.take().unwrap_or_else(|| error.to_string());
        invalid(format!("{owner}: {detail}"))
    })?;
    if sink.count != count {
        return Err(invalid(format!("{owner}: shape calls for {count} elements, 'data' has {}", sink.count)));
    }
    Ok(sink.finish())
}

/// Collects flattened JSON elements as bytes of one datatype.
struct Sink {
    datatype: DataType,
    bytes: Vec<u8>,
    strings: Vec<Bytes>,
    count: usize,
    expected: usize,
    error: Option<String>,
}

impl Sink {
    fn new(datatype: DataType, expected: usize) -> Sink {
        let bytes = Vec::with_capacity(expected * datatype.element_size().unwrap_or(0));
        Sink { datatype, bytes, strings: Vec::new(), count: 0, expected, error: None }
    }

    fn finish(self) -> TensorData {
        match self.datatype {
            DataType::Bytes => TensorData::Bytes(self.strings),
            _ => TensorData::Fixed(Bytes::from(self.bytes)),
        }
    }

    fn fail<E: de::Error>(&mut self, message: String) -> E {
        let message = format!("element {}: {message}", self.count.saturating_sub(1));
        self.error = Some(message.clone());
        E::custom(message)
    }

    fn admit<E: de::Error>(&mut self) -> Result<(), E> {
        if self.count >= self.expected {
            let message = format!("'data' has more elements than the shape's {}", self.expected);
            self.error = Some(message.clone());
            return Err(E::custom(message));
        }
        self.count += 1;
        Ok(())
    }

    fn push_int<E: de::Error>(&mut self, value: i128) -> Result<(), E> {
        self.admit()?;
        macro_rules! put {
            ($ty:ty) => {
                match <$ty>::try_from(value) {
                    Ok(v) => self.bytes.extend_from_slice(&v.to_le_bytes()),
                    Err(_) => return Err(self.fail(format!("value {value} is out of range for {}", self.datatype))),
                }
            };
        }
        match self.datatype {
            DataType::Uint8 => put!(u8),
            DataType::Uint16 => put!(u16),
            DataType::Uint32 => put!(u32),
            DataType::Uint64 => put!(u64),
            DataType::Int8 => put!(i8),
            DataType::Int16 => put!(i16),
            DataType::Int32 => put!(i32),
            DataType::Int64 => put!(i64),
            DataType::Fp16 | DataType::Fp32 | DataType::Fp64 | DataType::Bf16 => {
                self.count -= 1;
                return self.push_float(value as f64);
            }
            DataType::Bool | DataType::Bytes => {
                return Err(self.fail(format!("expected {}, got the number {value}", kind(self.datatype))));
            }
        }
        Ok(())
    }

    fn push_float<E: de::Error>(&mut self, value: f64) -> Result<(), E> {
        self.admit()?;
        match self.datatype {
            DataType::Fp32 => {
                let narrowed = value as f32;
                self.push_narrowed(value, narrowed.is_finite(), narrowed.to_le_bytes())
            }
            DataType::Fp64 => self.push_narrowed(value, true, value.to_le_bytes()),
            DataType::Fp16 => {
                let narrowed = half::f16::from_f64(value);
                self.push_narrowed(value, narrowed.is_finite(), narrowed.to_le_bytes())
            }
            DataType::Bf16 => {
                let narrowed = half::bf16::from_f64(value);
                self.push_narrowed(value, narrowed.is_finite(), narrowed.to_le_bytes())
            }
            other => Err(self.fail(format!("expected {}, got the number {value}", kind(other)))),
        }
    }

    /// Appends `value` as it is in the declared type (`bytes`). JSON has no infinities: a number that
    /// became one there (`finite` false) is out of the type's range.
    fn push_narrowed<E: de::Error, const N: usize>(&mut self, value: f64, finite: bool, bytes: [u8; N]) -> Result<(), E> {
        if !finite {
            return Err(self.fail(format!("value {} is out of range for {}", scientific(value), self.datatype)));
        }
        self.bytes.extend_from_slice(&bytes);
        Ok(())
    }

    fn push_bool<E: de::Error>(&mut self, value: bool) -> Result<(), E> {
        self.admit()?;
        if self.datatype != DataType::Bool {
            return Err(self.fail(format!("expected {}, got {value}", kind(self.datatype))));
        }
        self.bytes.push(u8::from(value));
        Ok(())
    }

    fn push_str<E: de::Error>(&mut self, value: &str) -> Result<(), E> {
        self.admit()?;
        if self.datatype != DataType::Bytes {
            return Err(self.fail(format!("expected {}, got the string {value:?}", kind(self.datatype))));
        }
        self.strings.push(Bytes::copy_from_slice(value.as_bytes()));
        Ok(())
    }
}

/// A number in scientific notation with at most 7 significant digits (`1.5e40`), as a person wrote it.
fn scientific(value: f64) -> String {
    let text = format!("{value:.6e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) if mantissa.contains('.') => {
            format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => text,
    }
}

fn kind(datatype: DataType) -> String {
    match datatype {
        DataType::Bool => "a boolean (BOOL)".into(),
        DataType::Bytes => "a string (BYTES)".into(),
        DataType::Fp16 | DataType::Fp32 | DataType::Fp64 | DataType::Bf16 => {
            format!("a number ({datatype})")
        }
        other => format!("an integer ({other})"),
    }
}

/// Visits a (possibly nested) JSON array and pushes every scalar into the sink.
struct Flatten<'s> {
    sink: &'s mut Sink,
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flat or nested array of tensor elements")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten { sink: &mut *self.sink })?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.sink.push_bool(value)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.sink.push_int(i128::from(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.sink.push_int(i128::from(value))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        if matches!(self.sink.datatype, DataType::Fp16 | DataType::Fp32 | DataType::Fp64 | DataType::Bf16) {
            return self.sink.push_float(value);
        }
        self.sink.admit::<E>()?;
        Err(self.sink.fail(format!("expected {}, got {value}", kind(self.sink.datatype))))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.sink.push_str(value)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.sink.admit::<E>()?;
        Err(self.sink.fail("null is not a tensor element".to_string()))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        self.sink.admit::<A::Error>()?;
        Err(self.sink.fail("an object is not a tensor element".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits { max_tensor_elements: 1000 };

    fn decode(json: &str) -> Result<InferInput, String> {
        decode_request(Bytes::from(json.to_string()), None, LIMITS).map(|decoded| decoded.input).map_err(|e| e.message)
    }

    fn fixed(input: &InferInput) -> &[u8] {
        match input.inputs[0].data() {
            TensorData::Fixed(bytes) => bytes,
            TensorData::Bytes(_) => panic!("fixed data expected"),
        }
    }

    #[test]
    fn flat_and_nested_data_decode_the_same() {
        let flat = decode(r#"{"id":"7","inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[1,2,3,4]}]}"#).unwrap();
        let nested = decode(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]}]}"#).unwrap();
        assert_eq!(fixed(&flat), fixed(&nested));
        assert_eq!(fixed(&flat), [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(flat.id.as_deref(), Some("7"));
    }

    #[test]
    fn every_datatype_decodes() {
        let cases = [
            ("BOOL", "[true,false]", vec![1u8, 0]),
            ("UINT8", "[1,255]", vec![1, 255]),
            ("INT8", "[-1,2]", vec![255, 2]),
            ("UINT16", "[1,2]", vec![1, 0, 2, 0]),
            ("INT16", "[-2,2]", vec![254, 255, 2, 0]),
            ("FP16", "[1.0,-2]", [half::f16::from_f32(1.0), half::f16::from_f32(-2.0)].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("FP64", "[0.5,1]", [0.5f64, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("UINT64", "[18446744073709551615,0]", [u64::MAX, 0].iter().flat_map(|v| v.to_le_bytes()).collect()),
        ];
        for (datatype, data, expected) in cases {
            let body = format!(r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{datatype}","data":{data}}}]}}"#);
            let input = decode(&body).unwrap_or_else(|e| panic!("{datatype}: {e}"));
            assert_eq!(fixed(&input), expected.as_slice(), "{datatype}");
        }
        let strings = decode(r#"{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["ab",""]}]}"#).unwrap();
        assert_eq!(strings.inputs[0].data(), &TensorData::Bytes(vec![Bytes::from("ab"), Bytes::new()]));
    }

    #[test]
    fn errors_name_the_tensor_the_field_and_the_values() {
        let cases = [
            (
                r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                "input 'x': shape calls for 3 elements, 'data' has 2",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1,2]}]}"#,
                "input 'x': 'data' has more elements than the shape's 1",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}"#,
                "input 'x': element 0: value 300 is out of range for UINT8",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}"#,
                "input 'x': element 0: expected an integer (INT32), got 1.5",
            ),
            (r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#, "input 'x': unknown datatype 'FLOAT'"),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":["yes"]}]}"#,
                "input 'x': element 0: expected a boolean (BOOL), got the string \"yes\"",
            ),
            (r#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[]}]}"#, "input 'x': shape [-1] has a negative dimension -1"),
            (r#"{"inputs":[{"name":"x","shape":[1001],"datatype":"FP32","data":[]}]}"#, "more than max_tensor_elements = 1000"),
            (r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#, "input 'x': has neither 'data' nor 'binary_data_size'"),
            (r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[null]}]}"#, "null is not a tensor element"),
            (
                r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1, 1.5e40]}]}"#,
                "element 1: value 1.5e40 is out of range for FP32",
            ),
            (r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[70000]}]}"#, "element 0: value 7e4 is out of range for FP16"),
            (r#"{"inputs": [}"#, "malformed inference request JSON"),
            (r#"{"inputs":[], "bogus": 1}"#, "unknown field `bogus`"),
        ];
        for (body, expected) in cases {
            let error = decode(body).unwrap_err();
            assert!(error.contains(expected), "{body}\n  got: {error}\n  expected to contain: {expected}");
        }
    }

    #[test]
    fn binary_inputs_are_slices_of_the_body() {
        let header = r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}],"outputs":[{"name":"y","parameters":{"binary_data":true,"classification":3}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&2.5f32.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"abc");
        body.extend_from_slice(&0u32.to_le_bytes());
        let Decoded { input, encoding, .. } = decode_request(Bytes::from(body), Some(header.len()), LIMITS).unwrap();
        assert_eq!(fixed(&input), [1.5f32.to_le_bytes(), 2.5f32.to_le_bytes()].concat().as_slice());
        assert_eq!(input.inputs[1].data(), &TensorData::Bytes(vec![Bytes::from("abc"), Bytes::new()]));
        assert!(encoding.is_binary("y"));
        assert!(!encoding.is_binary("z"));
        assert_eq!(input.outputs[0].class_count, Some(3));

        let short = decode_request(Bytes::from(header.to_string()), Some(header.len()), LIMITS).unwrap_err();
        assert!(short.message.contains("binary_data_size 8 runs past the end of the body"), "{}", short.message);
        let too_long = decode_request(Bytes::from(header.to_string()), Some(header.len() + 1), LIMITS).unwrap_err();
        assert!(too_long.message.contains("Inference-Header-Content-Length is"), "{}", too_long.message);
    }
}
