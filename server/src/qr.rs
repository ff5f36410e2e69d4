//! QR codes for pairing payloads: SVG for web pages, PNG on request, and text for a terminal.

use std::io::Cursor;

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

/// Why a QR code could not be made (the payload is too long for any QR version).
#[derive(Debug, thiserror::Error)]
#[error("cannot make a QR code: {0}")]
pub struct QrError(String);

/// Medium error correction (15% of the symbol can be damaged or glared) keeps the symbol small
/// for a ~65-character payload while surviving a phone screen's reflections.
fn code(payload: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M)
        .map_err(|error| QrError(error.to_string()))
}

/// An SVG image (black on white, with the quiet zone), at least `size` pixels wide.
pub fn svg(payload: &str, size: u32) -> Result<String, QrError> {
    Ok(code(payload)?
        .render::<svg::Color<'_>>()
        .min_dimensions(size, size)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// A PNG image (8-bit grey), at least `size` pixels wide.
pub fn png(payload: &str, size: u32) -> Result<Vec<u8>, QrError> {
    let image = code(payload)?
        .render::<image::Luma<u8>>()
        .min_dimensions(size, size)
        .build();
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|error| QrError(error.to_string()))?;
    Ok(bytes.into_inner())
}

/// Half-block characters, two modules per character row, for printing in a terminal.
pub fn terminal(payload: &str) -> Result<String, QrError> {
    Ok(code(payload)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "PAIRD://PAIR.EXAMPLE.COM:7878/MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U";

    #[test]
    fn renders_every_format() {
        let svg = svg(PAYLOAD, 256).expect("svg");
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
        let png = png(PAYLOAD, 256).expect("png");
        assert_eq!(&png[1..4], b"PNG");
        let text = terminal(PAYLOAD).expect("text");
        assert!(text.lines().count() > 10);
    }

    #[test]
    fn upper_case_payload_uses_a_small_symbol() {
        // Alphanumeric mode: the 63-character payload fits version 4 at level M.
        let code = code(PAYLOAD).expect("code");
        assert!(
            matches!(code.version(), qrcode::Version::Normal(v) if v <= 4),
            "{:?}",
            code.version()
        );
    }
}
