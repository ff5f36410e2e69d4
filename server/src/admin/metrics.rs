//! `GET /metrics`: the Prometheus exposition (docs/admin-api.md, "Metrics").
//!
//! Read with the metrics token, from an allowed address without a token, or with the operator
//! token; an organization's key is refused. The allow-list looks at the TCP peer's address
//! only: a header saying where a request came from is never enough to read the metrics.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use engine::EngineError;

use super::{ApiError, AppState, bearer_token};
use crate::metrics::{ProcessUsage, TOP_ORGANIZATIONS, render};

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn metrics(
    State(state): State<AppState>,
    // An extension rather than the `ConnectInfo` extractor, so that a router served without
    // connection info still answers (no address is then allowed).
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(
        &state,
        peer.map(|Extension(ConnectInfo(peer))| peer),
        &headers,
    )
    .await?;
    let body = render(
        &state.engine.detailed_metrics(TOP_ORGANIZATIONS),
        &state.endpoint.stats,
        &state.admin_listener,
        &ProcessUsage::read(&[&state.main_runtime, &tokio::runtime::Handle::current()]),
        state.started.elapsed().as_secs_f64(),
    )
    .map_err(|error| {
        // Said in the log; the scraper gets the plain internal error.
        tracing::error!(%error, "cannot encode the metrics");
        ApiError(EngineError::Internal)
    })?;
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

async fn authorize(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let settings = &state.metrics;
    if let Some(token) = bearer_token(headers) {
        if settings.is_metrics_token(token) {
            return Ok(());
        }
        if peer.is_some_and(|peer| settings.allows(peer.ip())) {
            return Ok(());
        }
        let principal = state.engine.authenticate(token).await?;
        principal.require_operator("only the operator or the metrics token reads the metrics")?;
        return Ok(());
    }
    if peer.is_some_and(|peer| settings.allows(peer.ip())) {
        return Ok(());
    }
    Err(ApiError(EngineError::Unauthorized))
}
