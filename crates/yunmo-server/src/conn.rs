//! Connections of both servers (HTTP and gRPC): how many may be open, when an idle one is closed, and how
//! one is closed.
//!
//! - **Slots**: `server.max_connections` bounds open connections across HTTP and gRPC (a lingering close
//!   included). At the limit the accept loops stop accepting, so new connections wait in the kernel's
//!   backlog, and a warning names the setting (at most every 10 s). At start the process's soft limit on
//!   open files is raised to its hard limit; `max_connections` is lowered to fit under it.
//! - **Idle close**: a connection with no request in flight and no byte read or written for
//!   `server.idle_timeout_seconds` is closed (its reads end, as if the peer had closed), on HTTP/1 and
//!   HTTP/2 alike. A request in flight keeps its connection however long it computes. HTTP/1 request heads
//!   must also arrive within `server.header_read_timeout_seconds` (hyper's timer), which stops slowloris.
//! - **Lingering close**: a connection is closed by shutting down its write side (the peer reads the answer
//!   and an end of stream) and then reading and discarding what the peer still sends, for a few seconds,
//!   before the socket is closed. Closing a socket with unread data makes the kernel reset the connection,
//!   and a client still sending a body it was refused (401, 413, 431) would see "broken pipe" or
//!   "connection reset" instead of the answer; nginx's `lingering_close` does the same.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// How long a closed connection may still be read from (and its bytes discarded).
const LINGER_TOTAL: Duration = Duration::from_secs(5);
/// A lingering read that waits longer than this ends the linger.
const LINGER_READ: Duration = Duration::from_secs(1);
/// At most one "limit reached" warning per this.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Limits of every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections, HTTP and gRPC together.
    pub max_connections: usize,
    /// A connection idle this long is closed.
    pub idle_timeout: Duration,
}

/// The connection slots shared by both servers.
#[derive(Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    limits: ConnectionLimits,
    last_warning: Arc<Mutex<Option<Instant>>>,
}

impl Slots {
    /// Slots for `limits.max_connections` connections.
    pub fn new(limits: ConnectionLimits) -> Slots {
        Slots { semaphore: Arc::new(Semaphore::new(limits.max_connections)), limits, last_warning: Arc::default() }
    }

    /// Waits for a free slot, warning (rate-limited) when none is free.
    async fn acquire(&self, server: &str) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return permit;
        }
        self.warn(|| {
            tracing::warn!(
                server,
                max_connections = self.limits.max_connections,
                "Connection limit reached (server.max_connections); new connections wait until one closes."
            );
        });
        self.semaphore.clone().acquire_owned().await.expect("the slot semaphore is never closed. This is a bug.")
    }

    fn warn(&self, log: impl FnOnce()) {
        let mut last = self.last_warning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            log();
        }
    }

    /// Accepts the next connection on `listener` once a slot is free. Accept errors (the process is out of
    /// file descriptors, say) are logged, rate-limited, and retried after a pause.
    pub async fn accept(&self, listener: &TcpListener, server: &'static str) -> (GuardedIo, SocketAddr) {
        loop {
            // Wait until a slot is free without holding it while no one connects: the HTTP and gRPC listeners
            // share the slots, and an idle listener must not keep one from the other.
            drop(self.acquire(server).await);
            match listener.accept().await {
                Ok((stream, remote)) => {
                    // Free a moment ago; if the other listener took the last one since, this connection
                    // waits here, accepted but not yet read.
                    let slot = Slot::new(self.acquire(server).await);
                    let _ = stream.set_nodelay(true);
                    return (GuardedIo::new(stream, slot, self.limits.idle_timeout), remote);
                }
                Err(error) => {
                    self.warn(|| {
                        tracing::error!(server, %error, "Cannot accept connections (out of file descriptors? raise `ulimit -n` or lower server.max_connections); retrying.");
                    });
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// One connection's slot, from accept until its lingering close ends: counted in the connections gauge
/// ([`yunmo_service::metrics::CONNECTIONS`]) while held.
struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit) -> Slot {
        metrics::gauge!(yunmo_service::metrics::CONNECTIONS).increment(1.0);
        Slot { _permit: permit }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(yunmo_service::metrics::CONNECTIONS).decrement(1.0);
    }
}

/// When a connection was last used, and how many of its requests are in flight.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// A request in flight on a connection; ends when dropped.
pub struct InFlight(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity { started: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) })
    }

    fn touch(&self) {
        self.last_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Marks a request in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// How long since the last request or byte, or `None` while a request is in flight.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.started.elapsed().saturating_sub(last))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted TCP connection holding its slot: closed when idle, and closed lingering.
pub struct GuardedIo {
    stream: Option<TcpStream>,
    slot: Option<Slot>,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    idle_check: Pin<Box<Sleep>>,
    remote: Option<SocketAddr>,
}

impl GuardedIo {
    fn new(stream: TcpStream, slot: Slot, idle_timeout: Duration) -> GuardedIo {
        let remote = stream.peer_addr().ok();
        let idle_check = Box::pin(tokio::time::sleep(idle_timeout));
        GuardedIo { stream: Some(stream), slot: Some(slot), activity: Activity::new(), idle_timeout, idle_check, remote }
    }

    /// The connection's activity, for counting its requests in flight.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    fn stream(&mut self) -> &mut TcpStream {
        self.stream.as_mut().expect("the stream is taken only on drop. This is a bug.")
    }

    /// Whether the connection has been idle past the timeout; re-arms the check otherwise.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_check.as_mut().poll(cx).is_ready() {
            let wait = match self.activity.idle_for() {
                Some(idle) if idle >= self.idle_timeout => return true,
                Some(idle) => self.idle_timeout - idle,
                None => self.idle_timeout,
            };
            self.idle_check.as_mut().reset(tokio::time::Instant::now() + wait);
        }
        false
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.idle_expired(cx) {
            // An end of stream: the server closes the connection as if the peer had.
            tracing::debug!(remote = ?self.remote, "Closing an idle connection.");
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(self.stream()).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(self.stream()).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(self.stream()).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_shutdown(cx)
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        let (Some(stream), Some(slot)) = (self.stream.take(), self.slot.take()) else { return };
        // The slot stays taken until the lingering close ends.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, slot));
        }
    }
}

/// Shuts down the write side, then discards what the peer still sends until it closes, stops sending for
/// [`LINGER_READ`], or [`LINGER_TOTAL`] passes.
async fn linger(mut stream: TcpStream, _slot: Slot) {
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER_TOTAL;
    let mut sink = vec![0u8; 16 << 10];
    loop {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now()).min(LINGER_READ);
        match tokio::time::timeout(wait, stream.read(&mut sink)).await {
            Ok(Ok(read)) if read > 0 => continue,
            _ => return,
        }
    }
}

/// What a gRPC call learns of its connection (tonic puts it in the request's extensions).
#[derive(Debug, Clone)]
pub struct GrpcConnection {
    /// The peer.
    pub remote: Option<SocketAddr>,
    /// The connection's activity.
    pub activity: Arc<Activity>,
}

impl tonic::transport::server::Connected for GuardedIo {
    type ConnectInfo = GrpcConnection;

    fn connect_info(&self) -> GrpcConnection {
        GrpcConnection { remote: self.remote, activity: self.activity.clone() }
    }
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit in force.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(hard)) = (limit.current, limit.maximum)
        && current < hard
    {
        limit.current = Some(hard);
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, current, hard, "Cannot raise the open-file limit to its hard limit.");
            return Some(current);
        }
        tracing::debug!(from = current, to = hard, "Raised the open-file limit.");
    }
    getrlimit(Resource::Nofile).current
}

/// Counts every gRPC call as in flight on its connection while it runs (a layer around tonic's routes).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackCallsLayer;

impl<S> tower::Layer<S> for TrackCallsLayer {
    type Service = TrackCalls<S>;

    fn layer(&self, inner: S) -> TrackCalls<S> {
        TrackCalls(inner)
    }
}

/// See [`TrackCallsLayer`].
#[derive(Debug, Clone)]
pub struct TrackCalls<S>(S);

impl<S, B> tower::Service<axum::http::Request<B>> for TrackCalls<S>
where
    S: tower::Service<axum::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let extensions = request.extensions();
        let activity = extensions
            .get::<GrpcConnection>()
            .or_else(|| extensions.get::<tonic::transport::server::TlsConnectInfo<GrpcConnection>>().map(|info| info.get_ref()))
            .map(|connection| connection.activity.clone());
        let in_flight = activity.map(|activity| activity.begin());
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(in_flight);
            response
        })
    }
}
