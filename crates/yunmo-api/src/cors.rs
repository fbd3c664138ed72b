//! CORS for browser clients (`[server.cors]`, off by default): the allowed origins, methods and headers.
//! The layer sits outside authentication, so a browser's preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered without a key, as browsers send none with it; the request
//! that follows is authenticated as any other. Answers expose the headers clients read (`x-request-id`, the
//! version that served, the binary header length, `retry-after`).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// `[server.cors]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Answer browsers' cross-origin requests at all.
    pub enabled: bool,
    /// Origins allowed (`https://app.example.com`), or `["*"]` for any.
    pub allowed_origins: Vec<String>,
    /// Methods allowed.
    pub allowed_methods: Vec<String>,
    /// Request headers allowed, or `["*"]` for any.
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight's answer.
    pub max_age_seconds: u64,
}

/// Response headers a browser script may read.
const EXPOSED: [&str; 4] = ["x-request-id", crate::kserve::MODEL_VERSION_HEADER, crate::kserve::encode::HEADER_LENGTH, "retry-after"];

impl CorsConfig {
    /// The layer, or `None` when CORS is off; an entry that is not a valid origin, method or header name is
    /// an error naming it.
    pub fn layer(&self) -> Result<Option<CorsLayer>, String> {
        if !self.enabled {
            return Ok(None);
        }
        if self.allowed_origins.is_empty() {
            return Err("server.cors.allowed_origins is empty: list the origins (or \"*\") when server.cors.enabled is true".into());
        }
        let origins = if self.allowed_origins.iter().any(|origin| origin == "*") {
            AllowOrigin::any()
        } else {
            let parsed: Result<Vec<HeaderValue>, String> = self
                .allowed_origins
                .iter()
                .map(|origin| {
                    let valid = origin.starts_with("http://") || origin.starts_with("https://");
                    HeaderValue::from_str(origin.trim_end_matches('/'))
                        .ok()
                        .filter(|_| valid)
                        .ok_or_else(|| format!("server.cors.allowed_origins: '{origin}' is not an origin (scheme://host[:port])"))
                })
                .collect();
            AllowOrigin::list(parsed?)
        };
        let methods: Result<Vec<Method>, String> = self
            .allowed_methods
            .iter()
            .map(|method| {
                Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("server.cors.allowed_methods: '{method}' is not an HTTP method"))
            })
            .collect();
        // `Access-Control-Allow-Headers: *` never covers `Authorization` (Fetch standard): "*" mirrors
        // what the preflight asks for instead.
        let headers = if self.allowed_headers.iter().any(|header| header == "*") {
            AllowHeaders::mirror_request()
        } else {
            let parsed: Result<Vec<HeaderName>, String> = self
                .allowed_headers
                .iter()
                .map(|header| {
                    HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
                        .map_err(|_| format!("server.cors.allowed_headers: '{header}' is not a header name"))
                })
                .collect();
            AllowHeaders::list(parsed?)
        };
        Ok(Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(methods?)
                .allow_headers(headers)
                .expose_headers(EXPOSED.map(HeaderName::from_static))
                .max_age(Duration::from_secs(self.max_age_seconds)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            enabled: true,
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            allowed_methods: vec!["GET".into(), "post".into()],
            allowed_headers: vec!["Authorization".into()],
            max_age_seconds: 60,
        }
    }

    #[test]
    fn bad_entries_are_named_and_off_is_no_layer() {
        assert!(CorsConfig { enabled: false, ..config(&[]) }.layer().unwrap().is_none());
        assert!(config(&["https://app.example.com", "http://localhost:3000"]).layer().unwrap().is_some());
        assert!(config(&["*"]).layer().unwrap().is_some());
        for (config, message) in [
            (config(&[]), "allowed_origins is empty"),
            (config(&["app.example.com"]), "'app.example.com' is not an origin"),
            (CorsConfig { allowed_methods: vec!["GE T".into()], ..config(&["*"]) }, "'GE T' is not an HTTP method"),
            (CorsConfig { allowed_headers: vec!["bad header".into()], ..config(&["*"]) }, "'bad header' is not a header name"),
        ] {
            let error = config.layer().unwrap_err();
            assert!(error.contains(message), "{error} should say {message}");
        }
    }
}
