//! The Devices page at fleet scale: the list is the admin API's fleet list, one page of 50 at a
//! time, searched, filtered and sorted by the server, with its state in the address; live
//! pairings that match the list show up; rows selected for actions on many devices; CSV export.
//! Every count the page shows is checked against the admin API's answer for the same filters.

use client::{Connection, PairResult};
use protocol::Encoding;
use serde_json::{Value, json};

use crate::devices::{wait_gone, wait_script};
use crate::fixture::{Fixture, assert_no_sideways_scroll_at, bounded};
use crate::support::{connect, device_info, identity};
use crate::webdriver::{Browser, keys};

/// Pairs a new device named `name` (reporting `app_version`) with `code`; returns its connection
/// (kept open: the device stays online) and its device id.
async fn pair_named(
    fixture: &Fixture,
    code: &str,
    name: &str,
    app_version: &str,
) -> (Connection, String) {
    let mut connection = connect(&fixture.test.device_url(), Encoding::Postcard).await;
    let mut info = device_info(name);
    info.app_version = app_version.into();
    match connection
        .pair(code, &identity(), &info)
        .await
        .expect("pairing answered")
    {
        PairResult::Paired(paired) => (connection, paired.device_id.to_string()),
        PairResult::Refused(refused) => panic!("pairing refused: {refused:?}"),
    }
}

/// The admin API's total of the license list with `query` (the oracle for the page's counts).
async fn api_total(fixture: &Fixture, org: &str, query: &str) -> u64 {
    let page = fixture
        .test
        .admin
        .get(&format!("/v1/organizations/{org}/licenses?limit=1&{query}"))
        .await;
    page["total"].as_u64().expect("a total")
}

/// Sets a filter control's value as a user picking it does, and waits for the list that follows.
async fn choose(browser: &Browser, css: &str, value: &str) {
    browser.wait_visible(css).await;
    browser
        .execute(
            "const control = document.querySelector(arguments[0]); control.value = arguments[1]; \
             control.dispatchEvent(new Event('change', { bubbles: true }));",
            vec![json!(css), json!(value)],
        )
        .await;
}

/// Waits until the range line says `expected` exactly and the list is not loading.
async fn wait_range(browser: &Browser, expected: &str) {
    let script = format!(
        "const range = document.querySelector('#devices-range'); \
         return range && range.textContent === {} && !document.querySelector('#licenses[aria-busy]');",
        serde_json::to_string(expected).unwrap()
    );
    wait_script(browser, &script, &format!("the range to read {expected:?}")).await;
}

/// The device names of the rows shown, in order (free licenses have none).
async fn shown_names(browser: &Browser) -> Value {
    browser
        .execute(
            "return [...document.querySelectorAll('#licenses tbody tr[data-license-id] .device-name')].map(e => e.textContent);",
            vec![],
        )
        .await
}

/// Reloads the page (a new document: nothing of the old one is kept) and waits for the list.
async fn reload(browser: &Browser, range: &str) {
    browser
        .execute("window.oldDocument = true; location.reload();", vec![])
        .await;
    wait_script(
        browser,
        "return window.oldDocument === undefined && document.readyState === 'complete';",
        "the reload",
    )
    .await;
    wait_range(browser, range).await;
}

/// "1–N of N" for a list of N ≤ 50 rows.
fn one_page(total: u64) -> String {
    format!("1–{total} of {total}")
}

/// Organization A with 120 licenses and, besides Van 7 (online, applied Meters), "Forklift 1" and
/// "Forklift 2" paired with a second code and "Scanner X" (app 5.0.0, offline).
struct Fleet {
    fixture: Fixture,
    forklift_code: String,
    _connections: Vec<Connection>,
}

async fn fleet() -> Fleet {
    let fixture = Fixture::start().await;
    let admin = &fixture.test.admin;
    let org = fixture.a.id.clone();
    admin.add_licenses(&org, 118).await;
    let code = admin.reusable_code(&org, json!({})).await;
    let forklift_code = code["id"].as_str().expect("a code id").to_string();
    let code = code["code"].as_str().expect("a code").to_string();
    let mut connections = Vec::new();
    for name in ["Forklift 2", "Forklift 1"] {
        connections.push(pair_named(&fixture, &code, name, "4.2.1").await.0);
    }
    let other = admin.reusable_code(&org, json!({})).await["code"]
        .as_str()
        .expect("a code")
        .to_string();
    let (scanner, _) = pair_named(&fixture, &other, "Scanner X", "5.0.0").await;
    // Scanner X goes offline.
    drop(scanner);
    Fleet {
        fixture,
        forklift_code,
        _connections: connections,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_forward_and_back_with_the_total_and_the_address_survives_a_reload() {
    bounded(async {
        let Fleet { fixture, .. } = fleet().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        wait_range(&browser, "1–50 of 120").await;
        assert_eq!(
            browser
                .find_all("#licenses tbody tr[data-license-id]")
                .await
                .len(),
            50
        );
        assert!(browser.find("#page-previous:disabled").await.is_some());

        let next = browser.wait_visible("#page-next").await;
        browser.click(&next).await;
        wait_range(&browser, "51–100 of 120").await;
        browser.click(&next).await;
        wait_range(&browser, "101–120 of 120").await;
        assert_eq!(
            browser
                .find_all("#licenses tbody tr[data-license-id]")
                .await
                .len(),
            20
        );
        assert!(browser.find("#page-next:disabled").await.is_some());
        browser.click_css("#page-previous").await;
        wait_range(&browser, "51–100 of 120").await;

        // The page's cursor is in the address: a reload shows the same page, Previous still works.
        let url = browser.current_url().await;
        assert!(url.contains("cursor="), "{url}");
        reload(&browser, "51–100 of 120").await;
        // Back and forward follow the pages shown.
        browser.execute("history.back();", vec![]).await;
        wait_range(&browser, "101–120 of 120").await;
        browser.execute("history.forward();", vec![]).await;
        wait_range(&browser, "51–100 of 120").await;
        browser.click_css("#page-previous").await;
        wait_range(&browser, "1–50 of 120").await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_every_filter_and_sort_ask_the_server_and_stay_in_the_address() {
    bounded(async {
        let Fleet { fixture, forklift_code, .. } = fleet().await;
        let org = fixture.a.id.clone();
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        wait_range(&browser, "1–50 of 120").await;

        // The search is typed, and sent once typing pauses.
        let search = browser.wait_visible("#device-search").await;
        browser.send_keys(&search, "fork").await;
        wait_range(&browser, &one_page(2)).await;
        assert_eq!(api_total(&fixture, &org, "q=fork").await, 2);
        let mut names: Vec<String> = serde_json::from_value(shown_names(&browser).await).unwrap();
        names.sort();
        assert_eq!(names, ["Forklift 1", "Forklift 2"]);
        assert!(browser.current_url().await.contains("q=fork"));
        // It survives a reload, in the box too.
        reload(&browser, &one_page(2)).await;
        assert_eq!(
            browser.execute("return document.querySelector('#device-search').value;", vec![]).await,
            json!("fork")
        );
        browser.click_css("#clear-filters").await;
        wait_range(&browser, "1–50 of 120").await;

        // Each kind of filter, against the API's count for the same filter.
        let configuration = fixture.test.admin.get(&format!("/v1/organizations/{org}/configurations")).await["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        for (css, value, query, expected) in [
            ("#filter-status", "free", "status=free".to_string(), Some(116)),
            ("#filter-online", "false", "online=false".to_string(), None),
            ("#filter-revision", "up_to_date", "revision=up_to_date".to_string(), Some(1)),
            ("#filter-configuration", configuration.as_str(), format!("configuration={configuration}"), None),
            ("#filter-app-version", "5.0.0", "app_version=5.0.0".to_string(), Some(1)),
            ("#filter-code", forklift_code.as_str(), format!("code={forklift_code}"), Some(2)),
        ] {
            choose(&browser, css, value).await;
            let total = api_total(&fixture, &org, &query).await;
            if let Some(expected) = expected {
                assert_eq!(total, expected, "{query}");
            }
            let range = if total == 0 {
                "No license matches.".to_string()
            } else {
                format!("1–{} of {total}", total.min(50))
            };
            wait_range(&browser, &range).await;
            assert!(browser.current_url().await.contains(&query), "{query} not in the address");
            if css == "#filter-revision" {
                assert_eq!(shown_names(&browser).await, json!(["Van 7"]));
            }
            if css == "#filter-online" {
                assert!(shown_names(&browser).await.as_array().unwrap().contains(&json!("Scanner X")));
            }
            if css == "#filter-app-version" {
                assert_eq!(shown_names(&browser).await, json!(["Scanner X"]));
            }
            choose(&browser, css, "").await;
            wait_range(&browser, "1–50 of 120").await;
        }

        // Sorting by a column's header, and reversing it; the header says how it is sorted.
        choose(&browser, "#filter-status", "assigned").await;
        wait_range(&browser, &one_page(4)).await;
        browser.click_css("th[data-sort=\"name\"] .sort-button").await;
        wait_script(&browser, "return document.querySelector('th[data-sort=\"name\"]').getAttribute('aria-sort') === 'ascending';", "ascending").await;
        wait_range(&browser, &one_page(4)).await;
        assert_eq!(shown_names(&browser).await, json!(["Forklift 1", "Forklift 2", "Scanner X", "Van 7"]));
        assert!(browser.current_url().await.contains("sort=name"));
        // From the keyboard this time.
        let by_name = browser.wait_visible("th[data-sort=\"name\"] .sort-button").await;
        browser.send_keys(&by_name, keys::ENTER).await;
        wait_script(&browser, "return document.querySelector('th[data-sort=\"name\"]').getAttribute('aria-sort') === 'descending';", "descending").await;
        wait_range(&browser, &one_page(4)).await;
        assert_eq!(shown_names(&browser).await, json!(["Van 7", "Scanner X", "Forklift 2", "Forklift 1"]));

        // "Not seen for 1 day": two days later, the offline device.
        fixture.test.admin.advance(2.0 * 86_400.0).await;
        choose(&browser, "#filter-status", "").await;
        wait_range(&browser, "1–50 of 120").await;
        // The page learns the server's clock when it loads.
        reload(&browser, "1–50 of 120").await;
        choose(&browser, "#filter-not-seen", "1").await;
        // Every offline device was last seen before the clock moved.
        let offline = api_total(&fixture, &org, "online=false").await;
        assert!(offline >= 1);
        wait_range(&browser, &one_page(offline)).await;
        assert!(browser.current_url().await.contains("not_seen_for=1"));
        assert!(shown_names(&browser).await.as_array().unwrap().contains(&json!("Scanner X")));
        assert!(!shown_names(&browser).await.as_array().unwrap().contains(&json!("Van 7")));
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_pairs_shows_up_live_when_it_matches_the_search_and_not_otherwise() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        admin.add_licenses(&fixture.a.id, 3).await;
        let code = admin.reusable_code(&fixture.a.id, json!({})).await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser
            .wait_visible("#live-state[data-state=\"live\"]")
            .await;
        let search = browser.wait_visible("#device-search").await;
        browser.send_keys(&search, "forklift").await;
        wait_range(&browser, "No license matches.").await;
        browser.execute("window.notReloaded = true;", vec![]).await;

        // One that does not match, then one that does: when the second shows, the first would
        // have too.
        let (_tablet, tablet) = pair_named(&fixture, &code, "Tablet 3", "4.2.1").await;
        let (_forklift, forklift) = pair_named(&fixture, &code, "Forklift 9", "4.2.1").await;
        browser
            .wait_visible(&format!("#licenses tr[data-device-id=\"{forklift}\"]"))
            .await;
        wait_range(&browser, &one_page(1)).await;
        assert!(
            browser
                .find(&format!("#licenses tr[data-device-id=\"{tablet}\"]"))
                .await
                .is_none()
        );
        assert_eq!(
            browser.execute("return window.notReloaded;", vec![]).await,
            json!(true)
        );
        // The counts follow too.
        browser
            .wait_text("#summary [data-count=\"assigned\"]", "3")
            .await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_all_matching_then_unpair_unpairs_every_matching_device() {
    bounded(async {
        let Fleet { fixture, .. } = fleet().await;
        let org = fixture.a.id.clone();
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        wait_range(&browser, "1–50 of 120").await;
        // One row ticked: the bar counts it.
        let tick = browser
            .wait_visible(&format!(
                "#licenses tr[data-license-id=\"{}\"] input[data-select]",
                fixture.a.license_id
            ))
            .await;
        browser.click(&tick).await;
        browser
            .wait_text("#selection-count", "1 device selected")
            .await;
        browser.click(&tick).await;
        wait_script(
            &browser,
            "return document.querySelector('#bulk-bar').hidden;",
            "the bar to hide",
        )
        .await;

        // The forklifts, by search; more than a page is not needed: "all matching" sends the filter.
        let search = browser.wait_visible("#device-search").await;
        browser.send_keys(&search, "fork").await;
        wait_range(&browser, &one_page(2)).await;
        let page = browser.wait_visible("#select-page").await;
        browser.click(&page).await;
        browser
            .wait_text("#selection-count", "2 devices selected")
            .await;
        // The phone-width box for the page is not shown beside the header's.
        assert_eq!(
            browser
                .execute(
                    "return getComputedStyle(document.querySelector('.select-page-narrow')).display;",
                    vec![]
                )
                .await,
            json!("none")
        );
        // Free licenses' rows hold no device: the whole page of the unfiltered list is not all.
        let all = browser.find("#select-all-matching").await;
        assert!(
            all.is_none()
                || browser
                    .execute(
                        "return document.querySelector('#select-all-matching').hidden;",
                        vec![]
                    )
                    .await
                    == json!(true)
        );
        browser.click_css("#bulk-unpair").await;
        let question = browser.accept_alert().await;
        assert!(question.contains("2 devices"), "{question}");
        browser
            .wait_text("#devices-status", "Unpaired 2 of 2 devices")
            .await;
        wait_range(&browser, "No license matches.").await;
        assert_eq!(api_total(&fixture, &org, "q=fork").await, 0);

        // Every assigned license, by "Select all matching" past the page's rows.
        browser.click_css("#clear-filters").await;
        choose(&browser, "#filter-status", "assigned").await;
        wait_range(&browser, &one_page(2)).await;
        let page = browser.wait_visible("#select-page").await;
        browser.click(&page).await;
        browser
            .wait_text("#selection-count", "2 devices selected")
            .await;
        // The phone-width box for the page is not shown beside the header's.
        assert_eq!(
            browser
                .execute(
                    "return getComputedStyle(document.querySelector('.select-page-narrow')).display;",
                    vec![]
                )
                .await,
            json!("none")
        );
        browser.click_css("#bulk-unpair").await;
        let question = browser.accept_alert().await;
        assert!(question.contains("2 devices"), "{question}");
        wait_range(&browser, "No license matches.").await;
        assert_eq!(api_total(&fixture, &org, "status=assigned").await, 0);
        wait_gone(&browser, "#licenses tr[data-device-id]").await;
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_all_matching_past_one_page_unpairs_by_filter() {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let org = admin.create_org("Big Fleet").await;
        admin.add_licenses(&org, 60).await;
        let key = admin.create_key(&org, "portal test").await["key"]
            .as_str()
            .unwrap()
            .to_string();
        let code = admin.reusable_code(&org, json!({})).await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let mut connections = Vec::new();
        for index in 0..55 {
            connections.push(
                pair_named(&fixture, &code, &format!("Van {index}"), "4.2.1")
                    .await
                    .0,
            );
        }
        // At phone width, where the table's header (and its box for the page) is hidden, the
        // page is ticked with the box shown above the rows instead.
        let browser = Browser::start().await;
        browser.set_window_size(390, 844).await;
        fixture.sign_in(&browser, &key).await;
        choose(&browser, "#filter-status", "assigned").await;
        wait_range(&browser, "1–50 of 55").await;
        let page = browser.wait_visible("#select-page-narrow").await;
        browser.click(&page).await;
        let all = browser.wait_visible("#select-all-matching").await;
        assert_no_sideways_scroll_at(&browser, 390, "the Devices page with a selection").await;
        assert!(browser.text(&all).await.contains("Select all 55 matching"));
        browser.click(&all).await;
        browser
            .wait_text("#selection-count", "All 55 matching devices selected")
            .await;
        let unpair = browser.wait_visible("#bulk-unpair").await;
        browser.click(&unpair).await;
        let question = browser.accept_alert().await;
        assert!(question.contains("55 devices"), "{question}");
        browser
            .wait_text("#devices-status", "Unpaired 55 of 55 devices")
            .await;
        assert_eq!(api_total(&fixture, &org, "status=assigned").await, 0);
        assert_eq!(api_total(&fixture, &org, "status=free").await, 60);
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_csv_downloads_the_filtered_devices_with_the_organizations_name() {
    bounded(async {
        let Fleet { fixture, .. } = fleet().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        wait_range(&browser, "1–50 of 120").await;
        let search = browser.wait_visible("#device-search").await;
        browser.send_keys(&search, "fork").await;
        wait_range(&browser, &one_page(2)).await;
        // The file is saved through an object URL: the page's Blob is kept to be read here.
        browser
            .execute(
                "const made = URL.createObjectURL; window.exported = []; \
                 URL.createObjectURL = (blob) => { window.exported.push(blob); return made.call(URL, blob); };",
                vec![],
            )
            .await;
        browser.click_css("#export-csv").await;
        browser.wait_text("#devices-status", "Exported Acme-Logistics-devices.csv").await;
        let text = browser.execute("return window.exported[0].text();", vec![]).await;
        let text = text.as_str().expect("the file's text");
        assert!(text.contains("Forklift 1") && text.contains("Forklift 2"), "{text}");
        assert!(!text.contains("Van 7") && !text.contains("Scanner X"), "{text}");
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_filters_selection_bar_and_pager_fit_at_1280_px_and_at_phone_width() {
    bounded(async {
        let Fleet { fixture, .. } = fleet().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        wait_range(&browser, "1–50 of 120").await;
        // Every control in use: a search, filters, a row ticked (the selection bar shows).
        choose(&browser, "#filter-status", "assigned").await;
        wait_range(&browser, &one_page(4)).await;
        let search = browser.wait_visible("#device-search").await;
        browser
            .send_keys(
                &search,
                "a very long search that does not match anything at all",
            )
            .await;
        wait_range(&browser, "No license matches.").await;
        browser.click_css("#clear-filters").await;
        wait_range(&browser, "1–50 of 120").await;
        browser
            .click_css(&format!(
                "#licenses tr[data-license-id=\"{}\"] input[data-select]",
                fixture.a.license_id
            ))
            .await;
        browser.wait_visible("#bulk-bar").await;
        for (width, height) in [(1280, 900), (390, 844)] {
            browser.set_window_size(width, height).await;
            browser.wait_visible("#device-search").await;
            browser.wait_visible("#bulk-unpair").await;
            browser.wait_visible("#page-next").await;
            assert_no_sideways_scroll_at(
                &browser,
                u64::from(width),
                &format!("the Devices list at {width} px"),
            )
            .await;
        }
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_device_from_a_list_of_free_licenses_keeps_its_qr_when_the_license_leaves_the_list()
{
    bounded(async {
        let Fleet { fixture, .. } = fleet().await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        browser.wait_visible("#live-state[data-state=\"live\"]").await;
        choose(&browser, "#filter-status", "free").await;
        wait_range(&browser, "1–50 of 116").await;
        let license = browser
            .execute("return document.querySelector('#licenses tbody tr[data-status=\"free\"]').dataset.licenseId;", vec![])
            .await;
        let license = license.as_str().unwrap().to_string();
        let assign = browser
            .wait_visible(&format!("#licenses tr[data-license-id=\"{license}\"] button[data-action=\"assign\"]"))
            .await;
        browser.click(&assign).await;
        browser.wait_visible("dialog.assign-dialog img").await;
        // The reservation takes the license out of the free ones: the page re-reads its list
        // (the total says so), and the dialog with its QR stays.
        wait_range(&browser, "1–50 of 115").await;
        browser.wait_visible("dialog.assign-dialog img").await;
        assert!(browser.find(&format!("#licenses tr[data-license-id=\"{license}\"]")).await.is_some());
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_configuration_to_the_ticked_devices_after_a_confirmation() {
    bounded(async {
        let Fleet { fixture, .. } = fleet().await;
        let org = fixture.a.id.clone();
        let admin = &fixture.test.admin;
        let water = admin.create_config(&org, "Water", "[GLOBAL]\n").await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        wait_range(&browser, "1–50 of 120").await;
        let search = browser.wait_visible("#device-search").await;
        browser.send_keys(&search, "fork").await;
        wait_range(&browser, &one_page(2)).await;
        let page = browser.wait_visible("#select-page").await;
        browser.click(&page).await;
        browser
            .wait_text("#selection-count", "2 devices selected")
            .await;
        // The phone-width box for the page is not shown beside the header's.
        assert_eq!(
            browser
                .execute(
                    "return getComputedStyle(document.querySelector('.select-page-narrow')).display;",
                    vec![]
                )
                .await,
            json!("none")
        );
        choose(&browser, "#bulk-configuration", &water).await;
        browser.click_css("#bulk-assign").await;
        let question = browser.accept_alert().await;
        assert!(
            question.contains("“Water”") && question.contains("2 devices"),
            "{question}"
        );
        browser
            .wait_text("#devices-status", "Assigned “Water” to 2 of 2 devices")
            .await;
        assert_eq!(
            api_total(&fixture, &org, &format!("configuration={water}&q=fork")).await,
            2
        );
        assert_eq!(
            api_total(&fixture, &org, &format!("configuration={water}")).await,
            2
        );
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
