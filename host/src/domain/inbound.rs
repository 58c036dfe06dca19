//! Provider webhooks (`inbound`, contract 0.1.2): how a connection's endpoint checks what arrives
//! — its spec, as the plugin opened it — and the rules for one request (signature, event id,
//! route key). No HTTP, no SQL.

use serde::{Deserialize, Serialize};

use super::DomainError;
use super::webhook_signing::{self, VerifyError};

/// Name of the secret the host generates for a connection whose spec names none; the plugin
/// hands it to its provider as `{{secret:inbound-webhook}}`. Manifests may not declare it.
pub const GENERATED_SECRET: &str = "inbound-webhook";
/// Largest request body the endpoint accepts.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Headers kept with an event (the rest are dropped), and the bytes of each.
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Longest route key and event id.
pub const MAX_KEY_BYTES: usize = 256;
/// Events whose key no session has routed, kept per connection; past it the endpoint answers 429.
pub const MAX_WAITING_PER_CONNECTION: i64 = 1_000;
/// How long events are kept (and so deduplicated), in milliseconds: 7 days.
pub const RETENTION_MS: i64 = 7 * 24 * 3_600 * 1_000;

/// How a provider signs its webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Scheme {
    /// `{header}: {prefix}{hex HMAC-SHA256(secret text, body)}`, event id in `event_id_header`.
    #[serde(rename_all = "camelCase")]
    HmacSha256Hex {
        header: String,
        prefix: String,
        event_id_header: String,
    },
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
}

/// A connection endpoint's spec: how signatures are checked and events routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    pub scheme: Scheme,
    /// A connection secret by its manifest name; `None`: the host-generated one.
    pub secret: Option<String>,
    /// RFC 6901 JSON pointer to the route key in the body.
    pub route_pointer: String,
}

impl EndpointSpec {
    /// The name of the secret that verifies signatures.
    pub fn secret_name(&self) -> &str {
        self.secret.as_deref().unwrap_or(GENERATED_SECRET)
    }

    /// Checks the spec a plugin asked for; `declared` are the secret names its manifest declares.
    pub fn validate(&self, declared: &[String]) -> Result<(), DomainError> {
        if let Scheme::HmacSha256Hex {
            header,
            prefix,
            event_id_header,
        } = &self.scheme
        {
            for (field, name) in [("header", header), ("event-id-header", event_id_header)] {
                if !is_header_name(name) {
                    return Err(DomainError::invalid(
                        "scheme",
                        format!(
                            "`{field}` must be an HTTP header name (letters, digits, `-`; at most 64), not `{}`",
                            shown(name)
                        ),
                    ));
                }
            }
            if prefix.len() > 64 || prefix.chars().any(|c| !c.is_ascii_graphic()) {
                return Err(DomainError::invalid(
                    "scheme",
                    "`prefix` is at most 64 visible ASCII characters",
                ));
            }
        }
        if let Some(name) = &self.secret
            && !declared.iter().any(|d| d == name)
        {
            return Err(DomainError::invalid(
                "secret",
                format!(
                    "secret `{}` is not declared in the plugin's manifest; name a declared secret, or none for a host-generated one",
                    shown(name)
                ),
            ));
        }
        if !(self.route_pointer.is_empty() || self.route_pointer.starts_with('/')) || self.route_pointer.len() > 256 {
            return Err(DomainError::invalid(
                "route-pointer",
                "`route-pointer` is a JSON pointer: empty or starting with `/`, at most 256 bytes",
            ));
        }
        Ok(())
    }
}

fn is_header_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// At most 64 characters of `text`, for messages.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Why a request was refused before anything was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("missing header `{0}`")]
    MissingHeader(String),
    #[error("header `{0}` is malformed")]
    Malformed(String),
    #[error("the signature does not match (check the webhook secret the provider uses)")]
    BadSignature,
    #[error("`webhook-timestamp` is more than 5 minutes away from the host's clock")]
    Stale,
    #[error("the event id in `{0}` is longer than {MAX_KEY_BYTES} bytes")]
    EventIdTooLong(String),
}

/// The value of header `name` (case-insensitive), if present once or more (the first).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Checks the request's signature with `secret` and returns the provider's event id.
pub fn verify(
    spec: &EndpointSpec,
    secret: &str,
    headers: &[(String, String)],
    body: &[u8],
    now_unix: i64,
) -> Result<String, Refused> {
    let (event_id, id_header) = match &spec.scheme {
        Scheme::HmacSha256Hex {
            header: signature_header,
            prefix,
            event_id_header,
        } => {
            let signature =
                header(headers, signature_header).ok_or_else(|| Refused::MissingHeader(signature_header.clone()))?;
            let digest = signature
                .trim()
                .strip_prefix(prefix.as_str())
                .ok_or_else(|| Refused::Malformed(signature_header.clone()))?;
            if !webhook_signing::hmac_hex_matches(secret, body, digest) {
                return Err(Refused::BadSignature);
            }
            let id = header(headers, event_id_header).ok_or_else(|| Refused::MissingHeader(event_id_header.clone()))?;
            (id.trim().to_owned(), event_id_header.as_str())
        }
        Scheme::StandardWebhooks => {
            let id = header(headers, "webhook-id");
            webhook_signing::verify_standard(
                secret,
                id,
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
                body,
                now_unix,
            )
            .map_err(|e| match e {
                VerifyError::MissingHeader(h) => Refused::MissingHeader(h.into()),
                VerifyError::Malformed(h) => Refused::Malformed(h.into()),
                VerifyError::Stale => Refused::Stale,
                VerifyError::NoMatch | VerifyError::Secret(_) => Refused::BadSignature,
            })?;
            (id.unwrap_or_default().trim().to_owned(), "webhook-id")
        }
    };
    if event_id.is_empty() {
        return Err(Refused::MissingHeader(id_header.into()));
    }
    if event_id.len() > MAX_KEY_BYTES {
        return Err(Refused::EventIdTooLong(id_header.into()));
    }
    Ok(event_id)
}

/// The event's route key: the value at the spec's pointer in the JSON body (a string, or a
/// number as text), if there is one and it is at most [`MAX_KEY_BYTES`].
pub fn route_key(spec: &EndpointSpec, body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let key = match json.pointer(&spec.route_pointer)? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!key.is_empty() && key.len() <= MAX_KEY_BYTES).then_some(key)
}

/// Checks a route key a plugin names.
pub fn validate_route_key(key: &str) -> Result<(), DomainError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(DomainError::invalid(
            "key",
            format!("a route key is 1 to {MAX_KEY_BYTES} bytes, not {}", key.len()),
        ));
    }
    Ok(())
}

/// The headers kept with an event: at most [`MAX_HEADERS`], each at most [`MAX_HEADER_BYTES`],
/// without those that carry credentials a proxy may have added.
pub fn kept_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(n, v)| {
            !n.eq_ignore_ascii_case("authorization")
                && !n.eq_ignore_ascii_case("cookie")
                && n.len() + v.len() <= MAX_HEADER_BYTES
        })
        .take(MAX_HEADERS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor_spec() -> EndpointSpec {
        EndpointSpec {
            scheme: Scheme::HmacSha256Hex {
                header: "X-Webhook-Signature".into(),
                prefix: "sha256=".into(),
                event_id_header: "X-Webhook-ID".into(),
            },
            secret: None,
            route_pointer: "/id".into(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn hmac_hex_signatures_verify_and_name_the_event() {
        let body = br#"{"event":"statusChange","id":"bc_1","status":"FINISHED"}"#;
        let signature = format!("sha256={}", webhook_signing::hmac_hex("s3cret", body));
        let good = headers(&[("x-webhook-signature", &signature), ("X-Webhook-ID", "evt-1")]);
        assert_eq!(verify(&cursor_spec(), "s3cret", &good, body, 0).unwrap(), "evt-1");
        assert_eq!(route_key(&cursor_spec(), body).as_deref(), Some("bc_1"));

        assert_eq!(
            verify(&cursor_spec(), "other", &good, body, 0),
            Err(Refused::BadSignature)
        );
        let tampered = br#"{"event":"statusChange","id":"bc_2","status":"FINISHED"}"#;
        assert_eq!(
            verify(&cursor_spec(), "s3cret", &good, tampered, 0),
            Err(Refused::BadSignature)
        );
        let no_prefix = headers(&[
            ("X-Webhook-Signature", &webhook_signing::hmac_hex("s3cret", body)),
            ("X-Webhook-ID", "evt-1"),
        ]);
        assert!(matches!(
            verify(&cursor_spec(), "s3cret", &no_prefix, body, 0),
            Err(Refused::Malformed(_))
        ));
        let empty = headers(&[("X-Webhook-Signature", "sha256="), ("X-Webhook-ID", "evt-1")]);
        assert_eq!(
            verify(&cursor_spec(), "s3cret", &empty, body, 0),
            Err(Refused::BadSignature)
        );
        let no_id = headers(&[("X-Webhook-Signature", &signature)]);
        assert_eq!(
            verify(&cursor_spec(), "s3cret", &no_id, body, 0),
            Err(Refused::MissingHeader("X-Webhook-ID".into()))
        );
        assert!(matches!(
            verify(&cursor_spec(), "s3cret", &[], body, 0),
            Err(Refused::MissingHeader(_))
        ));
    }

    #[test]
    fn standard_webhooks_verify_with_their_timestamp_window() {
        let spec = EndpointSpec {
            scheme: Scheme::StandardWebhooks,
            ..cursor_spec()
        };
        let secret = webhook_signing::generate_secret();
        let body = br#"{"type":"session.status_idle","id":"sesn_1"}"#;
        let now = 1_800_000_000;
        let signature = webhook_signing::standard_v1(&secret, "msg_1", now, body).unwrap();
        let good = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &signature),
        ]);
        assert_eq!(verify(&spec, &secret, &good, body, now + 10).unwrap(), "msg_1");
        assert_eq!(verify(&spec, &secret, &good, body, now + 301), Err(Refused::Stale));
        assert_eq!(
            verify(&spec, &webhook_signing::generate_secret(), &good, body, now),
            Err(Refused::BadSignature)
        );
        // The id is signed: another id with the same signature does not verify.
        let replayed = headers(&[
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &signature),
        ]);
        assert_eq!(verify(&spec, &secret, &replayed, body, now), Err(Refused::BadSignature));
    }

    #[test]
    fn route_keys_come_from_the_pointer_when_usable() {
        let spec = EndpointSpec {
            route_pointer: "/data/id".into(),
            ..cursor_spec()
        };
        assert_eq!(route_key(&spec, br#"{"data":{"id":"a"}}"#).as_deref(), Some("a"));
        assert_eq!(route_key(&spec, br#"{"data":{"id":42}}"#).as_deref(), Some("42"));
        assert_eq!(route_key(&spec, br#"{"data":{"id":""}}"#), None);
        assert_eq!(route_key(&spec, br#"{"data":{"id":{"x":1}}}"#), None);
        assert_eq!(route_key(&spec, br#"{"data":{}}"#), None);
        assert_eq!(route_key(&spec, b"not json"), None);
        let long = format!(r#"{{"data":{{"id":"{}"}}}}"#, "k".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(route_key(&spec, long.as_bytes()), None);
    }

    #[test]
    fn specs_are_checked_against_the_manifest() {
        let declared = vec!["api-key".to_owned(), "webhook-signing".to_owned()];
        assert!(cursor_spec().validate(&declared).is_ok());
        assert_eq!(cursor_spec().secret_name(), GENERATED_SECRET);
        let named = EndpointSpec {
            secret: Some("webhook-signing".into()),
            ..cursor_spec()
        };
        assert!(named.validate(&declared).is_ok());
        assert_eq!(named.secret_name(), "webhook-signing");
        let undeclared = EndpointSpec {
            secret: Some("nope".into()),
            ..cursor_spec()
        };
        assert!(
            undeclared
                .validate(&declared)
                .unwrap_err()
                .to_string()
                .contains("not declared")
        );
        let bad_header = EndpointSpec {
            scheme: Scheme::HmacSha256Hex {
                header: "X Sig\n".into(),
                prefix: String::new(),
                event_id_header: "id".into(),
            },
            ..cursor_spec()
        };
        assert!(bad_header.validate(&declared).is_err());
        let bad_pointer = EndpointSpec {
            route_pointer: "id".into(),
            ..cursor_spec()
        };
        assert!(bad_pointer.validate(&declared).is_err());
        assert!(validate_route_key("").is_err());
        assert!(validate_route_key(&"k".repeat(257)).is_err());
        assert!(validate_route_key("bc_1").is_ok());
    }

    #[test]
    fn stored_specs_round_trip() {
        let spec = cursor_spec();
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            text,
            r#"{"scheme":{"type":"hmac-sha256-hex","header":"X-Webhook-Signature","prefix":"sha256=","eventIdHeader":"X-Webhook-ID"},"secret":null,"routePointer":"/id"}"#
        );
        assert_eq!(serde_json::from_str::<EndpointSpec>(&text).unwrap(), spec);
    }

    #[test]
    fn credentials_and_oversized_headers_are_not_kept() {
        let kept = kept_headers(headers(&[
            ("Authorization", "Bearer x"),
            ("Cookie", "a=b"),
            ("X-Webhook-ID", "evt"),
            ("X-Big", &"v".repeat(MAX_HEADER_BYTES)),
        ]));
        assert_eq!(kept, headers(&[("X-Webhook-ID", "evt")]));
        let many = (0..100).map(|i| (format!("h{i}"), "v".to_owned())).collect();
        assert_eq!(kept_headers(many).len(), MAX_HEADERS);
    }
}
