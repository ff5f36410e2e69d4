//! One license of the organization, with its status now.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::LicenseId;
use crate::model::License;

#[derive(Debug, Clone, Copy)]
pub struct GetLicense {
    pub license_id: LicenseId,
}

impl Query for GetLicense {
    type Answer = License;

    async fn read(&self, reader: &Reader<'_>) -> Result<License, EngineError> {
        reader
            .store
            .license(reader.org_id(), self.license_id, reader.now)
            .await?
            .ok_or(EngineError::NotFound("license"))
    }
}
