//! Static int8 quantisation in a job's child: the calibration file's sample inputs are decoded as the V2
//! REST route decodes a request, the parent is run on them with a minimum and maximum reported for every
//! activation the plan quantises ([`yunmo_optimise::qdq`]), and the result is written with those ranges.

use std::path::Path;

use prost::Message;
use yunmo_backend::{BackendFactory, LoadOptions};
use yunmo_types::{Tensor, TensorData};

/// Most elements one calibration tensor may have (a batch of 256 RGB images of 512×512).
const MAX_TENSOR_ELEMENTS: usize = 256 * 3 * 512 * 512;

/// The requests of a calibration file, each as the model's input tensors.
pub fn read_samples(path: &Path) -> Result<Vec<Vec<Tensor>>, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot read the calibration file: {error}"))?;
    let limits = yunmo_api::kserve::decode::DecodeLimits { max_tensor_elements: MAX_TENSOR_ELEMENTS };
    let mut samples = Vec::new();
    for (index, document) in serde_json::Deserializer::from_slice(&bytes).into_iter::<&serde_json::value::RawValue>().enumerate() {
        let number = index + 1;
        let document = document.map_err(|error| format!("calibration_file: request {number} is not JSON: {error}"))?;
        let body = bytes::Bytes::copy_from_slice(document.get().as_bytes());
        let decoded = yunmo_api::kserve::decode::decode_request(body, None, limits)
            .map_err(|error| format!("calibration_file: request {number}: {}", error.message))?;
        samples.push(decoded.input.inputs);
    }
    if samples.is_empty() {
        return Err("calibration_file: the file holds no request".into());
    }
    Ok(samples)
}

/// The samples as one batch (every input's requests joined along the first dimension), at most `limit` rows.
pub fn join(samples: &[Vec<Tensor>], limit: usize) -> Option<Vec<Tensor>> {
    let first = samples.first()?;
    let mut joined = Vec::with_capacity(first.len());
    for (position, tensor) in first.iter().enumerate() {
        let (mut rows, mut fixed, mut strings) = (0i64, Vec::new(), Vec::new());
        for request in samples {
            let part = request.iter().find(|candidate| candidate.name() == tensor.name()).filter(|_| request.len() == first.len())?;
            if part.datatype() != tensor.datatype() || part.shape().get(1..) != tensor.shape().get(1..) || rows >= limit as i64 {
                return None;
            }
            let take = part.shape().first().copied()?.min(limit as i64 - rows);
            let share = |len: usize| len * take as usize / part.shape()[0].max(1) as usize;
            match part.data() {
                TensorData::Fixed(bytes) => fixed.extend_from_slice(&bytes[..share(bytes.len())]),
                TensorData::Bytes(values) => strings.extend(values[..share(values.len())].iter().cloned()),
            }
            rows += take;
        }
        let mut shape = tensor.shape().to_vec();
        shape[0] = rows;
        let data = match tensor.data() {
            TensorData::Fixed(_) => TensorData::Fixed(fixed.into()),
            TensorData::Bytes(_) => TensorData::Bytes(strings),
        };
        joined.push(Tensor::new(first[position].name().to_string(), tensor.datatype(), shape, data).ok()?);
    }
    Some(joined)
}

/// Calibrates `parent` on `samples` and writes its static int8 form to `result`; returns what was done.
pub fn quantize(library: &Path, parent: &Path, result: &Path, samples: &[Vec<Tensor>]) -> Result<serde_json::Value, String> {
    use yunmo_optimise::qdq;
    let bytes = std::fs::read(parent).map_err(|error| format!("cannot read the parent version: {error}"))?;
    let mut model =
        yunmo_proto::onnx::ModelProto::decode(bytes.as_slice()).map_err(|error| format!("the model cannot be read: {error}"))?;
    let plan = qdq::plan(&model).map_err(|error| error.to_string())?;
    let (calibrating, pairs) = qdq::calibration_model(&model, &plan).map_err(|error| error.to_string())?;
    let calibration_path = result.with_file_name("calibrating.onnx");
    std::fs::write(&calibration_path, calibrating.encode_to_vec())
        .map_err(|error| format!("cannot write the calibration model: {error}"))?;
    let factory = yunmo_backend_onnx::OnnxFactory::new(library).map_err(|error| error.to_string())?;
    let mut backend = factory
        .load(&calibration_path, &LoadOptions { intra_op_threads: 0 })
        .map_err(|error| format!("loading the calibration model: {error}"))?;
    let names: Vec<String> = pairs.iter().flatten().cloned().collect();
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); pairs.len()];
    let mut rows = 0i64;
    for (index, sample) in samples.iter().enumerate() {
        let outputs = backend.infer(sample.clone(), &names).map_err(|error| format!("calibration_file: request {}: {error}", index + 1))?;
        let scalar = |name: &str| -> Option<f32> {
            let tensor = outputs.iter().find(|tensor| tensor.name() == name)?;
            match tensor.data() {
                TensorData::Fixed(bytes) if bytes.len() == 4 => Some(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
                _ => None,
            }
        };
        for ([low, high], range) in pairs.iter().zip(ranges.iter_mut()) {
            let (Some(low), Some(high)) = (scalar(low), scalar(high)) else {
                return Err(format!("the calibration model gave no range for '{low}'"));
            };
            *range = (range.0.min(low), range.1.max(high));
        }
        rows += sample.first().and_then(|tensor| tensor.shape().first().copied()).unwrap_or(0);
    }
    drop(backend);
    let _ = std::fs::remove_file(&calibration_path);
    let ranges: qdq::Ranges = plan.tensors.iter().cloned().zip(ranges).collect();
    if let Some((name, _)) = ranges.iter().find(|(_, (low, high))| !(low.is_finite() && high.is_finite())) {
        return Err(format!("the calibration sample drives '{name}' to a value that is not finite; check the sample inputs"));
    }
    let mut summary = qdq::static_int8(&mut model, &ranges).map_err(|error| error.to_string())?;
    model.producer_name = Some("yunmo".into());
    std::fs::write(result, model.encode_to_vec()).map_err(|error| format!("cannot write the model: {error}"))?;
    summary["calibration_samples"] = serde_json::json!(rows);
    summary["calibration_requests"] = serde_json::json!(samples.len());
    Ok(summary)
}
