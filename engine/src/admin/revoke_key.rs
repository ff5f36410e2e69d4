//! Revokes an organization key: every request made with it is refused from the commit on.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::KeyId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokeKey {
    pub key_id: KeyId,
}

impl AdminCommand for RevokeKey {
    type Reply = ();
    const NAME: &'static str = "revoke_key";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<(), EngineError> {
        let name = tx
            .store
            .revoke_org_key(tx.org_id, self.key_id, tx.now)
            .await?
            .ok_or(EngineError::NotFound("key"))?;
        tx.audit(
            "key.revoked",
            self.key_id.to_string(),
            json!({ "name": name }),
        )
        .await
    }

    /// A live feed opened with the key ends on this event.
    fn events(&self, _: &()) -> Vec<OrgEvent> {
        vec![OrgEvent::KeyRevoked {
            key_id: self.key_id,
        }]
    }
}
