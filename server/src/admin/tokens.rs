//! The operator-token endpoints (operator only): list, create with a label and an optional
//! expiry, revoke. One engine call each, like every handler in `routes.rs`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use engine::admin::{CreateOperatorToken, RevokeOperatorToken};
use engine::ids::{OperatorTokenId, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, Auth, Body, Ids, created};

/// The routes, merged into the admin router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/operator-tokens",
            get(list_operator_tokens).post(create_operator_token),
        )
        .route("/v1/operator-tokens/{token}", delete(revoke_operator_token))
}

async fn list_operator_tokens(
    State(state): State<AppState>,
    Auth(principal): Auth,
) -> Result<Response, ApiError> {
    let tokens = state.engine.operator_tokens(&principal).await?;
    Ok(Json(json!({ "items": tokens, "next_cursor": null })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOperatorTokenBody {
    label: String,
    #[serde(default)]
    expires_at: Option<Timestamp>,
}

async fn create_operator_token(
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

async fn revoke_operator_token(
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
