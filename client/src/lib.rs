//! A paird device client: what the mobile app does, in Rust.
//!
//! Used by the integration tests, the load tester and `paird device`. It speaks either encoding
//! and exposes each step (connect, pair, resume, receive, acknowledge) so that tests can also
//! misbehave on purpose.
//!
//! Layout: [`connection`] — one WebSocket session; [`identity`] — the installation's id and
//! credential, and the state file a device keeps; [`device`] — a long-running device that
//! reconnects with back-off and acknowledges every configuration it receives.

pub mod connection;
pub mod device;
pub mod identity;

pub use connection::{ClientError, ConnectOptions, Connection, PairResult, ResumeResult};
pub use identity::{DeviceIdentity, DeviceState};
