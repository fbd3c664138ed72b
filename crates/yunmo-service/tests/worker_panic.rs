//! A runtime that panics inside a call fails that request with `inference_failed` and leaves the model
//! serving: the worker thread survives and gives its instance back. The runtime is a test backend that
//! panics on a chosen input value.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use yunmo_backend::{BackendError, BackendFactory, BatchBackend, LoadOptions};
use yunmo_registry::{NewModel, Registry, RegistryConfig};
use yunmo_service::{Code, InferenceService, ServiceConfig, UploadOptions, WorkerConfig};
use yunmo_types::{DataType, InferInput, ModelRef, Signature, Tensor, TensorData, TensorSpec, VersionConfig};

/// The value that makes [`Echo`] panic.
const POISON: f32 = 13.0;

fn signature() -> Signature {
    let spec = |name: &str| TensorSpec { name: name.into(), datatype: DataType::Fp32, shape: vec![-1, 1] };
    Signature { inputs: vec![spec("x")], outputs: vec![spec("y")] }
}

struct EchoFactory;

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
struct Echo(Signature);

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

fn request(value: f32) -> InferInput {
    let data = TensorData::Fixed(value.to_le_bytes().to_vec().into());
    InferInput { id: None, inputs: vec![Tensor::new("x", DataType::Fp32, vec![1, 1], data).unwrap()], outputs: Vec::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_runtime_fails_the_request_and_the_model_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&RegistryConfig::new(dir.path())).await.unwrap();
    let workers = WorkerConfig { queue_capacity: 8, intra_op_threads: 1, memory_budget_bytes: 0, idle_unload: Duration::ZERO };
    let config = ServiceConfig { workers, request_timeout: Duration::from_secs(10) };
    let service = InferenceService::new(registry.clone(), vec![Arc::new(EchoFactory)], config);
    service.create_model(NewModel { name: "echo".into(), ..NewModel::default() }).await.unwrap();
    let mut staging = registry.store().stage().await.unwrap();
    staging.write(b"ECHO model").await.unwrap();
    let options = UploadOptions { config: VersionConfig { instance_count: 1, ..VersionConfig::default() }, ..UploadOptions::default() };
    service.add_version("echo", staging.finish().await.unwrap(), options).await.unwrap();
    let model = ModelRef::new("echo".to_string(), None);

    // One instance: if a panic took the worker or its permit, the requests after it would wait until the
    // request timeout instead of being answered.
    for round in 0..3 {
        let error = service.infer(&model, request(POISON)).await.expect_err("the poison value panics");
        assert_eq!(error.code, Code::InferenceFailed, "round {round}: {error:?}");
        assert!(error.message.contains("panicked"), "{}", error.message);
        let served = tokio::time::timeout(Duration::from_secs(5), service.infer(&model, request(2.5)))
            .await
            .expect("the instance is free again after the panic")
            .expect("the model serves after the panic");
        let TensorData::Fixed(bytes) = served.outputs[0].data() else { unreachable!() };
        assert_eq!(bytes.as_ref(), 2.5f32.to_le_bytes());
    }
}
