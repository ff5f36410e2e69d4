//! A device's own page (name and notes, license, configuration, its history) and the audit log's
//! filters and links, with a real device that is assigned a configuration and fails to apply it.

use protocol::AckOutcome;
use reqwest::Method;
use serde_json::json;

use crate::fixture::{Fixture, assert_no_sideways_scroll_at, bounded, license_row};
use crate::support::{acknowledge, next_configuration};
use crate::webdriver::Browser;

/// The device's page, reached as a user does: its name on the Devices list.
async fn open_device_from_list(fixture: &Fixture, browser: &Browser) {
    fixture
        .open_section(browser, &fixture.a.id, "devices")
        .await;
    let row = license_row(browser, &fixture.a.license_id).await;
    assert_eq!(
        browser.attribute(&row, "data-device-id").await.as_deref(),
        Some(fixture.a.device_id.as_str())
    );
    browser
        .click_css(&format!(
            "#licenses tr[data-license-id=\"{}\"] a.device-name",
            fixture.a.license_id
        ))
        .await;
    browser
        .wait_text("#device-title", &fixture.a.device_name)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_s_page_edits_its_name_and_notes_and_shows_its_configuration_history() {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let device = fixture.a.device_id.clone();
        // A second configuration assigned to the device, which fails to apply it.
        let beta = fixture
            .test
            .admin
            .create_config(&org, "Beta rollout", "[GLOBAL]\n")
            .await;
        fixture
            .test
            .admin
            .put(
                &format!("/v1/organizations/{org}/devices/{device}/configuration"),
                json!({ "configuration_id": beta }),
            )
            .await;
        let pushed = next_configuration(&mut fixture.a.connection).await;
        let failed = AckOutcome::Failed {
            reason: "unknown key ScanMode on line 3".into(),
        };
        assert!(acknowledge(&mut fixture.a.connection, &pushed, failed).await);

        let browser = Browser::start().await;
        browser.set_window_size(1280, 900).await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_visible("#licenses").await;
        open_device_from_list(&fixture, &browser).await;

        // What it should run and what it last reported, with the device's reason.
        browser.wait_text("#device-assigned", "Beta rollout").await;
        browser.wait_text("#device-applied", "Failed").await;
        browser
            .wait_text("#device-applied", "unknown key ScanMode on line 3")
            .await;
        browser.wait_text("#device-revision-state", "Failed").await;
        browser.wait_text("#device-online", "Online now").await;
        browser
            .wait_text("#device-license", &fixture.a.license_id)
            .await;
        // Its history: the assignment and the failure, its pairing; every entry naming it.
        let history = "#device-configuration-history";
        browser.wait_text(history, "configuration.assigned").await;
        browser
            .wait_text(history, "configuration.apply_failed")
            .await;
        browser
            .wait_text(history, "unknown key ScanMode on line 3")
            .await;
        browser
            .wait_text("#device-pairing-history", "device.paired")
            .await;
        assert!(
            !browser
                .text(&browser.wait_visible("#device-pairing-history").await)
                .await
                .contains("configuration."),
            "the pairing history holds only pairings"
        );
        assert_no_sideways_scroll_at(&browser, 1280, "a device's page").await;

        // An admin names it and keeps notes on it.
        let name = browser.wait_visible("#device-admin-name").await;
        browser.clear(&name).await;
        browser.send_keys(&name, "Van 7 (north depot)").await;
        let notes = browser.wait_visible("#device-notes").await;
        browser
            .send_keys(&notes, "Spare battery in the glovebox")
            .await;
        let save = browser.wait_visible("#device-save").await;
        browser.click(&save).await;
        browser.wait_text("#device-save-status", "Saved.").await;
        browser
            .wait_text("#device-title", "Van 7 (north depot)")
            .await;
        let stored = fixture
            .test
            .admin
            .get(&format!("/v1/organizations/{org}/devices/{device}"))
            .await;
        assert_eq!(stored["admin_name"], json!("Van 7 (north depot)"));
        assert_eq!(stored["notes"], json!("Spare battery in the glovebox"));
        assert_eq!(stored["reported_name"], json!("Van 7"));

        // The list shows the admin's name; the page again after a reload keeps both.
        fixture.open_section(&browser, &org, "devices").await;
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
        browser
            .wait_text("#device-title", "Van 7 (north depot)")
            .await;
        browser.wait_visible("#device-notes").await;
        assert_eq!(
            browser
                .execute(
                    "return document.getElementById('device-notes').value;",
                    vec![]
                )
                .await,
            json!("Spare battery in the glovebox")
        );
        browser.wait_text("#device-audit", "device.edited").await;

        browser.set_window_size(390, 844).await;
        assert_no_sideways_scroll_at(&browser, 390, "a device's page").await;
        browser.quit().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaired_device_s_page_shows_its_history() {
    bounded(async {
        let fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let device = fixture.a.device_id.clone();
        fixture
            .test
            .admin
            .post(
                &format!("/v1/organizations/{org}/devices/{device}/unpair"),
                json!({}),
            )
            .await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_visible("#licenses").await;
        browser
            .navigate(&format!(
                "{}#/organizations/{org}/devices/{device}",
                fixture.portal_url()
            ))
            .await;
        browser.wait_visible("#device-gone").await;
        browser.wait_text("#device-title", "Van 7").await;
        browser
            .wait_text("#device-pairing-history", "device.unpaired")
            .await;
        browser
            .wait_text("#device-pairing-history", "device.paired")
            .await;
        assert!(browser.find("#device-edit").await.is_none());
        browser.quit().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_filters_by_action_and_device_and_links_to_the_device() {
    bounded(async {
        let fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let device = fixture.a.device_id.clone();
        let (status, _) = fixture
            .test
            .admin
            .call(
                Method::PATCH,
                &format!("/v1/organizations/{org}/devices/{device}"),
                Some(json!({ "notes": "checked" })),
            )
            .await;
        assert_eq!(status, 200);
        let browser = Browser::start().await;
        browser.set_window_size(1280, 900).await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_visible("#licenses").await;
        fixture.open_section(&browser, &org, "audit").await;
        browser.wait_visible(".audit tbody tr").await;

        // By action, from the form: only that action's entries, and the address says so.
        browser
            .execute(
                "document.getElementById('audit-action').value = 'device.edited';",
                vec![],
            )
            .await;
        browser.click_css("#audit-apply").await;
        browser
            .wait_visible(".audit tbody tr[data-action=\"device.edited\"]")
            .await;
        assert!(browser.current_url().await.contains("action=device.edited"));
        let actions = browser
            .execute(
                "return Array.from(document.querySelectorAll('.audit tbody tr')).map((row) => row.dataset.action);",
                vec![],
            )
            .await;
        assert_eq!(actions, json!(["device.edited"]));

        // By device, from the address: its pairing and the edit, with its name, linked.
        browser
            .navigate(&format!(
                "{}#/organizations/{org}/audit?device={device}",
                fixture.portal_url()
            ))
            .await;
        browser
            .wait_visible(".audit tbody tr[data-action=\"device.paired\"]")
            .await;
        browser
            .wait_visible(".audit tbody tr[data-action=\"device.edited\"]")
            .await;
        assert_eq!(
            browser
                .execute(
                    "return document.getElementById('audit-device').value;",
                    vec![]
                )
                .await,
            json!(device)
        );
        let link = browser
            .wait_visible(&format!(
                ".audit tbody tr[data-action=\"device.paired\"] td.about a[data-device-id=\"{device}\"]"
            ))
            .await;
        assert_eq!(browser.text(&link).await, fixture.a.device_name);
        browser.set_window_size(390, 844).await;
        assert_no_sideways_scroll_at(&browser, 390, "the audit log").await;
        browser.click(&link).await;
        browser.wait_text("#device-title", &fixture.a.device_name).await;

        // Another organization's device finds nothing in this organization's log.
        browser
            .navigate(&format!(
                "{}#/organizations/{org}/audit?device={}",
                fixture.portal_url(),
                fixture.b.device_id
            ))
            .await;
        browser
            .wait_text("#audit-status", "No entry matches these filters.")
            .await;
        assert!(browser.find(".audit tbody tr").await.is_none());
        browser.quit().await;
    })
    .await;
}
