//! What the OpenAPI document says a request must be, so that a client (or a schema-driven tester)
//! that sends what the document allows is not refused with a 400: a well-formed request that
//! names nothing is a 404, one that conflicts with the current state a 409.
//!
//! Each field states its rules on its DTO (`#[schema(...)]`, `#[param(...)]`). utoipa takes only
//! literals there, so the patterns several fields share are written out in each and defined once
//! here; the tests below hold every declaration to these and to the limits the domain enforces.
//! What the attributes cannot state — a PATCH body must change something — is added here.

use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr};

/// White space as `str::trim` counts it (`char::is_whitespace`), as the inside of a regex class:
/// listed rather than written `\s`, which means slightly different sets in different dialects.
pub const WHITE_SPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Text of 1 to `max` characters once trimmed, as `bounded_text(field, value, 1, max)` accepts it:
/// no NUL, any white space around a core that starts and ends with something else. (`maxLength`
/// would count the white space the server trims off.)
pub fn trimmed_text(max: usize) -> String {
    format!(
        "^[{WHITE_SPACE}]*[^\\u0000{WHITE_SPACE}](?:[^\\u0000]{{0,{}}}[^\\u0000{WHITE_SPACE}])?[{WHITE_SPACE}]*$",
        max - 2
    )
}

/// Text that is not blank once trimmed, of any length (fields whose bound is too large to write
/// into a pattern declare it as `maxLength`, which counts the white space too): no NUL, and at
/// least one character that is not white space.
pub const NOT_BLANK: &str =
    r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$";

/// An `@handle` as `normalize_handle` accepts it: 2–32 characters of a-z, 0-9, `-` and `_`,
/// starting with a letter or digit, after an optional `@` and lowercasing.
pub const HANDLE: &str = r"^@?[A-Za-z0-9][A-Za-z0-9_-]{1,31}$";

/// An avatar: `""` (none), or an absolute http(s) URL the `url` crate parses — a DNS name whose
/// last label starts with a letter (one ending in a number would be read as an IPv4 address) or
/// an IPv4 address, an optional port, then printable ASCII.
pub const AVATAR_URL: &str = r"^(?:https?://(?:(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(?:[/?#][!-~]*)?)?$";

/// A time as `Timestamp::parse_iso` (chrono's RFC 3339 parser) reads it, written the common way:
/// `2026-05-23T12:00:00Z`, optionally with a fraction and a numeric offset. Declared beside
/// `format: date-time`, which many validators only annotate.
pub const DATE_TIME: &str = r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$";

/// A field a PATCH body may change.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    /// Changes something when given a value; `null` means "leave as it is".
    Value(&'static str),
    /// Changes something whenever present: `null` clears it.
    Present(&'static str),
}

impl Change {
    /// The subschema of a body in which this field changes something.
    fn given(self) -> Value {
        match self {
            Change::Value(name) => json!({"required": [name], "properties": {name: {"not": {"type": "null"}}}}),
            Change::Present(name) => json!({"required": [name]}),
        }
    }
}

/// Declares on `T`'s schema in `document` that a body must give at least one of `changes` (the
/// handler refuses "nothing to change"), as an `anyOf` beside its `properties`.
pub fn require_a_change<T: ToSchema>(document: &mut OpenApi, changes: &[Change]) {
    let name = T::name();
    let schema = document
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut(name.as_ref()));
    // utoipa's object model has no `anyOf` beside `properties`; its extensions are written into
    // the schema object as they are, so the keyword goes there.
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        let any_of: Vec<Value> = changes.iter().map(|change| change.given()).collect();
        object
            .extensions
            .get_or_insert_with(Default::default)
            .insert("anyOf".into(), Value::Array(any_of));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::trimmed_text;
    use crate::domain::comments::MAX_COMMENT_CHARS;
    use crate::domain::sessions::{
        MAX_ACTIVITY_BODY_BYTES, MAX_ACTIVITY_FIELD_BYTES, MAX_IDEMPOTENCY_KEY_BYTES, MAX_STATUS_MESSAGE_BYTES,
    };
    use crate::domain::tasks::{MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS};
    use crate::domain::users::MAX_HANDLE_CHARS;
    use crate::use_cases::accounts::bots::MAX_SECRET_GRACE;
    use crate::use_cases::accounts::connection_secrets::MAX_SECRET_BYTES;
    use crate::use_cases::accounts::setup::MAX_TTL;
    use crate::use_cases::accounts::tokens::MAX_EXPIRY_DAYS;

    /// The served document (with the storable-text pattern, as clients see it).
    fn document() -> Value {
        crate::api::docs::RenderedDocs::new(&crate::api::openapi("http://host.example"))
            .value
            .as_ref()
            .clone()
    }

    fn property<'a>(doc: &'a Value, schema: &str, field: &str) -> &'a Value {
        doc.pointer(&format!("/components/schemas/{schema}/properties/{field}"))
            .unwrap_or_else(|| panic!("{schema}.{field} is not in the document"))
    }

    fn query_parameter<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .map(|p| &p["schema"])
            .unwrap_or_else(|| panic!("GET {path} has no parameter {name}"))
    }

    fn number(value: &Value, keyword: &str) -> u64 {
        value[keyword]
            .as_u64()
            .or_else(|| value[keyword].as_f64().map(|f| f as u64))
            .unwrap_or_else(|| panic!("no {keyword} in {value}"))
    }

    #[test]
    fn fields_declare_the_shared_patterns() {
        let doc = document();
        let pattern = |schema, field| property(&doc, schema, field)["pattern"].as_str().unwrap_or_default();
        assert_eq!(
            super::NOT_BLANK,
            format!("^[^\\u0000]*[^\\u0000{}][^\\u0000]*$", super::WHITE_SPACE)
        );
        for (schema, field) in [
            ("CreateTask", "statusId"),
            ("CreateTask", "assigneeId"),
            ("UpdateTask", "statusId"),
            ("UpdateTask", "assigneeId"),
            ("AddComment", "comment"),
        ] {
            assert_eq!(pattern(schema, field), super::NOT_BLANK, "{schema}.{field}");
        }
        for schema in ["CreateBot", "UpdateBot", "AddPerson"] {
            assert_eq!(pattern(schema, "handle"), super::HANDLE, "{schema}.handle");
        }
        for schema in ["CreateBot", "UpdateBot"] {
            assert_eq!(pattern(schema, "avatarUrl"), super::AVATAR_URL, "{schema}.avatarUrl");
        }
        for field in ["since", "until"] {
            assert_eq!(
                pattern("RedeliverRange", field),
                super::DATE_TIME,
                "RedeliverRange.{field}"
            );
            for path in ["/audit", "/bots/{id}/deliveries"] {
                let declared = query_parameter(&doc, path, field)["pattern"].as_str();
                assert_eq!(declared, Some(super::DATE_TIME), "GET {path} {field}");
            }
        }
    }

    #[test]
    fn lengths_are_the_ones_the_domain_enforces() {
        let doc = document();
        let max = |schema, field| number(property(&doc, schema, field), "maxLength") as usize;
        let trimmed = |schema, field| property(&doc, schema, field)["pattern"].as_str().unwrap_or_default();
        for (schema, field) in [("CreateTask", "title"), ("UpdateTask", "title")] {
            assert_eq!(
                trimmed(schema, field),
                trimmed_text(MAX_TITLE_CHARS),
                "{schema}.{field}"
            );
        }
        for (schema, field) in [("CreateTask", "description"), ("UpdateTask", "description")] {
            assert_eq!(max(schema, field), MAX_DESCRIPTION_CHARS, "{schema}.{field}");
        }
        assert_eq!(max("AddComment", "comment"), MAX_COMMENT_CHARS);
        for (schema, field) in [
            ("CreateBot", "name"),
            ("UpdateBot", "name"),
            ("AddPerson", "name"),
            ("CreateToken", "name"),
        ] {
            assert_eq!(trimmed(schema, field), trimmed_text(100), "{schema}.{field}");
        }
        assert_eq!(max("SecretInput", "value"), MAX_SECRET_BYTES);
        assert_eq!(max("PostActivity", "body"), MAX_ACTIVITY_BODY_BYTES);
        for field in ["action", "parameter", "result", "providerEventId", "providerEventType"] {
            assert_eq!(max("PostActivity", field), MAX_ACTIVITY_FIELD_BYTES, "{field}");
        }
        assert_eq!(max("PostActivity", "idempotencyKey"), MAX_IDEMPOTENCY_KEY_BYTES);
        assert_eq!(max("SetStatus", "idempotencyKey"), MAX_IDEMPOTENCY_KEY_BYTES);
        assert_eq!(max("SetStatus", "message"), MAX_STATUS_MESSAGE_BYTES);
        let handle = property(&doc, "CreateBot", "handle")["pattern"].as_str().unwrap();
        assert!(handle.contains(&format!("{{1,{}}}", MAX_HANDLE_CHARS - 1)), "{handle}");
    }

    #[test]
    fn ranges_are_the_ones_the_handlers_enforce() {
        let doc = document();
        let range = |value: &Value| (number(value, "minimum"), number(value, "maximum"));
        assert_eq!(
            range(property(&doc, "SetupCodeRequest", "expiresInMinutes")),
            (1, MAX_TTL.as_secs() / 60)
        );
        assert_eq!(
            range(property(&doc, "RotateSecret", "graceSeconds")),
            (0, MAX_SECRET_GRACE.as_secs())
        );
        assert_eq!(
            range(property(&doc, "CreateToken", "expiresInDays")),
            (1, u64::from(MAX_EXPIRY_DAYS))
        );
        assert_eq!(
            range(query_parameter(&doc, "/tasks/grid", "pageSize")),
            (1, u64::from(crate::api::tasks::MAX_PAGE_SIZE))
        );
        assert_eq!(
            range(query_parameter(&doc, "/audit", "pageSize")),
            (1, crate::api::audit::MAX_PAGE_SIZE as u64)
        );
        assert_eq!(
            range(query_parameter(&doc, "/bots/{id}/deliveries", "pageSize")),
            (1, crate::api::deliveries::MAX_PAGE_SIZE as u64)
        );
    }

    #[test]
    fn patch_bodies_must_change_something() {
        let doc = document();
        for schema in ["UpdateTask", "UpdateBot", "UpdateConnectionType"] {
            let any_of = doc
                .pointer(&format!("/components/schemas/{schema}/anyOf"))
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{schema} does not require a change"));
            for branch in any_of {
                let field = branch["required"][0].as_str().unwrap();
                property(&doc, schema, field);
            }
        }
    }
}
