//! An organization actor that fails is restarted with its state; others never notice.

use std::time::Duration;

use engine::ids::OrgId;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_organization_actor_restarts_with_its_state_and_others_never_notice() {
    let test = TestServer::start().await;
    let admin = &test.admin;
    let (crashing, crashing_code) = admin.org_with_code("Crashing", 5).await;
    let (steady, steady_code) = admin.org_with_code("Steady", 5).await;
    let crashing_config = admin.create_config(&crashing, "Meters", "[GLOBAL]\n").await;
    admin.create_config(&steady, "Meters", "[GLOBAL]\n").await;
    let (_, mut crashing_device, crashing_paired) =
        pair_ok(&test.device_url(), &crashing_code).await;
    next_configuration(&mut crashing_device).await;
    let (_, mut steady_device, _) = pair_ok(&test.device_url(), &steady_code).await;
    next_configuration(&mut steady_device).await;

    let engine = &test.server.engine;
    let crashing_id: OrgId = crashing.parse().unwrap();
    let steady_id: OrgId = steady.parse().unwrap();
    let before = engine.org_actor_status(crashing_id).await.unwrap();
    let steady_before = engine.org_actor_status(steady_id).await.unwrap();

    let (status, _) = admin
        .call(
            Method::POST,
            &format!("/v1/test/organizations/{crashing}/crash"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let after = eventually("the actor to restart", || async {
        engine
            .org_actor_status(crashing_id)
            .await
            .ok()
            .filter(|status| status.incarnation > before.incarnation)
    })
    .await;
    assert_eq!(after.name, "Crashing", "state reloaded from the database");
    assert_eq!(engine.metrics().actor_restarts, 1);

    // Its data is intact and it keeps working: pairing, pushing to the device connected
    // before the crash.
    let devices = admin.devices(&crashing).await;
    assert_eq!(devices.len(), 1);
    assert_eq!(
        devices[0]["id"],
        json!(crashing_paired.device_id.to_string())
    );
    pair_ok(&test.device_url(), &crashing_code).await;
    admin
        .edit_config(&crashing, &crashing_config, "[GLOBAL]\nv = 2\n")
        .await;
    assert_eq!(next_configuration(&mut crashing_device).await.revision, 2);
    assert_eq!(admin.summary(&crashing).await["assigned"], json!(2));

    // The other organization's actor was never restarted.
    let steady_after = engine.org_actor_status(steady_id).await.unwrap();
    assert_eq!(steady_after.incarnation, steady_before.incarnation);
    pair_ok(&test.device_url(), &steady_code).await;
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_keeps_failing_backs_off_then_recovers() {
    let test = TestServer::start_with(|config| {
        config.engine.max_restarts = 2;
        config.engine.restart_window = Duration::from_secs(60);
        config.engine.restart_backoff = Duration::from_millis(300);
    })
    .await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Flaky", 2).await;
    let engine = &test.server.engine;
    let id: OrgId = org.parse().unwrap();
    for round in 0..3 {
        let before = engine
            .org_actor_status(id)
            .await
            .map(|s| s.incarnation)
            .unwrap_or(0);
        engine.crash_org_actor(id).await.unwrap();
        if round < 2 {
            eventually("a restart", || async {
                engine
                    .org_actor_status(id)
                    .await
                    .ok()
                    .filter(|status| status.incarnation > before)
            })
            .await;
        }
    }
    // Third failure within the window: backing off, requests are refused as retryable.
    let (status, answer) = admin
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/codes"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (503, json!("unavailable"))
    );
    let (_, _, result) = pair_new(&test.device_url(), &code).await;
    assert_eq!(refusal(&result), Some(protocol::RefusalReason::Unavailable));
    // After the back-off the organization works again, its data intact.
    eventually("the back-off to end", || async {
        let (status, _) = admin
            .call(
                Method::GET,
                &format!("/v1/organizations/{org}/licenses/summary"),
                None,
            )
            .await;
        let (_, _, result) = pair_new(&test.device_url(), &code).await;
        (status == 200 && refusal(&result).is_none()).then_some(())
    })
    .await;
    assert_eq!(admin.summary(&org).await["assigned"], json!(1));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_organization_actor_stops_and_starts_again_on_demand() {
    let test = TestServer::start_with(|config| {
        config.engine.org_idle_timeout = Duration::from_millis(200);
    })
    .await;
    let admin = &test.admin;
    let (org, code) = admin.org_with_code("Sleepy", 2).await;
    let engine = &test.server.engine;
    pair_ok(&test.device_url(), &code).await;
    assert_eq!(engine.metrics().running_organization_actors, 1);
    eventually("the idle actor to stop", || async {
        (engine.metrics().running_organization_actors == 0).then_some(())
    })
    .await;
    // The next request starts it again, with its state from the database.
    pair_ok(&test.device_url(), &code).await;
    assert_eq!(admin.summary(&org).await["assigned"], json!(2));
    test.stop().await;
}
