//! The Codes page: create a reusable code, read its QR off the page with a real QR decoder,
//! pair a device with what it says, and revoke the code.

use base64::Engine as _;
use protocol::RefusalReason;

use crate::fixture::{Fixture, bounded};
use crate::support::{pair_new, pair_ok, refusal};
use crate::webdriver::Browser;

/// Decodes the PNG QR code of an `<img src="data:image/png;base64,...">` with zbarimg.
pub fn decode_qr(src: &str) -> String {
    let encoded = src
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URL");
    let png = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    decode_qr_png(&png)
}

/// Decodes the one QR code in a PNG image (a QR's own image, or a screenshot of the window)
/// with zbarimg.
pub fn decode_qr_png(png: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("qr.png");
    std::fs::write(&path, png).expect("the QR image written");
    let output = std::process::Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&path)
        .output()
        .expect("zbarimg runs (scripts/browser-deps installs it)");
    assert!(
        output.status.success(),
        "zbarimg found no QR code: {output:?}"
    );
    String::from_utf8(output.stdout)
        .expect("text")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_code_shows_a_qr_that_pairs_a_device_and_can_be_revoked() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_text("#org-name", &fixture.a.name).await;
        browser
            .follow_link("#nav a[href$=\"/codes\"]", "/codes")
            .await;
        browser
            .wait_text("#code-warning", "Anyone who has a reusable code")
            .await;

        let label = browser.wait_visible("#code-label").await;
        browser.send_keys(&label, "browser rollout").await;
        browser.click_css("#create-code").await;

        // The QR on the page, read by a real decoder, is the payload the page prints.
        let qr = browser.wait_visible("#qr").await;
        let src = browser.attribute(&qr, "src").await.expect("the QR's src");
        let payload = decode_qr(&src);
        let shown = browser.wait_visible("#payload").await;
        assert_eq!(payload, browser.text(&shown).await);
        assert!(payload.starts_with("PAIRD://"), "{payload}");

        // With the Devices page open, a device pairs with it and takes organization A's free
        // license: its row changes without a reload.
        browser
            .follow_link("#nav a[href$=\"/devices\"]", "/devices")
            .await;
        browser
            .wait_visible("#live-state[data-state=\"live\"]")
            .await;
        browser.execute("window.notReloaded = true;", vec![]).await;
        let code = payload.rsplit('/').next().expect("the code").to_string();
        let (_, _connection, paired) = pair_ok(&fixture.test.device_url(), &code).await;
        assert_eq!(paired.organization_id.to_string(), fixture.a.id);
        let row = format!(
            "#licenses tr[data-license-id=\"{}\"][data-device-id=\"{}\"]",
            paired.license_id, paired.device_id
        );
        browser.wait_text(&row, "device").await;
        browser.wait_text("dd[data-count=\"free\"]", "0").await;
        assert_eq!(
            browser.execute("return window.notReloaded;", vec![]).await,
            serde_json::json!(true)
        );

        // After a reload of the Codes page the newest code is listed first, with its use.
        browser
            .follow_link("#nav a[href$=\"/codes\"]", "/codes")
            .await;
        browser.execute("location.reload();", vec![]).await;
        let row = browser.wait_visible("#codes tbody tr:first-child").await;
        browser
            .wait_text("#codes tbody tr:first-child", "browser rollout")
            .await;
        assert_eq!(
            browser.attribute(&row, "data-status").await.as_deref(),
            Some("active")
        );
        let uses = browser
            .wait_visible("#codes tbody tr:first-child td[data-label=\"Uses\"]")
            .await;
        assert_eq!(browser.text(&uses).await, "1");

        // Show it again: the same QR payload.
        browser
            .click_css("#codes tbody tr:first-child button[data-action=\"show\"]")
            .await;
        browser.wait_text("#payload", &payload).await;

        // Revoke it: the row says so, and the code no longer pairs anyone.
        browser
            .execute("window.confirm = () => true;", vec![])
            .await;
        browser
            .click_css("#codes tbody tr:first-child button[data-action=\"revoke\"]")
            .await;
        browser
            .wait_visible("#codes tbody tr:first-child[data-status=\"revoked\"]")
            .await;
        let (_, _, result) = pair_new(&fixture.test.device_url(), &code).await;
        assert_eq!(refusal(&result), Some(RefusalReason::CodeRevoked));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_created_with_a_configuration_gives_it_to_the_devices_it_pairs() {
    bounded(async {
        let fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let routes = fixture
            .test
            .admin
            .create_config(&org, "Routes", "[GLOBAL]\n")
            .await;
        // Meters is older, so it is not the one for new devices; the code will carry it.
        let meters = fixture
            .test
            .admin
            .get(&format!("/v1/organizations/{org}/configurations"))
            .await["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["name"] == "Meters")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_text("#org-name", &fixture.a.name).await;
        browser
            .follow_link("#nav a[href$=\"/codes\"]", "/codes")
            .await;
        let label = browser.wait_visible("#code-label").await;
        browser.send_keys(&label, "meter readers").await;
        browser
            .click_css(&format!("#code-configuration option[value=\"{meters}\"]"))
            .await;
        browser.click_css("#create-code").await;
        let shown = browser.wait_visible("#payload").await;
        let payload = browser.text(&shown).await;
        let code = payload.rsplit('/').next().expect("the code").to_string();

        // The code's row says what its devices get; a device paired with it gets Meters, not
        // the newest configuration (Routes).
        let cell = browser
            .wait_text("#codes tr [data-field=\"configuration\"]", "“Meters”")
            .await;
        assert_eq!(cell, "“Meters”");
        let (_, mut connection, _) = pair_ok(&fixture.test.device_url(), &code).await;
        let received = crate::support::next_configuration(&mut connection).await;
        assert_eq!(received.configuration_id.to_string(), meters);
        assert_ne!(received.configuration_id.to_string(), routes);
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
