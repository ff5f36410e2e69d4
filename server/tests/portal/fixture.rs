//! A server with two organizations and their devices, and a browser on the portal.

use std::future::Future;
use std::time::Duration;

use client::{Connection, PairResult};
use protocol::{AckOutcome, Encoding};
use serde_json::json;

use crate::support::{TestServer, acknowledge, connect, device_info, identity, next_configuration};
use crate::webdriver::{Browser, Element};

/// Bound on a whole browser test: starting Chromium on a busy two-core machine takes seconds,
/// every wait inside is bounded by less.
const TEST_LIMIT: Duration = Duration::from_secs(180);

/// Runs a test body with a time limit; a test past it fails (and its browser is ended as the
/// body is dropped).
pub async fn bounded(test: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_LIMIT, test).await.is_err() {
        panic!("the test took longer than {TEST_LIMIT:?}");
    }
}

/// One organization as the tests set it up.
pub struct Org {
    pub id: String,
    pub name: String,
    pub key: String,
    pub device_name: String,
    pub device_id: String,
    pub license_id: String,
    /// Kept open: the device stays online while the test runs (and tests may read from it).
    pub connection: Connection,
}

/// A server with two organizations:
/// - A, "Acme Logistics": 2 licenses, a configuration, one device "Van 7" (TC52) that applied
///   it; one license stays free.
/// - B, "Globex Utilities": 1 license, one device "Globex Scanner 9" with no configuration;
///   no license is free.
pub struct Fixture {
    pub test: TestServer,
    pub a: Org,
    pub b: Org,
}

impl Fixture {
    pub async fn start() -> Fixture {
        let test = TestServer::start().await;
        let a = org(&test, "Acme Logistics", 2, Some("Meters"), "Van 7").await;
        let b = org(&test, "Globex Utilities", 1, None, "Globex Scanner 9").await;
        Fixture { test, a, b }
    }

    pub fn portal_url(&self) -> String {
        format!("{}/portal/", self.test.server.admin_url())
    }

    /// Opens one section of an organization by its address, as a user typing it would.
    pub async fn open_section(&self, browser: &Browser, org: &str, section: &str) {
        let url = format!("{}#/organizations/{org}/{section}", self.portal_url());
        browser.navigate(&url).await;
    }

    /// Opens the portal and signs in with `token`; does not wait for what comes next.
    pub async fn sign_in(&self, browser: &Browser, token: &str) {
        browser.navigate(&self.portal_url()).await;
        let field = browser.wait_visible("#token").await;
        browser.send_keys(&field, token).await;
        browser.click_css("#sign-in").await;
    }
}

async fn org(
    test: &TestServer,
    name: &str,
    licenses: u32,
    configuration: Option<&str>,
    device_name: &str,
) -> Org {
    let admin = &test.admin;
    let id = admin.create_org(name).await;
    let key = admin.create_key(&id, "portal test").await["key"]
        .as_str()
        .expect("a key")
        .to_string();
    admin.add_licenses(&id, licenses).await;
    if let Some(configuration) = configuration {
        admin.create_config(&id, configuration, "[GLOBAL]\n").await;
    }
    let code = admin.reusable_code(&id, json!({})).await["code"]
        .as_str()
        .expect("a code")
        .to_string();
    let mut connection = connect(&test.device_url(), Encoding::Postcard).await;
    let paired = match connection
        .pair(&code, &identity(), &device_info(device_name))
        .await
        .expect("pairing answered")
    {
        PairResult::Paired(paired) => paired,
        PairResult::Refused(refused) => panic!("pairing refused: {refused:?}"),
    };
    if configuration.is_some() {
        let received = next_configuration(&mut connection).await;
        assert!(acknowledge(&mut connection, &received, AckOutcome::Applied).await);
    }
    Org {
        id,
        name: name.to_string(),
        key,
        device_name: device_name.to_string(),
        device_id: paired.device_id.to_string(),
        license_id: paired.license_id.to_string(),
        connection,
    }
}

/// The table row of a license, once the devices page shows it.
pub async fn license_row(browser: &Browser, license_id: &str) -> Element {
    browser
        .wait_visible(&format!("#licenses tr[data-license-id=\"{license_id}\"]"))
        .await
}

/// Fails when the page is wider than the (phone-sized) window: it would scroll sideways.
pub async fn assert_no_sideways_scroll(browser: &Browser, section: &str) {
    assert_no_sideways_scroll_at(browser, 400, section).await;
}

/// Fails when the window is wider than `window_width` (the test did not get the size it set),
/// or when the page is wider than the window: it would scroll sideways.
pub async fn assert_no_sideways_scroll_at(browser: &Browser, window_width: u64, section: &str) {
    let widths = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    let scroll_width = widths[0].as_u64().unwrap();
    let inner_width = widths[1].as_u64().unwrap();
    assert!(
        inner_width <= window_width,
        "the window is not {window_width} px wide: {widths}"
    );
    assert!(
        scroll_width <= inner_width,
        "{section} scrolls sideways: scrollWidth {scroll_width} > innerWidth {inner_width}"
    );
}
