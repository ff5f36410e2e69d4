//! Golden bytes: these pin the wire format of protocol version 1. If one fails, the encoding of a
//! message changed, which breaks every deployed client: revert the change, or make it a new
//! subprotocol version (and keep v1 decoding as it is).

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use protocol::{
    Ack, AckOutcome, Acknowledged, ConfigRef, Configuration, Credential, DeviceInfo, DeviceMessage,
    Encoding, EndReason, Ended, Pair, Paired, RefusalReason, Refused, Resume, Resumed,
    ServerMessage, Waiting,
};
use uuid::Uuid;

fn id(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn device() -> DeviceInfo {
    DeviceInfo {
        name: "Van 7".into(),
        model: "TC52".into(),
        os: "Android 13".into(),
        app_version: "4.2.1".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn device_cases() -> Vec<(DeviceMessage, &'static str, &'static str)> {
    vec![
        (
            DeviceMessage::Pair(Pair {
                code: "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U".into(),
                installation_id: id(1),
                credential: Credential([2; 32]),
                device: device(),
            }),
            "00204d465247475a44464d5a545751324c4b4e4e5747323354504f4259584534335510010101010101010101010101010101012002020202020202020202020202020202020202020202020202020202020202020556616e203704544335320a416e64726f696420313305342e322e31",
            r#"{"pair":{"code":"MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U","installation_id":"01010101-0101-0101-0101-010101010101","credential":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI","device":{"name":"Van 7","model":"TC52","os":"Android 13","app_version":"4.2.1"}}}"#,
        ),
        (
            DeviceMessage::Resume(Resume {
                installation_id: id(1),
                credential: Credential([2; 32]),
                device: device(),
                current: Some(ConfigRef {
                    configuration_id: id(3),
                    revision: 300,
                }),
            }),
            "0110010101010101010101010101010101012002020202020202020202020202020202020202020202020202020202020202020556616e203704544335320a416e64726f696420313305342e322e31011003030303030303030303030303030303ac02",
            r#"{"resume":{"installation_id":"01010101-0101-0101-0101-010101010101","credential":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI","device":{"name":"Van 7","model":"TC52","os":"Android 13","app_version":"4.2.1"},"current":{"configuration_id":"03030303-0303-0303-0303-030303030303","revision":300}}}"#,
        ),
        (
            DeviceMessage::Ack(Ack {
                configuration_id: id(3),
                revision: 2,
                outcome: AckOutcome::Applied,
            }),
            "0210030303030303030303030303030303030200",
            r#"{"ack":{"configuration_id":"03030303-0303-0303-0303-030303030303","revision":2,"outcome":"applied"}}"#,
        ),
        (
            DeviceMessage::Ack(Ack {
                configuration_id: id(3),
                revision: 2,
                outcome: AckOutcome::Failed {
                    reason: "bad path".into(),
                },
            }),
            "0210030303030303030303030303030303030201086261642070617468",
            r#"{"ack":{"configuration_id":"03030303-0303-0303-0303-030303030303","revision":2,"outcome":{"failed":{"reason":"bad path"}}}}"#,
        ),
        (
            DeviceMessage::PairOrWait(Pair {
                code: "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U".into(),
                installation_id: id(1),
                credential: Credential([2; 32]),
                device: device(),
            }),
            "03204d465247475a44464d5a545751324c4b4e4e5747323354504f4259584534335510010101010101010101010101010101012002020202020202020202020202020202020202020202020202020202020202020556616e203704544335320a416e64726f696420313305342e322e31",
            r#"{"pair_or_wait":{"code":"MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U","installation_id":"01010101-0101-0101-0101-010101010101","credential":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI","device":{"name":"Van 7","model":"TC52","os":"Android 13","app_version":"4.2.1"}}}"#,
        ),
    ]
}

fn server_cases() -> Vec<(ServerMessage, &'static str, &'static str)> {
    vec![
        (
            ServerMessage::Paired(Paired {
                device_id: id(4),
                organization_id: id(5),
                license_id: id(6),
                license_valid_until_ms: Some(1_800_000_000_000),
                already_paired: false,
                configuration_pending: false,
            }),
            "001004040404040404040404040404040404100505050505050505050505050505050510060606060606060606060606060606060180a0f1c2b1340000",
            r#"{"paired":{"device_id":"04040404-0404-0404-0404-040404040404","organization_id":"05050505-0505-0505-0505-050505050505","license_id":"06060606-0606-0606-0606-060606060606","license_valid_until_ms":1800000000000,"already_paired":false,"configuration_pending":false}}"#,
        ),
        (
            ServerMessage::Refused(Refused {
                reason: RefusalReason::RateLimited,
                retry_after_ms: Some(1500),
            }),
            "010801dc0b",
            r#"{"refused":{"reason":"rate_limited","retry_after_ms":1500}}"#,
        ),
        (
            ServerMessage::Resumed(Resumed {
                device_id: id(4),
                organization_id: id(5),
                license_id: id(6),
                license_valid_until_ms: None,
            }),
            "0210040404040404040404040404040404041005050505050505050505050505050505100606060606060606060606060606060600",
            r#"{"resumed":{"device_id":"04040404-0404-0404-0404-040404040404","organization_id":"05050505-0505-0505-0505-050505050505","license_id":"06060606-0606-0606-0606-060606060606","license_valid_until_ms":null}}"#,
        ),
        (
            ServerMessage::Configuration(Configuration {
                configuration_id: id(3),
                name: "Meters".into(),
                revision: 2,
                body: "[GLOBAL]\n".into(),
            }),
            "031003030303030303030303030303030303064d657465727302095b474c4f42414c5d0a",
            r#"{"configuration":{"configuration_id":"03030303-0303-0303-0303-030303030303","name":"Meters","revision":2,"body":"[GLOBAL]\n"}}"#,
        ),
        (
            ServerMessage::Acknowledged(Acknowledged {
                configuration_id: id(3),
                revision: 2,
                recorded: true,
            }),
            "0410030303030303030303030303030303030201",
            r#"{"acknowledged":{"configuration_id":"03030303-0303-0303-0303-030303030303","revision":2,"recorded":true}}"#,
        ),
        (
            ServerMessage::Ended(Ended {
                reason: EndReason::Unpaired,
            }),
            "0500",
            r#"{"ended":{"reason":"unpaired"}}"#,
        ),
        (
            ServerMessage::Ended(Ended {
                reason: EndReason::Replaced,
            }),
            "0504",
            r#"{"ended":{"reason":"replaced"}}"#,
        ),
        (
            ServerMessage::Ended(Ended {
                reason: EndReason::ReleasedInactive,
            }),
            "0505",
            r#"{"ended":{"reason":"released_inactive"}}"#,
        ),
        (
            ServerMessage::Waiting(Waiting { position: 300 }),
            "06ac02",
            r#"{"waiting":{"position":300}}"#,
        ),
        (
            ServerMessage::Refused(Refused {
                reason: RefusalReason::Dismissed,
                retry_after_ms: None,
            }),
            "010c00",
            r#"{"refused":{"reason":"dismissed","retry_after_ms":null}}"#,
        ),
    ]
}

#[test]
fn device_messages_match_golden_bytes() {
    let mut failures = Vec::new();
    for (message, want_hex, want_json) in device_cases() {
        let got_hex = hex(&Encoding::Postcard.encode_device(&message));
        let got_json = String::from_utf8(Encoding::Json.encode_device(&message)).expect("utf-8");
        if got_hex != want_hex || got_json != want_json {
            failures.push(format!(
                "{message:?}\n  hex:  {got_hex}\n  json: {got_json}"
            ));
        }
        // Golden bytes also decode back to the message.
        let bytes: Vec<u8> = (0..want_hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&want_hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        if want_hex.len() % 2 == 0 && bytes.len() * 2 == want_hex.len() {
            assert_eq!(
                Encoding::Postcard.decode_device(&bytes, false, usize::MAX),
                Ok(message.clone())
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn server_messages_match_golden_bytes() {
    let mut failures = Vec::new();
    for (message, want_hex, want_json) in server_cases() {
        let got_hex = hex(&Encoding::Postcard.encode_server(&message));
        let got_json = String::from_utf8(Encoding::Json.encode_server(&message)).expect("utf-8");
        if got_hex != want_hex || got_json != want_json {
            failures.push(format!(
                "{message:?}\n  hex:  {got_hex}\n  json: {got_json}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refusal_reasons_keep_their_wire_index() {
    // The postcard tag of a unit variant is its index: appending is the only safe change.
    for (index, reason) in RefusalReason::ALL.into_iter().enumerate() {
        let bytes = postcard::to_stdvec(&reason).expect("encodes");
        assert_eq!(bytes, vec![index as u8], "{reason:?}");
        let json = serde_json::to_string(&reason).expect("encodes");
        assert_eq!(json, format!("\"{}\"", reason.as_str()));
    }
}
