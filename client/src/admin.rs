//! The admin HTTP API, for the programs that drive a paird server from outside (the black-box
//! tests and the load tester).
//!
//! Only what they share lives here: [`AdminClient`], which carries the server's admin address
//! and the bearer token and makes one authenticated call, and the organization's live feed
//! ([`AdminClient::open_live_feed`]). Which calls to make, and what a failed one means (a test
//! looks at every status, the load tester stops with an error), stays with each program.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::live_feed::{LiveFeed, LiveFeedError};

/// A client of one server's admin API, authenticated with one token (the operator token or an
/// organization key). Cloning it shares the HTTP connections. Its `Debug` leaves the token out.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    /// `http://host:port`, without a trailing slash.
    base: String,
    token: String,
}

/// One answer of the admin API.
#[derive(Debug, Clone)]
pub struct AdminAnswer {
    pub status: StatusCode,
    /// The body as sent.
    pub text: String,
}

impl AdminAnswer {
    /// The body as JSON; `null` when it is empty or not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client of the admin API at `base` (`http://host:port`), with `token`.
    pub fn new(base: &str, token: &str) -> AdminClient {
        AdminClient {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    /// A client of an admin API served over TLS (`https://host:port`), trusting what `tls`
    /// trusts (see [`crate::stream::client_config`]).
    pub fn with_tls(
        base: &str,
        token: &str,
        tls: &rustls::ClientConfig,
    ) -> Result<AdminClient, reqwest::Error> {
        Ok(AdminClient {
            http: reqwest::Client::builder()
                .use_preconfigured_tls(tls.clone())
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// The same server with another token (sharing the HTTP connections).
    pub fn with_token(&self, token: &str) -> AdminClient {
        AdminClient {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.to_string(),
        }
    }

    /// The admin API's address, `http://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method path` with the token, a JSON `body` if given, and `headers`; any status is an
    /// answer, only a failed exchange is an error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<AdminAnswer, reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok(AdminAnswer { status, text })
    }

    /// Opens `org`'s live feed and waits for its `ready` event: whatever is committed after this
    /// returns is told on the feed.
    pub async fn open_live_feed(&self, org: &str) -> Result<LiveFeed, LiveFeedError> {
        let response = self
            .http
            .get(format!("{}/v1/organizations/{org}/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        LiveFeed::from_response(response).await
    }
}
