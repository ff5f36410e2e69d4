//! The organization's codes (never their secrets), optionally of one kind.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::{CodeInfo, CodeKind, Page, PageRequest};

#[derive(Debug, Clone, Default)]
pub struct ListCodes {
    pub kind: Option<CodeKind>,
    pub page: PageRequest,
}

impl Query for ListCodes {
    type Answer = Page<CodeInfo>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Page<CodeInfo>, EngineError> {
        Ok(reader
            .store
            .list_codes(reader.org_id(), self.kind, reader.now, &self.page)
            .await?)
    }
}
