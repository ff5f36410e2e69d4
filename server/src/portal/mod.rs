//! The Customer Portal: static pages served on the admin listener under `/portal/`.
//!
//! The pages are plain HTML, CSS and JavaScript modules, embedded in the binary at build time (no
//! build step, nothing fetched from elsewhere). They need no authentication to load: every piece
//! of data comes from the admin API, on the same origin, with the bearer token the user typed in.
//! Serving them from the admin listener keeps the portal and the API on one origin, so no CORS.
//!
//! Layout: `index.html` (the shell), `style.css`, and the JavaScript modules listed in
//! [`SCRIPTS`].

use axum::Router;
use axum::extract::Path;
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
/// The JavaScript modules, by file name: `app.js` (routing, sign-in), `api.js` (the admin API
/// client), `ui.js` (shared view pieces and dialogs), `live.js` (the live feed) and one module per
/// section (`keys.js` is the operator's), and parts of a page kept apart (`replace.js` on a
/// device's page, `inactive.js` and `waiting.js` on the Devices page).
const SCRIPTS: &[(&str, &[u8])] = &[
    ("app.js", include_bytes!("app.js")),
    ("api.js", include_bytes!("api.js")),
    ("ui.js", include_bytes!("ui.js")),
    ("live.js", include_bytes!("live.js")),
    ("devices.js", include_bytes!("devices.js")),
    ("codes.js", include_bytes!("codes.js")),
    ("configurations.js", include_bytes!("configurations.js")),
    ("device.js", include_bytes!("device.js")),
    ("audit.js", include_bytes!("audit.js")),
    ("keys.js", include_bytes!("keys.js")),
    ("replace.js", include_bytes!("replace.js")),
    ("inactive.js", include_bytes!("inactive.js")),
    ("waiting.js", include_bytes!("waiting.js")),
    ("webhooks.js", include_bytes!("webhooks.js")),
];

/// The portal's routes, without state: merged into the admin router.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/portal/") }))
        .route("/portal", get(|| async { Redirect::to("/portal/") }))
        .route("/portal/", get(|| async { serve(INDEX_HTML) }))
        .route("/portal/style.css", get(|| async { serve(STYLE_CSS) }))
        .route("/portal/{file}", get(script))
}

/// A JavaScript module of the portal; any other name is the API's JSON 404.
async fn script(Path(file): Path<String>) -> Response {
    match SCRIPTS.iter().find(|(name, _)| *name == file) {
        Some((_, body)) => serve(Asset {
            content_type: "text/javascript; charset=utf-8",
            body,
        }),
        None => crate::admin::not_found().await,
    }
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
