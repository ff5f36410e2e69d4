//! The organization's keys (never their secrets).

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::OrgKeyInfo;

#[derive(Debug, Clone, Copy, Default)]
pub struct ListKeys;

impl Query for ListKeys {
    type Answer = Vec<OrgKeyInfo>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Vec<OrgKeyInfo>, EngineError> {
        Ok(reader.store.list_org_keys(reader.org_id()).await?)
    }
}
