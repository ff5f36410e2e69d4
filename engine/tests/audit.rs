//! The audit log as a person reads it, through the engine on each backend: entries carry the
//! names of what they concern as they were.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use engine::admin::{
    ConfigureDevice, CreateConfiguration, CreateKey, CreateReusableCode, RevokeCode, RevokeKey,
    UnpairDevice, UpdateConfiguration,
};
use engine::ids::{DeviceId, OrgId};
use engine::model::{AuditEntry, CodeWithSecret, PageRequest};
use engine::query::ListAudit;
use engine::store::DeviceDetails;
use engine::{Engine, EngineError, PairAnswer, Principal, ResumeAnswer};
use serde_json::json;
use testkit::{Backend, Fixture, TestDevice, org_with_code};

const OPERATOR: Principal = Principal::Operator;

fn device_details(name: &str) -> DeviceDetails {
    DeviceDetails {
        name: name.into(),
        model: "TC52".into(),
        os: "Android 13".into(),
        app_version: "4.2.1".into(),
    }
}

/// Pairs `device` with `code`, saying `name`; returns its id.
async fn pair(engine: &Engine, device: &TestDevice, code: &CodeWithSecret, name: &str) -> DeviceId {
    let mut request = device.pair_request(&code.code);
    request.details = device_details(name);
    match engine.pair(request, &device.connect(engine)).await {
        PairAnswer::Paired(paired) => paired.device_id,
        other => panic!("not paired: {other:?}"),
    }
}

/// Every page of `org`'s log, read `limit` entries at a time as `principal`.
async fn read_all(
    engine: &Engine,
    principal: &Principal,
    org: OrgId,
    limit: u32,
) -> Result<Vec<AuditEntry>, EngineError> {
    let mut entries = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let query = ListAudit { page: page.clone() };
        let answer = engine.query(principal, org, query).await?;
        assert!(answer.items.len() <= limit as usize);
        entries.extend(answer.items);
        match answer.next_cursor {
            Some(cursor) => page.after = Some(cursor),
            None => return Ok(entries),
        }
    }
}

fn actions(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|entry| entry.action.as_str()).collect()
}

fn the<'a>(entries: &'a [AuditEntry], action: &str) -> &'a AuditEntry {
    entries
        .iter()
        .find(|entry| entry.action == action)
        .unwrap_or_else(|| panic!("no {action} in {:?}", actions(entries)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_keep_names_as_they_were_on_sqlite() {
    entries_keep_names_as_they_were(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_keep_names_as_they_were_on_postgres() {
    entries_keep_names_as_they_were(Backend::Postgres).await;
}

/// A device paired as "Van 7" that renames itself, a configuration renamed, a key and a code
/// revoked, the device unpaired: every entry says what each thing was called when it was
/// written.
async fn entries_keep_names_as_they_were(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let engine = fixture.start().await;
    let (org, _) = org_with_code(&engine, 2, None).await;
    let code = engine
        .run(
            &OPERATOR,
            org.id,
            CreateReusableCode::new(None, None, Some("vans".into())),
        )
        .await
        .unwrap();
    let key = engine
        .run(
            &OPERATOR,
            org.id,
            CreateKey {
                name: "portal".into(),
            },
        )
        .await
        .unwrap();
    let config = engine
        .run(
            &OPERATOR,
            org.id,
            CreateConfiguration {
                name: "Meters".into(),
                body: "[GLOBAL]\n".into(),
            },
        )
        .await
        .unwrap();
    let device = TestDevice::new();
    let device_id = pair(&engine, &device, &code, "Van 7").await;

    // The configuration is renamed; the device reconnects under another name.
    let rename = UpdateConfiguration {
        config_id: config.id,
        name: Some("Meters v2".into()),
        body: None,
        if_revision: None,
    };
    engine.run(&OPERATOR, org.id, rename).await.unwrap();
    let mut again = device.resume_request();
    again.details = device_details("Van 7 (spare)");
    let resumed = engine.resume(again, &device.connect(&engine)).await;
    assert!(matches!(resumed, ResumeAnswer::Resumed(_)), "{resumed:?}");
    let configure = ConfigureDevice {
        device_id,
        config_id: config.id,
    };
    engine.run(&OPERATOR, org.id, configure).await.unwrap();
    engine
        .run(&OPERATOR, org.id, UnpairDevice { device_id })
        .await
        .unwrap();
    engine
        .run(
            &OPERATOR,
            org.id,
            RevokeKey {
                key_id: key.info.id,
            },
        )
        .await
        .unwrap();
    engine
        .run(
            &OPERATOR,
            org.id,
            RevokeCode {
                code_id: code.info.id,
            },
        )
        .await
        .unwrap();

    let log = read_all(&engine, &OPERATOR, org.id, 100).await.unwrap();
    let paired = the(&log, "device.paired");
    assert_eq!(
        paired.details,
        json!({
            "code_id": code.info.id,
            "code_label": "vans",
            "license_id": paired.details["license_id"],
            "installation_id": device.installation_id,
            "name": "Van 7",
            "model": "TC52",
            "os": "Android 13",
            "app_version": "4.2.1",
        }),
        "what decided the pairing and what the device said of itself"
    );
    assert!(paired.details["license_id"].is_string());
    let created = the(&log, "configuration.created");
    assert_eq!(created.details["name"], json!("Meters"));
    let renamed = the(&log, "configuration.updated");
    assert_eq!(
        (&renamed.details["name"], &renamed.details["previous_name"]),
        (&json!("Meters v2"), &json!("Meters"))
    );
    let assigned = the(&log, "configuration.assigned");
    assert_eq!(assigned.details["name"], json!("Meters v2"));
    assert_eq!(assigned.details["device_ids"], json!([device_id]));
    assert_eq!(
        assigned.details["device_names"],
        json!({ device_id.to_string(): "Van 7 (spare)" })
    );
    let unpaired = the(&log, "device.unpaired");
    assert_eq!(unpaired.details["name"], json!("Van 7 (spare)"));
    assert_eq!(
        unpaired.details["installation_id"],
        json!(device.installation_id)
    );
    assert_eq!(unpaired.details["license_id"], paired.details["license_id"]);
    assert_eq!(the(&log, "key.revoked").details["name"], json!("portal"));
    let revoked = the(&log, "code.revoked");
    assert_eq!(
        (&revoked.details["label"], &revoked.details["kind"]),
        (&json!("vans"), &json!("reusable"))
    );
}
