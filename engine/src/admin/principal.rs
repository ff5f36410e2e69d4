//! Who is asking.

use crate::error::EngineError;
use crate::ids::{KeyId, OrgId};

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// Holds the operator token: manages everything.
    Operator,
    /// Holds an organization key: manages its own organization only.
    OrgKey { org_id: OrgId, key_id: KeyId },
    /// The server itself (expiry sweep, demo seeding).
    System,
}

impl Principal {
    /// How the audit log names this principal.
    pub fn audit_name(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::OrgKey { key_id, .. } => format!("key:{key_id}"),
            Principal::System => "system".into(),
        }
    }

    /// Organization keys see only their own organization; to them, any other does not exist.
    pub fn require_org(&self, org_id: OrgId) -> Result<(), EngineError> {
        match self {
            Principal::Operator | Principal::System => Ok(()),
            Principal::OrgKey { org_id: own, .. } if *own == org_id => Ok(()),
            Principal::OrgKey { .. } => Err(EngineError::NotFound("organization")),
        }
    }

    pub fn require_operator(&self, what: &'static str) -> Result<(), EngineError> {
        match self {
            Principal::Operator | Principal::System => Ok(()),
            Principal::OrgKey { .. } => Err(EngineError::Forbidden(what)),
        }
    }

    /// Only the server itself: commands that no admin may send (the expiry sweep's).
    pub fn require_system(&self, what: &'static str) -> Result<(), EngineError> {
        match self {
            Principal::System => Ok(()),
            Principal::Operator | Principal::OrgKey { .. } => Err(EngineError::Forbidden(what)),
        }
    }
}
