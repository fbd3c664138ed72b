//! The HTTP accept loop: the axum router served by hyper's connection builder, configured with Yunmo's header
//! limits (which `axum::serve` does not expose), the peer address as `ConnectInfo`, and graceful shutdown.
//!
//! hyper's parser is the first bound on what a request head may allocate: `max(2 × server.max_headers, 100)`
//! headers on HTTP/1 and `max(2 × server.max_header_bytes, 16 KiB)` of header list on HTTP/2 (hyper's
//! defaults, raised with the settings). The exact limits are then checked by the router's `limit_headers`
//! layer, which answers 431 in the route's own error shape; the parser's caps sit above them so that an
//! over-limit request gets that answer, and only one past twice the limit gets hyper's bare 431.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

/// hyper's default cap on HTTP/1 headers per request.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;
/// hyper's default HTTP/2 header list limit.
const HYPER_DEFAULT_MAX_HEADER_LIST: usize = 16 << 10;

/// Header limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    /// `server.max_headers`.
    pub max_headers: usize,
    /// `server.max_header_bytes`.
    pub max_header_bytes: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for the open
/// connections to finish their requests (the caller bounds that wait).
pub async fn serve<L>(mut listener: L, router: axum::Router, limits: HeaderLimits, shutdown: impl Future<Output = ()>)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().max_headers(limits.max_headers.saturating_mul(2).max(HYPER_DEFAULT_MAX_HEADERS));
    let header_list = limits.max_header_bytes.saturating_mul(2).max(HYPER_DEFAULT_MAX_HEADER_LIST);
    builder.http2().max_header_list_size(u32::try_from(header_list).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = router.clone().map_request(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service)).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%remote, %error, "An HTTP connection ended with an error.");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
