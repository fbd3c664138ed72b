//! Optimisations of ONNX models, as pure rewrites of the graph (prost types of `onnx.proto`): the result is
//! a new model, never the parent changed in place.
//!
//! - [`quantize::dynamic_int8`]: MatMul weights to int8 per output column, activations quantised at run time
//!   (`DynamicQuantizeLinear` → `MatMulInteger` → rescale), what ONNX Runtime's `quantize_dynamic` does.
//! - [`prune::prune_mlp`]: structured pruning of dense ReLU layers (`MatMul` → `Add` → `Relu` → `MatMul`):
//!   the hidden units that matter least are removed, so the result is a smaller dense graph (zeroed weights
//!   would give no speed-up).

pub mod prune;
pub mod quantize;
pub mod tensor;

use serde::{Deserialize, Serialize};

/// Why an optimisation could not be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptimiseError {
    /// The model is not one this optimisation applies to; says why.
    #[error("{0}")]
    NotApplicable(String),
    /// An option is out of bounds.
    #[error("{field}: {message}")]
    Param {
        /// The option, as `params.<name>`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The file is not an ONNX model this code can read.
    #[error("the model cannot be read: {0}")]
    Unreadable(String),
}

/// What an optimisation job does, as sent in `params` of `POST /api/v1/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimiseParams {
    /// `dynamic_int8` or `prune`.
    pub method: Method,
    /// Pruning: share of each hidden layer's units kept (0 < keep ≤ 1, default 0.5).
    #[serde(default)]
    pub keep_fraction: Option<f64>,
    /// Quantisation: weights with fewer elements stay in float (default 1024).
    #[serde(default)]
    pub min_elements: Option<usize>,
    /// The lowest output agreement (cosine of each output with the parent's) accepted (default 0.99).
    #[serde(default)]
    pub min_cosine: Option<f64>,
    /// The lowest top-1 agreement with the parent accepted, for outputs with classes (default 0.95).
    #[serde(default)]
    pub min_top1: Option<f64>,
    /// Keep a result that breaks the agreement thresholds.
    #[serde(default)]
    pub force: bool,
    /// Rows of the larger probe batch in the report (default 32).
    #[serde(default)]
    pub probe_batch: Option<usize>,
}

/// The optimisations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// int8 MatMul weights, activations quantised at run time.
    DynamicInt8,
    /// Structured pruning of dense ReLU layers.
    Prune,
}

impl Method {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::DynamicInt8 => "dynamic_int8",
            Method::Prune => "prune",
        }
    }
}

impl OptimiseParams {
    /// Checks the bounds and that each option applies to the method.
    pub fn validate(&self) -> Result<(), OptimiseError> {
        let param = |field: &str, message: String| Err(OptimiseError::Param { field: field.into(), message });
        if let Some(keep) = self.keep_fraction {
            if self.method != Method::Prune {
                return param("params.keep_fraction", "applies to prune only".into());
            }
            if !(keep > 0.0 && keep <= 1.0) {
                return param("params.keep_fraction", format!("must be above 0 and at most 1, got {keep}"));
            }
        }
        if self.min_elements.is_some() && self.method != Method::DynamicInt8 {
            return param("params.min_elements", "applies to dynamic_int8 only".into());
        }
        for (field, value) in [("params.min_cosine", self.min_cosine), ("params.min_top1", self.min_top1)] {
            if let Some(value) = value
                && !(0.0..=1.0).contains(&value)
            {
                return param(field, format!("must be between 0 and 1, got {value}"));
            }
        }
        if let Some(batch) = self.probe_batch
            && !(1..=1024).contains(&batch)
        {
            return param("params.probe_batch", format!("must be between 1 and 1024, got {batch}"));
        }
        Ok(())
    }
}

/// Applies `params.method` to an encoded ONNX model; returns the new model, encoded, and what was changed.
pub fn optimise(model: &[u8], params: &OptimiseParams) -> Result<(Vec<u8>, serde_json::Value), OptimiseError> {
    use prost::Message;
    params.validate()?;
    let mut model = yunmo_proto::onnx::ModelProto::decode(model).map_err(|error| OptimiseError::Unreadable(error.to_string()))?;
    let summary = match params.method {
        Method::DynamicInt8 => quantize::dynamic_int8(&mut model, params.min_elements.unwrap_or(1024))?,
        Method::Prune => prune::prune_mlp(&mut model, params.keep_fraction.unwrap_or(0.5))?,
    };
    model.producer_name = Some("yunmo".into());
    Ok((model.encode_to_vec(), summary))
}
