//! Operator tokens registered at start-up (from the environment, or a new one on a database
//! that has none usable) and by `paird operator-token`, which must not start an engine beside a
//! running server, so this works on a bare store. The admin API's commands on operator tokens
//! are `create_operator_token.rs`, `revoke_operator_token.rs` and `list_operator_tokens.rs`.

use serde_json::json;

use crate::error::EngineError;
use crate::ids::{OperatorTokenId, Timestamp};
use crate::model::{OperatorTokenInfo, TokenSource};
use crate::secrets::{self, SecretHash};
use crate::store::{NewAudit, Store, Transaction};

/// Creates a new operator token in `store` (the others keep working) and returns it.
pub async fn new_operator_token(store: &dyn Store, now: Timestamp) -> Result<String, EngineError> {
    let token = secrets::new_token(secrets::OPERATOR_TOKEN_PREFIX);
    let mut tx = store.begin().await?;
    let info = OperatorTokenInfo {
        id: OperatorTokenId::generate(),
        label: "generated".into(),
        source: TokenSource::Generated,
        created_at: now,
        last_used_at: None,
        expires_at: None,
    };
    insert_operator_token(tx.as_mut(), &info, &secrets::token_hash(&token), "system").await?;
    tx.commit().await?;
    Ok(token)
}

/// What registering the environment's token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvironmentToken {
    /// It is registered (now, or already) and accepted.
    Accepted,
    /// It was revoked through the admin API: it stays revoked, and is not accepted.
    Revoked,
}

/// Registers the token given in `PAIRD_OPERATOR_TOKEN` by its hash: it replaces (revokes) the
/// previous environment token, and leaves tokens generated or made through the API alone. A
/// token revoked through the API is not brought back.
pub(crate) async fn register_environment_token(
    store: &dyn Store,
    hash: &SecretHash,
    now: Timestamp,
) -> Result<EnvironmentToken, EngineError> {
    let mut tx = store.begin().await?;
    if tx.operator_token_revoked(hash).await? {
        tx.rollback().await?;
        return Ok(EnvironmentToken::Revoked);
    }
    let tokens = tx.lock_operator_tokens().await?;
    if tokens.iter().any(|token| token.hash == *hash) {
        tx.rollback().await?;
        return Ok(EnvironmentToken::Accepted);
    }
    let replaced: Vec<&OperatorTokenInfo> = tokens
        .iter()
        .filter(|token| token.info.source == TokenSource::Environment)
        .map(|token| &token.info)
        .collect();
    let ids: Vec<OperatorTokenId> = replaced.iter().map(|token| token.id).collect();
    tx.revoke_operator_tokens(&ids, now).await?;
    for token in &replaced {
        audit(
            tx.as_mut(),
            now,
            "system",
            "operator_token.revoked",
            token,
            json!({ "label": token.label, "source": token.source, "reason": "replaced" }),
        )
        .await?;
    }
    let info = OperatorTokenInfo {
        id: OperatorTokenId::generate(),
        label: "PAIRD_OPERATOR_TOKEN".into(),
        source: TokenSource::Environment,
        created_at: now,
        last_used_at: None,
        expires_at: None,
    };
    insert_operator_token(tx.as_mut(), &info, hash, "system").await?;
    tx.commit().await?;
    Ok(EnvironmentToken::Accepted)
}

/// Inserts a token and its `operator_token.created` entry, in `tx`.
pub(super) async fn insert_operator_token(
    tx: &mut dyn Transaction,
    info: &OperatorTokenInfo,
    hash: &SecretHash,
    actor: &str,
) -> Result<(), EngineError> {
    tx.insert_operator_token(info, hash).await?;
    audit(
        tx,
        info.created_at,
        actor,
        "operator_token.created",
        info,
        json!({
            "label": info.label,
            "source": info.source,
            "from_environment": info.source == TokenSource::Environment,
            "expires_at": info.expires_at,
        }),
    )
    .await
}

/// A server-wide audit entry about an operator token.
pub(super) async fn audit(
    tx: &mut dyn Transaction,
    at: Timestamp,
    actor: &str,
    action: &str,
    token: &OperatorTokenInfo,
    details: serde_json::Value,
) -> Result<(), EngineError> {
    tx.insert_audit(&[NewAudit {
        org_id: None,
        at,
        actor: actor.into(),
        action: action.into(),
        subject: Some(token.id.to_string()),
        details,
        devices: Vec::new(),
    }])
    .await?;
    Ok(())
}
