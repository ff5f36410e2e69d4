//! The few admin API calls the load tester makes.

use anyhow::Context;
use client::admin::AdminClient;
use client::live_feed::{FeedEvent, LiveFeed};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The admin API as the load tester uses it: a call that fails or is refused is an error.
#[derive(Debug, Clone)]
pub struct Admin {
    api: AdminClient,
}

impl Admin {
    pub fn new(base: &str, token: &str) -> Admin {
        Admin {
            api: AdminClient::new(base, token),
        }
    }

    /// The admin API's address, `http://host:port`.
    pub fn base(&self) -> &str {
        self.api.base()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let answer = self
            .api
            .call(method.clone(), path, body.as_ref(), headers)
            .await
            .with_context(|| format!("{method} {path}"))?;
        anyhow::ensure!(
            answer.status.is_success(),
            "{method} {path} answered {}: {}",
            answer.status,
            answer.text
        );
        Ok(answer.json())
    }

    /// `GET path` as text (a CSV export): the whole body.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let answer = self
            .api
            .call(reqwest::Method::GET, path, None, &[])
            .await
            .with_context(|| format!("GET {path}"))?;
        anyhow::ensure!(
            answer.status.is_success(),
            "GET {path} answered {}: {}",
            answer.status,
            answer.text
        );
        Ok(answer.text)
    }

    /// Opens `org`'s live feed (as a portal does) and waits for its `ready` event.
    pub async fn open_feed(&self, org: &str) -> anyhow::Result<Feed> {
        let feed = self
            .api
            .open_live_feed(org)
            .await
            .with_context(|| format!("opening the live feed of {org}"))?;
        Ok(Feed { feed })
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `POST path` with an `Idempotency-Key`: sent again with the same key, the server answers
    /// as it did (or does it, if it never did).
    pub async fn post_with_key(&self, path: &str, body: Value, key: &str) -> anyhow::Result<Value> {
        let headers = [("Idempotency-Key", key)];
        self.call_with(reqwest::Method::POST, path, Some(body), &headers)
            .await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Every item of a paginated list.
    pub async fn all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(cursor) => format!("{path}?limit=1000&cursor={cursor}"),
                None => format!("{path}?limit=1000"),
            };
            let page = self.get(&page_path).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(items),
            }
        }
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// An organization with `licenses` licenses and one configuration (revision 1).
    pub async fn provision(&self, licenses: u32) -> anyhow::Result<Provisioned> {
        let name = format!("loadtest {}", uuid::Uuid::new_v4());
        let org = self
            .post("/v1/organizations", json!({ "name": name }))
            .await?;
        let org = org["id"].as_str().context("organization id")?.to_string();
        let mut license_ids = Vec::with_capacity(licenses as usize);
        let mut left = licenses;
        while left > 0 {
            let batch = left.min(100_000);
            let added = self
                .post(
                    &format!("/v1/organizations/{org}/licenses"),
                    json!({ "count": batch }),
                )
                .await?;
            for id in added["license_ids"].as_array().context("license ids")? {
                license_ids.push(id.as_str().context("license id")?.to_string());
            }
            left -= batch;
        }
        let configuration = self
            .post(
                &format!("/v1/organizations/{org}/configurations"),
                json!({ "name": "loadtest", "body": configuration_body(1) }),
            )
            .await?;
        let configuration = configuration["id"]
            .as_str()
            .context("configuration id")?
            .to_string();
        Ok(Provisioned {
            org,
            license_ids,
            configuration,
        })
    }

    /// A new reusable code of the organization.
    pub async fn reusable_code(&self, org: &str) -> anyhow::Result<String> {
        let code = self
            .post(
                &format!("/v1/organizations/{org}/codes"),
                json!({ "label": "loadtest" }),
            )
            .await?;
        Ok(code["code"].as_str().context("code")?.to_string())
    }

    /// A single-use code for each license (valid for `validity_seconds`, at most 600), created
    /// `concurrency` at a time; in the licenses' order.
    pub async fn single_use_codes(
        &self,
        org: &str,
        licenses: &[String],
        validity_seconds: u64,
    ) -> anyhow::Result<Vec<String>> {
        let calls = licenses.iter().map(|license| async move {
            let code = self
                .post(
                    &format!("/v1/organizations/{org}/licenses/{license}/single-use-code"),
                    json!({ "validity_seconds": validity_seconds }),
                )
                .await?;
            anyhow::Ok(code["code"].as_str().context("code")?.to_string())
        });
        futures_util::stream::iter(calls)
            .buffered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// What [`Admin::provision`] created.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub org: String,
    pub license_ids: Vec<String>,
    pub configuration: String,
}

/// The load tester's configuration body at a given edit: small, and different each time.
pub fn configuration_body(edit: u64) -> String {
    format!("[GLOBAL]\nsynctime_high_threshold = 600\n# loadtest edit {edit}\n")
}

/// An organization's live feed, open.
#[derive(Debug)]
pub struct Feed {
    feed: LiveFeed,
}

/// What a watcher of the live feed saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedTally {
    pub events: u64,
    /// Device ids named by `devices` events (a device counts once per event naming it).
    pub device_ids: u64,
}

impl Feed {
    /// Reads events until `stop` fires, then for a short grace (events follow their commits by
    /// a moment), and counts them.
    pub async fn tally(mut self, stop: tokio::sync::oneshot::Receiver<()>) -> FeedTally {
        let mut tally = FeedTally::default();
        let count = |event: Option<FeedEvent>, tally: &mut FeedTally| match event {
            Some(event) => {
                tally.events += 1;
                if event.name == "devices" {
                    tally.device_ids +=
                        event.data["device_ids"].as_array().map_or(0, Vec::len) as u64;
                }
                true
            }
            None => false,
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                event = self.feed.next_event() => {
                    if !count(event.ok().flatten(), &mut tally) {
                        return tally;
                    }
                }
                _ = &mut stop => break,
            }
        }
        let grace = tokio::time::sleep(std::time::Duration::from_millis(500));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                event = self.feed.next_event() => {
                    if !count(event.ok().flatten(), &mut tally) {
                        return tally;
                    }
                }
                () = &mut grace => return tally,
            }
        }
    }
}
