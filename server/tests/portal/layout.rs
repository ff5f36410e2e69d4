//! The Devices page at desktop and phone widths: nothing scrolls sideways, every row's actions
//! are in view and reachable with Tab, and the single-use QR opens in a dialog that nothing
//! clips, read by a real QR decoder from a screenshot of the window and used by a real device.

use protocol::Encoding;
use serde_json::{Value, json};

use crate::codes::decode_qr_png;
use crate::devices::{assign_dialog_css, code_of, focused_license, shown_payload, wait_gone};
use crate::fixture::{Fixture, assert_no_sideways_scroll_at, bounded, license_row};
use crate::keyboard::tab_to;
use crate::support::{connect, device_info, identity, pair_ok};
use crate::webdriver::{Browser, keys};

/// The window sizes the page is checked at: a common laptop, a wide desktop, a tablet, a phone.
const DESKTOP: (u32, u32) = (1280, 900);
const WIDE: (u32, u32) = (1920, 1080);
const TABLET: (u32, u32) = (820, 1180);
const PHONE: (u32, u32) = (390, 844);

/// Where each row's buttons are, and whether anything on the page has been scrolled sideways:
/// `{ buttons: [{ license, action, left, right, hit }], width, scrolled: [...] }`. Each button is
/// first scrolled into view vertically; `hit` says whether it is what the window shows at its
/// centre (not covered, not cut off by a scrolling box).
const ROW_BUTTONS: &str = "
    const width = document.documentElement.clientWidth;
    const buttons = [...document.querySelectorAll('#licenses tbody tr[data-license-id] button[data-action]')]
      .map((button) => {
        button.scrollIntoView({ block: 'center', inline: 'nearest' });
        const box = button.getBoundingClientRect();
        const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
        return {
          license: button.closest('tr').dataset.licenseId,
          action: button.dataset.action,
          left: box.left,
          right: box.right,
          hit: hit === button || button.contains(hit),
        };
      });
    const scrolled = [...document.querySelectorAll('*')]
      .filter((element) => element.scrollLeft > 0)
      .map((element) => `${element.tagName.toLowerCase()}.${element.className}`);
    if (window.scrollX !== 0) scrolled.push('the window');
    return { buttons, width, scrolled };
";

/// Checks that every row's buttons are inside the window's width and shown, and that nothing
/// was scrolled sideways to get there; answers the buttons as (license, action).
async fn assert_row_buttons_in_view(browser: &Browser, what: &str) -> Vec<(String, String)> {
    let found = browser.execute(ROW_BUTTONS, vec![]).await;
    let width = found["width"].as_f64().unwrap();
    assert_eq!(found["scrolled"], json!([]), "{what}: scrolled sideways");
    let mut buttons = Vec::new();
    for button in found["buttons"].as_array().unwrap() {
        let left = button["left"].as_f64().unwrap();
        let right = button["right"].as_f64().unwrap();
        assert!(
            left >= 0.0 && right <= width && right > left,
            "{what}: a button outside the window's {width} px: {button}"
        );
        assert_eq!(
            button["hit"],
            json!(true),
            "{what}: a hidden button: {button}"
        );
        buttons.push((
            button["license"].as_str().unwrap().to_string(),
            button["action"].as_str().unwrap().to_string(),
        ));
    }
    buttons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_1280_px_1920_px_tablet_and_phone_width_every_rows_actions_are_in_view_without_sideways_scroll()
 {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let org = &fixture.a.id;
        // Rows that make a table wide: long device names and models, a configuration with a long
        // name that the devices do not run yet, licenses with an end date, free ones.
        let licenses = admin
            .post(
                &format!("/v1/organizations/{org}/licenses"),
                json!({ "count": 4, "valid_until": "2031-01-31T23:59:59.999Z" }),
            )
            .await;
        assert_eq!(licenses["license_ids"].as_array().unwrap().len(), 4);
        let long_config = admin
            .create_config(
                org,
                "Water meters, northern depots, winter reading schedule with extra retries",
                "[GLOBAL]\n",
            )
            .await;
        let code = admin.reusable_code(org, json!({}))
            .await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let mut connections = Vec::new();
        for name in [
            "Zebra TC52 handheld of the northern depot's second meter-reading van",
            "Meter-reader-tablet-with-an-unbroken-name-0123456789abcdefghijklmnop",
        ] {
            let mut connection = connect(&fixture.test.device_url(), Encoding::Json).await;
            let mut info = device_info(name);
            info.model = "Samsung Galaxy Tab Active4 Pro Enterprise Edition".into();
            info.app_version = "4.2.1-beta.7+build.20260304".into();
            let result = connection
                .pair(&code, &identity(), &info)
                .await
                .expect("pairing answered");
            assert!(matches!(result, client::PairResult::Paired(_)), "{result:?}");
            connections.push(connection);
        }
        // Van 7 is assigned the long configuration and has not applied it: "Pending (runs …)".
        admin
            .put(
                &format!(
                    "/v1/organizations/{org}/devices/{}/configuration",
                    fixture.a.device_id
                ),
                json!({ "configuration_id": long_config }),
            )
            .await;

        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        let row = license_row(&browser, &fixture.a.license_id).await;
        browser.wait_text(&format!("#licenses tr[data-license-id=\"{}\"]", fixture.a.license_id), "Pending").await;
        assert!(browser.text(&row).await.contains(&fixture.a.device_name));
        browser
            .wait_visible("#live-state[data-state=\"live\"]")
            .await;

        for (width, height) in [DESKTOP, WIDE, TABLET, PHONE] {
            browser.set_window_size(width, height).await;
            let what = format!("the Devices page at {width} px");
            assert_no_sideways_scroll_at(&browser, u64::from(width), &what).await;
            let buttons = assert_row_buttons_in_view(&browser, &what).await;
            browser.execute("window.scrollTo(0, 0);", vec![]).await;
            // Every assigned row has its Unpair, every free one its Assign device.
            let unpair = buttons.iter().filter(|(_, action)| action == "unpair").count();
            let assign = buttons.iter().filter(|(_, action)| action == "assign").count();
            assert_eq!((unpair, assign), (3, 3), "{what}: {buttons:?}");

            // With the keyboard alone, Tab reaches each of them, and each is in view when it has
            // the focus; nothing scrolls sideways on the way.
            start_at_the_top(&browser).await;
            let mut reached: Vec<(String, String)> = Vec::new();
            for _ in 0..80 {
                browser.press(keys::TAB).await;
                let focused = browser.focused().await;
                if let (Some(license), Some(action)) = (focused["license"].as_str(), focused["action"].as_str()) {
                    let pair = (license.to_string(), action.to_string());
                    if !reached.contains(&pair) {
                        reached.push(pair);
                    }
                    let in_view = browser
                        .execute(
                            // Chrome scrolls the focused button into view, to within a
                            // fraction of a pixel at the window's bottom edge.
                            "const box = document.activeElement.getBoundingClientRect(); \
                             return box.left >= 0 && box.right <= document.documentElement.clientWidth \
                               && box.top >= -1 && box.bottom <= window.innerHeight + 1 \
                               && window.scrollX === 0;",
                            vec![],
                        )
                        .await;
                    assert_eq!(in_view, json!(true), "{what}: {focused} is out of view with the focus");
                }
                if reached.len() == buttons.len() {
                    break;
                }
            }
            let mut expected = buttons.clone();
            expected.sort();
            reached.sort();
            assert_eq!(reached, expected, "{what}: Tab reaches every row's buttons");
        }
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}

/// Puts the keyboard at the start of the page's content, as "Skip to content" does, and the
/// window at the top: the next Tab goes to the content's first control.
async fn start_at_the_top(browser: &Browser) {
    browser
        .execute(
            "window.scrollTo(0, 0); document.getElementById('main').focus();",
            vec![],
        )
        .await;
}

/// How the test reaches a row's "Assign device".
#[derive(Debug, Clone, Copy)]
enum Reach {
    Keyboard,
    Click,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_use_qr_dialog_scans_from_a_screenshot_at_1280_px_and_phone_width_by_keyboard_and_click()
 {
    bounded(async {
        let fixture = Fixture::start().await;
        let admin = &fixture.test.admin;
        let org = fixture.a.id.clone();
        // One free license per case (the fixture leaves one free).
        admin.add_licenses(&org, 3).await;
        let browser = Browser::start().await;
        fixture.sign_in(&browser, &fixture.a.key).await;
        license_row(&browser, &fixture.a.license_id).await;
        let mut connections = Vec::new();

        for ((width, height), reach) in [
            (DESKTOP, Reach::Keyboard),
            (DESKTOP, Reach::Click),
            (PHONE, Reach::Keyboard),
            (PHONE, Reach::Click),
        ] {
            let what = format!("at {width} px by {reach:?}");
            browser.set_window_size(width, height).await;
            let free = admin
                .licenses(&org)
                .await
                .into_iter()
                .find(|license| license["status"] == "free")
                .and_then(|license| license["id"].as_str().map(str::to_string))
                .expect("a free license");
            let button = format!("#licenses tr[data-license-id=\"{free}\"] button[data-action=\"assign\"]");
            match reach {
                Reach::Keyboard => {
                    start_at_the_top(&browser).await;
                    tab_to(&browser, "Assign device", |focused| {
                        focused["action"] == "assign" && focused["license"] == json!(free)
                    })
                    .await;
                    browser.press(keys::ENTER).await;
                }
                Reach::Click => {
                    let element = browser.wait_visible(&button).await;
                    browser.click(&element).await;
                }
            }

            // The dialog has the keyboard, and it and its QR are wholly inside the window.
            let payload = shown_payload(&browser, &free, "").await;
            assert_eq!(focused_license(&browser).await, json!(free), "{what}");
            let dialog = assign_dialog_css(&free);
            let boxes: Value = browser
                .execute(
                    "const inside = (element) => { const box = element.getBoundingClientRect(); \
                       return box.width > 0 && box.left >= 0 && box.top >= 0 \
                         && box.right <= document.documentElement.clientWidth \
                         && box.bottom <= window.innerHeight; }; \
                     const dialog = document.querySelector(arguments[0]); \
                     return [dialog.open, inside(dialog), inside(dialog.querySelector('img.assign-qr'))];",
                    vec![json!(dialog)],
                )
                .await;
            assert_eq!(boxes, json!([true, true, true]), "{what}: dialog open, dialog and QR inside the window");
            assert_no_sideways_scroll_at(&browser, u64::from(width), &what).await;

            // What a phone's camera sees: the window, read by a real QR decoder.
            let seen = decode_qr_png(&browser.screenshot().await);
            assert_eq!(seen, payload, "{what}: the screenshot's QR is the code shown");

            // A device pairs with it and takes that license; the dialog closes by itself and the
            // keyboard is back on the row.
            let (_, connection, paired) = pair_ok(&fixture.test.device_url(), code_of(&seen)).await;
            assert_eq!(paired.license_id.to_string(), free, "{what}");
            connections.push(connection);
            browser
                .wait_visible(&format!("#licenses tr[data-license-id=\"{free}\"][data-status=\"assigned\"]"))
                .await;
            wait_gone(&browser, &dialog).await;
            assert_eq!(focused_license(&browser).await, json!(free), "{what}");
        }
        browser.quit().await;
        fixture.test.stop().await;
    })
    .await;
}
