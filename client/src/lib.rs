//! A paird client library: what the mobile app does, in Rust, and the few pieces of the admin
//! side that the programs driving a server share.
//!
//! Used by the integration tests, the load tester and `paird device`. The device side speaks
//! either encoding and exposes each step (connect, pair, resume, receive, acknowledge) so that
//! tests can also misbehave on purpose. Everything here reaches paird through its public
//! interfaces only (the device protocol, the admin HTTP API, the ready line of `paird serve`).
//!
//! Layout: [`connection`] — one WebSocket session; [`identity`] — the installation's id and
//! credential, and the state file a device keeps; [`device`] — a long-running device that
//! reconnects with back-off and acknowledges every configuration it receives; [`admin`] — an
//! authenticated admin API client; [`live_feed`] — an organization's live feed, read as
//! server-sent events; [`ready_line`] — the line `paird serve` prints once it serves, written
//! by the server and read by the programs that start it; [`stream`] — a connection with or
//! without TLS, and the TLS set-up both ends share.

pub mod admin;
pub mod connection;
pub mod device;
pub mod identity;
pub mod live_feed;
pub mod ready_line;
pub mod stream;

pub use connection::{
    ClientError, ConnectOptions, Connection, PairOrWaitResult, PairResult, ResumeResult,
};
pub use identity::{DeviceIdentity, DeviceState};
