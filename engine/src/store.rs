//! The storage interface.
//!
//! The engine decides; the database arbitrates. Every method here is one small, set-based
//! statement (or a read), and every write that hands something out is *conditional*: it succeeds
//! only for rows that are still in the required state, and says which rows it changed. The engine
//! runs them inside one write transaction per batch ([`StoreTx`]), so the same rules are correct
//! with one node on SQLite (one writer at a time) and with many nodes on PostgreSQL (row locks,
//! `SKIP LOCKED`).
//!
//! The interface is split by role ([`Store`] for the whole, [`NodeStore`], [`DeviceReads`],
//! [`AdminReads`], and the transaction roles [`StoreTx`], [`PairingTx`], [`AdminTx`]): each part
//! of the engine names the narrowest role it uses.
//!
//! Implementations live in the `store` crate; no SQL text appears in the engine.

use async_trait::async_trait;

use crate::events::OrgEvent;
use crate::ids::{
    CodeId, ConfigId, DeviceId, InstallationId, KeyId, LicenseId, OperatorTokenId, OrgId,
    RolloutId, Timestamp, WebhookId,
};
use crate::model::{
    AckStatus, AuditEntry, AuditFilter, CodeInfo, CodeKind, Configuration, ConfigurationRevision,
    CountedPage, Device, FleetFilter, FleetQuery, License, LicenseSummary, LicenseWithDevice,
    OperatorTokenInfo, OrgKeyInfo, Organization, Page, PageRequest, RolloutState, StagedRollout,
    WaitingDevice, Webhook, WebhookDelivery,
};
use crate::secrets::SecretHash;

/// A row of [`AdminReads::configuration_reports`] (defined with the read model it feeds).
pub use crate::model::RevisionReports;

/// A storage failure. The engine never shows its text to devices or admins; it logs it and
/// answers "unavailable" (retryable).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an I/O error; retrying may help.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A conditional write changed fewer rows than the engine planned for, or a constraint
    /// refused a row: the transaction must be rolled back.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A client-supplied value the backend cannot use (a malformed page cursor).
    #[error("invalid {0}")]
    InvalidInput(&'static str),
    /// Anything else (a bug, a corrupt row).
    #[error("database error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where a code leads, for routing a pairing to its organization's actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRoute {
    pub code_id: CodeId,
    pub org_id: OrgId,
}

/// Where an installation is paired, for routing a reconnection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallationRoute {
    pub device_id: DeviceId,
    pub org_id: OrgId,
    /// The hash of the credential the installation paired with: a re-pair that presents it is
    /// the device proving itself, which no address limit refuses.
    pub credential_hash: SecretHash,
}

/// A device pairing that ended, for telling a returning device why its credential stopped
/// working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedPairing {
    pub credential_hash: SecretHash,
    pub end_reason: PairingEnd,
}

/// Why a pairing ended; stored with it, so that a returning device can be told.
///
/// Stored as two columns: `end_reason` (`unpaired` or `license_expired`: the credential is
/// dead for good, or until a license is valid) and `end_cause`, which says which kind of
/// unpairing it was when it was not an admin's (`replaced`, `released_inactive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingEnd {
    Unpaired,
    LicenseExpired,
    /// An admin replaced the device; its license moved to the new installation.
    Replaced,
    /// Not seen for longer than the organization's setting: its license was released.
    ReleasedInactive,
}

impl PairingEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            PairingEnd::Unpaired => "unpaired",
            PairingEnd::LicenseExpired => "license_expired",
            PairingEnd::Replaced => "replaced",
            PairingEnd::ReleasedInactive => "released_inactive",
        }
    }

    /// From [`PairingEnd::as_str`]'s names.
    pub fn parse(text: &str) -> Option<PairingEnd> {
        [
            PairingEnd::Unpaired,
            PairingEnd::LicenseExpired,
            PairingEnd::Replaced,
            PairingEnd::ReleasedInactive,
        ]
        .into_iter()
        .find(|end| end.as_str() == text)
    }

    /// The `end_reason` column's value.
    pub fn reason_column(self) -> &'static str {
        match self {
            PairingEnd::LicenseExpired => "license_expired",
            PairingEnd::Unpaired | PairingEnd::Replaced | PairingEnd::ReleasedInactive => {
                "unpaired"
            }
        }
    }

    /// The `end_cause` column's value.
    pub fn cause_column(self) -> Option<&'static str> {
        match self {
            PairingEnd::Replaced => Some("replaced"),
            PairingEnd::ReleasedInactive => Some("released_inactive"),
            PairingEnd::Unpaired | PairingEnd::LicenseExpired => None,
        }
    }

    /// From the `end_reason` and `end_cause` columns.
    pub fn from_columns(reason: &str, cause: Option<&str>) -> Option<PairingEnd> {
        match (reason, cause) {
            ("unpaired", None) => Some(PairingEnd::Unpaired),
            ("license_expired", None) => Some(PairingEnd::LicenseExpired),
            ("unpaired", Some("replaced")) => Some(PairingEnd::Replaced),
            ("unpaired", Some("released_inactive")) => Some(PairingEnd::ReleasedInactive),
            _ => None,
        }
    }
}

/// Who a bearer token belongs to (an unrevoked one), and when it expires; the engine refuses
/// an expired one by its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOwner {
    Operator {
        token_id: OperatorTokenId,
        expires_at: Option<Timestamp>,
    },
    OrgKey {
        org_id: OrgId,
        key_id: KeyId,
        expires_at: Option<Timestamp>,
    },
}

/// A credential whose last use is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    OperatorToken(OperatorTokenId),
    OrgKey(KeyId),
}

/// A per-organization quota, counted inside the transaction of the insert it guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Configurations of the organization.
    Configurations,
    /// Organization keys neither revoked nor expired.
    Keys,
    /// Codes that can still pair: neither revoked, used, used up nor expired.
    ActiveCodes,
}

impl Quota {
    /// The quota's name in errors and settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::Configurations => "configurations",
            Quota::Keys => "keys",
            Quota::ActiveCodes => "active_codes",
        }
    }
}

/// An operator token as a write transaction reads it (locked where the backend locks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorTokenRow {
    pub info: OperatorTokenInfo,
    pub hash: SecretHash,
}

/// A code's state, read (and locked, where the backend locks) inside a write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeState {
    pub id: CodeId,
    pub org_id: OrgId,
    pub kind: CodeKind,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub used_at: Option<Timestamp>,
    pub license_id: Option<LicenseId>,
    /// The label an admin gave the code, for the audit log.
    pub label: Option<String>,
    /// The configuration devices paired with it get (a reusable code's own), instead of the
    /// organization's for new devices.
    pub configuration_id: Option<ConfigId>,
    /// The device a replacement code replaces.
    pub replaces_device: Option<DeviceId>,
}

/// A license's state inside a write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseState {
    pub id: LicenseId,
    pub org_id: OrgId,
    pub valid_until: Option<Timestamp>,
    pub device_id: Option<DeviceId>,
    pub reserved_by: Option<CodeId>,
    pub reserved_until: Option<Timestamp>,
}

impl LicenseState {
    pub fn expired_at(&self, now: Timestamp) -> bool {
        self.valid_until.is_some_and(|until| until <= now)
    }
}

/// An active (not ended) device, as the pairing and resume rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDevice {
    pub id: DeviceId,
    pub org_id: OrgId,
    pub installation_id: InstallationId,
    pub credential_hash: SecretHash,
    pub license_id: LicenseId,
    pub license_valid_until: Option<Timestamp>,
    pub config_id: Option<ConfigId>,
    /// The revision of a staged rollout the device was chosen for: it runs this one when it is
    /// newer than its configuration's own revision.
    pub staged_revision: Option<u64>,
    /// What the device last reported of itself, for the audit log: an entry about the device
    /// keeps its name as it was.
    pub details: DeviceDetails,
}

impl ActiveDevice {
    pub fn license_expired_at(&self, now: Timestamp) -> bool {
        self.license_valid_until.is_some_and(|until| until <= now)
    }
}

/// A configuration with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRow {
    pub id: ConfigId,
    pub org_id: OrgId,
    pub name: String,
    pub revision: u64,
    pub body: String,
}

/// Device details written at pairing and updated at every reconnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDetails {
    pub name: String,
    pub model: String,
    pub os: String,
    pub app_version: String,
}

/// A device to insert; [`StoreTx::insert_devices`] takes what all of a batch's devices share
/// (organization, time) once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub id: DeviceId,
    pub installation_id: InstallationId,
    pub credential_hash: SecretHash,
    pub license_id: LicenseId,
    pub details: DeviceDetails,
    pub paired_by_code: CodeId,
    /// The configuration it is assigned: its code's own, else the organization's for new
    /// devices; `None` while the organization has none.
    pub config_id: Option<ConfigId>,
    /// The connection that paired it (presence): the device is online on it.
    pub connection: i64,
    /// The client address it paired from (the audit log's entry says it).
    pub peer: std::net::IpAddr,
}

/// A free license claimed for a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeLicense {
    pub id: LicenseId,
    pub valid_until: Option<Timestamp>,
}

/// A license handed to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenseGrant {
    pub license_id: LicenseId,
    pub device_id: DeviceId,
    /// The single-use code that reserved it, if the grant comes from one.
    pub single_use_code: Option<CodeId>,
}

/// A reconnection or repeated pairing: new details, and the connection the device is online on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTouch {
    pub device_id: DeviceId,
    pub details: DeviceDetails,
    pub connection: i64,
}

/// What the acknowledgement rules need to know about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckTarget {
    pub device_id: DeviceId,
    pub config_id: Option<ConfigId>,
    /// The current revision of the assigned configuration.
    pub config_revision: Option<u64>,
    pub applied_config_id: Option<ConfigId>,
    pub applied_revision: Option<u64>,
    pub ack_status: Option<AckStatus>,
    pub ack_reason: Option<String>,
    /// The device's name and its assigned configuration's, for the audit log.
    pub device_name: String,
    pub config_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckWrite {
    pub device_id: DeviceId,
    pub config_id: ConfigId,
    pub revision: u64,
    pub status: AckStatus,
    pub reason: Option<String>,
}

/// An active device's presence, read inside a write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePresence {
    pub device_id: DeviceId,
    pub online: bool,
    pub last_seen: Timestamp,
}

/// A device whose pairing was ended by [`StoreTx::end_devices`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedDevice {
    pub device_id: DeviceId,
    pub org_id: OrgId,
    pub license_id: LicenseId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub org_id: Option<OrgId>,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub details: serde_json::Value,
    /// The devices the entry names (as its subject, its actor or in its details), each once:
    /// the log's device filter finds the entry through them. A `device.paired` entry names
    /// none: the filter finds it from the device's row (its pairing time and id).
    pub devices: Vec<DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCode {
    pub id: CodeId,
    pub org_id: OrgId,
    pub kind: CodeKind,
    pub code_hash: SecretHash,
    /// The code sealed with the server key (reusable codes only).
    pub sealed_secret: Option<Vec<u8>>,
    pub label: Option<String>,
    pub license_id: Option<LicenseId>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub max_uses: Option<u32>,
    /// The configuration devices paired with it get, instead of the organization's for new
    /// devices (reusable codes only).
    pub configuration_id: Option<ConfigId>,
    /// The device a replacement code replaces (single-use codes only): the code reserves its
    /// license, and the installation that pairs with it takes the device's place.
    pub replaces_device: Option<DeviceId>,
}

/// A revision to keep in a configuration's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevision {
    pub config_id: ConfigId,
    pub revision: u64,
    pub name: String,
    pub body: String,
    pub saved_at: Timestamp,
    /// As the audit log names the principal.
    pub saved_by: String,
}

/// Result of a conditional configuration update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigUpdate {
    /// The configuration as it now is, with its body, and the name it had before the edit.
    Updated {
        configuration: Configuration,
        previous_name: String,
    },
    NotFound,
    /// `if_revision` did not match; carries the latest revision (a staged rollout's, while one
    /// is in progress).
    RevisionMismatch(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigDelete {
    /// Deleted; carries the name it had.
    Deleted {
        name: String,
    },
    NotFound,
    /// Still assigned to this many active devices.
    InUse(u64),
}

/// A code after [`AdminTx::revoke_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCode {
    /// It was revoked before this call (which then changed nothing).
    pub already_revoked: bool,
    /// The code as it now is.
    pub code: CodeInfo,
}

/// An event for the organization's webhooks ([`StoreTx::enqueue_webhook_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub org_id: OrgId,
    pub event_id: uuid::Uuid,
    pub kind: &'static str,
    /// The JSON body sent.
    pub payload: String,
    pub at: Timestamp,
    /// Milliseconds: 0, or at most one event of this kind per webhook within it.
    pub throttle: i64,
}

/// A delivery leased for an attempt ([`NodeStore::lease_deliveries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedDelivery {
    pub id: i64,
    pub webhook_id: WebhookId,
    pub url: String,
    pub sealed_secret: Vec<u8>,
    pub event_id: uuid::Uuid,
    pub kind: String,
    pub payload: String,
    pub created_at: Timestamp,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// How a delivery's attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFinish {
    pub at: Timestamp,
    /// `delivered`, `pending` (tried again at `next_attempt_at`) or `failed` (given up).
    pub state: &'static str,
    pub next_attempt_at: Timestamp,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Whether a claim of free licenses yields to devices waiting in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// An ordinary pairing's: none while any device of the organization waits.
    BehindLine,
    /// The line's own, when it is served.
    ForLine,
}

/// A device to put in line: what its grant will need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWaiting {
    pub installation_id: InstallationId,
    pub credential_hash: SecretHash,
    pub code_id: CodeId,
    pub details: DeviceDetails,
    pub peer: std::net::IpAddr,
    pub connection: i64,
}

/// A device in line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub ticket: i64,
    pub org_id: OrgId,
    pub device: NewWaiting,
    pub queued_at: Timestamp,
}

/// A configuration locked for a decision on it ([`AdminTx::lock_configuration`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedConfiguration {
    /// The configuration's own revision: what the devices not chosen run.
    pub revision: u64,
    pub name: String,
    /// Its rollout in progress, if one is.
    pub rollout: Option<StagedRollout>,
}

/// Which devices a staged rollout chooses, beyond those an earlier rollout staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageChoice<'a> {
    /// At random, up to this many in all (those an earlier rollout staged included).
    Random(u64),
    /// These (those not active on the configuration are left out).
    Devices(&'a [DeviceId]),
}

/// An edit of a configuration: a new name, a new body, or both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigEdit {
    pub name: Option<String>,
    pub body: Option<String>,
    /// Refuse the edit unless the configuration is at this revision (optimistic concurrency).
    pub if_revision: Option<u64>,
}

/// An admin's edit of a device's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceEdit {
    /// The name an admin gives the device, shown instead of the one it reports.
    pub name: FieldEdit<String>,
    pub notes: FieldEdit<String>,
}

/// What an edit does to one field.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldEdit<T> {
    /// Left as it is.
    #[default]
    Unchanged,
    /// Emptied.
    Cleared,
    Set(T),
}

impl<T> FieldEdit<T> {
    /// Whether the edit touches the field, and the value it leaves (`None`: empty).
    pub fn change(&self) -> Option<Option<&T>> {
        match self {
            FieldEdit::Unchanged => None,
            FieldEdit::Cleared => Some(None),
            FieldEdit::Set(value) => Some(Some(value)),
        }
    }
}

/// A stored idempotent reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReply {
    pub fingerprint: [u8; 32],
    pub sealed_reply: Vec<u8>,
}

/// A change that other nodes must hear about (they re-read the rows it names). Backends without
/// other nodes ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    ConfigurationUpdated {
        org_id: OrgId,
        config_id: ConfigId,
    },
    DevicesAssigned {
        org_id: OrgId,
        device_ids: Vec<DeviceId>,
    },
    DevicesEnded {
        org_id: OrgId,
        device_ids: Vec<DeviceId>,
        reason: PairingEnd,
    },
    /// Devices left the organization's line (paired by it, refused, dismissed): each node
    /// reads the line again and tells its waiting connections that are no longer in it.
    LineMoved {
        org_id: OrgId,
    },
}

impl Change {
    pub fn org_id(&self) -> OrgId {
        match self {
            Change::ConfigurationUpdated { org_id, .. }
            | Change::DevicesAssigned { org_id, .. }
            | Change::DevicesEnded { org_id, .. }
            | Change::LineMoved { org_id } => *org_id,
        }
    }
}

/// What a node hears from the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Another node committed this change.
    Change(Change),
    /// Changes may have been missed (the listener's connection dropped and came back, or a
    /// change was too large to name its rows): re-read the state of every device of this
    /// organization, or of every organization when `None`, that is connected here.
    Resync { org_id: Option<OrgId> },
    /// Live-feed events another node published for `org_id`.
    Events {
        org_id: OrgId,
        events: Vec<OrgEvent>,
    },
    /// Another node has live-feed watchers of `org_id`.
    Watch { org_id: OrgId },
}

/// The changes other nodes publish, in commit order per publishing node.
#[async_trait]
pub trait ChangeFeed: Send {
    /// Waits for the next notice. A feed never ends: when its connection drops it reconnects
    /// (retrying while the database is unreachable) and then answers [`Notice::Resync`], so that
    /// whatever was published in the gap is read from the tables.
    async fn next(&mut self) -> Notice;
}

/// A device's pairing state as pushes need it: its assignment, or why it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceState {
    pub device_id: DeviceId,
    pub config_id: Option<ConfigId>,
    /// The revision of a staged rollout the device was chosen for (see
    /// [`ActiveDevice::staged_revision`]).
    pub staged_revision: Option<u64>,
    pub ended: Option<PairingEnd>,
}

/// Storage as the engine uses it: one type that plays every role below. Each part of the
/// engine takes only the role it needs ([`DeviceReads`] for the device entry points,
/// [`AdminReads`] for admin queries, [`NodeStore`] for start-up and background duties, and the
/// transaction roles [`PairingTx`] and [`AdminTx`]), so that what a module may touch is written
/// in its signatures.
#[async_trait]
pub trait Store:
    NodeStore + DeviceReads + AdminReads + std::fmt::Debug + Send + Sync + 'static
{
    /// Starts a write transaction. On SQLite this takes the database's write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads then writes never fails as busy midway.
    async fn begin(&self) -> StoreResult<Box<dyn Transaction>>;

    /// Closes the connections (waiting for those in use). Called once, at shutdown.
    async fn close(&self);

    /// The connection pools now, for the operator's metrics. Reads counters only.
    fn pools(&self) -> Vec<PoolUsage> {
        Vec::new()
    }
}

/// One database connection pool at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    /// What the pool is for: `main` (PostgreSQL: every statement), or on SQLite `writer` (the
    /// one write connection), `readers`, `exports`.
    pub name: &'static str,
    /// Connections open, idle among them, and the most the pool opens.
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// What a node's start-up and background duties need: presence, heartbeats, the change feed
/// between nodes, the expiry sweep's read, housekeeping and server-wide settings.
#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Called once at start-up on a single-node backend: no device can be online on a process
    /// that just started. The devices that were online are marked offline as last seen `now`:
    /// they were connected until the previous process stopped, whenever that was, and a device
    /// connected for months must not count as unseen for months (the inactive release).
    async fn reset_presence(&self, now: Timestamp) -> StoreResult<()>;

    /// The organizations with devices waiting in line.
    async fn waiting_orgs(&self) -> StoreResult<Vec<OrgId>>;
    /// The organizations with a webhook that receives `kind`.
    async fn orgs_with_webhook(&self, kind: &str) -> StoreResult<Vec<OrgId>>;

    /// Leases up to `limit` webhook deliveries due at `now` (the oldest pending one of each
    /// webhook, so that each webhook receives its events in order) until `lease_until`:
    /// another node does not take them meanwhile. Counts the attempt.
    async fn lease_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<LeasedDelivery>>;
    /// Records how a leased delivery's attempt went.
    async fn finish_delivery(&self, id: i64, finish: &DeliveryFinish) -> StoreResult<()>;

    /// The changes other nodes commit, or `None` on a backend that serves one node.
    async fn subscribe(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>>;

    /// Sends live-feed events of `org_id` to the other nodes, outside any transaction (they
    /// describe commits already made). A backend that serves one node does nothing.
    async fn publish_events(&self, org_id: OrgId, events: &[OrgEvent]) -> StoreResult<()>;

    /// Tells the other nodes that this one has live-feed watchers of `org_id`. A backend that
    /// serves one node does nothing.
    async fn announce_watch(&self, org_id: OrgId) -> StoreResult<()>;

    /// Records that node `node` (the high half of its connection ids) is alive at `now`.
    /// Returns false when the node's previous heartbeat was missing or older than
    /// `stale_before`: other nodes may have given it up for dead and marked its devices offline
    /// (the caller then marks its connected devices online again).
    async fn heartbeat(
        &self,
        node: i64,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<bool>;

    /// Gives up the nodes whose last heartbeat is older than `stale_before`: their devices are
    /// marked offline, last seen at that heartbeat. Returns how many devices it marked offline.
    /// Safe to run on every node at once.
    async fn expire_nodes(&self, stale_before: Timestamp) -> StoreResult<u64>;

    /// Marks active devices online on the given connections (after [`NodeStore::heartbeat`]
    /// found this node given up for dead).
    async fn mark_online(&self, online: &[(DeviceId, i64)], now: Timestamp) -> StoreResult<()>;

    /// Active devices whose license's `valid_until` is at or before `now`, at most `limit`.
    async fn expired_pairings(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(OrgId, DeviceId)>>;

    /// The running staged rollouts due for a decision at `now`: those whose `promote_at` has
    /// come, and those with more failed acknowledgements of their revision than they allow.
    async fn rollouts_due(&self, now: Timestamp) -> StoreResult<Vec<(OrgId, ConfigId)>>;

    /// Active, offline devices of organizations that release inactive devices, not seen for
    /// longer than their organization's `release_inactive_after_days` before `now`; at most
    /// `limit`.
    async fn inactive_pairings(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(OrgId, DeviceId)>>;

    /// Brings up to `limit` devices whose entry in the search's word index is not up to date
    /// (new, renamed, re-noted or ended since it was made) up to date, in one transaction;
    /// returns how many. The fleet lists are right whether it has run or not: they read the
    /// devices it has not reached yet directly.
    async fn index_words(&self, limit: u32) -> StoreResult<u64>;

    /// Whether the database answers: one trivial read.
    async fn ping(&self) -> StoreResult<()>;

    /// Deletes idempotency records created before `before`.
    async fn prune_idempotency(&self, before: Timestamp) -> StoreResult<u64>;

    /// Deletes up to `limit` of the oldest audit entries written before `before` (and their
    /// links to devices), in one transaction; returns how many. Fewer than `limit`: nothing
    /// older is left (the audit retention duty stops there).
    async fn delete_audit_before(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;

    /// Records when credentials were last used, in one transaction; a time never moves back.
    async fn record_uses(&self, uses: &[(Credential, Timestamp)]) -> StoreResult<()>;

    /// The value stored under a server-wide setting.
    async fn meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn set_meta(&self, key: &str, value: &[u8]) -> StoreResult<()>;
}

/// The reads of the device entry points and of pushes: routing a pairing or a reconnection,
/// telling a returning device why it was ended, re-reading devices another node changed.
#[async_trait]
pub trait DeviceReads: Send + Sync {
    async fn find_code(&self, hash: &SecretHash) -> StoreResult<Option<CodeRoute>>;
    async fn find_installation(
        &self,
        installation_id: InstallationId,
    ) -> StoreResult<Option<InstallationRoute>>;
    /// The most recent ended pairing of an installation, if any.
    async fn last_ended_pairing(
        &self,
        installation_id: InstallationId,
    ) -> StoreResult<Option<EndedPairing>>;
    /// The pairing state of these devices (in any order; unknown ids are left out).
    async fn device_states(&self, ids: &[DeviceId]) -> StoreResult<Vec<DeviceState>>;
    /// A configuration with its body, for pushing.
    async fn config_row(&self, id: ConfigId) -> StoreResult<Option<ConfigRow>>;
    /// The tickets of the organization's line, in order.
    async fn line_tickets(&self, org_id: OrgId) -> StoreResult<Vec<i64>>;
    /// A configuration at one revision of its history (a staged rollout's), for pushing.
    async fn revision_row(&self, id: ConfigId, revision: u64) -> StoreResult<Option<ConfigRow>>;
}

/// What admins read: bearer tokens, and each organization's data as the admin API shows it.
#[async_trait]
pub trait AdminReads: Send + Sync {
    async fn token_owner(&self, hash: &SecretHash) -> StoreResult<Option<TokenOwner>>;
    /// Whether an operator token that is neither revoked nor expired at `now` exists.
    async fn has_operator_token(&self, now: Timestamp) -> StoreResult<bool>;
    /// The operator tokens not revoked (expired ones included), oldest first.
    async fn list_operator_tokens(&self) -> StoreResult<Vec<OperatorTokenInfo>>;

    async fn organization(&self, org_id: OrgId) -> StoreResult<Option<Organization>>;
    async fn list_organizations(&self, page: &PageRequest) -> StoreResult<Page<Organization>>;
    async fn list_org_keys(&self, org_id: OrgId) -> StoreResult<Vec<OrgKeyInfo>>;

    async fn license(
        &self,
        org_id: OrgId,
        id: LicenseId,
        now: Timestamp,
    ) -> StoreResult<Option<License>>;
    /// One page of the organization's licenses (each with its device) or devices, filtered and
    /// sorted as `query` says, with the number of rows that match (statuses at `now`).
    async fn fleet(
        &self,
        org_id: OrgId,
        query: &FleetQuery,
        now: Timestamp,
    ) -> StoreResult<CountedPage<LicenseWithDevice>>;
    async fn license_summary(&self, org_id: OrgId, now: Timestamp) -> StoreResult<LicenseSummary>;

    async fn code(
        &self,
        org_id: OrgId,
        id: CodeId,
        now: Timestamp,
    ) -> StoreResult<Option<CodeInfo>>;
    /// The sealed secret of a reusable code.
    async fn sealed_code_secret(&self, org_id: OrgId, id: CodeId) -> StoreResult<Option<Vec<u8>>>;
    async fn list_codes(
        &self,
        org_id: OrgId,
        kind: Option<CodeKind>,
        now: Timestamp,
        page: &PageRequest,
    ) -> StoreResult<Page<CodeInfo>>;

    /// One configuration, with its body.
    async fn configuration(
        &self,
        org_id: OrgId,
        id: ConfigId,
    ) -> StoreResult<Option<Configuration>>;
    /// What the organization's active devices last reported of `config_id`: one row per
    /// (revision, outcome, whether the device is still assigned this configuration).
    async fn configuration_reports(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> StoreResult<Vec<RevisionReports>>;
    /// The organization's pinned configuration (`None`: not pinned), and the configuration its
    /// new devices get now (the pinned one, else the newest; `None` without configurations).
    async fn new_device_configuration(
        &self,
        org_id: OrgId,
    ) -> StoreResult<(Option<ConfigId>, Option<ConfigRow>)>;
    /// A configuration's revisions, newest first, without their bodies (`None` when the
    /// organization has no such configuration).
    async fn list_revisions(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
        page: &PageRequest,
    ) -> StoreResult<Option<Page<ConfigurationRevision>>>;
    /// One revision of the organization's configuration, with its body.
    async fn revision(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
        revision: u64,
    ) -> StoreResult<Option<ConfigurationRevision>>;
    /// The organization's configurations, without their bodies.
    async fn list_configurations(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> StoreResult<Page<Configuration>>;

    async fn device(&self, org_id: OrgId, id: DeviceId) -> StoreResult<Option<Device>>;

    /// The audit log, newest first: one organization's (the server's whole log with `None`),
    /// the entries that pass `filter`.
    async fn list_audit(
        &self,
        org_id: Option<OrgId>,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditEntry>>;
    /// The organization's webhooks (not deleted).
    async fn list_webhooks(&self, org_id: OrgId) -> StoreResult<Vec<Webhook>>;
    /// Whether the organization has a webhook (not deleted).
    async fn has_webhooks(&self, org_id: OrgId) -> StoreResult<bool>;
    /// A webhook's deliveries, newest first, a page at a time.
    async fn list_deliveries(
        &self,
        org_id: OrgId,
        webhook_id: WebhookId,
        page: &PageRequest,
    ) -> StoreResult<Option<Page<WebhookDelivery>>>;
    /// The organization's line of waiting devices, in order, a page at a time (by ticket).
    async fn list_waiting(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> StoreResult<Page<WaitingDevice>>;
    /// The configuration's latest staged rollout, in progress or ended.
    async fn latest_rollout(
        &self,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> StoreResult<Option<StagedRollout>>;
}

/// One write transaction, in every role: what [`Store::begin`] hands out.
pub trait Transaction: PairingTx + AdminTx {}

impl<T: PairingTx + AdminTx + ?Sized> Transaction for T {}

/// What every write transaction does. Dropping one without [`StoreTx::commit`] rolls it back,
/// but only eventually (the driver finishes it in the background); error paths call
/// [`StoreTx::rollback`] so that its row locks are gone before the next attempt.
#[async_trait]
pub trait StoreTx: Send {
    async fn commit(self: Box<Self>) -> StoreResult<()>;
    async fn rollback(self: Box<Self>) -> StoreResult<()>;

    async fn insert_audit(&mut self, entries: &[NewAudit]) -> StoreResult<()>;
    /// Tells other nodes, at commit, that something changed.
    async fn publish(&mut self, change: &Change) -> StoreResult<()>;
    /// Licenses by id, locked.
    async fn lock_licenses(&mut self, ids: &[LicenseId]) -> StoreResult<Vec<LicenseState>>;
    /// Active devices by id (any organization), locked.
    async fn active_devices(&mut self, ids: &[DeviceId]) -> StoreResult<Vec<ActiveDevice>>;
    /// Ends active pairings: the device's credential stops working, its license is freed, its
    /// configuration assignment is dropped. Returns the devices it ended.
    async fn end_devices(
        &mut self,
        ids: &[DeviceId],
        reason: PairingEnd,
        now: Timestamp,
    ) -> StoreResult<Vec<EndedDevice>>;
    async fn config_rows(&mut self, ids: &[ConfigId]) -> StoreResult<Vec<ConfigRow>>;
    /// Puts one event in the outbox of every webhook of the organization that receives its
    /// kind; with `throttle` (milliseconds), not for a webhook that got an event of that kind
    /// within it.
    async fn enqueue_webhook_event(&mut self, event: &WebhookEvent) -> StoreResult<()>;
    /// Takes these tickets out of their line (those still in it). Returns the ones it took.
    async fn leave_line(&mut self, org_id: OrgId, tickets: &[i64]) -> StoreResult<Vec<Waiting>>;
    /// Configurations at revisions of their history (staged rollouts'), with their bodies;
    /// those not found are left out.
    async fn revision_rows(&mut self, wanted: &[(ConfigId, u64)]) -> StoreResult<Vec<ConfigRow>>;
    /// The configuration new devices of the organization get: the pinned one if an admin pinned
    /// one, else the most recently created. `None` when it has no configuration.
    async fn configuration_for_new_devices(
        &mut self,
        org_id: OrgId,
    ) -> StoreResult<Option<ConfigRow>>;
}

/// The set-based statements of a batch of device requests: pairing, reconnection,
/// acknowledgement, presence. Each is one statement over the whole batch.
#[async_trait]
pub trait PairingTx: StoreTx {
    /// Codes by id, locked against concurrent use where the backend locks rows.
    async fn lock_codes(&mut self, ids: &[CodeId]) -> StoreResult<Vec<CodeState>>;
    /// Gives each new device (first) what an admin said of the device it replaces (second):
    /// its name and notes.
    async fn carry_over(&mut self, replacements: &[(DeviceId, DeviceId)]) -> StoreResult<()>;
    /// Active devices of these installations, in any organization.
    async fn active_devices_by_installation(
        &mut self,
        ids: &[InstallationId],
    ) -> StoreResult<Vec<ActiveDevice>>;
    /// Up to `count` licenses of the organization that are free at `now` (unassigned, not
    /// expired, not reserved), locked; oldest first. Concurrent transactions on other nodes
    /// skip each other's locked rows instead of queueing on them. [`Claim::BehindLine`] claims
    /// none while devices of the organization wait in line: free licenses are theirs first.
    async fn claim_free_licenses(
        &mut self,
        org_id: OrgId,
        count: u32,
        now: Timestamp,
        claim: Claim,
    ) -> StoreResult<Vec<FreeLicense>>;
    /// Puts devices in their organization's line, in the order given. Returns each one's
    /// ticket and its place in the line (1: next).
    async fn join_line(
        &mut self,
        org_id: OrgId,
        waiting: &[NewWaiting],
        now: Timestamp,
    ) -> StoreResult<Vec<(i64, u64)>>;
    /// The first `limit` devices of the organization's line, in order, locked against another
    /// node serving them at once.
    async fn waiting_line(&mut self, org_id: OrgId, limit: u32) -> StoreResult<Vec<Waiting>>;
    /// Marks single-use codes used by the given devices, only where still unused, unrevoked
    /// and unexpired. Returns how many it changed.
    ///
    /// This and the next two return counts, not rows: the caller only compares the count with
    /// its plan (fewer means another node got there first), and a row per grant returned
    /// through the driver cost more than the write itself.
    async fn consume_single_use_codes(
        &mut self,
        uses: &[(CodeId, DeviceId)],
        now: Timestamp,
    ) -> StoreResult<u64>;
    /// Assigns licenses, only where each is unassigned, unexpired and either unreserved or
    /// reserved by the grant's own single-use code. Clears the reservation. Returns how many it
    /// changed.
    async fn assign_licenses(
        &mut self,
        grants: &[LicenseGrant],
        now: Timestamp,
    ) -> StoreResult<u64>;
    /// Inserts devices of one organization, paired at `now`, each assigned its `config_id`; a
    /// row that would break a uniqueness constraint (one active pairing per installation, one
    /// device per license) is skipped. Returns how many it inserted.
    async fn insert_devices(
        &mut self,
        org_id: OrgId,
        now: Timestamp,
        devices: &[NewDevice],
    ) -> StoreResult<u64>;
    /// Adds uses to reusable codes (and sets their last use).
    async fn count_code_uses(&mut self, uses: &[(CodeId, u32)], now: Timestamp) -> StoreResult<()>;
    /// Updates device details and marks them online on their connection.
    async fn touch_devices(&mut self, touches: &[DeviceTouch], now: Timestamp) -> StoreResult<()>;
    /// Marks devices offline, only where still online on the given connection.
    async fn set_offline(&mut self, offline: &[(DeviceId, i64)], now: Timestamp)
    -> StoreResult<()>;
    async fn ack_targets(&mut self, ids: &[DeviceId]) -> StoreResult<Vec<AckTarget>>;
    async fn write_acks(&mut self, acks: &[AckWrite], now: Timestamp) -> StoreResult<()>;
}

/// The writes of admin commands, each inside the command's transaction.
#[async_trait]
pub trait AdminTx: StoreTx {
    async fn insert_organization(&mut self, org: &Organization) -> StoreResult<()>;
    /// Inserts an operator token, unless one with its hash exists (revoked or not).
    async fn insert_operator_token(
        &mut self,
        token: &OperatorTokenInfo,
        hash: &SecretHash,
    ) -> StoreResult<()>;
    /// Every operator token not revoked, locked (on PostgreSQL) until the transaction ends, so
    /// that two revocations cannot both leave the other as the last one and then revoke it.
    async fn lock_operator_tokens(&mut self) -> StoreResult<Vec<OperatorTokenRow>>;
    /// Whether an operator token with this hash was revoked.
    async fn operator_token_revoked(&mut self, hash: &SecretHash) -> StoreResult<bool>;
    /// Revokes operator tokens (a revoked one stays revoked at its first revocation time).
    async fn revoke_operator_tokens(
        &mut self,
        ids: &[OperatorTokenId],
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Locks the organization's row against other quota checks (PostgreSQL; SQLite's single
    /// writer already serializes them) and counts what `quota` counts, up to `limit`.
    async fn count_toward_quota(
        &mut self,
        org_id: OrgId,
        quota: Quota,
        now: Timestamp,
        limit: u64,
    ) -> StoreResult<u64>;
    async fn insert_org_key(&mut self, key: &OrgKeyInfo, hash: &SecretHash) -> StoreResult<()>;
    /// Revokes a key of `org_id` (a revoked key stays revoked at its first revocation time).
    /// Returns the key's name, or `None` when the organization has no such key.
    async fn revoke_org_key(
        &mut self,
        org_id: OrgId,
        key_id: KeyId,
        now: Timestamp,
    ) -> StoreResult<Option<String>>;
    async fn insert_licenses(
        &mut self,
        org_id: OrgId,
        ids: &[LicenseId],
        purchased_at: Timestamp,
        valid_until: Option<Timestamp>,
    ) -> StoreResult<()>;
    /// Sets (or clears, with `None`) a license's end. Returns the license as it now is (its
    /// status at `now`), or `None` when the organization has no such license.
    async fn set_license_valid_until(
        &mut self,
        org_id: OrgId,
        id: LicenseId,
        valid_until: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<Option<License>>;
    /// Inserts a code. A code bound to a license (a single-use code) also reserves that license
    /// until the code expires.
    async fn insert_code(&mut self, code: &NewCode) -> StoreResult<()>;
    /// Revokes a code if it is not revoked yet (and releases the license a single-use code
    /// reserved). Returns the code as it now is, or `None` if it does not exist in `org_id`.
    async fn revoke_code(
        &mut self,
        org_id: OrgId,
        id: CodeId,
        now: Timestamp,
    ) -> StoreResult<Option<RevokedCode>>;
    /// Revokes every unused, unrevoked single-use code of a license and releases its
    /// reservation. Returns the codes it revoked.
    async fn revoke_single_use_codes_of(
        &mut self,
        license_id: LicenseId,
        now: Timestamp,
    ) -> StoreResult<Vec<CodeId>>;
    async fn insert_configuration(&mut self, row: &ConfigRow, now: Timestamp) -> StoreResult<()>;
    /// A new revision (new name, new body, or both), unless `if_revision` names another
    /// revision than the current one.
    async fn update_configuration(
        &mut self,
        org_id: OrgId,
        id: ConfigId,
        edit: &ConfigEdit,
        now: Timestamp,
    ) -> StoreResult<ConfigUpdate>;
    /// Deletes a configuration that no active device is assigned, with its revisions.
    async fn delete_configuration(
        &mut self,
        org_id: OrgId,
        id: ConfigId,
    ) -> StoreResult<ConfigDelete>;
    /// The organization's inactive-device release, in days (`None`: off).
    async fn inactive_release(&mut self, org_id: OrgId) -> StoreResult<Option<u32>>;
    /// Sets the organization's inactive-device release (`None`: off).
    async fn set_inactive_release(&mut self, org_id: OrgId, days: Option<u32>) -> StoreResult<()>;
    /// Whether each of the active devices among `ids` is online, and when it was last seen.
    async fn device_presence(&mut self, ids: &[DeviceId]) -> StoreResult<Vec<DevicePresence>>;
    /// The organization's pinned configuration (`None`: new devices get the newest), read with
    /// the organization's row locked against a concurrent pin where the backend locks rows.
    async fn pinned_configuration(&mut self, org_id: OrgId) -> StoreResult<Option<ConfigId>>;
    /// Pins `config_id` (or unpins with `None`) for the organization's new devices. False, and
    /// nothing changed, when the organization has no such configuration.
    async fn set_pinned_configuration(
        &mut self,
        org_id: OrgId,
        config_id: Option<ConfigId>,
    ) -> StoreResult<bool>;
    /// How many usable codes (neither revoked, expired nor used up) carry `config_id` for the
    /// devices they pair.
    async fn codes_carrying(&mut self, config_id: ConfigId, now: Timestamp) -> StoreResult<u64>;
    /// Keeps a revision in the configuration's history.
    async fn insert_revision(&mut self, revision: &NewRevision) -> StoreResult<()>;
    /// The organization's licenses whose `valid_until` falls in (`after`, `until`], soonest
    /// first, at most `limit`, each with the device that holds it; and how many there are.
    async fn expiring_licenses(
        &mut self,
        org_id: OrgId,
        after: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> StoreResult<(u64, Vec<(LicenseId, Timestamp, Option<DeviceId>)>)>;
    /// The organization's webhooks (not deleted) that receive `kind`.
    async fn webhooks_receiving(&mut self, org_id: OrgId, kind: &str) -> StoreResult<Vec<Webhook>>;
    /// Puts one event in the outbox of one webhook (with `throttle`, as
    /// [`StoreTx::enqueue_webhook_event`]).
    async fn enqueue_webhook_delivery(
        &mut self,
        webhook_id: WebhookId,
        event: &WebhookEvent,
    ) -> StoreResult<()>;
    /// How many webhooks (not deleted) the organization has.
    async fn count_webhooks(&mut self, org_id: OrgId) -> StoreResult<u64>;
    async fn insert_webhook(&mut self, webhook: &Webhook, sealed_secret: &[u8]) -> StoreResult<()>;
    /// Deletes a webhook of the organization (its pending deliveries are not sent). False when
    /// it has none such.
    async fn delete_webhook(
        &mut self,
        org_id: OrgId,
        id: WebhookId,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Makes a delivery of the organization's webhook pending again, due `now`. False when
    /// there is none such.
    async fn replay_delivery(
        &mut self,
        org_id: OrgId,
        webhook_id: WebhookId,
        delivery_id: i64,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// The organization's configuration, locked against concurrent edits, deletion, rollout
    /// decisions and codes made to carry it, where the backend locks rows; with its staged
    /// rollout in progress (running or halted). `None` when the organization has no such
    /// configuration.
    async fn lock_configuration(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
    ) -> StoreResult<Option<LockedConfiguration>>;
    async fn insert_rollout(&mut self, org_id: OrgId, rollout: &StagedRollout) -> StoreResult<()>;
    /// Moves a rollout to `state`, at `at`, by `by`; `failed_devices` says how many failures
    /// halted it.
    async fn set_rollout_state(
        &mut self,
        id: RolloutId,
        state: RolloutState,
        at: Timestamp,
        by: &str,
        failed_devices: Option<u64>,
    ) -> StoreResult<()>;
    /// How many active devices are assigned the configuration.
    async fn assigned_devices(&mut self, config_id: ConfigId) -> StoreResult<u64>;
    /// Stages active devices of the organization's configuration at `revision`: first those
    /// staged above `stable` already (an earlier rollout's, so that none goes back), then the
    /// ones `choice` names. Returns every device it staged.
    async fn stage_devices(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        stable: u64,
        revision: u64,
        choice: StageChoice<'_>,
    ) -> StoreResult<Vec<DeviceId>>;
    /// How many active devices staged at the configuration's `revision` report it failed.
    async fn failed_staged_devices(
        &mut self,
        config_id: ConfigId,
        revision: u64,
    ) -> StoreResult<u64>;
    /// Makes `revision` (from the history) the configuration's own, for every device, and
    /// clears its devices' staging. Returns the configuration as it now is.
    async fn promote_revision(
        &mut self,
        config_id: ConfigId,
        revision: u64,
        now: Timestamp,
    ) -> StoreResult<Option<ConfigRow>>;
    /// One revision of the organization's configuration, with its body.
    async fn saved_revision(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        revision: u64,
    ) -> StoreResult<Option<ConfigurationRevision>>;
    /// Assigns a configuration to active devices of the organization. Returns the devices found
    /// (whether or not their assignment changed).
    async fn assign_configuration(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        device_ids: &[DeviceId],
        now: Timestamp,
    ) -> StoreResult<Vec<DeviceId>>;
    /// Assigns a configuration to every active device of the organization that has none.
    async fn assign_waiting_devices(
        &mut self,
        org_id: OrgId,
        config_id: ConfigId,
        now: Timestamp,
    ) -> StoreResult<Vec<DeviceId>>;
    /// The organization's active devices that match a fleet filter at `now` (the device
    /// list's conditions), in id order: what a bulk command by filter changes.
    async fn matching_devices(
        &mut self,
        org_id: OrgId,
        filter: &FleetFilter,
        now: Timestamp,
    ) -> StoreResult<Vec<DeviceId>>;
    /// The organization's licenses that match a fleet filter at `now` (the license list's
    /// conditions), in id order.
    async fn matching_licenses(
        &mut self,
        org_id: OrgId,
        filter: &FleetFilter,
        now: Timestamp,
    ) -> StoreResult<Vec<LicenseId>>;
    /// Moves the end of the organization's licenses among `ids` to `valid_until`, only where
    /// that is later than their end now (a license without an end keeps none). Returns the
    /// licenses it changed, each with the device that holds it.
    async fn extend_licenses(
        &mut self,
        org_id: OrgId,
        ids: &[LicenseId],
        valid_until: Timestamp,
    ) -> StoreResult<Vec<(LicenseId, Option<DeviceId>)>>;
    /// Applies an admin's edit to an active device of the organization. Returns false when the
    /// organization has no such device.
    async fn edit_device(
        &mut self,
        org_id: OrgId,
        id: DeviceId,
        edit: &DeviceEdit,
    ) -> StoreResult<bool>;
    /// One active device of the organization as the admin API shows it, read inside the
    /// transaction (so that a command answers with what it decided).
    async fn device(&mut self, org_id: OrgId, id: DeviceId) -> StoreResult<Option<Device>>;
    async fn idempotent_reply(
        &mut self,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<StoredReply>>;
    async fn store_idempotent_reply(
        &mut self,
        scope: &str,
        key: &str,
        reply: &StoredReply,
        now: Timestamp,
    ) -> StoreResult<()>;
}
