//! Admin reads: each a type, in a file of its own.
//!
//! A [`Query`] reads one organization's data as an admin sees it. `Engine::query` checks access
//! once for every query (the principal sees the organization, the organization exists, and the
//! query's own rule, if it has one) and hands the query a [`Reader`]; the query reads through
//! the store's [`AdminReads`] and shapes the answer. Adding a query is one new file here (plus
//! its SQL in the store, its route and its tests).

mod configuration_rollout;
mod diff_configuration_revisions;
mod export_fleet;
mod get_code;
mod get_configuration;
mod get_configuration_revision;
mod get_device;
mod get_inactive_release;
mod get_license;
mod get_new_device_configuration;
mod get_organization;
mod license_summary;
mod list_audit;
mod list_codes;
mod list_configuration_revisions;
mod list_configurations;
mod list_devices;
mod list_keys;
mod list_licenses;
mod list_waiting;
mod list_webhooks;
mod reveal_code;

use std::future::Future;

use crate::admin::Principal;
use crate::error::EngineError;
use crate::ids::{OrgId, Timestamp};
use crate::model::Organization;
use crate::node::Node;
use crate::secrets::SecretCipher;
use crate::store::AdminReads;

pub use configuration_rollout::GetConfigurationRollout;
pub use diff_configuration_revisions::DiffConfigurationRevisions;
pub use export_fleet::{ExportChunk, ExportFleet, ExportRow};
pub use get_code::GetCode;
pub use get_configuration::GetConfiguration;
pub use get_configuration_revision::GetConfigurationRevision;
pub use get_device::GetDevice;
pub use get_inactive_release::GetInactiveRelease;
pub use get_license::GetLicense;
pub use get_new_device_configuration::GetNewDeviceConfiguration;
pub use get_organization::GetOrganization;
pub use license_summary::GetLicenseSummary;
pub use list_audit::ListAudit;
pub use list_codes::ListCodes;
pub use list_configuration_revisions::ListConfigurationRevisions;
pub use list_configurations::ListConfigurations;
pub use list_devices::ListDevices;
pub use list_keys::ListKeys;
pub use list_licenses::ListLicenses;
pub use list_waiting::ListWaiting;
pub use list_webhooks::{ListDeliveries, ListWebhooks};
pub use reveal_code::RevealCode;

/// A read of one organization's data by an admin.
pub trait Query: Send + Sync {
    type Answer: Send;

    /// Who may read it, beyond seeing the organization. The default: anyone who sees it.
    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        let _ = principal;
        Ok(())
    }

    /// Reads the answer.
    fn read(
        &self,
        reader: &Reader<'_>,
    ) -> impl Future<Output = Result<Self::Answer, EngineError>> + Send;
}

/// What a query reads with: the store's admin reads, the organization (already read for the
/// access check), the time of the read by the engine's clock, and the server key's cipher.
pub struct Reader<'a> {
    pub store: &'a dyn AdminReads,
    pub organization: &'a Organization,
    pub now: Timestamp,
    cipher: &'a SecretCipher,
    /// Uses of tokens and keys noted on this node and not yet written.
    pub(crate) usage: &'a crate::usage::Usage,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("organization", &self.organization.id)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Reader<'_> {
    pub fn org_id(&self) -> OrgId {
        self.organization.id
    }

    /// The server key's cipher, to open secrets kept to be shown again.
    pub fn cipher(&self) -> &SecretCipher {
        self.cipher
    }
}

/// Runs `query` for `principal` on `org_id`, after checking access.
pub(crate) async fn read<Q: Query>(
    node: &Node,
    principal: &Principal,
    org_id: OrgId,
    query: &Q,
) -> Result<Q::Answer, EngineError> {
    principal.require_org(org_id)?;
    query.authorize(principal)?;
    let store: &dyn AdminReads = &*node.store;
    let organization = store
        .organization(org_id)
        .await?
        .ok_or(EngineError::NotFound("organization"))?;
    let reader = Reader {
        store,
        organization: &organization,
        now: node.clock.now(),
        cipher: &node.cipher,
        usage: &node.usage,
    };
    query.read(&reader).await
}
