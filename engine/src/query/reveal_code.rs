//! A reusable code with its secret, shown again to its organization's admins. Single-use codes
//! are not kept in a form that can be shown again.

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::CodeId;
use crate::model::{CodeKind, CodeWithSecret};

#[derive(Debug, Clone, Copy)]
pub struct RevealCode {
    pub code_id: CodeId,
}

impl Query for RevealCode {
    type Answer = CodeWithSecret;

    async fn read(&self, reader: &Reader<'_>) -> Result<CodeWithSecret, EngineError> {
        let code_id = self.code_id;
        let info = reader
            .store
            .code(reader.org_id(), code_id, reader.now)
            .await?
            .ok_or(EngineError::NotFound("code"))?;
        if info.kind != CodeKind::Reusable {
            return Err(EngineError::conflict(
                "code_not_shown_again",
                "single-use codes are shown only when created; create a new one",
            ));
        }
        let sealed = reader
            .store
            .sealed_code_secret(reader.org_id(), code_id)
            .await?
            .ok_or(EngineError::NotFound("code"))?;
        let secret = reader
            .cipher()
            .open(code_id.0.as_bytes(), &sealed)
            .map_err(|_| {
                tracing::error!(%code_id, "a reusable code does not open with the server key");
                EngineError::Internal
            })?;
        let code = String::from_utf8(secret).map_err(|_| EngineError::Internal)?;
        Ok(CodeWithSecret { info, code })
    }
}
