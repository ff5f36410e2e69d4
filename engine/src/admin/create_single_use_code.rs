//! Creates the single-use code of one license ("Assign device"), replacing its previous one.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::create_reusable_code::{issued, whole_millis};
use super::{AdminCommand, CommandTx, quota, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::{CodeId, DeviceId, LicenseId};
use crate::model::{CodeKind, CodeWithSecret};
use crate::secrets;
use crate::secrets::PairingCode;
use crate::store::{NewCode, Quota};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateSingleUseCode {
    license_id: LicenseId,
    /// From 10 seconds to 10 minutes.
    #[serde(rename = "validity_ms", with = "validate::millis")]
    validity: Duration,
}

impl CreateSingleUseCode {
    /// A code for `license_id`, valid for `validity` (default 60 seconds).
    pub fn new(license_id: LicenseId, validity: Option<Duration>) -> Self {
        CreateSingleUseCode {
            license_id,
            validity: whole_millis(validity.unwrap_or(validate::SINGLE_USE_VALIDITY_DEFAULT)),
        }
    }
}

impl AdminCommand for CreateSingleUseCode {
    type Reply = CodeWithSecret;
    const NAME: &'static str = "create_single_use_code";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<CodeWithSecret, EngineError> {
        if !(validate::SINGLE_USE_VALIDITY_MIN..=validate::SINGLE_USE_VALIDITY_MAX)
            .contains(&self.validity)
        {
            return Err(EngineError::invalid(
                "validity_seconds",
                "from 10 to 600 seconds",
            ));
        }
        let license = tx.own_license(self.license_id).await?;
        if license.device_id.is_some() {
            return Err(EngineError::conflict(
                "license_assigned",
                "the license is assigned to a device; unpair it first",
            ));
        }
        if license.expired_at(tx.now) {
            return Err(EngineError::conflict(
                "license_expired",
                "the license has expired",
            ));
        }
        let (new, code, replaced) = issue(tx, self.license_id, self.validity, None).await?;
        tx.audit(
            "code.created",
            new.id.to_string(),
            json!({ "kind": "single_use", "license_id": self.license_id, "expires_at": new.expires_at, "replaced": replaced }),
        )
        .await?;
        Ok(issued(&new, &code))
    }

    fn events(&self, _: &CodeWithSecret) -> Vec<OrgEvent> {
        vec![OrgEvent::Licenses]
    }
}

/// Issues a single-use code for `license_id`, valid for `validity` (a replacement code when
/// `replaces_device` is given): revokes the license's previous single-use code, checks the
/// quota and inserts the code, which reserves the license until it expires. Returns the code's
/// row, its secret, and the codes it revoked.
pub(super) async fn issue(
    tx: &mut CommandTx<'_>,
    license_id: LicenseId,
    validity: Duration,
    replaces_device: Option<DeviceId>,
) -> Result<(NewCode, PairingCode, Vec<CodeId>), EngineError> {
    // A new code replaces the license's previous one.
    let replaced = tx
        .store
        .revoke_single_use_codes_of(license_id, tx.now)
        .await?;
    let code = secrets::new_pairing_code();
    let new = NewCode {
        id: CodeId::generate(),
        org_id: tx.org_id,
        kind: CodeKind::SingleUse,
        code_hash: secrets::code_hash(code.as_str()),
        sealed_secret: None,
        label: None,
        license_id: Some(license_id),
        created_at: tx.now,
        expires_at: tx.now.plus(validity),
        max_uses: Some(1),
        configuration_id: None,
        replaces_device,
    };
    quota::ensure_room(tx, Quota::ActiveCodes).await?;
    tx.store.insert_code(&new).await?;
    Ok((new, code, replaced))
}
