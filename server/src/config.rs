//! Server configuration: everything `paird serve` can be told, with defaults for one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use engine::EngineSettings;

pub use crate::admin::listener::AdminLimits;
pub use crate::proxy::{IpRange, TrustedProxies};
pub use crate::tls::TlsFiles;
use store::Durability;

/// The device endpoint's limits and timers.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// Largest device-to-server frame; a larger one closes the connection (1009).
    pub max_frame: usize,
    /// Time allowed for the TCP connection to complete the WebSocket handshake.
    pub handshake_timeout: Duration,
    /// Time allowed between the handshake and the first `pair` or `resume` (the app may sit at
    /// the scan prompt for a while).
    pub hello_timeout: Duration,
    /// A ping is sent this often.
    pub ping_interval: Duration,
    /// A connection silent for this long (no frame, no pong) is closed (4005).
    pub silence_limit: Duration,
    /// Failed attempts on one connection before it is closed (4008).
    pub failures_per_connection: u32,
    /// Per-connection read buffer. tungstenite's default (128 KiB) stays resident per
    /// connection; a few KiB is enough for device frames.
    pub read_buffer: usize,
    /// Most bytes queued for one connection's socket; a configuration frame must fit.
    pub max_write_backlog: usize,
    /// Most device connections open at once; at the ceiling the node stops accepting (new
    /// connections wait in the listen backlog) until one closes. `None`: the open-file limit
    /// minus what the database pool, the admin API and the process's own files need, so that
    /// devices can never take the descriptors the database connections need.
    pub max_connections: Option<usize>,
    /// Most connections one address (an IPv6 client's /64) holds before they pair or resume; a
    /// newer one takes the oldest one's place (closed, 4004). 0: no cap.
    pub max_unproven_per_address: usize,
    /// Most connections one address (an IPv6 client's /64) keeps waiting in line for a license
    /// (`pair_or_wait`); past it a device that asks to wait is answered as `pair` is (refused
    /// `no_free_license`). 0: no cap.
    pub max_waiting_per_address: usize,
    /// Most control frames (ping, pong) a connection may send in a minute; past it the
    /// connection is closed (1008). Keepalive needs two a minute.
    pub max_control_frames_per_minute: u32,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            max_frame: protocol::limits::DEFAULT_MAX_DEVICE_FRAME_BYTES,
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            silence_limit: Duration::from_secs(90),
            failures_per_connection: 3,
            read_buffer: 4 * 1024,
            max_write_backlog: protocol::limits::MAX_SERVER_FRAME_BYTES + 64 * 1024,
            max_connections: None,
            max_unproven_per_address: 256,
            max_waiting_per_address: 256,
            max_control_frames_per_minute: 120,
        }
    }
}

/// Everything a server needs to start. Its `Debug` leaves the secrets out (the operator token,
/// the server key, a database URL's password, the metrics token), so that it can never put one
/// in a log line.
#[derive(Clone)]
pub struct ServerConfig {
    /// Holds the SQLite database (by default), the server key and the first operator token.
    pub data_dir: PathBuf,
    /// `sqlite://PATH`; defaults to `sqlite://<data_dir>/paird.db`.
    pub database_url: Option<String>,
    pub durability: Durability,
    /// Connections in the PostgreSQL pool (not used with SQLite).
    pub database_pool_size: u32,
    pub device_listen: SocketAddr,
    /// Let several paird processes listen on the same device address (`SO_REUSEPORT`): the
    /// kernel spreads new connections over them. Each process still has its own admin address.
    pub reuse_port: bool,
    pub admin_listen: SocketAddr,
    /// `host[:port]` that devices reach the device endpoint at, written into QR payloads.
    /// Defaults to the device listen address.
    pub public_address: Option<String>,
    /// Devices connect with TLS (`wss://`, terminated by a proxy in front of paird). Implied by
    /// `tls`.
    pub public_tls: bool,
    /// TLS on both listeners, terminated by paird itself.
    pub tls: Option<TlsFiles>,
    /// Peers whose word on the client's address is taken (PROXY protocol on the device
    /// listener, `Forwarded`/`X-Forwarded-For` on both).
    pub trusted_proxies: TrustedProxies,
    /// An operator token to accept (from `PAIRD_OPERATOR_TOKEN`).
    pub operator_token: Option<String>,
    /// The server key in hex (from `PAIRD_SERVER_KEY`); otherwise `<data_dir>/server.key`.
    pub server_key: Option<String>,
    pub device: DeviceSettings,
    /// The admin listener's timeouts and connection caps.
    pub admin: AdminLimits,
    pub engine: EngineSettings,
    /// Test hooks: a manual clock driven through `/v1/test/clock` and fault injection. Never in
    /// production.
    pub test_hooks: bool,
    /// On a stop signal, how long `/readyz` says "draining" while the server still serves,
    /// before it stops accepting: the time a load balancer needs to see it and send new
    /// connections elsewhere.
    pub drain_grace: std::time::Duration,
    /// Who may read `/metrics` besides the operator token: a metrics token, an allow-list.
    pub metrics: crate::metrics::MetricsSettings,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |secret: &Option<String>| secret.as_ref().map(|_| "<set>");
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url_shown())
            .field("durability", &self.durability)
            .field("database_pool_size", &self.database_pool_size)
            .field("device_listen", &self.device_listen)
            .field("reuse_port", &self.reuse_port)
            .field("admin_listen", &self.admin_listen)
            .field("public_address", &self.public_address)
            .field("public_tls", &self.public_tls)
            .field("tls", &self.tls)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("operator_token", &set(&self.operator_token))
            .field("server_key", &set(&self.server_key))
            .field("device", &self.device)
            .field("admin", &self.admin)
            .field("engine", &self.engine)
            .field("test_hooks", &self.test_hooks)
            .field("drain_grace", &self.drain_grace)
            .field("metrics", &self.metrics)
            .finish()
    }
}

/// A database URL with its password, if any, replaced by `***`: what is shown and logged.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first '/', '?' or '#'; its user information at the last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl ServerConfig {
    /// The database URL as shown and logged: without its password.
    pub fn database_url_shown(&self) -> String {
        without_password(&self.database_url())
    }

    /// Defaults: data in `data_dir`, device endpoint on 127.0.0.1:7878, admin API on
    /// 127.0.0.1:7879.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            database_url: None,
            durability: Durability::Full,
            database_pool_size: 16,
            device_listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            reuse_port: false,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 7879)),
            public_address: None,
            public_tls: false,
            tls: None,
            trusted_proxies: TrustedProxies::default(),
            operator_token: None,
            server_key: None,
            device: DeviceSettings::default(),
            admin: AdminLimits::default(),
            engine: EngineSettings::default(),
            test_hooks: false,
            drain_grace: std::time::Duration::ZERO,
            metrics: crate::metrics::MetricsSettings::default(),
        }
    }

    /// Both listeners on ephemeral loopback ports: for tests.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = ServerConfig::new(data_dir);
        config.device_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("paird.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_password_is_never_shown() {
        assert_eq!(
            without_password("postgres://paird:s3cret@db.internal:5432/paird?sslmode=require"),
            "postgres://paird:***@db.internal:5432/paird?sslmode=require"
        );
        assert_eq!(
            without_password("postgres://paird@db.internal/paird"),
            "postgres://paird@db.internal/paird"
        );
        assert_eq!(
            without_password("sqlite://x/paird.db"),
            "sqlite://x/paird.db"
        );
    }

    #[test]
    fn the_debug_output_holds_no_secret() {
        let mut config = ServerConfig::new("data");
        config.operator_token = Some("operator-token-secret-0123456789".into());
        config.server_key = Some("ab".repeat(32));
        config.database_url = Some("postgres://paird:db-password-secret@db/paird".into());
        config.metrics.token = Some("metrics-token-secret-0123456789".into());
        let shown = format!("{config:?}");
        for secret in [
            "operator-token-secret",
            &"ab".repeat(32),
            "db-password-secret",
            "metrics-token-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://paird:***@db/paird"), "{shown}");
    }
}
