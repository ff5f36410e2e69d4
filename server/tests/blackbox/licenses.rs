//! Licenses: expiry ends pairings, renewal, operator-only actions, statuses.

use client::ResumeResult;
use engine::ids::Timestamp;
use protocol::{CloseCode, EndReason, RefusalReason, ServerMessage};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

async fn server_now(admin: &Admin) -> Timestamp {
    let status = admin.get("/v1/status").await;
    Timestamp::parse_rfc3339(status["now"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_passing_valid_until_ends_its_pairing_with_its_own_notice() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let until = server_now(admin).await.plus_millis(3_600_000);
    let added = admin
        .post(
            &format!("/v1/organizations/{org}/licenses"),
            json!({ "count": 1, "valid_until": until }),
        )
        .await;
    let license = added["license_ids"][0].as_str().unwrap().to_string();
    let code = admin.reusable_code(&org, json!({})).await;
    let code = code["code"].as_str().unwrap().to_string();
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (identity, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
    assert_eq!(paired.license_valid_until_ms, Some(until.unsigned_millis()));
    next_configuration(&mut connection).await;

    // Nobody is looking: the background sweep notices when the clock passes valid_until.
    admin.advance(3600.0).await;
    match connection.recv_timeout(WAIT).await {
        Ok(ServerMessage::Ended(ended)) => assert_eq!(ended.reason, EndReason::LicenseExpired),
        other => panic!("expected the license-expired notice, got {other:?}"),
    }
    let closed = connection.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(CloseCode::LicenseExpired));

    assert!(admin.devices(&org).await.is_empty());
    let shown = admin
        .get(&format!("/v1/organizations/{org}/licenses/{license}"))
        .await;
    assert_eq!(shown["status"], json!("expired"));
    assert_eq!(shown["device_id"], json!(null));
    assert_eq!(admin.summary(&org).await["expired"], json!(1));

    // The old credential now hears why, and the code finds no license.
    let mut again = test.connect().await;
    let resumed = again
        .resume(&identity, &device_info("device"), None)
        .await
        .unwrap();
    assert_eq!(resumed, ResumeResult::Ended(EndReason::LicenseExpired));
    let (_, _, result) = pair_new(&test.device_url(), &code).await;
    assert_eq!(refusal(&result), Some(RefusalReason::NoFreeLicense));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_license_keeps_its_device() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let now = server_now(admin).await;
    let added = admin
        .post(
            &format!("/v1/organizations/{org}/licenses"),
            json!({ "count": 1, "valid_until": now.plus_millis(3_600_000) }),
        )
        .await;
    let license = added["license_ids"][0].as_str().unwrap().to_string();
    let code = admin.reusable_code(&org, json!({})).await;
    let config = admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (_, mut connection, _) = pair_ok(&test.device_url(), code["code"].as_str().unwrap()).await;
    next_configuration(&mut connection).await;

    let renewed = admin
        .call(
            Method::PATCH,
            &format!("/v1/organizations/{org}/licenses/{license}"),
            Some(json!({ "valid_until": now.plus_millis(7_200_000) })),
        )
        .await;
    assert_eq!(renewed.0, 200, "{}", renewed.1);
    assert_eq!(renewed.1["status"], json!("assigned"));
    admin.advance(3601.0).await;
    let swept = admin.post("/v1/test/sweep", json!({})).await;
    assert_eq!(swept["ended"], json!(0));
    assert_eq!(admin.devices(&org).await.len(), 1);
    admin
        .edit_config(&org, &config, "[GLOBAL]\nrenewed = 1\n")
        .await;
    assert_eq!(next_configuration(&mut connection).await.revision, 2);

    // A missing valid_until is refused rather than read as "no end".
    let (status, _) = admin
        .call(
            Method::PATCH,
            &format!("/v1/organizations/{org}/licenses/{license}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 422);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_key_cannot_add_or_renew_licenses() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let license = admin.add_licenses(&org, 1).await.remove(0);
    let key = admin.create_key(&org, "portal").await;
    let portal = admin.with_token(key["key"].as_str().unwrap());
    let (status, answer) = portal
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/licenses"),
            Some(json!({ "count": 10 })),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (403, json!("forbidden"))
    );
    let (status, _) = portal
        .call(
            Method::PATCH,
            &format!("/v1/organizations/{org}/licenses/{license}"),
            Some(json!({ "valid_until": null })),
        )
        .await;
    assert_eq!(status, 403);
    // The key can read its organization's licenses.
    assert_eq!(portal.licenses(&org).await.len(), 1);
    assert_eq!(admin.summary(&org).await["total"], json!(1));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licenses_are_listed_with_their_status() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let now = server_now(admin).await;
    let licenses = admin.add_licenses(&org, 3).await;
    admin
        .post(
            &format!("/v1/organizations/{org}/licenses"),
            json!({ "count": 1, "valid_until": now.plus_millis(10_000) }),
        )
        .await;
    admin.single_use_code(&org, &licenses[1]).await;
    let code = admin.reusable_code(&org, json!({})).await;
    pair_ok(&test.device_url(), code["code"].as_str().unwrap()).await;
    admin.advance(11.0).await;
    let summary = admin.summary(&org).await;
    assert_eq!(
        summary,
        json!({ "total": 4, "free": 1, "reserved": 1, "assigned": 1, "expired": 1 })
    );
    let free = admin
        .get(&format!("/v1/organizations/{org}/licenses?status=free"))
        .await;
    assert_eq!(free["items"].as_array().unwrap().len(), 1);
    // Pagination walks every license once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/organizations/{org}/licenses?limit=3&cursor={cursor}"),
            None => format!("/v1/organizations/{org}/licenses?limit=3"),
        };
        let page = admin.get(&path).await;
        seen.extend(ids(&json!(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|license| license["id"].clone())
                .collect::<Vec<_>>()
        )));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    let (status, answer) = admin
        .call(
            Method::GET,
            &format!("/v1/organizations/{org}/licenses?cursor=nonsense"),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (422, json!("cursor"))
    );
    test.stop().await;
}
