//! Built-in pipeline steps: pure, synchronous functions that a pipeline runs off the async runtime.
//!
//! - [`vision`]: an encoded image (JPEG, PNG, WebP) to a model's input tensor: decode within limits, resize
//!   (the shorter side to a length, or exactly), centre-crop, scale and normalise per channel, NCHW or
//!   NHWC, FP32 or UINT8.

pub mod resample;
pub mod vision;

/// Why a step refused its input; the message names the step and the bound.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StepError {
    /// The input breaks a rule or a limit (a 400 to the caller).
    #[error("{0}")]
    Invalid(String),
    /// The step's own settings are wrong (refused when the pipeline is created).
    #[error("{0}")]
    Config(String),
}
