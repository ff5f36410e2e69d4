//! Size caps. A frame above its cap closes the connection with
//! [`crate::CloseCode::MessageTooBig`]. A field above its cap in a `pair` is refused as
//! `malformed` (the connection stays open); in a `resume` or an `ack` it closes the connection
//! with [`crate::CloseCode::InvalidPayload`].

/// Default cap on a device-to-server frame. Settable on the server.
pub const DEFAULT_MAX_DEVICE_FRAME_BYTES: usize = 16 * 1024;

/// Largest configuration body the server stores and delivers.
pub const MAX_CONFIGURATION_BODY_BYTES: usize = 256 * 1024;

/// Largest configuration name.
pub const MAX_CONFIGURATION_NAME_BYTES: usize = 200;

/// Cap on a server-to-device frame: the largest configuration plus its envelope. JSON escaping
/// can at most sextuple a body (`\u0001`), so JSON clients should accept 6× the body cap; the
/// server never sends a configuration whose encoded frame exceeds [`MAX_SERVER_FRAME_BYTES`].
pub const MAX_SERVER_FRAME_BYTES: usize = 6 * MAX_CONFIGURATION_BODY_BYTES + 4096;

/// Cap on each [`crate::DeviceInfo`] field.
pub const MAX_DEVICE_FIELD_BYTES: usize = 128;

/// Cap on the reason of a failed acknowledgement.
pub const MAX_ACK_REASON_BYTES: usize = 1024;
