//! One code of the organization (without its secret), with its status now.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::CodeId;
use crate::model::CodeInfo;

#[derive(Debug, Clone, Copy)]
pub struct GetCode {
    pub code_id: CodeId,
}

impl Query for GetCode {
    type Answer = CodeInfo;

    async fn read(&self, reader: &Reader<'_>) -> Result<CodeInfo, EngineError> {
        reader
            .store
            .code(reader.org_id(), self.code_id, reader.now)
            .await?
            .ok_or(EngineError::NotFound("code"))
    }
}
