//! The organization's inactive-device release setting.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::InactiveRelease;

#[derive(Debug, Clone, Copy, Default)]
pub struct GetInactiveRelease;

impl Query for GetInactiveRelease {
    type Answer = InactiveRelease;

    async fn read(&self, reader: &Reader<'_>) -> Result<InactiveRelease, EngineError> {
        Ok(InactiveRelease {
            after_days: reader.organization.release_inactive_after_days,
        })
    }
}
