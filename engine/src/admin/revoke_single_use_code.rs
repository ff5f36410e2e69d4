//! Revokes a license's single-use code(s), releasing its reservation ("Cancel").

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::LicenseId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokeSingleUseCode {
    pub license_id: LicenseId,
}

impl AdminCommand for RevokeSingleUseCode {
    /// How many codes were revoked.
    type Reply = u64;
    /// The name this command has always had in fingerprints.
    const NAME: &'static str = "revoke_single_use_code_of";
    const FREES_LICENSES: bool = true;

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<u64, EngineError> {
        let license = tx.own_license(self.license_id).await?;
        let revoked = tx
            .store
            .revoke_single_use_codes_of(license.id, tx.now)
            .await?;
        for code in &revoked {
            tx.audit(
                "code.revoked",
                code.to_string(),
                json!({ "kind": "single_use", "license_id": self.license_id }),
            )
            .await?;
        }
        Ok(revoked.len() as u64)
    }

    fn events(&self, _: &u64) -> Vec<OrgEvent> {
        vec![OrgEvent::Licenses]
    }
}
