//! The device WebSocket endpoint.
//!
//! Served with tokio-tungstenite directly (not through axum), so that each connection is one
//! task with a small read buffer and no HTTP server state behind it: the per-connection memory is
//! the socket buffers, a 4 KiB read buffer, this task's future and a `DeviceLink`.
//!
//! A connection goes through: TCP accept → WebSocket handshake (path and subprotocol checked,
//! bounded in time) → one `pair` or `resume` (within the hello timeout) → a session that sends
//! configurations as they come and answers acknowledgements, with keepalive. Anything malformed
//! closes this one connection with the matching close code; no input from a device can panic the
//! server or reach another connection.
//!
//! `wire` translates between the wire and the engine's words, both ways; nothing else here
//! knows both.

mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use client::stream::MaybeTls;
use engine::link::DeviceLink;
use engine::{AckAnswer, Engine, PairAnswer, PairRequest, ResumeAnswer, WaitChoice};
use futures_util::{SinkExt, StreamExt};
use protocol::{Acknowledged, CloseCode, DeviceMessage, Encoding, Ended, Refused, ServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::task::TaskTracker;

use crate::address_slots::{AddressSlots, Slot};
use crate::config::DeviceSettings;
use crate::metrics::ConnectionRefusal;
use crate::proxy::{TrustedProxies, read_proxy_header};
use crate::tls::ServerTls;

/// Shared by every connection.
#[derive(Debug)]
pub(crate) struct DeviceEndpoint {
    pub engine: Engine,
    pub settings: DeviceSettings,
    pub stats: EndpointStats,
    /// Slots for connections that have not proven themselves yet, per address.
    pub unproven: Arc<AddressSlots>,
    /// Connections waiting in line for a license, per address (`max_waiting_per_address`).
    pub waiting: Arc<AddressSlots>,
    /// TLS, when paird terminates it itself.
    pub tls: Option<ServerTls>,
    /// Peers whose PROXY header or forwarding headers name the client.
    pub trusted: TrustedProxies,
}

/// Connection counters for the status page.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub open_connections: AtomicU64,
    pub accepted: AtomicU64,
    pub refused_handshakes: AtomicU64,
    pub accept_errors: AtomicU64,
    /// Unproven connections closed because newer ones from the same address needed the slot.
    pub evicted_unproven: AtomicU64,
    /// The refused handshakes by reason, in the order of [`ConnectionRefusal::ALL`].
    pub connection_refusals: [AtomicU64; ConnectionRefusal::ALL.len()],
    /// Configurations sent to devices (on pairing, resume, or a change).
    pub configurations_sent: AtomicU64,
}

impl EndpointStats {
    fn refused(&self, reason: ConnectionRefusal) {
        self.refused_handshakes.fetch_add(1, Ordering::Relaxed);
        self.connection_refusals[reason.slot()].fetch_add(1, Ordering::Relaxed);
    }
}

/// The window of the control-frame limit.
const CONTROL_FRAME_WINDOW: Duration = Duration::from_secs(60);

/// Accepts device connections until `shutdown` turns true.
///
/// `ceiling` holds one permit per connection this node may have open: with none left, the
/// node stops accepting (connections wait in the listen backlog) until one closes.
pub(crate) async fn serve(
    listener: TcpListener,
    endpoint: Arc<DeviceEndpoint>,
    ceiling: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
) {
    let mut last_exhaustion_log: Option<Instant> = None;
    let mut last_ceiling_log: Option<Instant> = None;
    loop {
        let permit = match Arc::clone(&ceiling).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let now = Instant::now();
                if last_ceiling_log.is_none_or(|at| now.duration_since(at) > Duration::from_secs(5))
                {
                    tracing::warn!("device connection ceiling reached; accepting paused");
                    last_ceiling_log = Some(now);
                }
                tokio::select! {
                    permit = Arc::clone(&ceiling).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                endpoint.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let endpoint = Arc::clone(&endpoint);
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    let _permit = permit;
                    endpoint
                        .stats
                        .open_connections
                        .fetch_add(1, Ordering::Relaxed);
                    connection(stream, peer, &endpoint, shutdown).await;
                    endpoint
                        .stats
                        .open_connections
                        .fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(error) => {
                endpoint.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                // Out of file descriptors (EMFILE/ENFILE) or socket buffers: back-pressure.
                // Pause accepting so that connections close and free descriptors, instead of
                // spinning on an accept that cannot succeed. Pending connections wait in the
                // listen backlog.
                let exhausted = matches!(error.raw_os_error(), Some(23 | 24 | 105 | 12));
                let pause = if exhausted {
                    Duration::from_millis(50)
                } else {
                    Duration::from_millis(5)
                };
                let now = Instant::now();
                if last_exhaustion_log
                    .is_none_or(|at| now.duration_since(at) > Duration::from_secs(5))
                {
                    tracing::warn!(%error, exhausted, "accept failed; pausing");
                    last_exhaustion_log = Some(now);
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    endpoint: &DeviceEndpoint,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let settings = &endpoint.settings;
    let trusted = endpoint.trusted.trusts(peer.ip());
    // From a trusted proxy, a PROXY header may name the client before anything else is sent.
    let mut client = peer.ip();
    let mut proxied = false;
    if trusted {
        match read_proxy_header(&mut stream, settings.handshake_timeout).await {
            Ok(Some(address)) => {
                client = address;
                proxied = true;
            }
            Ok(None) => {}
            Err(error) => {
                endpoint.stats.refused(ConnectionRefusal::ProxyHeader);
                tracing::debug!(%peer, %error, "PROXY header refused");
                return;
            }
        }
    }
    // The TLS handshake, when there is one, and the WebSocket handshake share the time allowed.
    let handshake = async {
        let stream = match &endpoint.tls {
            Some(tls) => tls
                .accept(stream)
                .await
                .map_err(|error| (ConnectionRefusal::Handshake, tungstenite::Error::Io(error)))?,
            None => MaybeTls::Plain(stream),
        };
        let forwarding = (trusted && !proxied).then_some((&endpoint.trusted, peer.ip()));
        accept_upgrade(stream, websocket_config(settings), forwarding).await
    };
    let (ws, upgrade) = match tokio::time::timeout(settings.handshake_timeout, handshake).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err((reason, error))) => {
            endpoint.stats.refused(reason);
            tracing::debug!(%peer, %error, "handshake refused");
            return;
        }
        Err(_) => {
            endpoint.stats.refused(ConnectionRefusal::HandshakeTimeout);
            tracing::debug!(%peer, "handshake timed out");
            return;
        }
    };
    let encoding = upgrade.encoding;
    let client = upgrade.forwarded_for.unwrap_or(client);
    // Held from the handshake until the connection pairs or resumes (the handshake itself is
    // bounded by its timeout): counted against the client's address, not the proxy's.
    let slot = endpoint.unproven.take_evicting_oldest(client);
    let link = endpoint.engine.new_link(client);
    let mut session = Session {
        ws,
        encoding,
        link: Arc::clone(&link),
        endpoint,
        slot,
        failures: 0,
        paired: false,
        waiting: None,
        turn_came: false,
        waiting_slot: None,
        control_frames: 0,
        control_window: Instant::now(),
    };
    session.run(shutdown).await;
    endpoint.engine.disconnected(&link).await;
}

/// What an upgrade request that passed the device endpoint's checks chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    pub encoding: Encoding,
    /// The client's address named by forwarding headers (only looked for when the peer is a
    /// trusted proxy that sent no PROXY header).
    pub forwarded_for: Option<IpAddr>,
}

/// The WebSocket handshake of the device endpoint on `stream`: the request's path and offered
/// subprotocols are checked (a refusal answers 404 or 400 and says why), and, when `forwarding`
/// names the trusted proxies and the peer, the client's address is read from the forwarding
/// headers. Generic over the stream so that the fuzz targets drive this same code over an
/// in-memory one.
pub(crate) async fn accept_upgrade<S>(
    stream: S,
    config: WebSocketConfig,
    forwarding: Option<(&TrustedProxies, IpAddr)>,
) -> Result<(WebSocketStream<S>, Upgrade), (ConnectionRefusal, tungstenite::Error)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut chosen = None;
    let mut refused_for = ConnectionRefusal::Handshake;
    // The error type is tungstenite's handshake callback signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        if request.uri().path() != protocol::DEVICE_PATH {
            refused_for = ConnectionRefusal::Path;
            return Err(refusal(
                StatusCode::NOT_FOUND,
                "the device endpoint is /device",
            ));
        }
        let offered: Vec<&str> = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let Some(encoding) = Encoding::negotiate(&offered.join(",")) else {
            refused_for = ConnectionRefusal::Subprotocol;
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "unsupported subprotocol: offer paird.v1.postcard or paird.v1.json",
            ));
        };
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(encoding.subprotocol()),
        );
        let forwarded_for =
            forwarding.map(|(trusted, peer)| trusted.client_address(peer, request.headers()));
        chosen = Some(Upgrade {
            encoding,
            forwarded_for,
        });
        Ok(response)
    };
    match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await {
        Ok(ws) => match chosen {
            Some(upgrade) => Ok((ws, upgrade)),
            // tungstenite upgrades only after the callback accepted.
            None => Err((refused_for, tungstenite::Error::ConnectionClosed)),
        },
        Err(error) => Err((refused_for, error)),
    }
}

/// The WebSocket settings of a device connection.
pub(crate) fn websocket_config(settings: &DeviceSettings) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(settings.read_buffer)
        // Frames are fed into tungstenite's buffer and written by one flush per burst (a
        // `paired` answer and the configuration behind it leave in one write). Past one
        // fragment the buffer is written out at once, so it never holds more than two.
        .write_buffer_size(FRAGMENT_BYTES)
        .max_write_buffer_size(settings.max_write_backlog)
        .max_message_size(Some(settings.max_frame))
        .max_frame_size(Some(settings.max_frame))
}

fn refusal(status: StatusCode, message: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(message.to_string()));
    *response.status_mut() = status;
    response
}

struct Session<'a> {
    ws: WebSocketStream<MaybeTls>,
    encoding: Encoding,
    link: Arc<DeviceLink>,
    endpoint: &'a DeviceEndpoint,
    /// Held until the connection pairs or resumes; a newer unproven connection from the same
    /// address may take it before (the connection is then closed, 4004).
    slot: Slot,
    failures: u32,
    paired: bool,
    /// The pairing of a device waiting in its organization's line: asked again when its
    /// connection is told that it left the line.
    waiting: Option<PairRequest>,
    /// The engine told the waiting device that it left the line.
    turn_came: bool,
    /// This connection's place among its address's waiting connections, while it waits.
    waiting_slot: Option<Slot>,
    /// Control frames (ping, pong) heard in the current minute, and when that minute began.
    control_frames: u32,
    control_window: Instant,
}

/// What the session loop does next.
enum Next {
    Continue,
    Close(CloseCode),
    /// Close with a reason of our own rather than the code's usual one.
    CloseBecause(CloseCode, &'static str),
    /// The peer is gone (or closed); nothing more to send.
    Stop,
}

impl Session<'_> {
    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) {
        let settings = &self.endpoint.settings;
        let mut ping = tokio::time::interval_at(
            Instant::now() + settings.ping_interval,
            settings.ping_interval,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let hello_deadline = Instant::now() + settings.hello_timeout;
        let next = loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.changed() => Next::Close(CloseCode::GoingAway),
                () = self.link.changed() => self.deliver().await,
                frame = self.ws.next() => {
                    last_heard = Instant::now();
                    self.on_frame(frame).await
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= settings.silence_limit {
                        Next::Close(CloseCode::KeepaliveTimeout)
                    } else {
                        self.send_bounded(Message::Ping(Default::default())).await
                    }
                }
                () = sleep_until(hello_deadline), if !self.paired && self.waiting.is_none() => Next::Close(CloseCode::HelloTimeout),
                () = self.slot.evicted(), if !self.slot.is_released() => {
                    self.endpoint.stats.evicted_unproven.fetch_add(1, Ordering::Relaxed);
                    Next::Close(CloseCode::HelloTimeout)
                }
            };
            match next {
                Next::Continue => continue,
                other => break other,
            }
        };
        match next {
            Next::Close(code) => self.close(code, code.reason().to_string()).await,
            Next::CloseBecause(code, reason) => self.close(code, reason.to_string()).await,
            Next::Continue | Next::Stop => {}
        }
    }

    /// Sends what the engine queued on the link: the newest configuration, or the end.
    async fn deliver(&mut self) -> Next {
        let fed = self.flush_link_update().await;
        if !matches!(fed, Next::Continue) || !std::mem::take(&mut self.turn_came) {
            return fed;
        }
        match self.waiting.take() {
            Some(mut request) => {
                // Out of the line: the same pairing again says what became of it.
                self.waiting_slot = None;
                request.wait = WaitChoice::AfterTurn;
                self.answer_pairing(request).await
            }
            None => Next::Continue,
        }
    }

    /// Sends what the engine queued on the link, and flushes.
    async fn flush_link_update(&mut self) -> Next {
        match self.feed_link_update().await {
            Next::Continue => self.flush_bounded().await,
            other => other,
        }
    }

    /// Feeds what the engine queued on the link into the write buffer, without flushing.
    async fn feed_link_update(&mut self) -> Next {
        let update = self.link.take();
        if let Some(end) = update.end {
            return self.end(wire::end_reason(end)).await;
        }
        if update.turn {
            self.turn_came = true;
        }
        if let Some(revision) = update.configuration {
            self.endpoint
                .stats
                .configurations_sent
                .fetch_add(1, Ordering::Relaxed);
            let encoded = wire::configuration_frame(&revision, self.encoding);
            return self.feed_fragmented(&encoded).await;
        }
        Next::Continue
    }

    /// Feeds an encoded message in fragments of at most [`FRAGMENT_BYTES`]. tungstenite keeps
    /// its write buffer at the size of the largest frame it ever wrote, for the connection's
    /// life: a 256 KiB configuration sent in one frame would pin 256 KiB to every connection
    /// it reached. In fragments, a connection holds at most one fragment, and a device that
    /// stops reading holds at most one fragment plus its socket buffers.
    async fn feed_fragmented(&mut self, encoded: &wire::EncodedMessage) -> Next {
        let opcode = if encoded.text {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Binary)
        };
        let total = encoded.bytes.len();
        let mut start = 0;
        loop {
            let end = (start + FRAGMENT_BYTES).min(total);
            let fragment_opcode = if start == 0 {
                opcode
            } else {
                OpCode::Data(Data::Continue)
            };
            let last = end == total;
            let frame = Frame::message(encoded.bytes.slice(start..end), fragment_opcode, last);
            let fed = self.feed_bounded(Message::Frame(frame)).await;
            if last || !matches!(fed, Next::Continue) {
                return fed;
            }
            start = end;
        }
    }

    /// Sends one frame, giving up on a device that has not read anything for the silence
    /// limit: its socket stays full, and waiting longer would only pin the connection.
    async fn send_bounded(&mut self, frame: Message) -> Next {
        match self.feed_bounded(frame).await {
            Next::Continue => self.flush_bounded().await,
            other => other,
        }
    }

    /// Puts one frame into the write buffer; it reaches the socket once the buffer passes one
    /// fragment or at the next flush. Bounded like [`Self::send_bounded`].
    async fn feed_bounded(&mut self, frame: Message) -> Next {
        let limit = self.endpoint.settings.silence_limit;
        bounded(tokio::time::timeout(limit, self.ws.feed(frame)).await)
    }

    /// Writes out everything fed so far. Bounded like [`Self::send_bounded`].
    async fn flush_bounded(&mut self) -> Next {
        let limit = self.endpoint.settings.silence_limit;
        bounded(tokio::time::timeout(limit, self.ws.flush()).await)
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, tungstenite::Error>>) -> Next {
        let (bytes, is_text) = match frame {
            None | Some(Ok(Message::Close(_))) => return Next::Stop,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                return self.count_control_frame();
            }
            Some(Ok(Message::Binary(bytes))) => (bytes, false),
            Some(Ok(Message::Text(text))) => (text.into(), true),
            Some(Err(tungstenite::Error::Capacity(_))) => {
                self.endpoint.engine.record_failed_attempt(self.link.peer);
                return Next::Close(CloseCode::MessageTooBig);
            }
            // A device that loses its network drops the TCP connection without a close frame:
            // that is not a failed attempt.
            Some(Err(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake,
            ))) => {
                return Next::Stop;
            }
            Some(Err(tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_))) => {
                self.endpoint.engine.record_failed_attempt(self.link.peer);
                return Next::Close(CloseCode::ProtocolError);
            }
            Some(Err(_)) => return Next::Stop,
        };
        let message =
            match self
                .encoding
                .decode_device(&bytes, is_text, self.endpoint.settings.max_frame)
            {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(peer = %self.link.peer, %error, "undecodable frame");
                    self.endpoint.engine.record_failed_attempt(self.link.peer);
                    return Next::Close(error.close_code());
                }
            };
        match message {
            DeviceMessage::Pair(pair) | DeviceMessage::PairOrWait(pair)
                if self.paired || self.waiting.is_some() =>
            {
                let _ = pair;
                Next::Close(CloseCode::PolicyViolation)
            }
            DeviceMessage::Pair(pair) => {
                self.answer_pairing(wire::pair_request(pair, WaitChoice::No))
                    .await
            }
            DeviceMessage::PairOrWait(pair) => {
                // An address keeps at most so many connections in line: past it, the device is
                // answered as one that does not wait.
                self.waiting_slot = self.endpoint.waiting.try_take(self.link.peer);
                let wait = if self.waiting_slot.is_some() {
                    WaitChoice::InLine
                } else {
                    WaitChoice::No
                };
                self.answer_pairing(wire::pair_request(pair, wait)).await
            }
            DeviceMessage::Resume(resume) => {
                if self.paired || self.waiting.is_some() {
                    return Next::Close(CloseCode::PolicyViolation);
                }
                let request = wire::resume_request(resume);
                match self.endpoint.engine.resume(request, &self.link).await {
                    ResumeAnswer::Resumed(device) => {
                        self.paired = true;
                        self.slot.release();
                        self.send_with_link_update(&wire::resumed(&device)).await
                    }
                    ResumeAnswer::Ended(end) => self.end(wire::end_reason(end)).await,
                    ResumeAnswer::Unavailable { .. } => Next::Close(CloseCode::TryAgainLater),
                    ResumeAnswer::Malformed => Next::Close(CloseCode::InvalidPayload),
                }
            }
            DeviceMessage::Ack(ack) => {
                let request = wire::ack_request(&ack);
                match self.endpoint.engine.acknowledge(&self.link, request).await {
                    AckAnswer::Recorded(recorded) => {
                        let answer = ServerMessage::Acknowledged(Acknowledged {
                            configuration_id: ack.configuration_id,
                            revision: ack.revision,
                            recorded,
                        });
                        self.send(&answer).await
                    }
                    AckAnswer::Unavailable => Next::Close(CloseCode::TryAgainLater),
                    AckAnswer::NotPaired => Next::Close(CloseCode::PolicyViolation),
                    AckAnswer::Malformed => Next::Close(CloseCode::InvalidPayload),
                }
            }
        }
    }

    /// Asks the engine to pair and answers the device: paired, refused, or waiting in line.
    async fn answer_pairing(&mut self, request: PairRequest) -> Next {
        let again = request.clone();
        match self.endpoint.engine.pair(request, &self.link).await {
            PairAnswer::Paired(device) => {
                self.paired = true;
                self.slot.release();
                self.waiting_slot = None;
                self.send_with_link_update(&wire::paired(&device)).await
            }
            PairAnswer::Waiting { position } => {
                // A device in line presented a valid code: it is an app at work, not an
                // unproven connection, and may wait as long as its line does.
                self.slot.release();
                self.waiting = Some(again);
                let answer = ServerMessage::Waiting(protocol::Waiting { position });
                self.send(&answer).await
            }
            PairAnswer::Refused {
                reason,
                retry_after_ms,
            } => {
                self.waiting_slot = None;
                let answer = ServerMessage::Refused(Refused {
                    reason: wire::refusal_reason(reason),
                    retry_after_ms,
                });
                let sent = self.send(&answer).await;
                if !matches!(sent, Next::Continue) {
                    return sent;
                }
                if engine::limiter::counts_against_connection(reason) {
                    self.failures += 1;
                    if self.failures >= self.endpoint.settings.failures_per_connection {
                        return Next::Close(CloseCode::TooManyFailures);
                    }
                }
                Next::Continue
            }
        }
    }

    /// Counts a control frame against the per-minute limit: one connection that sent 353,000
    /// pings a second (each answered with a pong) slowed every pairing of the node 3-5x.
    fn count_control_frame(&mut self) -> Next {
        let now = Instant::now();
        if now.duration_since(self.control_window) >= CONTROL_FRAME_WINDOW {
            self.control_window = now;
            self.control_frames = 0;
        }
        self.control_frames += 1;
        if self.control_frames > self.endpoint.settings.max_control_frames_per_minute {
            tracing::debug!(peer = %self.link.peer, "too many control frames");
            return Next::CloseBecause(CloseCode::PolicyViolation, "too many control frames");
        }
        Next::Continue
    }

    /// Tells the device its session ended, and why; the connection then closes with the
    /// reason's close code.
    async fn end(&mut self, reason: protocol::EndReason) -> Next {
        let _ = self.send(&ServerMessage::Ended(Ended { reason })).await;
        Next::Close(reason.close_code())
    }

    /// Sends a `paired` or `resumed` answer and, in the same write, the configuration the
    /// engine queued on the link when it bound the connection (before answering).
    async fn send_with_link_update(&mut self, answer: &ServerMessage) -> Next {
        match self.feed_bounded(encode(self.encoding, answer)).await {
            Next::Continue => self.flush_link_update().await,
            other => other,
        }
    }

    async fn send(&mut self, message: &ServerMessage) -> Next {
        self.send_bounded(encode(self.encoding, message)).await
    }

    /// Sends a close frame, then waits briefly for the peer's close so that the frame is read
    /// before the socket goes away.
    async fn close(&mut self, code: CloseCode, mut reason: String) {
        // A close frame's reason fits in 123 bytes.
        while reason.len() > 123 {
            reason.pop();
        }
        let frame = CloseFrame {
            code: code.code().into(),
            reason: reason.into(),
        };
        // A device that stopped reading may never take the close frame: bounded.
        let sent = tokio::time::timeout(Duration::from_secs(2), self.ws.close(Some(frame))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// What a bounded write came to.
fn bounded(written: Result<Result<(), tungstenite::Error>, tokio::time::error::Elapsed>) -> Next {
    match written {
        Ok(Ok(())) => Next::Continue,
        Ok(Err(_)) => Next::Stop,
        Err(_) => Next::Close(CloseCode::KeepaliveTimeout),
    }
}

/// Encodes a message as the frame type of its encoding.
pub(crate) fn encode(encoding: Encoding, message: &ServerMessage) -> Message {
    let bytes = encoding.encode_server(message);
    if encoding.uses_text_frames() {
        // serde_json writes UTF-8.
        Message::Text(String::from_utf8(bytes).unwrap_or_default().into())
    } else {
        Message::Binary(bytes.into())
    }
}

/// Largest frame the server writes; longer messages go in several fragments.
const FRAGMENT_BYTES: usize = 4096;
