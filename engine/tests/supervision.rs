//! An organization actor that fails is restarted by its supervisor with its state reloaded from
//! the database; other organizations never notice; an actor that keeps failing backs off.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use engine::admin::CreateReusableCode;
use engine::ids::OrgId;
use engine::{Engine, EngineError, EngineSettings, OrgActorStatus, PairAnswer, Principal};
use testkit::{Backend, Fixture, TestDevice, org_with_code};

/// The actor's status once it has been restarted after `before` (bounded wait).
async fn restarted(engine: &Engine, org: OrgId, before: u64) -> OrgActorStatus {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(status) = engine.org_actor_status(org).await
                && status.incarnation > before
            {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the actor restarts within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_actor_restarts_with_its_state_and_others_never_notice() {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let engine = fixture.start().await;
    let (crashing, code) = org_with_code(&engine, 2, None).await;
    let (steady, _) = org_with_code(&engine, 2, None).await;
    let before = engine.org_actor_status(crashing.id).await.unwrap();
    let steady_before = engine.org_actor_status(steady.id).await.unwrap();

    engine.crash_org_actor(crashing.id).await.unwrap();
    let after = restarted(&engine, crashing.id, before.incarnation).await;
    assert_eq!(
        after.name, "Acme",
        "its state is reloaded from the database"
    );
    assert_eq!(engine.metrics().actor_restarts, 1);
    // It works again: a pairing and a command.
    let device = TestDevice::new();
    let answer = engine
        .pair(device.pair_request(&code.code), &device.connect(&engine))
        .await;
    assert!(matches!(answer, PairAnswer::Paired(_)), "{answer:?}");
    engine
        .run(
            &Principal::Operator,
            crashing.id,
            CreateReusableCode::new(None, None, None),
        )
        .await
        .unwrap();
    let steady_after = engine.org_actor_status(steady.id).await.unwrap();
    assert_eq!(steady_after.incarnation, steady_before.incarnation);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_keeps_failing_backs_off() {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let settings = EngineSettings {
        max_restarts: 1,
        restart_window: Duration::from_secs(60),
        restart_backoff: Duration::from_secs(30),
        ..EngineSettings::default()
    };
    let engine = fixture.start_with(settings).await;
    let (org, _) = org_with_code(&engine, 1, None).await;
    let first = engine.org_actor_status(org.id).await.unwrap();
    engine.crash_org_actor(org.id).await.unwrap();
    let second = restarted(&engine, org.id, first.incarnation).await;
    // The second failure in the window: no restart, the organization is unavailable for a
    // while, and says when to retry.
    engine.crash_org_actor(org.id).await.unwrap();
    // (A request that reached the actor as it died is answered "unavailable" at once, with the
    // default retry; the back-off says how long it lasts.)
    let retry_after_ms = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match engine.org_actor_status(org.id).await {
                Err(EngineError::Unavailable { retry_after_ms }) if retry_after_ms > 1_000 => {
                    return retry_after_ms;
                }
                Err(EngineError::Unavailable { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
                Ok(status) => assert_eq!(status.incarnation, second.incarnation),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the organization backs off within 10 s");
    assert!(retry_after_ms <= 30_000, "{retry_after_ms}");
    engine.shutdown().await;
}
