//! The organization's licenses, each with the device that holds it: the rows of the portal's
//! Devices section. Filtered, sorted and paged by the store, with the number that match.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::{
    CountedPage, FleetFilter, FleetQuery, FleetRows, FleetSort, LicenseWithDevice, PageRequest,
};

#[derive(Debug, Clone, Default)]
pub struct ListLicenses {
    pub filter: FleetFilter,
    pub sort: FleetSort,
    pub descending: bool,
    pub page: PageRequest,
}

impl Query for ListLicenses {
    type Answer = CountedPage<LicenseWithDevice>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Self::Answer, EngineError> {
        let query = FleetQuery {
            rows: FleetRows::Licenses,
            filter: self.filter.clone(),
            sort: self.sort,
            descending: self.descending,
            page: self.page.clone(),
            export: false,
        };
        Ok(reader
            .store
            .fleet(reader.org_id(), &query, reader.now)
            .await?)
    }
}
