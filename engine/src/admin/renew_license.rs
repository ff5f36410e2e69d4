//! Sets a license's end (renewal; operator only).

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx, Principal, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::{LicenseId, Timestamp};
use crate::model::License;

/// Sets `valid_until` of a license; `None` means no end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenewLicense {
    pub license_id: LicenseId,
    pub valid_until: Option<Timestamp>,
}

impl AdminCommand for RenewLicense {
    type Reply = License;
    /// The name this command has always had in fingerprints.
    const NAME: &'static str = "set_license_valid_until";
    const FREES_LICENSES: bool = true;

    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        principal.require_operator("only the operator renews licenses")
    }

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<License, EngineError> {
        validate::future_end(self.valid_until, tx.now)?;
        let license = tx
            .store
            .set_license_valid_until(tx.org_id, self.license_id, self.valid_until, tx.now)
            .await?
            .ok_or(EngineError::NotFound("license"))?;
        // The device holding the license, if any, is named: its pairing lasts as long.
        let holder = match license.device_id {
            Some(device_id) => tx.store.active_devices(&[device_id]).await?.pop(),
            None => None,
        };
        tx.audit_naming(
            "license.renewed",
            self.license_id.to_string(),
            json!({
                "valid_until": self.valid_until,
                "device_id": license.device_id,
                "device_name": holder.map(|device| device.details.name),
            }),
            license.device_id.into_iter().collect(),
        )
        .await?;
        Ok(license)
    }

    fn events(&self, _: &License) -> Vec<OrgEvent> {
        vec![OrgEvent::Licenses]
    }
}
