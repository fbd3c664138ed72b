//! The mappings from service error codes to HTTP status and to gRPC status (each exhaustive), and the error
//! bodies of each route group.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use yunmo_service::{Code, ServiceError};

/// HTTP status of each code. Exhaustive on purpose: a new code must be placed here.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidRequest => StatusCode::BAD_REQUEST,
        Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::ModelNotFound => StatusCode::NOT_FOUND,
        Code::Conflict => StatusCode::CONFLICT,
        Code::ModelNotReady | Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Code::InferenceFailed | Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::RateLimited | Code::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        Code::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Code::NotFound => StatusCode::NOT_FOUND,
    }
}

/// Which error body a route group renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// KServe V2: `{"error": "<message>"}`.
    KServe,
    /// Management API: `{"error": {"code": "...", "message": "..."}}`.
    Admin,
    /// OpenAI API: `{"error": {"message": "...", "type": "...", "param": null, "code": "..."}}`.
    OpenAi,
    /// Anthropic's Messages API: `{"type": "error", "error": {"type": "...", "message": "..."}}`.
    Anthropic,
}

/// Anthropic's error `type` of each code. Exhaustive on purpose.
pub fn anthropic_type(code: Code) -> &'static str {
    match code {
        Code::InvalidRequest | Code::HeadersTooLarge | Code::UnsupportedMediaType | Code::MethodNotAllowed | Code::Conflict => {
            "invalid_request_error"
        }
        Code::PayloadTooLarge => "request_too_large",
        Code::NotFound | Code::ModelNotFound => "not_found_error",
        Code::RateLimited | Code::QuotaExceeded => "rate_limit_error",
        Code::Overloaded | Code::ModelNotReady | Code::Unavailable => "overloaded_error",
        Code::Unauthenticated => "authentication_error",
        Code::PermissionDenied => "permission_error",
        Code::Timeout | Code::InferenceFailed | Code::Internal => "api_error",
    }
}

/// The Anthropic error body (also sent as the `error` event of a failed stream).
pub fn anthropic_body(code: Code, message: &str) -> serde_json::Value {
    serde_json::json!({ "type": "error", "error": { "type": anthropic_type(code), "message": message } })
}

/// OpenAI error `type` of each code. Exhaustive on purpose.
pub fn openai_type(code: Code) -> &'static str {
    match code {
        Code::InvalidRequest
        | Code::PayloadTooLarge
        | Code::HeadersTooLarge
        | Code::UnsupportedMediaType
        | Code::MethodNotAllowed
        | Code::NotFound
        | Code::ModelNotFound
        | Code::Conflict => "invalid_request_error",
        Code::Overloaded | Code::RateLimited => "rate_limit_error",
        Code::QuotaExceeded => "insufficient_quota",
        Code::Unauthenticated => "authentication_error",
        Code::PermissionDenied => "permission_error",
        Code::Timeout => "timeout",
        Code::ModelNotReady | Code::Unavailable | Code::InferenceFailed | Code::Internal => "server_error",
    }
}

/// What the client is told of an error, for the request being served on this task (see
/// [`client_message_for`]).
pub fn client_message(code: Code, message: &str) -> String {
    client_message_for(code, message, crate::request_id::current().as_ref())
}

/// What the client is told of an error. A server failure (500: the runtime failed, or a bug) is logged
/// with its details (which may hold a runtime's source paths and internals) and the client gets a fixed
/// message; every other message is written for the client and goes out as it is. Every server error
/// (5xx) names the request id, which the server's log lines of the request carry too.
pub fn client_message_for(code: Code, message: &str, request_id: Option<&crate::request_id::RequestId>) -> String {
    let text = match code {
        Code::InferenceFailed => {
            tracing::error!(code = code.as_str(), error = %message, "Request failed.");
            "inference failed: the model's runtime could not compute this request (the details are in the server log)".to_string()
        }
        Code::Internal => {
            tracing::error!(code = code.as_str(), error = %message, "Request failed.");
            "internal server error (the details are in the server log)".to_string()
        }
        _ => message.to_string(),
    };
    match request_id {
        Some(id) if http_status(code).is_server_error() => format!("{text} [request id {id}]"),
        _ => text,
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    /// Service code.
    pub code: Code,
    /// Client-facing message.
    pub message: String,
    /// Body shape.
    pub shape: Shape,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A KServe-shaped error.
    pub fn kserve(error: ServiceError) -> Self {
        Self::new(error, Shape::KServe)
    }
    /// An admin-shaped error.
    pub fn admin(error: ServiceError) -> Self {
        Self::new(error, Shape::Admin)
    }
    /// An OpenAI-shaped error.
    pub fn openai(error: ServiceError) -> Self {
        Self::new(error, Shape::OpenAi)
    }
    /// An Anthropic-shaped error.
    pub fn anthropic(error: ServiceError) -> Self {
        Self::new(error, Shape::Anthropic)
    }
    /// An error in `shape`.
    pub fn new(error: ServiceError, shape: Shape) -> Self {
        ApiError { code: error.code, message: error.message, shape, retry_after: error.retry_after }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = http_status(self.code);
        let message = client_message(self.code, &self.message);
        if status.is_server_error() && !matches!(self.code, Code::InferenceFailed | Code::Internal) {
            tracing::warn!(code = self.code.as_str(), error = %self.message, "Request failed.");
        }
        let body = match self.shape {
            Shape::KServe => serde_json::json!({ "error": message }),
            Shape::Admin => {
                serde_json::json!({ "error": { "code": self.code.as_str(), "message": message } })
            }
            Shape::OpenAi => openai_body(self.code, &message),
            Shape::Anthropic => anthropic_body(self.code, &message),
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        if self.code == Code::Unauthenticated {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The OpenAI error body (also sent as the last event of a failed stream).
pub fn openai_body(code: Code, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "message": message, "type": openai_type(code), "param": null, "code": code.as_str() } })
}

/// The error code of an error response (an extension on it), for the usage record's outcome.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub Code);

/// gRPC status of each code. Exhaustive on purpose: a new code must be placed here.
pub fn grpc_code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidRequest | Code::UnsupportedMediaType => tonic::Code::InvalidArgument,
        Code::PayloadTooLarge | Code::HeadersTooLarge | Code::Overloaded => tonic::Code::ResourceExhausted,
        Code::ModelNotFound | Code::NotFound => tonic::Code::NotFound,
        Code::MethodNotAllowed => tonic::Code::Unimplemented,
        Code::Conflict => tonic::Code::AlreadyExists,
        Code::ModelNotReady | Code::Unavailable => tonic::Code::Unavailable,
        Code::Timeout => tonic::Code::DeadlineExceeded,
        Code::InferenceFailed | Code::Internal => tonic::Code::Internal,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::RateLimited | Code::QuotaExceeded => tonic::Code::ResourceExhausted,
    }
}

pub(crate) fn grpc_status(error: ServiceError) -> tonic::Status {
    let message = client_message(error.code, &error.message);
    let mut status = tonic::Status::new(grpc_code(error.code), message);
    if let Some(seconds) = error.retry_after {
        status.metadata_mut().insert("retry-after", tonic::metadata::MetadataValue::from(seconds));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_meaningful_status() {
        for code in Code::ALL {
            let status = http_status(code);
            assert!(status.is_client_error() || status.is_server_error(), "{code:?} -> {status}");
        }
        assert_eq!(http_status(Code::InvalidRequest), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::ModelNotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::ModelNotReady), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http_status(Code::InferenceFailed), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn every_code_has_a_grpc_code() {
        for code in Code::ALL {
            assert_ne!(grpc_code(code), tonic::Code::Ok);
        }
    }
}
