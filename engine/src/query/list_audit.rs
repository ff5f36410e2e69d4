//! The organization's audit log, newest first.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::{AuditEntry, Page, PageRequest};

#[derive(Debug, Clone, Default)]
pub struct ListAudit {
    pub page: PageRequest,
}

impl Query for ListAudit {
    type Answer = Page<AuditEntry>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Page<AuditEntry>, EngineError> {
        Ok(reader
            .store
            .list_audit(Some(reader.org_id()), &self.page)
            .await?)
    }
}
