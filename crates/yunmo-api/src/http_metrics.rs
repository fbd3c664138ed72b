//! The HTTP request metrics (`yunmo_http_requests_total`, `yunmo_http_request_duration_seconds`), with the
//! label set of each route and method built once: a request only looks its handles up.
//!
//! Methods outside the standard ones are labelled `other`, so that clients cannot grow the series (and this
//! table) without bound by inventing methods; routes are axum's matched route templates or `unmatched`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};

use axum::http::{Method, StatusCode};
use yunmo_service::metrics::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The handles of one route and method.
struct RouteMetrics {
    route: String,
    method: &'static str,
    duration: metrics::Histogram,
    /// One counter per status class, registered on first use (so unused classes show no series).
    requests: [OnceLock<metrics::Counter>; 5],
}

type Table = HashMap<String, HashMap<&'static str, Arc<RouteMetrics>>>;

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(RwLock::default);

/// The label of `method`: its name when standard, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

fn handles(route: &str, method: &'static str) -> Arc<RouteMetrics> {
    if let Some(found) = TABLE.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(route).and_then(|methods| methods.get(method)) {
        return found.clone();
    }
    let mut table = TABLE.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    table
        .entry(route.to_string())
        .or_default()
        .entry(method)
        .or_insert_with(|| {
            Arc::new(RouteMetrics {
                route: route.to_string(),
                method,
                duration: metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route.to_string(), "method" => method),
                requests: Default::default(),
            })
        })
        .clone()
}

/// Records one answered request.
pub(crate) fn record(route: &str, method: &Method, status: StatusCode, seconds: f64) {
    let handles = handles(route, method_label(method));
    handles.duration.record(seconds);
    let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
    handles.requests[class]
        .get_or_init(|| {
            metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => handles.route.clone(), "method" => handles.method, "status" => CLASSES[class])
        })
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"XYZZY").unwrap()), "other");
        record("/t", &Method::from_bytes(b"BREW").unwrap(), StatusCode::OK, 0.1);
        record("/t", &Method::from_bytes(b"XYZZY").unwrap(), StatusCode::NOT_FOUND, 0.1);
        let table = TABLE.read().unwrap();
        assert_eq!(table["/t"].len(), 1, "one entry for every invented method");
    }
}
