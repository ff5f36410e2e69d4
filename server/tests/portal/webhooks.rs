//! The Webhooks page: a webhook added on the page receives the organization's events on a real
//! receiver on loopback, signed with the secret the page showed; its deliveries and their
//! outcomes show without a reload (a failure, then the retry driven by the server's clock); a
//! delivery is sent again from the page; the webhook is deleted from it.

use serde_json::json;

use crate::fixture::{Fixture, bounded};
use crate::support::*;
use crate::webdriver::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_added_on_the_page_shows_its_deliveries_live_and_sends_one_again() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let org = &fixture.a;
        let inbox = Inbox::default();
        let url = inbox.listen().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &org.key).await;
        browser
            .follow_link("#nav a[href$=\"/webhooks\"]", "/webhooks")
            .await;
        browser.wait_visible("#no-webhooks").await;

        // Added for pairings only: its secret is shown once.
        let field = browser.wait_visible("#webhook-url").await;
        browser.send_keys(&field, &url).await;
        browser.click_css("#webhook-kind-unpairings").await;
        browser.click_css("#create-webhook").await;
        browser.wait_text("#new-webhook", &url).await;
        let secret = browser
            .execute(
                "return document.querySelector('#new-webhook-secret').value;",
                vec![],
            )
            .await;
        let secret = secret.as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"), "{secret}");
        let listed = admin
            .get(&format!("/v1/organizations/{}/webhooks", org.id))
            .await;
        assert_eq!(listed["items"][0]["events"], json!(["pairings"]));

        // A pairing: delivered, signed with that secret, and shown as delivered.
        let code = admin.reusable_code(&org.id, json!({})).await;
        let code = code["code"].as_str().unwrap().to_string();
        let (_, _, paired) = pair_ok(&fixture.test.device_url(), &code).await;
        let received = inbox.wait_for(1).await;
        verify_with_documented_example(&secret, &received[0]);
        browser
            .wait_visible(".deliveries tr[data-state=\"delivered\"]")
            .await;

        // The receiver fails the next one: the page shows it pending with the answer, then
        // delivered once the server's clock reaches the retry.
        inbox.answer_next(&[500]);
        admin.unpair(&org.id, paired.device_id).await;
        pair_ok(&fixture.test.device_url(), &code).await;
        browser
            .wait_text(".deliveries tr[data-state=\"pending\"] .last-answer", "500")
            .await;
        admin.advance(11.0).await;
        eventually("both deliveries shown delivered", || async {
            let delivered = browser
                .find_all(".deliveries tr[data-state=\"delivered\"]")
                .await
                .len();
            let pending = browser
                .find_all(".deliveries tr[data-state=\"pending\"]")
                .await
                .len();
            (delivered == 2 && pending == 0).then_some(())
        })
        .await;

        // Sent again from the page: the receiver gets the first event again.
        let first = received[0].event_id.clone();
        browser
            .click_css(&format!(
                ".deliveries tr[data-event-id=\"{first}\"] [data-action=\"replay\"]"
            ))
            .await;
        eventually("the first event again", || async {
            let again = inbox
                .received()
                .iter()
                .filter(|delivery| delivery.event_id == first)
                .count();
            (again == 2).then_some(())
        })
        .await;

        // Deleted from the page.
        browser.click_css("[data-action=\"delete-webhook\"]").await;
        browser.accept_alert().await;
        browser.wait_visible("#no-webhooks").await;
        let listed = admin
            .get(&format!("/v1/organizations/{}/webhooks", org.id))
            .await;
        assert_eq!(listed["items"], json!([]));
        browser.quit().await;
    })
    .await;
}
