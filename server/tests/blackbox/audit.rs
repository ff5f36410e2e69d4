//! The audit log records admin changes and pairing outcomes, with the names of what they
//! concern as they were, as docs/admin-api.md shows them.

use std::collections::HashSet;

use protocol::RefusalReason;
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

/// docs/admin-api.md's text.
fn admin_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/admin-api.md");
    std::fs::read_to_string(path).expect("docs/admin-api.md exists")
}

/// The first JSON example after `heading` in the admin API document.
fn documented_example(heading: &str) -> Value {
    let doc = admin_doc();
    let section = &doc[doc.find(heading).unwrap_or_else(|| panic!("no {heading}"))..];
    let start = section.find("```json\n").expect("a JSON example") + "```json\n".len();
    let end = start + section[start..].find("\n```").expect("its end");
    serde_json::from_str(&section[start..end]).expect("the example is JSON")
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
    let identity = identity();
    let mut connection = test.connect().await;
    let answer = connection
        .pair(
            code["code"].as_str().unwrap(),
            &identity,
            &device_info("Van 7"),
        )
        .await
        .unwrap();
    let client::PairResult::Paired(paired) = answer else {
        panic!("refused: {answer:?}");
    };
    let audit = admin.audit(&org).await;
    let entry = audit
        .iter()
        .find(|entry| entry["action"] == json!("device.paired"))
        .expect("a device.paired entry");

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
