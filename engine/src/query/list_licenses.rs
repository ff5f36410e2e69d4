//! The organization's licenses, by id, optionally of one status.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::{License, LicenseStatus, Page, PageRequest};

#[derive(Debug, Clone, Default)]
pub struct ListLicenses {
    pub status: Option<LicenseStatus>,
    pub page: PageRequest,
}

impl Query for ListLicenses {
    type Answer = Page<License>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Page<License>, EngineError> {
        Ok(reader
            .store
            .list_licenses(reader.org_id(), self.status, reader.now, &self.page)
            .await?)
    }
}
