//! Creates an organization key: a bearer token that manages its organization only.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminCommand, CommandTx, quota, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::{KeyId, Timestamp};
use crate::model::OrgKeyInfo;
use crate::secrets::{self, ORG_KEY_PREFIX};
use crate::store::Quota;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateKey {
    pub name: String,
    /// From this time on the key is refused like an unknown one; `None`: it does not expire.
    /// Not hashed when absent, so that keys made before expiry existed keep their fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// A new organization key, with its secret (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: OrgKeyInfo,
    pub key: String,
}

impl AdminCommand for CreateKey {
    type Reply = CreatedKey;
    const NAME: &'static str = "create_key";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<CreatedKey, EngineError> {
        let name = validate::name("name", &self.name, validate::MAX_LABEL_BYTES)?;
        validate::future_time("expires_at", self.expires_at, tx.now)?;
        quota::ensure_room(tx, Quota::Keys).await?;
        let key = secrets::new_token(ORG_KEY_PREFIX);
        let info = OrgKeyInfo {
            id: KeyId::generate(),
            organization_id: tx.org_id,
            name,
            created_at: tx.now,
            revoked_at: None,
            last_used_at: None,
            expires_at: self.expires_at,
        };
        tx.store
            .insert_org_key(&info, &secrets::token_hash(&key))
            .await?;
        tx.audit(
            "key.created",
            info.id.to_string(),
            json!({ "name": info.name, "expires_at": info.expires_at }),
        )
        .await?;
        Ok(CreatedKey { info, key })
    }

    fn events(&self, _: &CreatedKey) -> Vec<OrgEvent> {
        Vec::new()
    }
}
