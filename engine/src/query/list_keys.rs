//! The organization's keys (never their secrets).

use super::{Query, Reader};
use crate::error::EngineError;
use crate::model::OrgKeyInfo;
use crate::usage;

#[derive(Debug, Clone, Copy, Default)]
pub struct ListKeys;

impl Query for ListKeys {
    type Answer = Vec<OrgKeyInfo>;

    async fn read(&self, reader: &Reader<'_>) -> Result<Vec<OrgKeyInfo>, EngineError> {
        let mut keys = reader.store.list_org_keys(reader.org_id()).await?;
        for key in &mut keys {
            key.last_used_at = reader
                .usage
                .last_used(usage::org_key(key.id), key.last_used_at);
        }
        Ok(keys)
    }
}
