//! What a user sees and does in the browser: signing in, the devices page, isolation between
//! organizations, errors, phone width.

use serde_json::{Value, json};

use crate::fixture::{Fixture, assert_no_sideways_scroll, bounded, license_row};
use crate::support::OPERATOR_TOKEN;
use crate::webdriver::Browser;

/// The text of one count of the license summary.
async fn count(browser: &Browser, name: &str) -> String {
    let element = browser
        .wait_visible(&format!("#summary [data-count=\"{name}\"]"))
        .await;
    browser.text(&element).await
}

async fn stored_token(browser: &Browser) -> Value {
    browser
        .execute("return sessionStorage.getItem('paird.token');", vec![])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_key_opens_its_devices_page_with_summary_and_device_row() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;

        browser.wait_text("#org-name", &fixture.a.name).await;
        assert_eq!(count(&browser, "total").await, "2");
        assert_eq!(count(&browser, "free").await, "1");
        assert_eq!(count(&browser, "reserved").await, "0");
        assert_eq!(count(&browser, "assigned").await, "1");
        assert_eq!(count(&browser, "expired").await, "0");
        // A license is free: no warning.
        assert!(browser.find("#no-free-licenses").await.is_none());

        // One row per license: the assigned one shows its device, the free one says so.
        assert_eq!(browser.find_all("#licenses tbody tr").await.len(), 2);
        let row = license_row(&browser, &fixture.a.license_id).await;
        let text = browser.text(&row).await;
        for expected in [
            "Assigned",
            fixture.a.device_name.as_str(),
            "TC52",
            "4.2.1",
            "Meters (rev. 1)",
            "Applied",
            "Online",
            "No end",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} not in the row {text:?}"
            );
        }
        assert_eq!(
            browser.attribute(&row, "data-device-id").await.as_deref(),
            Some(fixture.a.device_id.as_str())
        );
        let free = browser
            .wait_visible("#licenses tr[data-status=\"free\"]")
            .await;
        assert!(browser.text(&free).await.contains("Free"));

        // The key is kept for this tab only, and an organization key sees no operator links.
        assert_eq!(stored_token(&browser).await, json!(fixture.a.key));
        assert!(
            browser
                .find("#nav a[href=\"#/organizations\"]")
                .await
                .is_none()
        );
        browser.wait_visible("#nav a[aria-current=\"page\"]").await;

        browser
            .wait_visible("#live-state[data-state=\"live\"]")
            .await;
        if std::env::var_os("PAIRD_SCREENSHOT").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/portal-devices.png");
            std::fs::write(path, browser.screenshot().await).unwrap();
        }

        // Signing out forgets the token and goes back to the sign-in form.
        browser.click_css("#sign-out").await;
        browser.wait_visible("#token").await;
        assert_eq!(stored_token(&browser).await, Value::Null);
        assert!(!browser.page_text().await.contains(&fixture.a.device_name));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_picks_an_organization_from_the_list_and_sees_its_devices() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, OPERATOR_TOKEN).await;

        let list = browser.wait_visible("#org-list").await;
        let names = browser.text(&list).await;
        assert!(
            names.contains(&fixture.a.name) && names.contains(&fixture.b.name),
            "{names}"
        );
        let link = browser
            .wait_visible(&format!("#org-list a[data-org-id=\"{}\"]", fixture.b.id))
            .await;
        assert_eq!(browser.text(&link).await, fixture.b.name);
        browser.click(&link).await;

        browser.wait_text("#org-name", &fixture.b.name).await;
        let row = license_row(&browser, &fixture.b.license_id).await;
        let text = browser.text(&row).await;
        assert!(text.contains(&fixture.b.device_name), "{text}");
        assert!(text.contains("Online"), "{text}");
        assert_eq!(count(&browser, "free").await, "0");
        // No license is free: said prominently, next to the summary.
        let warning = browser.wait_visible("#no-free-licenses").await;
        assert!(browser.text(&warning).await.contains("No free license"));
        assert!(!browser.page_text().await.contains(&fixture.a.device_name));

        // The operator can go back to the list.
        let back = browser
            .wait_visible("#nav a[href=\"#/organizations\"]")
            .await;
        browser.click(&back).await;
        browser.wait_visible("#org-list").await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_key_never_shows_another_organizations_data() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        license_row(&browser, &fixture.a.license_id).await;
        let page = browser.page_text().await;
        assert!(!page.contains(&fixture.b.name), "{page}");
        assert!(!page.contains(&fixture.b.device_name), "{page}");

        // Typing org B's id into the address bar shows an error, never B's data.
        fixture
            .open_section(&browser, &fixture.b.id, "devices")
            .await;
        let alert = browser.wait_visible("main [role=\"alert\"]").await;
        assert!(browser.text(&alert).await.contains("Not found"));
        let page = browser.page_text().await;
        assert!(!page.contains(&fixture.b.name), "{page}");
        assert!(!page.contains(&fixture.b.device_name), "{page}");
        assert!(browser.find("#licenses").await.is_none());
        // The navigation still leads to the key's own organization, never to B's address.
        let links: Value = browser
            .execute(
                "return [...document.querySelectorAll('#nav a')].map(a => a.getAttribute('href'));",
                vec![],
            )
            .await;
        let links = links.as_array().unwrap();
        assert!(!links.is_empty());
        for link in links {
            let link = link.as_str().unwrap();
            assert!(link.contains(&fixture.a.id), "{link}");
            assert!(!link.contains(&fixture.b.id), "{link}");
        }
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_shows_an_error_and_stays_on_sign_in() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;
        // By keyboard: type the token and press Enter.
        browser.navigate(&fixture.portal_url()).await;
        let field = browser.wait_visible("#token").await;
        browser
            .send_keys(&field, "paird_key_abcdefghijklmnopqrstuvwxyz234567\u{E007}")
            .await;
        let error = browser.wait_visible("#sign-in-error").await;
        assert!(browser.text(&error).await.contains("not accepted"));
        // Focus goes back to the field, to correct the token.
        let focused = browser
            .execute("return document.activeElement.id;", vec![])
            .await;
        assert_eq!(focused, json!("token"));
        assert_eq!(stored_token(&browser).await, Value::Null);
        browser.wait_visible("#token").await;
        assert!(browser.find("#licenses").await.is_none());
        // Not signed in: no sign-out control, no navigation.
        let hidden = browser
            .execute(
                "return [document.getElementById('sign-out').hidden, \
                 document.getElementById('nav').hidden];",
                vec![],
            )
            .await;
        assert_eq!(hidden, json!([true, true]));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_phone_width_no_section_scrolls_sideways() {
    bounded(async {
        let fixture = Fixture::start().await;
        // Something in every section: a code with a long label, audit entries.
        fixture
            .test
            .admin
            .reusable_code(
                &fixture.a.id,
                serde_json::json!({ "label": "spring rollout for the northern depots", "max_uses": 40 }),
            )
            .await;
        let browser = Browser::start().await;
        browser.set_window_size(390, 844).await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        let row = license_row(&browser, &fixture.a.license_id).await;
        assert!(browser.text(&row).await.contains(&fixture.a.device_name));
        assert_no_sideways_scroll(&browser, "devices").await;
        for (section, ready) in [
            ("codes", "#codes tbody tr"),
            ("configurations", "#configurations"),
            ("audit", "table.audit tbody tr"),
        ] {
            fixture.open_section(&browser, &fixture.a.id, section).await;
            browser.wait_visible(ready).await;
            assert_no_sideways_scroll(&browser, section).await;
        }
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

/// The audit log page: newest first, a page at a time, only the organization's own entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_lists_the_newest_entries_first_and_pages_back() {
    bounded(async {
        let fixture = Fixture::start().await;
        // More entries than one page of the audit page (100).
        for index in 0..100 {
            fixture
                .test
                .admin
                .create_key(&fixture.a.id, &format!("extra key {index}"))
                .await;
        }
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_text("#org-name", &fixture.a.name).await;
        browser.click_css("#nav a[href$=\"/audit\"]").await;

        let newest = browser.wait_visible(".audit tbody tr").await;
        let text = browser.text(&newest).await;
        assert!(
            text.contains("key.created") && text.contains("extra key 99"),
            "the newest entry first: {text:?}"
        );
        assert_eq!(browser.find_all(".audit tbody tr").await.len(), 100);
        assert!(
            !browser
                .text(&browser.wait_visible(".audit tbody").await)
                .await
                .contains("device.paired"),
            "the pairing is older than the first page"
        );

        let more = browser.wait_visible("#audit-more").await;
        browser.click(&more).await;
        browser.wait_text(".audit tbody", "device.paired").await;
        assert!(browser.find_all(".audit tbody tr").await.len() > 100);
        // Everything is shown now: no more pages.
        assert!(
            browser.find("#audit-more").await.is_none()
                || browser
                    .execute(
                        "return document.getElementById('audit-more').hidden;",
                        vec![]
                    )
                    .await
                    == json!(true)
        );
        // Only this organization's entries.
        let page = browser.page_text().await;
        assert!(!page.contains(&fixture.b.device_name), "{page}");
        assert!(!page.contains(&fixture.b.id), "{page}");
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_section_opened_before_signing_in_opens_once_signed_in() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;
        // A bookmarked address, opened in a new tab: the sign-in form first, at that address.
        fixture
            .open_section(&browser, &fixture.a.id, "devices")
            .await;
        let field = browser.wait_visible("#token").await;
        browser
            .send_keys(&field, &format!("{}\u{E007}", fixture.a.key))
            .await;
        browser.wait_text("#org-name", &fixture.a.name).await;
        license_row(&browser, &fixture.a.license_id).await;
        let error = browser
            .execute(
                "return document.getElementById('sign-in-error')?.hidden ?? true;",
                vec![],
            )
            .await;
        assert_eq!(error, json!(true));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
