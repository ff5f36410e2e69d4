//! Unpairing: the device is told and disconnected, the license is freed, the credential ends.

use client::{PairResult, ResumeResult};
use protocol::{CloseCode, EndReason, ServerMessage};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpairing_tells_and_disconnects_the_device_and_frees_its_license() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Acme", 1).await;
    admin.create_config(&org, "Meters", "[GLOBAL]\n").await;
    let (identity, mut connection, paired) = pair_ok(&test.device_url(), &code).await;
    next_configuration(&mut connection).await;

    let answer = admin.unpair(&org, paired.device_id).await;
    assert_eq!(answer["license_id"], json!(paired.license_id.to_string()));
    match connection.recv_timeout(WAIT).await {
        Ok(ServerMessage::Ended(ended)) => assert_eq!(ended.reason, EndReason::Unpaired),
        other => panic!("expected the unpaired notice, got {other:?}"),
    }
    let closed = connection.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(CloseCode::Unpaired));
    assert_eq!(admin.summary(&org).await["free"], json!(1));
    assert!(admin.devices(&org).await.is_empty());

    // The old credential no longer reconnects; the device is told it was unpaired.
    let mut again = test.connect().await;
    let resumed = again
        .resume(&identity, &device_info("device"), None)
        .await
        .unwrap();
    assert_eq!(resumed, ResumeResult::Ended(EndReason::Unpaired));
    let closed = again.recv_timeout(WAIT).await.unwrap_err();
    assert_eq!(closed.close_code(), Some(CloseCode::Unpaired));

    // The installation may pair again with a code: a new device.
    let mut fresh = test.connect().await;
    let result = fresh
        .pair(&code, &identity, &device_info("device"))
        .await
        .unwrap();
    let PairResult::Paired(repaired) = result else {
        panic!("pairing again refused: {result:?}")
    };
    assert_ne!(repaired.device_id, paired.device_id);
    assert!(!repaired.already_paired);

    // Unpairing what is not there (any more) is not found.
    let (status, _) = admin
        .call(
            Method::POST,
            &format!(
                "/v1/organizations/{org}/devices/{}/unpair",
                paired.device_id
            ),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404);
    test.stop().await;
}
