//! The Configurations page: create from the template with the problems shown by line before
//! saving, edit (a new revision that reaches the connected device, whose acknowledgement the
//! rollout then counts), the history (compare a revision with the current one, revert to it),
//! assign to several devices with checkboxes, delete (refused while assigned), and isolation
//! between organizations.

use protocol::AckOutcome;
use reqwest::Method;
use serde_json::{Value, json};

use crate::fixture::{Fixture, assert_no_sideways_scroll, bounded};
use crate::support::{acknowledge, next_configuration, pair_ok};
use crate::webdriver::Browser;

const ENTER: &str = "\u{E007}";
const BACKSPACE: &str = "\u{E003}";

/// Signs in with `key` and opens the Configurations section from the navigation.
pub async fn open_configurations(fixture: &Fixture, browser: &Browser, key: &str) {
    fixture.sign_in(browser, key).await;
    // The devices page first: signing in lands there.
    browser.wait_visible("#org-name").await;
    browser
        .follow_link("#nav a[href$=\"/configurations\"]", "/configurations")
        .await;
    browser.wait_visible("#new-devices-get").await;
}

/// The configurations of `org` as the admin API lists them.
async fn configurations(fixture: &Fixture, org: &str) -> Vec<Value> {
    let page = fixture
        .test
        .admin
        .get(&format!(
            "/v1/organizations/{org}/configurations?limit=1000"
        ))
        .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

/// The id of organization A's configuration named `name`.
async fn configuration_id(fixture: &Fixture, name: &str) -> String {
    configurations(fixture, &fixture.a.id)
        .await
        .into_iter()
        .find(|configuration| configuration["name"] == json!(name))
        .and_then(|configuration| configuration["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no configuration {name:?}"))
}

/// Opens the editor of a configuration from its row of the list.
pub async fn edit(browser: &Browser, config_id: &str) {
    let button = browser
        .wait_visible(&format!(
            "#configurations tr[data-config-id=\"{config_id}\"] button[data-action=\"edit\"]"
        ))
        .await;
    browser.click(&button).await;
    browser.wait_text("#editor-title", "Edit").await;
}

async fn editor_text(browser: &Browser) -> String {
    browser
        .execute(
            "return document.getElementById('config-body').value;",
            vec![],
        )
        .await
        .as_str()
        .expect("the editor's text")
        .to_string()
}

async fn save_disabled(browser: &Browser) -> bool {
    let save = browser.wait_visible("#save-config").await;
    browser.attribute(&save, "disabled").await.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_created_from_the_template_shows_errors_by_line_before_it_is_saved() {
    bounded(async {
        let fixture = Fixture::start().await;
        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        browser.wait_text("#new-devices-get", "“Meters”").await;

        browser.click_css("#new-configuration").await;
        browser
            .wait_text("#editor-title", "New configuration")
            .await;
        // Before anything is saved, the editor says that this changes what new devices get.
        browser
            .wait_text(
                "#new-devices-note",
                "Creating it changes what new devices get: this configuration instead of “Meters”",
            )
            .await;
        // The editor starts with the sample template, which is valid.
        browser
            .wait_text("#check-summary", "No problems found.")
            .await;
        assert_eq!(editor_text(&browser).await, server::SAMPLE_CONFIGURATION);
        assert!(!save_disabled(&browser).await);
        let page = browser.page_text().await;
        assert!(
            !page.contains("null") && !page.contains("undefined"),
            "{page}"
        );

        let name = browser.wait_visible("#config-name").await;
        browser.send_keys(&name, "Routes").await;
        // An upper-case key on a new last line: an error on that line.
        let body = browser.wait_visible("#config-body").await;
        let typed = "Retries = 3";
        browser.send_keys(&body, typed).await;
        let line = server::SAMPLE_CONFIGURATION.lines().count() + 1;
        let problem = browser
            .wait_visible(&format!(
                "#config-problems li[data-line=\"{line}\"][data-severity=\"error\"]"
            ))
            .await;
        let text = browser.text(&problem).await;
        assert!(
            text.starts_with(&format!("Line {line} · error · ")),
            "{text:?}"
        );
        assert!(text.contains("lower case"), "{text:?}");
        browser.wait_text("#check-summary", "1 error").await;
        assert!(save_disabled(&browser).await);

        // Activating the problem puts the caret on its line.
        browser
            .click_css(&format!("#config-problems li[data-line=\"{line}\"] button"))
            .await;
        let caret = browser
            .execute(
                "const t = document.getElementById('config-body'); \
                 return [document.activeElement === t, \
                 t.value.slice(0, t.selectionStart).split('\\n').length];",
                vec![],
            )
            .await;
        assert_eq!(caret, json!([true, line]));

        // Enter in the name field submits nothing while there are errors: nothing is saved.
        browser.send_keys(&name, ENTER).await;
        assert_eq!(configurations(&fixture, &fixture.a.id).await.len(), 1);

        // Fixed (the typed line erased again), it saves.
        let body = browser.wait_visible("#config-body").await;
        browser
            .execute(
                "const t = document.getElementById('config-body'); \
                 t.setSelectionRange(t.value.length, t.value.length);",
                vec![],
            )
            .await;
        browser
            .send_keys(&body, &BACKSPACE.repeat(typed.len()))
            .await;
        browser
            .wait_text("#check-summary", "No problems found.")
            .await;
        assert!(browser.find("#config-problems li").await.is_none());
        assert_eq!(editor_text(&browser).await, server::SAMPLE_CONFIGURATION);
        let save = browser.wait_visible("#save-config").await;
        browser.click(&save).await;

        browser
            .wait_text("#config-notice", "Created “Routes”")
            .await;
        let routes = configuration_id(&fixture, "Routes").await;
        let row = browser
            .wait_visible(&format!("#configurations tr[data-config-id=\"{routes}\"]"))
            .await;
        assert!(browser.text(&row).await.contains("Routes"));
        // The newest configuration is the one new devices get.
        let sentence = browser.wait_text("#new-devices-get", "“Routes”").await;
        assert!(!sentence.contains("Meters"), "{sentence}");
        let stored = fixture
            .test
            .admin
            .get(&format!(
                "/v1/organizations/{}/configurations/{routes}",
                fixture.a.id
            ))
            .await;
        assert_eq!(stored["body"], json!(server::SAMPLE_CONFIGURATION));
        assert_eq!(stored["revision"], json!(1));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_an_edit_makes_a_revision_that_reaches_the_device_and_its_rollout_counts_it() {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let meters = configuration_id(&fixture, "Meters").await;
        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        edit(&browser, &meters).await;
        browser.wait_text("#config-meta", "Revision 1").await;
        // Van 7 applied revision 1 when it paired.
        browser
            .wait_visible("#rollout-revisions tr[data-revision=\"1\"]")
            .await;
        browser
            .wait_text("#rollout-summary", "Assigned to 1 device; 1 up to date")
            .await;

        // A misspelled known key: a warning on its line, which does not stop the save.
        let body = browser.wait_visible("#config-body").await;
        browser
            .send_keys(&body, "synctime_hihg_threshold = 600")
            .await;
        let warning = browser
            .wait_visible("#config-problems li[data-line=\"2\"][data-severity=\"warning\"]")
            .await;
        let text = browser.text(&warning).await;
        assert!(text.starts_with("Line 2 · warning · "), "{text:?}");
        browser
            .wait_text("#check-summary", "No errors, 1 warning")
            .await;
        assert!(!save_disabled(&browser).await);
        let save = browser.wait_visible("#save-config").await;
        browser.click(&save).await;
        browser
            .wait_text("#save-status", "Saved as revision 2")
            .await;
        browser.wait_text("#config-meta", "Revision 2").await;

        // The connected device receives the new revision, byte for byte.
        let received = next_configuration(&mut fixture.a.connection).await;
        assert_eq!(received.configuration_id.to_string(), meters);
        assert_eq!(received.revision, 2);
        assert_eq!(received.body, "[GLOBAL]\nsynctime_hihg_threshold = 600");
        assert!(acknowledge(&mut fixture.a.connection, &received, AckOutcome::Applied).await);

        // The open editor's rollout follows the live feed: the device's report shows at once.
        browser
            .wait_text("#rollout-summary", "1 up to date with revision 2")
            .await;
        let applied = browser
            .wait_visible("#rollout-revisions tr[data-revision=\"2\"] [data-count=\"applied\"]")
            .await;
        assert_eq!(browser.text(&applied).await, "1");

        // Reopened after a reload, the rollout counts it under revision 2.
        browser.execute("location.reload();", vec![]).await;
        let row = browser
            .wait_visible(&format!("#configurations tr[data-config-id=\"{meters}\"]"))
            .await;
        let text = browser.text(&row).await;
        assert!(text.contains("1 assigned · 1 up to date"), "{text:?}");
        edit(&browser, &meters).await;
        let applied = browser
            .wait_visible("#rollout-revisions tr[data-revision=\"2\"] [data-count=\"applied\"]")
            .await;
        assert_eq!(browser.text(&applied).await, "1");
        let failed = browser
            .wait_visible("#rollout-revisions tr[data-revision=\"2\"] [data-count=\"failed\"]")
            .await;
        assert_eq!(browser.text(&failed).await, "0");
        // The device counts once, under its last report: revision 1 is no longer listed.
        assert!(
            browser
                .find("#rollout-revisions tr[data-revision=\"1\"]")
                .await
                .is_none()
        );
        browser
            .wait_text("#rollout-summary", "1 up to date with revision 2")
            .await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinning_a_configuration_keeps_new_devices_on_it_and_the_page_says_so() {
    bounded(async {
        let fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let admin = &fixture.test.admin;
        admin.create_config(&org, "Routes", "[GLOBAL]\n").await;
        let meters = configuration_id(&fixture, "Meters").await;
        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        let sentence = browser.wait_text("#new-devices-get", "“Routes”").await;
        assert!(sentence.contains("most recently created"), "{sentence}");

        // Pin Meters from its row.
        browser
            .click_css(&format!(
                "#configurations tr[data-config-id=\"{meters}\"] button[data-action=\"pin\"]"
            ))
            .await;
        browser
            .wait_text("#config-notice", "New devices now get “Meters”")
            .await;
        let sentence = browser.wait_text("#new-devices-get", "“Meters”").await;
        assert!(sentence.contains("pinned"), "{sentence}");
        let row = browser
            .wait_visible(&format!("#configurations tr[data-config-id=\"{meters}\"]"))
            .await;
        assert!(browser.text(&row).await.contains("new devices · pinned"));
        let rule = admin
            .get(&format!("/v1/organizations/{org}/new-device-configuration"))
            .await;
        assert_eq!(
            (rule["rule"].clone(), rule["configuration_id"].clone()),
            (json!("pinned"), json!(meters))
        );

        // A new configuration would not change that, and the editor says so before saving.
        browser.click_css("#new-configuration").await;
        browser
            .wait_text(
                "#new-devices-note",
                "New devices keep getting the pinned “Meters”",
            )
            .await;
        let back = browser.wait_visible("#back-to-list").await;
        browser.click(&back).await;

        // Unpinned: back to the newest.
        browser.click_css("#unpin").await;
        browser
            .wait_text(
                "#config-notice",
                "Unpinned: new devices get the most recently created configuration again, “Routes”",
            )
            .await;
        browser.wait_text("#new-devices-get", "“Routes”").await;
        let rule = admin
            .get(&format!("/v1/organizations/{org}/new-device-configuration"))
            .await;
        assert_eq!(rule["rule"], json!("newest"));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_compares_a_revision_with_the_current_one_and_reverts_to_it() {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let meters = configuration_id(&fixture, "Meters").await;
        // Revision 2, saved through the API by the operator, reaches Van 7.
        fixture
            .test
            .admin
            .edit_config(&fixture.a.id, &meters, "[GLOBAL]\ninterval = 30\n")
            .await;
        assert_eq!(
            next_configuration(&mut fixture.a.connection).await.revision,
            2
        );
        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        edit(&browser, &meters).await;
        let row = |revision: u64| format!("#history-revisions tr[data-revision=\"{revision}\"]");
        let by = browser
            .wait_visible(&format!("{} [data-field=\"saved-by\"]", row(2)))
            .await;
        assert_eq!(browser.text(&by).await, "operator");
        let current = browser.text(&browser.wait_visible(&row(2)).await).await;
        assert!(current.contains("(current)"), "{current:?}");
        assert!(
            browser.find(&format!("{} button", row(2))).await.is_none(),
            "the current revision has nothing to compare or revert to"
        );

        // Compare revision 1 with the current text: one line added, shown as such.
        browser
            .click_css(&format!("{} button[data-action=\"compare\"]", row(1)))
            .await;
        browser
            .wait_text("#history-diff-summary", "1 line added, 0 lines removed")
            .await;
        let added = browser.wait_visible("#history-diff .diff-line.add").await;
        assert_eq!(browser.text(&added).await, "+interval = 30");
        assert!(browser.find("#history-diff .diff-line.del").await.is_none());

        // Revert to revision 1: its text becomes revision 3, in the editor and on the device.
        browser
            .execute("window.confirm = () => true;", vec![])
            .await;
        browser
            .click_css(&format!("{} button[data-action=\"revert\"]", row(1)))
            .await;
        browser
            .wait_text(
                "#history-status",
                "Reverted: the text of revision 1 is saved as revision 3",
            )
            .await;
        browser.wait_text("#config-meta", "Revision 3").await;
        assert_eq!(editor_text(&browser).await, "[GLOBAL]\n");
        browser.wait_visible(&row(3)).await;
        let received = next_configuration(&mut fixture.a.connection).await;
        assert_eq!(
            (received.revision, received.body.as_str()),
            (3, "[GLOBAL]\n")
        );
        let history = fixture
            .test
            .admin
            .get(&format!(
                "/v1/organizations/{}/configurations/{meters}/revisions",
                fixture.a.id
            ))
            .await;
        let saved_by = history["items"][0]["saved_by"].as_str().unwrap();
        assert!(
            saved_by.starts_with("key:"),
            "reverted with the portal's key: {saved_by}"
        );
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_is_assigned_to_several_devices_picked_with_checkboxes() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        // A second device takes organization A's free license.
        let code = admin.reusable_code(&fixture.a.id, json!({})).await["code"]
            .as_str()
            .expect("a code")
            .to_string();
        let (_, _second_connection, second) = pair_ok(&fixture.test.device_url(), &code).await;
        let second_id = second.device_id.to_string();
        let routes = admin
            .create_config(&fixture.a.id, "Routes", "[GLOBAL]\nrest_timeout = 10\n")
            .await;
        for device in [&fixture.a.device_id, &second_id] {
            let assigned = admin.device(&fixture.a.id, device).await;
            assert_ne!(assigned["configuration"]["id"], json!(routes));
        }

        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        edit(&browser, &routes).await;
        browser
            .wait_text("#rollout-summary", "Assigned to 0 devices")
            .await;
        let picks = browser.wait_visible("#assign-form").await;
        assert!(browser.text(&picks).await.contains(&fixture.a.device_name));
        let assign = browser.wait_visible("#assign-button").await;
        assert!(browser.attribute(&assign, "disabled").await.is_some());

        browser.click_css("#assign-all").await;
        let checked = browser
            .execute(
                "return [...document.querySelectorAll('.device-pick')] \
                 .map((box) => [box.value, box.checked]);",
                vec![],
            )
            .await;
        let mut checked: Vec<(String, bool)> = serde_json::from_value(checked).unwrap();
        checked.sort();
        let mut expected = vec![
            (fixture.a.device_id.clone(), true),
            (second_id.clone(), true),
        ];
        expected.sort();
        assert_eq!(checked, expected);
        browser
            .wait_text("#assign-button", "Assign to 2 devices")
            .await;
        browser.click(&assign).await;
        browser.wait_text("#assign-result", "to 2 devices").await;
        browser
            .wait_text("#rollout-summary", "Assigned to 2 devices")
            .await;

        for device in [&fixture.a.device_id, &second_id] {
            let assigned = admin.device(&fixture.a.id, device).await;
            assert_eq!(assigned["configuration"]["id"], json!(routes), "{assigned}");
        }
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_assigned_configuration_is_refused_with_a_message_and_an_unassigned_one_goes() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let meters = configuration_id(&fixture, "Meters").await;
        let spare = admin
            .create_config(&fixture.a.id, "Spare", "[GLOBAL]\n")
            .await;
        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        browser.wait_text("#new-devices-get", "“Spare”").await;
        browser
            .execute("window.confirm = () => true;", vec![])
            .await;

        // Meters is assigned to Van 7: refused, said so, and still listed.
        browser
            .click_css(&format!(
                "#configurations tr[data-config-id=\"{meters}\"] button[data-action=\"delete\"]"
            ))
            .await;
        let message = browser
            .wait_text("#config-notice", "assigned to 1 device")
            .await;
        assert!(message.contains("Meters"), "{message}");
        assert!(message.contains("not deleted"), "{message}");
        browser
            .wait_visible(&format!("#configurations tr[data-config-id=\"{meters}\"]"))
            .await;
        assert_eq!(browser.find_all("#configurations tbody tr").await.len(), 2);
        let (status, _) = admin
            .call(
                Method::GET,
                &format!("/v1/organizations/{}/configurations/{meters}", fixture.a.id),
                None,
            )
            .await;
        assert_eq!(status, 200);

        // Spare has no device: it goes, and new devices get Meters again.
        browser
            .click_css(&format!(
                "#configurations tr[data-config-id=\"{spare}\"] button[data-action=\"delete\"]"
            ))
            .await;
        browser.wait_text("#config-notice", "Deleted “Spare”").await;
        browser.wait_text("#new-devices-get", "“Meters”").await;
        assert!(
            browser
                .find(&format!("#configurations tr[data-config-id=\"{spare}\"]"))
                .await
                .is_none()
        );
        let (status, _) = admin
            .call(
                Method::GET,
                &format!("/v1/organizations/{}/configurations/{spare}", fixture.a.id),
                None,
            )
            .await;
        assert_eq!(status, 404);
        assert_eq!(configurations(&fixture, &fixture.a.id).await.len(), 1);
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_key_never_sees_its_configurations() {
    bounded(async {
        let fixture = Fixture::start().await;
        let meters = configuration_id(&fixture, "Meters").await;
        let browser = Browser::start().await;
        open_configurations(&fixture, &browser, &fixture.b.key).await;
        // B has none: new devices wait.
        browser
            .wait_text("#new-devices-get", "no configuration yet")
            .await;
        browser.wait_visible("#no-configurations").await;
        let page = browser.page_text().await;
        assert!(!page.contains("Meters"), "{page}");

        // A's configurations by address: an error, never A's data.
        fixture
            .open_section(&browser, &fixture.a.id, "configurations")
            .await;
        let alert = browser.wait_visible("main [role=\"alert\"]").await;
        assert!(browser.text(&alert).await.contains("Not found"));
        let page = browser.page_text().await;
        assert!(!page.contains("Meters"), "{page}");
        assert!(!page.contains(&fixture.a.name), "{page}");
        assert!(browser.find("#configurations").await.is_none());
        let html = browser
            .execute("return document.documentElement.outerHTML;", vec![])
            .await;
        assert!(!html.as_str().unwrap().contains(&meters));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_phone_width_the_configurations_list_and_editor_do_not_scroll_sideways() {
    bounded(async {
        let fixture = Fixture::start().await;
        let meters = configuration_id(&fixture, "Meters").await;
        let browser = Browser::start().await;
        browser.set_window_size(390, 844).await;
        open_configurations(&fixture, &browser, &fixture.a.key).await;
        browser
            .wait_visible(&format!("#configurations tr[data-config-id=\"{meters}\"]"))
            .await;
        assert_no_sideways_scroll(&browser, "the list").await;
        edit(&browser, &meters).await;
        browser.wait_visible("#assign-form").await;
        // A long line in the editor scrolls inside the editor, not the page.
        let body = browser.wait_visible("#config-body").await;
        browser
            .send_keys(
                &body,
                &format!("rest_url = https://portal.example.com/{}", "a".repeat(300)),
            )
            .await;
        browser.wait_text("#check-summary", "No problems").await;
        assert_no_sideways_scroll(&browser, "the editor").await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
