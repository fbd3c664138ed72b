//! A runtime that panics inside a call fails that request with `inference_failed` and leaves the model
//! serving: the worker thread survives and gives its instance back. The runtime is a test backend that
//! panics on a chosen input value.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{EchoFactory, POISON};
use yunmo_auth::{AuthConfig, Gate, LimitStore, Principal};
use yunmo_registry::{NewModel, Registry, RegistryConfig};
use yunmo_service::{Action, Call, Code, InferenceService, ServiceConfig, UploadOptions, WorkerConfig};
use yunmo_types::{DataType, InferInput, ModelRef, Tensor, TensorData, VersionConfig};

fn request(value: f32) -> InferInput {
    let data = TensorData::Fixed(value.to_le_bytes().to_vec().into());
    InferInput { id: None, inputs: vec![Tensor::new("x", DataType::Fp32, vec![1, 1], data).unwrap()], outputs: Vec::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_runtime_fails_the_request_and_the_model_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&RegistryConfig::new(dir.path())).await.unwrap();
    let workers = WorkerConfig { queue_capacity: 8, intra_op_threads: 1, memory_budget_bytes: 0, idle_unload: Duration::ZERO };
    let config = ServiceConfig {
        workers,
        request_timeout: Duration::from_secs(10),
        drift: yunmo_drift::DriftSettings::default(),
        alerts: Default::default(),
        jobs: Default::default(),
        image_limits: Default::default(),
        responses_retention: std::time::Duration::from_secs(60),
    };
    let auth = AuthConfig {
        enabled: false,
        open_paths: Vec::new(),
        flush_interval: Duration::from_secs(1),
        key_cache_ttl: Duration::ZERO,
        limits: LimitStore::Local,
        key_outage_ttl: Duration::ZERO,
    };
    let gate = Gate::new(registry.clone(), auth).unwrap();
    let service = InferenceService::new(registry, vec![Arc::new(EchoFactory)], config, gate);
    let call = Call::new(Arc::new(Principal::local()), "test");
    service.create_model(&call, NewModel { name: "echo".into(), ..NewModel::default() }).await.unwrap();
    let writable = service.authorize(&call, &ModelRef::new("echo", None), Action::Write).await.unwrap();
    let mut staging = service.stage_upload(&call, &writable).await.unwrap();
    staging.write(b"ECHO model").await.unwrap();
    let options = UploadOptions { config: VersionConfig { instance_count: 1, ..VersionConfig::default() }, ..UploadOptions::default() };
    service.add_version(&call, &writable, staging.finish().await.unwrap(), options).await.unwrap();
    let model = service.authorize(&call, &ModelRef::new("echo", None), Action::Infer).await.unwrap();

    // One instance: if a panic took the worker or its permit, the requests after it would wait until the
    // request timeout instead of being answered.
    for round in 0..3 {
        let error = service.infer(&call, &model, request(POISON)).await.expect_err("the poison value panics");
        assert_eq!(error.code, Code::InferenceFailed, "round {round}: {error:?}");
        assert!(error.message.contains("panicked"), "{}", error.message);
        let served = tokio::time::timeout(Duration::from_secs(5), service.infer(&call, &model, request(2.5)))
            .await
            .expect("the instance is free again after the panic")
            .expect("the model serves after the panic");
        let TensorData::Fixed(bytes) = served.outputs[0].data() else { unreachable!() };
        assert_eq!(bytes.as_ref(), 2.5f32.to_le_bytes());
    }
}
