//! A test runtime the service tests share: `Echo` returns its FP32 input `x` as `y`, and panics on
//! [`POISON`].

use std::path::Path;

use yunmo_backend::{BackendError, BackendFactory, BatchBackend, LoadOptions};
use yunmo_types::{DataType, Signature, Tensor, TensorData, TensorSpec};

/// The value that makes [`Echo`] panic.
pub const POISON: f32 = 13.0;

fn signature() -> Signature {
    let spec = |name: &str| TensorSpec { name: name.into(), datatype: DataType::Fp32, shape: vec![-1, 1] };
    Signature { inputs: vec![spec("x")], outputs: vec![spec("y")] }
}

pub struct EchoFactory;

impl BackendFactory for EchoFactory {
    fn format(&self) -> &'static str {
        "echo"
    }
    fn platform(&self) -> &'static str {
        "echo"
    }
    fn sniff(&self, head: &[u8]) -> bool {
        head.starts_with(b"ECHO")
    }
    fn inspect(&self, _path: &Path) -> Result<Signature, BackendError> {
        Ok(signature())
    }
    fn load(&self, _path: &Path, _options: &LoadOptions) -> Result<Box<dyn BatchBackend>, BackendError> {
        Ok(Box::new(Echo(signature())))
    }
}

/// Returns its input as `y`; panics when any element is [`POISON`].
pub struct Echo(Signature);

impl BatchBackend for Echo {
    fn signature(&self) -> &Signature {
        &self.0
    }
    fn infer(&mut self, inputs: Vec<Tensor>, _outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
        let input = inputs.into_iter().next().expect("one input");
        let TensorData::Fixed(bytes) = input.data() else { unreachable!("FP32 input") };
        if bytes.chunks_exact(4).any(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) == POISON) {
            panic!("the test runtime met its poison value");
        }
        Ok(vec![Tensor::new("y", DataType::Fp32, input.shape().to_vec(), input.data().clone()).unwrap()])
    }
}
