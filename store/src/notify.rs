//! Change notifications between nodes on PostgreSQL: the payload format, and the feed that
//! listens for them.
//!
//! A transaction publishes a change with `pg_notify` (`publish` in `postgres`); PostgreSQL
//! delivers it to every listening connection when the transaction commits, and never if it
//! rolls back.
//! Payloads name rows (ids only) and say which store published them, so that a node skips its
//! own changes (it applied them itself after its commit).
//!
//! Notifications are not durable: a listener whose connection drops misses whatever was
//! published until it is listening again. The feed therefore answers [`Notice::Resync`] after
//! every reconnection, and the engine re-reads the state of the devices connected to it.
//! `PgListener::recv` would reconnect silently and lose that gap (DEPENDENCIES.md); the feed
//! uses `try_recv`, which reports the drop.

use std::time::Duration;

use async_trait::async_trait;
use engine::events::OrgEvent;
use engine::ids::{ConfigId, DeviceId, OrgId};
use engine::store::{Change, ChangeFeed, Notice, PairingEnd};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use uuid::Uuid;

/// The channel every change is published on.
pub const CHANGE_CHANNEL: &str = "paird_changes";

/// The `application_name` of the listener's connection, so that an operator (or a test) can
/// find it in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "paird-listener";

/// PostgreSQL refuses a notification payload of 8,000 bytes or more; a payload above this size
/// is replaced by a "resync" notice for the organization.
const MAX_PAYLOAD_BYTES: usize = 7_900;

/// Longest wait between attempts to reconnect the listener while the database is unreachable.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// The wire form of a notification (JSON, documented in ARCHITECTURE.md).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Payload {
    /// The publishing store (random per process): a node skips its own notices.
    origin: u64,
    change: Kind,
    org_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    device_ids: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Too many rows to name: re-read the whole organization.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    resync: bool,
    /// Live-feed events (`events` notices).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    events: Vec<OrgEvent>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    ConfigurationUpdated,
    DevicesAssigned,
    DevicesEnded,
    LineMoved,
    /// Live-feed events for the watchers of the organization.
    Events,
    /// The publishing node has live-feed watchers of the organization.
    Watch,
}

/// The notification payload of a change published by store `origin`.
pub(crate) fn change_payload(change: &Change, origin: u64) -> String {
    let mut payload = Payload {
        origin,
        change: Kind::ConfigurationUpdated,
        org_id: change.org_id().0,
        config_id: None,
        device_ids: Vec::new(),
        reason: None,
        resync: false,
        events: Vec::new(),
    };
    match change {
        Change::ConfigurationUpdated { config_id, .. } => payload.config_id = Some(config_id.0),
        Change::DevicesAssigned { device_ids, .. } => {
            payload.change = Kind::DevicesAssigned;
            payload.device_ids = device_ids.iter().map(|id| id.0).collect();
        }
        Change::DevicesEnded {
            device_ids, reason, ..
        } => {
            payload.change = Kind::DevicesEnded;
            payload.device_ids = device_ids.iter().map(|id| id.0).collect();
            payload.reason = Some(reason.as_str().to_string());
        }
        Change::LineMoved { .. } => payload.change = Kind::LineMoved,
    }
    let text = serde_json::to_string(&payload).unwrap_or_default();
    if text.len() <= MAX_PAYLOAD_BYTES {
        return text;
    }
    // Too many devices to name: the listeners re-read the whole organization instead.
    payload.device_ids.clear();
    payload.resync = true;
    serde_json::to_string(&payload).unwrap_or_default()
}

/// The notification payload of live-feed events of `org_id`, published by store `origin`.
/// Events that name too many devices to fit become one [`OrgEvent::Resync`].
pub(crate) fn events_payload(org_id: OrgId, events: &[OrgEvent], origin: u64) -> String {
    let mut payload = Payload {
        origin,
        change: Kind::Events,
        org_id: org_id.0,
        config_id: None,
        device_ids: Vec::new(),
        reason: None,
        resync: false,
        events: events.to_vec(),
    };
    let text = serde_json::to_string(&payload).unwrap_or_default();
    if text.len() <= MAX_PAYLOAD_BYTES {
        return text;
    }
    payload.events = vec![OrgEvent::Resync];
    serde_json::to_string(&payload).unwrap_or_default()
}

/// The notification payload announcing that store `origin`'s node watches `org_id`.
pub(crate) fn watch_payload(org_id: OrgId, origin: u64) -> String {
    let payload = Payload {
        origin,
        change: Kind::Watch,
        org_id: org_id.0,
        config_id: None,
        device_ids: Vec::new(),
        reason: None,
        resync: false,
        events: Vec::new(),
    };
    serde_json::to_string(&payload).unwrap_or_default()
}

/// What a payload asks of a node other than `own_origin`: `Ok(None)` for its own notices,
/// `Err` for a payload it cannot read.
pub(crate) fn parse_payload(text: &str, own_origin: u64) -> Result<Option<Notice>, String> {
    let payload: Payload = serde_json::from_str(text).map_err(|error| error.to_string())?;
    if payload.origin == own_origin {
        return Ok(None);
    }
    let org_id = OrgId(payload.org_id);
    if payload.resync {
        return Ok(Some(Notice::Resync {
            org_id: Some(org_id),
        }));
    }
    let device_ids = || payload.device_ids.iter().copied().map(DeviceId).collect();
    let change = match payload.change {
        Kind::Events => {
            return Ok(Some(Notice::Events {
                org_id,
                events: payload.events,
            }));
        }
        Kind::Watch => return Ok(Some(Notice::Watch { org_id })),
        Kind::ConfigurationUpdated => Change::ConfigurationUpdated {
            org_id,
            config_id: ConfigId(
                payload
                    .config_id
                    .ok_or("configuration_updated without config_id")?,
            ),
        },
        Kind::DevicesAssigned => Change::DevicesAssigned {
            org_id,
            device_ids: device_ids(),
        },
        Kind::LineMoved => Change::LineMoved { org_id },
        Kind::DevicesEnded => Change::DevicesEnded {
            org_id,
            device_ids: device_ids(),
            reason: payload
                .reason
                .as_deref()
                .and_then(PairingEnd::parse)
                .ok_or("devices_ended without a known reason")?,
        },
    };
    Ok(Some(Notice::Change(change)))
}

/// The change feed of one node: a `LISTEN` connection of its own (not one of the store pool's).
pub(crate) struct PgFeed {
    /// A pool of one connection, used only to open (and reopen) the listener.
    pool: PgPool,
    listener: Option<PgListener>,
    origin: u64,
}

impl PgFeed {
    /// Starts listening. Fails if the database cannot be reached now.
    pub(crate) async fn start(pool: PgPool, origin: u64) -> Result<PgFeed, sqlx::Error> {
        let listener = listen(&pool).await?;
        Ok(PgFeed {
            pool,
            listener: Some(listener),
            origin,
        })
    }

    /// Reopens the listener, waiting while the database is unreachable.
    async fn reconnect(&mut self) {
        let mut delay = Duration::from_millis(50);
        loop {
            match listen(&self.pool).await {
                Ok(listener) => {
                    self.listener = Some(listener);
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, ?delay, "cannot listen for other nodes' changes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                }
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // The store closes the pool at shutdown; the engine stops this feed first.
    listener.ignore_pool_close_event(true);
    listener.listen(CHANGE_CHANNEL).await?;
    Ok(listener)
}

#[async_trait]
impl ChangeFeed for PgFeed {
    async fn next(&mut self) -> Notice {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                self.reconnect().await;
                // Listening again: whatever was published in the gap is read from the tables.
                return Notice::Resync { org_id: None };
            };
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    match parse_payload(notification.payload(), self.origin) {
                        Ok(Some(notice)) => return notice,
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(%error, "unreadable change notification; resyncing");
                            return Notice::Resync { org_id: None };
                        }
                    }
                }
                // The connection dropped and `try_recv` reconnected (and listens again) before
                // answering: the gap is read from the tables.
                Ok(None) => {
                    tracing::warn!("the change listener's connection dropped and was reopened");
                    return Notice::Resync { org_id: None };
                }
                Err(error) => {
                    tracing::warn!(%error, "the change listener failed; reconnecting");
                    self.listener = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(count: usize) -> Vec<DeviceId> {
        (0..count).map(|_| DeviceId(Uuid::now_v7())).collect()
    }

    #[test]
    fn payloads_round_trip_and_skip_their_own_origin() {
        let org_id = OrgId(Uuid::now_v7());
        let changes = [
            Change::ConfigurationUpdated {
                org_id,
                config_id: ConfigId(Uuid::now_v7()),
            },
            Change::DevicesAssigned {
                org_id,
                device_ids: ids(3),
            },
            Change::DevicesEnded {
                org_id,
                device_ids: ids(2),
                reason: PairingEnd::LicenseExpired,
            },
        ];
        for change in changes {
            let text = change_payload(&change, 7);
            assert_eq!(parse_payload(&text, 8), Ok(Some(Notice::Change(change))));
            assert_eq!(parse_payload(&text, 7), Ok(None));
        }
    }

    #[test]
    fn live_feed_payloads_round_trip_and_fall_back_to_resync_when_too_large() {
        use engine::events::DeviceChange;
        let org_id = OrgId(Uuid::now_v7());
        let events = vec![
            OrgEvent::Devices {
                change: DeviceChange::Online,
                device_ids: ids(3),
            },
            OrgEvent::Licenses,
        ];
        let text = events_payload(org_id, &events, 7);
        assert_eq!(
            parse_payload(&text, 8),
            Ok(Some(Notice::Events { org_id, events }))
        );
        assert_eq!(parse_payload(&text, 7), Ok(None));
        let watch = watch_payload(org_id, 7);
        assert_eq!(parse_payload(&watch, 8), Ok(Some(Notice::Watch { org_id })));

        let many = vec![OrgEvent::Devices {
            change: DeviceChange::Paired,
            device_ids: ids(1000),
        }];
        let text = events_payload(org_id, &many, 7);
        assert!(text.len() <= MAX_PAYLOAD_BYTES);
        assert_eq!(
            parse_payload(&text, 8),
            Ok(Some(Notice::Events {
                org_id,
                events: vec![OrgEvent::Resync]
            }))
        );
    }

    #[test]
    fn payloads_stay_under_the_notification_limit() {
        let org_id = OrgId(Uuid::now_v7());
        let few = Change::DevicesAssigned {
            org_id,
            device_ids: ids(10),
        };
        assert!(change_payload(&few, 1).contains("device_ids"));
        let many = Change::DevicesEnded {
            org_id,
            device_ids: ids(1_000),
            reason: PairingEnd::Unpaired,
        };
        let payload = change_payload(&many, 1);
        assert!(payload.len() < 8_000);
        assert_eq!(
            parse_payload(&payload, 2),
            Ok(Some(Notice::Resync {
                org_id: Some(org_id)
            }))
        );
    }

    #[test]
    fn unreadable_payloads_are_errors() {
        assert!(parse_payload("not json", 1).is_err());
        assert!(
            parse_payload(
                r#"{"origin":1,"change":"devices_ended","org_id":"00000000-0000-0000-0000-000000000000"}"#,
                2
            )
            .is_err()
        );
    }
}
