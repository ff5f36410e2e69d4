//! Revokes a code (a revoked single-use code releases its license's reservation).

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::CodeId;
use crate::model::CodeInfo;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokeCode {
    pub code_id: CodeId,
}

impl AdminCommand for RevokeCode {
    /// The code as revoked (revoking it again changes nothing and answers the same).
    type Reply = CodeInfo;
    const NAME: &'static str = "revoke_code";
    const FREES_LICENSES: bool = true;

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<CodeInfo, EngineError> {
        let revoked = tx
            .store
            .revoke_code(tx.org_id, self.code_id, tx.now)
            .await?
            .ok_or(EngineError::NotFound("code"))?;
        if !revoked.already_revoked {
            tx.audit(
                "code.revoked",
                self.code_id.to_string(),
                json!({
                    "kind": revoked.code.kind.as_str(),
                    "label": revoked.code.label,
                    "license_id": revoked.code.license_id,
                }),
            )
            .await?;
        }
        Ok(revoked.code)
    }

    /// A revoked single-use code releases its license's reservation.
    fn events(&self, _: &CodeInfo) -> Vec<OrgEvent> {
        vec![OrgEvent::Codes, OrgEvent::Licenses]
    }
}
