//! Audit retention's deletes (`NodeStore::delete_audit_before`) on both backends: the leading
//! run of entries older than the cut-off goes, a batch at a time, with its links to devices;
//! an entry not old enough stops the run.

use engine::ids::{DeviceId, Timestamp};
use engine::store::{NewAudit, Store};
use store::{PgSettings, PgStore, SqliteSettings, SqliteStore};

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn entry(after: i64, devices: &[DeviceId]) -> NewAudit {
    NewAudit {
        org_id: None,
        at: T0.plus_millis(after),
        actor: "operator".into(),
        action: "configuration.assigned".into(),
        subject: None,
        details: serde_json::json!({ "after": after }),
        devices: devices.to_vec(),
    }
}

/// Writes entries at T0 + 1, 2, 3, 10, 4 (the last one out of order), each naming a device,
/// and returns what each call of the deletes answered, with the entries and links left.
async fn script<F>(store: &dyn Store, count: impl Fn() -> F) -> Vec<(u64, (i64, i64))>
where
    F: std::future::Future<Output = (i64, i64)>,
{
    let devices: Vec<DeviceId> = (0..5).map(|_| DeviceId::generate()).collect();
    let mut tx = store.begin().await.expect("begin");
    let entries: Vec<NewAudit> = [1, 2, 3, 10, 4]
        .iter()
        .zip(&devices)
        .map(|(after, device)| entry(*after, &[*device]))
        .collect();
    tx.insert_audit(&entries).await.expect("audit");
    tx.commit().await.expect("commit");
    let mut answers = Vec::new();
    // Older than T0 + 5, two at a time: 1 and 2, then 3 (10 stops the run), then nothing.
    for _ in 0..3 {
        let deleted = store
            .delete_audit_before(T0.plus_millis(5), 2)
            .await
            .expect("delete");
        answers.push((deleted, count().await));
    }
    // Once 10 is old enough too, it and the entry after it go.
    let deleted = store
        .delete_audit_before(T0.plus_millis(11), 100)
        .await
        .expect("delete");
    answers.push((deleted, count().await));
    answers
}

const EXPECTED: [(u64, (i64, i64)); 4] = [(2, (3, 3)), (1, (2, 2)), (0, (2, 2)), (2, (0, 0))];

const ENTRIES: &str = "SELECT count(*) FROM audit_log";
const LINKS: &str = "SELECT count(*) FROM audit_devices";

#[tokio::test]
async fn sqlite_deletes_the_leading_run_of_old_entries_with_their_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paird.db");
    let store = SqliteStore::open(&SqliteSettings::new(&path))
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let count = || async {
        let entries: i64 = sqlx::query_scalar(ENTRIES).fetch_one(&pool).await.unwrap();
        let links: i64 = sqlx::query_scalar(LINKS).fetch_one(&pool).await.unwrap();
        (entries, links)
    };
    let answers = script(&store, count).await;
    assert_eq!(answers, EXPECTED);
    pool.close().await;
    store.close().await;
}

#[tokio::test]
async fn postgres_deletes_the_leading_run_of_old_entries_with_their_links() {
    let (_cluster, url) = tokio::task::spawn_blocking(|| {
        let cluster = pgtemp::Cluster::start().expect("start a PostgreSQL cluster");
        let url = cluster.create_database().expect("create a database");
        (cluster, url)
    })
    .await
    .unwrap();
    let store = PgStore::open(&PgSettings::new(url.clone())).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let count = || async {
        let entries: i64 = sqlx::query_scalar(ENTRIES).fetch_one(&pool).await.unwrap();
        let links: i64 = sqlx::query_scalar(LINKS).fetch_one(&pool).await.unwrap();
        (entries, links)
    };
    let answers = script(&store, count).await;
    assert_eq!(answers, EXPECTED);
    pool.close().await;
    store.close().await;
}
