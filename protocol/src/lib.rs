//! The paird device protocol, without any I/O.
//!
//! Devices talk to paird over one WebSocket each. This crate holds everything both ends must agree
//! on, and nothing that needs a socket, a runtime or a clock, so that the server, the device
//! client, the load tester and the benches share one definition and the format can be pinned by
//! tests:
//!
//! - [`message`]: the messages a device sends ([`DeviceMessage`]) and the server sends
//!   ([`ServerMessage`]), with the refusal and end reasons.
//! - [`codec`]: the two encodings, negotiated as WebSocket subprotocols ([`Encoding`]): postcard
//!   (binary frames) for native clients and JSON (text frames) for everything else.
//! - [`secret`]: the installation credential and the pairing code, the two secrets on the wire.
//! - [`payload`]: the URI carried by a QR code (server address + pairing code).
//! - [`close`]: the WebSocket close codes and what a client should do on each.
//! - [`limits`]: frame and field size caps.
//!
//! The wire format is documented for client authors in `docs/protocol.md`; golden-byte tests in
//! `tests/golden.rs` pin the binary encoding so that it cannot change by accident.

pub mod close;
pub mod codec;
pub mod limits;
pub mod message;
pub mod payload;
pub mod secret;

pub use close::CloseCode;
pub use codec::{DecodeError, Encoding};
pub use message::{
    Ack, AckOutcome, Acknowledged, ConfigRef, Configuration, DeviceInfo, DeviceMessage, EndReason,
    Ended, Pair, Paired, RefusalReason, Refused, Resume, Resumed, ServerMessage, Waiting,
};
pub use payload::{PairingPayload, PayloadError};
pub use secret::{Credential, PairingCode, SecretFormatError};

/// The WebSocket path of the device endpoint.
pub const DEVICE_PATH: &str = "/device";
