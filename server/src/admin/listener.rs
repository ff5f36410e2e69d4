//! The admin listener: accepts HTTP/1.1 connections and serves the router on each, within
//! limits that no client can lift.
//!
//! `axum::serve` has no limits: slow-header and idle connections were never closed, and 20,200
//! of them took every file descriptor of the process (the device endpoint could no longer
//! accept). Here:
//! - the headers of a request must arrive within the header timeout (hyper's
//!   `header_read_timeout`, which also covers a connection that sends nothing);
//! - a connection with no bytes in either direction for the idle timeout is shut down
//!   gracefully (a request in flight finishes; the live feed's keep-alive comments keep its
//!   connection busy);
//! - at most `max_connections` are open at once: a descriptor budget counted in the reserve the
//!   device ceiling leaves (`lib.rs`), so the admin side cannot take the device side's
//!   descriptors; at the ceiling, accepting pauses;
//! - one address (an IPv6 client's /64) holds at most `max_per_address` of them; past it a new
//!   connection is answered 429 and closed at once, so one client cannot take the whole budget.
//!
//! Each request carries the peer's address as `ConnectInfo<SocketAddr>`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use client::stream::MaybeTls;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::address_slots::AddressSlots;
use crate::proxy::TrustedProxies;
use crate::tls::ServerTls;

/// The address of the client a request came from: the peer's, or from a trusted proxy the one
/// its forwarding headers name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

/// The admin listener's limits.
#[derive(Debug, Clone)]
pub struct AdminLimits {
    /// Time allowed for a request's headers to arrive (from the connection's start or the end of
    /// the previous answer).
    pub header_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Most admin connections open at once (each takes one open file).
    pub max_connections: usize,
    /// Most admin connections one address holds at once (0: no cap).
    pub max_per_address: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
            max_per_address: 64,
        }
    }
}

/// Counters of the admin listener.
#[derive(Debug, Default)]
pub struct AdminListenerStats {
    pub open_connections: AtomicU64,
    pub accepted: AtomicU64,
    /// Connections refused because their address held its cap.
    pub refused_per_address: AtomicU64,
    /// Connections closed for idleness.
    pub idle_closed: AtomicU64,
}

/// The answer to a connection past its address's cap.
fn too_many() -> String {
    let body = r#"{"error":{"code":"too_many_connections","message":"too many admin connections from this address; retry after a second"}}"#;
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `router` on `listener` until `shutdown` turns true, then lets the requests in flight
/// finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    stats: Arc<AdminListenerStats>,
    tls: Option<ServerTls>,
    trusted: TrustedProxies,
    mut shutdown: watch::Receiver<bool>,
) {
    let trusted = Arc::new(trusted);
    let ceiling = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = AddressSlots::new(limits.max_per_address);
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&ceiling).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or buffers: pause rather than spin.
                    tracing::warn!(%error, "admin accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        // A trusted proxy carries many clients' requests: its connections are not capped.
        let slot = if trusted.trusts(peer.ip()) {
            None
        } else {
            match per_address.try_take(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    stats.refused_per_address.fetch_add(1, Ordering::Relaxed);
                    tracker.spawn(refuse(stream, permit));
                    continue;
                }
            }
        };
        let trusted = Arc::clone(&trusted);
        let router = router.clone();
        let stats = Arc::clone(&stats);
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            let _held = (permit, slot);
            stats.open_connections.fetch_add(1, Ordering::Relaxed);
            let stream = match tls {
                // The TLS handshake has the time the headers have.
                Some(tls) => {
                    match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => Some(stream),
                        _ => None,
                    }
                }
                None => Some(MaybeTls::Plain(stream)),
            };
            if let Some(stream) = stream {
                connection(stream, peer, &trusted, router, &limits, &stats, shutdown).await;
            }
            stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Answers 429 and closes: after the request's head has arrived (an HTTP client that is sent
/// an answer before it has written its request may take it for a broken connection), and then
/// reading and dropping what else it sends for a moment, because closing a socket with unread
/// bytes resets the connection and the reset can overtake the answer. All of it is bounded in
/// time and size; a client that does not send its head within the second gets no answer.
async fn refuse(mut stream: TcpStream, _permit: tokio::sync::OwnedSemaphorePermit) {
    let head = tokio::time::timeout(Duration::from_secs(1), async {
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while head.len() < REFUSED_HEAD_BYTES {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return false,
                Ok(read) => head.extend_from_slice(&buffer[..read]),
            }
            if head.windows(4).any(|window| window == b"\r\n\r\n") {
                return true;
            }
        }
        true
    })
    .await;
    if head != Ok(true) {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(too_many().as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(250), async {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// The most of a refused request's head read before answering it.
const REFUSED_HEAD_BYTES: usize = 16 * 1024;

async fn connection(
    stream: MaybeTls,
    peer: SocketAddr,
    trusted: &Arc<TrustedProxies>,
    router: Router,
    limits: &AdminLimits,
    stats: &AdminListenerStats,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.tcp().set_nodelay(true);
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched {
        inner: stream,
        started,
        activity: Arc::clone(&activity),
    });
    let trusted = Arc::clone(trusted);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let client = trusted.client_address(peer.ip(), request.headers());
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(ClientAddress(client));
        router.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let check_every = (limits.idle_timeout / 4).max(Duration::from_millis(10));
    let mut closing = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "admin connection ended");
                }
                return;
            }
            () = tokio::time::sleep(check_every), if !closing => {
                let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                if started.elapsed().saturating_sub(last) >= limits.idle_timeout {
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = shutdown.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// A stream that notes when bytes last moved, in milliseconds since `started`.
struct Watched {
    inner: MaybeTls,
    started: Instant,
    activity: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(now, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
