//! One WebSocket session with a paird server.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::{
    Ack, AckOutcome, Acknowledged, CloseCode, ConfigRef, DeviceInfo, DeviceMessage, Encoding,
    EndReason, Pair, Paired, Refused, Resume, Resumed, ServerMessage,
};
use tokio::net::TcpSocket;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::identity::DeviceIdentity;
use crate::stream::MaybeTls;

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {0:?}")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    #[error("the server chose no subprotocol we offered")]
    NoSubprotocol,
    #[error("timed out")]
    Timeout,
    /// The server closed the session; `code` tells whether to reconnect.
    #[error("closed by the server ({code:?}: {reason})")]
    Closed { code: Option<u16>, reason: String },
    #[error("connection lost: {0}")]
    Transport(String),
    #[error("undecodable frame from the server: {0}")]
    Decode(#[from] protocol::DecodeError),
    #[error("unexpected message from the server: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The close code, when the server closed the session with one.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            ClientError::Closed { code, .. } => code.and_then(CloseCode::from_code),
            _ => None,
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Subprotocols offered, in order of preference.
    pub encodings: Vec<Encoding>,
    /// Bound on the TCP connect plus the WebSocket handshake.
    pub timeout: Duration,
    /// Local address to connect from (the load tester spreads connections over several).
    pub local_address: Option<IpAddr>,
    /// With `local_address`: pick the local port from this counter instead of letting the
    /// kernel search for one. Binding to an address with port 0 makes the kernel scan its bind
    /// table for a free port, which grows slow as the range fills (at 10,000+ connections from
    /// one address it cost more CPU than the rest of the connection); a counter, with a retry
    /// on a port in use, costs one lookup. Shared by the connections of one process.
    pub local_ports: Option<Arc<AtomicU32>>,
    /// Largest frame accepted from the server.
    pub max_frame: usize,
    /// For `wss://`: whom to trust. `None`: the system's roots (see
    /// [`crate::stream::client_config`] to add a CA file).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            encodings: vec![Encoding::Postcard],
            timeout: Duration::from_secs(10),
            local_address: None,
            local_ports: None,
            max_frame: protocol::limits::MAX_SERVER_FRAME_BYTES,
            tls: None,
        }
    }
}

impl ConnectOptions {
    pub fn with_encoding(encoding: Encoding) -> Self {
        ConnectOptions {
            encodings: vec![encoding],
            ..ConnectOptions::default()
        }
    }
}

/// The answer to a pairing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairResult {
    Paired(Paired),
    Refused(Refused),
}

/// What `pair` and `pair_or_wait` send.
fn pair(code: &str, identity: &DeviceIdentity, device: &DeviceInfo) -> Pair {
    Pair {
        code: code.to_string(),
        installation_id: identity.installation_id,
        credential: identity.credential.clone(),
        device: device.clone(),
    }
}

/// The first answer to a pairing that may wait in line ([`Connection::pair_or_wait`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairOrWaitResult {
    Paired(Paired),
    Refused(Refused),
    /// No license was free: the device waits in line at this place;
    /// [`Connection::wait_for_turn`] reads what becomes of it.
    Waiting(protocol::Waiting),
}

/// The answer to a reconnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeResult {
    Resumed(Resumed),
    /// The server ended the session (and closed the connection).
    Ended(EndReason),
}

/// A connected session.
#[derive(Debug)]
pub struct Connection {
    ws: WebSocketStream<MaybeTls>,
    encoding: Encoding,
    max_frame: usize,
    /// Messages read while waiting for a specific answer.
    pending: VecDeque<ServerMessage>,
}

impl Connection {
    /// Connects to a device endpoint URL such as `ws://127.0.0.1:7878/device`.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
        tokio::time::timeout(options.timeout, Self::connect_inner(url, options))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn connect_inner(url: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
        let mut request = url
            .into_client_request()
            .map_err(|_| ClientError::Url(url.to_string()))?;
        let offered: Vec<&str> = options.encodings.iter().map(|e| e.subprotocol()).collect();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&offered.join(", ")).map_err(|_| ClientError::Url(url.into()))?,
        );
        let host = request
            .uri()
            .host()
            .ok_or_else(|| ClientError::Url(url.to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = match request.uri().scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => return Err(ClientError::Url(url.to_string())),
        };
        let port = request
            .uri()
            .port_u16()
            .unwrap_or(if tls { 443 } else { 80 });
        let address: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(ClientError::Connect)?
            .next()
            .ok_or_else(|| ClientError::Url(url.to_string()))?;
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ClientError::Connect)?;
        if let Some(local) = options.local_address {
            bind_local(&socket, local, options.local_ports.as_deref())
                .map_err(ClientError::Connect)?;
        }
        let stream = socket
            .connect(address)
            .await
            .map_err(ClientError::Connect)?;
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        let stream = if tls {
            let config = match &options.tls {
                Some(config) => Arc::clone(config),
                None => crate::stream::client_config(None)
                    .map_err(|error| ClientError::Tls(error.to_string()))?,
            };
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|_| ClientError::Url(url.to_string()))?;
            let connected = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|error| ClientError::Tls(error.to_string()))?;
            MaybeTls::Tls(Box::new(connected.into()))
        } else {
            MaybeTls::Plain(stream)
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(options.max_frame))
            .max_frame_size(Some(options.max_frame));
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|error| ClientError::Handshake(error.to_string()))?;
        let encoding = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|value| value.to_str().ok())
            .and_then(Encoding::from_subprotocol)
            .ok_or(ClientError::NoSubprotocol)?;
        Ok(Connection {
            ws,
            encoding,
            max_frame: options.max_frame,
            pending: VecDeque::new(),
        })
    }

    /// The negotiated encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &DeviceMessage) -> Result<(), ClientError> {
        let bytes = self.encoding.encode_device(message);
        let frame = if self.encoding.uses_text_frames() {
            Message::Text(
                String::from_utf8(bytes)
                    .map_err(|_| ClientError::Unexpected("non-UTF-8 JSON".into()))?
                    .into(),
            )
        } else {
            Message::Binary(bytes.into())
        };
        self.send_raw(frame).await
    }

    /// Sends a raw WebSocket frame (tests use it to misbehave).
    pub async fn send_raw(&mut self, frame: Message) -> Result<(), ClientError> {
        self.ws.send(frame).await.map_err(transport)
    }

    /// The next message from the server (messages set aside while waiting for an answer come
    /// first).
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        if let Some(message) = self.pending.pop_front() {
            return Ok(message);
        }
        self.read().await
    }

    /// Like [`Connection::recv`], bounded in time.
    pub async fn recv_timeout(&mut self, limit: Duration) -> Result<ServerMessage, ClientError> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn read(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            let frame = match self.ws.next().await {
                None => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: "connection ended without a close frame".into(),
                    });
                }
                Some(Err(error)) => return Err(transport(error)),
                Some(Ok(frame)) => frame,
            };
            return match frame {
                Message::Binary(bytes) => {
                    Ok(self.encoding.decode_server(&bytes, false, self.max_frame)?)
                }
                Message::Text(text) => {
                    Ok(self
                        .encoding
                        .decode_server(text.as_bytes(), true, self.max_frame)?)
                }
                Message::Close(frame) => Err(ClientError::Closed {
                    code: frame.as_ref().map(|frame| u16::from(frame.code)),
                    reason: frame
                        .map(|frame| frame.reason.to_string())
                        .unwrap_or_default(),
                }),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
        }
    }

    /// Reads until `pick` accepts a message; the others are kept for [`Connection::recv`].
    async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Result<T, ClientError> {
        loop {
            let message = self.read().await?;
            if let Some(answer) = pick(&message) {
                return Ok(answer);
            }
            self.pending.push_back(message);
        }
    }

    /// Pairs with a code; returns once the server answered.
    pub async fn pair(
        &mut self,
        code: &str,
        identity: &DeviceIdentity,
        device: &DeviceInfo,
    ) -> Result<PairResult, ClientError> {
        self.send(&DeviceMessage::Pair(pair(code, identity, device)))
            .await?;
        self.wait_for(|message| match message {
            ServerMessage::Paired(paired) => Some(PairResult::Paired(paired.clone())),
            ServerMessage::Refused(refused) => Some(PairResult::Refused(refused.clone())),
            _ => None,
        })
        .await
    }

    /// Pairs with a code, or waits in the organization's line when no license is free.
    pub async fn pair_or_wait(
        &mut self,
        code: &str,
        identity: &DeviceIdentity,
        device: &DeviceInfo,
    ) -> Result<PairOrWaitResult, ClientError> {
        self.send(&DeviceMessage::PairOrWait(pair(code, identity, device)))
            .await?;
        self.wait_for(|message| match message {
            ServerMessage::Paired(paired) => Some(PairOrWaitResult::Paired(paired.clone())),
            ServerMessage::Refused(refused) => Some(PairOrWaitResult::Refused(refused.clone())),
            ServerMessage::Waiting(waiting) => Some(PairOrWaitResult::Waiting(waiting.clone())),
            _ => None,
        })
        .await
    }

    /// After [`PairOrWaitResult::Waiting`]: reads until the device leaves the line, paired or
    /// refused (an admin dismissed it, or its code expired meanwhile).
    pub async fn wait_for_turn(&mut self) -> Result<PairResult, ClientError> {
        self.wait_for(|message| match message {
            ServerMessage::Paired(paired) => Some(PairResult::Paired(paired.clone())),
            ServerMessage::Refused(refused) => Some(PairResult::Refused(refused.clone())),
            _ => None,
        })
        .await
    }

    /// Reconnects as a paired installation.
    pub async fn resume(
        &mut self,
        identity: &DeviceIdentity,
        device: &DeviceInfo,
        current: Option<ConfigRef>,
    ) -> Result<ResumeResult, ClientError> {
        self.send(&DeviceMessage::Resume(Resume {
            installation_id: identity.installation_id,
            credential: identity.credential.clone(),
            device: device.clone(),
            current,
        }))
        .await?;
        self.wait_for(|message| match message {
            ServerMessage::Resumed(resumed) => Some(ResumeResult::Resumed(resumed.clone())),
            ServerMessage::Ended(ended) => Some(ResumeResult::Ended(ended.reason)),
            _ => None,
        })
        .await
    }

    /// Acknowledges a revision; returns the server's answer.
    pub async fn ack(
        &mut self,
        configuration: ConfigRef,
        outcome: AckOutcome,
    ) -> Result<Acknowledged, ClientError> {
        self.send(&DeviceMessage::Ack(Ack {
            configuration_id: configuration.configuration_id,
            revision: configuration.revision,
            outcome,
        }))
        .await?;
        self.wait_for(|message| match message {
            ServerMessage::Acknowledged(ack)
                if ack.configuration_id == configuration.configuration_id
                    && ack.revision == configuration.revision =>
            {
                Some(ack.clone())
            }
            _ => None,
        })
        .await
    }

    /// Closes the session politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The kernel's ephemeral port range (`ip_local_port_range`), from which it picks the local
/// port of a connection made without `bind` (Linux; 32768–60999 elsewhere).
fn ephemeral_ports() -> (u16, u16) {
    static RANGE: std::sync::OnceLock<(u16, u16)> = std::sync::OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| {
                let mut bounds = text.split_whitespace().map(|word| word.parse::<u16>().ok());
                Some((bounds.next()??, bounds.next()??))
            })
            .filter(|(low, high)| low <= high)
            .unwrap_or((32768, 60999))
    })
}

/// The ports [`local_port`] skips: the kernel's ephemeral range, clipped to 1024–65535; none
/// if that would leave fewer than 4,096 ports.
fn skipped_ports() -> (u32, u32) {
    let (low, high) = ephemeral_ports();
    let (low, high) = (u32::from(low).max(1024), u32::from(high).max(1024));
    let skipped = high + 1 - low;
    if 65536 - 1024 - skipped < 4096 {
        (65536, 0)
    } else {
        (low, skipped)
    }
}

/// How many local ports [`local_port`] hands out: every port from 1024 up, less the kernel's
/// ephemeral range.
pub fn local_port_count() -> u32 {
    65536 - 1024 - skipped_ports().1
}

/// The local port number `counter` (modulo [`local_port_count`]) stands for: ports from 1024
/// up, skipping the kernel's ephemeral range.
///
/// Why skip it: Linux never hands out, for a connection made without `bind`, a port that some
/// socket was explicitly bound to, whatever the address, while that socket (or its TIME_WAIT)
/// lasts. A load run binding 60,000 connections over the whole range left other connections
/// made on the machine without an ephemeral port until a minute after it ended ("Cannot assign
/// requested address"): the next run's devices, the servers' own database connections, other
/// programs.
pub fn local_port(counter: u32) -> u16 {
    let (low, skipped) = skipped_ports();
    let port = 1024 + counter % local_port_count();
    let port = if port >= low { port + skipped } else { port };
    u16::try_from(port).unwrap_or(u16::MAX)
}

/// Binds a socket to `ip`, on the next free port of `ports` when given.
fn bind_local(socket: &TcpSocket, ip: IpAddr, ports: Option<&AtomicU32>) -> std::io::Result<()> {
    let Some(ports) = ports else {
        return socket.bind(SocketAddr::new(ip, 0));
    };
    socket.set_reuseaddr(true)?;
    for _ in 0..256 {
        let port = local_port(ports.fetch_add(1, Ordering::Relaxed));
        match socket.bind(SocketAddr::new(ip, port)) {
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => continue,
            other => return other,
        }
    }
    Err(std::io::ErrorKind::AddrInUse.into())
}

fn transport(error: tungstenite::Error) -> ClientError {
    ClientError::Transport(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_local_ports_stay_out_of_the_ephemeral_range() {
        let (low, high) = ephemeral_ports();
        let count = local_port_count();
        let mut seen = std::collections::HashSet::new();
        for counter in 0..count {
            let port = local_port(counter);
            assert!(port >= 1024);
            assert!(
                !(low..=high).contains(&port) || count == 65536 - 1024,
                "port {port} is in the ephemeral range {low}-{high}"
            );
            assert!(seen.insert(port), "port {port} handed out twice");
        }
        assert_eq!(local_port(count), local_port(0));
    }
}
