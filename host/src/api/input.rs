//! Rules every request meets before a handler sees it, the same on both databases: its path decodes
//! to UTF-8 text, a JSON body is what its operation takes (an object where an object is expected),
//! and no text the API stores holds a NUL character (`\u0000`), which PostgreSQL cannot store in
//! text (SQLite would, so the rule applies everywhere and behaviour does not depend on the
//! backend). Each refusal is a 400 naming the field to fix.
//!
//! Which fields hold stored text is read from the OpenAPI document: every string the operation's
//! request schema declares (its path, its declared query parameters and body properties, nested
//! ones included). Free-form JSON (a connection config, an activity's `raw`) is kept serialized,
//! where a NUL stays escaped, and fields the operation does not declare are ignored by it, so
//! neither is checked. The document says the same: [`declare_storable_text`] gives every such
//! string the pattern `^[^\u0000]*$`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::error::AppError;

use super::{MAX_BODY_BYTES, PUBLIC_BASE};

/// The pattern of text that can be stored: anything but NUL.
pub const STORABLE_TEXT: &str = "^[^\\u0000]*$";

/// The served OpenAPI document, as the input rules read it.
#[derive(Debug, Clone)]
pub struct InputRules {
    document: Arc<Value>,
}

impl InputRules {
    pub fn new(document: Arc<Value>) -> Self {
        Self { document }
    }

    /// The operation `method` on route `matched` (`/api/public/tasks/{identifier}`).
    fn operation(&self, method: &str, matched: &str) -> Option<&Value> {
        let relative = matched.strip_prefix(PUBLIC_BASE).unwrap_or(matched);
        self.document
            .get("paths")?
            .get(relative)?
            .get(method.to_ascii_lowercase())
    }

    /// `schema` with its `$ref` followed (within the document).
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut current = schema;
        for _ in 0..8 {
            let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(name) = reference.strip_prefix("#/components/schemas/") else {
                break;
            };
            match self.document.pointer(&format!("/components/schemas/{name}")) {
                Some(target) => current = target,
                None => break,
            }
        }
        current
    }
}

fn nul_in(field: &str) -> AppError {
    AppError::invalid(
        field,
        format!("`{field}` contains a NUL character (\\u0000), which cannot be stored; remove it"),
    )
}

/// Checks the path, the declared query parameters and a JSON body against the operation's
/// request schema; passes the request on unchanged when they are fine.
pub async fn check_input(request: Request, next: Next) -> Response {
    if let Err(error) = check_path(request.uri()) {
        return error.into_response();
    }
    // The rules share the document (an `Arc`), so the operation is borrowed from this handle,
    // not copied out of the document for every request.
    let rules = request.extensions().get::<InputRules>().cloned();
    let matched = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let operation = rules.as_ref().zip(matched.as_deref()).and_then(|(rules, matched)| {
        rules
            .operation(request.method().as_str(), matched)
            .map(|op| (rules, op))
    });
    let Some((rules, operation)) = operation else {
        return next.run(request).await;
    };
    if let Err(error) = check_query(request.uri(), operation) {
        return error.into_response();
    }
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.contains("+json"));
    let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema") else {
        return next.run(request).await;
    };
    if !is_json {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => return body_error(error).into_response(),
    };
    if let Err(error) = check_body(rules, schema, &bytes) {
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

fn check_path(uri: &axum::http::Uri) -> Result<(), AppError> {
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
    Ok(())
}

/// The operation's declared query parameters must not hold a NUL.
fn check_query(uri: &axum::http::Uri, operation: &Value) -> Result<(), AppError> {
    let Some(query) = uri.query() else { return Ok(()) };
    let declared: Vec<&str> = operation
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
        .filter_map(|p| p.get("name").and_then(Value::as_str))
        .collect();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if declared.contains(&name.as_ref()) && value.contains('\0') {
            return Err(nul_in(&name));
        }
    }
    Ok(())
}

/// A NUL can only reach a JSON body as the escape `\u0000`; bodies without one are only checked
/// for their shape.
fn check_body(rules: &InputRules, schema: &Value, bytes: &Bytes) -> Result<(), AppError> {
    // Malformed JSON is the handler's to report; only well-formed bodies are checked.
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    let schema = rules.resolve(schema);
    if is_object_schema(schema) && !value.is_object() {
        return Err(AppError::Invalid {
            field: None,
            message: "the body must be a JSON object".into(),
        });
    }
    let might_hold_nul = bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0'));
    if !might_hold_nul {
        return Ok(());
    }
    match nul_path(rules, &value, schema, "") {
        Some(field) => Err(nul_in(if field.is_empty() { "body" } else { &field })),
        None => Ok(()),
    }
}

fn is_object_schema(schema: &Value) -> bool {
    schema.get("properties").is_some()
}

fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The path (`connection.type`, `scopes[1]`) of the first declared string holding a NUL.
fn nul_path(rules: &InputRules, value: &Value, schema: &Value, at: &str) -> Option<String> {
    let schema = rules.resolve(schema);
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(variants) = schema.get(combinator).and_then(Value::as_array)
            && let Some(found) = variants.iter().find_map(|v| nul_path(rules, value, v, at))
        {
            return Some(found);
        }
    }
    match value {
        Value::String(text) if types_of(schema).contains(&"string") => text.contains('\0').then(|| at.to_owned()),
        Value::Array(items) => {
            let item_schema = schema.get("items")?;
            items
                .iter()
                .enumerate()
                .find_map(|(i, item)| nul_path(rules, item, item_schema, &format!("{at}[{i}]")))
        }
        Value::Object(fields) => {
            let properties = schema.get("properties")?.as_object()?;
            properties.iter().find_map(|(name, property)| {
                let item = fields.get(name)?;
                let path = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                nul_path(rules, item, property, &path)
            })
        }
        _ => None,
    }
}

/// Gives every string the document declares for requests and answers the pattern of storable text
/// (unless it already has a pattern, an enum or a format), so clients generated from the document
/// never send a NUL the API refuses.
pub fn declare_storable_text(document: &mut Value) {
    fn visit(schema: &mut Value) {
        match schema {
            Value::Object(map) => {
                let plain_string = match map.get("type") {
                    Some(Value::String(t)) => t == "string",
                    Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                    _ => false,
                };
                if plain_string
                    && !["pattern", "enum", "format", "const"]
                        .iter()
                        .any(|k| map.contains_key(*k))
                {
                    map.insert("pattern".into(), Value::String(STORABLE_TEXT.into()));
                }
                for (key, child) in map.iter_mut() {
                    // Examples and extensions are data, not schemas.
                    if key != "example" && key != "examples" && !key.starts_with("x-") {
                        visit(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(visit),
            _ => {}
        }
    }
    if let Some(schemas) = document.pointer_mut("/components/schemas") {
        visit(schemas);
    }
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for operation in item.values_mut() {
                if let Some(parameters) = operation.get_mut("parameters") {
                    visit(parameters);
                }
                if let Some(body) = operation.get_mut("requestBody") {
                    visit(body);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> InputRules {
        let mut document = json!({
            "paths": {},
            "components": {"schemas": {
                "CreateBot": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "connection": {"$ref": "#/components/schemas/Connection"},
                    "scopes": {"type": "array", "items": {"type": "string"}},
                    "avatarUrl": {"oneOf": [{"type": "null"}, {"type": "string"}]},
                    "raw": {"type": "object"}
                }},
                "Connection": {"type": "object", "properties": {
                    "type": {"type": "string"},
                    "config": {"type": "object"}
                }}
            }}
        });
        declare_storable_text(&mut document);
        InputRules::new(Arc::new(document))
    }

    fn field_of(body: &str) -> Option<String> {
        let rules = rules();
        let schema = json!({"$ref": "#/components/schemas/CreateBot"});
        match check_body(&rules, &schema, &Bytes::from(body.to_owned())) {
            Ok(()) => None,
            Err(AppError::Invalid { field, message }) => Some(field.unwrap_or(message)),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn nul_in_a_declared_string_names_its_field() {
        assert_eq!(field_of(r#"{"name":"a\u0000b"}"#).as_deref(), Some("name"));
        assert_eq!(
            field_of(r#"{"connection":{"type":"\u0000"}}"#).as_deref(),
            Some("connection.type")
        );
        assert_eq!(
            field_of(r#"{"scopes":["read","\u0000"]}"#).as_deref(),
            Some("scopes[1]")
        );
        assert_eq!(field_of(r#"{"avatarUrl":"\u0000"}"#).as_deref(), Some("avatarUrl"));
    }

    #[test]
    fn free_form_json_undeclared_fields_and_escaped_text_pass() {
        assert_eq!(
            field_of(r#"{"name":"a\\u0000b"}"#),
            None,
            "an escaped backslash is text"
        );
        assert_eq!(field_of(r#"{"raw":{"x":"\u0000"}}"#), None, "kept serialized");
        assert_eq!(field_of(r#"{"connection":{"config":{"g":"\u0000"}}}"#), None);
        assert_eq!(
            field_of(r#"{"other\u0000":"\u0000"}"#),
            None,
            "not a field the API reads"
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        assert_eq!(
            field_of("[null, null]").as_deref(),
            Some("the body must be a JSON object")
        );
    }

    #[test]
    fn the_document_declares_the_pattern() {
        let rules = rules();
        let name = rules
            .document
            .pointer("/components/schemas/CreateBot/properties/name/pattern");
        assert_eq!(name, Some(&json!(STORABLE_TEXT)));
        let variant = rules
            .document
            .pointer("/components/schemas/CreateBot/properties/avatarUrl/oneOf/1/pattern");
        assert_eq!(variant, Some(&json!(STORABLE_TEXT)));
    }

    #[test]
    fn paths_are_checked_decoded() {
        let check = |uri: &str| check_path(&uri.parse().unwrap()).err().map(|e| format!("{e}"));
        assert!(check("/api/public/tasks/%00").unwrap().contains("`path`"));
        assert!(check("/api/public/tasks/%ff%fe").unwrap().contains("UTF-8"));
        assert_eq!(check("/api/public/tasks/12"), None);
    }

    #[test]
    fn declared_query_parameters_are_checked() {
        let operation = json!({"parameters": [{"name": "action", "in": "query", "schema": {"type": "string"}}]});
        let check = |uri: &str| {
            check_query(&uri.parse().unwrap(), &operation)
                .err()
                .map(|e| format!("{e}"))
        };
        assert!(check("/api/public/audit?action=a%00b").unwrap().contains("`action`"));
        assert_eq!(check("/api/public/audit?other=a%00b"), None);
    }
}
