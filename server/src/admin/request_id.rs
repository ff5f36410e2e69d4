//! A request id on every admin request: taken from `X-Request-Id` when the caller (or a proxy)
//! sent a usable one, made here otherwise; echoed in the answer's `X-Request-Id`, and carried
//! by every log line written while the request is served (a tracing span), with one line per
//! request saying how it ended.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub(crate) const HEADER: &str = "x-request-id";

/// Longest request id accepted from a caller; a longer or odd one is replaced.
const MAX_LENGTH: usize = 128;

/// The caller's id when it is 1 to 128 visible ASCII characters, else a new one.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_LENGTH && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

/// The middleware.
pub(crate) async fn layer(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let method = request.method().clone();
    // The path only: a query string is the caller's business (and may name things).
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("admin_request", request_id = %id, %method, %path);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "admin request"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: Option<&str>) -> Request {
        let mut builder = axum::http::Request::builder().uri("/v1/whoami");
        if let Some(id) = id {
            builder = builder.header(HEADER, id);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn a_usable_id_is_kept_and_anything_else_replaced() {
        assert_eq!(request_id(&with(Some("req-42/abc"))), "req-42/abc");
        for odd in [
            None,
            Some(""),
            Some("has space"),
            Some(&"x".repeat(129)[..]),
        ] {
            let made = request_id(&with(odd));
            assert_eq!(made.len(), 32, "{odd:?} gets a new id: {made}");
            assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
