//! Schemas of the management API's answers that are built from registry records (which know no OpenAPI),
//! and of its error body. They describe the JSON the handlers send; the schema-driven test
//! (`tests/clients/test_openapi.py`, schemathesis against the running server) fails when they drift.

use serde::Serialize;
use utoipa::ToSchema;

/// Every error of the management API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `invalid_request`, `unauthenticated`, `permission_denied`, `model_not_found`,
    /// `not_found`, `conflict`, `payload_too_large`, `unsupported_media_type`, `method_not_allowed`,
    /// `headers_too_large`, `rate_limited`, `insufficient_quota`, `overloaded`, `model_not_ready`,
    /// `timeout`, `inference_failed`, `internal`.
    pub code: String,
    /// For a person: names the field, the bound and the value where there is one.
    pub message: String,
}

/// Rate limits and monthly quotas; an absent field is unlimited.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsSchema {
    /// Inference requests per second (token bucket).
    #[schema(exclusive_minimum = 0.0)]
    pub requests_per_second: Option<f64>,
    /// Requests the bucket holds when full.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub requests_burst: Option<u64>,
    /// LLM tokens per minute.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub tokens_per_minute: Option<u64>,
    /// Requests per calendar month (UTC).
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub monthly_requests: Option<u64>,
    /// Tokens per calendar month (UTC).
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub monthly_tokens: Option<u64>,
    /// Compute seconds per calendar month (UTC).
    #[schema(minimum = 0.0)]
    pub monthly_compute_seconds: Option<f64>,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSchema {
    /// Name.
    pub name: String,
    /// Limits shared by its keys.
    pub limits: LimitsSchema,
    /// Unix seconds.
    pub created_at: i64,
}

/// An API key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeySchema {
    /// Visible id (the part after `ym_`).
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// `admin`, `models:write`, `models:read`, `infer`, `metrics`, `keys:write`.
    pub scopes: Vec<String>,
    /// Models it may use (`null`: all its tenant can see).
    pub models: Option<Vec<String>>,
    /// Its own limits.
    pub limits: LimitsSchema,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<i64>,
    /// Unix seconds; set once revoked.
    pub revoked_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A new key: the only answer that holds the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeySchema {
    /// The key to send as `Authorization: Bearer <key>`; it cannot be shown again.
    pub key: String,
    /// The stored key.
    #[serde(flatten)]
    pub record: KeySchema,
}

/// Usage in a period (JSON; `format=csv` gives the rows as CSV).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReportSchema {
    /// Start, `YYYY-MM-DDTHH:MM:SSZ`.
    pub from: String,
    /// End, exclusive.
    pub to: String,
    /// `model`, `key` or `day`.
    pub group_by: String,
    /// One row per tenant and group.
    pub rows: Vec<UsageRowSchema>,
}

/// One row of a usage report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRowSchema {
    /// Tenant.
    pub tenant: String,
    /// The model (as the tenant calls it), key id or day.
    pub group: String,
    /// Requests.
    pub requests: u64,
    /// Requests that did not succeed.
    pub failed: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tensor elements.
    pub input_elements: u64,
    /// Output tensor elements.
    pub output_elements: u64,
    /// Compute milliseconds.
    pub compute_ms: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Cost by the versions' prices.
    pub cost: f64,
}

/// One management action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditSchema {
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub at: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Key id of the actor.
    pub key_id: String,
    /// Tenant of the actor.
    pub tenant: String,
    /// Method and path.
    pub action: String,
    /// The path acted on.
    pub target: String,
    /// Peer address.
    pub remote: String,
    /// HTTP status.
    pub outcome: String,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoamiSchema {
    /// Key id (`-` with auth off).
    pub key_id: String,
    /// Tenant.
    pub tenant: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Model allow-list.
    pub models: Option<Vec<String>>,
}

/// A model upload as `multipart/form-data`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The model file (ONNX or GGUF).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Serving options as JSON (see `VersionConfigDto`).
    pub config: Option<String>,
    /// A Hugging Face `tokenizer.json`, for embedding encoders.
    pub tokenizer: Option<String>,
}
