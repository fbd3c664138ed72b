//! The backend traits of Yunmo: what a runtime must do to run a model.
//!
//! A [`BackendFactory`] knows one artifact format (`"onnx"`): it inspects an uploaded file
//! ([`BackendFactory::inspect`], which must reject anything it could not later load) and loads it into
//! [`BatchBackend`] instances. An instance runs on one worker thread and is called with whole requests.
//! Backends do no network IO and never see keys, tenants or wire formats.
#![warn(missing_docs)]

use std::path::Path;

use yunmo_types::{Signature, Tensor};

/// Why a backend call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The artifact could not be read as a model of this format.
    #[error("invalid model file: {0}")]
    InvalidModel(String),
    /// The model uses something this runtime cannot run.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// The runtime itself could not be started (library missing, wrong version).
    #[error("runtime unavailable: {0}")]
    Runtime(String),
    /// The inputs were rejected by the runtime.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Inference failed inside the runtime.
    #[error("inference failed: {0}")]
    Inference(String),
}

/// How to load one instance of a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Threads the runtime may use inside one call (0 = the runtime's default).
    pub intra_op_threads: usize,
}

/// Runs whole requests on one worker thread. Implemented by tensor runtimes.
pub trait BatchBackend: Send + 'static {
    /// The inputs and outputs of the loaded model.
    fn signature(&self) -> &Signature;

    /// Runs the model. `inputs` have been checked against [`BatchBackend::signature`] (names, data types,
    /// fixed dimensions); `outputs` names the outputs to return, in that order, each one of the signature's.
    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError>;
}

/// Knows one artifact format: checks uploads and loads instances.
pub trait BackendFactory: Send + Sync + 'static {
    /// The format name stored with each version (`"onnx"`).
    fn format(&self) -> &'static str;

    /// The V2 `platform` string for model metadata (`"onnx_onnxv1"`).
    fn platform(&self) -> &'static str;

    /// Whether `head` (the first bytes of a file) looks like this format.
    fn sniff(&self, head: &[u8]) -> bool;

    /// Reads the model at `path` and returns its signature; fails on anything [`BackendFactory::load`] could
    /// not load. Blocking: call it off the async runtime.
    fn inspect(&self, path: &Path) -> Result<Signature, BackendError>;

    /// Loads one instance. Blocking: call it off the async runtime.
    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Box<dyn BatchBackend>, BackendError>;
}
