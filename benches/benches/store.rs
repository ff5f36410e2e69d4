//! The SQLite store's group commit, without the engine's actors: one iteration is one write
//! transaction that pairs `batch` new devices on a reusable code, on a real SQLite file with
//! `synchronous=FULL` (the `SqliteSettings` default). Criterion reports pairings/s
//! (`Throughput::Elements`), so the batch sizes compare directly: how much one fsync'd commit
//! gains from carrying more pairings.
//!
//! The transaction replays, through the public `engine::store::PairingTx` trait, the statements
//! that `engine`'s batch module issues for a batch of first-time pairings on a reusable code:
//! lock the code, look up the installations' active pairings, claim free licenses, read the
//! newest configuration, assign the licenses, insert the devices, count the code's uses, append
//! one audit entry per device, commit. The batch module itself is private to the engine (its jobs
//! carry device links and reply channels), so this sequence must follow it by hand when it
//! changes.
//!
//! The organization, its configuration and its code are created through the `Engine` admin
//! calls (`benches::Organization`, shared with `grant.rs`), so the rows are the ones a real server writes. Before each timed run
//! the licenses that run will claim are added, outside the timed part, so that no batch is ever
//! short of a license whatever iteration counts criterion picks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::Organization;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::ids::{CodeId, DeviceId, InstallationId, OrgId, Timestamp};
use engine::secrets::{SecretHash, SecretKind, random_bytes};
use engine::store::{Claim, DeviceDetails, LicenseGrant, NewAudit, NewDevice, Store, Transaction};
use engine::{Clock, SystemClock};
use serde_json::json;

/// The batch sizes of the issue: one pairing per commit, a small batch, a large one.
const BATCH_SIZES: [usize; 3] = [1, 16, 256];

/// The bench organization, and the engine's own store (the `SqliteStore`), used directly for
/// the batch transactions.
struct Fixture {
    organization: Organization,
    store: Arc<dyn Store>,
    org_id: OrgId,
    code_id: CodeId,
}

async fn fixture() -> Fixture {
    let organization = Organization::start().await;
    Fixture {
        store: Arc::clone(organization.engine.store()),
        org_id: organization.org_id,
        code_id: organization.code_id,
        organization,
    }
}

/// What a device brings to a pairing, prepared before the clock starts.
struct Request {
    installation_id: InstallationId,
    credential_hash: SecretHash,
    details: DeviceDetails,
    connection: i64,
}

fn requests(batch: usize, next_connection: &mut i64) -> Vec<Request> {
    (0..batch)
        .map(|_| {
            *next_connection += 1;
            Request {
                installation_id: InstallationId(uuid::Uuid::new_v4()),
                credential_hash: SecretHash::of(SecretKind::Credential, &random_bytes::<32>()),
                details: DeviceDetails {
                    name: "bench".into(),
                    model: "bench".into(),
                    os: "bench".into(),
                    app_version: "1".into(),
                },
                connection: *next_connection,
            }
        })
        .collect()
}

/// Commits one batch of first-time pairings on the fixture's reusable code, statement for
/// statement as the engine's batch module does, and checks that every pairing was granted.
async fn commit_batch(fixture: &Fixture, requests: &[Request]) {
    let org_id = fixture.org_id;
    let code_id = fixture.code_id;
    let now = SystemClock.now();
    let mut tx: Box<dyn Transaction> = fixture.store.begin().await.expect("begin");

    let codes = tx.lock_codes(&[code_id]).await.expect("lock codes");
    assert_eq!(codes.len(), 1, "the reusable code is missing");
    let installations: Vec<InstallationId> = requests
        .iter()
        .map(|request| request.installation_id)
        .collect();
    let existing = tx
        .active_devices_by_installation(&installations)
        .await
        .expect("active devices");
    assert!(existing.is_empty(), "installation ids are fresh");

    let wanted = u32::try_from(requests.len()).expect("batch size fits u32");
    let claimed = tx
        .claim_free_licenses(org_id, wanted, now, Claim::BehindLine)
        .await
        .expect("claim licenses");
    assert_eq!(
        claimed.len(),
        requests.len(),
        "out of free licenses: the top-up before the run is too small"
    );
    let newest = tx
        .configuration_for_new_devices(org_id)
        .await
        .expect("newest configuration");
    let config_id = newest.as_ref().map(|row| row.id);

    let mut grants = Vec::with_capacity(requests.len());
    let mut devices = Vec::with_capacity(requests.len());
    for (request, license) in requests.iter().zip(&claimed) {
        let device_id = DeviceId::generate();
        grants.push(LicenseGrant {
            license_id: license.id,
            device_id,
            single_use_code: None,
        });
        devices.push(NewDevice {
            id: device_id,
            installation_id: request.installation_id,
            credential_hash: request.credential_hash,
            license_id: license.id,
            details: request.details.clone(),
            paired_by_code: code_id,
            config_id,
            connection: request.connection,
            peer: std::net::IpAddr::from([127, 0, 0, 1]),
        });
    }
    let assigned = tx
        .assign_licenses(&grants, now)
        .await
        .expect("assign licenses");
    assert_eq!(assigned, grants.len() as u64, "a license was not assigned");
    let inserted = tx
        .insert_devices(org_id, now, &devices)
        .await
        .expect("insert devices");
    assert_eq!(inserted, devices.len() as u64, "a device was not inserted");
    tx.count_code_uses(&[(code_id, wanted)], now)
        .await
        .expect("count code uses");
    let audit: Vec<NewAudit> = devices
        .iter()
        .map(|device| paired_audit(org_id, now, code_id, device))
        .collect();
    tx.insert_audit(&audit).await.expect("audit");
    tx.commit().await.expect("commit");
}

/// The audit entry the engine appends for a new pairing: what decided it, what the device said
/// of itself, and the device it names (linked for the log's device filter).
fn paired_audit(org_id: OrgId, now: Timestamp, code_id: CodeId, device: &NewDevice) -> NewAudit {
    NewAudit {
        org_id: Some(org_id),
        at: now,
        actor: format!("device:{}", device.id),
        action: "device.paired".into(),
        subject: Some(device.id.to_string()),
        details: json!({
            "code_id": code_id,
            "code_label": null,
            "license_id": device.license_id,
            "installation_id": device.installation_id,
            "name": device.details.name,
            "model": device.details.model,
            "os": device.details.os,
            "app_version": device.details.app_version,
        }),
        devices: vec![device.id],
    }
}

fn store_batch_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("store_batch_commit");
    // Every iteration waits for an fsync; ten samples over a few seconds per size keep the whole
    // bench near half a minute on a shared machine.
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for batch in BATCH_SIZES {
        // A fresh database per size, so that no size inherits the rows of the one before.
        let fixture = runtime.block_on(fixture());
        let mut next_connection = 0;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch of {batch}"), |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let fixture = &fixture;
                // Untimed: fresh installations for every batch of the run.
                let batches: Vec<Vec<Request>> = (0..iterations)
                    .map(|_| requests(batch, &mut next_connection))
                    .collect();
                async move {
                    // Untimed: exactly the licenses this run will claim.
                    fixture
                        .organization
                        .add_licenses(iterations * batch as u64)
                        .await;
                    let mut total = Duration::ZERO;
                    for requests in &batches {
                        let start = Instant::now();
                        commit_batch(fixture, requests).await;
                        total += start.elapsed();
                    }
                    total
                }
            })
        });
        runtime.block_on(fixture.organization.engine.shutdown());
    }
    group.finish();
}

criterion_group!(benches, store_batch_commit);
criterion_main!(benches);
