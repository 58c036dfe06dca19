//! Extractors: JSON bodies and query strings whose rejections use the API's error shape, and the
//! bearer-token extractors that state in a handler's signature who may call it.

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::error::AppError;
use crate::app::SharedApp;
use crate::domain::tokens::Scope;
use crate::use_cases::caller::{self, Caller, RequestMeta};

/// A JSON request body (rejections answer with the API's JSON error) or response body.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                AppError::UnsupportedMediaType("send the body as JSON with `Content-Type: application/json`".into())
            }
            JsonRejection::BytesRejection(_) => AppError::PayloadTooLarge("the request body is too large".into()),
            JsonRejection::JsonSyntaxError(e) => AppError::Invalid {
                field: None,
                message: format!("the body is not valid JSON: {}", e.body_text()),
            },
            JsonRejection::JsonDataError(e) => AppError::Invalid {
                field: None,
                message: e.body_text(),
            },
            other => AppError::Invalid {
                field: None,
                message: other.body_text(),
            },
        }
    }
}

/// A query string (rejections answer with the API's JSON error).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::Invalid {
            field: None,
            message: rejection.body_text(),
        }
    }
}

impl FromRequestParts<SharedApp> for RequestMeta {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _app: &SharedApp) -> Result<Self, AppError> {
        let text = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(512).collect())
        };
        Ok(RequestMeta {
            request_id: text("x-request-id"),
            ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
            user_agent: text("user-agent"),
        })
    }
}

impl FromRequestParts<SharedApp> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, AppError> {
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        app.failed_auth.check(address)?;
        let outcome = authenticate_parts(parts, app).await;
        if let Err(AppError::Unauthorized(_)) = &outcome {
            app.failed_auth.failed(address)?;
        }
        let mut caller = outcome?;
        app.rate_limits.check(&caller.token.id)?;
        // A bot may say which of its agent sessions a call is for; the audit trail records it.
        if let Some(session) = parts.headers.get(AGENT_RUN_HEADER) {
            let id = session
                .to_str()
                .map_err(|_| AppError::invalid(AGENT_RUN_HEADER, "must be an agent session id (ses_…)"))?;
            let session = super::agent_sessions::find_own(app, &caller, id).await?.id;
            caller.bind_session(session)?;
        }
        Ok(caller)
    }
}

/// The header in which a bot names the agent session a call is for (`ses_…`): its own, or the
/// call is refused (403; 404 for no such session).
pub const AGENT_RUN_HEADER: &str = "leadtime-agent-run-id";

/// The caller the request's bearer token belongs to.
async fn authenticate_parts(parts: &mut Parts, app: &SharedApp) -> Result<Caller, AppError> {
    {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| AppError::Unauthorized("send your API token as `Authorization: Bearer <token>`".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| AppError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?
            .to_owned();
        let meta = RequestMeta::from_request_parts(parts, app).await?;
        Ok(caller::authenticate(app, &token, meta).await?)
    }
}

macro_rules! scoped_caller {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl FromRequestParts<SharedApp> for $name {
            type Rejection = AppError;

            async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, AppError> {
                let caller = Caller::from_request_parts(parts, app).await?;
                caller.require($scope)?;
                Ok($name(caller))
            }
        }
    };
}

scoped_caller!(
    /// A caller whose token has the `read` scope.
    Reader, Scope::Read);
scoped_caller!(
    /// A caller whose token has the `write` scope.
    Writer, Scope::Write);
scoped_caller!(
    /// A workspace admin (a person) whose token has the `admin` scope.
    Admin, Scope::Admin);

/// A JSON body that may be left out entirely (an empty body means `T::default()`), for POSTs whose
/// fields are all optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonOrEmpty<T>(pub T);

impl<T, S> FromRequest<S> for JsonOrEmpty<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        let json_typed = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json") || t.contains("+json"));
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| AppError::PayloadTooLarge("the request body is too large".into()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        if !json_typed {
            return Err(AppError::UnsupportedMediaType(
                "send the body as JSON with `Content-Type: application/json`".into(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonOrEmpty)
            .map_err(|e| AppError::Invalid {
                field: None,
                message: format!("the body does not fit this request: {e}"),
            })
    }
}

/// An optional whole number from a JSON body, written either way JSON allows (`60` or `60.0`: JSON
/// Schema's `integer` admits both); fractions, negatives and numbers beyond `T` are refused.
/// Use with `#[serde(default, deserialize_with = "whole_number")]`.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number in range, found {number}")))
}

/// An optional ISO-8601 time from a query or body field, as milliseconds; a 400 naming the field
/// when it does not parse.
pub fn iso_time_param(field: &str, value: Option<&str>) -> Result<Option<i64>, AppError> {
    value
        .map(|text| {
            crate::domain::time::Timestamp::parse_iso(text)
                .map(crate::domain::time::Timestamp::millis)
                .ok_or_else(|| {
                    AppError::invalid(
                        field,
                        format!("`{field}` must be an ISO-8601 time like 2026-05-23T12:00:00Z"),
                    )
                })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::whole_number")]
        n: Option<u32>,
    }

    fn n(json: &str) -> Option<Option<u32>> {
        serde_json::from_str::<Body>(json).ok().map(|body| body.n)
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        assert_eq!(n("{}"), Some(None));
        assert_eq!(n(r#"{"n": null}"#), Some(None));
        assert_eq!(n(r#"{"n": 60}"#), Some(Some(60)));
        assert_eq!(n(r#"{"n": 60.0}"#), Some(Some(60)));
        assert_eq!(n(r#"{"n": 6e1}"#), Some(Some(60)));
        for refused in ["60.5", "-1", "-1.0", "4294967296", "\"60\"", "true"] {
            assert_eq!(n(&format!(r#"{{"n": {refused}}}"#)), None, "{refused}");
        }
    }
}
