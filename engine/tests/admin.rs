//! Admin commands on a real SQLite file, through `Engine::run`: who may run them, what they
//! answer (what their transaction decided), and that a refused or failed command changes
//! nothing. Assertions read the engine's observable state through its queries.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use engine::admin::{
    AddLicenses, AssignConfiguration, ConfigureDevice, CreateConfiguration, CreateKey,
    CreateOrganization, CreateReusableCode, CreateSingleUseCode, ExpireDevices, RenewLicense,
    RevokeCode, UpdateConfiguration,
};
use engine::ids::DeviceId;
use engine::model::{CodeStatus, LicenseStatus, PageRequest};
use engine::query::{
    GetConfiguration, GetDevice, GetLicense, GetLicenseSummary, ListAudit, ListCodes, ListLicenses,
};
use engine::{Clock, Engine, EngineError, IdempotencyKey, PairAnswer, Principal, Refusal};
use testkit::{Backend, Fixture, TestDevice, org_with_code};

const OPERATOR: Principal = Principal::Operator;

async fn engine() -> (Fixture, Engine) {
    let fixture = Fixture::new(Backend::Sqlite).await;
    let engine = fixture.start().await;
    (fixture, engine)
}

async fn audit_actions(engine: &Engine, org: engine::ids::OrgId) -> Vec<String> {
    let page = ListAudit {
        page: PageRequest::first(PageRequest::MAX_LIMIT),
        ..ListAudit::default()
    };
    let audit = engine.query(&OPERATOR, org, page).await.unwrap();
    audit.items.into_iter().map(|entry| entry.action).collect()
}

#[tokio::test]
async fn a_retried_command_gets_its_first_reply_and_creates_nothing_more() {
    let (_fixture, engine) = engine().await;
    let (org, _) = org_with_code(&engine, 0, None).await;
    let key = IdempotencyKey::parse("retry-1").unwrap();
    let command = || CreateReusableCode::new(None, Some(5), Some("vans".into()));
    let first = engine
        .run_with_key(&OPERATOR, org.id, command(), Some(key.clone()))
        .await
        .unwrap();
    let again = engine
        .run_with_key(&OPERATOR, org.id, command(), Some(key.clone()))
        .await
        .unwrap();
    assert_eq!(again, first, "the same code, secret included");
    // Another command under the same key is refused, and creates nothing either.
    let other = engine
        .run_with_key(
            &OPERATOR,
            org.id,
            CreateReusableCode::new(None, Some(6), Some("vans".into())),
            Some(key),
        )
        .await;
    assert!(
        matches!(
            &other,
            Err(EngineError::Conflict {
                code: "idempotency_key_reused",
                ..
            })
        ),
        "{other:?}"
    );
    let codes = engine
        .query(&OPERATOR, org.id, ListCodes::default())
        .await
        .unwrap();
    assert_eq!(
        codes.items.len(),
        2,
        "the fixture's code and the first one only"
    );

    // New organizations live in one scope per caller, whatever id each gets.
    let key = IdempotencyKey::parse("new-org").unwrap();
    let create = || CreateOrganization {
        name: "Globex".into(),
    };
    let first = engine
        .create_organization_with_key(&OPERATOR, create(), Some(key.clone()))
        .await
        .unwrap();
    let again = engine
        .create_organization_with_key(&OPERATOR, create(), Some(key))
        .await
        .unwrap();
    assert_eq!(first, again);
}

#[tokio::test]
async fn what_a_principal_may_not_do_is_refused_before_anything_changes() {
    let (_fixture, engine) = engine().await;
    let (org, _) = org_with_code(&engine, 1, None).await;
    let (other_org, _) = org_with_code(&engine, 1, None).await;
    let key = engine
        .run(
            &OPERATOR,
            org.id,
            CreateKey {
                name: "portal".into(),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let as_key = engine.authenticate(&key.key).await.unwrap();
    assert_eq!(
        as_key,
        Principal::OrgKey {
            org_id: org.id,
            key_id: key.info.id
        }
    );

    let add = AddLicenses {
        count: 3,
        valid_until: None,
    };
    let refused = engine.run(&as_key, org.id, add.clone()).await;
    assert!(
        matches!(refused, Err(EngineError::Forbidden(_))),
        "{refused:?}"
    );
    // Another organization does not exist for the key, for commands and queries alike.
    let hidden = engine.run(&as_key, other_org.id, add).await;
    assert_eq!(hidden, Err(EngineError::NotFound("organization")));
    let hidden = engine.query(&as_key, other_org.id, GetLicenseSummary).await;
    assert_eq!(
        hidden.map(|_| ()),
        Err(EngineError::NotFound("organization"))
    );
    // Only the expiry sweep ends expired pairings.
    let expire = ExpireDevices {
        device_ids: vec![DeviceId::generate()],
    };
    let refused = engine.run(&OPERATOR, org.id, expire).await;
    assert!(
        matches!(refused, Err(EngineError::Forbidden(_))),
        "{refused:?}"
    );

    let summary = engine
        .query(&OPERATOR, org.id, GetLicenseSummary)
        .await
        .unwrap();
    assert_eq!(summary.total, 1, "nothing was added");
    let additions = audit_actions(&engine, org.id)
        .await
        .into_iter()
        .filter(|action| action == "licenses.added")
        .count();
    assert_eq!(additions, 1, "the fixture's, and no other");
}

#[tokio::test]
async fn a_renewal_answers_the_license_as_renewed() {
    let (fixture, engine) = engine().await;
    let now = fixture.clock.now();
    let (org, _) = org_with_code(&engine, 1, Some(now.plus(Duration::from_secs(60)))).await;
    let license = engine
        .query(&OPERATOR, org.id, ListLicenses::default())
        .await
        .unwrap()
        .items[0]
        .license
        .clone();
    let later = now.plus(Duration::from_secs(3600));
    let renewed = engine
        .run(
            &OPERATOR,
            org.id,
            RenewLicense {
                license_id: license.id,
                valid_until: Some(later),
            },
        )
        .await
        .unwrap();
    assert_eq!(renewed.valid_until, Some(later));
    assert_eq!(renewed.status, LicenseStatus::Free);
    // An end in the past is refused and changes nothing.
    let refused = engine
        .run(
            &OPERATOR,
            org.id,
            RenewLicense {
                license_id: license.id,
                valid_until: Some(now),
            },
        )
        .await;
    assert!(matches!(
        refused,
        Err(EngineError::Invalid {
            field: "valid_until",
            ..
        })
    ));
    let read = engine
        .query(
            &OPERATOR,
            org.id,
            GetLicense {
                license_id: license.id,
            },
        )
        .await
        .unwrap();
    assert_eq!(read, renewed);
    // After the end passes, the license reads as expired.
    fixture.clock.advance(Duration::from_secs(7200));
    let read = engine
        .query(
            &OPERATOR,
            org.id,
            GetLicense {
                license_id: license.id,
            },
        )
        .await
        .unwrap();
    assert_eq!(read.status, LicenseStatus::Expired);
}

#[tokio::test]
async fn a_revoked_single_use_code_releases_its_license_and_is_audited_once() {
    let (_fixture, engine) = engine().await;
    let (org, _) = org_with_code(&engine, 1, None).await;
    let license = engine
        .query(&OPERATOR, org.id, ListLicenses::default())
        .await
        .unwrap()
        .items[0]
        .license
        .id;
    let code = engine
        .run(&OPERATOR, org.id, CreateSingleUseCode::new(license, None))
        .await
        .unwrap();
    let summary = engine
        .query(&OPERATOR, org.id, GetLicenseSummary)
        .await
        .unwrap();
    assert_eq!((summary.reserved, summary.free), (1, 0));
    // A new code for the same license replaces the first: the first is refused.
    let replacement = engine
        .run(&OPERATOR, org.id, CreateSingleUseCode::new(license, None))
        .await
        .unwrap();
    let device = TestDevice::new();
    let refused = engine
        .pair(device.pair_request(&code.code), &device.connect(&engine))
        .await;
    assert!(
        matches!(
            refused,
            PairAnswer::Refused {
                reason: Refusal::CodeRevoked,
                ..
            }
        ),
        "{refused:?}"
    );

    let revoke = || RevokeCode {
        code_id: replacement.info.id,
    };
    let revoked = engine.run(&OPERATOR, org.id, revoke()).await.unwrap();
    assert_eq!(revoked.status, CodeStatus::Revoked);
    let again = engine.run(&OPERATOR, org.id, revoke()).await.unwrap();
    assert_eq!(again, revoked, "revoking again answers the same");
    let summary = engine
        .query(&OPERATOR, org.id, GetLicenseSummary)
        .await
        .unwrap();
    assert_eq!((summary.reserved, summary.free), (0, 1));
    let audit = engine
        .query(&OPERATOR, org.id, ListAudit::default())
        .await
        .unwrap();
    let revocations = audit
        .items
        .iter()
        .filter(|entry| entry.action == "code.revoked")
        .count();
    assert_eq!(revocations, 1, "revoked once, however often it is asked");
    let replacing = audit
        .items
        .iter()
        .find(|entry| {
            entry.action == "code.created" && entry.subject == Some(replacement.info.id.to_string())
        })
        .expect("the replacement's creation");
    assert_eq!(
        replacing.details["replaced"],
        serde_json::json!([code.info.id]),
        "the replacement names the code it replaced"
    );
}

#[tokio::test]
async fn configuration_commands_answer_what_they_decided_and_refusals_change_nothing() {
    let (_fixture, engine) = engine().await;
    let (org, code) = org_with_code(&engine, 2, None).await;
    let create = |name: &str| CreateConfiguration {
        name: name.into(),
        body: "[GLOBAL]\nsynctime_high_threshold = 600\n".into(),
    };
    // A device that pairs before any configuration exists waits for the first one.
    let device = TestDevice::new();
    let link = device.connect(&engine);
    let PairAnswer::Paired(paired) = engine.pair(device.pair_request(&code.code), &link).await
    else {
        panic!("not paired");
    };
    assert!(paired.configuration_pending);
    let first = engine
        .run(&OPERATOR, org.id, create("First"))
        .await
        .unwrap();
    assert_eq!(first.assigned_devices, 1, "the waiting device got it");
    assert_eq!(link.take().configuration.map(|c| c.id), Some(first.id));

    // A body the app could not read is refused with its problems, and nothing is saved.
    let broken = UpdateConfiguration {
        config_id: first.id,
        name: None,
        body: Some("[global]\n".into()),
        if_revision: None,
    };
    let refused = engine.run(&OPERATOR, org.id, broken).await;
    assert!(matches!(
        refused,
        Err(EngineError::InvalidConfiguration { .. })
    ));
    // An edit against a stale revision is refused too.
    let stale = UpdateConfiguration {
        config_id: first.id,
        name: Some("Renamed".into()),
        body: None,
        if_revision: Some(7),
    };
    let refused = engine.run(&OPERATOR, org.id, stale).await;
    assert!(matches!(
        refused,
        Err(EngineError::Conflict {
            code: "revision_mismatch",
            ..
        })
    ));
    let read = engine
        .query(
            &OPERATOR,
            org.id,
            GetConfiguration {
                config_id: first.id,
            },
        )
        .await
        .unwrap();
    assert_eq!((read.revision, read.name.as_str()), (1, "First"));

    // Assigning to a known and an unknown device assigns neither.
    let second = engine
        .run(&OPERATOR, org.id, create("Second"))
        .await
        .unwrap();
    let assign = AssignConfiguration {
        config_id: second.id,
        device_ids: vec![paired.device_id, DeviceId::generate()],
    };
    let refused = engine.run(&OPERATOR, org.id, assign).await;
    assert_eq!(refused, Err(EngineError::NotFound("device")));
    let device_now = engine
        .query(
            &OPERATOR,
            org.id,
            GetDevice {
                device_id: paired.device_id,
            },
        )
        .await
        .unwrap();
    assert_eq!(device_now.configuration.map(|c| c.id), Some(first.id));

    // Configure one device: the answer is the device with its new assignment, and the
    // connection is handed the configuration.
    let configured = engine
        .run(
            &OPERATOR,
            org.id,
            ConfigureDevice {
                device_id: paired.device_id,
                config_id: second.id,
            },
        )
        .await
        .unwrap();
    assert_eq!(configured.configuration.map(|c| c.id), Some(second.id));
    assert_eq!(link.take().configuration.map(|c| c.id), Some(second.id));
}
