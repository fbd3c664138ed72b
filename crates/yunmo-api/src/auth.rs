//! The HTTP side of [`yunmo_auth::Gate`]: a middleware that authenticates every request but the open
//! paths, a route layer that admits and meters inference requests, the audit of management actions, and
//! the [`Caller`] extractor handlers use to check model access.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use yunmo_auth::{Action, Credentials, Principal, UsageGuard};
use yunmo_registry::AuditEntry;
use yunmo_service::{Call, Code, Prompt, PromptInput, ServiceError, Target};
use yunmo_types::ModelRef;

use crate::AppState;
use crate::error::{ApiError, ErrorCode, Shape};
use crate::request_id::RequestId;

/// Whether `path` is one of Ollama's routes (`/` and `/api/...` but the management API's `/api/v1/`): their
/// errors take Ollama's shape, and `ollama.key` applies to them.
pub fn is_ollama_path(path: &str) -> bool {
    path == "/" || (path.starts_with("/api/") && !path.starts_with("/api/v1/"))
}

/// The error body a path's route group uses.
pub fn shape_of(path: &str) -> Shape {
    if (path.starts_with("/v1/models/") && path.ends_with(":predict")) || is_ollama_path(path) {
        Shape::KServe
    } else if path.starts_with("/v1/messages") {
        Shape::Anthropic
    } else if path.starts_with("/v1/") || path == "/v2/rerank" {
        Shape::OpenAi
    } else if path.starts_with("/api/") {
        Shape::Admin
    } else {
        Shape::KServe
    }
}

/// Credentials in HTTP headers: `Authorization: Bearer <key>` or `api-key: <key>`.
pub fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    Credentials {
        authorization: headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
        // `api-key` (Azure OpenAI's clients) or `x-api-key` (Anthropic's).
        api_key: headers.get("api-key").or_else(|| headers.get("x-api-key")).and_then(|v| v.to_str().ok()),
    }
}

/// Finds the caller of every request ([`yunmo_auth::Gate::caller`]: its key's, or on an open path without
/// a key the anonymous caller) and puts the [`Principal`] in its extensions.
/// Management actions (anything but GET under `/api/`, repository load/unload) are audited.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let open = state.gate.is_open(&path) || crate::console::is_public(&path);
    let principal = match state.gate.caller(open, credentials(request.headers())).await {
        Ok(principal) => principal,
        Err(error) => return ApiError::new(error, shape_of(&path)).into_response(),
    };
    // What an audit entry needs is read before the request moves on, and only for management actions.
    let audited = is_management(request.method(), &path).then(|| {
        let remote = request.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "-".to_string(), |info| info.0.to_string());
        (format!("{} {}", request.method(), path), remote, principal.key_id.clone(), principal.tenant.clone())
    });
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    if let Some((action, remote, key_id, tenant)) = audited {
        let entry = AuditEntry {
            at_ms: yunmo_auth::calendar::now_ms(),
            key_id,
            tenant,
            action,
            target: path,
            remote,
            outcome: response.status().as_u16().to_string(),
        };
        state.gate.audit(entry).await;
    }
    response
}

fn is_management(method: &Method, path: &str) -> bool {
    (path.starts_with("/api/v1/") && method != Method::GET) || path.starts_with("/v2/repository/models/")
}

/// Route layer of inference routes: admits the request past rate limits and quotas, then meters it, body
/// bytes included, until its response body has been sent (or dropped: `cancelled`).
pub async fn meter(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let mut call = call_of(request.extensions());
    let protocol = if request.uri().path().starts_with("/v1/") { "openai" } else { "rest" };
    let guard = match state.service.admit(&mut call, protocol).await {
        Ok(guard) => guard,
        Err(error) => return ApiError::new(error, shape_of(request.uri().path())).into_response(),
    };
    let cell = guard.cell().clone();
    request.extensions_mut().insert(call);
    // Bytes in: the declared length (a request refused before its body is read still sent it), else the
    // bytes as they are read.
    let declared = request.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let request = match declared {
        Some(length) => {
            cell.add_bytes(length, 0);
            request
        }
        None => {
            let counter = cell.clone();
            let (parts, body) = request.into_parts();
            let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    counter.add_bytes(bytes.len() as u64, 0);
                }
                chunk
            }));
            Request::from_parts(parts, body)
        }
    };
    let response = next.run(request).await;
    let outcome = match response.extensions().get::<ErrorCode>() {
        Some(ErrorCode(code)) => code.as_str(),
        None if response.status().is_success() => "ok",
        None => "invalid_request",
    };
    cell.set_outcome(outcome);
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(Metered { inner: body, guard, finished: false }))
}

/// A response body that counts its bytes and holds the usage guard until it ends. It keeps the inner
/// body's size, so a whole answer still goes out with its Content-Length in one write (a stream would be
/// sent chunked, with more writes per answer).
struct Metered {
    inner: Body,
    guard: UsageGuard,
    finished: bool,
}

impl axum::body::HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(bytes) = frame.data_ref() {
                    self.guard.cell().add_bytes(0, bytes.len() as u64);
                }
                // The writer does not poll again once the body says it has ended.
                if self.inner.is_end_stream() {
                    self.finished = true;
                }
            }
            Poll::Ready(None) => self.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if !self.finished {
            self.guard.cell().set_outcome("cancelled");
        }
    }
}

/// The service's view of a request: its caller and request id from the extensions the front middleware
/// put there (every request has one: its key's, or the open-path caller; a request without one is anonymous).
fn call_of(extensions: &axum::http::Extensions) -> Call {
    call_for(extensions.get::<Arc<Principal>>(), extensions.get::<RequestId>())
}

/// The service's view of a request of any transport from what its auth layer found: the caller (anonymous
/// when none was put there, never an admin by omission) and the request id (made when missing).
pub(crate) fn call_for(principal: Option<&Arc<Principal>>, id: Option<&RequestId>) -> Call {
    let principal = principal.cloned().unwrap_or_else(|| Arc::new(Principal::anonymous()));
    let id = id.cloned().unwrap_or_else(RequestId::generate);
    Call::new(principal, id.shared())
}

/// The authenticated caller of a handler, as the service's [`Call`] (on inference routes, admitted and
/// with its usage record).
pub struct Caller {
    /// The request as the service sees it.
    pub call: Call,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(call) = parts.extensions.get::<Call>() {
            return Ok(Caller { call: call.clone() });
        }
        if parts.extensions.get::<Arc<Principal>>().is_none() {
            return Err(ApiError::new(ServiceError::new(Code::Unauthenticated, "no caller on this request"), shape_of(parts.uri.path())));
        }
        Ok(Caller { call: call_of(&parts.extensions) })
    }
}

impl Caller {
    /// Who is calling.
    pub fn principal(&self) -> &Principal {
        &self.call.principal
    }

    /// The model this caller means by `name`, if it may do `action` on it (the service's access check).
    pub async fn target(&self, state: &AppState, name: &str, action: Action) -> Result<Target, ServiceError> {
        state.service.authorize(&self.call, &ModelRef::new(name, None), action).await
    }

    /// The model and version `model_ref` names, if this caller may do `action` on it.
    pub async fn target_ref(&self, state: &AppState, model_ref: &ModelRef, action: Action) -> Result<Target, ServiceError> {
        state.service.authorize(&self.call, model_ref, action).await
    }

    /// Checks that this caller may run `model_ref`, then tokenises the prompt; its generations are metered
    /// on this request's usage record.
    pub async fn prompt(&self, state: &AppState, model_ref: &ModelRef, input: PromptInput) -> Result<Prompt, ServiceError> {
        let target = self.target_ref(state, model_ref, Action::Infer).await?;
        state.service.prepare_prompt(&self.call, &target, input).await
    }

    /// Names of the models this caller can see.
    pub async fn visible_names(&self, state: &AppState) -> Result<std::collections::HashSet<String>, ServiceError> {
        Ok(state.service.visible_models(&self.call).await?.into_iter().map(|model| model.name).collect())
    }
}

/// The gRPC side of the gate: wraps the KServe gRPC service so every call is authenticated from its
/// metadata (`authorization: Bearer <key>` or `api-key`) by the same [`yunmo_auth::Gate::authenticate`]
/// before any method runs, and gets its request id (`x-request-id` metadata, echoed in the initial
/// metadata; see [`crate::request_id`]). `ServerLive` and `ServerReady` are open when `/v2/health/*` is.
#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    gate: yunmo_auth::Gate,
}

impl<S> GrpcAuth<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, gate: yunmo_auth::Gate) -> Self {
        GrpcAuth { inner, gate }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GrpcAuth<S> {
    const NAME: &'static str = S::NAME;
}

/// The REST path whose openness a gRPC method shares.
fn grpc_open_equivalent(path: &str) -> Option<&'static str> {
    match path.rsplit('/').next()? {
        "ServerLive" => Some("/v2/health/live"),
        "ServerReady" => Some("/v2/health/ready"),
        _ => None,
    }
}

impl<S, B> tower::Service<axum::http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        let id = crate::request_id::RequestId::from_headers(request.headers());
        let id_value = id.header_value();
        request.extensions_mut().insert(id.clone());
        Box::pin(id.scope(async move {
            let open = grpc_open_equivalent(request.uri().path()).is_some_and(|path| gate.is_open(path));
            let principal = gate.caller(open, credentials(request.headers())).await;
            let mut response = match principal {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await?
                }
                Err(error) => crate::error::grpc_status(error).into_http(),
            };
            // The initial metadata of a gRPC answer is its HTTP headers.
            response.headers_mut().insert(crate::request_id::HEADER, id_value);
            Ok(response)
        }))
    }
}
