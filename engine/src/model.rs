//! What admins see: the read models returned by the admin side of the engine.
//!
//! These types are serialized as they are by the admin API, so their field names are part of the
//! API: rename nothing without a new API version.

use serde::{Deserialize, Serialize};

use crate::ids::{CodeId, ConfigId, DeviceId, InstallationId, KeyId, LicenseId, OrgId, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: Timestamp,
}

/// An organization key, without its secret (shown only once, when created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgKeyInfo {
    pub id: KeyId,
    pub organization_id: OrgId,
    pub name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseStatus {
    /// Can be taken by the next pairing.
    Free,
    /// Held by a valid single-use code; reusable-code pairings do not take it.
    Reserved,
    /// Held by exactly one device.
    Assigned,
    /// Past its `valid_until`.
    Expired,
}

impl LicenseStatus {
    pub fn parse(text: &str) -> Option<LicenseStatus> {
        match text {
            "free" => Some(LicenseStatus::Free),
            "reserved" => Some(LicenseStatus::Reserved),
            "assigned" => Some(LicenseStatus::Assigned),
            "expired" => Some(LicenseStatus::Expired),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    pub id: LicenseId,
    pub organization_id: OrgId,
    pub purchased_at: Timestamp,
    pub valid_until: Option<Timestamp>,
    pub status: LicenseStatus,
    pub device_id: Option<DeviceId>,
    /// Until when a single-use code reserves it (only while `status` is `reserved`).
    pub reserved_until: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseSummary {
    pub total: u64,
    pub free: u64,
    pub reserved: u64,
    pub assigned: u64,
    pub expired: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeKind {
    Reusable,
    SingleUse,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Reusable => "reusable",
            CodeKind::SingleUse => "single_use",
        }
    }

    pub fn parse(text: &str) -> Option<CodeKind> {
        match text {
            "reusable" => Some(CodeKind::Reusable),
            "single_use" => Some(CodeKind::SingleUse),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeStatus {
    Active,
    Expired,
    Revoked,
    /// A single-use code that paired its device.
    Used,
    /// A reusable code that reached `max_uses`.
    Exhausted,
}

/// A code's status at `now`.
pub fn code_status(
    kind: CodeKind,
    revoked_at: Option<Timestamp>,
    used_at: Option<Timestamp>,
    expires_at: Timestamp,
    max_uses: Option<u32>,
    uses: u32,
    now: Timestamp,
) -> CodeStatus {
    if revoked_at.is_some() {
        CodeStatus::Revoked
    } else if kind == CodeKind::SingleUse && used_at.is_some() {
        CodeStatus::Used
    } else if expires_at <= now {
        CodeStatus::Expired
    } else if kind == CodeKind::Reusable && max_uses.is_some_and(|max| uses >= max) {
        CodeStatus::Exhausted
    } else {
        CodeStatus::Active
    }
}

/// A code as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeInfo {
    pub id: CodeId,
    pub organization_id: OrgId,
    pub kind: CodeKind,
    pub label: Option<String>,
    pub status: CodeStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// The license a single-use code is bound to.
    pub license_id: Option<LicenseId>,
}

/// A freshly created (or re-shown) code with its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeWithSecret {
    #[serde(flatten)]
    pub info: CodeInfo,
    /// The code itself (32 base32 characters).
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    pub id: ConfigId,
    pub organization_id: OrgId,
    pub name: String,
    pub revision: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Active devices assigned this configuration.
    pub assigned_devices: u64,
    /// The body; lists leave it out.
    pub body: Option<String>,
}

/// How a configuration's revisions have reached the devices: what the admin sees beside the
/// editor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationRollout {
    pub configuration_id: ConfigId,
    /// The current revision.
    pub revision: u64,
    /// Active devices assigned this configuration.
    pub assigned_devices: u64,
    /// Of those, the devices whose last report is the current revision, applied.
    pub up_to_date: u64,
    /// Every revision that some active device last reported (newest first), with how many
    /// run it (applied) and how many failed to apply it. A device moved to another
    /// configuration still counts here until it reports the new one.
    pub revisions: Vec<RevisionRollout>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRollout {
    pub revision: u64,
    pub applied: u64,
    pub failed: u64,
}

impl ConfigurationRollout {
    /// Folds the store's report rows into the rollout of `configuration`.
    pub fn from_reports(
        configuration: &Configuration,
        reports: &[RevisionReports],
    ) -> ConfigurationRollout {
        let mut revisions: Vec<RevisionRollout> = Vec::new();
        let mut up_to_date = 0;
        for report in reports {
            if report.still_assigned
                && report.revision == configuration.revision
                && report.status == AckStatus::Applied
            {
                up_to_date += report.devices;
            }
            let index = match revisions
                .iter()
                .position(|known| known.revision == report.revision)
            {
                Some(index) => index,
                None => {
                    revisions.push(RevisionRollout {
                        revision: report.revision,
                        applied: 0,
                        failed: 0,
                    });
                    revisions.len() - 1
                }
            };
            match report.status {
                AckStatus::Applied => revisions[index].applied += report.devices,
                AckStatus::Failed => revisions[index].failed += report.devices,
            }
        }
        revisions.sort_by_key(|rollout| std::cmp::Reverse(rollout.revision));
        ConfigurationRollout {
            configuration_id: configuration.id,
            revision: configuration.revision,
            assigned_devices: configuration.assigned_devices,
            up_to_date,
            revisions,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Applied,
    Failed,
}

impl AckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Applied => "applied",
            AckStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<AckStatus> {
        match text {
            "applied" => Some(AckStatus::Applied),
            "failed" => Some(AckStatus::Failed),
            _ => None,
        }
    }
}

/// The configuration a device should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedConfiguration {
    pub id: ConfigId,
    pub name: String,
    /// The configuration's current revision: what the device should be on.
    pub revision: u64,
}

/// What the device last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedConfiguration {
    pub configuration_id: ConfigId,
    pub revision: u64,
    pub status: AckStatus,
    pub reason: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub organization_id: OrgId,
    pub installation_id: InstallationId,
    pub name: String,
    pub model: String,
    pub os: String,
    pub app_version: String,
    pub license_id: LicenseId,
    pub license_valid_until: Option<Timestamp>,
    pub paired_at: Timestamp,
    /// The code that paired it.
    pub paired_by_code: Option<CodeId>,
    pub configuration: Option<AssignedConfiguration>,
    pub applied: Option<AppliedConfiguration>,
    pub online: bool,
    pub last_seen: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub organization_id: Option<OrgId>,
    pub at: Timestamp,
    /// `operator`, `key:<key id>`, `device:<device id>` or `system`.
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub details: serde_json::Value,
}

/// A page of a list, with the cursor for the next page (absent on the last page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Which page to read. The cursor is opaque to clients: the `next_cursor` of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    pub fn first(limit: u32) -> Self {
        PageRequest { limit, after: None }
    }

    /// The limit clamped to `1..=MAX_LIMIT` (zero means the default).
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

/// Which audit entries to read; every filter given must hold (they combine with AND). The
/// default reads every entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFilter {
    /// Only entries with one of these actions; any action when empty.
    pub actions: Vec<String>,
    /// Only entries that name this device: as their subject, their actor, or in their details
    /// (an assignment names every device it assigned).
    pub device_id: Option<DeviceId>,
    /// Only entries at or after this time.
    pub from: Option<Timestamp>,
    /// Only entries before this time.
    pub until: Option<Timestamp>,
}

/// How many active devices last reported one revision of a configuration with one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionReports {
    pub revision: u64,
    pub status: AckStatus,
    /// The devices are still assigned the configuration (not moved to another one since).
    pub still_assigned: bool,
    pub devices: u64,
}
