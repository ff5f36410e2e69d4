//! The few admin API calls the load tester makes.

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub fn new(base: &str, token: &str) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "{method} {path} answered {status}: {text}"
        );
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Opens `org`'s live feed (as a portal does) and waits for its `ready` event.
    pub async fn open_feed(&self, org: &str) -> anyhow::Result<Feed> {
        let path = format!("/v1/organizations/{org}/events");
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {path} answered {}",
            response.status()
        );
        let mut feed = Feed {
            response,
            buffer: String::new(),
        };
        let ready = feed.next_event().await?;
        anyhow::ensure!(
            ready.as_ref().is_some_and(|(name, _)| name == "ready"),
            "the live feed did not open with ready: {ready:?}"
        );
        Ok(feed)
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
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
    response: reqwest::Response,
    buffer: String,
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
        let count = |event: Option<(String, Value)>, tally: &mut FeedTally| match event {
            Some((name, data)) => {
                tally.events += 1;
                if name == "devices" {
                    tally.device_ids += data["device_ids"].as_array().map_or(0, Vec::len) as u64;
                }
                true
            }
            None => false,
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                event = self.next_event() => {
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
                event = self.next_event() => {
                    if !count(event.ok().flatten(), &mut tally) {
                        return tally;
                    }
                }
                () = &mut grace => return tally,
            }
        }
    }

    /// The next event (name, JSON data), skipping keep-alive comments; `None` at the end.
    async fn next_event(&mut self) -> anyhow::Result<Option<(String, Value)>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Ok(Some((name, serde_json::from_str(&data)?)));
            }
            let Some(chunk) = self.response.chunk().await? else {
                return Ok(None);
            };
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
