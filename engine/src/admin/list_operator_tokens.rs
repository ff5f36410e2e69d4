//! The operator tokens not revoked (operator only): id, label, source, when made, last used
//! and when they expire; never a token or its hash.

use super::Principal;
use crate::error::EngineError;
use crate::model::OperatorTokenInfo;
use crate::node::Node;
use crate::usage;

#[derive(Debug, Clone, Copy, Default)]
pub struct ListOperatorTokens;

impl ListOperatorTokens {
    pub(crate) async fn run(
        &self,
        node: &Node,
        principal: &Principal,
    ) -> Result<Vec<OperatorTokenInfo>, EngineError> {
        principal.require_operator("only the operator lists operator tokens")?;
        let mut tokens = node.store.list_operator_tokens().await?;
        for token in &mut tokens {
            token.last_used_at = node
                .usage
                .last_used(usage::operator_token(token.id), token.last_used_at);
        }
        Ok(tokens)
    }
}
