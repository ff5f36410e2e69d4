//! The PostgreSQL backend against a real throwaway cluster (`pgtemp`): migrations, the batch
//! statements of a pairing, row locks across concurrent transactions, notifications, and one
//! long script of writes and reads run on both backends whose answers must be identical. The
//! engine on PostgreSQL, as one node and as two, is tested with the engine (`engine/tests`).

use std::sync::OnceLock;
use std::time::Duration;

use engine::ids::{CodeId, ConfigId, DeviceId, InstallationId, KeyId, LicenseId, OrgId, Timestamp};
use engine::model::{
    AckStatus, AuditFilter, CodeKind, FleetFilter, FleetQuery, FleetRows, FleetSort, LicenseStatus,
    OrgKeyInfo, Organization, PageRequest, RevisionState,
};
use engine::secrets::SecretHash;
use engine::store::{
    AckWrite, AdminReads, Change, ChangeFeed, Claim, ConfigEdit, ConfigRow, DeviceDetails,
    DeviceReads, DeviceState, DeviceTouch, LicenseGrant, NewAudit, NewCode, NewDevice, NodeStore,
    Notice, PairingEnd, Store, StoreError, StoredReply,
};
use store::{PgSettings, PgStore, SqliteSettings, SqliteStore};
use uuid::Uuid;

/// One cluster for the whole test binary (starting one takes seconds); every test gets a
/// database of its own. pgtemp's watchdog stops the cluster when the binary exits.
fn cluster() -> &'static pgtemp::Cluster {
    static CLUSTER: OnceLock<pgtemp::Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| pgtemp::Cluster::start().expect("start a PostgreSQL cluster"))
}

async fn fresh_url() -> String {
    tokio::task::spawn_blocking(|| cluster().create_database().expect("create a database"))
        .await
        .expect("create a database")
}

async fn fresh_store() -> PgStore {
    PgStore::open(&PgSettings::new(fresh_url().await))
        .await
        .expect("open the PostgreSQL store")
}

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn id() -> Uuid {
    Uuid::now_v7()
}

fn hash(byte: u8) -> SecretHash {
    SecretHash([byte; 32])
}

fn details(name: &str) -> DeviceDetails {
    DeviceDetails {
        name: name.into(),
        model: "model".into(),
        os: "os".into(),
        app_version: "1.0".into(),
    }
}

fn org(id: OrgId, name: &str) -> Organization {
    Organization {
        id,
        name: name.into(),
        created_at: T0,
        release_inactive_after_days: None,
    }
}

fn new_device(
    id: DeviceId,
    installation: InstallationId,
    license: LicenseId,
    code: CodeId,
) -> NewDevice {
    NewDevice {
        id,
        installation_id: installation,
        credential_hash: hash(7),
        license_id: license,
        details: details("phone"),
        paired_by_code: code,
        config_id: None,
        connection: 1,
        peer: std::net::IpAddr::from([192, 0, 2, 1]),
    }
}

/// `devices`, each assigned `config`.
fn with_config(devices: &[NewDevice], config: Option<ConfigId>) -> Vec<NewDevice> {
    devices
        .iter()
        .map(|device| NewDevice {
            config_id: config,
            ..device.clone()
        })
        .collect()
}

fn reusable_code(id: CodeId, org_id: OrgId, hash_byte: u8) -> NewCode {
    NewCode {
        id,
        org_id,
        kind: CodeKind::Reusable,
        code_hash: hash(hash_byte),
        sealed_secret: Some(vec![1, 2, 3]),
        label: Some("front desk".into()),
        license_id: None,
        created_at: T0,
        expires_at: T0.plus_millis(86_400_000),
        max_uses: Some(5),
        configuration_id: None,
        replaces_device: None,
    }
}

/// An organization with `licenses` free licenses, a configuration and a reusable code.
struct Fixture {
    org_id: OrgId,
    licenses: Vec<LicenseId>,
    config_id: ConfigId,
    code_id: CodeId,
}

async fn fixture(store: &dyn Store, licenses: usize) -> Fixture {
    let org_id = OrgId(id());
    let licenses: Vec<LicenseId> = (0..licenses).map(|_| LicenseId(id())).collect();
    let config_id = ConfigId(id());
    let code_id = CodeId(id());
    let mut tx = store.begin().await.expect("begin");
    tx.insert_organization(&org(org_id, "Acme"))
        .await
        .expect("organization");
    tx.insert_licenses(org_id, &licenses, T0, None)
        .await
        .expect("licenses");
    tx.insert_configuration(
        &ConfigRow {
            id: config_id,
            org_id,
            name: "Main".into(),
            revision: 1,
            body: "[GLOBAL]\n".into(),
        },
        T0,
    )
    .await
    .expect("configuration");
    tx.insert_code(&reusable_code(code_id, org_id, 42))
        .await
        .expect("code");
    tx.commit().await.expect("commit");
    Fixture {
        org_id,
        licenses,
        config_id,
        code_id,
    }
}

#[tokio::test]
async fn opens_and_migrates_twice() {
    let url = fresh_url().await;
    let store = PgStore::open(&PgSettings::new(url.clone()))
        .await
        .expect("first open");
    store.close().await;
    // A second node (or a restart) finds the schema in place and applies nothing.
    let store = PgStore::open(&PgSettings::new(url))
        .await
        .expect("second open");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "audit_devices",
            "audit_log",
            "codes",
            "configuration_revisions",
            "configuration_rollouts",
            "configurations",
            "device_words",
            "devices",
            "ended_pairings",
            "idempotency_keys",
            "licenses",
            "nodes",
            "operator_tokens",
            "org_keys",
            "organizations",
            "server_meta",
            "waiting_devices",
            "webhook_deliveries",
            "webhooks",
        ]
    );
    store.close().await;
}

#[tokio::test]
async fn open_through_the_url() {
    let url = fresh_url().await;
    let parsed = store::DatabaseUrl::parse(&url).expect("a postgres URL");
    assert!(matches!(parsed, store::DatabaseUrl::Postgres(_)));
    let store = store::open(&parsed, store::OpenOptions::default())
        .await
        .expect("open");
    assert!(
        !store
            .has_operator_token(engine::ids::Timestamp(0))
            .await
            .expect("read")
    );
    store.close().await;
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let mut settings = PgSettings::new("postgres://nobody@127.0.0.1:1/none");
    settings.acquire_timeout = Duration::from_secs(2);
    let error = PgStore::open(&settings).await.expect_err("nothing listens");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

/// The statements of a first-time pairing, in the order the engine's batch runs them.
#[tokio::test]
async fn first_pairing_batch() {
    let store = fresh_store().await;
    let fx = fixture(&store, 3).await;
    let device_id = DeviceId(id());
    let installation = InstallationId(id());

    let mut tx = store.begin().await.expect("begin");
    let codes = tx.lock_codes(&[fx.code_id]).await.expect("lock codes");
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].uses, 0);
    assert_eq!(codes[0].kind, CodeKind::Reusable);
    assert!(
        tx.active_devices_by_installation(&[installation])
            .await
            .expect("active devices")
            .is_empty()
    );
    let claimed = tx
        .claim_free_licenses(fx.org_id, 1, T0, Claim::BehindLine)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // Oldest first: UUIDv7 ids are ordered by creation.
    assert_eq!(claimed[0].id, fx.licenses[0]);
    let grants = [LicenseGrant {
        license_id: claimed[0].id,
        device_id,
        single_use_code: None,
    }];
    assert_eq!(tx.assign_licenses(&grants, T0).await.expect("assign"), 1);
    let devices = [new_device(
        device_id,
        installation,
        claimed[0].id,
        fx.code_id,
    )];
    assert_eq!(
        tx.insert_devices(fx.org_id, T0, &with_config(&devices, Some(fx.config_id)))
            .await
            .expect("insert"),
        1
    );
    tx.count_code_uses(&[(fx.code_id, 1)], T0)
        .await
        .expect("count uses");
    tx.insert_audit(&[NewAudit {
        org_id: Some(fx.org_id),
        at: T0,
        actor: format!("device:{}", device_id.0),
        action: "device.paired".into(),
        subject: Some(device_id.0.to_string()),
        details: serde_json::json!({ "license": claimed[0].id.0 }),
        devices: vec![device_id],
    }])
    .await
    .expect("audit");
    tx.publish(&Change::DevicesAssigned {
        org_id: fx.org_id,
        device_ids: vec![device_id],
    })
    .await
    .expect("publish");
    tx.commit().await.expect("commit");

    let device = store
        .device(fx.org_id, device_id)
        .await
        .expect("read")
        .expect("the device");
    assert_eq!(device.installation_id, installation);
    assert_eq!(device.license_id, fx.licenses[0]);
    assert_eq!(device.paired_by_code, Some(fx.code_id));
    assert_eq!(device.configuration.map(|c| c.id), Some(fx.config_id));
    assert!(device.online);
    assert_eq!(device.paired_at, T0);
    let route = store
        .find_installation(installation)
        .await
        .expect("read")
        .expect("routed");
    assert_eq!((route.device_id, route.org_id), (device_id, fx.org_id));
    let summary = store.license_summary(fx.org_id, T0).await.expect("summary");
    assert_eq!((summary.total, summary.assigned, summary.free), (3, 1, 2));
    let code = store
        .code(fx.org_id, fx.code_id, T0)
        .await
        .expect("read")
        .expect("the code");
    assert_eq!(code.uses, 1);
    assert_eq!(code.last_used_at, Some(T0));
    let audit = store
        .list_audit(
            Some(fx.org_id),
            &AuditFilter::default(),
            &PageRequest::default(),
        )
        .await
        .expect("audit");
    assert_eq!(audit.items.len(), 1);
    assert_eq!(audit.items[0].action, "device.paired");
    assert_eq!(
        audit.items[0].details,
        serde_json::json!({ "license": fx.licenses[0].0 })
    );

    // The same installation again, and another device on the same license: both skipped by
    // the unique indexes, and the counts say so.
    let mut tx = store.begin().await.expect("begin");
    let again = [new_device(
        DeviceId(id()),
        installation,
        fx.licenses[1],
        fx.code_id,
    )];
    assert_eq!(
        tx.insert_devices(fx.org_id, T0, &again)
            .await
            .expect("insert"),
        0
    );
    let same_license = [new_device(
        DeviceId(id()),
        InstallationId(id()),
        fx.licenses[0],
        fx.code_id,
    )];
    assert_eq!(
        tx.insert_devices(fx.org_id, T0, &same_license)
            .await
            .expect("insert"),
        0
    );
    // An assigned license is not assigned again.
    let taken = [LicenseGrant {
        license_id: fx.licenses[0],
        device_id: DeviceId(id()),
        single_use_code: None,
    }];
    assert_eq!(tx.assign_licenses(&taken, T0).await.expect("assign"), 0);
    tx.commit().await.expect("commit");
    store.close().await;
}

/// Two transactions claiming at once get disjoint licenses; neither waits for the other.
#[tokio::test]
async fn concurrent_claims_skip_locked_licenses() {
    let store = fresh_store().await;
    let fx = fixture(&store, 5).await;
    let mut first = store.begin().await.expect("begin");
    let mut second = store.begin().await.expect("begin");
    let a = first
        .claim_free_licenses(fx.org_id, 2, T0, Claim::BehindLine)
        .await
        .expect("first claim");
    // The second claim must not queue behind the first transaction's locks.
    let b = tokio::time::timeout(
        Duration::from_secs(5),
        second.claim_free_licenses(fx.org_id, 2, T0, Claim::BehindLine),
    )
    .await
    .expect("the second claim did not wait")
    .expect("second claim");
    let a: Vec<LicenseId> = a.iter().map(|license| license.id).collect();
    let b: Vec<LicenseId> = b.iter().map(|license| license.id).collect();
    assert_eq!(a, fx.licenses[0..2]);
    assert_eq!(b, fx.licenses[2..4]);
    // A third asks for more than is left unlocked and gets only the one that is.
    let mut third = store.begin().await.expect("begin");
    let c = third
        .claim_free_licenses(fx.org_id, 10, T0, Claim::BehindLine)
        .await
        .expect("third claim");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].id, fx.licenses[4]);
    // Ended explicitly: a dropped transaction rolls back in a task sqlx spawns when the
    // connection goes back to the pool, and until that task has run its locks are held, which
    // SKIP LOCKED below would pass over (this test failed that way once on a loaded machine).
    // A commit of a transaction that wrote nothing releases its locks like a rollback.
    third.commit().await.expect("end the third");
    // The first commits an assignment; the second rolls back; its licenses are free again.
    let device_id = DeviceId(id());
    let grants = [LicenseGrant {
        license_id: a[0],
        device_id,
        single_use_code: None,
    }];
    assert_eq!(first.assign_licenses(&grants, T0).await.expect("assign"), 1);
    first.commit().await.expect("commit");
    // The second wrote nothing: ending it releases its locks (see the third above).
    second.commit().await.expect("end the second");
    let mut fourth = store.begin().await.expect("begin");
    let d: Vec<LicenseId> = fourth
        .claim_free_licenses(fx.org_id, 10, T0, Claim::BehindLine)
        .await
        .expect("fourth claim")
        .iter()
        .map(|license| license.id)
        .collect();
    assert_eq!(d, fx.licenses[1..5]);
    fourth.commit().await.expect("commit");
    store.close().await;
}

/// A node's claim starts after the last license it claimed; a license freed before that point
/// is still found when the licenses after it do not suffice.
#[tokio::test]
async fn a_claim_after_the_hint_still_finds_a_license_freed_before_it() {
    let store = fresh_store().await;
    let fx = fixture(&store, 5).await;
    let mut tx = store.begin().await.expect("begin");
    let first: Vec<LicenseId> = tx
        .claim_free_licenses(fx.org_id, 3, T0, Claim::BehindLine)
        .await
        .expect("claim")
        .iter()
        .map(|license| license.id)
        .collect();
    assert_eq!(first, fx.licenses[0..3]);
    let grants: Vec<LicenseGrant> = first
        .iter()
        .map(|license| LicenseGrant {
            license_id: *license,
            device_id: DeviceId(id()),
            single_use_code: None,
        })
        .collect();
    assert_eq!(tx.assign_licenses(&grants, T0).await.expect("assign"), 3);
    tx.commit().await.expect("commit");
    // The first license is freed again (as an unpair does).
    sqlx::query("UPDATE licenses SET device_id = NULL WHERE id = $1")
        .bind(fx.licenses[0].0)
        .execute(store.pool())
        .await
        .expect("free a license");

    let mut tx = store.begin().await.expect("begin");
    let mut second: Vec<LicenseId> = tx
        .claim_free_licenses(fx.org_id, 10, T0, Claim::BehindLine)
        .await
        .expect("claim")
        .iter()
        .map(|license| license.id)
        .collect();
    second.sort();
    assert_eq!(
        second,
        [fx.licenses[0], fx.licenses[3], fx.licenses[4]],
        "every free license, the one before the hint included"
    );
    tx.rollback().await.expect("rollback");
    // Nothing is left after the hint now: the claim finds the freed one alone, too.
    let mut tx = store.begin().await.expect("begin");
    let third = tx
        .claim_free_licenses(fx.org_id, 1, T0, Claim::BehindLine)
        .await
        .expect("claim");
    assert_eq!(third.len(), 1);
    tx.rollback().await.expect("rollback");
    store.close().await;
}

/// A conditional write that meets a row another transaction changed waits for it and then
/// re-checks its condition: the loser changes nothing, which is what the engine compares.
#[tokio::test]
async fn conditional_writes_recheck_after_waiting() {
    let store = fresh_store().await;
    let fx = fixture(&store, 1).await;
    let license = fx.licenses[0];
    let mut first = store.begin().await.expect("begin");
    let mut second = store.begin().await.expect("begin");
    let grant = move |device_id| {
        [LicenseGrant {
            license_id: license,
            device_id,
            single_use_code: None,
        }]
    };
    assert_eq!(
        first
            .assign_licenses(&grant(DeviceId(id())), T0)
            .await
            .expect("first assigns"),
        1
    );
    let waiting = tokio::spawn(async move {
        let changed = second
            .assign_licenses(&grant(DeviceId(id())), T0)
            .await
            .expect("second assigns");
        (changed, second)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the second write waits for the row");
    first.commit().await.expect("commit");
    let (changed, second) = waiting.await.expect("join");
    assert_eq!(changed, 0);
    drop(second);
    store.close().await;
}

#[tokio::test]
async fn locks_are_held_until_commit() {
    let store = fresh_store().await;
    let fx = fixture(&store, 1).await;
    let mut first = store.begin().await.expect("begin");
    let locked = first.lock_codes(&[fx.code_id]).await.expect("lock");
    assert_eq!(locked.len(), 1);
    let licenses = first.lock_licenses(&fx.licenses).await.expect("lock");
    assert_eq!(licenses.len(), 1);
    assert_eq!(licenses[0].org_id, fx.org_id);
    let mut second = store.begin().await.expect("begin");
    let codes = [fx.code_id];
    let blocked = tokio::time::timeout(Duration::from_millis(300), second.lock_codes(&codes)).await;
    assert!(
        blocked.is_err(),
        "a locked code is not handed to a second transaction"
    );
    drop(second);
    first.commit().await.expect("commit");
    store.close().await;
}

/// A reusable code without a use limit is shared by the batches of every node (each counts its
/// uses at the end), while a revocation waits for the batches that hold it; a code with a limit
/// stays exclusive (its count decides who may use it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlimited_code_is_shared_by_batches_and_a_revocation_waits_for_them() {
    let store = fresh_store().await;
    let fx = fixture(&store, 0).await;
    let open_code = CodeId(id());
    let mut tx = store.begin().await.expect("begin");
    tx.insert_code(&NewCode {
        max_uses: None,
        configuration_id: None,
        ..reusable_code(open_code, fx.org_id, 43)
    })
    .await
    .expect("code");
    tx.commit().await.expect("commit");

    // Two batches hold the open code at once: the second does not wait for the first to end
    // (before the change it queued until the first committed, and this timed out).
    let mut first = store.begin().await.expect("begin");
    let mut second = store.begin().await.expect("begin");
    let held = first.lock_codes(&[open_code]).await.expect("lock");
    assert_eq!(held[0].max_uses, None);
    tokio::time::timeout(Duration::from_secs(30), second.lock_codes(&[open_code]))
        .await
        .expect("a second batch shares the code")
        .expect("shared lock");
    first
        .count_code_uses(&[(open_code, 2)], T0)
        .await
        .expect("count");
    first.commit().await.expect("commit");
    second
        .count_code_uses(&[(open_code, 3)], T0.plus_millis(2))
        .await
        .expect("count");
    second.commit().await.expect("commit");

    let mut first = store.begin().await.expect("begin");
    first.lock_codes(&[open_code]).await.expect("lock");
    first
        .count_code_uses(&[(open_code, 1)], T0.plus_millis(3))
        .await
        .expect("count");

    // A revocation waits while a batch holds the code, then applies.
    let revoke = {
        let store = store.clone();
        let org_id = fx.org_id;
        tokio::spawn(async move {
            let mut tx = store.begin().await.expect("begin");
            let revoked = tx
                .revoke_code(org_id, open_code, T0.plus_millis(4))
                .await
                .expect("revoke");
            tx.commit().await.expect("commit");
            revoked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !revoke.is_finished(),
        "revoked under a batch that holds the code"
    );
    first.commit().await.expect("commit");
    revoke.await.expect("task").expect("the code exists");
    let info = store
        .code(fx.org_id, open_code, T0.plus_millis(5))
        .await
        .expect("read")
        .expect("code");
    assert_eq!(
        info.uses,
        2 + 3 + 1,
        "every committed batch's uses are counted"
    );
    assert_eq!(info.revoked_at, Some(T0.plus_millis(4)));

    // The limited code of the fixture stays exclusive.
    let mut first = store.begin().await.expect("begin");
    first.lock_codes(&[fx.code_id]).await.expect("lock");
    let mut second = store.begin().await.expect("begin");
    let codes = [fx.code_id];
    let blocked = tokio::time::timeout(Duration::from_millis(300), second.lock_codes(&codes)).await;
    assert!(
        blocked.is_err(),
        "a limited code is held by one batch at a time"
    );
    drop(second);
    first.commit().await.expect("commit");
    store.close().await;
}

/// Terminates every change listener connected to the store's database; one `true` per listener.
async fn kill_listeners(store: &PgStore) -> Vec<bool> {
    sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(store::postgres::LISTENER_APPLICATION_NAME)
    .fetch_all(store.pool())
    .await
    .expect("terminate the listeners")
}

/// The next notice of a feed, or a failure after a bound.
async fn next_notice(feed: &mut Box<dyn ChangeFeed>) -> Notice {
    tokio::time::timeout(Duration::from_secs(10), feed.next())
        .await
        .expect("a notice within 10 s")
}

#[tokio::test]
async fn notifications_reach_other_nodes_at_commit_only() {
    let url = fresh_url().await;
    let publisher = PgStore::open(&PgSettings::new(url.clone()))
        .await
        .expect("open");
    let other = PgStore::open(&PgSettings::new(url)).await.expect("open");
    let fx = fixture(&publisher, 1).await;
    let mut own_feed = publisher
        .subscribe()
        .await
        .expect("subscribe")
        .expect("PostgreSQL has a feed");
    let mut feed = other
        .subscribe()
        .await
        .expect("subscribe")
        .expect("PostgreSQL has a feed");

    let change = Change::ConfigurationUpdated {
        org_id: fx.org_id,
        config_id: fx.config_id,
    };
    let mut rolled_back = publisher.begin().await.expect("begin");
    rolled_back.publish(&change).await.expect("publish");
    rolled_back.rollback().await.expect("rollback");

    let mut tx = publisher.begin().await.expect("begin");
    tx.publish(&change).await.expect("publish");
    let early = tokio::time::timeout(Duration::from_millis(300), feed.next()).await;
    assert!(early.is_err(), "nothing is delivered before the commit");
    tx.commit().await.expect("commit");
    // Only the committed one arrives (a rolled-back notice would come first).
    assert_eq!(next_notice(&mut feed).await, Notice::Change(change.clone()));

    // A change naming more devices than a payload holds asks for a resynchronisation.
    let ended = Change::DevicesEnded {
        org_id: fx.org_id,
        device_ids: (0..1_000).map(|_| DeviceId(id())).collect(),
        reason: PairingEnd::Unpaired,
    };
    let mut tx = publisher.begin().await.expect("begin");
    tx.publish(&ended).await.expect("publish a large change");
    tx.commit().await.expect("commit");
    assert_eq!(
        next_notice(&mut feed).await,
        Notice::Resync {
            org_id: Some(fx.org_id)
        }
    );

    // The publisher's own feed skips its own notices: nothing is waiting there.
    let own = tokio::time::timeout(Duration::from_millis(300), own_feed.next()).await;
    assert!(
        own.is_err(),
        "a node does not hear its own changes: {own:?}"
    );

    // The listener's connection is killed: the feed reconnects and asks for a resync, and
    // hears changes again afterwards.
    let killed = kill_listeners(&publisher).await;
    assert_eq!(
        killed,
        vec![true, true],
        "both listeners were found and killed"
    );
    assert_eq!(
        next_notice(&mut feed).await,
        Notice::Resync { org_id: None }
    );
    let mut tx = publisher.begin().await.expect("begin");
    tx.publish(&change).await.expect("publish");
    tx.commit().await.expect("commit");
    assert_eq!(next_notice(&mut feed).await, Notice::Change(change));
    drop((feed, own_feed));
    publisher.close().await;
    other.close().await;
}

#[tokio::test]
async fn a_node_with_a_stale_heartbeat_loses_its_presence() {
    let store = fresh_store().await;
    let fx = fixture(&store, 2).await;
    let (dead_node, live_node) = (11_i64, 12_i64);
    let minute = 60_000;
    for node in [dead_node, live_node] {
        assert!(
            !store
                .heartbeat(node, T0, T0)
                .await
                .expect("first heartbeat"),
            "a new node has no previous heartbeat"
        );
    }
    // One device online on each node.
    let on_dead = DeviceId(id());
    let on_live = DeviceId(id());
    let mut tx = store.begin().await.expect("begin");
    let mut devices = Vec::new();
    for (device, license, node) in [
        (on_dead, fx.licenses[0], dead_node),
        (on_live, fx.licenses[1], live_node),
    ] {
        let mut new = new_device(device, InstallationId(id()), license, fx.code_id);
        new.connection = (node << 32) + 5;
        devices.push(new);
    }
    assert_eq!(
        tx.insert_devices(fx.org_id, T0, &with_config(&devices, Some(fx.config_id)))
            .await
            .expect("insert"),
        2
    );
    tx.commit().await.expect("commit");
    let online = |store: &PgStore, device: DeviceId| {
        let store = store.clone();
        async move {
            store
                .device(fx.org_id, device)
                .await
                .expect("read")
                .expect("device")
                .online
        }
    };

    // Both beat within the time-out: nothing expires.
    assert_eq!(
        store
            .expire_nodes(T0.plus_millis(-minute))
            .await
            .expect("expire"),
        0
    );
    // Only the live node beats on; the dead node's devices go offline, last seen at its last
    // heartbeat, and every node may run the expiry (the second run finds nothing).
    let later = T0.plus_millis(2 * minute);
    for at in [T0.plus_millis(minute), later] {
        assert!(
            store
                .heartbeat(live_node, at, at.plus_millis(-minute))
                .await
                .expect("beat"),
            "a node that beats in time was never given up"
        );
    }
    assert_eq!(
        store
            .expire_nodes(later.plus_millis(-minute))
            .await
            .expect("expire"),
        1
    );
    assert_eq!(
        store
            .expire_nodes(later.plus_millis(-minute))
            .await
            .expect("expire"),
        0
    );
    assert!(!online(&store, on_dead).await);
    assert!(online(&store, on_live).await);
    let dead = store
        .device(fx.org_id, on_dead)
        .await
        .expect("read")
        .expect("device");
    assert_eq!(dead.last_seen, T0);

    // The "dead" node was only slow: its next heartbeat says it was given up, and it marks its
    // devices online again.
    assert!(
        !store
            .heartbeat(dead_node, later, later.plus_millis(-minute))
            .await
            .expect("beat")
    );
    store
        .mark_online(&[(on_dead, (dead_node << 32) + 5)], later)
        .await
        .expect("mark online");
    assert!(online(&store, on_dead).await);
    assert_eq!(
        store
            .expire_nodes(later.plus_millis(-minute))
            .await
            .expect("expire"),
        0
    );

    // The pairing state the change listener reads.
    let states = store
        .device_states(&[on_dead, DeviceId(id())])
        .await
        .expect("states");
    assert_eq!(
        states,
        vec![DeviceState {
            device_id: on_dead,
            config_id: Some(fx.config_id),
            staged_revision: None,
            ended: None
        }]
    );
    store.close().await;
}

// --- one script, two backends ---------------------------------------------------------------

/// The ids a script uses, chosen once so that both backends see the same values.
struct Ids {
    org: OrgId,
    other_org: OrgId,
    key: KeyId,
    revoked_key: KeyId,
    licenses: Vec<LicenseId>,
    expiring: LicenseId,
    config: ConfigId,
    second_config: ConfigId,
    reusable: CodeId,
    single_use: CodeId,
    devices: Vec<DeviceId>,
    installations: Vec<InstallationId>,
}

impl Ids {
    fn new() -> Ids {
        Ids {
            org: OrgId(id()),
            other_org: OrgId(id()),
            key: KeyId(id()),
            revoked_key: KeyId(id()),
            licenses: (0..4).map(|_| LicenseId(id())).collect(),
            expiring: LicenseId(id()),
            config: ConfigId(id()),
            second_config: ConfigId(id()),
            reusable: CodeId(id()),
            single_use: CodeId(id()),
            devices: (0..4).map(|_| DeviceId(id())).collect(),
            installations: (0..4).map(|_| InstallationId(id())).collect(),
        }
    }
}

/// The variant of an error (the texts differ between databases).
fn outcome<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(StoreError::Conflict(_)) => "Err(Conflict)".into(),
        Err(StoreError::Unavailable(_)) => "Err(Unavailable)".into(),
        Err(StoreError::InvalidInput(what)) => format!("Err(InvalidInput({what}))"),
        Err(StoreError::Other(_)) => "Err(Other)".into(),
    }
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

/// Every read method, with small pages followed to the end.
async fn reads(store: &dyn Store, ids: &Ids, now: Timestamp, log: &mut Vec<String>) {
    let mut record = |name: &str, value: String| log.push(format!("{name}: {value}"));
    record("find_code", outcome(store.find_code(&hash(42)).await));
    record(
        "find_code unknown",
        outcome(store.find_code(&hash(99)).await),
    );
    for installation in &ids.installations {
        record(
            "find_installation",
            outcome(store.find_installation(*installation).await),
        );
        record(
            "last_ended_pairing",
            outcome(store.last_ended_pairing(*installation).await),
        );
    }
    for token in [1, 2, 3, 4] {
        record(
            "token_owner",
            outcome(store.token_owner(&hash(token)).await),
        );
    }
    record(
        "has_operator_token",
        outcome(store.has_operator_token(T0).await),
    );
    record("organization", outcome(store.organization(ids.org).await));
    record(
        "organization unknown",
        outcome(store.organization(OrgId(Uuid::nil())).await),
    );
    let mut page = PageRequest::first(1);
    loop {
        let result = store.list_organizations(&page).await;
        let next = result.as_ref().ok().and_then(|p| p.next_cursor.clone());
        record("list_organizations", outcome(result));
        match next {
            Some(cursor) => page.after = Some(cursor),
            None => break,
        }
    }
    record(
        "list_organizations bad cursor",
        outcome(
            store
                .list_organizations(&PageRequest {
                    limit: 1,
                    after: Some("not a uuid".into()),
                })
                .await,
        ),
    );
    record("list_org_keys", outcome(store.list_org_keys(ids.org).await));
    for license in ids.licenses.iter().chain([&ids.expiring]) {
        record(
            "license",
            outcome(store.license(ids.org, *license, now).await),
        );
    }
    // The fleet lists (licenses with their devices, and devices), page by page, for every
    // status and sort and a few filters.
    let mut fleet_queries = Vec::new();
    for rows in [FleetRows::Licenses, FleetRows::Devices] {
        for status in [
            None,
            Some(LicenseStatus::Free),
            Some(LicenseStatus::Reserved),
            Some(LicenseStatus::Assigned),
            Some(LicenseStatus::Expired),
        ] {
            for (sort, descending) in [
                (FleetSort::Id, false),
                (FleetSort::Id, true),
                (FleetSort::Name, false),
                (FleetSort::Name, true),
                (FleetSort::LastSeen, false),
                (FleetSort::PairedAt, true),
                (FleetSort::Status, false),
                (FleetSort::Status, true),
            ] {
                let filter = FleetFilter {
                    license_status: status,
                    ..FleetFilter::default()
                };
                fleet_queries.push((rows, filter, sort, descending));
            }
        }
        for filter in [
            FleetFilter {
                search: Some("PHO".into()),
                ..FleetFilter::default()
            },
            FleetFilter {
                search: Some("no such device".into()),
                ..FleetFilter::default()
            },
            FleetFilter {
                online: Some(true),
                ..FleetFilter::default()
            },
            FleetFilter {
                online: Some(false),
                ..FleetFilter::default()
            },
            FleetFilter {
                revision: Some(RevisionState::Pending),
                ..FleetFilter::default()
            },
            FleetFilter {
                revision: Some(RevisionState::UpToDate),
                ..FleetFilter::default()
            },
            FleetFilter {
                configuration: Some(ids.config),
                ..FleetFilter::default()
            },
            FleetFilter {
                paired_by: Some(ids.reusable),
                app_version: Some("1.0".into()),
                ..FleetFilter::default()
            },
        ] {
            fleet_queries.push((rows, filter, FleetSort::Name, false));
        }
    }
    for (rows, filter, sort, descending) in fleet_queries {
        let mut query = FleetQuery {
            rows,
            filter,
            sort,
            descending,
            page: PageRequest::first(2),
            export: false,
        };
        loop {
            let result = store.fleet(ids.org, &query, now).await;
            let next = result.as_ref().ok().and_then(|p| p.next_cursor.clone());
            record(&format!("fleet {query:?}"), outcome(result));
            match next {
                Some(cursor) => query.page.after = Some(cursor),
                None => break,
            }
        }
    }
    record(
        "license_summary",
        outcome(store.license_summary(ids.org, now).await),
    );
    for code in [ids.reusable, ids.single_use] {
        record("code", outcome(store.code(ids.org, code, now).await));
        record(
            "sealed_code_secret",
            outcome(store.sealed_code_secret(ids.org, code).await),
        );
    }
    for kind in [None, Some(CodeKind::Reusable), Some(CodeKind::SingleUse)] {
        let mut page = PageRequest::first(1);
        loop {
            let result = store.list_codes(ids.org, kind, now, &page).await;
            let next = result.as_ref().ok().and_then(|p| p.next_cursor.clone());
            record(&format!("list_codes {kind:?}"), outcome(result));
            match next {
                Some(cursor) => page.after = Some(cursor),
                None => break,
            }
        }
    }
    for config in [ids.config, ids.second_config] {
        record(
            "configuration",
            outcome(store.configuration(ids.org, config).await),
        );
        record("config_row", outcome(store.config_row(config).await));
    }
    let mut page = PageRequest::first(1);
    loop {
        let result = store.list_configurations(ids.org, &page).await;
        let next = result.as_ref().ok().and_then(|p| p.next_cursor.clone());
        record("list_configurations", outcome(result));
        match next {
            Some(cursor) => page.after = Some(cursor),
            None => break,
        }
    }
    for device in &ids.devices {
        record("device", outcome(store.device(ids.org, *device).await));
    }
    let actions = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            device_id: Some(ids.devices[0]),
            ..AuditFilter::default()
        },
        AuditFilter {
            device_id: Some(ids.devices[0]),
            actions: actions(&["device.paired", "device.unpaired"]),
            from: Some(T0.plus_millis(10)),
            until: Some(T0.plus_millis(40)),
        },
        AuditFilter {
            from: Some(T0.plus_millis(20)),
            ..AuditFilter::default()
        },
        AuditFilter {
            until: Some(T0.plus_millis(50)),
            actions: actions(&["device.paired", "licenses.added"]),
            ..AuditFilter::default()
        },
        AuditFilter {
            actions: actions(&["configuration.assigned", "device.paired"]),
            ..AuditFilter::default()
        },
    ];
    for filter in &filters {
        for org in [None, Some(ids.org), Some(ids.other_org)] {
            let mut page = PageRequest::first(2);
            loop {
                let result = store.list_audit(org, filter, &page).await;
                let next = result.as_ref().ok().and_then(|p| p.next_cursor.clone());
                record("list_audit", outcome(result));
                match next {
                    Some(cursor) => page.after = Some(cursor),
                    None => break,
                }
            }
        }
    }
    record(
        "expired_pairings",
        outcome(store.expired_pairings(now, 100).await.map(sorted)),
    );
    record("meta", outcome(store.meta("server_key").await));
    record("meta unknown", outcome(store.meta("nothing").await));
}

/// Writes through every write method, reading everything back between steps. Returns the log
/// of every answer, which must be the same on both backends.
async fn script(store: &dyn Store, ids: &Ids) -> Vec<String> {
    let mut log = Vec::new();
    let now = T0;

    // Admin set-up.
    let mut tx = store.begin().await.expect("begin");
    tx.insert_organization(&org(ids.org, "Acme"))
        .await
        .expect("org");
    tx.insert_organization(&org(ids.other_org, "Other"))
        .await
        .expect("org");
    let operator_token = engine::model::OperatorTokenInfo {
        id: engine::ids::OperatorTokenId(uuid::Uuid::from_u128(1)),
        label: "first".into(),
        source: engine::model::TokenSource::Generated,
        created_at: now,
        last_used_at: None,
        expires_at: None,
    };
    tx.insert_operator_token(&operator_token, &hash(1))
        .await
        .expect("token");
    // Idempotent: a second insert of the same token changes nothing.
    tx.insert_operator_token(&operator_token, &hash(1))
        .await
        .expect("token");
    for (key, token) in [(ids.key, 2), (ids.revoked_key, 3)] {
        tx.insert_org_key(
            &OrgKeyInfo {
                id: key,
                organization_id: ids.org,
                name: format!("key {token}"),
                created_at: now,
                revoked_at: None,
                last_used_at: None,
                expires_at: None,
            },
            &hash(token),
        )
        .await
        .expect("key");
    }
    log.push(outcome(
        tx.revoke_org_key(ids.org, ids.revoked_key, now.plus_millis(1))
            .await,
    ));
    log.push(outcome(
        tx.revoke_org_key(ids.org, ids.revoked_key, now.plus_millis(2))
            .await,
    ));
    log.push(outcome(
        tx.revoke_org_key(ids.other_org, ids.key, now).await,
    ));
    tx.insert_licenses(ids.org, &ids.licenses, now, None)
        .await
        .expect("licenses");
    tx.insert_licenses(ids.org, &[ids.expiring], now, Some(now.plus_millis(60_000)))
        .await
        .expect("licenses");
    tx.insert_configuration(
        &ConfigRow {
            id: ids.config,
            org_id: ids.org,
            name: "Main".into(),
            revision: 1,
            body: "[GLOBAL]\nkey = \"value\"\n".into(),
        },
        now,
    )
    .await
    .expect("configuration");
    tx.insert_code(&reusable_code(ids.reusable, ids.org, 42))
        .await
        .expect("code");
    tx.insert_code(&NewCode {
        id: ids.single_use,
        org_id: ids.org,
        kind: CodeKind::SingleUse,
        code_hash: hash(43),
        sealed_secret: None,
        label: None,
        license_id: Some(ids.licenses[1]),
        created_at: now,
        expires_at: now.plus_millis(3_600_000),
        max_uses: None,
        configuration_id: None,
        replaces_device: None,
    })
    .await
    .expect("single-use code");
    tx.insert_audit(&[
        NewAudit {
            org_id: None,
            at: now,
            actor: "operator".into(),
            action: "organization.created".into(),
            subject: Some(ids.org.0.to_string()),
            details: serde_json::json!({ "name": "Acme", "quote": "a \"b\" \\ c\n" }),
            devices: Vec::new(),
        },
        NewAudit {
            org_id: Some(ids.org),
            at: now,
            actor: "operator".into(),
            action: "licenses.added".into(),
            subject: None,
            details: serde_json::json!({ "count": 5 }),
            devices: Vec::new(),
        },
    ])
    .await
    .expect("audit");
    // Entries that name devices, in two organizations, at several times: what the log's
    // filters choose from.
    let entry = |org: OrgId, after: i64, action: &str, devices: &[DeviceId]| NewAudit {
        org_id: Some(org),
        at: now.plus_millis(after),
        actor: "operator".into(),
        action: action.into(),
        subject: devices.first().map(|device| device.0.to_string()),
        details: serde_json::json!({ "after": after }),
        devices: devices.to_vec(),
    };
    let (first, second, third) = (ids.devices[0], ids.devices[1], ids.devices[2]);
    tx.insert_audit(&[
        entry(ids.org, 10, "device.paired", &[first]),
        entry(ids.org, 20, "configuration.assigned", &[first, second]),
        entry(ids.other_org, 30, "device.paired", &[third, first]),
        entry(ids.org, 40, "device.unpaired", &[first]),
        entry(ids.org, 50, "device.paired", &[second]),
    ])
    .await
    .expect("audit naming devices");
    tx.commit().await.expect("commit");
    store.set_meta("server_key", b"check").await.expect("meta");
    store
        .set_meta("server_key", b"check 2")
        .await
        .expect("meta");
    reads(store, ids, now, &mut log).await;

    // A duplicate organization is a conflict; the transaction is then abandoned.
    let mut tx = store.begin().await.expect("begin");
    log.push(outcome(
        tx.insert_organization(&org(ids.org, "Again")).await,
    ));
    drop(tx);

    // A batch: a reusable-code pairing, a single-use pairing, and one that loses.
    let now = T0.plus_millis(1_000);
    let mut tx = store.begin().await.expect("begin");
    log.push(outcome(
        tx.lock_codes(&[ids.reusable, ids.single_use])
            .await
            .map(|codes| sorted(codes.into_iter().map(|c| format!("{c:?}")).collect())),
    ));
    log.push(outcome(
        tx.active_devices_by_installation(&ids.installations).await,
    ));
    let claimed = tx
        .claim_free_licenses(ids.org, 2, now, Claim::BehindLine)
        .await
        .expect("claim");
    log.push(format!("{claimed:?}"));
    log.push(outcome(tx.lock_licenses(&ids.licenses).await.map(|rows| {
        sorted(rows.into_iter().map(|r| format!("{r:?}")).collect())
    })));
    let grants = [
        LicenseGrant {
            license_id: claimed[0].id,
            device_id: ids.devices[0],
            single_use_code: None,
        },
        LicenseGrant {
            license_id: ids.licenses[1],
            device_id: ids.devices[1],
            single_use_code: Some(ids.single_use),
        },
        // Reserved by the single-use code: a grant without it must not take the license.
        LicenseGrant {
            license_id: ids.licenses[1],
            device_id: ids.devices[2],
            single_use_code: None,
        },
    ];
    log.push(outcome(
        tx.consume_single_use_codes(&[(ids.single_use, ids.devices[1])], now)
            .await,
    ));
    log.push(outcome(
        tx.consume_single_use_codes(&[(ids.single_use, ids.devices[2])], now)
            .await,
    ));
    log.push(outcome(tx.assign_licenses(&grants, now).await));
    let new_devices = [
        new_device(
            ids.devices[0],
            ids.installations[0],
            claimed[0].id,
            ids.reusable,
        ),
        NewDevice {
            details: details("tablet"),
            connection: 2,
            ..new_device(
                ids.devices[1],
                ids.installations[1],
                ids.licenses[1],
                ids.single_use,
            )
        },
        // The same installation twice in one batch: the second row is skipped.
        new_device(
            ids.devices[2],
            ids.installations[0],
            ids.licenses[2],
            ids.reusable,
        ),
    ];
    log.push(outcome(
        tx.insert_devices(ids.org, now, &with_config(&new_devices, Some(ids.config)))
            .await,
    ));
    log.push(outcome(tx.count_code_uses(&[(ids.reusable, 1)], now).await));
    log.push(outcome(
        tx.publish(&Change::DevicesAssigned {
            org_id: ids.org,
            device_ids: vec![ids.devices[0], ids.devices[1]],
        })
        .await,
    ));
    tx.commit().await.expect("commit");
    reads(store, ids, now, &mut log).await;

    // Over the reusable code's limit: the CHECK constraint refuses, as a conflict.
    let mut tx = store.begin().await.expect("begin");
    log.push(outcome(
        tx.count_code_uses(&[(ids.reusable, 10)], now).await,
    ));
    drop(tx);

    // Reconnection, presence, acknowledgements, configurations.
    let now = T0.plus_millis(2_000);
    let mut tx = store.begin().await.expect("begin");
    log.push(outcome(tx.active_devices(&ids.devices).await.map(|rows| {
        sorted(rows.into_iter().map(|r| format!("{r:?}")).collect())
    })));
    log.push(outcome(
        tx.touch_devices(
            &[DeviceTouch {
                device_id: ids.devices[0],
                details: details("renamed"),
                connection: 7,
            }],
            now,
        )
        .await,
    ));
    // Offline only where still online on that connection: the first is stale.
    log.push(outcome(
        tx.set_offline(&[(ids.devices[0], 1), (ids.devices[1], 2)], now)
            .await,
    ));
    log.push(outcome(tx.ack_targets(&ids.devices).await.map(|rows| {
        sorted(rows.into_iter().map(|r| format!("{r:?}")).collect())
    })));
    log.push(outcome(
        tx.write_acks(
            &[
                AckWrite {
                    device_id: ids.devices[0],
                    config_id: ids.config,
                    revision: 1,
                    status: AckStatus::Applied,
                    reason: None,
                },
                AckWrite {
                    device_id: ids.devices[1],
                    config_id: ids.config,
                    revision: 1,
                    status: AckStatus::Failed,
                    reason: Some("bad key".into()),
                },
            ],
            now,
        )
        .await,
    ));
    log.push(outcome(tx.ack_targets(&ids.devices).await.map(|rows| {
        sorted(rows.into_iter().map(|r| format!("{r:?}")).collect())
    })));
    tx.insert_configuration(
        &ConfigRow {
            id: ids.second_config,
            org_id: ids.org,
            name: "Second".into(),
            revision: 1,
            body: "second".into(),
        },
        now,
    )
    .await
    .expect("configuration");
    log.push(outcome(tx.configuration_for_new_devices(ids.org).await));
    log.push(outcome(
        tx.configuration_for_new_devices(ids.other_org).await,
    ));
    log.push(outcome(
        tx.config_rows(&[ids.config, ids.second_config])
            .await
            .map(|rows| sorted(rows.into_iter().map(|r| format!("{r:?}")).collect())),
    ));
    log.push(outcome(
        tx.update_configuration(
            ids.org,
            ids.config,
            &ConfigEdit {
                name: Some("Renamed".into()),
                body: None,
                if_revision: Some(1),
            },
            now,
        )
        .await,
    ));
    log.push(outcome(
        tx.update_configuration(
            ids.org,
            ids.config,
            &ConfigEdit {
                name: None,
                body: Some("new body".into()),
                if_revision: Some(1),
            },
            now,
        )
        .await,
    ));
    log.push(outcome(
        tx.update_configuration(
            ids.org,
            ids.config,
            &ConfigEdit {
                name: None,
                body: Some("new body".into()),
                if_revision: None,
            },
            now,
        )
        .await,
    ));
    log.push(outcome(
        tx.update_configuration(
            ids.other_org,
            ids.config,
            &ConfigEdit {
                name: None,
                body: None,
                if_revision: None,
            },
            now,
        )
        .await,
    ));
    log.push(outcome(tx.delete_configuration(ids.org, ids.config).await));
    log.push(outcome(
        tx.delete_configuration(ids.other_org, ids.config).await,
    ));
    log.push(outcome(
        tx.assign_configuration(
            ids.org,
            ids.second_config,
            &[ids.devices[0], ids.devices[3]],
            now,
        )
        .await
        .map(sorted),
    ));
    log.push(outcome(
        tx.assign_waiting_devices(ids.org, ids.second_config, now)
            .await
            .map(sorted),
    ));
    tx.commit().await.expect("commit");
    reads(store, ids, now, &mut log).await;

    // Ending pairings, revoking codes, changing licenses, idempotency.
    let now = T0.plus_millis(3_000);
    let mut tx = store.begin().await.expect("begin");
    log.push(outcome(
        tx.end_devices(&[ids.devices[1], ids.devices[3]], PairingEnd::Unpaired, now)
            .await,
    ));
    log.push(outcome(
        tx.end_devices(&[ids.devices[1]], PairingEnd::Unpaired, now)
            .await,
    ));
    log.push(outcome(tx.delete_configuration(ids.org, ids.config).await));
    log.push(outcome(tx.revoke_code(ids.org, ids.reusable, now).await));
    log.push(outcome(tx.revoke_code(ids.org, ids.reusable, now).await));
    log.push(outcome(
        tx.revoke_code(ids.other_org, ids.single_use, now).await,
    ));
    // A new single-use code for a free license, then its revocation through the license.
    let third = CodeId(Uuid::from_u128(ids.single_use.0.as_u128() + 1));
    tx.insert_code(&NewCode {
        id: third,
        org_id: ids.org,
        kind: CodeKind::SingleUse,
        code_hash: hash(44),
        sealed_secret: None,
        label: Some("for the lobby".into()),
        license_id: Some(ids.licenses[3]),
        created_at: now,
        expires_at: now.plus_millis(10_000),
        max_uses: None,
        configuration_id: None,
        replaces_device: None,
    })
    .await
    .expect("code");
    log.push(outcome(
        tx.revoke_single_use_codes_of(ids.licenses[3], now).await,
    ));
    log.push(outcome(
        tx.revoke_single_use_codes_of(ids.licenses[3], now).await,
    ));
    log.push(outcome(
        tx.set_license_valid_until(ids.org, claimed[0].id, Some(now.plus_millis(500)), now)
            .await,
    ));
    log.push(outcome(
        tx.set_license_valid_until(ids.other_org, claimed[0].id, None, now)
            .await,
    ));
    let reply = StoredReply {
        fingerprint: [5; 32],
        sealed_reply: vec![9, 9, 9],
    };
    log.push(outcome(tx.idempotent_reply("org", "k1").await));
    log.push(outcome(
        tx.store_idempotent_reply("org", "k1", &reply, now).await,
    ));
    log.push(outcome(tx.idempotent_reply("org", "k1").await));
    tx.commit().await.expect("commit");
    let later = now.plus_millis(1_000);
    reads(store, ids, later, &mut log).await;
    log.push(outcome(store.prune_idempotency(now).await));
    log.push(outcome(store.prune_idempotency(later).await));

    let mut tx = store.begin().await.expect("begin");
    log.push(outcome(
        tx.store_idempotent_reply("org", "k2", &reply, now).await,
    ));
    log.push(outcome(
        tx.store_idempotent_reply("org", "k2", &reply, now).await,
    ));
    drop(tx);

    // A second live single-use code for one license breaks a unique index. (Failing
    // statements come last in their transaction: PostgreSQL refuses every statement after an
    // error until rollback, where SQLite carries on; the engine rolls back either way.)
    let mut tx = store.begin().await.expect("begin");
    for (offset, hash_byte) in [(2, 45), (3, 46)] {
        let result = tx
            .insert_code(&NewCode {
                id: CodeId(Uuid::from_u128(ids.single_use.0.as_u128() + offset)),
                org_id: ids.org,
                kind: CodeKind::SingleUse,
                code_hash: hash(hash_byte),
                sealed_secret: None,
                label: None,
                license_id: Some(ids.licenses[2]),
                created_at: now,
                expires_at: now.plus_millis(10_000),
                max_uses: None,
                configuration_id: None,
                replaces_device: None,
            })
            .await;
        log.push(outcome(result));
    }
    drop(tx);

    // The expiry sweep ends the expired pairing.
    let mut tx = store.begin().await.expect("begin");
    let expired = store.expired_pairings(later, 10).await.expect("expired");
    let expired: Vec<DeviceId> = expired.into_iter().map(|(_, device)| device).collect();
    log.push(outcome(
        tx.end_devices(&expired, PairingEnd::LicenseExpired, later)
            .await,
    ));
    tx.commit().await.expect("commit");
    reads(store, ids, later, &mut log).await;
    log
}

/// The same script on SQLite and on PostgreSQL gives the same answers, read by read.
#[tokio::test]
async fn same_answers_as_sqlite() {
    let ids = Ids::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(&SqliteSettings::new(dir.path().join("script.db")))
        .await
        .expect("sqlite");
    let expected = script(&sqlite, &ids).await;
    sqlite.close().await;
    let postgres = fresh_store().await;
    let got = script(&postgres, &ids).await;
    postgres.close().await;
    if std::env::var_os("PAIRD_SHOW_SCRIPT").is_some() {
        for line in &got {
            eprintln!("{line}");
        }
    }
    assert_eq!(expected.len(), got.len());
    let differences: Vec<String> = expected
        .iter()
        .zip(&got)
        .enumerate()
        .filter(|(_, (sqlite, postgres))| sqlite != postgres)
        .map(|(step, (sqlite, postgres))| {
            format!("step {step}:\n  sqlite:   {sqlite}\n  postgres: {postgres}")
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // The script must have exercised the paths it claims to.
    assert!(got.iter().any(|line| line.contains("Err(Conflict)")));
    assert!(
        got.iter()
            .any(|line| line.starts_with("fleet FleetQuery { rows: Devices"))
    );
    let fleet: Vec<&String> = got
        .iter()
        .filter(|line| line.starts_with("fleet"))
        .collect();
    assert!(
        fleet.iter().all(|line| !line.contains(": Err(")),
        "every fleet read answers: {fleet:#?}"
    );
    assert!(
        fleet.iter().any(|line| line.contains("next_cursor: Some")),
        "some fleet list takes more than one page"
    );
}

// --- the audit migration on a log written before it ------------------------------------------

/// A new SQLite file `old.db` in `dir`, and a pool on it without paird's migrations (a test
/// brings it to an older schema itself).
async fn old_sqlite(dir: &std::path::Path) -> (std::path::PathBuf, sqlx::SqlitePool) {
    let path = dir.join("old.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("sqlite");
    (path, pool)
}

/// A directory with the backend's migrations older than `0004_audit`.
fn migrations_before_audit(backend: &str) -> tempfile::TempDir {
    migrations_before(backend, "0004")
}

/// A directory with the backend's migrations whose names sort before `first_left_out`.
fn migrations_before(backend: &str, first_left_out: &str) -> tempfile::TempDir {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("migration").path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if name < first_left_out {
            std::fs::copy(&path, dir.path().join(name)).expect("copy");
        }
    }
    dir
}

/// Entries as paird wrote them before the log named its devices: about a device (its subject),
/// by a device (`device:<id>`), an assignment (`device_ids`, or `null` past 100 devices), and a
/// refusal that made no device.
const OLD_ENTRIES: [(&str, &str, &str); 5] = [
    ("device:{0}", "device.paired", "{0}"),
    ("device:{1}", "configuration.apply_failed", "config"),
    ("operator", "configuration.assigned", "config"),
    ("operator", "configuration.assigned", "config"),
    ("device", "pairing.refused", "code"),
];

fn old_entry(index: usize, devices: &[DeviceId]) -> (String, String, String, String) {
    let (actor, action, subject) = OLD_ENTRIES[index];
    let fill = |text: &str| {
        text.replace("{0}", &devices[0].to_string())
            .replace("{1}", &devices[1].to_string())
    };
    let details = match index {
        2 => serde_json::json!({ "devices": 2, "device_ids": [devices[0], devices[2]] }),
        3 => serde_json::json!({ "devices": 101, "device_ids": null }),
        _ => serde_json::json!({}),
    };
    (
        fill(actor),
        action.to_string(),
        fill(subject),
        details.to_string(),
    )
}

/// The entries each device's filter finds after the migration, by their place in
/// [`OLD_ENTRIES`], newest first.
async fn device_entries(store: &dyn Store, org: OrgId, devices: &[DeviceId]) -> Vec<Vec<i64>> {
    let mut found = Vec::new();
    for device in devices {
        let filter = AuditFilter {
            device_id: Some(*device),
            ..AuditFilter::default()
        };
        let page = store
            .list_audit(Some(org), &filter, &PageRequest::default())
            .await
            .expect("audit");
        found.push(page.items.iter().map(|entry| entry.id - 1).collect());
    }
    found
}

/// Brings `$pool`'s database to the schema before `0004_audit` and writes [`OLD_ENTRIES`]
/// there, as paird did then (one macro for both backends' pools).
macro_rules! write_old_log {
    ($pool:expr, $backend:literal, $org:expr, $devices:expr) => {{
        let old = migrations_before_audit($backend);
        sqlx::migrate::Migrator::new(old.path())
            .await
            .expect("migrations")
            .run(&$pool)
            .await
            .expect("migrate");
        for index in 0..OLD_ENTRIES.len() {
            let (actor, action, subject, details) = old_entry(index, $devices);
            sqlx::query(
                "INSERT INTO audit_log (org_id, at, actor, action, subject, details) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind($org.0)
            .bind(T0.0)
            .bind(actor)
            .bind(action)
            .bind(subject)
            .bind(details)
            .execute(&$pool)
            .await
            .expect("old entry");
        }
        $pool.close().await;
    }};
}

#[tokio::test]
async fn the_audit_migration_names_the_devices_of_older_entries() {
    let org = OrgId(id());
    let devices: Vec<DeviceId> = (0..3).map(|_| DeviceId(id())).collect();
    // Device 0 was paired (0) and assigned (2); device 1 failed to apply (1); device 2 was
    // assigned (2).
    let expected = vec![vec![2, 0], vec![1], vec![2]];

    let dir = tempfile::tempdir().expect("tempdir");
    let (path, pool) = old_sqlite(dir.path()).await;
    write_old_log!(pool, "sqlite", org, &devices);
    let sqlite = SqliteStore::open(&SqliteSettings::new(path))
        .await
        .expect("migrate to the audit schema");
    assert_eq!(device_entries(&sqlite, org, &devices).await, expected);
    sqlite.close().await;

    let url = fresh_url().await;
    let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
    write_old_log!(pool, "postgres", org, &devices);
    let postgres = PgStore::open(&PgSettings::new(url))
        .await
        .expect("migrate to the audit schema");
    assert_eq!(device_entries(&postgres, org, &devices).await, expected);
    postgres.close().await;
}

// --- the revisions migration on configurations saved before it -------------------------------

/// Brings `$pool`'s database to the schema before the revisions migration (`$before`) and
/// saves a configuration at revision 5 there, as paird did then.
macro_rules! write_old_configuration {
    ($pool:expr, $backend:literal, $before:literal, $org:expr, $config:expr) => {{
        let old = migrations_before($backend, $before);
        sqlx::migrate::Migrator::new(old.path())
            .await
            .expect("migrations")
            .run(&$pool)
            .await
            .expect("migrate");
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, 'Old', $2)")
            .bind($org.0)
            .bind(T0.0)
            .execute(&$pool)
            .await
            .expect("organization");
        sqlx::query(
            "INSERT INTO configurations (id, org_id, name, body, revision, created_at, \
             updated_at) VALUES ($1, $2, 'Meters', $3, 5, $4, $5)",
        )
        .bind($config.0)
        .bind($org.0)
        .bind(OLD_BODY)
        .bind(T0.0)
        .bind(T0.0 + 1000)
        .execute(&$pool)
        .await
        .expect("configuration");
        $pool.close().await;
    }};
}

/// Not ASCII, so that its size in bytes is not its length in characters.
const OLD_BODY: &str = "[GLOBAL]\nname = Zürich\n";

/// The history a configuration saved before the migration has after it: its current revision,
/// saved when it was last edited, by no one known.
async fn old_history(store: &dyn Store, org: OrgId, config: ConfigId) {
    let page = store
        .list_revisions(org, config, &PageRequest::default())
        .await
        .expect("revisions")
        .expect("the configuration");
    assert_eq!(page.items.len(), 1);
    let kept = store
        .revision(org, config, 5)
        .await
        .expect("revision")
        .expect("revision 5");
    assert_eq!(
        (kept.name.as_str(), kept.saved_at, kept.saved_by, kept.bytes),
        (
            "Meters",
            Timestamp(T0.0 + 1000),
            None,
            OLD_BODY.len() as u64
        )
    );
    assert_eq!(kept.body.as_deref(), Some(OLD_BODY));
    assert_eq!(page.items[0].body, None);
    assert_eq!(store.revision(org, config, 4).await.expect("read"), None);
}

#[tokio::test]
async fn the_revisions_migration_keeps_the_current_revision_of_older_configurations() {
    let (org, config) = (OrgId(id()), ConfigId(id()));
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, pool) = old_sqlite(dir.path()).await;
    write_old_configuration!(pool, "sqlite", "0012", org, config);
    let sqlite = SqliteStore::open(&SqliteSettings::new(path))
        .await
        .expect("migrate");
    old_history(&sqlite, org, config).await;
    sqlite.close().await;

    let url = fresh_url().await;
    let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
    write_old_configuration!(pool, "postgres", "0008", org, config);
    let postgres = PgStore::open(&PgSettings::new(url)).await.expect("migrate");
    old_history(&postgres, org, config).await;
    postgres.close().await;
}
