//! The HTTP accept loop: the axum router served by hyper's connection builder, configured with Yunmo's
//! header limits and timeouts (which `axum::serve` does not expose), the peer address as `ConnectInfo`,
//! connection slots and idle closing ([`crate::conn`]), and graceful shutdown.
//!
//! hyper's parser is the first bound on what a request head may allocate: `max(2 × server.max_headers, 100)`
//! headers on HTTP/1 and `max(2 × server.max_header_bytes, 16 KiB)` of header list on HTTP/2 (hyper's
//! defaults, raised with the settings). The exact limits are then checked by the router's `limit_headers`
//! layer, which answers 431 in the route's own error shape; the parser's caps sit above them so that an
//! over-limit request gets that answer, and only one past twice the limit gets hyper's bare 431.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::conn::{Activity, Slots};

/// hyper's default cap on HTTP/1 headers per request.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;
/// hyper's default HTTP/2 header list limit.
const HYPER_DEFAULT_MAX_HEADER_LIST: usize = 16 << 10;
/// HTTP/2 pings find peers that vanished without closing (HTTP and gRPC).
pub(crate) const HTTP2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Limits the parser and the connection enforce.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// `server.max_headers`.
    pub max_headers: usize,
    /// `server.max_header_bytes`.
    pub max_header_bytes: usize,
    /// `server.header_read_timeout_seconds`: an HTTP/1 request head must arrive within this.
    pub header_read_timeout: Duration,
}

/// Where connections come from: plain TCP, or TLS after the handshake.
pub trait HttpListener: Send {
    /// The connection's byte stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection, its peer and its activity.
    fn accept(&mut self) -> impl Future<Output = (Self::Io, SocketAddr, Arc<Activity>)> + Send;
}

/// Plain TCP connections, in the shared slots.
pub struct PlainListener {
    /// The bound socket.
    pub listener: TcpListener,
    /// Connection slots.
    pub slots: Slots,
}

impl HttpListener for PlainListener {
    type Io = crate::conn::GuardedIo;

    async fn accept(&mut self) -> (Self::Io, SocketAddr, Arc<Activity>) {
        let (io, remote) = self.slots.accept(&self.listener, "http").await;
        let activity = io.activity();
        (io, remote, activity)
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for the open
/// connections to finish their requests (the caller bounds that wait).
pub async fn serve<L: HttpListener>(mut listener: L, router: axum::Router, limits: HttpLimits, shutdown: impl Future<Output = ()>) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers.saturating_mul(2).max(HYPER_DEFAULT_MAX_HEADERS));
    let header_list = limits.max_header_bytes.saturating_mul(2).max(HYPER_DEFAULT_MAX_HEADER_LIST);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEPALIVE)
        .keep_alive_timeout(HTTP2_KEEPALIVE)
        .max_header_list_size(u32::try_from(header_list).unwrap_or(u32::MAX));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, remote, activity) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        // Every request counts as in flight on its connection until its answer's head is ready; an idle
        // connection is one with none in flight (and no bytes moving, see `conn`).
        let service = tower::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let http1 = request.version() <= hyper::Version::HTTP_11;
            let (parts, body) = request.into_parts();
            let (body, unread) = ReadTracked::new(body);
            let mut request = hyper::Request::from_parts(parts, axum::body::Body::new(body));
            request.extensions_mut().insert(ConnectInfo(remote));
            yunmo_api::qualify_model_path(&mut request);
            let response = router.clone().oneshot(request);
            async move {
                let mut response = response.await;
                drop(in_flight);
                // An answer sent before its request's body was read in full (a refusal) ends the
                // connection; HTTP/1 clients are told so, or they would send the next request on it.
                if http1
                    && unread.load(Ordering::Acquire)
                    && let Ok(response) = &mut response
                {
                    response.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
                }
                response
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service)).into_owned();
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let stopping = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stopping => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%remote, %error, "An HTTP connection ended with an error.");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    connections.close();
    connections.wait().await;
}

/// A request body that says whether it is still unread: `true` until its end has been read (an empty body
/// starts read).
struct ReadTracked {
    inner: Incoming,
    unread: Arc<AtomicBool>,
}

impl ReadTracked {
    fn new(inner: Incoming) -> (ReadTracked, Arc<AtomicBool>) {
        let unread = Arc::new(AtomicBool::new(!hyper::body::Body::is_end_stream(&inner)));
        (ReadTracked { inner, unread: unread.clone() }, unread)
    }
}

impl hyper::body::Body for ReadTracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || hyper::body::Body::is_end_stream(&self.inner) {
            self.unread.store(false, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
