//! ONNX Runtime backend for Yunmo, through the `ort` crate with `libonnxruntime` loaded at run time.
//!
//! [`OnnxFactory`] implements [`BackendFactory`] for the `"onnx"` format: it reads a model's signature by
//! opening a session on it (so a file that inspects can also load) and loads [`OnnxBackend`] instances,
//! each holding its own `ort` session, to be driven from one worker thread.
//! Tensors cross into ONNX Runtime as raw little-endian bytes: one copy in, one copy out, no per-element
//! conversion. `BYTES` tensors map to ONNX string tensors and must be UTF-8.
//! This crate does no network IO; the library comes from a path the caller gives.

mod convert;

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use yunmo_backend::{BackendError, BackendFactory, BatchBackend, LoadOptions};
use yunmo_types::{Signature, Tensor, TensorSpec};

/// ONNX Runtime's own library, loaded once per process.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment(library: &Path) -> Result<Environment, BackendError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let builder = ort::init_from(library).map_err(|error| format!("cannot load ONNX Runtime from '{}': {error}", library.display()))?;
        builder.with_name("yunmo").build().map_err(|error| format!("cannot start ONNX Runtime: {error}"))
    });
    result.clone().map_err(BackendError::Runtime)
}

/// Loads ONNX models with ONNX Runtime.
#[derive(Clone)]
pub struct OnnxFactory {
    environment: Environment,
}

impl OnnxFactory {
    /// Loads `libonnxruntime` from `library` (once per process; later calls must name the same file).
    pub fn new(library: &Path) -> Result<OnnxFactory, BackendError> {
        let environment = environment(library)?;
        Ok(OnnxFactory { environment })
    }

    /// Writes `input` as ONNX Runtime's extended graph optimisations leave it (constant folding, redundant
    /// nodes removed, node fusions; not the hardware-specific layouts of the last level, so the file stays
    /// portable) to `output`. Blocking.
    pub fn optimise_graph(&self, input: &Path, output: &Path) -> Result<(), BackendError> {
        Session::builder(&self.environment)
            .and_then(|builder| builder.with_optimization_level(GraphOptimizationLevel::Level2).map_err(Into::into))
            .and_then(|builder| builder.with_optimized_model_path(output).map_err(Into::into))
            .and_then(|mut builder| builder.commit_from_file(input))
            .map(drop)
            .map_err(|error| BackendError::InvalidModel(format!("ONNX Runtime could not optimise the graph: {error}")))
    }

    fn session(&self, path: &Path, options: &LoadOptions) -> Result<Session, BackendError> {
        let mut builder = Session::builder(&self.environment)
            .and_then(|builder| builder.with_optimization_level(GraphOptimizationLevel::All).map_err(Into::into))
            .map_err(|error| BackendError::Runtime(error.to_string()))?;
        if options.intra_op_threads > 0 {
            builder = builder.with_intra_threads(options.intra_op_threads).map_err(|error| BackendError::Runtime(error.to_string()))?;
        }
        builder.commit_from_file(path).map_err(|error| {
            // ONNX Runtime names the file in its message; the client knows it by another name.
            let message = error.to_string().replace(&format!("Load model from {} failed:", path.display()), "");
            BackendError::InvalidModel(message.trim().to_string())
        })
    }
}

impl BackendFactory for OnnxFactory {
    fn format(&self) -> &'static str {
        "onnx"
    }

    fn platform(&self) -> &'static str {
        "onnx_onnxv1"
    }

    fn sniff(&self, head: &[u8]) -> bool {
        // A serialized ModelProto starts with field 1 (ir_version, varint): tag byte 0x08.
        head.first() == Some(&0x08)
    }

    fn inspect(&self, path: &Path) -> Result<Signature, BackendError> {
        let session = self.session(path, &LoadOptions { intra_op_threads: 1 })?;
        signature(&session)
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Box<dyn BatchBackend>, BackendError> {
        let session = self.session(path, options)?;
        let signature = signature(&session)?;
        Ok(Box::new(OnnxBackend { session, signature }))
    }
}

fn signature(session: &Session) -> Result<Signature, BackendError> {
    let specs = |outlets: &[ort::value::Outlet]| -> Result<Vec<TensorSpec>, BackendError> {
        outlets.iter().map(|outlet| convert::spec(outlet.name(), outlet.dtype())).collect()
    };
    Ok(Signature { inputs: specs(session.inputs())?, outputs: specs(session.outputs())? })
}

/// One loaded ONNX Runtime session.
pub struct OnnxBackend {
    session: Session,
    signature: Signature,
}

impl BatchBackend for OnnxBackend {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
        let allocator = self.session.allocator();
        let mut values = Vec::with_capacity(inputs.len());
        for tensor in &inputs {
            values.push((tensor.name().to_string(), convert::to_value(allocator, tensor)?));
        }
        drop(inputs);
        let mut results = self.session.run(values).map_err(|error| BackendError::Inference(error.to_string()))?;
        outputs
            .iter()
            .map(|name| {
                let value = results
                    .remove(name.as_str())
                    .ok_or_else(|| BackendError::Inference(format!("the model produced no output '{name}'")))?;
                convert::from_value(name, &value)
            })
            .collect()
    }
}
