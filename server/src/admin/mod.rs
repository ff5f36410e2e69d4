//! The admin HTTP API (JSON over HTTP/1.1, bearer tokens).
//!
//! Every handler authenticates, parses, calls one engine method and renders its result; no
//! domain rule lives here. Errors are JSON with a stable code:
//! `{"error": {"code": "not_found", "message": "device not found"}}`; internal details go to the
//! log, never to the client.

mod events;
mod export;
pub(crate) mod listener;
mod metrics;
mod openapi;
pub(crate) mod request_id;
mod route_table;
mod routes;
mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::{Engine, EngineError, IdempotencyKey, ManualClock, Principal};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::device::DeviceEndpoint;

pub(crate) use routes::router;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use routes::{BODY_TYPES, QUERY_TYPES, extractor_router};

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    pub public: PublicAddress,
    pub endpoint: Arc<DeviceEndpoint>,
    pub manual_clock: Option<Arc<ManualClock>>,
    pub started: Instant,
    /// Becomes true when the server stops: long-lived responses (the live feed) end then, so
    /// that the graceful shutdown does not wait for them.
    pub stopped: tokio::sync::watch::Receiver<bool>,
    /// True from the start of a graceful shutdown: `/readyz` answers 503 then.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Who may read `/metrics` besides the operator.
    pub metrics: Arc<crate::metrics::MetricsSettings>,
    /// The admin listener's connection counters, for `/metrics`.
    pub admin_listener: Arc<listener::AdminListenerStats>,
    /// The runtime that drives the device connections and the engine (the admin API runs on
    /// a runtime of its own): `/metrics` counts its tasks.
    pub main_runtime: tokio::runtime::Handle,
}

/// Where devices reach the device endpoint, for QR payloads.
#[derive(Debug, Clone)]
pub(crate) struct PublicAddress {
    pub tls: bool,
    pub host: String,
    pub port: Option<u16>,
}

impl PublicAddress {
    pub fn payload(&self, code: &str) -> Result<String, ApiError> {
        let code =
            protocol::PairingCode::parse(code).map_err(|_| ApiError(EngineError::Internal))?;
        Ok(protocol::PairingPayload {
            tls: self.tls,
            host: self.host.clone(),
            port: self.port,
            code,
        }
        .to_uri())
    }
}

/// An engine error rendered as an HTTP response.
#[derive(Debug)]
pub(crate) struct ApiError(pub EngineError);

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        ApiError(error)
    }
}

impl ApiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError(EngineError::Invalid {
            field,
            message: message.into(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            EngineError::Unauthorized => StatusCode::UNAUTHORIZED,
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Invalid { .. } | EngineError::InvalidConfiguration { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            EngineError::Conflict { .. } | EngineError::QuotaExceeded { .. } => {
                StatusCode::CONFLICT
            }
            EngineError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = json!({ "code": self.0.code(), "message": self.0.to_string() });
        match &self.0 {
            EngineError::Invalid { field, .. } => body["field"] = json!(field),
            EngineError::QuotaExceeded { quota, limit } => {
                body["quota"] = json!(quota);
                body["limit"] = json!(limit);
            }
            EngineError::InvalidConfiguration { problems } => {
                body["field"] = json!("body");
                body["problems"] = problems_json(problems);
                body["problems_truncated"] = json!(problems.len() > MAX_LISTED_PROBLEMS);
            }
            _ => {}
        }
        let mut response = (status, axum::Json(json!({ "error": body }))).into_response();
        match &self.0 {
            EngineError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            EngineError::Unavailable { retry_after_ms } => {
                if let Ok(value) =
                    HeaderValue::from_str(&retry_after_ms.div_ceil(1000).max(1).to_string())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// A request error that is not the engine's (bad JSON, bad path), in the same JSON shape.
fn request_error(status: StatusCode, code: &'static str, message: String) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// A request error about what a body or a query string held, in our words: the decoder's
/// message without its prefix and without the server's own type names, and the field it
/// concerns when it names one (`field`, as the engine's errors have).
fn decoding_error(status: StatusCode, text: &str) -> Response {
    let (message, field) = plain_decoding_message(text);
    let mut error = json!({ "code": "invalid_request", "message": message });
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// What [`decoding_error`] says of a rejection's text: its message, and the field it concerns.
fn plain_decoding_message(text: &str) -> (String, Option<String>) {
    let mut rest = text;
    for prefix in [
        "Failed to deserialize the JSON body into the target type: ",
        "Failed to deserialize query string: ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    // `path: message`, when the error is below the top level (`items[0].name: …`).
    let is_path = |path: &str| {
        !path.is_empty()
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
    };
    // An empty path (a query string's `&=`: a parameter with no name) is the top level.
    let (path, message) = match rest.split_once(": ") {
        Some((path, message)) if is_path(path) => (Some(path), message),
        Some(("", message)) => (None, message),
        _ => (None, rest),
    };
    // A field the decoder names (unknown, missing or given twice), below the path; a name that
    // is empty names no field.
    let named = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|marker| message.split_once(marker)?.1.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| !name.is_empty());
    let field = match (path, named) {
        // The decoder's path may already end with the field it names.
        (Some(path), Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            Some(path.to_string())
        }
        (Some(path), Some(name)) => Some(format!("{path}.{name}")),
        (Some(path), None) => Some(path.to_string()),
        (None, Some(name)) => Some(name.to_string()),
        (None, None) => None,
    };
    // The decoder speaks of the server's types: say what the request should hold instead.
    let mut plain: Vec<&str> = Vec::new();
    let mut words = message.split(' ');
    while let Some(word) = words.next() {
        let after_expected = plain.last() == Some(&"expected");
        let instead = match word {
            "struct" if after_expected => {
                words.next();
                "a JSON object"
            }
            "enum" if after_expected => {
                words.next();
                "one of the documented values"
            }
            "map" if after_expected => "a JSON object",
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" if after_expected => {
                "a non-negative integer"
            }
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" if after_expected => "an integer",
            "f32" | "f64" if after_expected => "a number",
            _ => word,
        };
        plain.push(instead);
    }
    (plain.join(" "), field)
}

/// The authenticated caller.
pub(crate) struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(ApiError(EngineError::Unauthorized))?;
        Ok(Auth(state.engine.authenticate(token).await?))
    }
}

/// The token of an `Authorization: Bearer …` header, when there is one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
}

/// A JSON body, with JSON errors in our shape.
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => request_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "invalid_request",
                    "send JSON with Content-Type: application/json".into(),
                ),
                JsonRejection::JsonDataError(error) => {
                    decoding_error(StatusCode::UNPROCESSABLE_ENTITY, &error.body_text())
                }
                JsonRejection::JsonSyntaxError(error) => {
                    request_error(StatusCode::BAD_REQUEST, "invalid_json", error.body_text())
                }
                other => request_error(other.status(), "invalid_request", other.body_text()),
            }),
        }
    }
}

/// Path parameters; a malformed id is simply not found.
pub(crate) struct Ids<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Ids<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Ids(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(request_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource (malformed id)".into(),
            )),
            Err(other) => Err(request_error(
                other.status(),
                "invalid_request",
                other.body_text(),
            )),
        }
    }
}

/// Query parameters, with errors in our shape.
pub(crate) struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(error)) => {
                Err(decoding_error(StatusCode::BAD_REQUEST, &error.body_text()))
            }
            Err(other) => Err(request_error(
                other.status(),
                "invalid_request",
                other.body_text(),
            )),
        }
    }
}

/// The optional `Idempotency-Key` header.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    match headers.get("Idempotency-Key") {
        None => Ok(None),
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "printable ASCII"))?;
            Ok(Some(IdempotencyKey::parse(text)?))
        }
    }
}

/// `201 Created` with a JSON body.
pub(crate) fn created<T: Serialize>(value: T) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

pub(crate) async fn not_found() -> Response {
    request_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/admin-api.md".into(),
    )
}

/// How many problems of a configuration body an answer lists at most.
pub(crate) const MAX_LISTED_PROBLEMS: usize = 200;

/// A configuration body's problems as the admin API shows them: `[{"line", "severity",
/// "message"}]`, by line. Line 0 is the whole body (no section at all).
/// At most [`MAX_LISTED_PROBLEMS`] of them: a 256 KiB body of broken lines has tens of
/// thousands, and an answer listing every one would be megabytes (the counts are whole).
pub(crate) fn problems_json(problems: &[configformat::Problem]) -> serde_json::Value {
    problems
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(|problem| {
            json!({
                "line": problem.line,
                "severity": problem.severity.to_string(),
                "message": problem.message,
            })
        })
        .collect()
}
