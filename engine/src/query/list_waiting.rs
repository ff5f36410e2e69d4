//! The organization's line of devices waiting for a license, in the order they are served.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::{Page, PageRequest, WaitingDevice};

#[derive(Debug, Clone)]
pub struct ListWaiting {
    pub page: PageRequest,
}

impl Query for ListWaiting {
    type Answer = Page<WaitingDevice>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Page<WaitingDevice>, EngineError> {
        Ok(reader
            .store
            .list_waiting(reader.org_id(), &self.page)
            .await?)
    }
}
