//! Wire formats and transports of Yunmo: the KServe V2 REST protocol (with Triton's binary tensor,
//! classification, model repository and generate extensions), the OpenAI API under `/v1`, the management
//! API under `/api/v1`, `/metrics`.
//!
//! Handlers decode the wire format, call [`yunmo_service::InferenceService`], and encode the result or map
//! the error through the one table in [`error`]. [`grpc`] serves the same service over gRPC. This is the only crate that knows HTTP or JSON shapes.

pub mod admin;
pub mod alerts;
pub mod anthropic;
pub mod auth;
pub mod body;
pub mod console;
pub mod cors;
pub mod drift;
pub mod error;
pub mod extract;
pub mod forecast;
pub mod grpc;
mod http_metrics;
pub mod jobs;
pub mod kserve;
pub mod ollama;
pub mod openai;
pub mod openapi;
mod openapi_inference;
pub mod request_id;
pub mod rerank;
pub mod responses;
pub mod route;
pub mod route_types;
pub mod schema;
pub mod stats;
pub mod tei;
pub mod tenancy;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use yunmo_service::{Code, InferenceService, ServiceError, metrics};

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest inference request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest model upload, in bytes.
    pub max_upload_bytes: u64,
    /// Most elements in one tensor.
    pub max_tensor_elements: usize,
    /// Most bytes of request headers (names and values).
    pub max_header_bytes: usize,
    /// Largest JSON body of the management API, in bytes.
    pub max_json_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
}

/// State shared by every handler: one `Arc`, so that the clones axum makes per request and per layer cost
/// one reference count.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// The state made of `parts`.
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppParts {
    /// The service layer.
    pub service: InferenceService,
    /// Authentication, access, limits, metering and audit.
    pub gate: yunmo_auth::Gate,
    /// HTTP limits.
    pub config: Arc<ApiConfig>,
    /// Request bytes held in memory across all requests (`server.max_inflight_bytes`).
    pub budget: body::InflightBudget,
    /// Renders `/metrics`.
    pub prometheus: Option<PrometheusHandle>,
    /// Set once a graceful shutdown starts: readiness turns false.
    pub shutting_down: Arc<AtomicBool>,
    /// `Authorization` for requests to the Ollama routes that carry no key (`ollama.key`).
    pub ollama_key: Option<axum::http::HeaderValue>,
}

impl AppState {
    /// Whether a graceful shutdown has started.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// The whole HTTP application.
/// Every route is authenticated except the open paths of the gate's config (see [`auth::authenticate`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(kserve::routes(&state))
        .merge(admin::routes())
        .merge(route::routes())
        .merge(tenancy::routes())
        .merge(stats::routes())
        .merge(drift::routes())
        .merge(jobs::routes())
        .merge(alerts::routes())
        .merge(forecast::routes())
        .merge(openai::routes(&state))
        .merge(ollama::routes(&state))
        .merge(anthropic::routes(&state))
        .merge(responses::routes(&state))
        .merge(rerank::routes(&state))
        .merge(tei::routes(&state))
        .route("/metrics", get(render_metrics))
        .merge(console::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), front))
        .with_state(state)
}

/// What every request passes through, in one layer (each axum middleware layer costs a clone of the
/// route stack per request): HTTP metrics, the header limits, authentication (and the audit of management
/// actions), the route group's body on a 405, and the request id ([`request_id`]): taken or made, in a span
/// around the request, echoed in `x-request-id`.
async fn front(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let id = request_id::RequestId::from_headers(request.headers());
    let id_header = id.header_value();
    request.extensions_mut().insert(id.clone());
    let request_method = method.clone();
    let mut response = id
        .scope(async move {
            match header_limits(&state, &request) {
                Some(refusal) => refusal,
                None => {
                    let path = request.uri().path().to_string();
                    // Never for a browser's request (it carries `Origin`): any web page could spend the bound
                    // key's quota from its visitors' machines.
                    if let Some(value) = &state.ollama_key
                        && auth::is_ollama_path(&path)
                        && auth::credentials(request.headers()).key().is_none()
                        && !request.headers().contains_key(axum::http::header::ORIGIN)
                    {
                        request.headers_mut().insert(axum::http::header::AUTHORIZATION, value.clone());
                    }
                    let response = auth::authenticate(State(state), request, next).await;
                    shape_method_not_allowed(&request_method, &path, response)
                }
            }
        })
        .await;
    response.headers_mut().insert(request_id::HEADER, id_header);
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    http_metrics::record(route, &method, response.status(), started.elapsed().as_secs_f64());
    response
}

/// Route prefixes followed by a model name.
const MODEL_PATHS: [&str; 3] = ["/v2/models/", "/v2/repository/models/", "/api/v1/models/"];
/// Path segments that may follow a model name in those routes.
const AFTER_MODEL: [&str; 12] =
    ["ready", "infer", "versions", "generate", "generate_stream", "load", "unload", "sharing", "forecast", "route", "stats", "config"];

/// Lets clients write a qualified model name (`tenant/name`) with a plain slash in a URL path, as
/// `tritonclient` does (it does not escape `/`): `/v2/models/a/iris/infer` becomes
/// `/v2/models/a%2Firis/infer` before routing. A model name never holds a slash, so two segments where one
/// is expected are a qualified name, unless the second is a word the routes use after a name (`infer`,
/// `versions`, …): a model named so is written `tenant%2Fname`. Call before the router.
pub fn qualify_model_path<B>(request: &mut axum::http::Request<B>) {
    let uri = request.uri();
    let path = uri.path();
    let Some(prefix) = MODEL_PATHS.iter().find(|prefix| path.starts_with(**prefix)) else { return };
    let rest = &path[prefix.len()..];
    let mut segments = rest.splitn(3, '/');
    let (Some(tenant), Some(name)) = (segments.next(), segments.next()) else { return };
    if tenant.is_empty() || name.is_empty() || AFTER_MODEL.contains(&name) {
        return;
    }
    let tail = segments.next().map(|tail| format!("/{tail}")).unwrap_or_default();
    let query = uri.query().map(|query| format!("?{query}")).unwrap_or_default();
    if let Ok(rewritten) = format!("{prefix}{tenant}%2F{name}{tail}{query}").parse() {
        *request.uri_mut() = rewritten;
    }
}

pub(crate) async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    let message = format!("no route for {} {path}", request.method());
    error::ApiError::new(ServiceError::new(Code::NotFound, message), auth::shape_of(path)).into_response()
}

/// A route's 405 (axum's, with the `Allow` header naming the methods it takes) gets the route group's body.
fn shape_method_not_allowed(method: &axum::http::Method, path: &str, response: Response) -> Response {
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let message = format!("{path} does not take {method}");
    let mut shaped = error::ApiError::new(ServiceError::new(Code::MethodNotAllowed, message), auth::shape_of(path)).into_response();
    if let Some(allow) = response.headers().get(axum::http::header::ALLOW) {
        shaped.headers_mut().insert(axum::http::header::ALLOW, allow.clone());
    }
    shaped
}

/// `/metrics` names every tenant's models, so it needs a key with the `metrics` scope (or `admin`), unless
/// the operator lists it in `auth.open_paths`.
async fn render_metrics(State(state): State<AppState>, request: Request) -> Response {
    if !state.gate.is_open(request.uri().path())
        && let Some(principal) = request.extensions().get::<Arc<yunmo_auth::Principal>>()
        && let Err(error) = principal.require(yunmo_types::Scope::Metrics)
    {
        return error::ApiError::kserve(error).into_response();
    }
    match &state.prometheus {
        Some(handle) => {
            state.service.refresh_gauges();
            ::metrics::gauge!(metrics::INFLIGHT_REQUEST_BYTES).set(state.budget.held() as f64);
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
        }
        None => (axum::http::StatusCode::NOT_FOUND, "metrics are disabled").into_response(),
    }
}

/// The 431 of a request whose headers pass `max_headers` or `max_header_bytes`, before authentication or any
/// handler reads them. The HTTP parser's own caps bound what is buffered before this runs.
fn header_limits(state: &AppState, request: &Request) -> Option<Response> {
    let headers = request.headers();
    let (count, limit_count) = (headers.len(), state.config.max_headers);
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    let message = if count > limit_count {
        format!("the request has {count} headers, more than max_headers = {limit_count}")
    } else if bytes > state.config.max_header_bytes {
        format!("the request headers hold {bytes} bytes, more than max_header_bytes = {}", state.config.max_header_bytes)
    } else {
        return None;
    };
    let shape = auth::shape_of(request.uri().path());
    Some(error::ApiError::new(ServiceError::new(Code::HeadersTooLarge, message), shape).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn qualified_model_names_may_use_a_plain_slash_in_paths() {
        let rewrite = |path: &str| {
            let mut request = axum::http::Request::builder().uri(path).body(()).unwrap();
            super::qualify_model_path(&mut request);
            request.uri().to_string()
        };
        assert_eq!(rewrite("/v2/models/a/iris/infer"), "/v2/models/a%2Firis/infer");
        assert_eq!(rewrite("/v2/models/a/iris/versions/2/ready"), "/v2/models/a%2Firis/versions/2/ready");
        assert_eq!(rewrite("/api/v1/models/a/iris?x=1"), "/api/v1/models/a%2Firis?x=1");
        assert_eq!(rewrite("/v2/repository/models/a/iris/load"), "/v2/repository/models/a%2Firis/load");
        assert_eq!(rewrite("/v2/models/a/iris/stats"), "/v2/models/a%2Firis/stats");
        for unchanged in [
            "/v2/models/iris/infer",
            "/v2/models/iris",
            "/api/v1/models/iris/versions/1/config",
            "/v2/models/a%2Firis/infer",
            "/v1/models/a/b",
            "/v2/models/iris/stats",
            "/v2/models/iris/config",
            "/v2/models/stats",
        ] {
            assert_eq!(rewrite(unchanged), unchanged);
        }
    }
}
