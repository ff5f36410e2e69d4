//! Admin commands: each a type, in a file of its own.
//!
//! A command ([`AdminCommand`]) says who may run it ([`AdminCommand::authorize`]), what it does
//! inside its organization's transaction ([`AdminCommand::execute`], through a [`CommandTx`]),
//! what it answers (its [`AdminCommand::Reply`], checked at compile time) and what its commit
//! tells the organization's live feed ([`AdminCommand::events`]). `Engine::run` sends any of
//! them to the organization's actor, which runs it after the device requests that arrived before
//! it, in one transaction:
//!
//! 1. a retry under the same idempotency key is answered from its record, changing nothing;
//! 2. the command validates its input, changes the database with conditional statements,
//!    appends to the audit log, and says what connected devices must be told (a new revision, an
//!    assignment, an ended session) and what other nodes must hear;
//! 3. its reply is stored under the idempotency key, in the same transaction;
//! 4. after the commit, the effects reach the devices connected here and the live feed hears
//!    the events. The reply is what the transaction decided; nothing is read again.
//!
//! Adding a command is one new file here (plus its SQL in the store, its route and its tests).

mod idempotency;
mod principal;
mod quota;
mod selection;
mod transaction;
mod validate;

mod add_licenses;
mod advance_rollout;
mod assign_configuration;
mod assign_configuration_to_fleet;
mod configure_device;
mod create_configuration;
mod create_key;
mod create_operator_token;
mod create_organization;
mod create_reusable_code;
mod create_single_use_code;
mod create_webhook;
mod delete_configuration;
mod delete_webhook;
mod dismiss_waiting;
mod edit_device;
mod environment_token;
mod expire_devices;
mod halt_rollout;
mod list_operator_tokens;
mod notice_expiring_licenses;
mod operator_token;
mod pin_configuration;
mod promote_rollout;
mod release_inactive_devices;
mod renew_license;
mod renew_licenses;
mod replace_device;
mod replay_delivery;
mod revert_configuration;
mod revoke_code;
mod revoke_key;
mod revoke_operator_token;
mod revoke_single_use_code;
mod set_inactive_release;
mod stage_configuration;
mod unpair_device;
mod unpair_devices;
mod update_configuration;

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::OrgId;

pub use add_licenses::{AddLicenses, AddedLicenses};
pub use advance_rollout::AdvanceRollout;
pub use assign_configuration::{AssignConfiguration, AssignedDevices};
pub use assign_configuration_to_fleet::{AssignConfigurationToFleet, AssignedToFleet};
pub use configure_device::ConfigureDevice;
pub use create_configuration::CreateConfiguration;
pub use create_key::{CreateKey, CreatedKey};
pub use create_operator_token::{CreateOperatorToken, CreatedOperatorToken};
pub use create_organization::CreateOrganization;
pub use create_reusable_code::CreateReusableCode;
pub use create_single_use_code::CreateSingleUseCode;
pub use create_webhook::CreateWebhook;
pub use delete_configuration::DeleteConfiguration;
pub use delete_webhook::DeleteWebhook;
pub use dismiss_waiting::DismissWaiting;
pub use edit_device::{EditDevice, MAX_DEVICE_NAME_BYTES, MAX_DEVICE_NOTES_BYTES};
pub use environment_token::{MIN_ENVIRONMENT_TOKEN_CHARS, check_environment_token};
pub use expire_devices::ExpireDevices;
pub use halt_rollout::HaltRollout;
pub use idempotency::IdempotencyKey;
pub use list_operator_tokens::ListOperatorTokens;
pub use notice_expiring_licenses::NoticeExpiringLicenses;
pub use operator_token::new_operator_token;
pub(crate) use operator_token::{EnvironmentToken, register_environment_token};
pub use pin_configuration::PinConfiguration;
pub use principal::Principal;
pub use promote_rollout::PromoteRollout;
pub use release_inactive_devices::ReleaseInactiveDevices;
pub use renew_license::RenewLicense;
pub use renew_licenses::{RenewLicenses, RenewedLicenses};
pub use replace_device::{
    REPLACEMENT_VALIDITY_DEFAULT, REPLACEMENT_VALIDITY_MAX, REPLACEMENT_VALIDITY_MIN, ReplaceDevice,
};
pub use replay_delivery::ReplayDelivery;
pub use revert_configuration::RevertConfiguration;
pub use revoke_code::RevokeCode;
pub use revoke_key::RevokeKey;
pub use revoke_operator_token::RevokeOperatorToken;
pub use revoke_single_use_code::RevokeSingleUseCode;
pub use selection::{MAX_IDS_PER_BULK_COMMAND, Selection};
pub use set_inactive_release::{MAX_INACTIVE_RELEASE_DAYS, SetInactiveRelease};
pub use stage_configuration::{
    ROLLOUT_MAX_FAILURES_LIMIT, ROLLOUT_PROMOTE_AFTER_MAX_SECONDS,
    ROLLOUT_PROMOTE_AFTER_MIN_SECONDS, RolloutAudience, StageConfiguration,
};
pub use transaction::CommandTx;
pub(crate) use transaction::{CommandJob, Job, execute};
pub use unpair_device::{UnpairDevice, UnpairedDevice};
pub use unpair_devices::{UnpairDevices, UnpairedDevices};
pub use update_configuration::UpdateConfiguration;
pub use validate::{
    MAX_CONFIGURATION_BODY_BYTES, MAX_CONFIGURATION_NAME_BYTES, MAX_DEVICES_PER_ASSIGNMENT,
    MAX_LICENSES_PER_COMMAND, REUSABLE_VALIDITY_DEFAULT, REUSABLE_VALIDITY_MAX,
    REUSABLE_VALIDITY_MIN, SINGLE_USE_VALIDITY_DEFAULT, SINGLE_USE_VALIDITY_MAX,
    SINGLE_USE_VALIDITY_MIN, check_configuration_body,
};

/// An admin command that changes one organization.
pub trait AdminCommand: Serialize + Send + Sync + 'static {
    /// What the command answers; a retry under the same idempotency key gets it back.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// The command's name in its fingerprint (`{"<name>": {<fields>}}` is what is hashed).
    const NAME: &'static str;

    /// Who may run it, beyond seeing the organization (which `Engine::run` checks for every
    /// command). The default: anyone who sees the organization.
    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        let _ = principal;
        Ok(())
    }

    /// What it does, inside the organization's transaction.
    fn execute(
        &self,
        tx: &mut CommandTx<'_>,
    ) -> impl Future<Output = Result<Self::Reply, EngineError>> + Send;

    /// What its commit tells the organization's live feed.
    fn events(&self, reply: &Self::Reply) -> Vec<OrgEvent>;

    /// Whether its commit may free or add licenses: the organization's waiting line is served
    /// after it (`batch::line`).
    const FREES_LICENSES: bool = false;

    /// What tells a retry of this command from another command under the same idempotency key.
    fn fingerprint(&self) -> [u8; 32] {
        idempotency::fingerprint_of(&idempotency::Named {
            name: Self::NAME,
            command: self,
        })
    }

    /// Where its idempotency keys live: each caller has its own keys per organization.
    fn idempotency_scope(principal: &Principal, org_id: OrgId) -> String {
        format!("{}@{org_id}", principal.audit_name())
    }
}
