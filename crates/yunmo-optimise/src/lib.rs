//! Optimisations of ONNX models, as pure rewrites of the graph (prost types of `onnx.proto`): the result is
//! a new model, never the parent changed in place.
//!
//! - [`quantize::dynamic_int8`]: MatMul weights to int8 per output column, activations quantised at run time
//!   (`DynamicQuantizeLinear` → `MatMulInteger` → rescale), what ONNX Runtime's `quantize_dynamic` does.
//! - [`prune::prune_mlp`]: structured pruning of dense ReLU layers (`MatMul` → `Add` → `Relu` → `MatMul`):
//!   the hidden units that matter least are removed, so the result is a smaller dense graph (zeroed weights
//!   would give no speed-up).
//! - [`qdq::static_int8`]: static int8 quantisation of CNNs in QDQ form, with activation ranges measured
//!   on a calibration sample (the caller runs [`qdq::calibration_model`] and gathers the ranges).

pub mod prune;
pub mod qdq;
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

/// The llama.cpp types `requantize` writes.
pub const GGUF_TYPES: [&str; 6] = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "F16"];

/// What an optimisation job does, as sent in `params` of `POST /api/v1/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimiseParams {
    /// `dynamic_int8`, `static_int8`, `prune`, `ort_optimize` (ONNX) or `requantize` (GGUF).
    pub method: Method,
    /// Re-quantisation: the llama.cpp type to write (`Q8_0`, `Q6_K`, `Q5_K_M`, `Q4_K_M`, `Q4_0`, `F16`).
    #[serde(default, rename = "type")]
    pub gguf_type: Option<String>,
    /// Re-quantisation: the largest relative rise of perplexity accepted (default 0.25: 25%).
    #[serde(default)]
    pub max_perplexity_increase: Option<f64>,
    /// Re-quantisation: the text perplexity is measured on (default: a built-in English passage).
    #[serde(default)]
    pub text: Option<String>,
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
    /// int8 Conv, MatMul and Gemm weights and uint8 activations at ranges measured on a calibration sample.
    StaticInt8,
    /// Structured pruning of dense ReLU layers.
    Prune,
    /// A GGUF model written again in another llama.cpp quantisation type.
    Requantize,
    /// ONNX Runtime's own graph optimisations (extended level), saved.
    OrtOptimize,
}

impl Method {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::DynamicInt8 => "dynamic_int8",
            Method::StaticInt8 => "static_int8",
            Method::Prune => "prune",
            Method::Requantize => "requantize",
            Method::OrtOptimize => "ort_optimize",
        }
    }

    /// The artifact format it applies to (`onnx` or `gguf`).
    pub fn format(self) -> &'static str {
        match self {
            Method::DynamicInt8 | Method::StaticInt8 | Method::Prune | Method::OrtOptimize => "onnx",
            Method::Requantize => "gguf",
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
        let requantize = self.method == Method::Requantize;
        match (&self.gguf_type, requantize) {
            (None, true) => return param("params.type", "requantize needs the type to write, e.g. Q8_0 or Q4_K_M".into()),
            (Some(_), false) => return param("params.type", "applies to requantize only".into()),
            (Some(kind), true) if !GGUF_TYPES.iter().any(|name| name.eq_ignore_ascii_case(kind)) => {
                return param("params.type", format!("must be one of {}, got '{kind}'", GGUF_TYPES.join(", ")));
            }
            _ => {}
        }
        for (field, given) in [
            ("params.min_cosine", self.min_cosine.is_some()),
            ("params.min_top1", self.min_top1.is_some()),
            ("params.probe_batch", self.probe_batch.is_some()),
        ] {
            if given && requantize {
                return param(field, "does not apply to requantize (its check is max_perplexity_increase)".into());
            }
        }
        for (field, given) in
            [("params.max_perplexity_increase", self.max_perplexity_increase.is_some()), ("params.text", self.text.is_some())]
        {
            if given && !requantize {
                return param(field, "applies to requantize only".into());
            }
        }
        if let Some(rise) = self.max_perplexity_increase
            && !(rise.is_finite() && rise >= 0.0)
        {
            return param("params.max_perplexity_increase", format!("must be a number of at least 0, got {rise}"));
        }
        if self.text.as_ref().is_some_and(|text| text.len() > 100_000) {
            return param("params.text", "must be at most 100000 bytes".into());
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
        Method::StaticInt8 => return Err(OptimiseError::NotApplicable("static_int8 needs ranges from a calibration run: use qdq".into())),
        Method::Requantize => return Err(OptimiseError::NotApplicable("requantize rewrites GGUF files, not ONNX graphs".into())),
        Method::OrtOptimize => return Err(OptimiseError::NotApplicable("ort_optimize runs in ONNX Runtime, not as a rewrite here".into())),
    };
    model.producer_name = Some("yunmo".into());
    Ok((model.encode_to_vec(), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<(), String> {
        let params: OptimiseParams = serde_json::from_str(json).map_err(|error| error.to_string())?;
        params.validate().map_err(|error| error.to_string())
    }

    #[test]
    fn options_are_checked_against_the_method_with_the_field_named() {
        assert!(check(r#"{"method": "prune", "keep_fraction": 0.5}"#).is_ok());
        assert!(check(r#"{"method": "requantize", "type": "Q8_0"}"#).is_ok());
        assert_eq!(
            check(r#"{"method": "prune", "keep_fraction": 0}"#).unwrap_err(),
            "params.keep_fraction: must be above 0 and at most 1, got 0"
        );
        assert_eq!(
            check(r#"{"method": "dynamic_int8", "keep_fraction": 0.5}"#).unwrap_err(),
            "params.keep_fraction: applies to prune only"
        );
        assert!(check(r#"{"method": "requantize"}"#).unwrap_err().starts_with("params.type: requantize needs"));
        assert_eq!(check(r#"{"method": "prune", "type": "Q8_0"}"#).unwrap_err(), "params.type: applies to requantize only");
        assert_eq!(check(r#"{"method": "prune", "min_cosine": 2}"#).unwrap_err(), "params.min_cosine: must be between 0 and 1, got 2");
        assert!(check(r#"{"method": "static_int8"}"#).is_ok());
        assert!(check(r#"{"method": "int4"}"#).unwrap_err().contains("unknown variant"));
        assert_eq!(
            check(r#"{"method": "requantize", "type": "Q4_K"}"#).unwrap_err(),
            "params.type: must be one of Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, F16, got 'Q4_K'"
        );
        assert!(
            check(r#"{"method": "requantize", "type": "q8_0", "min_cosine": 0.9}"#)
                .unwrap_err()
                .starts_with("params.min_cosine: does not apply")
        );
        assert!(check(r#"{"method": "prune", "epochs": 3}"#).unwrap_err().contains("unknown field"));
    }
}
