//! The audit log records admin changes and pairing outcomes, with the names of what they
//! concern as they were, as docs/admin-api.md shows them; it is read filtered by action, device
//! and time, a page at a time.

use std::collections::HashSet;

use protocol::RefusalReason;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_admin_changes_and_pairing_outcomes() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let licenses = admin.add_licenses(&org, 2).await;
    let key = admin.create_key(&org, "portal").await;
    let portal = admin.with_token(key["key"].as_str().unwrap());
    let config = portal.create_config(&org, "Meters", "[GLOBAL]\n").await;
    portal.edit_config(&org, &config, "[GLOBAL]\nv = 2\n").await;
    let code = portal.reusable_code(&org, json!({ "max_uses": 1 })).await;
    let code_text = code["code"].as_str().unwrap();
    let (_, _, paired) = pair_ok(&test.device_url(), code_text).await;
    let (_, _, refused) = pair_new(&test.device_url(), code_text).await;
    assert_eq!(refusal(&refused), Some(RefusalReason::CodeUseLimit));
    let single = portal.single_use_code(&org, &licenses[1]).await;
    let _ = single;
    portal
        .post(
            &format!(
                "/v1/organizations/{org}/codes/{}/revoke",
                code["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    portal.unpair(&org, paired.device_id).await;
    // Unknown codes are counted, not logged one by one.
    let unknown = "B".repeat(protocol::PairingCode::LEN);
    for _ in 0..3 {
        let (_, _, result) = pair_new(&test.device_url(), &unknown).await;
        assert_eq!(refusal(&result), Some(RefusalReason::UnknownCode));
    }

    let audit = admin.audit(&org).await;
    let actions: HashSet<&str> = audit
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    for expected in [
        "organization.created",
        "licenses.added",
        "key.created",
        "configuration.created",
        "configuration.updated",
        "code.created",
        "device.paired",
        "pairing.refused",
        "code.revoked",
        "device.unpaired",
    ] {
        assert!(
            actions.contains(expected),
            "{expected} missing from {actions:?}"
        );
    }
    let by_key = format!("key:{}", key["id"].as_str().unwrap());
    let edit = audit
        .iter()
        .find(|entry| entry["action"] == json!("configuration.updated"))
        .unwrap();
    assert_eq!(edit["actor"], json!(by_key), "the audit names who did it");
    let refusal_entry = audit
        .iter()
        .find(|entry| entry["action"] == json!("pairing.refused"))
        .unwrap();
    assert_eq!(refusal_entry["details"]["reason"], json!("code_use_limit"));
    assert!(
        audit
            .iter()
            .all(|entry| entry["details"]["reason"] != json!("unknown_code"))
    );
    let status = admin.get("/v1/status").await;
    assert_eq!(status["engine"]["unknown_code_attempts"], json!(3));
    assert_documented(&audit);
    // Newest first.
    let ids: Vec<i64> = audit
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]));
    test.stop().await;
}

/// The `details` fields section 8 of the admin API document gives an action: every
/// `backticked` word of its row's last column.
fn documented_details(action: &str) -> HashSet<String> {
    let doc = admin_doc();
    let section = &doc[doc.find("## 8. Audit log actions").expect("section 8")..];
    let row = section
        .lines()
        .find(|line| line.starts_with(&format!("| `{action}`")))
        .unwrap_or_else(|| panic!("{action} is not in section 8"));
    let details = row.rsplit('|').nth(1).expect("a details column");
    details
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every field of every entry's details is documented for its action.
fn assert_documented(entries: &[Value]) {
    for entry in entries {
        let action = entry["action"].as_str().unwrap();
        let documented = documented_details(action);
        for field in entry["details"].as_object().unwrap().keys() {
            assert!(
                documented.contains(field),
                "{action}: `{field}` is not in section 8 ({documented:?})"
            );
        }
    }
}

/// A new device that pairs with `code`, calling itself `name`.
async fn pair_named(
    test: &TestServer,
    code: &str,
    name: &str,
) -> (client::DeviceIdentity, client::Connection, protocol::Paired) {
    let identity = identity();
    let mut connection = test.connect().await;
    let answer = connection
        .pair(code, &identity, &device_info(name))
        .await
        .unwrap();
    let client::PairResult::Paired(paired) = answer else {
        panic!("refused: {answer:?}");
    };
    (identity, connection, paired)
}

fn keys(value: &Value) -> Vec<&String> {
    let mut keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_entry_is_what_the_documentation_shows() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    admin.add_licenses(&org, 1).await;
    let code = admin.reusable_code(&org, json!({ "label": "vans" })).await;
    let (identity, _connection, paired) =
        pair_named(&test, code["code"].as_str().unwrap(), "Van 7").await;
    let page = admin
        .get(&format!(
            "/v1/organizations/{org}/audit?action=device.paired"
        ))
        .await;
    let entry = &page["items"][0];

    let example = documented_example("### Audit entry");
    assert_eq!(example["action"], json!("device.paired"));
    assert_eq!(keys(entry), keys(&example), "the entry's fields");
    assert_eq!(
        keys(&entry["details"]),
        keys(&example["details"]),
        "the details' fields"
    );
    // What the device said of itself and the code's label, as the example says them (the test
    // device says the same); the ids are this pairing's.
    for field in ["name", "model", "os", "app_version", "code_label"] {
        assert_eq!(
            entry["details"][field], example["details"][field],
            "{field}"
        );
    }
    let device = paired.device_id.to_string();
    assert_eq!(entry["actor"], json!(format!("device:{device}")));
    assert_eq!(entry["subject"], json!(device));
    assert_eq!(entry["organization_id"], json!(org));
    assert_eq!(entry["details"]["code_id"], code["id"]);
    assert_eq!(entry["details"]["license_id"], json!(paired.license_id));
    assert_eq!(
        entry["details"]["installation_id"],
        json!(identity.installation_id)
    );
    let table: HashSet<String> = keys(&example["details"]).into_iter().cloned().collect();
    assert_eq!(
        documented_details("device.paired"),
        table,
        "section 8 lists the example's fields"
    );
    test.stop().await;
}

/// A page of `path` (an audit log with its filters), followed to the end `limit` at a time.
async fn every_page(admin: &Admin, path: &str, limit: u32) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = admin.get(&format!("{path}&limit={limit}{after}")).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize);
        entries.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return entries,
        }
    }
}

fn actions_of(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filters_by_action_device_and_time_and_keeps_names_as_they_were() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    admin.add_licenses(&org, 2).await;
    let key = admin.create_key(&org, "portal").await;
    let portal = admin.with_token(key["key"].as_str().unwrap());
    let config = portal.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let code = portal.reusable_code(&org, json!({ "label": "vans" })).await;
    let code = code["code"].as_str().unwrap();
    let (other_org, other_code) = admin.org_with_code("Globex", 1).await;
    let (_, _, theirs) = pair_ok(&test.device_url(), &other_code).await;

    // Two devices pair a minute apart; the first renames itself when it reconnects.
    let start = admin
        .post("/v1/test/clock/advance", json!({ "seconds": 60 }))
        .await["now"]
        .clone();
    let (first_identity, first, first_paired) = pair_named(&test, code, "Van 1").await;
    let later = admin
        .post("/v1/test/clock/advance", json!({ "seconds": 60 }))
        .await["now"]
        .clone();
    let (_, _, second) = pair_ok(&test.device_url(), code).await;
    drop(first);
    let mut again = test.connect().await;
    let resumed = again
        .resume(&first_identity, &device_info("Van 1 (spare)"), None)
        .await
        .unwrap();
    assert!(
        matches!(resumed, client::ResumeResult::Resumed(_)),
        "{resumed:?}"
    );
    let first_id = first_paired.device_id;

    // The configuration is renamed, assigned to the first device, which is then unpaired.
    portal
        .put(
            &format!("/v1/organizations/{org}/configurations/{config}"),
            json!({ "name": "Meters v2" }),
        )
        .await;
    portal
        .put(
            &format!("/v1/organizations/{org}/devices/{first_id}/configuration"),
            json!({ "configuration_id": config }),
        )
        .await;
    let (status, _) = portal
        .call(
            Method::PATCH,
            &format!("/v1/organizations/{org}/devices/{first_id}"),
            Some(json!({ "notes": "Cracked screen" })),
        )
        .await;
    assert_eq!(status, 200);
    portal.unpair(&org, first_id).await;
    let log = format!("/v1/organizations/{org}/audit?");

    // The first device's history, one entry a page, with the names it had.
    let history = every_page(&portal, &format!("{log}device={first_id}"), 1).await;
    assert_eq!(
        actions_of(&history),
        [
            "device.unpaired",
            "device.edited",
            "configuration.assigned",
            "device.paired"
        ]
    );
    assert_eq!(history[0]["details"]["name"], json!("Van 1 (spare)"));
    assert_eq!(history[1]["details"]["notes_changed"], json!(true));
    assert_eq!(history[2]["details"]["name"], json!("Meters v2"));
    assert_eq!(
        history[2]["details"]["device_names"][first_id.to_string()],
        json!("Van 1 (spare)")
    );
    assert_eq!(history[3]["details"]["name"], json!("Van 1"));
    assert_eq!(history[3]["details"]["code_label"], json!("vans"));
    let created = every_page(&portal, &format!("{log}action=configuration.created"), 1).await;
    assert_eq!(
        created[0]["details"]["name"],
        json!("Meters"),
        "as it was then"
    );
    assert_documented(&every_page(&portal, &log, 100).await);

    // Filters combine, and page.
    let paired = every_page(&portal, &format!("{log}action=device.paired"), 1).await;
    let paired_devices: Vec<&Value> = paired.iter().map(|entry| &entry["subject"]).collect();
    assert_eq!(
        paired_devices,
        [
            &json!(second.device_id.to_string()),
            &json!(first_id.to_string())
        ]
    );
    let window = format!(
        "{log}action=device.paired,device.unpaired&from={}&until={}",
        start.as_str().unwrap(),
        later.as_str().unwrap()
    );
    let in_window = every_page(&portal, &window, 1).await;
    assert_eq!(actions_of(&in_window), ["device.paired"]);
    assert_eq!(in_window[0]["subject"], json!(first_id.to_string()));
    let since = every_page(
        &portal,
        &format!(
            "{log}from={}&device={first_id}&action=device.unpaired,device.paired",
            later.as_str().unwrap()
        ),
        1,
    )
    .await;
    assert_eq!(actions_of(&since), ["device.unpaired"]);

    // A key reads its own organization's log only, whatever the filter.
    let theirs_here = every_page(&portal, &format!("{log}device={}", theirs.device_id), 5).await;
    assert!(theirs_here.is_empty(), "{theirs_here:?}");
    let (status, _) = portal
        .call(
            Method::GET,
            &format!(
                "/v1/organizations/{other_org}/audit?device={}",
                theirs.device_id
            ),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = portal
        .call(
            Method::GET,
            &format!("/v1/audit?device={}", theirs.device_id),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let theirs_anywhere =
        every_page(admin, &format!("/v1/audit?device={}", theirs.device_id), 5).await;
    assert_eq!(actions_of(&theirs_anywhere), ["device.paired"]);
    assert_eq!(theirs_anywhere[0]["organization_id"], json!(other_org));

    // Filters that cannot be read are refused, saying which.
    for (query, field) in [
        ("action=Device%20Paired", "action"),
        ("device=van-1", "device"),
        ("from=yesterday", "from"),
        (
            &format!("from={0}&until={0}", later.as_str().unwrap()),
            "until",
        ),
    ] {
        let (status, body) = portal
            .call(Method::GET, &format!("{log}{query}"), None)
            .await;
        assert_eq!(
            (status, &body["error"]["field"]),
            (422, &json!(field)),
            "{query}: {body}"
        );
    }
    let (status, _) = portal
        .call(Method::GET, &format!("{log}colour=red"), None)
        .await;
    assert_eq!(status, 400, "an unknown parameter");
    test.stop().await;
}
