//! The web console's routes: its embedded files under `/ui/` ([`yunmo_console`]) and `/ui/session.json`,
//! all served without a key ([`is_public`]).

use axum::extract::{Request, State};
use axum::response::{Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent(yunmo_console::PREFIX) }))
        .route("/ui/", get(console_file))
        .route("/ui/session.json", get(session))
        .route("/ui/{*path}", get(console_file))
}

/// Paths served to anyone, with or without `auth.open_paths`: the console's files, its session facts and
/// the OpenAPI document hold no data (the console reads everything through the key the user signs in with).
pub fn is_public(path: &str) -> bool {
    path == "/ui" || path.starts_with(yunmo_console::PREFIX) || path == "/api/v1/openapi.json"
}

/// The console's files (`/ui/`, see [`yunmo_console`]).
async fn console_file(request: Request) -> Response {
    let path = request.uri().path();
    let file = path.strip_prefix(yunmo_console::PREFIX).unwrap_or_default();
    match yunmo_console::serve(file, request.headers()) {
        Some(response) => response,
        None => crate::not_found(request).await,
    }
}

/// What a signed-out console needs to know.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDto {
    /// Whether requests need an API key (`auth.enabled`).
    pub keys_required: bool,
}

/// Whether the server wants a key, so that a signed-out console goes to its sign-in page without first
/// being refused. Served without a key.
#[utoipa::path(get, path = "/ui/session.json", security(()), responses((status = 200, body = SessionDto)))]
pub async fn session(State(state): State<AppState>) -> Json<SessionDto> {
    Json(SessionDto { keys_required: state.gate.enabled() })
}
