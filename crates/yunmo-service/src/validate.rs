//! Checks a request against the model's signature before it is queued.

use std::collections::{HashMap, HashSet};

use yunmo_types::{InferInput, Signature, TensorData, VersionConfig};

use crate::ServiceError;

/// The values a version's BYTES inputs may hold (`known_values` of its config), as sets built once at
/// load.
#[derive(Debug, Default)]
pub(crate) struct KnownValues {
    by_input: HashMap<String, HashSet<Vec<u8>>>,
}

impl KnownValues {
    pub(crate) fn new(config: &VersionConfig) -> KnownValues {
        let by_input = config
            .known_values
            .iter()
            .map(|(input, values)| (input.clone(), values.iter().map(|value| value.as_bytes().to_vec()).collect()))
            .collect();
        KnownValues { by_input }
    }

    /// Fails naming the first element of a listed input that is not among its values.
    fn check(&self, name: &str, data: &TensorData) -> Result<(), ServiceError> {
        if self.by_input.is_empty() {
            return Ok(());
        }
        let (Some(known), TensorData::Bytes(items)) = (self.by_input.get(name), data) else { return Ok(()) };
        match items.iter().position(|item| !known.contains(item.as_ref())) {
            None => Ok(()),
            Some(index) => {
                let value = String::from_utf8_lossy(&items[index]);
                let shown: String = value.chars().take(64).collect();
                Err(ServiceError::invalid(format!(
                    "input '{name}': element {index} ('{shown}') is not one of the {} values this version knows (known_values)",
                    known.len()
                )))
            }
        }
    }
}

/// What a request is checked against: the version's name, signature, config and known values.
pub(crate) struct Checks<'a> {
    pub(crate) model: &'a str,
    pub(crate) signature: &'a Signature,
    pub(crate) config: &'a VersionConfig,
    pub(crate) known: &'a KnownValues,
}

/// Checks inputs and requested outputs; returns the output names to compute, in response order.
pub(crate) fn check_request(checks: &Checks<'_>, input: &InferInput) -> Result<Vec<String>, ServiceError> {
    let Checks { model, signature, config, known } = *checks;
    let mut seen = HashSet::new();
    for tensor in &input.inputs {
        let name = tensor.name();
        known.check(name, tensor.data())?;
        if !seen.insert(name) {
            return Err(ServiceError::invalid(format!("input '{name}' is given more than once")));
        }
        let Some(spec) = signature.input(name) else {
            return Err(ServiceError::invalid(format!(
                "unexpected input '{name}' for model '{model}': its inputs are {}",
                names(signature.inputs.iter().map(|spec| spec.name.as_str()))
            )));
        };
        if tensor.datatype() != spec.datatype {
            return Err(ServiceError::invalid(format!("input '{name}': expected datatype {}, got {}", spec.datatype, tensor.datatype())));
        }
        if !spec.accepts_shape(tensor.shape()) {
            return Err(ServiceError::invalid(format!(
                "input '{name}': expected shape {:?} (-1 is any size), got {:?}",
                spec.shape,
                tensor.shape()
            )));
        }
        // An empty tensor where the model takes any size (a batch of 0) reaches no runtime: ONNX Runtime and
        // the batcher fail on it in ways that would be a 500.
        if let Some(axis) = tensor.shape().iter().zip(&spec.shape).position(|(given, declared)| *given == 0 && *declared != 0) {
            return Err(ServiceError::invalid(format!(
                "input '{name}': shape {:?} holds no elements (dimension {axis} is 0); send at least one",
                tensor.shape()
            )));
        }
        if config.max_batch_size > 0 && spec.shape.first() == Some(&-1) {
            let batch = tensor.shape()[0];
            if batch > i64::from(config.max_batch_size) {
                return Err(ServiceError::invalid(format!(
                    "input '{name}': batch size {batch} exceeds max_batch_size {}",
                    config.max_batch_size
                )));
            }
        }
    }
    if let Some(missing) = signature.inputs.iter().find(|spec| !seen.contains(spec.name.as_str())) {
        return Err(ServiceError::invalid(format!(
            "missing input '{}' ({} {:?}) for model '{model}'",
            missing.name, missing.datatype, missing.shape
        )));
    }
    if input.outputs.is_empty() {
        return Ok(signature.outputs.iter().map(|spec| spec.name.clone()).collect());
    }
    let mut outputs = Vec::with_capacity(input.outputs.len());
    for requested in &input.outputs {
        if signature.output(&requested.name).is_none() {
            return Err(ServiceError::invalid(format!(
                "requested output '{}' is not an output of model '{model}': its outputs are {}",
                requested.name,
                names(signature.outputs.iter().map(|spec| spec.name.as_str()))
            )));
        }
        if outputs.contains(&requested.name) {
            return Err(ServiceError::invalid(format!("output '{}' is requested more than once", requested.name)));
        }
        outputs.push(requested.name.clone());
    }
    Ok(outputs)
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(|name| format!("'{name}'")).collect::<Vec<_>>().join(", ")
}
