//! The Customer Portal: static pages served on the admin listener under `/portal/`.
//!
//! The pages are plain HTML, CSS and JavaScript modules, embedded in the binary at build time (no
//! build step, nothing fetched from elsewhere). They need no authentication to load: every piece
//! of data comes from the admin API, on the same origin, with the bearer token the user typed in.
//! Serving them from the admin listener keeps the portal and the API on one origin, so no CORS.
//!
//! Layout: `index.html` (the shell), `style.css`, `app.js` (views and navigation), `api.js` (the
//! admin API client).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Only this origin's scripts, styles and connections; no inline code, no framing. Images may be
/// `data:` and `blob:` URLs (QR codes, later).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
struct Asset {
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX_HTML: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("index.html"),
};
const STYLE_CSS: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_bytes!("style.css"),
};
const APP_JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("app.js"),
};
const API_JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("api.js"),
};

/// The portal's routes, without state: merged into the admin router.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/portal/") }))
        .route("/portal", get(|| async { Redirect::to("/portal/") }))
        .route("/portal/", get(|| async { serve(INDEX_HTML) }))
        .route("/portal/style.css", get(|| async { serve(STYLE_CSS) }))
        .route("/portal/app.js", get(|| async { serve(APP_JS) }))
        .route("/portal/api.js", get(|| async { serve(API_JS) }))
}

/// An asset with its content type. `no-cache` makes the browser revalidate on every load, so a
/// new paird version's pages are never mixed with an old version's cached scripts.
fn serve(asset: Asset) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        asset.body,
    )
        .into_response()
}
