//! The portal's files over plain HTTP: where they are, their types, caching and CSP.

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_files_have_their_content_types_no_cache_and_a_strict_csp() {
    let test = TestServer::start().await;
    let base = test.server.admin_url();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut bodies = std::collections::HashMap::new();
    for (path, content_type) in [
        ("/portal/", "text/html; charset=utf-8"),
        ("/portal/style.css", "text/css; charset=utf-8"),
        ("/portal/app.js", "text/javascript; charset=utf-8"),
        ("/portal/api.js", "text/javascript; charset=utf-8"),
        ("/portal/ui.js", "text/javascript; charset=utf-8"),
        ("/portal/live.js", "text/javascript; charset=utf-8"),
        ("/portal/devices.js", "text/javascript; charset=utf-8"),
        ("/portal/codes.js", "text/javascript; charset=utf-8"),
        (
            "/portal/configurations.js",
            "text/javascript; charset=utf-8",
        ),
        ("/portal/device.js", "text/javascript; charset=utf-8"),
        ("/portal/audit.js", "text/javascript; charset=utf-8"),
        ("/portal/keys.js", "text/javascript; charset=utf-8"),
        ("/portal/replace.js", "text/javascript; charset=utf-8"),
        ("/portal/inactive.js", "text/javascript; charset=utf-8"),
        ("/portal/waiting.js", "text/javascript; charset=utf-8"),
        ("/portal/webhooks.js", "text/javascript; charset=utf-8"),
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        bodies.insert(path, body);
    }
    // Every rule of the stylesheet is closed: an unclosed block (a bad merge) silently swallows
    // the rules after it into a media query.
    let css = &bodies["/portal/style.css"];
    let mut depth = 0i32;
    for (number, line) in css.lines().enumerate() {
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        assert!(
            depth >= 0,
            "style.css closes a block too many on line {}",
            number + 1
        );
    }
    assert_eq!(depth, 0, "style.css leaves a block open");

    // The pages load nothing from elsewhere.
    let index = &bodies["/portal/"];
    assert!(!index.contains("http://") && !index.contains("https://"));

    for path in ["/", "/portal"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(response.status().is_redirection(), "{path}");
        assert_eq!(response.headers()["location"], "/portal/", "{path}");
    }
    // The API is unchanged beside the portal: an unknown path is still the API's JSON 404.
    let (status, body) = test
        .admin
        .call(reqwest::Method::GET, "/portal/missing.js", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    test.stop().await;
}
