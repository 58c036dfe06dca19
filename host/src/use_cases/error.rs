//! What a use case can refuse, in its own terms: no HTTP here. The API maps each case to a status
//! and the JSON error body; the plugin services map them to the guest's `host-error`.

use crate::domain::DomainError;
use crate::runtime::ConfigFieldError;
use crate::store::StoreError;

/// Why a use case did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed or out of range (`field` names it when there is one).
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    /// A connection config its plugin refused, field by field.
    #[error("{message}")]
    InvalidConfig {
        message: String,
        field_errors: Vec<ConfigFieldError>,
    },
    /// No usable credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    NotAllowed(String),
    /// Nothing with that id in the caller's workspace.
    #[error("{0}")]
    NotFound(String),
    /// Valid input that conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The thing existed but is no longer usable (an expired setup code).
    #[error("{0}")]
    Gone(String),
    /// Temporarily unable to take more of this; the caller should try again later.
    #[error("{0}")]
    Busy(String),
    /// A bug or an outage; details go to the log, not the caller.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// Invalid input in `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// Nothing of kind `what` (e.g. "task") named `id` in the workspace.
    pub fn not_found(what: &str, id: &str) -> Self {
        Error::NotFound(format!("no {what} `{id}` in this workspace"))
    }
}

impl From<DomainError> for Error {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { field, message } => Error::Invalid {
                field: Some(field.to_owned()),
                message,
            },
            DomainError::Conflict(message) => Error::Conflict(message),
        }
    }
}

impl crate::commit::UnitError for Error {
    fn is_retryable(&self) -> bool {
        matches!(self, Error::Internal(cause) if cause.downcast_ref::<StoreError>().is_some_and(StoreError::is_retryable))
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => Error::Conflict(message),
            other => Error::Internal(other.into()),
        }
    }
}
