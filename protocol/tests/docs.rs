//! Every JSON example in docs/protocol.md is a real message: it decodes with the JSON
//! subprotocol, and encodes back to the same JSON value.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use protocol::Encoding;

#[test]
fn every_json_example_in_the_protocol_document_decodes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let text = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        blocks.len() >= 9,
        "every message has an example; found {}",
        blocks.len()
    );
    let (mut device, mut server) = (0, 0);
    for block in &blocks {
        let value: serde_json::Value =
            serde_json::from_str(block).unwrap_or_else(|error| panic!("{error} in:\n{block}"));
        let bytes = block.trim().as_bytes();
        let round_trip = if let Ok(message) = Encoding::Json.decode_device(bytes, true, usize::MAX)
        {
            device += 1;
            Encoding::Json.encode_device(&message)
        } else if let Ok(message) = Encoding::Json.decode_server(bytes, true, usize::MAX) {
            server += 1;
            Encoding::Json.encode_server(&message)
        } else {
            panic!("not a device or server message:\n{block}");
        };
        let again: serde_json::Value = serde_json::from_slice(&round_trip).expect("json");
        assert_eq!(
            again, value,
            "the example has extra or missing fields:\n{block}"
        );
    }
    assert!(
        device >= 3 && server >= 6,
        "{device} device and {server} server examples"
    );
}
