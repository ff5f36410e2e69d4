//! The portal from the keyboard alone: sign in, open a free license's single-use QR and close
//! it, configure a device, all with Tab, Enter, arrows and Escape.

use serde_json::{Value, json};

use crate::fixture::{Fixture, bounded};
use crate::support::*;
use crate::webdriver::{Browser, keys};

/// Presses Tab until `wanted` holds for the focused element; fails after a bounded number of
/// presses (the page has a few dozen focusable elements).
pub async fn tab_to(browser: &Browser, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..60 {
        browser.press(keys::TAB).await;
        let focused = browser.focused().await;
        if wanted(&focused) {
            return focused;
        }
    }
    panic!("Tab never reached {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_assigning_and_configuring_work_from_the_keyboard_alone() {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let other = fixture
            .test
            .admin
            .create_config(&org, "Water", "[GLOBAL]\n")
            .await;
        // "Water" is now the newest: new devices would get it, Van 7 keeps Meters.
        let browser = Browser::start().await;
        browser.navigate(&fixture.portal_url()).await;
        browser.wait_visible("#token").await;
        // The token field has the focus: type and press Enter.
        assert_eq!(browser.focused().await["id"], "token");
        browser
            .press(&format!("{}{}", fixture.a.key, keys::ENTER))
            .await;
        browser.wait_text("#org-name", &fixture.a.name).await;

        // Tab to the free license's "Assign device"; Enter shows its QR with the focus inside.
        let free = fixture
            .test
            .admin
            .licenses(&org)
            .await
            .into_iter()
            .find(|license| license["status"] == "free")
            .expect("a free license")["id"]
            .as_str()
            .unwrap()
            .to_string();
        let focused = tab_to(&browser, "Assign device", |focused| {
            focused["action"] == "assign" && focused["license"] == json!(free)
        })
        .await;
        assert_eq!(focused["text"], "Assign device");
        browser.press(keys::ENTER).await;
        browser.wait_visible("dialog.assign-dialog img").await;
        let in_dialog: Value = browser
            .execute(
                "return Boolean(document.activeElement.closest('dialog.assign-dialog'));",
                vec![],
            )
            .await;
        assert_eq!(in_dialog, json!(true));

        // Escape closes it (the reservation is released) and gives the focus back to the button.
        browser.press(keys::ESCAPE).await;
        let back = browser.focused().await;
        assert_eq!(back["action"], "assign", "{back}");
        assert_eq!(back["license"], json!(free));
        eventually("the reservation is released", || {
            let admin = fixture.test.admin.clone();
            let path = format!("/v1/organizations/{org}/licenses/{free}");
            async move { (admin.get(&path).await["status"] == "free").then_some(()) }
        })
        .await;

        // Configure Van 7: Tab to its button, Enter, pick "Water" with the arrow keys, Tab to
        // Save, Enter. The device receives it.
        tab_to(&browser, "Configure", |focused| {
            focused["action"] == "configure" && focused["license"] == json!(fixture.a.license_id)
        })
        .await;
        browser.press(keys::ENTER).await;
        browser.wait_visible(".configure-select:enabled").await;
        // The panel's list (not one of the list's filters), where the panel puts the focus once
        // the configurations are read.
        let is_configure_select = |focused: &Value| {
            focused["tag"] == "select"
                && focused["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("configure-select-"))
        };
        let focused = browser.focused().await;
        let select = if is_configure_select(&focused) {
            focused
        } else {
            tab_to(&browser, "the configuration list", is_configure_select).await
        };
        assert_eq!(select["tag"], "select");
        // Up to the first option, then down to Water, whatever the current order.
        for _ in 0..2 {
            let chosen: Value = browser
                .execute(
                    "const s = document.activeElement; return s.options[s.selectedIndex].text;",
                    vec![],
                )
                .await;
            if chosen.as_str().unwrap_or_default().contains("Water") {
                break;
            }
            browser.press(keys::ARROW_DOWN).await;
        }
        let chosen: Value = browser
            .execute("return document.activeElement.value;", vec![])
            .await;
        assert_eq!(chosen, json!(other), "Water is chosen");
        tab_to(&browser, "Save", |focused| {
            focused["action"] == "save-configuration"
        })
        .await;
        browser.press(keys::ENTER).await;
        let received = next_configuration(&mut fixture.a.connection).await;
        assert_eq!(received.configuration_id.to_string(), other);
        browser
            .wait_text(
                &format!(
                    "#licenses tr[data-license-id=\"{}\"] .configuration",
                    fixture.a.license_id
                ),
                "Water",
            )
            .await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
