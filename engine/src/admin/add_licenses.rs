//! Adds licenses to an organization (operator only: the portal backend calls it after a
//! purchase).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminCommand, CommandTx, Principal, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::{LicenseId, OrgId, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddLicenses {
    pub count: u32,
    pub valid_until: Option<Timestamp>,
}

/// Licenses just added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AddedLicenses {
    pub organization_id: OrgId,
    pub license_ids: Vec<LicenseId>,
    pub valid_until: Option<Timestamp>,
}

impl AdminCommand for AddLicenses {
    type Reply = AddedLicenses;
    const NAME: &'static str = "add_licenses";
    const FREES_LICENSES: bool = true;

    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        principal.require_operator("only the operator adds licenses")
    }

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<AddedLicenses, EngineError> {
        if self.count == 0 || self.count > validate::MAX_LICENSES_PER_COMMAND {
            return Err(EngineError::invalid(
                "count",
                format!("from 1 to {}", validate::MAX_LICENSES_PER_COMMAND),
            ));
        }
        validate::future_end(self.valid_until, tx.now)?;
        let ids: Vec<LicenseId> = (0..self.count).map(|_| LicenseId::generate()).collect();
        tx.store
            .insert_licenses(tx.org_id, &ids, tx.now, self.valid_until)
            .await?;
        tx.audit(
            "licenses.added",
            tx.org_id.to_string(),
            json!({ "count": self.count, "valid_until": self.valid_until }),
        )
        .await?;
        Ok(AddedLicenses {
            organization_id: tx.org_id,
            license_ids: ids,
            valid_until: self.valid_until,
        })
    }

    fn events(&self, _: &AddedLicenses) -> Vec<OrgEvent> {
        vec![OrgEvent::Licenses]
    }
}
