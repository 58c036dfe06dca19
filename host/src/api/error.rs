//! The API's one error type. Client errors carry a message that says what to fix and become
//! `{"error": code, "message": …}` with a 4xx status; internal errors are logged with their cause
//! and answered with a generic 500. Use cases refuse with their own [`crate::use_cases::Error`],
//! mapped here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::DomainError;
use crate::runtime::ConfigFieldError;
use crate::store::StoreError;

/// What went wrong, from the caller's point of view.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the input is malformed or out of range.
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    /// 400: a connection config was refused by its plugin, field by field.
    #[error("{message}")]
    InvalidConfig {
        message: String,
        field_errors: Vec<ConfigFieldError>,
    },
    /// 401: no usable credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: credentials are fine but do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing with that id in the caller's workspace.
    #[error("{0}")]
    NotFound(String),
    /// 409: valid input that conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 410: the thing existed but is no longer usable (an expired setup code).
    #[error("{0}")]
    Gone(String),
    /// 429: the token made too many requests; retry after the given seconds.
    #[error("too many requests with this token; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 429: the caller holds as many of something as it may (e.g. open session streams).
    #[error("{message}")]
    TooMany { message: String, retry_after_secs: u64 },
    /// 413: the request body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 408: the request did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    /// 415: the request body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: temporarily unable to take more of this; try again later.
    #[error("{0}")]
    Busy(String),
    /// 500: a bug or an outage; details go to the log, not the caller.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A 400 about `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A 404 for a `what` (e.g. "task") named `id`.
    pub fn not_found(what: &str, id: &str) -> Self {
        AppError::NotFound(format!("no {what} `{id}` in this workspace"))
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Invalid { .. } | AppError::InvalidConfig { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Gone(_) => StatusCode::GONE,
            AppError::RateLimited { .. } | AppError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid { .. } => "invalid_request",
            AppError::InvalidConfig { .. } => "invalid_config",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::Gone(_) => "gone",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::TooMany { .. } => "too_many",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::Timeout(_) => "timeout",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::Busy(_) => "busy",
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<DomainError> for AppError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { field, message } => AppError::Invalid {
                field: Some(field.to_owned()),
                message,
            },
            DomainError::Conflict(message) => AppError::Conflict(message),
        }
    }
}

impl From<crate::use_cases::Error> for AppError {
    fn from(error: crate::use_cases::Error) -> Self {
        use crate::use_cases::Error;
        match error {
            Error::Invalid { field, message } => AppError::Invalid { field, message },
            Error::InvalidConfig { message, field_errors } => AppError::InvalidConfig { message, field_errors },
            Error::Unauthenticated(m) => AppError::Unauthorized(m),
            Error::NotAllowed(m) => AppError::Forbidden(m),
            Error::NotFound(m) => AppError::NotFound(m),
            Error::Conflict(m) => AppError::Conflict(m),
            Error::Gone(m) => AppError::Gone(m),
            Error::Busy(m) => AppError::Busy(m),
            Error::Internal(cause) => AppError::Internal(cause),
        }
    }
}

impl From<crate::rate_limit::Limited> for AppError {
    fn from(limited: crate::rate_limit::Limited) -> Self {
        AppError::RateLimited {
            retry_after_secs: limited.retry_after_secs,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => AppError::Conflict(message),
            other => AppError::Internal(other.into()),
        }
    }
}

/// The JSON error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_request`, `not_found`.
    pub error: &'static str,
    /// What went wrong and how to fix it.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Per-field problems of a connection config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_errors: Option<Vec<ConfigFieldError>>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, field, field_errors) = match &self {
            AppError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (
                    "something went wrong on our side; it has been logged".to_owned(),
                    None,
                    None,
                )
            }
            AppError::Invalid { field, message } => (message.clone(), field.clone(), None),
            AppError::InvalidConfig { message, field_errors } => (message.clone(), None, Some(field_errors.clone())),
            other => (other.to_string(), None, None),
        };
        let body = ErrorBody {
            error: self.code(),
            message,
            field,
            field_errors,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let AppError::RateLimited { retry_after_secs } | AppError::TooMany { retry_after_secs, .. } = self
            && let Ok(value) = axum::http::HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}
