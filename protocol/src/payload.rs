//! The QR payload: a URI with the server's device address and a pairing code.
//!
//! ```text
//! PAIRD://PAIR.EXAMPLE.COM:7878/MZXW6YTBOI3DGMZXW6YTBOI3DGMZXW6Y
//! └scheme┘└──── host ────┘└port┘└──────── code (32 chars) ──────┘
//! ```
//!
//! `paird` means a plain WebSocket (`ws://`), `pairds` a TLS one (`wss://`); the port defaults to
//! 80 / 443. The formatted URI is all upper case: scheme and host are case-insensitive and the code
//! is base32, so the whole payload fits the QR alphanumeric mode, which makes the QR code about a
//! third smaller than byte mode and easier to scan from a phone screen. A typical payload is under
//! 70 characters. Parsing accepts any case.

use std::fmt;

use crate::secret::{PairingCode, SecretFormatError};

/// A parsed QR payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingPayload {
    /// `wss://` when true, `ws://` when false.
    pub tls: bool,
    /// Host name or IP address; an IPv6 address is kept without its brackets.
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
    pub code: PairingCode,
}

/// Why a payload URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("a pairing payload starts with paird:// or pairds://")]
    Scheme,
    #[error("the pairing payload has no host")]
    Host,
    #[error("the pairing payload's port is not a number from 1 to 65535")]
    Port,
    #[error("the pairing payload has no code, or extra parts after it")]
    Path,
    #[error("the pairing payload's code is invalid: {0}")]
    Code(#[from] SecretFormatError),
}

impl PairingPayload {
    pub fn parse(uri: &str) -> Result<Self, PayloadError> {
        let uri = uri.trim();
        let (scheme, rest) = uri.split_once("://").ok_or(PayloadError::Scheme)?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "paird" => false,
            "pairds" => true,
            _ => return Err(PayloadError::Scheme),
        };
        let (authority, path) = rest.split_once('/').ok_or(PayloadError::Path)?;
        if path.is_empty() || path.contains(['/', '?', '#']) {
            return Err(PayloadError::Path);
        }
        let (host, port) = split_authority(authority)?;
        let code = PairingCode::parse(path)?;
        Ok(PairingPayload {
            tls,
            host,
            port,
            code,
        })
    }

    /// The URI to put in the QR code (upper case, see the module documentation).
    pub fn to_uri(&self) -> String {
        self.to_string()
    }

    /// The WebSocket URL of the device endpoint this payload points at.
    pub fn websocket_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let host = self.host.to_ascii_lowercase();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        match self.port {
            Some(port) => format!("{scheme}://{host}:{port}{}", crate::DEVICE_PATH),
            None => format!("{scheme}://{host}{}", crate::DEVICE_PATH),
        }
    }
}

impl fmt::Display for PairingPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "PAIRDS" } else { "PAIRD" };
        let host = self.host.to_ascii_uppercase();
        if host.contains(':') {
            write!(f, "{scheme}://[{host}]")?;
        } else {
            write!(f, "{scheme}://{host}")?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "/{}", self.code.as_str())
    }
}

fn split_authority(authority: &str) -> Result<(String, Option<u16>), PayloadError> {
    let bracketed = authority.starts_with('[');
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(PayloadError::Host)?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or(PayloadError::Port)?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    // An IPv6 address in brackets, or a name or IPv4 address: a host with a colon that is no
    // IPv6 address (`[:01]`, `a:b:9000`) would print a URI that names another place.
    let valid_host = if bracketed {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    };
    if !valid_host {
        return Err(PayloadError::Host);
    }
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 => Some(port),
            _ => return Err(PayloadError::Port),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> PairingCode {
        PairingCode::from_random([0x5a; PairingCode::BYTES])
    }

    #[test]
    fn formats_upper_case_and_parses_back() {
        let payload = PairingPayload {
            tls: false,
            host: "pair.example.com".into(),
            port: Some(7878),
            code: code(),
        };
        let uri = payload.to_uri();
        assert_eq!(
            uri,
            format!("PAIRD://PAIR.EXAMPLE.COM:7878/{}", code().as_str())
        );
        assert_eq!(PairingPayload::parse(&uri), Ok(payload.clone()));
        assert_eq!(
            PairingPayload::parse(&uri.to_ascii_lowercase()),
            Ok(payload.clone())
        );
        assert_eq!(payload.websocket_url(), "ws://pair.example.com:7878/device");
    }

    #[test]
    fn typical_payload_is_short_and_alphanumeric() {
        let payload = PairingPayload {
            tls: true,
            host: "devices.customer-portal.example.com".into(),
            port: None,
            code: code(),
        };
        let uri = payload.to_uri();
        assert!(uri.len() <= 120, "{} characters", uri.len());
        // The QR alphanumeric mode: 0-9, A-Z, space and $%*+-./:
        assert!(
            uri.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b" $%*+-./:".contains(&b))
        );
        assert_eq!(
            PairingPayload::parse(&uri).map(|p| p.websocket_url()),
            Ok("wss://devices.customer-portal.example.com/device".to_string())
        );
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        let payload = PairingPayload {
            tls: false,
            host: "::1".into(),
            port: Some(9000),
            code: code(),
        };
        let uri = payload.to_uri();
        assert!(uri.starts_with("PAIRD://[::1]:9000/"));
        assert_eq!(PairingPayload::parse(&uri), Ok(payload.clone()));
        assert_eq!(payload.websocket_url(), "ws://[::1]:9000/device");
    }

    #[test]
    fn refuses_bad_payloads() {
        let code = code();
        let c = code.as_str();
        assert_eq!(
            PairingPayload::parse(&format!("https://h/{c}")),
            Err(PayloadError::Scheme)
        );
        assert_eq!(
            PairingPayload::parse(&format!("paird:///{c}")),
            Err(PayloadError::Host)
        );
        // Found by the payload_uri fuzz target: a colon outside an IPv6 address.
        for host in ["[:01]:9000", "[h]", "a:b:9000"] {
            assert_eq!(
                PairingPayload::parse(&format!("paird://{host}/{c}")),
                Err(PayloadError::Host),
                "{host}"
            );
        }
        assert_eq!(
            PairingPayload::parse(&format!("paird://h:0/{c}")),
            Err(PayloadError::Port)
        );
        assert_eq!(
            PairingPayload::parse(&format!("paird://h:x/{c}")),
            Err(PayloadError::Port)
        );
        assert_eq!(PairingPayload::parse("paird://h"), Err(PayloadError::Path));
        assert_eq!(
            PairingPayload::parse(&format!("paird://h/{c}/x")),
            Err(PayloadError::Path)
        );
        assert_eq!(
            PairingPayload::parse(&format!("paird://h/{c}?a=b")),
            Err(PayloadError::Path)
        );
        assert!(matches!(
            PairingPayload::parse("paird://h/SHORT"),
            Err(PayloadError::Code(_))
        ));
        assert_eq!(
            PairingPayload::parse(&format!("paird://h st/{c}")),
            Err(PayloadError::Host)
        );
    }
}
