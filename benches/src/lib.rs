//! paird's criterion benchmarks live in `benches/`; this library holds the sample data they
//! share, so that every bench measures the same messages.

use protocol::{Configuration, Credential, DeviceInfo, DeviceMessage, Pair, Paired, ServerMessage};
use uuid::Uuid;

/// A pairing request as a device sends it.
pub fn sample_pair() -> DeviceMessage {
    DeviceMessage::Pair(Pair {
        code: "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U".into(),
        installation_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        credential: Credential([7; 32]),
        device: DeviceInfo {
            name: "Van 7".into(),
            model: "TC52".into(),
            os: "Android 13".into(),
            app_version: "4.2.1".into(),
        },
    })
}

/// The server's answer to it.
pub fn sample_paired() -> ServerMessage {
    ServerMessage::Paired(Paired {
        device_id: Uuid::from_u128(1),
        organization_id: Uuid::from_u128(2),
        license_id: Uuid::from_u128(3),
        license_valid_until_ms: Some(1_800_000_000_000),
        already_paired: false,
        configuration_pending: false,
    })
}

/// A configuration push with a body of `bytes` bytes.
pub fn sample_configuration(bytes: usize) -> ServerMessage {
    let line = "synctime_high_threshold = 600\n";
    let body: String = line.repeat(bytes / line.len() + 1)[..bytes].to_string();
    ServerMessage::Configuration(Configuration {
        configuration_id: Uuid::from_u128(4),
        name: "Meters".into(),
        revision: 7,
        body,
    })
}

/// An engine on a real SQLite file in a temporary directory (`synchronous=FULL`, the default),
/// with one organization, a configuration and a reusable code, created through the admin
/// commands as a real server would.
#[derive(Debug)]
pub struct Organization {
    pub engine: engine::Engine,
    pub org_id: engine::ids::OrgId,
    pub code_id: engine::ids::CodeId,
    /// The reusable code's secret, as a device would scan it.
    pub code: String,
    _dir: tempfile::TempDir,
}

impl Organization {
    pub async fn start() -> Organization {
        use engine::{Engine, EngineSettings, Principal, ReusableCodeSpec, SystemClock};
        let dir = tempfile::tempdir().expect("temporary directory");
        let settings = store::SqliteSettings::new(dir.path().join("bench.db"));
        let store = store::SqliteStore::open(&settings).await.expect("database");
        let engine = Engine::start(
            std::sync::Arc::new(store),
            std::sync::Arc::new(SystemClock),
            &engine::secrets::ServerKey::generate(),
            EngineSettings::default(),
        )
        .await
        .expect("engine");
        let operator = Principal::Operator;
        let org = engine
            .create_organization(&operator, "bench", None)
            .await
            .expect("organization");
        engine
            .create_configuration(&operator, org.id, "bench", "[GLOBAL]\n", None)
            .await
            .expect("configuration");
        let code = engine
            .create_reusable_code(&operator, org.id, ReusableCodeSpec::default(), None)
            .await
            .expect("code");
        Organization {
            engine,
            org_id: org.id,
            code_id: code.info.id,
            code: code.code,
            _dir: dir,
        }
    }

    /// Adds `count` free licenses, in as many admin commands as it takes (at most 100,000
    /// each).
    pub async fn add_licenses(&self, count: u64) {
        let mut left = count;
        while left > 0 {
            let chunk = left.min(100_000);
            self.engine
                .add_licenses(
                    &engine::Principal::Operator,
                    self.org_id,
                    u32::try_from(chunk).expect("at most 100,000"),
                    None,
                    None,
                )
                .await
                .expect("licenses");
            left -= chunk;
        }
    }
}
