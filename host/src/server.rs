//! The HTTP server: our own accept loop around hyper, so every resource a client can make the host
//! hold has a bound.
//!
//! - **Connections**: at most [`ServerLimits::max_connections`] at once, kept below the process's
//!   file-descriptor limit (raised to its hard limit at start where allowed). At the cap, the
//!   connection idle the longest (no request in progress: between keep-alive requests, or still
//!   sending its headers) is closed to make room; when every connection is busy, the new one is
//!   answered `503` with `Retry-After` and closed — accepting never stops.
//! - **Time**: request headers (and the idle time between keep-alive requests) must arrive within
//!   [`ServerLimits::header_read_timeout`]; a request body that stalls for
//!   [`ServerLimits::body_read_timeout`] is answered `408` (in the API router).
//! - **Memory**: hyper's read buffer is capped at [`ServerLimits::max_header_bytes`] and its header
//!   count at [`ServerLimits::max_headers`]; bodies are limited per route in the API router.
//!
//! hyper answers requests beyond its hard header limits itself, with an empty body; those answers
//! are rewritten into the API's JSON error shape on their way out ([`JsonErrorIo`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// File descriptors kept free for the database, outbound requests, plugins and logs.
const RESERVED_DESCRIPTORS: u64 = 1_024;
/// How long a stopping server waits for requests in progress to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Connections being refused with a `503` at once; beyond this they are closed without an answer.
const MAX_SHEDDING: usize = 256;

/// Bounds on what clients can make the server hold.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections open at once (lowered at start to fit the descriptor limit).
    pub max_connections: usize,
    /// Time to send a request's headers, and to start the next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    /// Headers hyper parses per request; more are answered `431` (the API's own, lower limit
    /// answers first with a message).
    pub max_headers: usize,
    /// hyper's read buffer per connection, which bounds a request head's size.
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 8_192,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(15),
            max_headers: 256,
            max_header_bytes: 128 << 10,
        }
    }
}

impl ServerLimits {
    /// The connection cap to use: the configured one, or less if the descriptor limit (after
    /// raising the soft limit to the hard one) leaves less room.
    pub fn effective_max_connections(&self) -> usize {
        let descriptors = raise_descriptor_limit();
        let room = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(16);
        self.max_connections.min(room as usize).max(1)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit where allowed; returns the soft limit now.
#[cfg(unix)]
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1_024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(not(unix))]
fn raise_descriptor_limit() -> u64 {
    8_192 + RESERVED_DESCRIPTORS
}

/// One open connection, as the accept loop sees it.
struct Tracked {
    /// Requests in progress on it (response bodies included).
    in_flight: Arc<AtomicUsize>,
    /// When it last started or finished a request (ms since the server started).
    last_active: Arc<AtomicU64>,
    /// Closes it.
    close: CancellationToken,
}

/// The open connections.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Tracked>>,
    next_id: AtomicU64,
}

impl Connections {
    fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// Closes the connection idle the longest, if any is idle; whether one was.
    fn evict_idle(&self) -> bool {
        let Ok(open) = self.open.lock() else { return false };
        let oldest = open
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0 && !c.close.is_cancelled())
            .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
        match oldest {
            Some(connection) => {
                connection.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Connections not already being closed.
    fn live(&self) -> usize {
        self.open
            .lock()
            .map(|o| o.values().filter(|c| !c.close.is_cancelled()).count())
            .unwrap_or(0)
    }
}

/// Counters the server exposes (for `/metrics` and tests).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub open_connections: AtomicUsize,
    pub evicted_idle: AtomicU64,
    pub shed_busy: AtomicU64,
}

/// Serves `router` on `listener` until `shutdown`, within `limits`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    shutdown: CancellationToken,
) {
    let max_connections = limits.effective_max_connections();
    tracing::info!(max_connections, "accepting connections");
    let started = Instant::now();
    let connections = Arc::new(Connections::default());
    let shedding = Arc::new(Semaphore::new(MAX_SHEDDING));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8_192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let mut accept_errors = 0u32;

    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => { accept_errors = 0; pair }
                Err(error) => {
                    // Out of descriptors or memory for a moment: back off instead of spinning.
                    accept_errors = accept_errors.saturating_add(1);
                    if accept_errors == 1 || accept_errors.is_power_of_two() {
                        tracing::warn!(%error, in_a_row = accept_errors, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(accept_errors.min(50)))).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if connections.live() >= max_connections && !connections.evict_idle() {
            stats.shed_busy.fetch_add(1, Ordering::Relaxed);
            shed(stream, &shedding);
            continue;
        }
        if connections.live() >= max_connections {
            stats.evicted_idle.fetch_add(1, Ordering::Relaxed);
        }
        let id = connections.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Tracked {
            in_flight: Arc::new(AtomicUsize::new(0)),
            last_active: Arc::new(AtomicU64::new(started.elapsed().as_millis() as u64)),
            close: shutdown.child_token(),
        };
        let (in_flight, last_active, close) = (
            tracked.in_flight.clone(),
            tracked.last_active.clone(),
            tracked.close.clone(),
        );
        if let Ok(mut open) = connections.open.lock() {
            open.insert(id, tracked);
        }
        stats.open_connections.store(connections.len(), Ordering::Relaxed);

        let service = ConnectionService {
            router: router.clone(),
            peer,
            in_flight,
            last_active,
            started,
        };
        let (builder, connections, stats, shutdown) =
            (builder.clone(), connections.clone(), stats.clone(), shutdown.clone());
        let first_byte_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // hyper's header timeout starts once it reads; the HTTP version detection before it
            // waits for a first byte with no limit, so bound that wait here.
            let mut first = [0u8; 1];
            let arrived = tokio::select! {
                peeked = tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)) => matches!(peeked, Ok(Ok(n)) if n > 0),
                _ = close.cancelled() => false,
            };
            if !arrived {
                if let Ok(mut open) = connections.open.lock() {
                    open.remove(&id);
                }
                stats.open_connections.store(connections.len(), Ordering::Relaxed);
                return;
            }
            let io = TokioIo::new(JsonErrorIo::new(stream));
            let hyper_service = hyper_util::service::TowerToHyperService::new(service);
            let connection = builder.serve_connection_with_upgrades(io, hyper_service);
            tokio::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                _ = close.cancelled() => {
                    if shutdown.is_cancelled() {
                        // Shutting down: finish the requests in progress, then close.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    } else {
                        // Evicted while idle: nothing in progress to lose.
                        Ok(())
                    }
                }
            };
            if let Err(error) = outcome {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
            if let Ok(mut open) = connections.open.lock() {
                open.remove(&id);
            }
            stats.open_connections.store(connections.len(), Ordering::Relaxed);
        });
    }
    // Let open connections finish what they are doing, for a while.
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while connections.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers a connection the server has no room for with `503` and `Retry-After`, then closes it.
fn shed(stream: TcpStream, shedding: &Arc<Semaphore>) {
    let Ok(permit) = shedding.clone().try_acquire_owned() else {
        // Too many refusals in progress already: close at once.
        return;
    };
    tokio::spawn(async move {
        let body = r#"{"error":"unavailable","message":"the server is at its connection limit; retry in a second"}"#;
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
        drop(permit);
    });
}

/// The router for one connection: adds the peer address and counts requests in progress.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    in_flight: Arc<AtomicUsize>,
    last_active: Arc<AtomicU64>,
    started: Instant,
}

impl tower::Service<axum::http::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let guard = InFlight::enter(self.in_flight.clone(), self.last_active.clone(), self.started);
        let mut router = self.router.clone();
        Box::pin(async move {
            let response = tower::Service::call(&mut router, request.map(axum::body::Body::new)).await?;
            // The request stays in progress until its response body is sent.
            Ok(response.map(|body| axum::body::Body::new(GuardedBody { body, _guard: guard })))
        })
    }
}

/// Counts one request in progress on a connection while it lives.
struct InFlight {
    in_flight: Arc<AtomicUsize>,
    last_active: Arc<AtomicU64>,
    started: Instant,
}

impl InFlight {
    fn enter(in_flight: Arc<AtomicUsize>, last_active: Arc<AtomicU64>, started: Instant) -> Self {
        in_flight.fetch_add(1, Ordering::AcqRel);
        last_active.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        Self {
            in_flight,
            last_active,
            started,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.last_active
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted until it is done or dropped.
struct GuardedBody {
    body: axum::body::Body,
    _guard: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, with hyper's own error answers (an empty `400`/`431` for a request it could not
/// parse, e.g. too many or too large headers) rewritten into the API's JSON error shape.
///
/// The API itself never answers a 4xx with an empty body, so an empty 4xx written before any
/// request was served on the connection, or after a parse error, is hyper's.
struct JsonErrorIo {
    inner: TcpStream,
    /// A rewritten answer being written in place of the bytes hyper handed over.
    pending: Option<Rewritten>,
}

struct Rewritten {
    bytes: Vec<u8>,
    written: usize,
    /// How many bytes hyper wrote, reported once the rewritten answer is out.
    original: usize,
}

impl JsonErrorIo {
    fn new(inner: TcpStream) -> Self {
        Self { inner, pending: None }
    }
}

/// The JSON answer replacing hyper's empty error answer in `head`, if `head` is one.
fn rewrite_hyper_error(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    if !text.ends_with("\r\n\r\n") {
        return None;
    }
    let status_line = text.lines().next()?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") || !code.starts_with('4') || code.len() != 3 {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if !lower.contains("\r\ncontent-length: 0\r\n") || lower.contains("content-type:") {
        return None;
    }
    let (error, message) = match code {
        "431" => (
            "headers_too_large",
            "the request's headers are too many or too large; send fewer, shorter headers",
        ),
        "414" => ("uri_too_long", "the request URI is too long"),
        "408" => ("timeout", "the request took too long to arrive"),
        _ => (
            "bad_request",
            "the request could not be parsed as HTTP/1.1; check its request line and headers",
        ),
    };
    let body = format!(r#"{{"error":"{error}","message":"{message}"}}"#);
    let mut out = String::with_capacity(text.len() + body.len() + 40);
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("content-type: application/json\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    Some(out.into_bytes())
}

impl AsyncRead for JsonErrorIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonErrorIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none()
            && buf.len() < 1_024
            && let Some(bytes) = rewrite_hyper_error(buf)
        {
            this.pending = Some(Rewritten {
                bytes,
                written: 0,
                original: buf.len(),
            });
        }
        let Some(pending) = &mut this.pending else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        while pending.written < pending.bytes.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &pending.bytes[pending.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => pending.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let original = pending.original;
        this.pending = None;
        Poll::Ready(Ok(original))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_answers_become_json() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 14:00:00 GMT\r\n\r\n";
        let rewritten = String::from_utf8(rewrite_hyper_error(head).unwrap()).unwrap();
        assert!(rewritten.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(rewritten.contains("content-type: application/json\r\n"));
        let (_, body) = rewritten.split_once("\r\n\r\n").unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "headers_too_large");
        assert!(rewritten.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[test]
    fn other_answers_pass_unchanged() {
        for head in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n",
        ] {
            assert!(rewrite_hyper_error(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }
}
