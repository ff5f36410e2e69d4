//! The webhook delivery task: sends the events the engine put in the outbox to the receivers
//! the organizations registered, signed (`Paird-Signature`), and reports each attempt back so
//! that a failed one is retried with back-off. The engine decides what is sent and when; this
//! is only the HTTP client.
//!
//! Every node runs one; a delivery is leased by one node at a time, and each webhook receives
//! its events in order (the next one is leased only once the previous one is delivered or
//! given up). It wakes every second, and whenever a manual clock jumps (tests drive retries by
//! moving the clock).

use std::time::Duration;

use engine::{DueDelivery, Engine};
use futures_util::future::join_all;
use tokio::sync::watch;

/// How often the task looks for due deliveries.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries leased (and sent at once) per round.
const ROUND: u32 = 32;
/// Rounds per wake-up at most.
const MAX_ROUNDS: usize = 100;
/// A receiver that has not answered within this is a failed attempt.
const RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until `stopped` turns true.
pub(crate) async fn deliver(engine: Engine, mut stopped: watch::Receiver<bool>) {
    let client = match http_client() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhooks cannot be delivered: no HTTP client");
            return;
        }
    };
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut jumps = engine.clock().jumps();
    loop {
        let jumped = async {
            let changed = match jumps.as_mut() {
                Some(jumps) => jumps.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = stopped.changed() => return,
            _ = poll.tick() => {}
            () = jumped => {}
        }
        if *stopped.borrow() {
            return;
        }
        for _ in 0..MAX_ROUNDS {
            let due = match engine.lease_webhook_deliveries(ROUND).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "webhook deliveries could not be read");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            let sent = join_all(due.iter().map(|delivery| send(&client, &engine, delivery))).await;
            for (delivery, outcome) in due.iter().zip(sent) {
                if let Err(error) = &outcome {
                    tracing::info!(delivery = delivery.id, kind = %delivery.kind, %error, "webhook delivery failed; it will be tried again");
                }
                if let Err(error) = engine.finish_webhook_delivery(delivery, outcome).await {
                    tracing::warn!(delivery = delivery.id, %error, "webhook delivery not recorded; it will be sent again");
                }
            }
        }
    }
}

/// Posts one delivery; the receiver's status, or why there is none.
async fn send(
    client: &reqwest::Client,
    engine: &Engine,
    delivery: &DueDelivery,
) -> Result<u16, String> {
    let timestamp = engine.clock().now().0.div_euclid(1000);
    let signature =
        engine::webhooks::signature(&delivery.secret, timestamp, delivery.payload.as_bytes());
    let response = client
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header("paird-event", &delivery.kind)
        .header("paird-event-id", delivery.event_id.to_string())
        .header("paird-delivery", delivery.id.to_string())
        .header("paird-signature", signature)
        .body(delivery.payload.clone())
        .send()
        .await
        .map_err(|error| without_url(&error))?;
    Ok(response.status().as_u16())
}

/// A reqwest error's text without the URL (it may carry a token the receiver expects).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_redirect() {
        "redirected (not followed)"
    } else {
        "request failed"
    };
    kind.to_string()
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    let tls = client::stream::client_config(None)?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(RECEIVER_TIMEOUT)
        .user_agent(concat!("paird-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}
