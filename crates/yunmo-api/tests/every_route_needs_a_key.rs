//! With auth on, no route serves without a valid key. The routes are enumerated from the router's source
//! (every `.route("…", …)` in this crate, checked against the number of `.route(` calls so none is
//! missed), then each is called with every method, without a key and with a bad one: all must answer 401,
//! except the configured open paths and the public documents (the console's files and the OpenAPI
//! document, which hold no data), which must not.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;
use yunmo_api::{ApiConfig, AppState};

/// `(path, source file)` of every route declared in `src/`.
fn declared_routes() -> Vec<(String, String)> {
    let mut routes = Vec::new();
    let mut calls = 0;
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            calls += text.matches(".route(").count();
            for piece in text.split(".route(\"").skip(1) {
                let route = piece.split('"').next().unwrap();
                routes.push((route.to_string(), path.display().to_string()));
            }
        }
    }
    assert_eq!(routes.len(), calls, "every .route( call must name its path as a string literal: {routes:?}");
    assert!(routes.len() >= 40, "expected the whole API, found {} routes", routes.len());
    routes
}

async fn state(dir: &Path) -> AppState {
    let registry = yunmo_registry::Registry::open(&yunmo_registry::RegistryConfig::new(dir)).await.unwrap();
    let config = yunmo_auth::AuthConfig {
        enabled: true,
        open_paths: vec!["/v2/health/*".into()],
        flush_interval: Duration::from_millis(100),
        key_cache_ttl: Duration::from_secs(5),
        limits: yunmo_auth::LimitStore::Local,
        key_outage_ttl: Duration::ZERO,
    };
    let gate = yunmo_auth::Gate::new(registry.clone(), config).unwrap();
    let service = yunmo_service::InferenceService::new(
        registry,
        Vec::new(),
        yunmo_service::ServiceConfig {
            workers: yunmo_service::WorkerConfig {
                queue_capacity: 4,
                intra_op_threads: 1,
                memory_budget_bytes: 0,
                idle_unload: Duration::ZERO,
            },
            request_timeout: Duration::from_secs(5),
            drift: yunmo_drift::DriftSettings::default(),
            alerts: Default::default(),
            jobs: Default::default(),
            image_limits: Default::default(),
            responses_retention: std::time::Duration::from_secs(60),
        },
        gate.clone(),
    );
    AppState::new(yunmo_api::AppParts {
        service,
        gate,
        config: Arc::new(ApiConfig {
            max_body_bytes: 1 << 20,
            max_upload_bytes: 1 << 20,
            max_tensor_elements: 1 << 16,
            max_header_bytes: 16384,
            max_headers: 100,
            max_json_bytes: 1 << 16,
        }),
        budget: yunmo_api::body::InflightBudget::new(1 << 22),
        prometheus: None,
        shutting_down: Arc::new(AtomicBool::new(false)),
        ollama_key: None,
    })
}

#[tokio::test]
async fn no_route_serves_without_a_valid_key() {
    let dir = tempfile::tempdir().unwrap();
    let app = yunmo_api::router(state(dir.path()).await);
    let open = ["/v2/health/live", "/v2/health/ready", "/ui", "/ui/", "/ui/app.js", "/ui/session.json", "/api/v1/openapi.json"];
    let mut checked = 0;
    for (route, file) in declared_routes() {
        let path = route.replace("{name}", "m").replace("{version}", "1").replace("{id}", "k").replace("{*path}", "app.js");
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for header in
                [None, Some(("authorization", "Bearer ym_0000_0000000000000000000000000000000000")), Some(("api-key", "nonsense"))]
            {
                let mut request = Request::builder().method(method.clone()).uri(&path);
                if let Some((name, value)) = header {
                    request = request.header(name, value);
                }
                let response = app.clone().oneshot(request.body(Body::from("{}")).unwrap()).await.unwrap();
                let status = response.status();
                if open.contains(&path.as_str()) {
                    assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path} is open");
                    if method == Method::GET {
                        assert!(status.is_success() || status.is_redirection(), "GET {path} answered {status}");
                    }
                } else {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} ({file}) answered {status} without a valid key");
                    assert!(response.headers().contains_key("www-authenticate"));
                }
                checked += 1;
            }
        }
    }
    // Paths no route declares are refused the same way; a missing console file is a plain 404.
    let response = app.clone().oneshot(Request::get("/no/such/route").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.oneshot(Request::get("/ui/no-such-file.js").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(checked > 500, "{checked}");
}

#[test]
fn every_route_is_described_in_the_openapi_document() {
    let document = yunmo_api::openapi::document();
    let paths = document["paths"].as_object().unwrap();
    for (route, file) in declared_routes() {
        // The console's own files are not an API.
        if route == "/ui" || route == "/ui/" || route == "/ui/{*path}" {
            continue;
        }
        let operations = paths.get(&route).unwrap_or_else(|| panic!("{route} ({file}) is not in docs/openapi.json"));
        assert!(operations.as_object().is_some_and(|operations| !operations.is_empty()), "{route}");
    }
    // Every inference operation is tagged by its protocol, and answers errors in that protocol's body.
    for (path, operations) in paths.iter().filter(|(path, _)| !path.starts_with("/api/v1/")) {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(operation["tags"][0].is_string(), "{method} {path} has no protocol tag");
            let reference = operation["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap_or("");
            let schema = &document["components"]["schemas"][reference.trim_start_matches("#/components/schemas/")];
            assert!(schema["required"].as_array().is_some_and(|required| required.contains(&"error".into())), "{method} {path}: {schema}");
        }
    }
}
