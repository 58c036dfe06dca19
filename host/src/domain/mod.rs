//! Domain rules: identities, tokens, tasks, sessions and their activities. Pure logic — no SQL,
//! no HTTP — so every rule is unit-testable and shared by the API, the workers and the plugin
//! runtime.

pub mod audit;
pub mod comments;
pub mod connection_schema;
pub mod ids;
pub mod inbound;
pub mod jobs;
pub mod model;
pub mod session_tokens;
pub mod sessions;
pub mod tasks;
pub mod time;
pub mod tokens;
pub mod users;
pub mod webhook_signing;

/// A rule the input broke. The message tells the caller what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input is malformed or out of range.
    #[error("{message}")]
    Invalid {
        /// The field at fault, as the API names it (e.g. `activityType`).
        field: &'static str,
        message: String,
    },
    /// The input is well-formed but conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
}

impl DomainError {
    /// An [`DomainError::Invalid`] for `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Checks that `value` (trimmed) has between `min` and `max` characters and returns it trimmed.
pub fn bounded_text(field: &'static str, value: &str, min: usize, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars < min {
        return Err(DomainError::invalid(
            field,
            if min == 1 {
                format!("`{field}` must not be empty")
            } else {
                format!("`{field}` needs at least {min} characters")
            },
        ));
    }
    if chars > max {
        return Err(DomainError::invalid(
            field,
            format!("`{field}` is too long: at most {max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Refuses text the database cannot store (a NUL character: PostgreSQL refuses it in text, so it
/// is refused on every backend alike).
pub fn check_storable(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.contains('\0') {
        return Err(DomainError::invalid(
            field,
            format!("`{field}` contains a NUL character (\\u0000), which cannot be stored; remove it"),
        ));
    }
    Ok(())
}
