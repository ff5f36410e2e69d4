//! `GET /v1/organizations/{org}/events`: an organization's live feed as server-sent events.
//!
//! The stream opens with a `ready` event (the subscription is in place: anything that happens
//! from now on is told), then carries one SSE event per engine event, named after its kind
//! (`devices`, `licenses`, `codes`, `configurations`, `key_revoked`, `resync`), with the event
//! as JSON data.
//! Events name what changed, never the new state: the watcher re-reads it from the API. A comment
//! line every [`KEEPALIVE`] keeps proxies from closing an idle stream. The stream ends when the
//! server shuts down; a watcher reconnects and re-reads everything, since nothing is replayed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::events::OrgEvent;
use engine::ids::{KeyId, OrgId, Timestamp};
use engine::{Clock, EngineError, Principal};
use futures_util::stream::{self, Stream};
use tokio::sync::{broadcast, watch};

use super::{ApiError, AppState, Ids, bearer_token};

/// How often an idle stream gets a comment line.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub(crate) async fn org_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Ids(org): Ids<OrgId>,
) -> Result<Response, ApiError> {
    let token = bearer_token(&headers).ok_or(ApiError(EngineError::Unauthorized))?;
    let (principal, expires_at) = state.engine.authenticate_until(token).await?;
    let receiver = state.engine.watch_organization(&principal, org).await?;
    let own_key = match principal {
        Principal::OrgKey { key_id, .. } => Some(key_id),
        Principal::Operator | Principal::System => None,
    };
    let until = expires_at.map(|at| (Arc::clone(state.engine.clock()), at));
    let stream = feed(receiver, state.stopped.clone(), own_key, until);
    Ok((
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE)),
    )
        .into_response())
}

/// Where the stream is.
enum Phase {
    Opening,
    Open,
}

/// The stream of one watcher. It ends when the server stops, when `own_key` (the key the feed
/// was opened with) is revoked, or when the token it was opened with expires (`until`, by the
/// engine's clock): a revoked or expired token learns nothing more. When it falls behind, a
/// key's feed ends too (it may have missed its key's revocation); the operator's gets `resync`.
fn feed(
    receiver: broadcast::Receiver<Arc<OrgEvent>>,
    stopped: watch::Receiver<bool>,
    own_key: Option<KeyId>,
    until: Option<(Arc<dyn Clock>, Timestamp)>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(
        (Phase::Opening, receiver, stopped),
        move |(phase, mut receiver, mut stopped)| {
            let until = until.clone();
            async move {
                if let Phase::Opening = phase {
                    let ready = Event::default().event("ready").data("{}");
                    return Some((Ok(ready), (Phase::Open, receiver, stopped)));
                }
                if *stopped.borrow() {
                    return None;
                }
                let event = tokio::select! {
                    received = receiver.recv() => match received {
                        Ok(event) => {
                            if let OrgEvent::KeyRevoked { key_id } = *event
                                && Some(key_id) == own_key
                            {
                                return None;
                            }
                            sse_event(&event)
                        }
                        // Fell behind. A feed opened with a key may have missed that key's
                        // revocation: it ends, and the watcher's reconnection is authenticated
                        // again. The operator's feed re-reads everything.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            if own_key.is_some() {
                                return None;
                            }
                            sse_event(&OrgEvent::Resync)
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = stopped.changed() => return None,
                    () = expiry(until) => return None,
                };
                Some((Ok(event), (Phase::Open, receiver, stopped)))
            }
        },
    )
}

/// Completes when the token's expiry comes, by `clock`; never without one. A clock that jumps
/// (the test hooks' manual clock) is watched for its jumps, the system clock is slept on.
async fn expiry(until: Option<(Arc<dyn Clock>, Timestamp)>) {
    let Some((clock, at)) = until else {
        return std::future::pending().await;
    };
    let mut jumps = clock.jumps();
    loop {
        let now = clock.now();
        if now >= at {
            return;
        }
        let left = Duration::from_millis(u64::try_from(at.0 - now.0).unwrap_or(u64::MAX));
        match jumps.as_mut() {
            Some(jumps) => {
                // A manual clock moves only when told to (and, gone, never again).
                if jumps.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => tokio::time::sleep(left).await,
        }
    }
}

fn sse_event(event: &OrgEvent) -> Event {
    let name = match event {
        OrgEvent::Devices { .. } => "devices",
        OrgEvent::Licenses => "licenses",
        OrgEvent::Codes => "codes",
        OrgEvent::Configurations => "configurations",
        OrgEvent::Rollout { .. } => "rollout",
        OrgEvent::Waiting => "waiting",
        OrgEvent::KeyRevoked { .. } => "key_revoked",
        OrgEvent::Resync => "resync",
    };
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Event::default().event(name).data(data)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt;

    use super::*;

    /// A feed whose watcher fell behind `capacity` events; what it yields after `ready`.
    async fn after_lagging(own_key: Option<KeyId>) -> Option<String> {
        let (sender, receiver) = broadcast::channel(2);
        let (_stop, stopped) = watch::channel(false);
        let stream = feed(receiver, stopped, own_key, None);
        futures_util::pin_mut!(stream);
        assert!(stream.next().await.is_some(), "ready");
        for _ in 0..5 {
            sender.send(Arc::new(OrgEvent::Codes)).unwrap();
        }
        stream
            .next()
            .await
            .map(|event| format!("{:?}", event.unwrap()))
    }

    #[tokio::test]
    async fn a_key_feed_that_fell_behind_ends_and_the_operator_feed_resyncs() {
        assert_eq!(after_lagging(Some(KeyId::generate())).await, None);
        let operator = after_lagging(None).await.expect("an event");
        assert!(operator.contains("resync"), "{operator}");
    }
}
