//! Creates a reusable code: each scan takes any free license, as often as its validity and
//! use limit allow.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx, quota, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::{CodeId, ConfigId};
use crate::model::{CodeInfo, CodeKind, CodeStatus, CodeWithSecret};
use crate::secrets::{self, PairingCode};
use crate::store::{NewCode, Quota};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateReusableCode {
    /// From 1 hour to 1 year.
    #[serde(rename = "validity_ms", with = "validate::millis")]
    validity: Duration,
    max_uses: Option<u32>,
    label: Option<String>,
    /// Left out of the fingerprint when absent, so that a retry that spans the upgrade which
    /// added it is still recognised.
    #[serde(skip_serializing_if = "Option::is_none")]
    configuration_id: Option<ConfigId>,
}

impl CreateReusableCode {
    /// A code valid for `validity` (default 30 days), usable `max_uses` times (default: no
    /// limit).
    pub fn new(validity: Option<Duration>, max_uses: Option<u32>, label: Option<String>) -> Self {
        CreateReusableCode {
            validity: whole_millis(validity.unwrap_or(validate::REUSABLE_VALIDITY_DEFAULT)),
            max_uses,
            label,
            configuration_id: None,
        }
    }

    /// Devices paired with the code get `configuration_id` (one of the organization's
    /// configurations) instead of the organization's configuration for new devices.
    pub fn with_configuration(mut self, configuration_id: Option<ConfigId>) -> Self {
        self.configuration_id = configuration_id;
        self
    }
}

/// Codes expire on millisecond boundaries: the engine's time is in milliseconds.
pub(super) fn whole_millis(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

impl AdminCommand for CreateReusableCode {
    type Reply = CodeWithSecret;
    const NAME: &'static str = "create_reusable_code";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<CodeWithSecret, EngineError> {
        if !(validate::REUSABLE_VALIDITY_MIN..=validate::REUSABLE_VALIDITY_MAX)
            .contains(&self.validity)
        {
            return Err(EngineError::invalid(
                "validity_seconds",
                "from 3600 (1 hour) to 31536000 (1 year)",
            ));
        }
        if self.max_uses == Some(0) {
            return Err(EngineError::invalid("max_uses", "at least 1 when given"));
        }
        let label = self
            .label
            .as_deref()
            .map(|label| validate::name("label", label, validate::MAX_LABEL_BYTES))
            .transpose()?;
        let code = secrets::new_pairing_code();
        let id = CodeId::generate();
        // Kept encrypted too, so that its organization's admins can display it again.
        let sealed = tx.cipher().seal(id.0.as_bytes(), code.as_str().as_bytes());
        let new = NewCode {
            id,
            org_id: tx.org_id,
            kind: CodeKind::Reusable,
            code_hash: secrets::code_hash(code.as_str()),
            sealed_secret: Some(sealed),
            label: label.clone(),
            license_id: None,
            created_at: tx.now,
            expires_at: tx.now.plus(self.validity),
            max_uses: self.max_uses,
            configuration_id: self.configuration_id,
            replaces_device: None,
        };
        quota::ensure_room(tx, Quota::ActiveCodes).await?;
        if let Some(config_id) = self.configuration_id {
            // Locked (after the organization, as a deletion locks them), so that a concurrent
            // deletion either sees this code or has removed the configuration first.
            tx.store
                .lock_configuration(tx.org_id, config_id)
                .await?
                .ok_or(EngineError::NotFound("configuration"))?;
        }
        tx.store.insert_code(&new).await?;
        tx.audit(
            "code.created",
            id.to_string(),
            json!({
                "kind": "reusable",
                "expires_at": new.expires_at,
                "max_uses": self.max_uses,
                "label": label,
                "configuration_id": self.configuration_id,
            }),
        )
        .await?;
        Ok(issued(&new, &code))
    }

    fn events(&self, _: &CodeWithSecret) -> Vec<OrgEvent> {
        vec![OrgEvent::Codes]
    }
}

/// A code as its creator is answered: its row and its secret.
pub(super) fn issued(code: &NewCode, secret: &PairingCode) -> CodeWithSecret {
    CodeWithSecret {
        info: CodeInfo {
            id: code.id,
            organization_id: code.org_id,
            kind: code.kind,
            label: code.label.clone(),
            status: CodeStatus::Active,
            created_at: code.created_at,
            expires_at: code.expires_at,
            max_uses: match code.kind {
                CodeKind::Reusable => code.max_uses,
                CodeKind::SingleUse => None,
            },
            uses: 0,
            last_used_at: None,
            revoked_at: None,
            license_id: code.license_id,
            configuration_id: code.configuration_id,
            replaces_device_id: code.replaces_device,
        },
        code: secret.as_str().to_string(),
    }
}
