//! The device endpoint's translation between the wire (`protocol`) and the engine's words
//! (`engine::session`), both ways, and the cache of encoded configuration frames.
//!
//! Parsing the wire's text forms happens here (a pairing code's text, a credential's bytes),
//! so that the engine sees only domain values: the hash of a code, the hash of a credential.

use bytes::Bytes;
use engine::ids::{ConfigId, InstallationId};
use engine::link::ConfigRevision;
use engine::secrets;
use engine::store::DeviceDetails;
use engine::{
    AckOutcome, AckRequest, PairRequest, PairedDevice, PresentedCode, Refusal, ResumeRequest,
    ResumedDevice, SessionEnd, WaitChoice,
};
use protocol::{
    Ack, Configuration, DeviceInfo, Encoding, EndReason, Pair, Paired, RefusalReason, Resume,
    Resumed, ServerMessage,
};

pub(crate) fn pair_request(pair: Pair, wait: WaitChoice) -> PairRequest {
    let code = match protocol::PairingCode::parse(&pair.code) {
        Ok(code) => PresentedCode::Hash(secrets::code_hash(code.as_str())),
        Err(_) => PresentedCode::Unreadable,
    };
    PairRequest {
        code,
        installation_id: InstallationId(pair.installation_id),
        credential_hash: secrets::credential_hash(&pair.credential.0),
        details: details(pair.device),
        wait,
    }
}

pub(crate) fn resume_request(resume: Resume) -> ResumeRequest {
    ResumeRequest {
        installation_id: InstallationId(resume.installation_id),
        credential_hash: secrets::credential_hash(&resume.credential.0),
        details: details(resume.device),
        running: resume
            .current
            .map(|current| (ConfigId(current.configuration_id), current.revision)),
    }
}

pub(crate) fn ack_request(ack: &Ack) -> AckRequest {
    AckRequest {
        config_id: ConfigId(ack.configuration_id),
        revision: ack.revision,
        outcome: match &ack.outcome {
            protocol::AckOutcome::Applied => AckOutcome::Applied,
            protocol::AckOutcome::Failed { reason } => AckOutcome::Failed {
                reason: reason.clone(),
            },
        },
    }
}

fn details(device: DeviceInfo) -> DeviceDetails {
    DeviceDetails {
        name: device.name,
        model: device.model,
        os: device.os,
        app_version: device.app_version,
    }
}

pub(crate) fn paired(device: &PairedDevice) -> ServerMessage {
    ServerMessage::Paired(Paired {
        device_id: device.device_id.0,
        organization_id: device.org_id.0,
        license_id: device.license_id.0,
        license_valid_until_ms: device.license_valid_until.map(|t| t.unsigned_millis()),
        already_paired: device.already_paired,
        configuration_pending: device.configuration_pending,
    })
}

pub(crate) fn resumed(device: &ResumedDevice) -> ServerMessage {
    ServerMessage::Resumed(Resumed {
        device_id: device.device_id.0,
        organization_id: device.org_id.0,
        license_id: device.license_id.0,
        license_valid_until_ms: device.license_valid_until.map(|t| t.unsigned_millis()),
    })
}

pub(crate) fn refusal_reason(refusal: Refusal) -> RefusalReason {
    match refusal {
        Refusal::UnknownCode => RefusalReason::UnknownCode,
        Refusal::CodeExpired => RefusalReason::CodeExpired,
        Refusal::CodeRevoked => RefusalReason::CodeRevoked,
        Refusal::CodeUsed => RefusalReason::CodeUsed,
        Refusal::CodeUseLimit => RefusalReason::CodeUseLimit,
        Refusal::NoFreeLicense => RefusalReason::NoFreeLicense,
        Refusal::LicenseUnavailable => RefusalReason::LicenseUnavailable,
        Refusal::AlreadyPairedElsewhere => RefusalReason::AlreadyPairedElsewhere,
        Refusal::RateLimited => RefusalReason::RateLimited,
        Refusal::Malformed => RefusalReason::Malformed,
        Refusal::CredentialMismatch => RefusalReason::CredentialMismatch,
        Refusal::Unavailable => RefusalReason::Unavailable,
        Refusal::Dismissed => RefusalReason::Dismissed,
    }
}

pub(crate) fn end_reason(end: SessionEnd) -> EndReason {
    match end {
        SessionEnd::Unpaired => EndReason::Unpaired,
        SessionEnd::LicenseExpired => EndReason::LicenseExpired,
        SessionEnd::AuthenticationFailed => EndReason::AuthenticationFailed,
        SessionEnd::Superseded => EndReason::Superseded,
        SessionEnd::Replaced => EndReason::Replaced,
        SessionEnd::ReleasedInactive => EndReason::ReleasedInactive,
    }
}

/// A message encoded once, shared by every connection it is sent to.
#[derive(Debug, Clone)]
pub(crate) struct EncodedMessage {
    pub bytes: Bytes,
    pub text: bool,
}

/// The encoded configuration frames of one revision, one per encoding, kept with the revision
/// (in its edge slot, freed with it) and built on first use.
#[derive(Debug, Default)]
struct Frames {
    postcard: std::sync::OnceLock<EncodedMessage>,
    json: std::sync::OnceLock<EncodedMessage>,
}

/// The configuration message of `revision`, encoded once per revision and encoding and shared
/// by every connection it goes to (cloning `Bytes` shares them).
pub(crate) fn configuration_frame(revision: &ConfigRevision, encoding: Encoding) -> EncodedMessage {
    let build = || {
        let message = ServerMessage::Configuration(Configuration {
            configuration_id: revision.id.0,
            name: revision.name.clone(),
            revision: revision.revision,
            body: revision.body.clone(),
        });
        EncodedMessage {
            bytes: Bytes::from(encoding.encode_server(&message)),
            text: encoding.uses_text_frames(),
        }
    };
    let Some(frames) = revision.edge(Frames::default) else {
        return build();
    };
    let slot = match encoding {
        Encoding::Postcard => &frames.postcard,
        Encoding::Json => &frames.json,
    };
    slot.get_or_init(build).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_keeps_its_name_on_the_wire() {
        for refusal in Refusal::ALL {
            assert_eq!(refusal_reason(refusal).as_str(), refusal.as_str());
        }
        assert_eq!(Refusal::ALL.len(), RefusalReason::ALL.len());
    }

    #[test]
    fn every_session_end_keeps_its_name_on_the_wire() {
        let names = [
            (SessionEnd::Unpaired, "unpaired"),
            (SessionEnd::LicenseExpired, "license_expired"),
            (SessionEnd::AuthenticationFailed, "authentication_failed"),
            (SessionEnd::Superseded, "superseded"),
            (SessionEnd::Replaced, "replaced"),
            (SessionEnd::ReleasedInactive, "released_inactive"),
        ];
        for (end, name) in names {
            assert_eq!(end_reason(end).as_str(), name);
        }
    }

    #[test]
    fn the_engine_and_the_wire_agree_on_codes_and_limits() {
        let issued = secrets::new_pairing_code();
        let parsed = protocol::PairingCode::parse(issued.as_str()).expect("an issued code parses");
        assert_eq!(parsed.as_str(), issued.as_str());
        let lower = issued.as_str().to_ascii_lowercase();
        let PresentedCode::Hash(hash) = pair_request(
            Pair {
                code: lower,
                installation_id: uuid::Uuid::nil(),
                credential: protocol::Credential([1; 32]),
                device: DeviceInfo {
                    name: String::new(),
                    model: String::new(),
                    os: String::new(),
                    app_version: String::new(),
                },
            },
            WaitChoice::No,
        )
        .code
        else {
            panic!("a lower-case code is still a code");
        };
        assert_eq!(hash, secrets::code_hash(issued.as_str()));
        assert_eq!(
            engine::session::MAX_DEVICE_FIELD_BYTES,
            protocol::limits::MAX_DEVICE_FIELD_BYTES
        );
        assert_eq!(
            engine::session::MAX_ACK_REASON_BYTES,
            protocol::limits::MAX_ACK_REASON_BYTES
        );
        assert_eq!(
            engine::admin::MAX_CONFIGURATION_BODY_BYTES,
            protocol::limits::MAX_CONFIGURATION_BODY_BYTES
        );
        assert_eq!(
            engine::admin::MAX_CONFIGURATION_NAME_BYTES,
            protocol::limits::MAX_CONFIGURATION_NAME_BYTES
        );
    }

    #[test]
    fn a_revision_is_encoded_once_per_encoding() {
        let revision = ConfigRevision::new(
            ConfigId::generate(),
            engine::ids::OrgId::generate(),
            "c".into(),
            3,
            "[GLOBAL]\n".into(),
        );
        let first = configuration_frame(&revision, Encoding::Json);
        let again = configuration_frame(&revision, Encoding::Json);
        assert_eq!(
            first.bytes.as_ptr(),
            again.bytes.as_ptr(),
            "shared, not re-encoded"
        );
        assert!(first.text);
        let binary = configuration_frame(&revision, Encoding::Postcard);
        assert!(!binary.text);
        assert_ne!(binary.bytes, first.bytes);
    }
}
