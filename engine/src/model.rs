//! What admins see: the read models returned by the admin side of the engine.
//!
//! These types are serialized as they are by the admin API, so their field names are part of the
//! API: rename nothing without a new API version.

use serde::{Deserialize, Serialize};

use crate::ids::{CodeId, ConfigId, DeviceId, InstallationId, KeyId, LicenseId, OrgId, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: Timestamp,
}

/// An organization key, without its secret (shown only once, when created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrgKeyInfo {
    pub id: KeyId,
    pub organization_id: OrgId,
    pub name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
    pub fn as_str(self) -> &'static str {
        match self {
            LicenseStatus::Free => "free",
            LicenseStatus::Reserved => "reserved",
            LicenseStatus::Assigned => "assigned",
            LicenseStatus::Expired => "expired",
        }
    }

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseSummary {
    pub total: u64,
    pub free: u64,
    pub reserved: u64,
    pub assigned: u64,
    pub expired: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeWithSecret {
    #[serde(flatten)]
    pub info: CodeInfo,
    /// The code itself (32 base32 characters).
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssignedConfiguration {
    pub id: ConfigId,
    pub name: String,
    /// The configuration's current revision: what the device should be on.
    pub revision: u64,
}

/// What the device last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedConfiguration {
    pub configuration_id: ConfigId,
    pub revision: u64,
    pub status: AckStatus,
    pub reason: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    pub id: DeviceId,
    pub organization_id: OrgId,
    pub installation_id: InstallationId,
    /// The name to show: the one an admin gave the device, else the one it reports.
    pub name: String,
    /// The name the device reports of itself (updated at every reconnection).
    pub reported_name: String,
    /// The name an admin gave the device, if any; a reconnection never changes it.
    pub admin_name: Option<String>,
    /// An admin's free-text notes about the device.
    pub notes: Option<String>,
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

impl Device {
    /// Where it stands with its configuration's current revision; `None` without a
    /// configuration. The same rule as the fleet lists' `revision` filter.
    pub fn revision_state(&self) -> Option<RevisionState> {
        let configuration = self.configuration.as_ref()?;
        match &self.applied {
            Some(applied)
                if applied.configuration_id == configuration.id
                    && applied.revision == configuration.revision =>
            {
                Some(match applied.status {
                    AckStatus::Applied => RevisionState::UpToDate,
                    AckStatus::Failed => RevisionState::Failed,
                })
            }
            _ => Some(RevisionState::Pending),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A page of a list that says how many rows match in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CountedPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
    /// How many rows match: exact up to [`FleetQuery::COUNT_BOUND`], then that bound.
    pub total: u64,
    /// `false` when more rows match than `total` says.
    pub total_exact: bool,
}

/// A license of the organization's fleet, with the device that holds it, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseWithDevice {
    #[serde(flatten)]
    pub license: License,
    pub device: Option<Device>,
}

/// Where a device stands with its configuration's current revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevisionState {
    /// It reported the current revision of its configuration applied.
    UpToDate,
    /// It has a configuration and has reported neither its current revision applied nor failed.
    Pending,
    /// It reported that it could not apply the current revision.
    Failed,
}

impl RevisionState {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionState::UpToDate => "up_to_date",
            RevisionState::Pending => "pending",
            RevisionState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RevisionState> {
        match text {
            "up_to_date" => Some(RevisionState::UpToDate),
            "pending" => Some(RevisionState::Pending),
            "failed" => Some(RevisionState::Failed),
            _ => None,
        }
    }
}

/// What the Devices section may filter an organization's licenses and devices by. Every filter
/// given must hold; a filter on a device leaves out licenses that no device holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FleetFilter {
    /// Words the device's name (shown or reported), model, OS, app version or notes begin with:
    /// each word of the search must begin a word of one of them (case-insensitive).
    pub search: Option<String>,
    pub license_status: Option<LicenseStatus>,
    pub online: Option<bool>,
    /// Devices offline and last seen before this time.
    pub not_seen_since: Option<Timestamp>,
    /// Devices assigned this configuration.
    pub configuration: Option<ConfigId>,
    pub revision: Option<RevisionState>,
    pub app_version: Option<String>,
    /// Devices paired with this code.
    pub paired_by: Option<CodeId>,
}

impl FleetFilter {
    /// Whether it has no criterion at all (so that it matches every row).
    pub fn is_empty(&self) -> bool {
        *self == FleetFilter::default()
    }

    /// Whether a filter concerns the device (so that only licenses held by a device match).
    pub fn concerns_devices(&self) -> bool {
        self.search.is_some()
            || self.online.is_some()
            || self.not_seen_since.is_some()
            || self.configuration.is_some()
            || self.revision.is_some()
            || self.app_version.is_some()
            || self.paired_by.is_some()
    }
}

/// What a fleet list is sorted by; the id breaks ties, so that the order is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetSort {
    /// Creation order (licenses by purchase, devices by pairing): the default.
    #[default]
    Id,
    /// The device's shown name, case-insensitive. Licenses that no device holds come last.
    Name,
    /// When the device was last seen. Licenses that no device holds come last.
    LastSeen,
    /// When the device was paired. Licenses that no device holds come last.
    PairedAt,
    /// The license's status: assigned, reserved, free, expired (reversed when descending).
    Status,
}

impl FleetSort {
    /// `name`, `last_seen`, `paired_at`, `status`, `id`, each optionally prefixed with `-` for
    /// descending order.
    pub fn parse(text: &str) -> Option<(FleetSort, bool)> {
        let (descending, name) = match text.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, text),
        };
        let sort = match name {
            "id" => FleetSort::Id,
            "name" => FleetSort::Name,
            "last_seen" => FleetSort::LastSeen,
            "paired_at" => FleetSort::PairedAt,
            "status" => FleetSort::Status,
            _ => return None,
        };
        Some((sort, descending))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FleetSort::Id => "id",
            FleetSort::Name => "name",
            FleetSort::LastSeen => "last_seen",
            FleetSort::PairedAt => "paired_at",
            FleetSort::Status => "status",
        }
    }
}

/// Which rows a fleet list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetRows {
    /// Every license of the organization, with its device if one holds it.
    Licenses,
    /// Only the devices.
    Devices,
}

/// One page of an organization's licenses or devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetQuery {
    pub rows: FleetRows,
    pub filter: FleetFilter,
    pub sort: FleetSort,
    pub descending: bool,
    pub page: PageRequest,
    /// A chunk of an export (`ExportFleet`): the store reads it without counting and, on SQLite,
    /// through a connection whose page cache is small, so that walking the whole fleet does not
    /// leave it cached in memory.
    pub export: bool,
}

impl FleetQuery {
    /// Matching rows are counted exactly up to this many.
    pub const COUNT_BOUND: u64 = 10_000;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn device(
        configuration: Option<(ConfigId, u64)>,
        applied: Option<(ConfigId, u64, AckStatus)>,
    ) -> Device {
        Device {
            id: DeviceId::generate(),
            organization_id: OrgId::generate(),
            installation_id: InstallationId::generate(),
            name: "Van 7".into(),
            reported_name: "Van 7".into(),
            admin_name: None,
            notes: None,
            model: "TC52".into(),
            os: "Android 13".into(),
            app_version: "4.2.1".into(),
            license_id: LicenseId::generate(),
            license_valid_until: None,
            paired_at: Timestamp(0),
            paired_by_code: None,
            configuration: configuration.map(|(id, revision)| AssignedConfiguration {
                id,
                name: "Route".into(),
                revision,
            }),
            applied: applied.map(
                |(configuration_id, revision, status)| AppliedConfiguration {
                    configuration_id,
                    revision,
                    status,
                    reason: None,
                    at: Timestamp(0),
                },
            ),
            online: false,
            last_seen: Timestamp(0),
        }
    }

    #[test]
    fn revision_state_follows_the_report_of_the_current_revision() {
        let (config, other) = (ConfigId::generate(), ConfigId::generate());
        assert_eq!(device(None, None).revision_state(), None);
        assert_eq!(
            device(Some((config, 2)), None).revision_state(),
            Some(RevisionState::Pending)
        );
        assert_eq!(
            device(Some((config, 2)), Some((config, 2, AckStatus::Applied))).revision_state(),
            Some(RevisionState::UpToDate)
        );
        assert_eq!(
            device(Some((config, 2)), Some((config, 2, AckStatus::Failed))).revision_state(),
            Some(RevisionState::Failed)
        );
        // A report of an older revision, or of another configuration, is not the current one.
        assert_eq!(
            device(Some((config, 2)), Some((config, 1, AckStatus::Applied))).revision_state(),
            Some(RevisionState::Pending)
        );
        assert_eq!(
            device(Some((config, 2)), Some((other, 2, AckStatus::Failed))).revision_state(),
            Some(RevisionState::Pending)
        );
    }
}
