//! The Configurations editor's staged rollout panel, with real devices: the editor's text started
//! as a staged rollout for a share of the devices, its state and counts followed live (a chosen
//! device's failure halts it), promoted from the page; an automatic promotion (the server's
//! clock moved on) shown live; a plain save during a rollout asks first; the list marks the
//! configuration being rolled out.

use std::collections::HashMap;

use client::Connection;
use protocol::AckOutcome;
use serde_json::{Value, json};

use crate::configurations::{edit, open_configurations};
use crate::fixture::{Fixture, bounded};
use crate::support::{acknowledge, next_configuration, pair_ok};
use crate::webdriver::Browser;

/// Organization A's "Meters" (on Van 7, which applied revision 1) with `extra` more devices
/// paired on it, each having applied revision 1 too: the configuration's id and the extra
/// devices' connections by device id.
async fn meters_fleet(fixture: &Fixture, extra: u32) -> (String, HashMap<String, Connection>) {
    let admin = &fixture.test.admin;
    let org = &fixture.a.id;
    admin.add_licenses(org, extra).await;
    let code = admin.reusable_code(org, json!({})).await["code"]
        .as_str()
        .expect("a code")
        .to_string();
    let mut devices = HashMap::new();
    for _ in 0..extra {
        let (_, mut connection, paired) = pair_ok(&fixture.test.device_url(), &code).await;
        let first = next_configuration(&mut connection).await;
        assert_eq!(first.revision, 1);
        assert!(acknowledge(&mut connection, &first, AckOutcome::Applied).await);
        devices.insert(paired.device_id.to_string(), connection);
    }
    let configurations = admin
        .get(&format!("/v1/organizations/{org}/configurations"))
        .await;
    let meters = configurations["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (meters, devices)
}

/// The connection of device `id`: Van 7's is the fixture's, the others' are in `others`.
fn connection<'a>(
    fixture: &'a mut Fixture,
    others: &'a mut HashMap<String, Connection>,
    id: &str,
) -> &'a mut Connection {
    if id == fixture.a.device_id {
        &mut fixture.a.connection
    } else {
        others.get_mut(id).expect("a device of the fleet")
    }
}

/// Each device's revision to run, as the admin API lists the devices.
async fn revisions(fixture: &Fixture) -> HashMap<String, u64> {
    fixture
        .test
        .admin
        .devices(&fixture.a.id)
        .await
        .iter()
        .map(|device| {
            (
                device["id"].as_str().unwrap().to_string(),
                device["configuration"]["revision"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn configuration(fixture: &Fixture, meters: &str) -> Value {
    fixture
        .test
        .admin
        .get(&format!(
            "/v1/organizations/{}/configurations/{meters}",
            fixture.a.id
        ))
        .await
}

/// Types `text` at the end of the editor's body and waits until the check found no problem.
async fn type_in_editor(browser: &Browser, text: &str) {
    let body = browser.wait_visible("#config-body").await;
    browser
        .execute(
            "const t = document.getElementById('config-body'); \
             t.setSelectionRange(t.value.length, t.value.length);",
            vec![],
        )
        .await;
    browser.send_keys(&body, text).await;
    browser
        .wait_text("#check-summary", "No problems found.")
        .await;
}

/// Replaces the value of the number field `css`.
async fn fill(browser: &Browser, css: &str, value: &str) {
    let field = browser.wait_visible(css).await;
    browser.clear(&field).await;
    browser.send_keys(&field, value).await;
}

/// Marks the page; [`not_reloaded`] then tells whether it is still the same document.
async fn mark_page(browser: &Browser) {
    browser.execute("window.notReloaded = true;", vec![]).await;
}

async fn not_reloaded(browser: &Browser) -> bool {
    browser
        .execute("return window.notReloaded === true;", vec![])
        .await
        == json!(true)
}

const COUNT: &str = "[data-count=\"applied\"]";
const FAILED: &str = "[data-count=\"failed\"]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_started_from_the_editor_halts_live_on_a_failure_and_is_promoted_from_the_page()
 {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let (meters, mut others) = meters_fleet(&fixture, 3).await;
        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        edit(&browser, &meters).await;
        browser
            .wait_text("#staged-none", "No staged rollout yet.")
            .await;
        mark_page(&browser).await;

        // The form's defaults: 10 %, no automatic promotion, no failure allowed.
        let share = browser.wait_visible("#staged-share").await;
        assert_eq!(
            browser.attribute(&share, "value").await.as_deref(),
            Some("10")
        );
        let failures = browser.wait_visible("#staged-max-failures").await;
        assert_eq!(
            browser.attribute(&failures, "value").await.as_deref(),
            Some("0")
        );
        let hours = browser.wait_visible("#staged-hours").await;
        assert!(browser.attribute(&hours, "disabled").await.is_some());

        // The edited text, to half the devices, promoted after an hour.
        type_in_editor(&browser, "rest_timeout = 10").await;
        fill(&browser, "#staged-share", "50").await;
        browser.click_css("#staged-auto").await;
        fill(&browser, "#staged-hours", "1").await;
        browser.click_css("#start-rollout").await;
        browser
            .wait_text(
                "#staged-status",
                "Started: revision 2 goes to 2 devices first (50%)",
            )
            .await;
        browser
            .wait_text(
                "#staged-state",
                "Running: revision 2 on 2 of 4 devices (50%), the others on revision 1; \
                 promotes itself at ",
            )
            .await;
        let state = browser.wait_text("#staged-state", "unless more than").await;
        assert!(
            state.ends_with("unless more than 0 devices fail."),
            "{state}"
        );
        browser.wait_visible("#halt-rollout").await;
        let form_hidden = browser
            .execute(
                "return document.getElementById('staged-form').hidden;",
                vec![],
            )
            .await;
        assert_eq!(form_hidden, json!(true));
        let stable = "#staged-counts tr[data-revision=\"1\"]";
        let staged = "#staged-counts tr[data-revision=\"2\"]";
        browser.wait_text(&format!("{stable} {COUNT}"), "4").await;
        assert_eq!(
            browser
                .text(&browser.wait_visible(&format!("{staged} {COUNT}")).await)
                .await,
            "0"
        );

        // The API agrees: two devices chosen, which receive revision 2 with the edited text.
        let stored = configuration(&fixture, &meters).await;
        assert_eq!(
            (
                stored["revision"].clone(),
                stored["staged_revision"].clone()
            ),
            (json!(1), json!(2))
        );
        let targets = revisions(&fixture).await;
        let mut chosen: Vec<String> = targets
            .iter()
            .filter(|(_, revision)| **revision == 2)
            .map(|(id, _)| id.clone())
            .collect();
        chosen.sort();
        assert_eq!(chosen.len(), 2, "{targets:?}");
        let mut received = Vec::new();
        for id in &chosen {
            let pushed = next_configuration(connection(&mut fixture, &mut others, id)).await;
            assert_eq!(
                (pushed.revision, pushed.body.as_str()),
                (2, "[GLOBAL]\nrest_timeout = 10")
            );
            received.push(pushed);
        }

        // One chosen device applies it: the counts follow live.
        assert!(
            acknowledge(
                connection(&mut fixture, &mut others, &chosen[0]),
                &received[0],
                AckOutcome::Applied
            )
            .await
        );
        browser.wait_text(&format!("{staged} {COUNT}"), "1").await;
        browser.wait_text(&format!("{stable} {COUNT}"), "3").await;

        // The other fails to: more than the 0 allowed, the server halts it, the page says so
        // without being reloaded.
        assert!(
            acknowledge(
                connection(&mut fixture, &mut others, &chosen[1]),
                &received[1],
                AckOutcome::Failed {
                    reason: "storage full".into()
                }
            )
            .await
        );
        browser
            .wait_text(
                "#staged-state",
                "Halted: 1 device failed to apply revision 2 (more than the 0 allowed). \
                 The chosen devices keep it; promote it, or save again",
            )
            .await;
        browser.wait_text(&format!("{staged} {FAILED}"), "1").await;
        assert!(browser.find("#halt-rollout").await.is_none());
        assert!(not_reloaded(&browser).await, "the page was reloaded");

        // Promoted from the page (after its question): every device's revision is 2.
        browser.click_css("#promote-rollout").await;
        let question = browser.accept_alert().await;
        assert!(
            question.contains("Promote revision 2 to every device"),
            "{question}"
        );
        browser
            .wait_text(
                "#staged-last",
                "Last staged rollout: revision 2 promoted to every device",
            )
            .await;
        let last = browser
            .wait_text("#staged-last", "by an organization key")
            .await;
        assert!(!last.contains("null"), "{last}");
        browser
            .wait_text("#staged-status", "Promoted: revision 2")
            .await;
        browser.wait_text("#config-meta", "Revision 2").await;
        assert!(browser.find("#promote-rollout").await.is_none());
        // The form is back, for the next one.
        browser.wait_visible("#start-rollout").await;

        let targets = revisions(&fixture).await;
        assert!(
            targets.values().all(|revision| *revision == 2),
            "{targets:?}"
        );
        assert_eq!(targets.len(), 4);
        let stored = configuration(&fixture, &meters).await;
        assert_eq!(
            (
                stored["revision"].clone(),
                stored["staged_revision"].clone()
            ),
            (json!(2), Value::Null)
        );
        // The devices that were not chosen receive revision 2 now.
        let unchosen: Vec<String> = targets
            .keys()
            .filter(|id| !chosen.contains(id))
            .cloned()
            .collect();
        for id in &unchosen {
            let pushed = next_configuration(connection(&mut fixture, &mut others, id)).await;
            assert_eq!(pushed.revision, 2);
        }
        assert!(not_reloaded(&browser).await, "the page was reloaded");
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_promoting_itself_shows_live_and_a_plain_save_meanwhile_asks_first() {
    bounded(async {
        let fixture = Fixture::start().await;
        let (meters, _others) = meters_fleet(&fixture, 1).await;
        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        edit(&browser, &meters).await;

        // The default share (10 % of 2 devices, rounded up: 1), promoted after a day.
        type_in_editor(&browser, "rest_timeout = 10").await;
        browser.click_css("#staged-auto").await;
        browser.click_css("#start-rollout").await;
        browser
            .wait_text(
                "#staged-state",
                "Running: revision 2 on 1 of 2 devices (10%), the others on revision 1; \
                 promotes itself at ",
            )
            .await;
        browser
            .wait_text("#config-meta", "Revision 1 · revision 2 staged")
            .await;

        // The list marks it; the editor opened again holds the staged text.
        browser.click_css("#back-to-list").await;
        browser
            .wait_text(
                &format!("#configurations tr[data-config-id=\"{meters}\"] [data-field=\"staged\"]"),
                "rolling out r2 to 10%",
            )
            .await;
        edit(&browser, &meters).await;
        browser.wait_visible("#staged-state").await;
        let text = browser
            .execute(
                "return document.getElementById('config-body').value;",
                vec![],
            )
            .await;
        assert_eq!(text, json!("[GLOBAL]\nrest_timeout = 10"));
        mark_page(&browser).await;

        // A plain save now would supersede the rollout: the page asks, and cancelled, nothing
        // is saved.
        type_in_editor(&browser, "\nexport_folder = /sdcard/out").await;
        browser.click_css("#save-config").await;
        let question = browser.dismiss_alert().await;
        assert!(question.contains("Saving now supersedes it"), "{question}");
        browser
            .wait_text("#save-status", "Not saved: the staged rollout goes on.")
            .await;
        let stored = configuration(&fixture, &meters).await;
        assert_eq!(
            (
                stored["revision"].clone(),
                stored["staged_revision"].clone()
            ),
            (json!(1), json!(2))
        );

        // A day later (the server's clock moved on), the server promotes it; the page shows it.
        fixture.test.admin.advance(86_401.0).await;
        let last = browser
            .wait_text(
                "#staged-last",
                "Last staged rollout: revision 2 promoted to every device",
            )
            .await;
        assert!(last.contains("(it promoted itself)"), "{last}");
        browser.wait_text("#config-meta", "Revision 2").await;
        assert!(not_reloaded(&browser).await, "the page was reloaded");
        let stored = configuration(&fixture, &meters).await;
        assert_eq!(
            (
                stored["revision"].clone(),
                stored["staged_revision"].clone()
            ),
            (json!(2), Value::Null)
        );
        let targets = revisions(&fixture).await;
        assert!(
            targets.values().all(|revision| *revision == 2),
            "{targets:?}"
        );
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
