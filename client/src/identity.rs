//! The installation's identity and the state file of a device.

use std::path::Path;

use protocol::{ConfigRef, Credential};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An installation id and its credential, generated once per installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    pub installation_id: Uuid,
    pub credential: Credential,
}

impl DeviceIdentity {
    /// A fresh identity from the OS random source.
    pub fn generate() -> std::io::Result<Self> {
        let mut credential = [0u8; Credential::LEN];
        getrandom::fill(&mut credential).map_err(std::io::Error::other)?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(std::io::Error::other)?;
        Ok(DeviceIdentity {
            installation_id: uuid::Builder::from_random_bytes(id).into_uuid(),
            credential: Credential(credential),
        })
    }
}

/// What a device keeps between runs: its identity, where it paired and what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// The WebSocket URL of the server's device endpoint(s); the first is tried first.
    pub servers: Vec<String>,
    pub identity: DeviceIdentity,
    pub device_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    /// The configuration revision last applied.
    pub configuration: Option<ConfigRef>,
}

impl DeviceState {
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {error}", path.display()),
            )
        })
    }

    /// Writes the state atomically (temporary file + rename), readable by the owner only: it
    /// holds the credential.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let temporary = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, path)
    }
}
