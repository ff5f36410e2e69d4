//! Errors of the admin side. Each has a stable machine-readable code that the admin API puts in
//! its JSON errors; the text never carries internals (database messages are logged, not shown).

/// Why an admin command was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("missing, unknown or revoked bearer token")]
    Unauthorized,
    /// The principal may not do this (an organization key adding licenses, say).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The thing does not exist, or belongs to an organization the caller cannot see.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A configuration body the app could not read: every problem found, by line (warnings
    /// included); nothing was saved.
    #[error("{}", configuration_problems_summary(problems))]
    InvalidConfiguration {
        problems: Vec<configformat::Problem>,
    },
    /// The request is valid but the current state refuses it.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The organization holds as many of something as its quota allows; nothing changed.
    #[error("the organization has reached its quota of {limit} {quota}")]
    QuotaExceeded { quota: &'static str, limit: u64 },
    /// The database or the organization's actor cannot answer now; nothing changed.
    #[error("temporarily unavailable, retry later")]
    Unavailable { retry_after_ms: u64 },
    /// A bug or corrupt data; details are in the server log.
    #[error("internal error")]
    Internal,
}

impl EngineError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Unauthorized => "unauthorized",
            EngineError::Forbidden(_) => "forbidden",
            EngineError::NotFound(_) => "not_found",
            EngineError::Invalid { .. } => "invalid_request",
            EngineError::InvalidConfiguration { .. } => "invalid_configuration",
            EngineError::Conflict { code, .. } => code,
            EngineError::QuotaExceeded { .. } => "quota_exceeded",
            EngineError::Unavailable { .. } => "unavailable",
            EngineError::Internal => "internal",
        }
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        EngineError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        EngineError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn unavailable() -> Self {
        EngineError::Unavailable {
            retry_after_ms: 1000,
        }
    }
}

/// "body: 2 errors in the configuration; the first: line 3: ...".
fn configuration_problems_summary(problems: &[configformat::Problem]) -> String {
    let mut errors = problems
        .iter()
        .filter(|problem| problem.severity == configformat::Severity::Error);
    let first = errors.next();
    let count = usize::from(first.is_some()) + errors.count();
    match first {
        Some(first) => format!(
            "body: {count} error{} in the configuration; the first: {first}",
            if count == 1 { "" } else { "s" }
        ),
        None => "body: the configuration cannot be read".to_string(),
    }
}

impl From<crate::store::StoreError> for EngineError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                EngineError::unavailable()
            }
            StoreError::Conflict(detail) => {
                tracing::warn!(%detail, "write conflict");
                EngineError::unavailable()
            }
            StoreError::InvalidInput(field) => EngineError::Invalid {
                field,
                message: format!("not a valid {field}; use the value from the previous page"),
            },
            StoreError::Other(detail) => {
                tracing::error!(%detail, "database error");
                EngineError::Internal
            }
        }
    }
}
