//! Request ids: every request gets one, taken from its `x-request-id` header or metadata when it carries a
//! usable one, else made here. It is echoed in the response's `x-request-id` (HTTP header or gRPC initial
//! metadata), recorded as the `request_id` field of a tracing span around the request (so every log line of
//! the request names it), and written into the message of every 5xx, so that a user's report finds the
//! server's log lines.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The header (and gRPC metadata key) that carries the id both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id taken from a client; a longer one is replaced.
pub const MAX_LEN: usize = 128;

/// One request's id. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// The id the client sent in `headers` if it is usable (1 to [`MAX_LEN`] visible ASCII characters
    /// other than quotes and backslashes), else a new one.
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        let sent = headers.get(&HEADER).and_then(|value| value.to_str().ok()).filter(|id| usable(id));
        match sent {
            Some(id) => RequestId(Arc::from(id)),
            None => RequestId::generate(),
        }
    }

    /// A new id: a random per-process prefix and a counter, unique across replicas and restarts in practice.
    pub fn generate() -> RequestId {
        static PREFIX: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
            // The standard library seeds each `RandomState` from the operating system's randomness.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(std::process::id().into());
            hasher.finish()
        });
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestId(Arc::from(format!("{:08x}{count:010x}", *PREFIX >> 32)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, shared (for the service's `Call`, without copying it).
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).expect("ids are visible ASCII (checked or generated). This is a bug.")
    }

    /// Runs `future` with this id as the current one ([`current`]) inside a span that names it.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        use tracing::Instrument;
        let span = tracing::info_span!("request", request_id = %self.0);
        CURRENT.scope(self, future.instrument(span)).await
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn usable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(RequestId::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_client_id_is_kept_and_anything_else_is_replaced() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER, HeaderValue::from_str(value).unwrap());
            RequestId::from_headers(&headers)
        };
        assert_eq!(with("trace-7f3a/01").as_str(), "trace-7f3a/01");
        for bad in ["", "two words", "quote\"d", &"x".repeat(MAX_LEN + 1)] {
            let id = with(bad);
            assert_ne!(id.as_str(), bad);
            assert_eq!(id.as_str().len(), 18, "{id}");
        }
        assert_eq!(RequestId::from_headers(&HeaderMap::new()).as_str().len(), 18);
    }

    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| RequestId::generate().to_string()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[tokio::test]
    async fn the_current_id_is_seen_inside_its_scope_only() {
        assert_eq!(current(), None);
        let id = RequestId::generate();
        let seen = id.clone().scope(async { current() }).await;
        assert_eq!(seen, Some(id));
    }
}
