//! Renews many licenses at once (by ids, by a fleet filter, or all; operator only): each
//! selected license that ends before `valid_until` now ends then. Renewing never shortens a
//! license: one that ends later, or never, is matched but left as it is. One audit entry with
//! the counts, naming the devices that hold a renewed license.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::selection::Selection;
use super::{AdminCommand, CommandTx, Principal, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::{LicenseId, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenewLicenses {
    pub valid_until: Timestamp,
    pub selection: Selection<LicenseId>,
}

/// How many of the organization's licenses matched, how many were renewed, and their end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RenewedLicenses {
    pub matched: u64,
    pub renewed: u64,
    pub valid_until: String,
}

impl AdminCommand for RenewLicenses {
    type Reply = RenewedLicenses;
    const NAME: &'static str = "renew_licenses";
    const FREES_LICENSES: bool = true;

    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        principal.require_operator("only the operator renews licenses")
    }

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<RenewedLicenses, EngineError> {
        validate::future_end(Some(self.valid_until), tx.now)?;
        let matched = self.selection.licenses(tx).await?;
        let renewed = if matched.is_empty() {
            Vec::new()
        } else {
            tx.store
                .extend_licenses(tx.org_id, &matched, self.valid_until)
                .await?
        };
        let mut details = self.selection.described("license_ids");
        details["valid_until"] = json!(self.valid_until);
        details["matched"] = json!(matched.len());
        details["renewed"] = json!(renewed.len());
        tx.audit_naming(
            "licenses.renewed",
            "licenses".to_string(),
            details,
            renewed.iter().filter_map(|(_, device)| *device).collect(),
        )
        .await?;
        Ok(RenewedLicenses {
            matched: matched.len() as u64,
            renewed: renewed.len() as u64,
            valid_until: self.valid_until.to_rfc3339(),
        })
    }

    fn events(&self, reply: &RenewedLicenses) -> Vec<OrgEvent> {
        if reply.renewed == 0 {
            return Vec::new();
        }
        vec![OrgEvent::Licenses]
    }
}
