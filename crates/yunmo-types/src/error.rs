//! The service error and its code: the one table every transport maps from.

/// What went wrong, in the terms every protocol can express. Transports map each code exhaustively:
/// see `yunmo_api::error` for the HTTP status, gRPC code and OpenAI error type of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed or does not fit the model.
    InvalidRequest,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// No such model or version.
    ModelNotFound,
    /// The name or version is taken.
    Conflict,
    /// The model exists but cannot serve now.
    ModelNotReady,
    /// The queue is full.
    Overloaded,
    /// The request ran past its deadline.
    Timeout,
    /// The runtime failed while computing.
    InferenceFailed,
    /// Anything else; a bug or the environment.
    Internal,
    /// No key, or a key that is unknown, revoked or expired.
    Unauthenticated,
    /// The key is valid but may not do this.
    PermissionDenied,
    /// A requests-per-second or tokens-per-minute limit is reached.
    RateLimited,
    /// A monthly quota is used up.
    QuotaExceeded,
    /// The request's headers pass the configured count or size.
    HeadersTooLarge,
    /// The body's content type or encoding is not one the route reads.
    UnsupportedMediaType,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// No such tenant, key or route (models have [`Code::ModelNotFound`]).
    NotFound,
    /// A store the request needs (the database, object storage, the limit store) cannot be reached now;
    /// a retry after Retry-After may pass.
    Unavailable,
}

impl Code {
    /// Every code.
    pub const ALL: [Code; 18] = [
        Code::InvalidRequest,
        Code::PayloadTooLarge,
        Code::ModelNotFound,
        Code::Conflict,
        Code::ModelNotReady,
        Code::Overloaded,
        Code::Timeout,
        Code::InferenceFailed,
        Code::Internal,
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::RateLimited,
        Code::QuotaExceeded,
        Code::HeadersTooLarge,
        Code::UnsupportedMediaType,
        Code::MethodNotAllowed,
        Code::NotFound,
        Code::Unavailable,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidRequest => "invalid_request",
            Code::PayloadTooLarge => "payload_too_large",
            Code::ModelNotFound => "model_not_found",
            Code::Conflict => "conflict",
            Code::ModelNotReady => "model_not_ready",
            Code::Overloaded => "overloaded",
            Code::Timeout => "timeout",
            Code::InferenceFailed => "inference_failed",
            Code::Internal => "internal",
            Code::Unauthenticated => "unauthenticated",
            Code::PermissionDenied => "permission_denied",
            Code::RateLimited => "rate_limited",
            Code::QuotaExceeded => "insufficient_quota",
            Code::HeadersTooLarge => "headers_too_large",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::NotFound => "not_found",
            Code::Unavailable => "unavailable",
        }
    }
}

/// An error from the service layer: a [`Code`] and a message for the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// Kind of failure.
    pub code: Code,
    /// What happened, naming the field, bound and value where there is one.
    pub message: String,
    /// Seconds after which a retry may succeed (rate limits, quotas; a full queue says 1).
    pub retry_after: Option<u64>,
}

impl ServiceError {
    /// A new error.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        let retry_after = (code == Code::Overloaded).then_some(1);
        ServiceError { code, message: message.into(), retry_after }
    }
    /// The same error, telling the client when to retry.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    /// Bad input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidRequest, message)
    }
    /// Unknown model or version.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::ModelNotFound, message)
    }
    /// Not ready.
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self::new(Code::ModelNotReady, message)
    }
    /// Internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
}
