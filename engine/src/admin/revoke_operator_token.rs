//! Revokes an operator token (operator only): every request made with it is refused from the
//! commit on. The last usable token cannot be revoked, so that the server always has one.

use serde_json::json;

use super::{Principal, operator_token};
use crate::error::EngineError;
use crate::ids::OperatorTokenId;
use crate::node::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokeOperatorToken {
    pub token_id: OperatorTokenId,
}

impl RevokeOperatorToken {
    pub(crate) async fn run(&self, node: &Node, principal: &Principal) -> Result<(), EngineError> {
        principal.require_operator("only the operator revokes operator tokens")?;
        let now = node.clock.now();
        let mut tx = node.store.begin().await?;
        // Every unrevoked token, locked: two revocations at once on two nodes see each other.
        let tokens = tx.lock_operator_tokens().await?;
        let Some(token) = tokens.iter().find(|token| token.info.id == self.token_id) else {
            tx.rollback().await?;
            return Err(EngineError::NotFound("operator token"));
        };
        let usable_left = tokens
            .iter()
            .filter(|other| other.info.id != self.token_id)
            .any(|other| other.info.expires_at.is_none_or(|at| at > now));
        if !usable_left {
            tx.rollback().await?;
            return Err(EngineError::conflict(
                "last_operator_token",
                "this is the last usable operator token: create another before revoking it",
            ));
        }
        tx.revoke_operator_tokens(&[self.token_id], now).await?;
        operator_token::audit(
            tx.as_mut(),
            now,
            &principal.audit_name(),
            "operator_token.revoked",
            &token.info,
            json!({ "label": token.info.label, "source": token.info.source }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
