//! The Devices page's actions: Assign device (a single-use code's QR in a dialog, read off the
//! page with a real QR decoder and used by a real device), Create Code and the active reusable
//! codes, Configure, Unpair, Add licenses, and an organization with more licenses than one page
//! of the list.

use std::time::Duration;

use protocol::{AckOutcome, EndReason, RefusalReason, ServerMessage};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::codes::{decode_qr, decode_qr_png};
use crate::fixture::{Fixture, assert_no_sideways_scroll, bounded, license_row};
use crate::support::{
    OPERATOR_TOKEN, WAIT, acknowledge, connect, device_info, identity, next_configuration,
    pair_new, pair_ok, refusal,
};
use crate::webdriver::{Browser, keys};

/// Bound on waiting for something the page does by itself (a countdown's tick, a panel closing).
const PAGE_WAIT: Duration = Duration::from_secs(15);

fn row_css(license: &str) -> String {
    format!("#licenses tr[data-license-id=\"{license}\"]")
}

fn button_css(license: &str, action: &str) -> String {
    format!("{} button[data-action=\"{action}\"]", row_css(license))
}

/// The Configure panel under a license's row.
fn panel_css(license: &str) -> String {
    format!("#licenses tr.row-panel[data-panel-for=\"{license}\"]")
}

/// The Assign dialog of a license (a modal `<dialog>`, outside the table).
pub fn assign_dialog_css(license: &str) -> String {
    format!("dialog.assign-dialog[data-license-id=\"{license}\"]")
}

/// Clicks one of a row's (or a panel's) buttons once it is displayed.
async fn click(browser: &Browser, css: &str) {
    browser.click_css(css).await;
}

/// The id of one free license of `org`, from the admin API.
async fn free_license(fixture: &Fixture, org: &str) -> String {
    let licenses = fixture.test.admin.licenses(org).await;
    licenses
        .iter()
        .find(|license| license["status"] == json!("free"))
        .and_then(|license| license["id"].as_str())
        .expect("a free license")
        .to_string()
}

/// The text of one count of the license summary.
async fn count(browser: &Browser, name: &str) -> String {
    let element = browser
        .wait_visible(&format!("#summary [data-count=\"{name}\"]"))
        .await;
    browser.text(&element).await
}

/// Polls `script` (a function body) until it returns something other than `null` or `false`;
/// fails after [`PAGE_WAIT`] with `what`.
pub async fn wait_script(browser: &Browser, script: &str, what: &str) -> Value {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let value = browser.execute(script, vec![]).await;
        if !value.is_null() && value != json!(false) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} ({script})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no element matches `css`.
pub async fn wait_gone(browser: &Browser, css: &str) {
    let script = format!(
        "return document.querySelector({}) === null;",
        serde_json::to_string(css).unwrap()
    );
    wait_script(browser, &script, &format!("{css} to go")).await;
}

/// The license whose dialog, panel or row holds the keyboard focus, if any.
pub async fn focused_license(browser: &Browser) -> Value {
    browser
        .execute(
            "const dialog = document.activeElement.closest('dialog'); \
             if (dialog) return dialog.dataset.licenseId ?? null; \
             const row = document.activeElement.closest('tr'); \
             return row ? (row.dataset.panelFor ?? row.dataset.licenseId) : null;",
            vec![],
        )
        .await
}

/// Seconds left on an Assign dialog's countdown, read from its text ("45 s", "1 min 05 s").
async fn countdown_seconds(browser: &Browser, license: &str) -> u64 {
    let text = browser
        .wait_text(&format!("{} .countdown", assign_dialog_css(license)), " s")
        .await;
    let numbers: Vec<u64> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match (text.contains("min"), numbers.as_slice()) {
        (false, [seconds]) => *seconds,
        (true, [minutes, seconds]) => minutes * 60 + seconds,
        _ => panic!("not a countdown: {text:?}"),
    }
}

/// The payload of the code an Assign dialog shows once it differs from `previous` (the dialog
/// shows no payload before its first code); checks that the QR on the page says the same.
pub async fn shown_payload(browser: &Browser, license: &str, previous: &str) -> String {
    let dialog = assign_dialog_css(license);
    let selector = serde_json::to_string(&format!("{dialog} .assign-payload")).unwrap();
    let previous_json = serde_json::to_string(previous).unwrap();
    let payload = wait_script(
        browser,
        &format!(
            "const text = document.querySelector({selector})?.textContent ?? ''; \
             return text !== '' && text !== {previous_json} ? text : null;"
        ),
        "a new code's payload",
    )
    .await;
    let payload = payload.as_str().unwrap().to_string();
    let qr = browser
        .wait_visible(&format!("{dialog} img.assign-qr"))
        .await;
    let src = browser.attribute(&qr, "src").await.expect("the QR's src");
    assert_eq!(decode_qr(&src), payload, "the QR says what the page prints");
    assert!(payload.starts_with("PAIRD://"), "{payload}");
    payload
}

pub fn code_of(payload: &str) -> &str {
    payload.rsplit('/').next().expect("the code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_device_shows_a_counting_down_qr_that_pairs_exactly_one_device() {
    bounded(async {
        let fixture = Fixture::start().await;
        let free = free_license(&fixture, &fixture.a.id).await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        click(&browser, &button_css(&free, "assign")).await;

        // The dialog opens, with the keyboard in it.
        let payload = shown_payload(&browser, &free, "").await;
        assert_eq!(focused_license(&browser).await, json!(free));

        // The countdown shows a plausible remaining time, and counts down.
        let first = countdown_seconds(&browser, &free).await;
        assert!((1..=60).contains(&first), "{first} s left");
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let now = countdown_seconds(&browser, &free).await;
            if now < first {
                break;
            }
            assert!(Instant::now() < deadline, "the countdown stays at {now} s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // While the code is valid, its license is reserved.
        browser
            .wait_visible(&format!("{}[data-status=\"reserved\"]", row_css(&free)))
            .await;
        assert_eq!(count(&browser, "reserved").await, "1");

        // A real device pairs with what the QR says, and takes that license.
        let mut device = connect(&fixture.test.device_url(), protocol::Encoding::Postcard).await;
        let result = device
            .pair(code_of(&payload), &identity(), &device_info("Van 12"))
            .await
            .expect("pairing answered");
        let client::PairResult::Paired(paired) = result else {
            panic!("pairing refused: {result:?}")
        };
        assert_eq!(paired.license_id.to_string(), free);

        // The code was single-use: a second device is refused.
        let (_, _, second) = pair_new(&fixture.test.device_url(), code_of(&payload)).await;
        assert_eq!(refusal(&second), Some(RefusalReason::CodeUsed));

        // Without a reload (the page follows the live feed) the row shows the device; no license
        // is free any more, and the key's admin is told where licenses come from.
        browser
            .wait_visible(&format!("{}[data-status=\"assigned\"]", row_css(&free)))
            .await;
        let row = license_row(&browser, &free).await;
        assert!(browser.text(&row).await.contains("Van 12"));
        assert_eq!(count(&browser, "free").await, "0");
        let warning = browser.wait_visible("#no-free-licenses").await;
        assert!(browser.text(&warning).await.contains("Buy licenses"));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_refused_new_code_replaces_it_and_cancel_releases_the_license() {
    bounded(async {
        let fixture = Fixture::start().await;
        let free = free_license(&fixture, &fixture.a.id).await;
        let browser = Browser::start().await;
        // At phone width: the dialog with its QR fits without sideways scrolling.
        browser.set_window_size(390, 844).await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        click(&browser, &button_css(&free, "assign")).await;
        let expired = shown_payload(&browser, &free, "").await;
        assert_no_sideways_scroll(&browser, "the page with the code's dialog").await;

        // The server's clock passes the code's minute: the code no longer pairs anyone.
        fixture.test.admin.advance(61.0).await;
        let (_, _, result) = pair_new(&fixture.test.device_url(), code_of(&expired)).await;
        assert_eq!(refusal(&result), Some(RefusalReason::CodeExpired));

        // "New code" shows a fresh one.
        click(
            &browser,
            &format!(
                "{} button[data-action=\"new-code\"]",
                assign_dialog_css(&free)
            ),
        )
        .await;
        let replaced = shown_payload(&browser, &free, &expired).await;
        assert!(countdown_seconds(&browser, &free).await <= 60);

        // "Cancel" closes the dialog and releases the license: the fresh code stops working.
        click(
            &browser,
            &format!(
                "{} button[data-action=\"cancel-code\"]",
                assign_dialog_css(&free)
            ),
        )
        .await;
        wait_gone(&browser, &assign_dialog_css(&free)).await;
        browser
            .wait_visible(&format!("{}[data-status=\"free\"]", row_css(&free)))
            .await;
        assert_eq!(focused_license(&browser).await, json!(free));
        let (_, _, result) = pair_new(&fixture.test.device_url(), code_of(&replaced)).await;
        assert_eq!(refusal(&result), Some(RefusalReason::CodeRevoked));

        // Assigning again gives a code that pairs.
        click(&browser, &button_css(&free, "assign")).await;
        let fresh = shown_payload(&browser, &free, "").await;
        assert_ne!(fresh, replaced);
        let (_, _connection, paired) = pair_ok(&fixture.test.device_url(), code_of(&fresh)).await;
        assert_eq!(paired.license_id.to_string(), free);
        browser
            .wait_visible(&format!("{}[data-status=\"assigned\"]", row_css(&free)))
            .await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_assigns_another_configuration_that_reaches_the_device() {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let license = fixture.a.license_id.clone();
        let second = fixture
            .test
            .admin
            .create_config(&fixture.a.id, "Meters v2", "[GLOBAL]\nrest_timeout = 30\n")
            .await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        let panel = panel_css(&license);
        let option = format!("{panel} select option[value=\"{second}\"]");

        // By keyboard: the panel takes the focus to its choice, and Escape closes it again.
        click(&browser, &button_css(&license, "configure")).await;
        browser.wait_visible(&option).await;
        wait_script(
            &browser,
            "return document.activeElement.matches('tr.row-panel select');",
            "the focus on the configuration choice",
        )
        .await;
        let select = browser.wait_visible(&format!("{panel} select")).await;
        browser.send_keys(&select, "\u{E00C}").await;
        wait_gone(&browser, &panel).await;
        let focused = browser
            .execute(
                "return document.activeElement.dataset.action ?? null;",
                vec![],
            )
            .await;
        assert_eq!(focused, json!("configure"));
        assert_eq!(focused_license(&browser).await, json!(license));

        // The current configuration is preselected; pick the other one and save.
        click(&browser, &button_css(&license, "configure")).await;
        browser.wait_visible(&option).await;
        let selected = browser
            .wait_visible(&format!("{panel} select option:checked"))
            .await;
        assert_eq!(browser.text(&selected).await, "Meters (rev. 1)");
        click(&browser, &option).await;
        click(
            &browser,
            &format!("{panel} button[data-action=\"save-configuration\"]"),
        )
        .await;

        // The device receives it; the row shows it assigned, pending until the device applies it.
        let received = next_configuration(&mut fixture.a.connection).await;
        assert_eq!(received.configuration_id.to_string(), second);
        wait_gone(&browser, &panel).await;
        let text = browser
            .wait_text(&row_css(&license), "Meters v2 (rev. 1)")
            .await;
        assert!(text.contains("Pending"), "{text}");
        assert!(!text.contains("Applied"), "{text}");

        // Once the device has applied it, the page says so, without a reload.
        assert!(acknowledge(&mut fixture.a.connection, &received, AckOutcome::Applied).await);
        let text = browser.wait_text(&row_css(&license), "Applied").await;
        assert!(text.contains("Meters v2 (rev. 1)"), "{text}");
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpair_after_confirming_ends_the_devices_connection_and_frees_its_license() {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let license = fixture.a.license_id.clone();
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        assert_eq!(count(&browser, "free").await, "1");

        click(&browser, &button_css(&license, "unpair")).await;
        let question = browser.accept_alert().await;
        assert!(question.contains(&fixture.a.device_name), "{question}");

        // The device is told why, then its connection closes.
        match fixture.a.connection.recv_timeout(WAIT).await {
            Ok(ServerMessage::Ended(ended)) => assert_eq!(ended.reason, EndReason::Unpaired),
            other => panic!("expected the unpaired notice, got {other:?}"),
        }
        let closed = fixture.a.connection.recv_timeout(WAIT).await.unwrap_err();
        assert_eq!(closed.close_code(), Some(protocol::CloseCode::Unpaired));

        // The row is a free license now, ready to be assigned, and the counts follow.
        browser
            .wait_visible(&format!("{}[data-status=\"free\"]", row_css(&license)))
            .await;
        browser.wait_visible(&button_css(&license, "assign")).await;
        let row = license_row(&browser, &license).await;
        let text = browser.text(&row).await;
        assert!(text.contains("Free"), "{text}");
        assert!(!text.contains(&fixture.a.device_name), "{text}");
        browser
            .wait_text("#summary [data-count=\"free\"]", "2")
            .await;
        assert_eq!(count(&browser, "assigned").await, "0");
        browser.wait_text("#devices-status", "unpaired").await;
        assert!(fixture.test.admin.devices(&fixture.a.id).await.is_empty());

        // The audit log lists the unpairing first, by this organization's key, on the device.
        browser
            .follow_link("#nav a[href$=\"/audit\"]", "/audit")
            .await;
        let newest = browser
            .wait_visible("table.audit tbody tr:first-child[data-action=\"device.unpaired\"]")
            .await;
        let text = browser.text(&newest).await;
        assert!(text.contains(&fixture.a.device_name), "{text}");
        assert!(text.contains("key:"), "{text}");
        // The device's name links to its page (its history stays after the unpairing).
        browser
            .wait_visible(&format!(
                "table.audit tbody tr:first-child td.about a[data-device-id=\"{}\"]",
                fixture.a.device_id
            ))
            .await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_adds_licenses_and_an_organization_key_is_told_where_to_buy_them() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;

        // Organization B has no free license. Its own admin sees where licenses come from, and
        // no form to add them.
        fixture.sign_in(&browser, &fixture.b.key).await;
        browser.wait_text("#org-name", &fixture.b.name).await;
        let warning = browser.wait_visible("#no-free-licenses").await;
        assert!(browser.text(&warning).await.contains("Buy licenses"));
        let buy = browser.wait_visible("#buy-licenses").await;
        assert!(browser.text(&buy).await.contains("buy them from"));
        assert!(browser.find("#add-licenses").await.is_none());
        browser.click_css("#sign-out").await;

        // The operator is pointed at the form, and adds three licenses with an end date.
        fixture.sign_in(&browser, OPERATOR_TOKEN).await;
        click(
            &browser,
            &format!("#org-list a[data-org-id=\"{}\"]", fixture.b.id),
        )
        .await;
        browser.wait_text("#org-name", &fixture.b.name).await;
        let warning = browser.wait_visible("#no-free-licenses").await;
        assert!(browser.text(&warning).await.contains("form below"));
        assert!(browser.find("#buy-licenses").await.is_none());
        assert_eq!(count(&browser, "total").await, "1");
        let field = browser.wait_visible("#license-count").await;
        browser.clear(&field).await;
        browser.send_keys(&field, "3").await;
        browser
            .execute(
                "document.getElementById('license-valid-until').value = '2031-01-31';",
                vec![],
            )
            .await;
        click(&browser, "#add-licenses-submit").await;

        browser
            .wait_text("#summary [data-count=\"total\"]", "4")
            .await;
        browser
            .wait_text("#add-licenses-status", "Added 3 licenses")
            .await;
        assert_eq!(count(&browser, "free").await, "3");
        wait_gone(&browser, "#no-free-licenses").await;
        wait_script(
            &browser,
            "return document.querySelectorAll('#licenses tbody tr[data-license-id]').length === 4;",
            "four license rows",
        )
        .await;
        let new_rows = browser
            .find_all("#licenses tbody tr[data-status=\"free\"]")
            .await;
        assert_eq!(new_rows.len(), 3);
        for row in &new_rows {
            let text = browser.text(row).await;
            assert!(text.contains("2031-01-31"), "{text}");
        }
        let summary = fixture.test.admin.summary(&fixture.b.id).await;
        assert_eq!(summary["total"], json!(4));
        assert_eq!(summary["free"], json!(3));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_with_more_licenses_than_one_page_shows_a_page_of_50_with_the_total() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let org = admin.create_org("Big Fleet").await;
        let licenses = admin.add_licenses(&org, 1_200).await;
        let key = admin.create_key(&org, "portal test").await["key"]
            .as_str()
            .expect("a key")
            .to_string();
        let code = admin.reusable_code(&org, json!({})).await["code"]
            .as_str()
            .expect("a code")
            .to_string();
        let (_, _connection, paired) = pair_ok(&fixture.test.device_url(), &code).await;

        let browser = Browser::start().await;
        fixture.sign_in(&browser, &key).await;
        browser.wait_text("#org-name", "Big Fleet").await;
        assert_eq!(count(&browser, "total").await, "1200");
        assert_eq!(count(&browser, "free").await, "1199");
        assert_eq!(count(&browser, "assigned").await, "1");
        // One page of 50 at a time, with the total; the rest is a page or a filter away.
        wait_script(
            &browser,
            "return document.querySelector('#devices-range')?.textContent === '1–50 of 1,200';",
            "the first page's range",
        )
        .await;
        assert_eq!(browser.find_all("#licenses tbody tr[data-license-id]").await.len(), 50);
        license_row(&browser, &licenses[0]).await;
        browser
            .execute(
                "const status = document.querySelector('#filter-status'); status.value = 'assigned'; \
                 status.dispatchEvent(new Event('change'));",
                vec![],
            )
            .await;
        let row = license_row(&browser, &paired.license_id.to_string()).await;
        assert!(browser.text(&row).await.contains("device"));
        wait_script(
            &browser,
            "return document.querySelectorAll('#licenses tbody tr[data-license-id]').length === 1;",
            "the assigned license alone",
        )
        .await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_code_on_the_devices_page_shows_its_qr_in_a_dialog_and_lists_the_active_codes() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let org = &fixture.a.id;
        admin.add_licenses(org, 1).await;
        // A revoked code is not offered for pairing.
        let revoked = admin
            .reusable_code(org, json!({ "label": "old rollout" }))
            .await;
        admin
            .post(
                &format!(
                    "/v1/organizations/{org}/codes/{}/revoke",
                    revoked["id"].as_str().unwrap()
                ),
                json!({}),
            )
            .await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;

        // The fixture's code (no label) is the one active code.
        browser.wait_visible("#active-codes li").await;
        assert_eq!(browser.find_all("#active-codes li").await.len(), 1);
        assert!(!browser.page_text().await.contains("old rollout"));

        // Create Code opens a dialog with the form and the warning; the keyboard is in it.
        click(&browser, "#pair-create-code").await;
        browser
            .wait_text(
                "dialog.code-dialog .alert",
                "Anyone who has a reusable code",
            )
            .await;
        let label = browser.wait_visible("dialog.code-dialog #code-label").await;
        wait_script(
            &browser,
            "return document.activeElement.closest('dialog.code-dialog') !== null;",
            "the keyboard in the dialog",
        )
        .await;
        browser.send_keys(&label, "depot rollout").await;
        click(&browser, "dialog.code-dialog #create-code").await;

        // The same dialog shows the new code: a real decoder reads its QR off the window.
        let qr = browser.wait_visible("dialog.code-dialog #qr").await;
        let src = browser.attribute(&qr, "src").await.expect("the QR's src");
        let payload = decode_qr(&src);
        assert_eq!(
            payload,
            browser
                .text(&browser.wait_visible("dialog.code-dialog #payload").await)
                .await
        );
        assert_eq!(decode_qr_png(&browser.screenshot().await), payload);
        browser
            .wait_text("dialog.code-dialog h2", "Code “depot rollout”")
            .await;
        browser.wait_text("#active-codes", "depot rollout").await;

        // Escape closes it and gives the keyboard back to Create Code.
        browser.press(keys::ESCAPE).await;
        wait_gone(&browser, "dialog.code-dialog").await;
        assert_eq!(browser.focused().await["id"], json!("pair-create-code"));

        // A device pairs with it: its row shows without a reload, and the code's use is counted.
        let (_, _connection, paired) = pair_ok(&fixture.test.device_url(), code_of(&payload)).await;
        browser
            .wait_text(
                &format!(
                    "{}[data-status=\"assigned\"]",
                    row_css(&paired.license_id.to_string())
                ),
                "device",
            )
            .await;
        browser.wait_text("#active-codes", "1 use").await;

        // Show QR shows it again, the same code.
        let item = browser
            .find_all("#active-codes li")
            .await
            .first()
            .cloned()
            .expect("the newest code first");
        assert!(browser.text(&item).await.contains("depot rollout"));
        click(
            &browser,
            "#active-codes li:first-child button[data-action=\"show-code\"]",
        )
        .await;
        browser
            .wait_text("dialog.code-dialog #payload", &payload)
            .await;
        click(
            &browser,
            "dialog.code-dialog button[data-action=\"close-dialog\"]",
        )
        .await;
        wait_gone(&browser, "dialog.code-dialog").await;
        assert_eq!(browser.focused().await["action"], json!("show-code"));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
