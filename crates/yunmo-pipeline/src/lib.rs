//! Built-in pipeline steps: pure, synchronous functions that a pipeline runs off the async runtime.
//!
//! - [`vision`]: an encoded image (JPEG, PNG, WebP) to a model's input tensor: decode within limits, resize
//!   (the shorter side to a length, or exactly), centre-crop, scale and normalise per channel, NCHW or
//!   NHWC, FP32 or UINT8.
//! - [`text`]: tokenisation with a `tokenizer.json` and pooling of token states.
//! - [`post`]: softmax, sigmoid, the mean of an ensemble and the top k classes with labels.
//! - [`entities`]: a token classifier's scores to entity spans in the text.
//! - [`spec`]: a pipeline's declaration (steps mapping their inputs and outputs to pipeline values), checked
//!   as a graph against the models it names.
//! - [`run`]: a built-in step run on pipeline values (the caller runs model steps).

pub mod entities;
pub mod post;
pub mod resample;
pub mod run;
pub mod spec;
pub mod text;
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
