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
/// commands as a real server would (the shared test fixture, `testkit`).
#[derive(Debug)]
pub struct Organization {
    pub engine: engine::Engine,
    pub org_id: engine::ids::OrgId,
    pub code_id: engine::ids::CodeId,
    /// The reusable code's secret, as a device would scan it.
    pub code: String,
    _fixture: testkit::Fixture,
}

impl Organization {
    pub async fn start() -> Organization {
        let fixture = testkit::Fixture::new(testkit::Backend::Sqlite).await;
        let engine = fixture.start().await;
        let (organization, code) = testkit::org_with_code(&engine, 0, None).await;
        let configuration = engine::admin::CreateConfiguration {
            name: "bench".into(),
            body: "[GLOBAL]\n".into(),
        };
        engine
            .run(&engine::Principal::Operator, organization.id, configuration)
            .await
            .expect("configuration");
        Organization {
            engine,
            org_id: organization.id,
            code_id: code.info.id,
            code: code.code,
            _fixture: fixture,
        }
    }

    /// Adds `count` free licenses, in as many admin commands as it takes (at most 100,000
    /// each).
    pub async fn add_licenses(&self, count: u64) {
        let mut left = count;
        while left > 0 {
            let chunk = left.min(100_000);
            let command = engine::admin::AddLicenses {
                count: u32::try_from(chunk).expect("at most 100,000"),
                valid_until: None,
            };
            self.engine
                .run(&engine::Principal::Operator, self.org_id, command)
                .await
                .expect("licenses");
            left -= chunk;
        }
    }
}
