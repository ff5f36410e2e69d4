//! The operator's pages: create an organization, create, list and revoke its keys, and the new
//! organization's admin signing in with a key made there, with no call to the API outside the
//! browser.

use serde_json::{Value, json};

use crate::fixture::{Fixture, bounded};
use crate::support::OPERATOR_TOKEN;
use crate::webdriver::Browser;

/// The value of an input field (what the user would copy).
async fn field_value(browser: &Browser, css: &str) -> String {
    browser.wait_visible(css).await;
    let value = browser
        .execute(
            "return document.querySelector(arguments[0]).value;",
            vec![json!(css)],
        )
        .await;
    value.as_str().expect("a field's value").to_string()
}

/// Creates a key named `name` on the open Keys page; answers its secret, as the page shows it.
async fn create_key(browser: &Browser, name: &str) -> String {
    let field = browser.wait_visible("#key-name").await;
    browser.send_keys(&field, name).await;
    browser.click_css("#create-key").await;
    browser.wait_text("#new-key", name).await;
    let secret = field_value(browser, "#new-key-secret").await;
    assert!(secret.starts_with("paird_key_"), "{secret}");
    secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_an_organization_and_a_key_and_its_admin_signs_in_with_it() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, OPERATOR_TOKEN).await;

        // A new organization, from the list page; the portal goes on to its keys.
        let name = browser.wait_visible("#new-organization-name").await;
        browser.send_keys(&name, "Initech Field Services").await;
        browser.click_css("#create-organization").await;
        browser
            .wait_text("#org-name", "Initech Field Services")
            .await;
        browser.wait_visible("#no-keys").await;
        let url = browser.current_url().await;
        assert!(url.ends_with("/keys"), "{url}");
        let org = url
            .rsplit('/')
            .nth(1)
            .expect("the organization's id in the address")
            .to_string();
        let organizations = fixture.test.admin.get("/v1/organizations").await;
        let created: Vec<&Value> = organizations["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["name"] == "Initech Field Services")
            .collect();
        assert_eq!(created.len(), 1, "{organizations}");
        assert_eq!(created[0]["id"], json!(org));

        // A key: its secret is shown once, selectable, with a Copy button that copies it.
        let key = create_key(&browser, "admin portal").await;
        let copy = browser.wait_visible("#copy-key").await;
        browser.click(&copy).await;
        browser.wait_text("#new-key .copy-status", "Copied.").await;
        let row = browser
            .wait_visible("#keys tbody tr[data-status=\"active\"]")
            .await;
        let text = browser.text(&row).await;
        assert!(
            text.contains("admin portal") && text.contains("Active"),
            "{text}"
        );
        assert!(!browser.page_text().await.contains("No key yet"));

        // A second key, revoked from the list: it no longer signs in.
        let revoked = create_key(&browser, "old backend").await;
        assert_ne!(revoked, key);
        assert_eq!(browser.find_all("#keys tbody tr").await.len(), 2);
        browser
            .execute("window.confirm = () => true;", vec![])
            .await;
        browser
            .click_css("#keys tbody tr:first-child button[data-action=\"revoke-key\"]")
            .await;
        browser
            .wait_visible("#keys tbody tr:first-child[data-status=\"revoked\"]")
            .await;
        browser.wait_text("#keys-status", "is revoked").await;
        let keys = fixture
            .test
            .admin
            .get(&format!("/v1/organizations/{org}/keys"))
            .await;
        let revoked_at: Vec<bool> = keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| !key["revoked_at"].is_null())
            .collect();
        assert_eq!(revoked_at, vec![false, true], "{keys}");

        // The new organization's admin: the revoked key is refused, the first one opens the
        // new organization's Devices page, with no operator pages.
        browser.click_css("#sign-out").await;
        fixture.sign_in(&browser, &revoked).await;
        browser.wait_text("#sign-in-error", "not accepted").await;
        fixture.sign_in(&browser, &key).await;
        browser
            .wait_text("#org-name", "Initech Field Services")
            .await;
        let url = browser.current_url().await;
        assert!(
            url.ends_with(&format!("#/organizations/{org}/devices")),
            "{url}"
        );
        browser.wait_visible("#no-licenses").await;
        assert_eq!(
            browser
                .text(
                    &browser
                        .wait_visible("#summary [data-count=\"total\"]")
                        .await
                )
                .await,
            "0"
        );
        assert!(browser.find("#nav a[href$=\"/keys\"]").await.is_none());
        assert!(!browser.page_text().await.contains(&fixture.a.name));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
