//! Replaces a device with a new installation (a broken or lost handset's successor): issues a
//! replacement code, a single-use code that reserves the device's license. The installation
//! that pairs with it takes the device's place in one transaction (the pairing batch's): the
//! old pairing ends (`replaced`, its session told), and the new device gets the same license,
//! the same configuration, and the name and notes an admin gave the old one. No second license
//! is used, and there is no moment with both devices or neither holding the license.
//!
//! Until the code is used the old device keeps working. A new replacement code replaces the
//! previous one; ending the device any other way (unpaired, expired, released) revokes it.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::create_reusable_code::{issued, whole_millis};
use super::create_single_use_code::issue;
use super::{AdminCommand, CommandTx, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::DeviceId;
use crate::model::CodeWithSecret;

/// How long a replacement code is valid by default: an hour to set up the new handset.
pub const REPLACEMENT_VALIDITY_DEFAULT: Duration = Duration::from_secs(3600);
/// The shortest and longest validity of a replacement code.
pub const REPLACEMENT_VALIDITY_MIN: Duration = Duration::from_secs(10);
pub const REPLACEMENT_VALIDITY_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaceDevice {
    device_id: DeviceId,
    #[serde(rename = "validity_ms", with = "validate::millis")]
    validity: Duration,
}

impl ReplaceDevice {
    /// A replacement code for `device_id`, valid for `validity` (default an hour).
    pub fn new(device_id: DeviceId, validity: Option<Duration>) -> Self {
        ReplaceDevice {
            device_id,
            validity: whole_millis(validity.unwrap_or(REPLACEMENT_VALIDITY_DEFAULT)),
        }
    }
}

impl AdminCommand for ReplaceDevice {
    type Reply = CodeWithSecret;
    const NAME: &'static str = "replace_device";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<CodeWithSecret, EngineError> {
        if !(REPLACEMENT_VALIDITY_MIN..=REPLACEMENT_VALIDITY_MAX).contains(&self.validity) {
            return Err(EngineError::invalid(
                "validity_seconds",
                "from 10 seconds to 7 days",
            ));
        }
        let device = tx.own_device(self.device_id).await?;
        if device.license_expired_at(tx.now) {
            return Err(EngineError::conflict(
                "license_expired",
                "the device's license has expired: renew it first",
            ));
        }
        // A new code replaces the device's previous replacement code (the only single-use code
        // its license can have while the device holds it).
        let (new, code, replaced) =
            issue(tx, device.license_id, self.validity, Some(device.id)).await?;
        tx.audit_naming(
            "code.created",
            new.id.to_string(),
            json!({
                "kind": "single_use",
                "license_id": device.license_id,
                "expires_at": new.expires_at,
                "replaced": replaced,
                "replaces_device": device.id,
                "device_name": device.details.name,
            }),
            vec![device.id],
        )
        .await?;
        Ok(issued(&new, &code))
    }

    fn events(&self, _: &CodeWithSecret) -> Vec<OrgEvent> {
        vec![OrgEvent::Licenses]
    }
}
