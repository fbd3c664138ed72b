//! What multi-tenancy stores: tenants, API keys (their hashes), usage events and audit entries.
//!
//! Keys are stored only as the sha256 of the whole key; the visible id identifies them. Usage events and
//! audit entries are append-only.

use serde::Serialize;
use yunmo_types::{Limits, Scope};

/// What usage rows are summed by: hour, tenant, key, model, version, protocol, outcome.
type UsageKey<'a> = (i64, &'a str, &'a str, &'a str, u64, &'a str, &'a str);

/// Events summed per hour, tenant, key, model, version, protocol and outcome, each with how many it holds:
/// a store writes one row per subject per flush, not one per request, and hourly series (forecasts) and
/// daily reports stay exact however many events one flush holds.
pub fn aggregate_usage(events: &[UsageEvent]) -> Vec<(UsageEvent, u64)> {
    let mut rows: Vec<(UsageEvent, u64)> = Vec::new();
    let mut index: std::collections::HashMap<UsageKey<'_>, usize> = std::collections::HashMap::new();
    for event in events {
        let key = (
            event.at_ms.div_euclid(3_600_000),
            event.tenant.as_str(),
            event.key_id.as_str(),
            event.model.as_str(),
            event.version,
            event.protocol,
            event.outcome,
        );
        match index.get(&key) {
            Some(&at) => {
                let (sum, count) = &mut rows[at];
                *count += 1;
                sum.at_ms = sum.at_ms.min(event.at_ms);
                sum.input_tokens += event.input_tokens;
                sum.output_tokens += event.output_tokens;
                sum.input_elements += event.input_elements;
                sum.output_elements += event.output_elements;
                sum.queue_ms += event.queue_ms;
                sum.compute_ms += event.compute_ms;
                sum.bytes_in += event.bytes_in;
                sum.bytes_out += event.bytes_out;
                sum.cost += event.cost;
            }
            None => {
                index.insert(key, rows.len());
                rows.push((event.clone(), 1));
            }
        }
    }
    rows
}

/// A tenant: the owner of models and keys.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRecord {
    /// Unique name.
    pub name: String,
    /// Limits shared by all of the tenant's keys.
    pub limits: Limits,
    /// Unix seconds.
    pub created_at: i64,
}

/// A key to store. `hash` is the hex sha256 of the whole key; the key itself is never stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Visible id (the part after `ym_`).
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// Hex sha256 of the key.
    pub hash: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Models the key may use (`None`: all the tenant can see).
    pub models: Option<Vec<String>>,
    /// The key's own limits.
    pub limits: Limits,
    /// Unix seconds after which the key is refused.
    pub expires_at: Option<i64>,
}

/// A stored key (with its hash, for verification; never serialized).
#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    /// Visible id.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// Hex sha256 of the key.
    #[serde(skip)]
    pub hash: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Model allow-list.
    pub models: Option<Vec<String>>,
    /// The key's own limits.
    pub limits: Limits,
    /// The owning tenant's limits.
    #[serde(skip)]
    pub tenant_limits: Limits,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Unix seconds; set once revoked.
    pub revoked_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// One metered request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageEvent {
    /// Unix milliseconds when the request was admitted.
    pub at_ms: i64,
    /// Tenant of the key.
    pub tenant: String,
    /// Key id.
    pub key_id: String,
    /// Model name ("" if the request failed before naming one).
    pub model: String,
    /// Version served (0 if none).
    pub version: u64,
    /// `rest`, `grpc` or `openai`.
    pub protocol: &'static str,
    /// `ok`, an error code, or `cancelled`.
    pub outcome: &'static str,
    /// Prompt or input tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Input tensor elements.
    pub input_elements: u64,
    /// Output tensor elements.
    pub output_elements: u64,
    /// Milliseconds waiting before the model ran.
    pub queue_ms: u64,
    /// Milliseconds of the service call.
    pub compute_ms: u64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Cost by the version's price.
    pub cost: f64,
}

/// How usage is grouped in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// By tenant and model.
    Model,
    /// By tenant and key.
    Key,
    /// By tenant and UTC day.
    Day,
}

/// One row of a usage report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageRow {
    /// Tenant.
    pub tenant: String,
    /// The model, key id or day (YYYY-MM-DD).
    pub group: String,
    /// Requests.
    pub requests: u64,
    /// Requests whose outcome was not `ok`.
    pub failed: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input elements.
    pub input_elements: u64,
    /// Output elements.
    pub output_elements: u64,
    /// Compute milliseconds.
    pub compute_ms: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Cost.
    pub cost: f64,
}

/// What has been used in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageTotals {
    /// Requests.
    pub requests: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Compute milliseconds.
    pub compute_ms: u64,
}

/// One bucket of a model's usage over time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageBucket {
    /// Start of the bucket, Unix milliseconds (a multiple of the bucket length).
    pub start_ms: i64,
    /// Requests.
    pub requests: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Compute milliseconds.
    pub compute_ms: u64,
}

/// Whose usage to total.
#[derive(Debug, Clone, Copy)]
pub enum UsageSubject<'a> {
    /// One key.
    Key(&'a str),
    /// One tenant.
    Tenant(&'a str),
}

/// One management action.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Key id of the actor (`-` with auth off).
    pub key_id: String,
    /// Tenant of the actor.
    pub tenant: String,
    /// What was done (`POST /api/v1/models`).
    pub action: String,
    /// What it was done to (the path).
    pub target: String,
    /// Peer address.
    pub remote: String,
    /// HTTP status.
    pub outcome: String,
}
