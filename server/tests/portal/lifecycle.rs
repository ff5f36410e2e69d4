//! A device's lifecycle in the portal: replacing a device with a new installation from its page
//! (the replacement's QR read with a real decoder, a real device pairing with it), and the
//! Devices page's inactive-device release.

use protocol::{EndReason, ServerMessage};
use serde_json::json;

use crate::codes::decode_qr;
use crate::fixture::{Fixture, bounded, license_row};
use crate::support::{WAIT, eventually, pair_ok};
use crate::webdriver::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_replaced_from_its_page_hands_everything_to_the_installation_that_scans_the_code()
{
    bounded(async {
        let mut fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let device = fixture.a.device_id.clone();
        let admin = fixture.test.admin.clone();
        let (status, _) = admin
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/organizations/{org}/devices/{device}"),
                Some(json!({ "name": "Van 7 (north depot)", "notes": "Spare battery" })),
            )
            .await;
        assert_eq!(status, 200);
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_visible("#licenses").await;
        browser
            .navigate(&format!(
                "{}#/organizations/{org}/devices/{device}",
                fixture.portal_url()
            ))
            .await;
        browser
            .wait_text("#device-replace", "No second license is used")
            .await;
        browser.click_css("#replace-device").await;
        let code = browser.wait_visible("#replace-code-text").await;
        let code = browser.text(&code).await;
        browser.wait_text("#replace-status", "Scan it").await;
        let qr = browser.wait_visible("#replace-qr").await;
        let payload = decode_qr(&browser.attribute(&qr, "src").await.expect("a src"));
        assert!(payload.contains(&code), "{payload} carries {code}");

        // A new installation scans it: same license, the old device is told.
        let (_, _new, paired) = pair_ok(&fixture.test.device_url(), &code).await;
        assert_eq!(paired.license_id.to_string(), fixture.a.license_id);
        loop {
            match fixture.a.connection.recv_timeout(WAIT).await {
                Ok(ServerMessage::Ended(ended)) => {
                    assert_eq!(ended.reason, EndReason::Replaced);
                    break;
                }
                Ok(_) => continue,
                other => panic!("expected the replaced notice, got {other:?}"),
            }
        }

        // The list shows the new device on the same license, under the old one's name; the old
        // device's page shows the replacement in its history.
        fixture.open_section(&browser, &org, "devices").await;
        let row = license_row(&browser, &fixture.a.license_id).await;
        let new_id = paired.device_id.to_string();
        assert_eq!(
            browser.attribute(&row, "data-device-id").await.as_deref(),
            Some(new_id.as_str())
        );
        browser
            .wait_text(
                &format!(
                    "#licenses tr[data-license-id=\"{}\"] .device-name",
                    fixture.a.license_id
                ),
                "Van 7 (north depot)",
            )
            .await;
        browser
            .navigate(&format!(
                "{}#/organizations/{org}/devices/{device}",
                fixture.portal_url()
            ))
            .await;
        browser.wait_visible("#device-gone").await;
        browser
            .wait_text("#device-pairing-history", "device.replaced")
            .await;
        browser.quit().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_page_turns_the_inactive_release_on_and_off() {
    bounded(async {
        let fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let admin = &fixture.test.admin;
        // A second device of the organization leaves and stays away for fifty days (by the
        // server's clock); "Van 7" stays connected.
        let code = admin.reusable_code(&org, json!({})).await;
        let (_, away, _) =
            pair_ok(&fixture.test.device_url(), code["code"].as_str().unwrap()).await;
        away.close().await;
        admin.advance(50.0 * 86_400.0).await;

        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_visible("#licenses").await;
        browser.wait_text("#inactive-status", "Off").await;
        // Before anything is saved the page says what a number of days would release.
        browser
            .wait_text(
                "#inactive-preview",
                "No device is offline and unseen for more than 90 days",
            )
            .await;
        browser.click_css("#inactive-enabled").await;
        let days = browser.wait_visible("#inactive-days").await;
        browser.clear(&days).await;
        browser.send_keys(&days, "45").await;
        browser
            .wait_text(
                "#inactive-preview",
                "1 device is offline and unseen for more than 45 days now: saving",
            )
            .await;
        browser.click_css("#inactive-save").await;
        browser
            .wait_text("#inactive-status", "unseen for more than 45 days")
            .await;
        // Saved: the server releases it (the duty, on the next sweep), and only it.
        eventually("the away device's license is released", || async {
            (admin.summary(&org).await["assigned"] == json!(1)).then_some(())
        })
        .await;
        let setting = format!("/v1/organizations/{org}/inactive-release");
        assert_eq!(
            fixture.test.admin.get(&setting).await,
            json!({ "after_days": 45 })
        );

        // After a reload the page shows the setting, and turns it off.
        browser.navigate(&fixture.portal_url()).await;
        fixture.open_section(&browser, &org, "devices").await;
        browser
            .wait_text("#inactive-status", "more than 45 days")
            .await;
        browser.click_css("#inactive-enabled").await;
        browser.click_css("#inactive-save").await;
        browser.wait_text("#inactive-status", "Saved. Off").await;
        assert_eq!(
            fixture.test.admin.get(&setting).await,
            json!({ "after_days": null })
        );
        browser.quit().await;
    })
    .await;
}
