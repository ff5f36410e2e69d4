//! The organization itself.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::Organization;

#[derive(Debug, Clone, Copy, Default)]
pub struct GetOrganization;

impl Query for GetOrganization {
    type Answer = Organization;

    async fn read(&self, reader: &Reader<'_>) -> Result<Organization, EngineError> {
        Ok(reader.organization.clone())
    }
}
