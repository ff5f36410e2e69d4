//! Creates an organization (operator only).

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx, Principal, idempotency, validate};
use crate::error::EngineError;
use crate::events::OrgEvent;
use crate::ids::OrgId;
use crate::model::Organization;

/// Creates an organization. It runs in a transaction of its own rather than in an
/// organization's actor (see `Engine::create_organization`): no actor exists for an
/// organization that does not exist yet, and nothing else can touch its fresh id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateOrganization {
    pub name: String,
}

impl AdminCommand for CreateOrganization {
    type Reply = Organization;
    const NAME: &'static str = "create_organization";

    fn authorize(&self, principal: &Principal) -> Result<(), EngineError> {
        principal.require_operator("only the operator creates organizations")
    }

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Organization, EngineError> {
        let name = validate::name("name", &self.name, validate::MAX_ORGANIZATION_NAME_BYTES)?;
        let organization = Organization {
            id: tx.org_id,
            name,
            created_at: tx.now,
            release_inactive_after_days: None,
        };
        tx.store.insert_organization(&organization).await?;
        tx.audit(
            "organization.created",
            organization.id.to_string(),
            json!({ "name": organization.name }),
        )
        .await?;
        Ok(organization)
    }

    fn events(&self, _: &Organization) -> Vec<OrgEvent> {
        Vec::new()
    }

    /// The form this command has always hashed: `["create_organization", <name>]`.
    fn fingerprint(&self) -> [u8; 32] {
        idempotency::fingerprint_of(&(Self::NAME, self.name.trim()))
    }

    /// A caller's keys for new organizations live in one scope, whatever id each gets.
    fn idempotency_scope(principal: &Principal, _: OrgId) -> String {
        format!("{}@organizations", principal.audit_name())
    }
}
