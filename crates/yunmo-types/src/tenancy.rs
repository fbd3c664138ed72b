//! Vocabulary of multi-tenancy: key scopes, limits, model sharing and prices.

use serde::{Deserialize, Serialize};

/// What a key may do. `Admin` reaches every tenant; the others act within the key's own tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Everything, across tenants: tenants, keys, every model, usage and audit of all.
    #[serde(rename = "admin")]
    Admin,
    /// Create, change and delete the tenant's models and versions; load and unload them.
    #[serde(rename = "models:write")]
    ModelsWrite,
    /// List and read models the tenant can see (its own and those shared with it).
    #[serde(rename = "models:read")]
    ModelsRead,
    /// Run inference on models the tenant can see.
    #[serde(rename = "infer")]
    Infer,
    /// Read `/metrics`, which names every tenant's models: for a Prometheus scraper's key.
    #[serde(rename = "metrics")]
    Metrics,
    /// Create and revoke keys of the caller's own tenant, with no scope the caller lacks itself (never
    /// `admin`): tenant self-service.
    #[serde(rename = "keys:write")]
    KeysWrite,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [Scope::Admin, Scope::ModelsWrite, Scope::ModelsRead, Scope::Infer, Scope::Metrics, Scope::KeysWrite];

    /// The wire name (`models:write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::ModelsWrite => "models:write",
            Scope::ModelsRead => "models:read",
            Scope::Infer => "infer",
            Scope::Metrics => "metrics",
            Scope::KeysWrite => "keys:write",
        }
    }
}

/// Rate limits and monthly quotas of a key or a tenant. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Inference requests per second (token bucket; the burst is one second's worth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Requests the bucket holds when full (default: one second's worth, at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_burst: Option<u64>,
    /// LLM tokens (prompt plus completion) per minute (token bucket; the burst is one minute's worth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Inference requests per calendar month (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_requests: Option<u64>,
    /// LLM and embedding tokens per calendar month (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_tokens: Option<u64>,
    /// Compute seconds per calendar month (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_compute_seconds: Option<f64>,
}

impl Limits {
    /// Checks the bounds; the message names the field and the value.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(rps) = self.requests_per_second
            && !(rps.is_finite() && rps > 0.0)
        {
            return Err(format!("limits.requests_per_second must be a positive number, got {rps}"));
        }
        let counts = [
            ("requests_burst", self.requests_burst),
            ("tokens_per_minute", self.tokens_per_minute),
            ("monthly_requests", self.monthly_requests),
            ("monthly_tokens", self.monthly_tokens),
        ];
        if let Some((name, value)) = counts.iter().find_map(|(name, value)| value.filter(|v| *v > i64::MAX as u64).map(|v| (name, v))) {
            return Err(format!("limits.{name} must be at most {}, got {value}", i64::MAX));
        }
        if self.requests_burst == Some(0) {
            return Err("limits.requests_burst must be at least 1, got 0".into());
        }
        if self.tokens_per_minute == Some(0) {
            return Err("limits.tokens_per_minute must be at least 1, got 0".into());
        }
        if let Some(seconds) = self.monthly_compute_seconds
            && !(seconds.is_finite() && seconds >= 0.0)
        {
            return Err(format!("limits.monthly_compute_seconds must be a non-negative number, got {seconds}"));
        }
        Ok(())
    }
}

/// Who besides the owner may see and call a model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sharing {
    /// Every tenant may see and call it.
    pub public: bool,
    /// These tenants may see and call it.
    pub tenants: Vec<String>,
}

/// What a model version costs. Each part is optional; the cost of a request is their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Price {
    /// Per 1,000 input (prompt) tokens.
    pub per_1k_input_tokens: f64,
    /// Per 1,000 output (completion) tokens.
    pub per_1k_output_tokens: f64,
    /// Per request.
    pub per_request: f64,
    /// Per second of compute.
    pub per_compute_second: f64,
}

impl Price {
    /// The cost of one request.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64, compute_ms: u64) -> f64 {
        self.per_request
            + self.per_1k_input_tokens * input_tokens as f64 / 1000.0
            + self.per_1k_output_tokens * output_tokens as f64 / 1000.0
            + self.per_compute_second * compute_ms as f64 / 1000.0
    }

    /// Checks that every part is a finite non-negative number.
    pub fn validate(&self) -> Result<(), String> {
        let parts = [
            ("per_1k_input_tokens", self.per_1k_input_tokens),
            ("per_1k_output_tokens", self.per_1k_output_tokens),
            ("per_request", self.per_request),
            ("per_compute_second", self.per_compute_second),
        ];
        for (name, value) in parts {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("price.{name} must be a non-negative number, got {value}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_use_their_wire_names() {
        for scope in Scope::ALL {
            let text = serde_json::to_string(&scope).unwrap();
            assert_eq!(text, format!("\"{}\"", scope.as_str()));
            assert_eq!(serde_json::from_str::<Scope>(&text).unwrap(), scope);
        }
    }

    #[test]
    fn cost_adds_every_part() {
        let price = Price { per_1k_input_tokens: 0.5, per_1k_output_tokens: 1.5, per_request: 0.01, per_compute_second: 2.0 };
        let cost = price.cost(2000, 1000, 250);
        assert!((cost - (0.01 + 1.0 + 1.5 + 0.5)).abs() < 1e-12, "{cost}");
        assert!(Price { per_request: -1.0, ..Price::default() }.validate().unwrap_err().contains("per_request"));
    }

    #[test]
    fn limits_name_the_bad_field() {
        let limits = Limits { requests_per_second: Some(0.0), ..Limits::default() };
        assert!(limits.validate().unwrap_err().contains("requests_per_second"));
    }
}
