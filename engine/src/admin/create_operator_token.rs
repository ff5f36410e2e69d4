//! Creates an operator token through the admin API (operator only): a label, an optional
//! expiry; the token is shown this once. Server-wide, so it runs in a transaction of its own
//! rather than in an organization's actor, and its audit entry is in the server's log.

use serde::{Deserialize, Serialize};

use super::{Principal, operator_token, validate};
use crate::error::EngineError;
use crate::ids::{OperatorTokenId, Timestamp};
use crate::model::{OperatorTokenInfo, TokenSource};
use crate::node::Node;
use crate::secrets;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOperatorToken {
    pub label: String,
    /// From this time on the token is refused like an unknown one; `None`: it does not expire.
    pub expires_at: Option<Timestamp>,
}

/// A new operator token, with its secret (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedOperatorToken {
    #[serde(flatten)]
    pub info: OperatorTokenInfo,
    pub token: String,
}

impl CreateOperatorToken {
    pub(crate) async fn run(
        &self,
        node: &Node,
        principal: &Principal,
    ) -> Result<CreatedOperatorToken, EngineError> {
        principal.require_operator("only the operator creates operator tokens")?;
        let now = node.clock.now();
        let label = validate::name("label", &self.label, validate::MAX_LABEL_BYTES)?;
        validate::future_time("expires_at", self.expires_at, now)?;
        let token = secrets::new_token(secrets::OPERATOR_TOKEN_PREFIX);
        let info = OperatorTokenInfo {
            id: OperatorTokenId::generate(),
            label,
            source: TokenSource::Api,
            created_at: now,
            last_used_at: None,
            expires_at: self.expires_at,
        };
        let mut tx = node.store.begin().await?;
        operator_token::insert_operator_token(
            tx.as_mut(),
            &info,
            &secrets::token_hash(&token),
            &principal.audit_name(),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedOperatorToken { info, token })
    }
}
