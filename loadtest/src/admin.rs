//! The few admin API calls the load tester makes.

use anyhow::Context;
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

    /// An organization with licenses, a configuration and a reusable code; returns
    /// (organization id, code).
    pub async fn provision(&self, licenses: u32) -> anyhow::Result<(String, String)> {
        let name = format!("loadtest {}", uuid::Uuid::new_v4());
        let org = self
            .post("/v1/organizations", json!({ "name": name }))
            .await?;
        let org = org["id"].as_str().context("organization id")?.to_string();
        let mut left = licenses;
        while left > 0 {
            let batch = left.min(100_000);
            self.post(
                &format!("/v1/organizations/{org}/licenses"),
                json!({ "count": batch }),
            )
            .await?;
            left -= batch;
        }
        self.post(
            &format!("/v1/organizations/{org}/configurations"),
            json!({ "name": "loadtest", "body": "[GLOBAL]\nsynctime_high_threshold = 600\n" }),
        )
        .await?;
        let code = self
            .post(
                &format!("/v1/organizations/{org}/codes"),
                json!({ "label": "loadtest" }),
            )
            .await?;
        let code = code["code"].as_str().context("code")?.to_string();
        Ok((org, code))
    }
}
