//! The inactive-device release: an organization may release the license of an offline device
//! not seen for N days (off by default), driven here by the engine's clock.

use client::ResumeResult;
use protocol::{CloseCode, EndReason};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

const DAY: f64 = 86_400.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unseen_device_loses_its_license_and_hears_why_while_a_connected_one_keeps_its_own() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 2).await;
    let setting = format!("/v1/organizations/{org}/inactive-release");
    assert_eq!(admin.get(&setting).await, json!({ "after_days": null }));

    let (gone, connection, gone_paired) = pair_ok(&test.device_url(), &code).await;
    let gone_id = gone_paired.device_id.to_string();
    let (_, mut present, _) = pair_ok(&test.device_url(), &code).await;
    connection.close().await;
    eventually("the first device is offline", || async {
        (admin.device(&org, &gone_id).await["online"] == json!(false)).then_some(())
    })
    .await;

    // Off by default: forty days unseen change nothing.
    admin.advance(40.0 * DAY).await;
    let swept = admin.post("/v1/test/sweep", json!({})).await;
    assert_eq!(swept["released_inactive"], json!(0));
    assert_eq!(admin.devices(&org).await.len(), 2);

    // Thirty days: the device unseen for forty loses its license; the one connected all along
    // (last seen when it paired, forty days ago) keeps its own.
    let set = admin.put(&setting, json!({ "after_days": 30 })).await;
    assert_eq!(set, json!({ "after_days": 30 }));
    let organization = admin.get(&format!("/v1/organizations/{org}")).await;
    assert_eq!(organization["release_inactive_after_days"], json!(30));
    admin.post("/v1/test/sweep", json!({})).await;
    let devices = admin.devices(&org).await;
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_ne!(devices[0]["id"], json!(gone_id));
    assert_eq!(admin.summary(&org).await["free"], json!(1));
    let status = admin.get("/v1/status").await;
    assert_eq!(status["engine"]["released_inactive"], json!(1));

    // Its own audit entry, with when it was last seen and the setting that released it.
    let audit = admin.audit(&org).await;
    let released: Vec<_> = audit
        .iter()
        .filter(|entry| entry["action"] == "device.released_inactive")
        .collect();
    assert_eq!(released.len(), 1, "{audit:?}");
    assert_eq!(released[0]["subject"], json!(gone_id));
    assert_eq!(released[0]["actor"], json!("system"));
    assert_eq!(released[0]["details"]["after_days"], json!(30));
    assert!(
        audit.iter().any(
            |entry| entry["action"] == "organization.inactive_release_set"
                && entry["details"] == json!({ "after_days": 30, "previous": null })
        ),
        "{audit:?}"
    );

    // It comes back: its own notice, its own close code, and the freed license goes to a new
    // device.
    let mut again = test.connect().await;
    let resumed = again
        .resume(&gone, &device_info("device"), None)
        .await
        .unwrap();
    assert_eq!(resumed, ResumeResult::Ended(EndReason::ReleasedInactive));
    let closed = again.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(CloseCode::ReleasedInactive));
    let fresh = admin.reusable_code(&org, json!({})).await;
    pair_ok(&test.device_url(), fresh["code"].as_str().unwrap()).await;

    // The connected device is still served: an edit reaches it.
    let config = admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/configurations/{config}/assign"),
            Some(json!({ "device_ids": [devices[0]["id"]] })),
        )
        .await;
    assert_eq!(next_configuration(&mut present).await.name, "Meters");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setting_is_checked_and_turned_off_again() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let setting = format!("/v1/organizations/{org}/inactive-release");
    for bad in [json!({ "after_days": 0 }), json!({ "after_days": 3651 })] {
        let (status, answer) = admin.call(Method::PUT, &setting, Some(bad)).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["field"], json!("after_days"), "{answer}");
    }
    for bad in [
        json!({ "after_days": -1 }),
        json!({ "after_days": "30" }),
        json!({ "days": 3 }),
    ] {
        let (status, answer) = admin.call(Method::PUT, &setting, Some(bad)).await;
        assert!(status == 400 || status == 422, "{status} {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    assert_eq!(admin.get(&setting).await, json!({ "after_days": null }));

    admin.put(&setting, json!({ "after_days": 7 })).await;
    assert_eq!(
        admin.put(&setting, json!({ "after_days": null })).await,
        json!({ "after_days": null })
    );
    let code = admin.reusable_code(&org, json!({})).await;
    admin.add_licenses(&org, 1).await;
    let (_, connection, _) = pair_ok(&test.device_url(), code["code"].as_str().unwrap()).await;
    connection.close().await;
    admin.advance(30.0 * DAY).await;
    admin.post("/v1/test/sweep", json!({})).await;
    assert_eq!(admin.devices(&org).await.len(), 1);
    let changes: Vec<_> = admin
        .audit(&org)
        .await
        .into_iter()
        .filter(|entry| entry["action"] == "organization.inactive_release_set")
        .map(|entry| entry["details"].clone())
        .collect();
    // Newest first; the refused settings wrote nothing.
    assert_eq!(
        changes,
        vec![
            json!({ "after_days": null, "previous": 7 }),
            json!({ "after_days": 7, "previous": null }),
        ]
    );
    test.stop().await;
}
