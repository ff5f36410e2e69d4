//! Codes: validity, use limits, revocation, single-use reservations.

use protocol::RefusalReason;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reusable_code_expires_at_the_end_of_its_validity() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    admin.add_licenses(&org, 5).await;
    let code = admin
        .reusable_code(&org, json!({ "validity_seconds": 3600 }))
        .await;
    let text = code["code"].as_str().unwrap();
    pair_ok(&test.device_url(), text).await;
    admin.advance(3599.0).await;
    pair_ok(&test.device_url(), text).await;
    admin.advance(1.0).await;
    let (_, _, result) = pair_new(&test.device_url(), text).await;
    assert_eq!(refusal(&result), Some(RefusalReason::CodeExpired));
    let shown = admin
        .get(&format!(
            "/v1/organizations/{org}/codes/{}",
            code["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(shown["status"], json!("expired"));
    assert_eq!(shown["uses"], json!(2));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_uses_limits_a_reusable_code_and_uses_are_counted() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    admin.add_licenses(&org, 5).await;
    let code = admin
        .reusable_code(&org, json!({ "max_uses": 2, "label": "van fleet" }))
        .await;
    let text = code["code"].as_str().unwrap();
    assert_eq!(code["max_uses"], json!(2));
    assert_eq!(code["label"], json!("van fleet"));
    pair_ok(&test.device_url(), text).await;
    pair_ok(&test.device_url(), text).await;
    let (_, _, result) = pair_new(&test.device_url(), text).await;
    assert_eq!(refusal(&result), Some(RefusalReason::CodeUseLimit));
    let listed = admin
        .get(&format!("/v1/organizations/{org}/codes?kind=reusable"))
        .await;
    let listed = &listed["items"][0];
    assert_eq!(listed["uses"], json!(2));
    assert_eq!(listed["status"], json!("exhausted"));
    assert!(listed["last_used_at"].is_string());
    assert!(listed.get("code").is_none(), "lists never show the secret");
    assert_eq!(admin.summary(&org).await["assigned"], json!(2));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_code_pairs_nobody() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    admin.add_licenses(&org, 5).await;
    let code = admin.reusable_code(&org, json!({})).await;
    let id = code["id"].as_str().unwrap();
    let revoked = admin
        .post(
            &format!("/v1/organizations/{org}/codes/{id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(revoked["status"], json!("revoked"));
    let (_, _, result) = pair_new(&test.device_url(), code["code"].as_str().unwrap()).await;
    assert_eq!(refusal(&result), Some(RefusalReason::CodeRevoked));
    assert_eq!(admin.summary(&org).await["assigned"], json!(0));
    // Revoking again is harmless.
    admin
        .post(
            &format!("/v1/organizations/{org}/codes/{id}/revoke"),
            json!({}),
        )
        .await;
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validity_outside_its_bounds_is_refused() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let license = admin.add_licenses(&org, 1).await.remove(0);
    let codes = format!("/v1/organizations/{org}/codes");
    let single = format!("/v1/organizations/{org}/licenses/{license}/single-use-code");
    for (path, body, expected) in [
        (&codes, json!({ "validity_seconds": 3599 }), 422),
        (&codes, json!({ "validity_seconds": 31_536_001 }), 422),
        (&codes, json!({ "max_uses": 0 }), 422),
        (&codes, json!({ "validity_seconds": -5 }), 422),
        (&codes, json!({ "validity_seconds": 3600 }), 201),
        (&codes, json!({ "validity_seconds": 31_536_000 }), 201),
        (&single, json!({ "validity_seconds": 9 }), 422),
        (&single, json!({ "validity_seconds": 601 }), 422),
        (&single, json!({ "validity_seconds": 10 }), 201),
        (&single, json!({ "validity_seconds": 600 }), 201),
    ] {
        let (status, answer) = admin.call(Method::POST, path, Some(body.clone())).await;
        assert_eq!(status, expected, "{body} → {answer}");
        if expected == 422 {
            assert_eq!(
                answer["error"]["code"],
                json!("invalid_request"),
                "{answer}"
            );
        }
    }
    // Only the codes that were accepted exist.
    let listed = admin.get(&codes).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 4);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_code_is_refused_for_an_assigned_or_expired_license() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    let (_, _, paired) = pair_ok(&test.device_url(), &code).await;
    let (status, answer) = admin
        .call(
            Method::POST,
            &format!(
                "/v1/organizations/{org}/licenses/{}/single-use-code",
                paired.license_id
            ),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (409, json!("license_assigned"))
    );

    let now = admin.get("/v1/status").await["now"]
        .as_str()
        .unwrap()
        .to_string();
    let until = engine::ids::Timestamp::parse_rfc3339(&now)
        .unwrap()
        .plus_millis(60_000);
    let added = admin
        .post(
            &format!("/v1/organizations/{org}/licenses"),
            json!({ "count": 1, "valid_until": until }),
        )
        .await;
    let expiring = added["license_ids"][0].as_str().unwrap();
    admin.advance(61.0).await;
    let (status, answer) = admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/licenses/{expiring}/single-use-code"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (409, json!("license_expired"))
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_single_use_code_replaces_the_previous_one() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let license = admin.add_licenses(&org, 1).await.remove(0);
    let old = admin.single_use_code(&org, &license).await;
    let new = admin.single_use_code(&org, &license).await;
    assert_ne!(old["code"], new["code"]);
    let (_, _, result) = pair_new(&test.device_url(), old["code"].as_str().unwrap()).await;
    assert_eq!(refusal(&result), Some(RefusalReason::CodeRevoked));
    let (_, _, paired) = pair_ok(&test.device_url(), new["code"].as_str().unwrap()).await;
    assert_eq!(paired.license_id.to_string(), license);
    let (_, _, again) = pair_new(&test.device_url(), new["code"].as_str().unwrap()).await;
    assert_eq!(refusal(&again), Some(RefusalReason::CodeUsed));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_holds_until_the_code_expires_or_is_revoked() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let license = admin.add_licenses(&org, 1).await.remove(0);
    let reusable = admin.reusable_code(&org, json!({})).await;
    let reusable = reusable["code"].as_str().unwrap().to_string();
    let single = admin.single_use_code(&org, &license).await;
    assert_eq!(admin.summary(&org).await["reserved"], json!(1));

    // Reserved: a reusable-code pairing does not take it.
    let (_, _, result) = pair_new(&test.device_url(), &reusable).await;
    assert_eq!(refusal(&result), Some(RefusalReason::NoFreeLicense));

    // The single-use code expires after its default 60 s: the reservation is released.
    admin.advance(60.0).await;
    assert_eq!(admin.summary(&org).await["free"], json!(1));
    let (_, _, expired) = pair_new(&test.device_url(), single["code"].as_str().unwrap()).await;
    assert_eq!(refusal(&expired), Some(RefusalReason::CodeExpired));

    // Reserve again, then revoke: released at once.
    let again = admin.single_use_code(&org, &license).await;
    let (_, _, result) = pair_new(&test.device_url(), &reusable).await;
    assert_eq!(refusal(&result), Some(RefusalReason::NoFreeLicense));
    let revoked = admin
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{org}/licenses/{license}/single-use-code"),
            None,
        )
        .await;
    assert_eq!(revoked.0, 200);
    let (_, _, paired) = pair_ok(&test.device_url(), &reusable).await;
    assert_eq!(paired.license_id.to_string(), license);
    let (_, _, result) = pair_new(&test.device_url(), again["code"].as_str().unwrap()).await;
    assert_eq!(refusal(&result), Some(RefusalReason::CodeRevoked));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_come_with_payload_and_qr_and_reusable_ones_can_be_shown_again() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let license = admin.add_licenses(&org, 1).await.remove(0);
    let code = admin
        .post(&format!("/v1/organizations/{org}/codes?qr=png"), json!({}))
        .await;
    let payload = protocol::PairingPayload::parse(code["payload_uri"].as_str().unwrap()).unwrap();
    assert_eq!(payload.code.as_str(), code["code"].as_str().unwrap());
    assert_eq!(payload.websocket_url(), test.device_url());
    assert!(code["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(
        code["qr_png_base64"]
            .as_str()
            .unwrap()
            .starts_with("iVBORw0KGgo")
    );

    let id = code["id"].as_str().unwrap();
    let shown = admin
        .get(&format!("/v1/organizations/{org}/codes/{id}/reveal"))
        .await;
    assert_eq!(shown["code"], code["code"]);
    assert_eq!(shown["payload_uri"], code["payload_uri"]);
    let png = reqwest::Client::new()
        .get(format!(
            "{}/v1/organizations/{org}/codes/{id}/qr.png",
            admin.base()
        ))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(&png.bytes().await.unwrap()[1..4], b"PNG");

    let single = admin.single_use_code(&org, &license).await;
    assert!(single["qr_svg"].as_str().unwrap().contains("<svg"));
    let (status, answer) = admin
        .call(
            Method::GET,
            &format!(
                "/v1/organizations/{org}/codes/{}/reveal",
                single["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (409, json!("code_not_shown_again"))
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_have_their_default_validity() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let org = admin.create_org("Acme").await;
    let license = admin.add_licenses(&org, 1).await.remove(0);
    let span = |code: &serde_json::Value| {
        let at = |field: &str| {
            engine::ids::Timestamp::parse_rfc3339(code[field].as_str().unwrap())
                .unwrap()
                .millis()
        };
        at("expires_at") - at("created_at")
    };
    let reusable = admin.reusable_code(&org, json!({})).await;
    assert_eq!(span(&reusable), 30 * 24 * 3600 * 1000, "30 days");
    let single = admin.single_use_code(&org, &license).await;
    assert_eq!(span(&single), 60 * 1000, "60 seconds");
    test.stop().await;
}
