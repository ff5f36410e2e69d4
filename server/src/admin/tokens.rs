//! The operator-token endpoints (operator only): list, create with a label and an optional
//! expiry, revoke. One engine call each, like every handler in `routes.rs`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::admin::{CreateOperatorToken, RevokeOperatorToken};
use engine::ids::{OperatorTokenId, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, Auth, Body, Ids, created};

pub(super) async fn list_operator_tokens(
    State(state): State<AppState>,
    Auth(principal): Auth,
) -> Result<Response, ApiError> {
    let tokens = state.engine.operator_tokens(&principal).await?;
    Ok(Json(json!({ "items": tokens, "next_cursor": null })).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateOperatorTokenBody {
    label: String,
    /// When it stops working (UTC); none: never.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
}

pub(super) async fn create_operator_token(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Body(body): Body<CreateOperatorTokenBody>,
) -> Result<Response, ApiError> {
    let command = CreateOperatorToken {
        label: body.label,
        expires_at: body.expires_at,
    };
    Ok(created(
        state
            .engine
            .create_operator_token(&principal, command)
            .await?,
    ))
}

pub(super) async fn revoke_operator_token(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(token_id): Ids<OperatorTokenId>,
) -> Result<Response, ApiError> {
    state
        .engine
        .revoke_operator_token(&principal, RevokeOperatorToken { token_id })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
