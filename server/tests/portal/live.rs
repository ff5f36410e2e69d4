//! The pages follow the organization's live feed: with the Devices page open, a device that
//! pairs, goes offline, comes back, or applies or fails a revision shows up without a reload;
//! the Codes page shows new codes and their uses; the Configurations list, revisions, reports and
//! new configurations.

use protocol::AckOutcome;
use serde_json::{Value, json};

use crate::fixture::{Fixture, bounded};
use crate::support::*;
use crate::webdriver::Browser;

/// Marks the page; [`assert_not_reloaded`] checks the mark is still there.
pub async fn mark_page(browser: &Browser) {
    browser.execute("window.notReloaded = true;", vec![]).await;
}

pub async fn assert_not_reloaded(browser: &Browser) {
    assert_eq!(
        browser.execute("return window.notReloaded;", vec![]).await,
        json!(true),
        "the page was reloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_presence_and_applied_or_failed_revisions_show_without_a_reload() {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let org = fixture.a.id.clone();
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_text("#org-name", &fixture.a.name).await;
        browser
            .wait_visible("#live-state[data-state=\"live\"]")
            .await;
        mark_page(&browser).await;

        // A device pairs on organization A's free license: its row shows it, online, with the
        // organization's configuration pending; the free count drops to 0.
        let code = admin.reusable_code(&org, json!({})).await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let identity = identity();
        let mut connection = connect(&fixture.test.device_url(), protocol::Encoding::Json).await;
        let client::PairResult::Paired(paired) = connection
            .pair(&code, &identity, &device_info("Live Phone"))
            .await
            .unwrap()
        else {
            panic!("pairing refused");
        };
        let row = format!(
            "#licenses tr[data-license-id=\"{}\"][data-device-id=\"{}\"]",
            paired.license_id, paired.device_id
        );
        browser.wait_text(&row, "Live Phone").await;
        let online = format!("{row} .device-online");
        browser.wait_text(&online, "Online").await;
        browser
            .wait_text(&format!("{row} .configuration"), "Pending")
            .await;
        browser.wait_text("dd[data-count=\"free\"]", "0").await;
        browser.wait_visible("#no-free-licenses").await;

        // It applies its configuration.
        let received = next_configuration(&mut connection).await;
        assert!(acknowledge(&mut connection, &received, AckOutcome::Applied).await);
        browser
            .wait_text(&format!("{row} .configuration"), "Applied")
            .await;

        // It goes offline, and comes back.
        connection.close().await;
        browser.wait_text(&online, "Offline").await;
        let mut connection = connect(&fixture.test.device_url(), protocol::Encoding::Json).await;
        let runs = protocol::ConfigRef {
            configuration_id: received.configuration_id,
            revision: received.revision,
        };
        connection
            .resume(&identity, &device_info("Live Phone"), Some(runs))
            .await
            .unwrap();
        browser.wait_text(&online, "Online").await;

        // An edit of the configuration: both devices' rows go pending on revision 2; one device
        // fails to apply it, the other applies it.
        let configs = admin
            .get(&format!("/v1/organizations/{org}/configurations"))
            .await;
        let config = configs["items"][0]["id"].as_str().unwrap().to_string();
        admin
            .edit_config(&org, &config, "[GLOBAL]\nsynctime_low_threshold = 5\n")
            .await;
        browser
            .wait_text(&format!("{row} .configuration"), "rev. 2")
            .await;
        let van = format!(
            "#licenses tr[data-license-id=\"{}\"] .configuration",
            fixture.a.license_id
        );
        browser.wait_text(&van, "Pending").await;
        let edit = next_configuration(&mut connection).await;
        assert_eq!(edit.revision, 2);
        let failed = AckOutcome::Failed {
            reason: "storage full".into(),
        };
        assert!(acknowledge(&mut connection, &edit, failed).await);
        browser
            .wait_text(&format!("{row} .configuration"), "Failed: storage full")
            .await;
        let edit = next_configuration(&mut fixture.a.connection).await;
        assert!(acknowledge(&mut fixture.a.connection, &edit, AckOutcome::Applied).await);
        browser.wait_text(&van, "Applied").await;
        assert!(
            browser
                .text(&browser.wait_visible(&van).await)
                .await
                .contains("rev. 2")
        );

        // Licenses added by the operator appear, and the free count with them.
        admin.add_licenses(&org, 2).await;
        browser.wait_text("dd[data-count=\"free\"]", "2").await;
        let rows = browser
            .find_all("#licenses tbody tr[data-license-id]")
            .await;
        assert_eq!(rows.len(), 4);

        // Unpaired by someone else (another portal user, a backend): the row is free again.
        admin.unpair(&org, paired.device_id).await;
        let freed = format!(
            "#licenses tr[data-license-id=\"{}\"][data-status=\"free\"]",
            paired.license_id
        );
        browser.wait_visible(&freed).await;
        browser.wait_text("dd[data-count=\"free\"]", "3").await;
        assert_not_reloaded(&browser).await;

        // Nothing of organization B's showed on the way.
        let page = browser.page_text().await;
        assert!(!page.contains(&fixture.b.device_name), "{page}");
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_changes_do_not_reach_the_page() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser
            .wait_visible("#live-state[data-state=\"live\"]")
            .await;
        mark_page(&browser).await;
        let before = browser.find_all("#licenses tbody tr[data-license-id]").await.len();

        // Organization B gets a license and a device pairs on it.
        let license = admin.add_licenses(&fixture.b.id, 1).await;
        let code = admin.reusable_code(&fixture.b.id, json!({})).await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, _connection, paired) = pair_ok(&fixture.test.device_url(), &code).await;
        assert_eq!(paired.license_id.to_string(), license[0]);

        // Then organization A gets a license: by the time it shows, B's changes would have too.
        admin.add_licenses(&fixture.a.id, 1).await;
        browser.wait_text("dd[data-count=\"total\"]", "3").await;
        let rows = browser.find_all("#licenses tbody tr[data-license-id]").await;
        assert_eq!(rows.len(), before + 1);
        let page = browser.page_text().await;
        assert!(!page.contains(&fixture.b.device_name), "{page}");
        assert!(!page.contains(&license[0]), "{page}");
        let shown: Value = browser
            .execute(
                "return [...document.querySelectorAll('#licenses tr[data-license-id]')].map(r => r.dataset.licenseId);",
                vec![],
            )
            .await;
        assert!(!shown.as_array().unwrap().contains(&json!(license[0])));
        assert_not_reloaded(&browser).await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_codes_page_shows_new_codes_and_their_uses_without_a_reload() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_text("#org-name", &fixture.a.name).await;
        browser
            .follow_link("#nav a[href$=\"/codes\"]", "/codes")
            .await;
        browser.wait_visible("#codes").await;
        mark_page(&browser).await;

        // A code made elsewhere (a portal backend) appears; a pairing with it counts a use.
        let code = admin
            .reusable_code(&fixture.a.id, json!({ "label": "made elsewhere" }))
            .await;
        let row = format!(
            "#codes tr[data-code-id=\"{}\"]",
            code["id"].as_str().unwrap()
        );
        browser.wait_text(&row, "made elsewhere").await;
        let uses = format!("{row} td[data-label=\"Uses\"]");
        browser.wait_text(&uses, "0").await;
        let (_, _connection, _) =
            pair_ok(&fixture.test.device_url(), code["code"].as_str().unwrap()).await;
        browser.wait_text(&uses, "1").await;
        assert_not_reloaded(&browser).await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configurations_list_follows_edits_reports_and_new_configurations() {
    bounded(async {
        let mut fixture = Fixture::start().await;
        let org = fixture.a.id.clone();
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_text("#org-name", &fixture.a.name).await;
        fixture.open_section(&browser, &org, "configurations").await;
        browser.wait_visible("#configurations").await;
        mark_page(&browser).await;
        let admin = &fixture.test.admin;
        let configs = admin
            .get(&format!("/v1/organizations/{org}/configurations"))
            .await;
        let meters = configs["items"][0]["id"].as_str().unwrap().to_string();
        let row = format!("#configurations tr[data-config-id=\"{meters}\"]");

        // An edit made elsewhere: revision 2, nobody up to date until Van 7 applies it.
        admin
            .edit_config(&org, &meters, "[GLOBAL]\nsynctime_high_threshold = 600\n")
            .await;
        browser
            .wait_text(&format!("{row} [data-field=\"revision\"]"), "2")
            .await;
        browser
            .wait_text(&format!("{row} [data-field=\"devices\"]"), "0 up to date")
            .await;
        let edit = next_configuration(&mut fixture.a.connection).await;
        assert!(acknowledge(&mut fixture.a.connection, &edit, AckOutcome::Applied).await);
        browser
            .wait_text(&format!("{row} [data-field=\"devices\"]"), "1 up to date")
            .await;

        // A configuration created elsewhere appears, and new devices get it.
        admin.create_config(&org, "Gas meters", "[GLOBAL]\n").await;
        browser.wait_text("#new-devices-get", "Gas meters").await;
        browser.wait_text("#configurations", "Gas meters").await;
        assert_not_reloaded(&browser).await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
