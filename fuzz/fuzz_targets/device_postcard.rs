//! Device and server frames in the postcard encoding (`paird.v1.postcard`, binary frames), as
//! `Encoding::decode_device` / `decode_server` read them from the socket. Property: a frame that
//! decodes re-encodes to a frame that decodes to the same message, in postcard and in JSON (every
//! message one encoding carries, the other carries too); the wrong frame type is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::limits::{DEFAULT_MAX_DEVICE_FRAME_BYTES, MAX_SERVER_FRAME_BYTES};
use protocol::{DecodeError, Encoding};

const ENCODING: Encoding = Encoding::Postcard;
const OTHER: Encoding = Encoding::Json;

fuzz_target!(|frame: &[u8]| {
    let text = ENCODING.uses_text_frames();
    if let Ok(message) = ENCODING.decode_device(frame, text, DEFAULT_MAX_DEVICE_FRAME_BYTES) {
        for encoding in [ENCODING, OTHER] {
            let again = encoding.encode_device(&message);
            let decoded = encoding.decode_device(&again, encoding.uses_text_frames(), usize::MAX);
            assert_eq!(decoded.as_ref(), Ok(&message), "{encoding:?} {again:?}");
        }
    }
    if let Ok(message) = ENCODING.decode_server(frame, text, MAX_SERVER_FRAME_BYTES) {
        for encoding in [ENCODING, OTHER] {
            let again = encoding.encode_server(&message);
            let decoded = encoding.decode_server(&again, encoding.uses_text_frames(), usize::MAX);
            assert_eq!(decoded.as_ref(), Ok(&message), "{encoding:?} {again:?}");
        }
    }
    let wrong = ENCODING.decode_device(frame, !text, DEFAULT_MAX_DEVICE_FRAME_BYTES);
    assert!(
        matches!(
            wrong,
            Err(DecodeError::WrongFrameType { .. } | DecodeError::TooLarge { .. })
        ),
        "{wrong:?}"
    );
});
