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
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::Principal;
use engine::events::OrgEvent;
use engine::ids::{KeyId, OrgId};
use futures_util::stream::{self, Stream};
use tokio::sync::{broadcast, watch};

use super::{ApiError, AppState, Auth, Ids};

/// How often an idle stream gets a comment line.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub(crate) async fn org_events(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Ids(org): Ids<OrgId>,
) -> Result<Response, ApiError> {
    let receiver = state.engine.watch_organization(&principal, org).await?;
    let own_key = match principal {
        Principal::OrgKey { key_id, .. } => Some(key_id),
        Principal::Operator | Principal::System => None,
    };
    let stream = feed(receiver, state.stopped.clone(), own_key);
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

/// The stream of one watcher. It ends when the server stops, or when `own_key` (the key the
/// feed was opened with) is revoked: a revoked key learns nothing more. When it falls behind,
/// a key's feed ends too (it may have missed its key's revocation); the operator's gets `resync`.
fn feed(
    receiver: broadcast::Receiver<std::sync::Arc<OrgEvent>>,
    stopped: watch::Receiver<bool>,
    own_key: Option<KeyId>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(
        (Phase::Opening, receiver, stopped),
        move |(phase, mut receiver, mut stopped)| async move {
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
            };
            Some((Ok(event), (Phase::Open, receiver, stopped)))
        },
    )
}

fn sse_event(event: &OrgEvent) -> Event {
    let name = match event {
        OrgEvent::Devices { .. } => "devices",
        OrgEvent::Licenses => "licenses",
        OrgEvent::Codes => "codes",
        OrgEvent::Configurations => "configurations",
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
        let stream = feed(receiver, stopped, own_key);
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
