//! How many of the organization's licenses are free, reserved, assigned and expired.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::LicenseSummary;

#[derive(Debug, Clone, Copy, Default)]
pub struct GetLicenseSummary;

impl Query for GetLicenseSummary {
    type Answer = LicenseSummary;

    async fn read(&self, reader: &Reader<'_>) -> Result<LicenseSummary, EngineError> {
        Ok(reader
            .store
            .license_summary(reader.org_id(), reader.now)
            .await?)
    }
}
