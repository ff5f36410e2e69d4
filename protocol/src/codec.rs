//! Encodings of the messages, one per WebSocket subprotocol.
//!
//! - [`Encoding::Postcard`] (`paird.v1.postcard`): postcard bytes in binary frames, for native
//!   clients. Compact and cheap; pinned by golden-byte tests.
//! - [`Encoding::Json`] (`paird.v1.json`): JSON in text frames, for browsers and any language
//!   with a JSON library.
//!
//! Decoding is strict: the frame must be of the encoding's frame type, within the size cap, and
//! hold exactly one message (postcard's trailing bytes are refused, as is trailing JSON).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::message::{DeviceMessage, ServerMessage};

/// A negotiated encoding, named by its subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Postcard,
    Json,
}

impl Encoding {
    /// Both encodings, in the server's order of preference.
    pub const ALL: [Encoding; 2] = [Encoding::Postcard, Encoding::Json];

    /// The WebSocket subprotocol name; the protocol version is part of it.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Postcard => "paird.v1.postcard",
            Encoding::Json => "paird.v1.json",
        }
    }

    pub fn from_subprotocol(name: &str) -> Option<Encoding> {
        Encoding::ALL
            .into_iter()
            .find(|encoding| encoding.subprotocol() == name.trim())
    }

    /// Picks the first subprotocol the server supports from a `Sec-WebSocket-Protocol` header
    /// value (a comma-separated list, in the client's order of preference).
    pub fn negotiate(offered: &str) -> Option<Encoding> {
        offered.split(',').find_map(Encoding::from_subprotocol)
    }

    /// JSON travels in text frames, postcard in binary frames.
    pub fn uses_text_frames(self) -> bool {
        matches!(self, Encoding::Json)
    }

    pub fn encode_server(self, message: &ServerMessage) -> Vec<u8> {
        encode(self, message)
    }

    pub fn encode_device(self, message: &DeviceMessage) -> Vec<u8> {
        encode(self, message)
    }

    /// Decodes a device frame. `is_text` says which frame type it arrived in.
    pub fn decode_device(
        self,
        frame: &[u8],
        is_text: bool,
        max_len: usize,
    ) -> Result<DeviceMessage, DecodeError> {
        decode(self, frame, is_text, max_len)
    }

    /// Decodes a server frame. `is_text` says which frame type it arrived in.
    pub fn decode_server(
        self,
        frame: &[u8],
        is_text: bool,
        max_len: usize,
    ) -> Result<ServerMessage, DecodeError> {
        decode(self, frame, is_text, max_len)
    }
}

/// Why a frame could not be decoded. Each maps to a close code (see [`DecodeError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("{encoding} messages travel in {expected} frames")]
    WrongFrameType {
        encoding: &'static str,
        expected: &'static str,
    },
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl DecodeError {
    pub fn close_code(&self) -> crate::CloseCode {
        match self {
            DecodeError::TooLarge { .. } => crate::CloseCode::MessageTooBig,
            DecodeError::WrongFrameType { .. } => crate::CloseCode::UnsupportedData,
            DecodeError::Malformed(_) => crate::CloseCode::InvalidPayload,
        }
    }
}

fn encode<T: Serialize>(encoding: Encoding, message: &T) -> Vec<u8> {
    match encoding {
        // Neither encoder can fail for these types: every field is a plain value, string, uuid
        // or byte array, and the output is a growable Vec.
        Encoding::Postcard => postcard::to_stdvec(message).unwrap_or_default(),
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
    }
}

fn decode<T: DeserializeOwned>(
    encoding: Encoding,
    frame: &[u8],
    is_text: bool,
    max_len: usize,
) -> Result<T, DecodeError> {
    if frame.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            max: max_len,
        });
    }
    if is_text != encoding.uses_text_frames() {
        return Err(DecodeError::WrongFrameType {
            encoding: encoding.subprotocol(),
            expected: if encoding.uses_text_frames() {
                "text"
            } else {
                "binary"
            },
        });
    }
    match encoding {
        Encoding::Postcard => {
            let (message, rest) = postcard::take_from_bytes::<T>(frame)
                .map_err(|error| DecodeError::Malformed(error.to_string()))?;
            if !rest.is_empty() {
                return Err(DecodeError::Malformed(format!(
                    "{} trailing bytes after the message",
                    rest.len()
                )));
            }
            Ok(message)
        }
        Encoding::Json => {
            serde_json::from_slice(frame).map_err(|error| DecodeError::Malformed(error.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_first_supported_offer() {
        assert_eq!(
            Encoding::negotiate("chat, paird.v1.json, paird.v1.postcard"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::negotiate("paird.v2.json"), None);
        assert_eq!(Encoding::negotiate(""), None);
    }
}
