//! Property tests: every message survives a round trip through both encodings, and no byte
//! string makes a decoder panic.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use protocol::{
    Ack, AckOutcome, Acknowledged, ConfigRef, Configuration, Credential, DeviceInfo, DeviceMessage,
    Encoding, EndReason, Ended, Pair, Paired, RefusalReason, Refused, Resume, Resumed,
    ServerMessage, Waiting,
};
use uuid::Uuid;

const BIG: usize = usize::MAX;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including quotes, backslashes and control characters that JSON must escape.
    proptest::string::string_regex("(?s).{0,40}").expect("valid regex")
}

fn device_info() -> impl Strategy<Value = DeviceInfo> {
    (text(), text(), text(), text()).prop_map(|(name, model, os, app_version)| DeviceInfo {
        name,
        model,
        os,
        app_version,
    })
}

fn credential() -> impl Strategy<Value = Credential> {
    any::<[u8; 32]>().prop_map(Credential)
}

fn config_ref() -> impl Strategy<Value = ConfigRef> {
    (uuid(), any::<u64>()).prop_map(|(configuration_id, revision)| ConfigRef {
        configuration_id,
        revision,
    })
}

fn device_message() -> impl Strategy<Value = DeviceMessage> {
    prop_oneof![
        (text(), uuid(), credential(), device_info()).prop_map(
            |(code, installation_id, credential, device)| DeviceMessage::Pair(Pair {
                code,
                installation_id,
                credential,
                device
            })
        ),
        (text(), uuid(), credential(), device_info()).prop_map(
            |(code, installation_id, credential, device)| DeviceMessage::PairOrWait(Pair {
                code,
                installation_id,
                credential,
                device
            })
        ),
        (
            uuid(),
            credential(),
            device_info(),
            proptest::option::of(config_ref())
        )
            .prop_map(|(installation_id, credential, device, current)| {
                DeviceMessage::Resume(Resume {
                    installation_id,
                    credential,
                    device,
                    current,
                })
            }),
        (uuid(), any::<u64>(), proptest::option::of(text())).prop_map(
            |(configuration_id, revision, failure)| DeviceMessage::Ack(Ack {
                configuration_id,
                revision,
                outcome: match failure {
                    None => AckOutcome::Applied,
                    Some(reason) => AckOutcome::Failed { reason },
                },
            })
        ),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let reason = proptest::sample::select(RefusalReason::ALL.to_vec());
    let end = proptest::sample::select(vec![
        EndReason::Unpaired,
        EndReason::LicenseExpired,
        EndReason::AuthenticationFailed,
        EndReason::Superseded,
        EndReason::Replaced,
        EndReason::ReleasedInactive,
    ]);
    prop_oneof![
        (
            uuid(),
            uuid(),
            uuid(),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(device_id, organization_id, license_id, until, already, pending)| {
                    ServerMessage::Paired(Paired {
                        device_id,
                        organization_id,
                        license_id,
                        license_valid_until_ms: until,
                        already_paired: already,
                        configuration_pending: pending,
                    })
                }
            ),
        (reason, proptest::option::of(any::<u64>())).prop_map(|(reason, retry_after_ms)| {
            ServerMessage::Refused(Refused {
                reason,
                retry_after_ms,
            })
        }),
        (uuid(), uuid(), uuid(), proptest::option::of(any::<u64>())).prop_map(
            |(device_id, organization_id, license_id, until)| ServerMessage::Resumed(Resumed {
                device_id,
                organization_id,
                license_id,
                license_valid_until_ms: until,
            })
        ),
        (uuid(), text(), any::<u64>(), text()).prop_map(
            |(configuration_id, name, revision, body)| {
                ServerMessage::Configuration(Configuration {
                    configuration_id,
                    name,
                    revision,
                    body,
                })
            }
        ),
        (uuid(), any::<u64>(), any::<bool>()).prop_map(|(configuration_id, revision, recorded)| {
            ServerMessage::Acknowledged(Acknowledged {
                configuration_id,
                revision,
                recorded,
            })
        }),
        end.prop_map(|reason| ServerMessage::Ended(Ended { reason })),
        any::<u64>().prop_map(|position| ServerMessage::Waiting(Waiting { position })),
    ]
}

proptest! {
    #[test]
    fn device_messages_round_trip(message in device_message()) {
        for encoding in Encoding::ALL {
            let bytes = encoding.encode_device(&message);
            let back = encoding
                .decode_device(&bytes, encoding.uses_text_frames(), BIG)
                .expect("decodes");
            prop_assert_eq!(&back, &message);
        }
    }

    #[test]
    fn server_messages_round_trip(message in server_message()) {
        for encoding in Encoding::ALL {
            let bytes = encoding.encode_server(&message);
            let back = encoding
                .decode_server(&bytes, encoding.uses_text_frames(), BIG)
                .expect("decodes");
            prop_assert_eq!(&back, &message);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for encoding in Encoding::ALL {
            let _ = encoding.decode_device(&bytes, encoding.uses_text_frames(), BIG);
            let _ = encoding.decode_server(&bytes, encoding.uses_text_frames(), BIG);
        }
    }

    #[test]
    fn trailing_bytes_are_refused(message in device_message(), extra in 1u8..=255) {
        let mut bytes = Encoding::Postcard.encode_device(&message);
        bytes.push(extra);
        prop_assert!(Encoding::Postcard.decode_device(&bytes, false, BIG).is_err());
    }
}

#[test]
fn oversized_and_wrong_type_frames_are_refused() {
    use protocol::DecodeError;
    let message = DeviceMessage::Ack(Ack {
        configuration_id: Uuid::nil(),
        revision: 1,
        outcome: AckOutcome::Applied,
    });
    let bytes = Encoding::Json.encode_device(&message);
    assert!(matches!(
        Encoding::Json.decode_device(&bytes, true, 4),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        Encoding::Json.decode_device(&bytes, false, BIG),
        Err(DecodeError::WrongFrameType { .. })
    ));
    let bytes = Encoding::Postcard.encode_device(&message);
    assert!(matches!(
        Encoding::Postcard.decode_device(&bytes, true, BIG),
        Err(DecodeError::WrongFrameType { .. })
    ));
    assert!(matches!(
        Encoding::Json.decode_device(b"{\"ack\":{}}", true, BIG),
        Err(DecodeError::Malformed(_))
    ));
}
