//! The one test fixture for the engine on a real database: used by the engine's tests, the
//! store's tests and the benches, on either backend.
//!
//! - [`Database`]: a fresh database: a SQLite file in a temporary directory, or a database of
//!   its own on a throwaway PostgreSQL cluster (one per test process, `pgtemp`). Each
//!   [`Database::open`] is a new store on it, so that two engines on one database act as two
//!   nodes.
//! - [`Fixture`]: a database with the server key and the manual clock its engines share;
//!   [`Fixture::start`] starts an engine (a node) on it.
//! - [`TestDevice`]: an installation with its credential, that builds its requests in the
//!   engine's words; [`org_with_code`], [`org_key`] and [`next_update`] do what most tests need
//!   first.
//!
//! Tests fail loudly by design: every helper panics with a message when its setup fails.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use engine::admin::{AddLicenses, CreateKey, CreateOrganization, CreateReusableCode};
use engine::ids::{InstallationId, OrgId, Timestamp};
use engine::link::{DeviceLink, LinkUpdate};
use engine::model::{CodeWithSecret, Organization};
use engine::secrets::{self, ServerKey};
use engine::store::{DeviceDetails, Store};
use engine::{
    Engine, EngineSettings, ManualClock, PairRequest, PresentedCode, Principal, ResumeRequest,
};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// A fresh database of one backend.
#[derive(Debug)]
pub struct Database {
    url: store::DatabaseUrl,
    /// The SQLite file's directory, removed when the database is dropped.
    _dir: Option<tempfile::TempDir>,
}

impl Database {
    pub async fn new(backend: Backend) -> Database {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                Database {
                    url: store::DatabaseUrl::Sqlite(dir.path().join("paird.db")),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let url = tokio::task::spawn_blocking(|| {
                    postgres_cluster()
                        .create_database()
                        .expect("a database on the throwaway cluster")
                })
                .await
                .expect("create a database");
                Database {
                    url: store::DatabaseUrl::Postgres(url),
                    _dir: None,
                }
            }
        }
    }

    /// A new store on this database (a node of its own, on PostgreSQL).
    pub async fn open(&self) -> Arc<dyn Store> {
        store::open(&self.url, store::OpenOptions::default())
            .await
            .expect("open the database")
    }

    pub fn url(&self) -> &store::DatabaseUrl {
        &self.url
    }

    /// Terminates every change listener connected to this PostgreSQL database (the nodes'
    /// feeds reconnect and resynchronise); returns how many it terminated.
    pub async fn kill_listeners(&self) -> usize {
        let store::DatabaseUrl::Postgres(url) = &self.url else {
            panic!("only PostgreSQL nodes listen for changes");
        };
        let store = store::PgStore::open(&store::PgSettings::new(url.clone()))
            .await
            .expect("open the database");
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(store::postgres::LISTENER_APPLICATION_NAME)
        .fetch_all(store.pool())
        .await
        .expect("terminate the listeners");
        store.close().await;
        killed.into_iter().filter(|killed| *killed).count()
    }
}

/// One PostgreSQL cluster for the whole test process (starting one takes seconds); every
/// [`Database`] is a database of its own on it. pgtemp's watchdog stops it when the process
/// exits.
pub fn postgres_cluster() -> &'static pgtemp::Cluster {
    static CLUSTER: OnceLock<pgtemp::Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| pgtemp::Cluster::start().expect("start a PostgreSQL cluster"))
}

/// A database, and the server key and clock that every engine started on it shares.
#[derive(Debug)]
pub struct Fixture {
    pub database: Database,
    pub clock: Arc<ManualClock>,
    pub key: ServerKey,
}

impl Fixture {
    pub async fn new(backend: Backend) -> Fixture {
        Fixture {
            database: Database::new(backend).await,
            clock: ManualClock::starting_now(),
            key: ServerKey::generate(),
        }
    }

    /// An engine (a node) on the fixture's database, with the default settings.
    pub async fn start(&self) -> Engine {
        self.start_with(EngineSettings::default()).await
    }

    pub async fn start_with(&self, settings: EngineSettings) -> Engine {
        Engine::start(
            self.database.open().await,
            self.clock.clone(),
            &self.key,
            settings,
        )
        .await
        .expect("start the engine")
    }
}

/// An organization with `licenses` licenses (ending at `valid_until`, if given) and a reusable
/// code, made through the admin commands as a portal backend would.
pub async fn org_with_code(
    engine: &Engine,
    licenses: u32,
    valid_until: Option<Timestamp>,
) -> (Organization, CodeWithSecret) {
    let operator = Principal::Operator;
    let name = "Acme".to_string();
    let organization = engine
        .create_organization(&operator, CreateOrganization { name })
        .await
        .expect("an organization");
    if licenses > 0 {
        let command = AddLicenses {
            count: licenses,
            valid_until,
        };
        engine
            .run(&operator, organization.id, command)
            .await
            .expect("licenses");
    }
    let code = engine
        .run(
            &operator,
            organization.id,
            CreateReusableCode::new(None, None, None),
        )
        .await
        .expect("a reusable code");
    (organization, code)
}

/// A new key of `org_id` (made by the operator, as a portal backend's would be), and the
/// principal its token authenticates as.
pub async fn org_key(engine: &Engine, org_id: OrgId, name: &str) -> Principal {
    let command = CreateKey {
        name: name.into(),
        expires_at: None,
    };
    let key = engine
        .run(&Principal::Operator, org_id, command)
        .await
        .expect("an organization key");
    engine.authenticate(&key.key).await.expect("the key works")
}

/// An installation of the app: its id and its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDevice {
    pub installation_id: InstallationId,
    pub credential: [u8; 32],
}

impl Default for TestDevice {
    fn default() -> Self {
        TestDevice::new()
    }
}

impl TestDevice {
    pub fn new() -> TestDevice {
        TestDevice {
            installation_id: InstallationId::generate(),
            credential: secrets::random_bytes(),
        }
    }

    /// The device scans `code` (as issued: its canonical text).
    pub fn pair_request(&self, code: &str) -> PairRequest {
        PairRequest {
            code: PresentedCode::Hash(secrets::code_hash(code)),
            installation_id: self.installation_id,
            credential_hash: secrets::credential_hash(&self.credential),
            details: details(),
            wait: engine::WaitChoice::No,
        }
    }

    /// The device reconnects, saying it runs nothing yet.
    pub fn resume_request(&self) -> ResumeRequest {
        ResumeRequest {
            installation_id: self.installation_id,
            credential_hash: secrets::credential_hash(&self.credential),
            details: details(),
            running: None,
        }
    }

    /// A connection of this device to `engine`.
    pub fn connect(&self, engine: &Engine) -> Arc<DeviceLink> {
        engine.new_link(IpAddr::from([127, 0, 0, 1]))
    }
}

/// What every test device says of itself.
pub fn details() -> DeviceDetails {
    DeviceDetails {
        name: "test device".into(),
        model: "model".into(),
        os: "os".into(),
        app_version: "1.0".into(),
    }
}

/// What a link is handed next: waits (at most 10 s) until the engine gives it something.
pub async fn next_update(link: &DeviceLink) -> LinkUpdate {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let update = link.take();
            if update.configuration.is_some() || update.end.is_some() {
                return update;
            }
            link.changed().await;
        }
    })
    .await
    .expect("the link is handed something within 10 s")
}
