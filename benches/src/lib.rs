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
