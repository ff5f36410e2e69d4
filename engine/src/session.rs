//! The engine's words for what devices ask and what they are told.
//!
//! The device endpoint (in the server) translates wire messages into these requests and these
//! answers back into wire messages; nothing in the engine knows the wire. The names follow the
//! product's rules, not an encoding: a [`Refusal`] is why a pairing was refused, a
//! [`SessionEnd`] why a device's session ended.

use crate::ids::{ConfigId, DeviceId, InstallationId, LicenseId, OrgId, Timestamp};
use crate::model::AckStatus;
use crate::secrets::SecretHash;
use crate::store::{DeviceDetails, PairingEnd};

/// Longest device detail (name, model, OS, app version) the engine stores.
pub const MAX_DEVICE_FIELD_BYTES: usize = 128;

/// Longest reason a device may give for a configuration it could not apply.
pub const MAX_ACK_REASON_BYTES: usize = 1024;

/// The code a device presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedCode {
    /// The lookup hash of the code's canonical text ([`crate::secrets::code_hash`]).
    Hash(SecretHash),
    /// What the device sent is not a pairing code at all (wrong length or alphabet).
    Unreadable,
}

/// A device asks to pair its installation with the organization of a code it scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRequest {
    pub code: PresentedCode,
    pub installation_id: InstallationId,
    /// The hash of the installation's credential ([`crate::secrets::credential_hash`]); the
    /// engine never sees the credential itself.
    pub credential_hash: SecretHash,
    pub details: DeviceDetails,
    /// What the device does when no license is free.
    pub wait: WaitChoice,
}

/// Whether a pairing waits in line when no license is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitChoice {
    /// Refused `no_free_license` (the default).
    #[default]
    No,
    /// Waits in its organization's line: answered [`PairAnswer::Waiting`], then paired (or
    /// refused) later, when its connection is told that it left the line.
    InLine,
    /// The same pairing again after its turn came in line (the line paired it): answered as
    /// its first pairing.
    AfterTurn,
}

/// A paired installation reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    pub installation_id: InstallationId,
    pub credential_hash: SecretHash,
    pub details: DeviceDetails,
    /// The configuration revision the device runs now, if any: it is sent its assigned
    /// configuration only when that differs.
    pub running: Option<(ConfigId, u64)>,
}

/// A device reports a configuration revision applied, or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRequest {
    pub config_id: ConfigId,
    pub revision: u64,
    pub outcome: AckOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Applied,
    /// The device could not apply the revision; the reason is shown to the admin.
    Failed {
        reason: String,
    },
}

impl AckOutcome {
    pub(crate) fn status(&self) -> AckStatus {
        match self {
            AckOutcome::Applied => AckStatus::Applied,
            AckOutcome::Failed { .. } => AckStatus::Failed,
        }
    }
}

/// Why a pairing was refused. Each has a stable name (the audit log's, and the wire's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    UnknownCode,
    CodeExpired,
    CodeRevoked,
    CodeUsed,
    CodeUseLimit,
    NoFreeLicense,
    /// The single-use code's license is no longer available (it expired, or is taken).
    LicenseUnavailable,
    AlreadyPairedElsewhere,
    RateLimited,
    /// The request broke a field limit, or its code is not a code.
    Malformed,
    /// The installation is paired, but with another credential.
    CredentialMismatch,
    /// Nothing was decided (the database or the organization's actor cannot answer now).
    Unavailable,
    /// The device waited in line for a license and an admin took it out of the line.
    Dismissed,
}

impl Refusal {
    /// Every refusal.
    pub const ALL: [Refusal; 13] = [
        Refusal::UnknownCode,
        Refusal::CodeExpired,
        Refusal::CodeRevoked,
        Refusal::CodeUsed,
        Refusal::CodeUseLimit,
        Refusal::NoFreeLicense,
        Refusal::LicenseUnavailable,
        Refusal::AlreadyPairedElsewhere,
        Refusal::RateLimited,
        Refusal::Malformed,
        Refusal::CredentialMismatch,
        Refusal::Unavailable,
        Refusal::Dismissed,
    ];

    /// The stable snake_case name, as the audit log records it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownCode => "unknown_code",
            Refusal::CodeExpired => "code_expired",
            Refusal::CodeRevoked => "code_revoked",
            Refusal::CodeUsed => "code_used",
            Refusal::CodeUseLimit => "code_use_limit",
            Refusal::NoFreeLicense => "no_free_license",
            Refusal::LicenseUnavailable => "license_unavailable",
            Refusal::AlreadyPairedElsewhere => "already_paired_elsewhere",
            Refusal::RateLimited => "rate_limited",
            Refusal::Malformed => "malformed",
            Refusal::CredentialMismatch => "credential_mismatch",
            Refusal::Unavailable => "unavailable",
            Refusal::Dismissed => "dismissed",
        }
    }
}

/// Why the engine ends a device's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    /// An admin unpaired the device.
    Unpaired,
    /// The device's license passed its end.
    LicenseExpired,
    /// The installation id and credential were not accepted.
    AuthenticationFailed,
    /// A newer connection of the same device replaced this one.
    Superseded,
    /// An admin replaced the device with a new installation.
    Replaced,
    /// Not seen for longer than the organization allows: its license was released.
    ReleasedInactive,
}

impl From<PairingEnd> for SessionEnd {
    fn from(end: PairingEnd) -> SessionEnd {
        match end {
            PairingEnd::Unpaired => SessionEnd::Unpaired,
            PairingEnd::LicenseExpired => SessionEnd::LicenseExpired,
            PairingEnd::Replaced => SessionEnd::Replaced,
            PairingEnd::ReleasedInactive => SessionEnd::ReleasedInactive,
        }
    }
}

/// The answer to a pairing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairAnswer {
    Paired(PairedDevice),
    /// No license is free: the device waits in its organization's line, at this place (1:
    /// next). Its turn comes through its link.
    Waiting {
        position: u64,
    },
    Refused {
        reason: Refusal,
        /// Set for `rate_limited` and `unavailable`: try again no sooner.
        retry_after_ms: Option<u64>,
    },
}

impl PairAnswer {
    pub(crate) fn refused(reason: Refusal) -> Self {
        PairAnswer::Refused {
            reason,
            retry_after_ms: None,
        }
    }

    pub(crate) fn unavailable() -> Self {
        PairAnswer::Refused {
            reason: Refusal::Unavailable,
            retry_after_ms: Some(1000),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedDevice {
    pub device_id: DeviceId,
    pub org_id: OrgId,
    pub license_id: LicenseId,
    pub license_valid_until: Option<Timestamp>,
    /// The installation was already paired and got its existing device back.
    pub already_paired: bool,
    /// The organization has no configuration yet: the device waits for the first one.
    pub configuration_pending: bool,
}

/// The answer to a reconnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeAnswer {
    Resumed(ResumedDevice),
    /// The session cannot continue.
    Ended(SessionEnd),
    /// Nothing was decided; the device should retry later.
    Unavailable {
        retry_after_ms: u64,
    },
    /// The request broke a field limit.
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedDevice {
    pub device_id: DeviceId,
    pub org_id: OrgId,
    pub license_id: LicenseId,
    pub license_valid_until: Option<Timestamp>,
}

/// The answer to an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAnswer {
    /// `true` when the acknowledgement matches the device's assignment (recorded, or already
    /// recorded); `false` when it was ignored as stale.
    Recorded(bool),
    Unavailable,
    /// The connection has not paired or resumed: there is no device to acknowledge for.
    NotPaired,
    /// The request broke a field limit.
    Malformed,
}

/// Whether a name may not hold `c`: a control character, or one that changes how the text
/// around it shows without showing itself: the bidirectional controls (embeddings, overrides,
/// isolates, marks), which can make a name read backwards in a list, and the zero-width space,
/// word joiner, invisible operators and byte-order mark, which make two names that look alike
/// differ. The zero-width joiner and non-joiner stay allowed: emoji sequences and several
/// scripts (Persian, the Indic ones) need them.
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Device details within the caps the engine stores, or `None`.
pub(crate) fn checked_details(details: DeviceDetails) -> Option<DeviceDetails> {
    let fields = [
        &details.name,
        &details.model,
        &details.os,
        &details.app_version,
    ];
    let fits = fields.iter().all(|field| {
        field.len() <= MAX_DEVICE_FIELD_BYTES && !field.chars().any(is_hidden_or_control)
    });
    fits.then_some(details)
}
