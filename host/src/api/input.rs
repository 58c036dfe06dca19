//! Rules every request meets before a handler sees it, the same on both databases: its path and
//! query decode to UTF-8 text, and no text in them or in a JSON body holds a NUL character
//! (`\u0000`), which PostgreSQL cannot store in text (SQLite would, so the rule is applied
//! everywhere and behaviour does not depend on the backend). Each refusal is a 400 naming the
//! field to fix.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::AppError;

use super::MAX_BODY_BYTES;

/// Why text cannot be accepted, for a field the caller can find.
fn nul_in(field: &str) -> AppError {
    AppError::invalid(
        field,
        format!("`{field}` contains a NUL character (\\u0000), which cannot be stored; remove it"),
    )
}

/// Checks the path, the query and a JSON body; passes the request on unchanged when they are fine.
pub async fn check_text(request: Request, next: Next) -> Response {
    if let Err(error) = check_uri(request.uri()) {
        return error.into_response();
    }
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.contains("+json"));
    if !is_json {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => return body_error(error).into_response(),
    };
    if let Err(error) = check_json(&bytes) {
        return error.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// A body that could not be read: too large, or it stopped arriving.
fn body_error(error: axum::Error) -> AppError {
    let text = format!("{error:#}");
    let cause = error.into_inner();
    let stalled = std::iter::successors(Some(cause.as_ref() as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .any(|e| e.is::<tower_http::timeout::TimeoutError>());
    if stalled {
        AppError::Timeout("the request body stopped arriving; send it whole, without long pauses".into())
    } else if text.contains("length limit") {
        AppError::PayloadTooLarge(format!("the request body is too large: at most {MAX_BODY_BYTES} bytes"))
    } else {
        AppError::Invalid {
            field: None,
            message: format!("the request body could not be read: {text}"),
        }
    }
}

fn check_uri(uri: &axum::http::Uri) -> Result<(), AppError> {
    let path = percent_encoding::percent_decode_str(uri.path())
        .decode_utf8()
        .map_err(|_| {
            AppError::invalid(
                "path",
                "the path is not valid UTF-8 once percent-decoded; check the ids in it",
            )
        })?;
    if path.contains('\0') {
        return Err(nul_in("path"));
    }
    if let Some(query) = uri.query() {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name.contains('\0') {
                return Err(nul_in("query"));
            }
            if value.contains('\0') {
                return Err(nul_in(&name));
            }
        }
    }
    Ok(())
}

/// A NUL can only reach a JSON body as the escape `\u0000`; bodies without it pass unparsed.
fn check_json(bytes: &Bytes) -> Result<(), AppError> {
    let might_hold_nul = bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0'));
    if !might_hold_nul {
        return Ok(());
    }
    // Malformed JSON is the handler's to report; only well-formed bodies are walked.
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    match nul_path(&value, "", true) {
        Some(field) => Err(nul_in(if field.is_empty() { "body" } else { &field })),
        None => Ok(()),
    }
}

/// The path (`connection.config.guidance`, `items[2]`) of the first string holding a NUL.
/// A top-level `raw` is exempt: it is kept as serialized JSON, where the NUL stays escaped.
fn nul_path(value: &Value, at: &str, top: bool) -> Option<String> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    match value {
        Value::String(text) => text.contains('\0').then(|| at.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, &format!("{at}[{i}]"), false)),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(join(&key.replace('\0', "\\u0000")));
            }
            if top && key == "raw" {
                return None;
            }
            nul_path(item, &join(key), false)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> Option<String> {
        match check_json(&Bytes::from(body.to_owned())) {
            Ok(()) => None,
            Err(AppError::Invalid { field, .. }) => field,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn nul_in_any_string_names_its_field() {
        assert_eq!(field_of(r#"{"title":"a\u0000b"}"#).as_deref(), Some("title"));
        assert_eq!(
            field_of(r#"{"connection":{"config":{"guidance":"\u0000"}}}"#).as_deref(),
            Some("connection.config.guidance")
        );
        assert_eq!(
            field_of(r#"{"scopes":["read","\u0000"]}"#).as_deref(),
            Some("scopes[1]")
        );
        assert_eq!(field_of(r#""\u0000""#).as_deref(), Some("body"));
    }

    #[test]
    fn text_without_nul_passes() {
        assert_eq!(
            field_of(r#"{"title":"a\\u0000b"}"#),
            None,
            "an escaped backslash is text"
        );
        assert_eq!(field_of(r#"{"title":"plain"}"#), None);
        assert_eq!(field_of(r#"{"raw":{"x":"\u0000"}}"#), None, "raw stays serialized");
        assert_eq!(field_of(r#"{"a":{"raw":"\u0000"}}"#).as_deref(), Some("a.raw"));
    }

    #[test]
    fn paths_and_queries_are_checked_decoded() {
        let check = |uri: &str| check_uri(&uri.parse().unwrap()).err().map(|e| format!("{e}"));
        assert!(check("/api/public/tasks/%00").unwrap().contains("`path`"));
        assert!(check("/api/public/tasks/%ff%fe").unwrap().contains("UTF-8"));
        assert!(check("/api/public/audit?action=a%00b").unwrap().contains("`action`"));
        assert_eq!(check("/api/public/tasks/12?page=2"), None);
    }
}
