//! The audit log as a person reads it, through the engine on each backend: entries carry the
//! names of what they concern as they were, a device's history stays readable once it is
//! unpaired, and the log's filters (actions, device, time) combine, page, and never reach
//! another organization's entries.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use engine::admin::{
    ConfigureDevice, CreateConfiguration, CreateReusableCode, RevokeCode, RevokeKey, UnpairDevice,
    UpdateConfiguration,
};
use engine::ids::{DeviceId, OrgId, Timestamp};
use engine::model::{AuditEntry, AuditFilter, CodeWithSecret, Configuration, PageRequest};
use engine::query::{GetDevice, ListAudit};
use engine::store::DeviceDetails;
use engine::{Engine, EngineError, PairAnswer, Principal, ResumeAnswer};
use serde_json::json;
use testkit::{Backend, Fixture, TestDevice, org_key, org_with_code};

const OPERATOR: Principal = Principal::Operator;

/// Runs the test `$test(backend)` once per backend: `$test::on_sqlite`, `$test::on_postgres`.
macro_rules! on_both_backends {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$test(testkit::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$test(testkit::Backend::Postgres).await;
            }
        }
    };
}

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

/// A configuration called "Meters".
async fn meters(engine: &Engine, org: OrgId) -> Configuration {
    let command = CreateConfiguration {
        name: "Meters".into(),
        body: "[GLOBAL]\n".into(),
    };
    engine.run(&OPERATOR, org, command).await.unwrap()
}

/// Every page of `org`'s log that passes `filter`, read `limit` entries at a time as
/// `principal`.
async fn read_all(
    engine: &Engine,
    principal: &Principal,
    org: OrgId,
    filter: &AuditFilter,
    limit: u32,
) -> Result<Vec<AuditEntry>, EngineError> {
    let mut entries = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let query = ListAudit {
            filter: filter.clone(),
            page: page.clone(),
        };
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

on_both_backends!(entries_keep_names_as_they_were);

/// A device paired as "Van 7" that renames itself, a configuration renamed, a key and a code
/// revoked, the device unpaired: every entry says what each thing was called when it was
/// written, and the device's history is still there, by its id, once it has left the list.
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
    let Principal::OrgKey { key_id, .. } = org_key(&engine, org.id, "portal").await else {
        panic!("a key");
    };
    let config = meters(&engine, org.id).await;
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
        .run(&OPERATOR, org.id, RevokeKey { key_id })
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

    let log = read_all(&engine, &OPERATOR, org.id, &AuditFilter::default(), 100)
        .await
        .unwrap();
    let paired = the(&log, "device.paired");
    assert_eq!(
        paired.details,
        json!({
            "code_id": code.info.id,
            "code_label": "vans",
            "license_id": paired.details["license_id"],
            "installation_id": device.installation_id,
            "address": paired.details["address"],
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

    // Gone from the device list, the device's history is still read by its id, newest first.
    let gone = engine
        .query(&OPERATOR, org.id, GetDevice { device_id })
        .await;
    assert_eq!(gone, Err(EngineError::NotFound("device")));
    let history = AuditFilter {
        device_id: Some(device_id),
        ..AuditFilter::default()
    };
    let history = read_all(&engine, &OPERATOR, org.id, &history, 1)
        .await
        .unwrap();
    assert_eq!(
        actions(&history),
        ["device.unpaired", "configuration.assigned", "device.paired"]
    );
}

on_both_backends!(filters_combine_and_page);

/// Whether `entry` names `device`: its subject, its actor, or in its details.
fn names(entry: &AuditEntry, device: DeviceId) -> bool {
    let id = json!(device);
    entry.subject.as_deref() == Some(&device.to_string())
        || entry.actor == format!("device:{device}")
        || entry.details["device_ids"]
            .as_array()
            .is_some_and(|ids| ids.contains(&id))
}

/// Every combination of filters, read two entries at a time, gives exactly the entries of the
/// whole log that pass it, in the log's order, each once.
async fn filters_combine_and_page(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let engine = fixture.start().await;
    let (org, code) = org_with_code(&engine, 6, None).await;
    let (_, other_code) = org_with_code(&engine, 5, None).await;
    let config = meters(&engine, org.id).await;
    let mut devices = Vec::new();
    let mut times = Vec::new();
    for n in 0..5 {
        times.push(fixture.clock.advance(Duration::from_secs(60)));
        devices.push(pair(&engine, &TestDevice::new(), &code, &format!("Van {n}")).await);
        pair(&engine, &TestDevice::new(), &other_code, "elsewhere").await;
    }
    fixture.clock.advance(Duration::from_secs(60));
    let assign = engine::admin::AssignConfiguration {
        config_id: config.id,
        device_ids: vec![devices[0], devices[3]],
    };
    engine.run(&OPERATOR, org.id, assign).await.unwrap();
    times.push(fixture.clock.advance(Duration::from_secs(60)));
    for device_id in [devices[0], devices[2]] {
        engine
            .run(&OPERATOR, org.id, UnpairDevice { device_id })
            .await
            .unwrap();
    }

    let log = read_all(&engine, &OPERATOR, org.id, &AuditFilter::default(), 1000)
        .await
        .unwrap();
    assert!(
        log.iter()
            .all(|entry| entry.organization_id == Some(org.id))
    );
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>()
    };
    let filters = vec![
        AuditFilter {
            actions: list(&["device.paired"]),
            ..AuditFilter::default()
        },
        AuditFilter {
            actions: list(&["device.unpaired", "configuration.assigned", "device.paired"]),
            ..AuditFilter::default()
        },
        AuditFilter {
            device_id: Some(devices[0]),
            ..AuditFilter::default()
        },
        AuditFilter {
            device_id: Some(devices[3]),
            actions: list(&["configuration.assigned"]),
            ..AuditFilter::default()
        },
        AuditFilter {
            from: Some(times[2]),
            ..AuditFilter::default()
        },
        AuditFilter {
            until: Some(times[3]),
            ..AuditFilter::default()
        },
        AuditFilter {
            from: Some(times[1]),
            until: Some(times[5]),
            actions: list(&["device.paired", "device.unpaired"]),
            ..AuditFilter::default()
        },
        AuditFilter {
            device_id: Some(devices[2]),
            from: Some(times[2]),
            until: Some(Timestamp(times[5].0 + 1)),
            actions: list(&["device.unpaired", "device.paired"]),
        },
    ];
    for filter in &filters {
        let expected: Vec<i64> = log
            .iter()
            .filter(|entry| filter.actions.is_empty() || filter.actions.contains(&entry.action))
            .filter(|entry| filter.device_id.is_none_or(|device| names(entry, device)))
            .filter(|entry| filter.from.is_none_or(|from| entry.at >= from))
            .filter(|entry| filter.until.is_none_or(|until| entry.at < until))
            .map(|entry| entry.id)
            .collect();
        assert!(!expected.is_empty(), "the log has entries for {filter:?}");
        let got: Vec<i64> = read_all(&engine, &OPERATOR, org.id, filter, 2)
            .await
            .unwrap()
            .iter()
            .map(|entry| entry.id)
            .collect();
        assert_eq!(got, expected, "{filter:?}");
    }
}

on_both_backends!(a_key_reads_only_its_own_organization_s_log);

/// A filter narrows a key's own log; it never widens it: another organization's device,
/// actions or times find nothing of that organization, and its log stays out of reach.
async fn a_key_reads_only_its_own_organization_s_log(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let engine = fixture.start().await;
    let (org, code) = org_with_code(&engine, 1, None).await;
    let (other_org, other_code) = org_with_code(&engine, 1, None).await;
    let ours = pair(&engine, &TestDevice::new(), &code, "ours").await;
    let theirs = pair(&engine, &TestDevice::new(), &other_code, "theirs").await;
    let as_key = org_key(&engine, org.id, "portal").await;

    let everything = AuditFilter {
        actions: vec!["device.paired".into(), "organization.created".into()],
        from: Some(Timestamp(0)),
        until: Some(Timestamp(i64::MAX)),
        ..AuditFilter::default()
    };
    let own = read_all(&engine, &as_key, org.id, &everything, 1)
        .await
        .unwrap();
    assert_eq!(own.len(), 2, "{:?}", actions(&own));
    assert!(
        own.iter()
            .all(|entry| entry.organization_id == Some(org.id))
    );
    let their_device = AuditFilter {
        device_id: Some(theirs),
        ..AuditFilter::default()
    };
    assert_eq!(
        read_all(&engine, &as_key, org.id, &their_device, 10).await,
        Ok(Vec::new()),
        "another organization's device names nothing here"
    );
    let our_device = AuditFilter {
        device_id: Some(ours),
        ..AuditFilter::default()
    };
    assert_eq!(
        read_all(&engine, &as_key, other_org.id, &our_device, 10).await,
        Err(EngineError::NotFound("organization")),
        "another organization's log is out of reach, filtered or not"
    );
    assert!(matches!(
        engine
            .server_audit(&as_key, &their_device, &PageRequest::default())
            .await,
        Err(EngineError::Forbidden(_))
    ));
    // The operator reads the device's entries across the server.
    let theirs_seen = engine
        .server_audit(&OPERATOR, &their_device, &PageRequest::default())
        .await
        .unwrap();
    let orgs: HashSet<Option<OrgId>> = theirs_seen
        .items
        .iter()
        .map(|entry| entry.organization_id)
        .collect();
    assert_eq!(actions(&theirs_seen.items), ["device.paired"]);
    assert_eq!(orgs, HashSet::from([Some(other_org.id)]));

    // A filter that names no action, or an empty window, is refused rather than read.
    for bad in [
        AuditFilter {
            actions: vec!["Device Paired".into()],
            ..AuditFilter::default()
        },
        AuditFilter {
            from: Some(Timestamp(10)),
            until: Some(Timestamp(10)),
            ..AuditFilter::default()
        },
    ] {
        assert!(matches!(
            read_all(&engine, &as_key, org.id, &bad, 10).await,
            Err(EngineError::Invalid { .. })
        ));
    }
}
