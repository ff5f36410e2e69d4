//! WebSocket close codes used by the server, and what a client should do on each.
//!
//! The 1000–1015 codes keep their RFC 6455 meaning. The 4000–4999 range is ours: each says whether
//! reconnecting can help, so that a fleet does not hammer the server with sessions that cannot
//! succeed.

/// A close code sent by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure (sent by clients; the server closes with a more specific code).
    Normal,
    /// 1001: the server is shutting down (or the client is leaving). Reconnect with back-off.
    GoingAway,
    /// 1002: WebSocket protocol violation.
    ProtocolError,
    /// 1003: the frame type does not match the subprotocol (text on binary or the reverse).
    UnsupportedData,
    /// 1007: the frame could not be decoded as a message.
    InvalidPayload,
    /// 1008: policy violation: a second `pair`/`resume` on one connection, or an `ack` before
    /// the connection paired or resumed.
    PolicyViolation,
    /// 1009: the frame exceeds the size cap.
    MessageTooBig,
    /// 1011: the server hit an unexpected condition. Reconnect with back-off. (Reserved: the
    /// current server answers such conditions with 1013 instead.)
    InternalError,
    /// 1013: the server cannot answer now (database unavailable, overloaded); nothing changed.
    /// Reconnect with back-off.
    TryAgainLater,
    /// 4000: an admin unpaired the device. Do not reconnect with this credential; pair again.
    Unpaired,
    /// 4001: the device's license expired. Do not reconnect with this credential.
    LicenseExpired,
    /// 4002: the installation id / credential were refused. Do not retry blindly.
    AuthenticationFailed,
    /// 4003: another connection of the same installation replaced this one. Do not reconnect.
    Superseded,
    /// 4004: no `pair` or `resume` arrived within the allowed time. Reconnect when needed.
    HelloTimeout,
    /// 4005: nothing was heard from the device (not even a pong) within the silence limit.
    KeepaliveTimeout,
    /// 4006: an admin replaced the device with a new installation. Do not reconnect.
    Replaced,
    /// 4007: the device was not seen for too long and its license was released. Do not
    /// reconnect with this credential; pair again.
    ReleasedInactive,
    /// 4008: too many failed attempts, on this connection or from this address. Reconnect after
    /// a pause (the close reason says how long when the address is blocked).
    TooManyFailures,
}

impl CloseCode {
    pub const ALL: [CloseCode; 18] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedData,
        CloseCode::InvalidPayload,
        CloseCode::PolicyViolation,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::TryAgainLater,
        CloseCode::Unpaired,
        CloseCode::LicenseExpired,
        CloseCode::AuthenticationFailed,
        CloseCode::Superseded,
        CloseCode::HelloTimeout,
        CloseCode::KeepaliveTimeout,
        CloseCode::Replaced,
        CloseCode::ReleasedInactive,
        CloseCode::TooManyFailures,
    ];

    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::TryAgainLater => 1013,
            CloseCode::Unpaired => 4000,
            CloseCode::LicenseExpired => 4001,
            CloseCode::AuthenticationFailed => 4002,
            CloseCode::Superseded => 4003,
            CloseCode::HelloTimeout => 4004,
            CloseCode::KeepaliveTimeout => 4005,
            CloseCode::Replaced => 4006,
            CloseCode::ReleasedInactive => 4007,
            CloseCode::TooManyFailures => 4008,
        }
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL
            .into_iter()
            .find(|close| close.code() == code)
    }

    /// The short reason text sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal closure",
            CloseCode::GoingAway => "server shutting down",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::UnsupportedData => "wrong frame type for the subprotocol",
            CloseCode::InvalidPayload => "malformed message",
            CloseCode::PolicyViolation => "policy violation",
            CloseCode::MessageTooBig => "frame too large",
            CloseCode::InternalError => "internal error",
            CloseCode::TryAgainLater => "try again later",
            CloseCode::Unpaired => "unpaired",
            CloseCode::LicenseExpired => "license expired",
            CloseCode::AuthenticationFailed => "authentication failed",
            CloseCode::Superseded => "superseded by a newer connection",
            CloseCode::HelloTimeout => "no pair or resume in time",
            CloseCode::KeepaliveTimeout => "keepalive timeout",
            CloseCode::Replaced => "replaced by a new installation",
            CloseCode::ReleasedInactive => "released after inactivity",
            CloseCode::TooManyFailures => "too many failed attempts",
        }
    }

    /// Whether a client should reconnect (with back-off) after this close.
    pub fn should_reconnect(self) -> bool {
        !matches!(
            self,
            CloseCode::Unpaired
                | CloseCode::LicenseExpired
                | CloseCode::AuthenticationFailed
                | CloseCode::Superseded
                | CloseCode::Replaced
                | CloseCode::ReleasedInactive
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for close in CloseCode::ALL {
            assert!(seen.insert(close.code()), "{close:?} reuses a code");
            assert_eq!(CloseCode::from_code(close.code()), Some(close));
            assert!(
                close.reason().len() <= 123,
                "close reasons fit a control frame"
            );
        }
    }
}
