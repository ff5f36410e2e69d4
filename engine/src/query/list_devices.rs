//! The organization's paired devices, filtered, sorted and paged by the store, with the number
//! that match.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::{
    CountedPage, Device, FleetFilter, FleetQuery, FleetRows, FleetSort, PageRequest,
};

#[derive(Debug, Clone, Default)]
pub struct ListDevices {
    pub filter: FleetFilter,
    pub sort: FleetSort,
    pub descending: bool,
    pub page: PageRequest,
}

impl Query for ListDevices {
    type Answer = CountedPage<Device>;

    async fn read(&self, reader: &Reader<'_>) -> Result<CountedPage<Device>, EngineError> {
        let query = FleetQuery {
            rows: FleetRows::Devices,
            filter: self.filter.clone(),
            sort: self.sort,
            descending: self.descending,
            page: self.page.clone(),
            export: false,
        };
        let page = reader
            .store
            .fleet(reader.org_id(), &query, reader.now)
            .await?;
        Ok(CountedPage {
            items: page
                .items
                .into_iter()
                .filter_map(|row| row.device)
                .collect(),
            next_cursor: page.next_cursor,
            total: page.total,
            total_exact: page.total_exact,
        })
    }
}
