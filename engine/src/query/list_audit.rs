//! The organization's audit log, newest first, filtered by action, device and time.

use super::{Query, Reader};
use crate::audit;
use crate::error::EngineError;
use crate::model::{AuditEntry, AuditFilter, Page, PageRequest};

#[derive(Debug, Clone, Default)]
pub struct ListAudit {
    /// Which entries; the default reads them all.
    pub filter: AuditFilter,
    pub page: PageRequest,
}

impl Query for ListAudit {
    type Answer = Page<AuditEntry>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Page<AuditEntry>, EngineError> {
        let filter = audit::checked_filter(&self.filter)?;
        // The organization is always given: a filter narrows its log, never widens it.
        Ok(reader
            .store
            .list_audit(Some(reader.org_id()), &filter, &self.page)
            .await?)
    }
}
