//! Every service method that names a model refuses a caller without access, whatever transport calls it.
//!
//! The service's methods reach a model only through a `Target`, which only `authorize` makes, for one caller
//! and one action. These tests read the service's source for every public method of `InferenceService`:
//! each must take the request's `Call` (or be one of the few listed in `NEEDS_NO_CALL`), and each that takes
//! a `Target` must be in `run`, which calls it with targets it must refuse. A new method that skips the check
//! fails here: without a `Call` it is not listed, and with a `Target` it must refuse the cases below.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::EchoFactory;
use yunmo_auth::{AuthConfig, Gate, Principal};
use yunmo_registry::{ModelPatch, NewModel, Registry, RegistryConfig};
use yunmo_service::{
    Action, Call, Code, EmbedInput, InferenceService, PromptInput, ServiceConfig, ServiceError, Target, UploadOptions, WorkerConfig,
};
use yunmo_types::{DataType, InferInput, Limits, ModelRef, Scope, Sharing, Tensor, TensorData, VersionConfig};

/// Public methods of `InferenceService` that take no `Call`, and why that is safe.
const NEEDS_NO_CALL: [&str; 9] = [
    "new",                   // constructs the service
    "refresh_gauges",        // metrics of loaded models, for /metrics (scope-checked by the transport)
    "is_loaded",             // takes a version record the caller already got through a checked method
    "check_repository_load", // validates parameter names; touches nothing
    "apply_change",          // a change notice from the metadata store: drops caches, answers nobody
    "apply_desired_states",  // loads what the metadata store says at start; no caller, nothing returned
    "alert_conditions",      // the server's own alert loop: its figures, answering nobody
    "evaluate_alerts",       // the same loop recording what fired; callers read alerts through `alerts(call)`
    "jobs_config",           // the [jobs] settings (upload limits), no tenant's data
];
/// `generate` and `constrain` take a `Prompt`, which only `prepare_prompt` makes, after the `Infer` check.
const NEEDS_NO_CALL_PROMPT: [&str; 2] = ["generate", "constrain"];

/// Every public method of `impl InferenceService` in the service's source: (name, parameter list).
fn service_methods() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut methods = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut rest = source.as_str();
        while let Some(start) = rest.find("impl InferenceService {") {
            let block = &rest[start..];
            // The block ends at the first `}` at the start of a line.
            let end = block.find("\n}\n").unwrap_or(block.len());
            let body = &block[..end];
            for (index, _) in body.match_indices("    pub ") {
                let line = &body[index..];
                let Some(fn_at) = line.find("fn ") else { continue };
                if fn_at > 20 {
                    continue;
                }
                let signature = &line[fn_at + 3..];
                let name: String = signature.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let open = signature.find('(').unwrap();
                let close = signature[open..].find(')').unwrap() + open;
                methods.push((name, signature[open + 1..close].split_whitespace().collect::<Vec<_>>().join(" ")));
            }
            rest = &block[end..];
        }
    }
    assert!(methods.len() > 20, "the source scan found too few methods: {methods:?}");
    methods
}

#[test]
fn every_public_method_takes_the_call_and_every_target_method_is_tested() {
    let mut untested = BTreeSet::new();
    for (name, params) in service_methods() {
        let takes_call = params.contains("call: &Call") || params.contains("call: &mut Call") || params.contains("call: &crate::Call");
        let exempt =
            NEEDS_NO_CALL.contains(&name.as_str()) || (NEEDS_NO_CALL_PROMPT.contains(&name.as_str()) && params.contains("prompt: &Prompt"));
        assert!(takes_call || exempt, "InferenceService::{name}({params}) takes no Call: it cannot check who is calling");
        if params.contains("&Target") && !TARGET_METHODS.contains(&name.as_str()) {
            untested.insert(name);
        }
    }
    assert!(untested.is_empty(), "methods taking a Target that the refusal tests do not call (add them to run): {untested:?}");
}

/// Every method that takes a `Target`, with the action it needs.
const TARGET_METHODS: [&str; 29] = [
    "model_available",
    "model_statistics",
    "infer",
    "embed",
    "prepare_prompt",
    "tokenize",
    "model_metadata",
    "model_ready",
    "list_versions",
    "get_version",
    "load",
    "unload",
    "update_model",
    "delete_model",
    "stage_upload",
    "add_version",
    "check_new_version",
    "set_version_config",
    "delete_version",
    "set_tokenizer",
    "drift_report",
    "set_drift_reference",
    "reset_drift",
    "forecast",
    "signature",
    "labels",
    "route_status",
    "set_route",
    "promote",
];

/// Methods a `Read` target is enough for.
const READ_METHODS: [&str; 12] = [
    "model_available",
    "model_statistics",
    "tokenize",
    "model_metadata",
    "model_ready",
    "list_versions",
    "get_version",
    "drift_report",
    "forecast",
    "signature",
    "labels",
    "route_status",
];

/// Calls method `name` with `call` and `target`; what it returns besides an error does not matter here.
async fn run(service: &InferenceService, name: &str, call: &Call, target: &Target, upload: &Target) -> Result<(), ServiceError> {
    let tensor = Tensor::new("x", DataType::Fp32, vec![1, 1], TensorData::Fixed(1f32.to_le_bytes().to_vec().into())).unwrap();
    let staged = || async {
        let mut staging = service.stage_upload(&owner_call(), upload).await.unwrap();
        staging.write(b"ECHO").await.unwrap();
        staging.finish().await.unwrap()
    };
    match name {
        "infer" => service.infer(call, target, InferInput { id: None, inputs: vec![tensor], outputs: Vec::new() }).await.map(drop),
        "embed" => service.embed(call, target, EmbedInput::Texts(vec!["x".into()]), None).await.map(drop),
        "prepare_prompt" => service.prepare_prompt(call, target, PromptInput::Text("x".into())).await.map(drop),
        "tokenize" => service.tokenize(call, target, PromptInput::Text("x".into())).await.map(drop),
        "model_metadata" => service.model_metadata(call, target).await.map(drop),
        "model_ready" => service.model_ready(call, target).await.map(drop),
        "model_available" => service.model_available(call, target).await.map(drop),
        "model_statistics" => service.model_statistics(call, target).await.map(drop),
        "list_versions" => service.list_versions(call, target).await.map(drop),
        "get_version" => service.get_version(call, target, 1).await.map(drop),
        "load" => service.load(call, target).await.map(drop),
        "unload" => service.unload(call, target).await.map(drop),
        "update_model" => {
            service.update_model(call, target, ModelPatch { description: Some("x".into()), ..Default::default() }).await.map(drop)
        }
        "delete_model" => service.delete_model(call, target).await,
        "stage_upload" => service.stage_upload(call, target).await.map(drop),
        "add_version" => service.add_version(call, target, staged().await, UploadOptions::default()).await.map(drop),
        "check_new_version" => service.check_new_version(call, target, Some(9)).await,
        "set_version_config" => service.set_version_config(call, target, 1, VersionConfig::default()).await.map(drop),
        "delete_version" => service.delete_version(call, target, 1).await.map(drop),
        "set_tokenizer" => service.set_tokenizer(call, target, 1, "{}".into()).await.map(drop),
        "drift_report" => service.drift_report(call, target, 1).await.map(drop),
        "set_drift_reference" => {
            let input = InferInput { id: None, inputs: vec![tensor.clone()], outputs: Vec::new() };
            service.set_drift_reference(call, target, 1, input).await.map(drop)
        }
        "reset_drift" => service.reset_drift(call, target, 1).await.map(drop),
        "forecast" => service.forecast(call, target, 24).await.map(drop),
        "signature" => service.signature(call, target).await.map(drop),
        "labels" => service.labels(call, target).await.map(drop),
        "route_status" => service.route_status(call, target).await.map(drop),
        "set_route" => {
            let route = yunmo_types::Route {
                versions: vec![yunmo_types::Weighted { version: 1, weight: 100 }],
                stable: 0,
                shadow: None,
                sticky: None,
                guard: None,
                since: 0,
            };
            service.set_route(call, target, route).await.map(drop)
        }
        "promote" => service.promote(call, target, 1).await.map(drop),
        other => panic!("no case for {other} in run"),
    }
}

fn principal(tenant: &str) -> Arc<Principal> {
    Arc::new(Principal {
        key_id: format!("key-{tenant}"),
        tenant: tenant.into(),
        scopes: vec![Scope::ModelsRead, Scope::ModelsWrite, Scope::Infer],
        ..Principal::local()
    })
}

/// The owner's call: one principal for the whole test, so its targets match it.
fn owner_call() -> Call {
    static OWNER: std::sync::LazyLock<Arc<Principal>> = std::sync::LazyLock::new(|| principal("a"));
    Call::new(OWNER.clone(), "owner")
}

async fn service() -> (InferenceService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&RegistryConfig::new(dir.path())).await.unwrap();
    let auth = AuthConfig {
        enabled: true,
        open_paths: Vec::new(),
        flush_interval: Duration::from_secs(1),
        key_cache_ttl: Duration::ZERO,
        limits: yunmo_auth::LimitStore::Local,
        key_outage_ttl: Duration::ZERO,
    };
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
    let service = InferenceService::new(registry.clone(), vec![Arc::new(EchoFactory)], config, Gate::new(registry, auth).unwrap());
    let admin = Call::new(Arc::new(Principal::local()), "admin");
    for tenant in ["a", "b"] {
        service.create_tenant(&admin, tenant, &Limits::default()).await.unwrap();
    }
    let shared = Sharing { public: false, tenants: vec!["b".into()] };
    for (name, sharing) in [("secret", Sharing::default()), ("shared", shared), ("victim", Sharing::default())] {
        let model = NewModel { name: name.into(), tenant: "a".into(), sharing, ..NewModel::default() };
        service.create_model(&owner_call(), model).await.unwrap();
    }
    (service, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_access_is_refused_by_every_method() {
    let (service, _dir) = service().await;
    let owner = owner_call();
    let other = Call::new(principal("b"), "other");
    let secret = ModelRef::new("secret", None);

    // Another tenant's private model cannot be found, by its short or its qualified name, for any action.
    for name in ["secret", "a/secret"] {
        for action in [Action::Read, Action::Infer, Action::Write] {
            let error = service.authorize(&other, &ModelRef::new(name, None), action).await.err().expect("refused");
            assert_eq!(error.code, Code::ModelNotFound, "{name} {action:?}: {error:?}");
        }
    }
    // A model shared with the caller's tenant may be read and run, not changed.
    let error = service.authorize(&other, &ModelRef::new("shared", None), Action::Write).await.err().expect("refused");
    assert_eq!(error.code, Code::PermissionDenied, "{error:?}");
    let read_shared = service.authorize(&other, &ModelRef::new("shared", None), Action::Read).await.unwrap();

    let upload = service.authorize(&owner, &ModelRef::new("victim", None), Action::Write).await.unwrap();
    for name in TARGET_METHODS {
        // A target the owner was given, used by another caller (a transport mixing up requests).
        for action in [Action::Read, Action::Infer, Action::Write] {
            let owners = service.authorize(&owner, &secret, action).await.unwrap();
            let error =
                run(&service, name, &other, &owners, &upload).await.err().unwrap_or_else(|| panic!("{name} ran for another caller"));
            assert_eq!(error.code, Code::PermissionDenied, "{name} with the owner's {action:?} target: {error:?}");
        }
        // A target for reading, used for more.
        let result = run(&service, name, &other, &read_shared, &upload).await;
        if READ_METHODS.contains(&name) {
            assert!(!matches!(&result, Err(e) if e.code == Code::PermissionDenied), "{name} needs only Read: {result:?}");
        } else {
            let error = result.err().unwrap_or_else(|| panic!("{name} ran with a Read target"));
            assert_eq!(error.code, Code::PermissionDenied, "{name} with a Read target: {error:?}");
        }
    }
    // The owner's private model is untouched by all of the above.
    let target = service.authorize(&owner, &secret, Action::Read).await.unwrap();
    assert_eq!(service.list_versions(&owner, &target).await.unwrap().len(), 0);
    assert!(target.record().description.is_empty());
}
