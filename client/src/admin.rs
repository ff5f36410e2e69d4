//! The admin HTTP API, for the programs that drive a paird server from outside (the black-box
//! tests and the load tester).
//!
//! Only what they share lives here: [`AdminClient`], which carries the server's admin address
//! and the bearer token and makes one authenticated call, and the organization's live feed
//! ([`AdminClient::open_live_feed`]). Which calls to make, and what a failed one means (a test
//! looks at every status, the load tester stops with an error), stays with each program.
//!
//! A call honours the server's `Retry-After`: a `429` or `503` answer that carries one is tried
//! again after the time it asks for, when trying again cannot do the work twice (see
//! [`Retries`]).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
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
    retries: Retries,
}

/// When [`AdminClient::call`] tries a request again.
///
/// Only an answer of `429 Too Many Requests` or `503 Service Unavailable` that carries a
/// `Retry-After` header (seconds or an HTTP date) is retried, and only when doing the request
/// twice cannot do its work twice: a `429` (the server refused the request before serving it),
/// or a `503` to a `GET`, `HEAD`, `PUT`, `DELETE` or `OPTIONS`, or to a request that carries an
/// `Idempotency-Key`. An answer asking for a longer wait than `longest_wait` is returned as it is,
/// as is the last answer once `attempts` have been made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// How many times a request is sent at most, the first time included (1: never retried).
    pub attempts: u32,
    /// The longest `Retry-After` waited for.
    pub longest_wait: Duration,
}

impl Retries {
    /// Up to 4 attempts, waiting at most 30 s for each.
    pub const DEFAULT: Retries = Retries {
        attempts: 4,
        longest_wait: Duration::from_secs(30),
    };

    /// Every answer is returned as the server gave it.
    pub const NEVER: Retries = Retries {
        attempts: 1,
        longest_wait: Duration::ZERO,
    };
}

impl Default for Retries {
    fn default() -> Retries {
        Retries::DEFAULT
    }
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
            retries: Retries::DEFAULT,
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
            retries: Retries::DEFAULT,
        })
    }

    /// The same client, retrying as `retries` says ([`Retries::DEFAULT`] unless changed).
    pub fn with_retries(mut self, retries: Retries) -> AdminClient {
        self.retries = retries;
        self
    }

    /// The same server with another token (sharing the HTTP connections).
    pub fn with_token(&self, token: &str) -> AdminClient {
        AdminClient {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.to_string(),
            retries: self.retries,
        }
    }

    /// The admin API's address, `http://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method path` with the token, a JSON `body` if given, and `headers`; any status is an
    /// answer, only a failed exchange is an error. A `429` or `503` with `Retry-After` is tried
    /// again as the client's [`Retries`] say.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<AdminAnswer, reqwest::Error> {
        let repeatable = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ) || headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"));
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await?;
            let status = response.status();
            let wait = match status {
                StatusCode::TOO_MANY_REQUESTS => retry_after(response.headers()),
                StatusCode::SERVICE_UNAVAILABLE if repeatable => retry_after(response.headers()),
                _ => None,
            }
            .filter(|wait| attempt < self.retries.attempts && *wait <= self.retries.longest_wait);
            let text = response.text().await?;
            let Some(wait) = wait else {
                return Ok(AdminAnswer { status, text });
            };
            tracing::debug!(%method, path, %status, ?wait, attempt, "the server asks to retry");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
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

/// The wait a `Retry-After` header asks for: a number of seconds, or an HTTP date (a date in the
/// past is no wait). `None` without a header or with one that is neither.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(SystemTime::now()).unwrap_or_default())
}
