//! The engine on a real SQLite file: the main flows, in process.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;

use engine::ids::Timestamp;
use engine::secrets::ServerKey;
use engine::{Engine, EngineSettings, ManualClock, PairAnswer, Principal, ResumeAnswer};
use protocol::{Credential, DeviceInfo, Pair, Resume};
use uuid::Uuid;

fn info() -> DeviceInfo {
    DeviceInfo {
        name: "dev".into(),
        model: "m".into(),
        os: "os".into(),
        app_version: "1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_resume_ack_unpair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store::SqliteStore::open(&store::SqliteSettings::new(dir.path().join("p.db")))
        .await
        .expect("open");
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let engine = Engine::start(
        Arc::new(store),
        clock.clone(),
        &ServerKey::generate(),
        EngineSettings::default(),
    )
    .await
    .expect("start");
    let op = Principal::Operator;
    let org = engine
        .create_organization(&op, "Acme", None)
        .await
        .expect("org");
    engine
        .add_licenses(&op, org.id, 2, None, None)
        .await
        .expect("licenses");
    let config = engine
        .create_configuration(&op, org.id, "Main", "[GLOBAL]\n", None)
        .await
        .expect("config");
    let code = engine
        .create_reusable_code(&op, org.id, Default::default(), None)
        .await
        .expect("code");
    let link = engine.new_link(IpAddr::from([127, 0, 0, 1]));
    let credential = Credential([9; 32]);
    let installation = Uuid::new_v4();
    let answer = engine
        .pair(
            &Pair {
                code: code.code.clone(),
                installation_id: installation,
                credential: credential.clone(),
                device: info(),
            },
            &link,
        )
        .await;
    let PairAnswer::Paired(paired) = answer else {
        panic!("not paired: {answer:?}")
    };
    let update = link.take();
    assert_eq!(update.configuration.map(|c| c.id), Some(config.id));

    let devices = engine
        .list_devices(&op, org.id, &Default::default())
        .await
        .expect("devices");
    assert_eq!(devices.items.len(), 1);
    assert!(devices.items[0].online);

    engine.disconnected(&link).await;
    let link2 = engine.new_link(IpAddr::from([127, 0, 0, 1]));
    let resumed = engine
        .resume(
            &Resume {
                installation_id: installation,
                credential: credential.clone(),
                device: info(),
                current: None,
            },
            &link2,
        )
        .await;
    assert!(matches!(resumed, ResumeAnswer::Resumed(_)), "{resumed:?}");
    engine
        .unpair_device(&op, org.id, paired.device_id)
        .await
        .expect("unpair");
    assert_eq!(link2.take().end, Some(protocol::EndReason::Unpaired));
    let summary = engine.license_summary(&op, org.id).await.expect("summary");
    assert_eq!(summary.free, 2);
    let audit = engine
        .audit_log(&op, Some(org.id), &Default::default())
        .await
        .expect("audit");
    assert!(audit.items.iter().any(|e| e.action == "device.paired"));
    engine.shutdown().await;
}
