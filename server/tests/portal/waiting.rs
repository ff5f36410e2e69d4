//! The Devices page's waiting list: real devices that asked to wait for a license (over real
//! WebSockets) are listed in the order they came; one dismissed from the page is told so; a
//! license added pairs the first in line; one that disconnects leaves the list; all of it
//! without a reload, with the keyboard kept on the list's buttons, and at phone width without
//! scrolling sideways.

use client::{Connection, DeviceIdentity, PairOrWaitResult, PairResult};
use protocol::{Encoding, RefusalReason};
use serde_json::{Value, json};

use crate::devices::wait_script;
use crate::fixture::{Fixture, assert_no_sideways_scroll, bounded};
use crate::keyboard::tab_to;
use crate::live::{assert_not_reloaded, mark_page};
use crate::support::{connect, device_info, identity};
use crate::webdriver::Browser;

/// A new device that asks to pair or wait with `code`; it must be put in line at `position`.
async fn join_line(
    fixture: &Fixture,
    code: &str,
    name: &str,
    position: u64,
) -> (DeviceIdentity, Connection) {
    let identity = identity();
    let mut connection = connect(&fixture.test.device_url(), Encoding::Json).await;
    let answer = connection
        .pair_or_wait(code, &identity, &device_info(name))
        .await
        .expect("an answer");
    match answer {
        PairOrWaitResult::Waiting(waiting) => assert_eq!(waiting.position, position, "{name}"),
        other => panic!("{name} was not put in line: {other:?}"),
    }
    (identity, connection)
}

/// Waits until the waiting list shows exactly `names`, in this order.
async fn wait_for_line(browser: &Browser, names: &[&str]) {
    let wanted = serde_json::to_string(names).unwrap();
    let script = format!(
        "const names = [...document.querySelectorAll('#waiting-list li .waiting-name')] \
         .map((e) => e.textContent); \
         return JSON.stringify(names) === JSON.stringify({wanted}) ? names : null;"
    );
    wait_script(
        browser,
        &script,
        &format!("the waiting list to show {wanted}"),
    )
    .await;
}

/// The installation id of the waiting device whose row holds the keyboard focus, if any.
async fn focused_waiting_device(browser: &Browser) -> Value {
    browser
        .execute(
            "return document.activeElement.closest('#waiting-list li')?.dataset.installationId ?? null;",
            vec![],
        )
        .await
}

fn dismiss_css(identity: &DeviceIdentity) -> String {
    format!(
        "#waiting-list li[data-installation-id=\"{}\"] button[data-action=\"dismiss\"]",
        identity.installation_id
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_list_shows_the_line_in_order_and_follows_dismissals_licenses_and_departures() {
    bounded(async {
        let fixture = Fixture::start().await;
        // Globex has one license, held: no license is free.
        let org = fixture.b.id.clone();
        let admin = &fixture.test.admin;
        let code = admin.reusable_code(&org, json!({})).await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let (first_id, mut first) = join_line(&fixture, &code, "Scanner A", 1).await;
        let (second_id, mut second) = join_line(&fixture, &code, "Scanner B", 2).await;
        let (third_id, third) = join_line(&fixture, &code, "Scanner C", 3).await;

        // The organization's admin sees the line in arrival order, and is told where licenses
        // come from (the operator adds them).
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.b.key).await;
        browser
            .wait_text("#waiting-title", "3 devices waiting for a license")
            .await;
        wait_for_line(&browser, &["Scanner A", "Scanner B", "Scanner C"]).await;
        let facts = browser
            .wait_text("#waiting-list li:first-child", "TC52")
            .await;
        assert!(facts.contains("waiting since"), "{facts}");
        assert!(facts.contains("127.0.0.1"), "{facts}");
        browser
            .wait_text("#waiting-hint", "Buy licenses from your paird provider")
            .await;
        browser.wait_text("#live-state", "Live").await;
        mark_page(&browser).await;

        // At phone width the list wraps: nothing scrolls sideways.
        browser.set_window_size(400, 900).await;
        assert_no_sideways_scroll(&browser, "the Devices page with devices waiting").await;
        browser.set_window_size(1280, 900).await;

        // Each Dismiss is a real button, reached with Tab, named after its device.
        let focused = tab_to(&browser, "a Dismiss button", |focused| {
            focused["action"] == "dismiss"
        })
        .await;
        assert_eq!(focused["text"], "Dismiss");

        // Dismiss the second, after the confirmation: it is refused `dismissed`, and the list
        // shows the other two; the keyboard goes to the row now in its place.
        browser.click_css(&dismiss_css(&second_id)).await;
        let question = browser.accept_alert().await;
        assert!(question.contains("Scanner B"), "{question}");
        match second.wait_for_turn().await.expect("an answer") {
            PairResult::Refused(refused) => assert_eq!(refused.reason, RefusalReason::Dismissed),
            other => panic!("the dismissed device was not told: {other:?}"),
        }
        wait_for_line(&browser, &["Scanner A", "Scanner C"]).await;
        browser
            .wait_text("#waiting-title", "2 devices waiting for a license")
            .await;
        browser
            .wait_text("#waiting-status", "Scanner B was dismissed")
            .await;
        let third_installation = json!(third_id.installation_id.to_string());
        assert_eq!(focused_waiting_device(&browser).await, third_installation);

        // The operator adds one license: the first in line is paired with it, and the page shows
        // one device left, now first, with the keyboard still on its button.
        admin.add_licenses(&org, 1).await;
        match first.wait_for_turn().await.expect("an answer") {
            PairResult::Paired(paired) => assert!(!paired.already_paired),
            other => panic!("the first in line was not paired: {other:?}"),
        }
        wait_for_line(&browser, &["Scanner C"]).await;
        browser
            .wait_text("#waiting-title", "1 device waiting for a license")
            .await;
        browser
            .wait_text("#waiting-list li:first-child .waiting-position", "1")
            .await;
        assert_eq!(focused_waiting_device(&browser).await, third_installation);
        let devices = admin.devices(&org).await;
        assert!(
            devices
                .iter()
                .any(|device| device["installation_id"] == json!(first_id.installation_id)),
            "the first in line holds a license: {devices:?}"
        );

        // The last device disconnects: it leaves the line, and the list empties.
        third.close().await;
        browser
            .wait_text("#waiting-title", "No device is waiting for a license")
            .await;
        wait_for_line(&browser, &[]).await;
        assert_not_reloaded(&browser).await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
