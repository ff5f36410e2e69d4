//! The messages of protocol version 1.
//!
//! Wire-format rules (they keep the postcard encoding stable; see `tests/golden.rs`):
//! - Only serde's default, externally tagged enums: postcard cannot decode `tag`, `content`,
//!   `untagged`, `flatten` or `skip_serializing_if`.
//! - A new enum variant goes at the end; a variant or struct never gains, loses or reorders a
//!   field within one protocol version. Anything else is a new subprotocol version.
//! - Times are milliseconds since the Unix epoch (UTC), as `u64`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secret::Credential;

/// A frame sent by a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceMessage {
    /// Pair this installation with the organization of the scanned code.
    Pair(Pair),
    /// Reconnect as an installation that is already paired.
    Resume(Resume),
    /// Report that a configuration revision was applied, or could not be.
    Ack(Ack),
    /// Pair as `Pair` does, but when no license is free, wait in the organization's line
    /// (answered `Waiting`) instead of being refused `no_free_license`: `Paired` (or
    /// `Refused`) follows on the same connection when the device leaves the line.
    PairOrWait(Pair),
}

/// Pairing request, sent after scanning a QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// The code from the QR payload (32 base32 characters, any case).
    pub code: String,
    /// Chosen by the app at installation, random, stable for the installation's life.
    pub installation_id: Uuid,
    /// The installation's own secret, generated at installation; proves the installation id.
    pub credential: Credential,
    /// What the admin sees in the device list.
    pub device: DeviceInfo,
}

/// Reconnection of a paired installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub installation_id: Uuid,
    pub credential: Credential,
    /// Updated on every reconnect (the app may have been upgraded).
    pub device: DeviceInfo,
    /// The configuration revision the device runs now, if any; the server sends its assigned
    /// configuration only when it differs.
    pub current: Option<ConfigRef>,
}

/// What the device tells about itself. Every field is free text of at most
/// [`crate::limits::MAX_DEVICE_FIELD_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub model: String,
    pub os: String,
    pub app_version: String,
}

/// A (configuration, revision) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfigRef {
    pub configuration_id: Uuid,
    pub revision: u64,
}

/// Acknowledgement of one configuration revision. Repeating it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub configuration_id: Uuid,
    pub revision: u64,
    pub outcome: AckOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    Applied,
    /// The app could not apply the revision; `reason` is shown to the admin (at most
    /// [`crate::limits::MAX_ACK_REASON_BYTES`] bytes).
    Failed {
        reason: String,
    },
}

/// A frame sent by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMessage {
    /// The pairing is committed: this answer is never sent before the database has it.
    Paired(Paired),
    /// The pairing was refused; nothing changed. The connection stays open for another attempt
    /// unless too many attempts failed.
    Refused(Refused),
    /// The reconnection is accepted.
    Resumed(Resumed),
    /// The configuration the device must run. Sent after `Paired`/`Resumed` and whenever the
    /// assignment or the configuration changes.
    Configuration(Configuration),
    /// The acknowledgement is recorded.
    Acknowledged(Acknowledged),
    /// The session ends; the close frame that follows carries the matching [`crate::CloseCode`].
    Ended(Ended),
    /// Answers `PairOrWait` when no license is free: the device waits in line, at `position`.
    Waiting(Waiting),
}

/// A device waits in its organization's line for a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// Its place in line when it joined (1: the next device to get a license).
    pub position: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paired {
    pub device_id: Uuid,
    pub organization_id: Uuid,
    pub license_id: Uuid,
    /// When the license stops being valid, if it has an end.
    pub license_valid_until_ms: Option<u64>,
    /// True when this installation was already paired and got its existing device back
    /// (no code use was counted).
    pub already_paired: bool,
    /// True when the device has no configuration yet (its organization has none): it waits,
    /// and receives the first configuration created. False when a `configuration` follows.
    pub configuration_pending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    pub device_id: Uuid,
    pub organization_id: Uuid,
    pub license_id: Uuid,
    pub license_valid_until_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub reason: RefusalReason,
    /// Set for `rate_limited` and `unavailable`: wait at least this long before trying again.
    pub retry_after_ms: Option<u64>,
}

/// Why a pairing was refused. Stable, machine-readable; new reasons are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// No code with this value exists.
    UnknownCode,
    /// The code's validity has passed.
    CodeExpired,
    /// An admin revoked the code.
    CodeRevoked,
    /// The single-use code was already used.
    CodeUsed,
    /// The reusable code reached its `max_uses`.
    CodeUseLimit,
    /// The organization has no free license left.
    NoFreeLicense,
    /// The single-use code's license is no longer available (it expired).
    LicenseUnavailable,
    /// This installation is paired with another organization; it must be unpaired there first.
    AlreadyPairedElsewhere,
    /// Too many failed attempts; see `retry_after_ms`.
    RateLimited,
    /// The request was well-formed as a frame but not as a request (bad code format, field too
    /// long, …).
    Malformed,
    /// This installation is paired, but the credential presented is not its credential. Nothing
    /// is given; an admin must unpair the device before this installation can pair again.
    CredentialMismatch,
    /// The server cannot decide right now (database unreachable, overloaded); nothing changed.
    /// Retry after `retry_after_ms`.
    Unavailable,
    /// The device waited in line for a license and an admin dismissed it; nothing changed.
    Dismissed,
}

impl RefusalReason {
    /// Every reason, in wire order.
    pub const ALL: [RefusalReason; 13] = [
        RefusalReason::UnknownCode,
        RefusalReason::CodeExpired,
        RefusalReason::CodeRevoked,
        RefusalReason::CodeUsed,
        RefusalReason::CodeUseLimit,
        RefusalReason::NoFreeLicense,
        RefusalReason::LicenseUnavailable,
        RefusalReason::AlreadyPairedElsewhere,
        RefusalReason::RateLimited,
        RefusalReason::Malformed,
        RefusalReason::CredentialMismatch,
        RefusalReason::Unavailable,
        RefusalReason::Dismissed,
    ];

    /// The snake_case name used in JSON, logs and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::UnknownCode => "unknown_code",
            RefusalReason::CodeExpired => "code_expired",
            RefusalReason::CodeRevoked => "code_revoked",
            RefusalReason::CodeUsed => "code_used",
            RefusalReason::CodeUseLimit => "code_use_limit",
            RefusalReason::NoFreeLicense => "no_free_license",
            RefusalReason::LicenseUnavailable => "license_unavailable",
            RefusalReason::AlreadyPairedElsewhere => "already_paired_elsewhere",
            RefusalReason::RateLimited => "rate_limited",
            RefusalReason::Malformed => "malformed",
            RefusalReason::CredentialMismatch => "credential_mismatch",
            RefusalReason::Unavailable => "unavailable",
            RefusalReason::Dismissed => "dismissed",
        }
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    pub configuration_id: Uuid,
    pub name: String,
    pub revision: u64,
    /// The configuration text, byte for byte as the admin saved it.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub configuration_id: Uuid,
    pub revision: u64,
    /// False when the acknowledgement was ignored because the revision is not the device's
    /// assigned configuration (it was reassigned meanwhile) or is newer than exists.
    pub recorded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub reason: EndReason,
}

/// Why the server ends a device's session. Each has its own close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// An admin unpaired the device: its credential no longer works; pair again with a code.
    Unpaired,
    /// The device's license passed its `valid_until`: the pairing is over; pair again once the
    /// organization has a valid license.
    LicenseExpired,
    /// The installation id and credential were not accepted.
    AuthenticationFailed,
    /// A newer connection of the same installation replaced this one.
    Superseded,
    /// An admin replaced the device with a new installation, which took its license,
    /// configuration, name and notes; this installation's pairing is over.
    Replaced,
    /// The device was not seen for longer than its organization allows, and its license was
    /// released for another device; pair again with a new code.
    ReleasedInactive,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Unpaired => "unpaired",
            EndReason::LicenseExpired => "license_expired",
            EndReason::AuthenticationFailed => "authentication_failed",
            EndReason::Superseded => "superseded",
            EndReason::Replaced => "replaced",
            EndReason::ReleasedInactive => "released_inactive",
        }
    }

    /// The close code that follows an `Ended` message with this reason.
    pub fn close_code(self) -> crate::CloseCode {
        match self {
            EndReason::Unpaired => crate::CloseCode::Unpaired,
            EndReason::LicenseExpired => crate::CloseCode::LicenseExpired,
            EndReason::AuthenticationFailed => crate::CloseCode::AuthenticationFailed,
            EndReason::Superseded => crate::CloseCode::Superseded,
            EndReason::Replaced => crate::CloseCode::Replaced,
            EndReason::ReleasedInactive => crate::CloseCode::ReleasedInactive,
        }
    }
}
