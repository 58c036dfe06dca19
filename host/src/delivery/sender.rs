//! One HTTP attempt at a delivery: sign, send, classify the answer.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};

use crate::domain::time::Timestamp;

use super::policy::{self, AttemptResult};
use crate::domain::webhook_signing as signing;

/// Keep at most this much of a receiver's response body in the attempt log.
pub const RESPONSE_BODY_LIMIT: usize = 4 << 10;

/// The `User-Agent` of every delivery.
pub const USER_AGENT_VALUE: &str = concat!("leadtime-agent-host/", env!("CARGO_PKG_VERSION"));

/// The body as sent at `attempt_time`: if it is a JSON object with a top-level `webhookTimestamp`,
/// that field is set to the attempt's timestamp; otherwise the body is sent unchanged.
///
/// The field's value is replaced where it stands: the body is scanned once for the top-level key
/// (the rest skipped without being built) and copied around the new value, not parsed into a tree
/// and written out again — every attempt of every delivery stamps its body, and building the
/// tree of a ~2–5 KB session webhook was ~3 % of the host's CPU under load.
pub fn stamped_body(body: &str, attempt_timestamp: &str) -> Vec<u8> {
    /// The top-level `webhookTimestamp` of an object, if it has one, as the slice of the body it
    /// spans (`null` too: a field that is there is stamped, whatever it holds).
    #[derive(serde::Deserialize)]
    struct Stamp<'a> {
        #[serde(rename = "webhookTimestamp", borrow, default, deserialize_with = "present")]
        value: Option<&'a serde_json::value::RawValue>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(
        field: D,
    ) -> Result<Option<&'de serde_json::value::RawValue>, D::Error> {
        serde::Deserialize::deserialize(field).map(Some)
    }
    if !body.contains("\"webhookTimestamp\"") || !body.trim_start().starts_with('{') {
        return body.as_bytes().to_vec();
    }
    match serde_json::from_str::<Stamp>(body) {
        Ok(Stamp { value: None }) => body.as_bytes().to_vec(),
        Ok(Stamp { value: Some(value) }) => {
            // `value` borrows from `body`: where it starts is where its bytes are.
            let start = value.get().as_ptr() as usize - body.as_ptr() as usize;
            let end = start + value.get().len();
            let mut stamped = Vec::with_capacity(body.len() + attempt_timestamp.len());
            stamped.extend_from_slice(&body.as_bytes()[..start]);
            // A string's JSON never fails to serialize.
            let _ = serde_json::to_writer(&mut stamped, attempt_timestamp);
            stamped.extend_from_slice(&body.as_bytes()[end..]);
            stamped
        }
        // The field twice: rewritten whole, as before.
        Err(error) if error.is_data() => restamped(body, attempt_timestamp),
        // Not JSON: sent as it is.
        Err(_) => body.as_bytes().to_vec(),
    }
}

/// The body parsed whole with its top-level `webhookTimestamp` set (the last one, if it is there
/// twice) and written out again; unchanged if it is not an object with that field.
fn restamped(body: &str, attempt_timestamp: &str) -> Vec<u8> {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut object)) if object.contains_key("webhookTimestamp") => {
            object.insert(
                "webhookTimestamp".into(),
                serde_json::Value::String(attempt_timestamp.to_owned()),
            );
            serde_json::to_vec(&object).unwrap_or_else(|_| body.as_bytes().to_vec())
        }
        _ => body.as_bytes().to_vec(),
    }
}

/// The headers of one attempt: Leadtime's and Standard Webhooks', signed with `secrets` (newest
/// first).
pub fn signed_headers(id: &str, at: Timestamp, body: &[u8], secrets: &[String]) -> Result<HeaderMap, String> {
    let iso = at.to_iso();
    let unix = at.unix_seconds();
    let standard = signing::standard_signature(secrets, id, unix, body).map_err(|e| e.to_string())?;
    let leadtime = signing::leadtime_signature(secrets, &iso, body);
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| -> Result<(), String> {
        let value = HeaderValue::from_str(&value).map_err(|_| format!("header {name} would not be valid"))?;
        headers.insert(name, value);
        Ok(())
    };
    put("leadtime-webhook-id", id.to_owned())?;
    put("leadtime-webhook-timestamp", iso)?;
    put("leadtime-signature", leadtime)?;
    put("webhook-id", id.to_owned())?;
    put("webhook-timestamp", unix.to_string())?;
    put("webhook-signature", standard)?;
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    Ok(headers)
}

/// Sends one attempt through `client` (see [`crate::outbound::client`]). The body goes out with a
/// `Content-Length` (never chunked).
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    body: Vec<u8>,
    now: Timestamp,
) -> AttemptResult {
    let started = Instant::now();
    let response = client.post(url).headers(headers).body(body).send().await;
    match response {
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| policy::parse_retry_after(v, now));
            let text = read_limited(response).await;
            let latency = started.elapsed();
            let error = (!status.is_success()).then(|| match status.as_u16() {
                300..=399 => format!(
                    "HTTP {} (redirects are not followed; point the webhook URL at the final address)",
                    status.as_u16()
                ),
                _ => format!("HTTP {}", status.as_u16()),
            });
            AttemptResult {
                status_code: Some(status.as_u16()),
                latency,
                response_body: Some(text),
                error,
                retry_after,
                refused: None,
            }
        }
        Err(error) => {
            let refused = crate::outbound::forbidden_in(&error).map(ToString::to_string);
            AttemptResult {
                status_code: None,
                latency: started.elapsed(),
                response_body: None,
                error: Some(refused.clone().unwrap_or_else(|| describe_transport_error(&error))),
                retry_after: None,
                refused,
            }
        }
    }
}

/// An attempt refused before sending (an IP-literal URL in a blocked range).
pub fn refused(reason: String) -> AttemptResult {
    AttemptResult {
        status_code: None,
        latency: Duration::ZERO,
        response_body: None,
        error: Some(reason.clone()),
        retry_after: None,
        refused: Some(reason),
    }
}

async fn read_limited(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = RESPONSE_BODY_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= RESPONSE_BODY_LIMIT {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "the receiver did not answer in time".into()
    } else if error.is_connect() {
        "could not connect to the receiver".into()
    } else {
        format!("request failed: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_replaces_only_the_top_level_timestamp() {
        let body = r#"{"eventType":"agent_session.created","webhookTimestamp":"2020-01-01T00:00:00.000Z","context":{"webhookTimestamp":"keep"}}"#;
        let stamped = String::from_utf8(stamped_body(body, "2026-05-23T12:00:00.000Z")).unwrap();
        assert_eq!(
            stamped,
            r#"{"eventType":"agent_session.created","webhookTimestamp":"2026-05-23T12:00:00.000Z","context":{"webhookTimestamp":"keep"}}"#
        );
        assert_eq!(stamped_body(r#"{"a": 1}"#, "x"), br#"{"a": 1}"#.to_vec());
        assert_eq!(stamped_body("[1]", "x"), b"[1]".to_vec());
    }

    #[test]
    fn stamping_keeps_every_other_byte_of_the_body() {
        // Spacing, key order, escapes and nested objects with the same key stay as they were.
        let body =
            "{ \"a\" : [1, {\"webhookTimestamp\": 2}],\n  \"webhookTimestamp\" : null , \"b\": \"\\u00e9 \\\"q\\\"\" }";
        let stamped = String::from_utf8(stamped_body(body, "2026-05-23T12:00:00.000Z")).unwrap();
        assert_eq!(
            stamped,
            "{ \"a\" : [1, {\"webhookTimestamp\": 2}],\n  \"webhookTimestamp\" : \"2026-05-23T12:00:00.000Z\" , \"b\": \"\\u00e9 \\\"q\\\"\" }"
        );
        let parsed: serde_json::Value = serde_json::from_str(&stamped).unwrap();
        assert_eq!(parsed["webhookTimestamp"], "2026-05-23T12:00:00.000Z");
    }

    #[test]
    fn bodies_that_are_not_an_object_with_the_field_once_are_handled_as_before() {
        // An array naming the key, text that is not JSON: sent as they are.
        assert_eq!(
            stamped_body(r#"["webhookTimestamp"]"#, "x"),
            br#"["webhookTimestamp"]"#.to_vec()
        );
        assert_eq!(
            stamped_body(r#"{"webhookTimestamp": "#, "x"),
            br#"{"webhookTimestamp": "#.to_vec()
        );
        // The key only inside a nested object: unchanged.
        assert_eq!(
            stamped_body(r#"{"context":{"webhookTimestamp":"keep"}}"#, "x"),
            br#"{"context":{"webhookTimestamp":"keep"}}"#.to_vec()
        );
        // The key twice at the top: the last one is set and the body written out again.
        assert_eq!(
            stamped_body(r#"{"webhookTimestamp":1,"a":2,"webhookTimestamp":3}"#, "x"),
            br#"{"webhookTimestamp":"x","a":2}"#.to_vec()
        );
    }

    #[test]
    fn headers_carry_both_schemes() {
        let at = Timestamp::parse_iso("2026-05-23T12:00:00Z").unwrap();
        let body = br#"{"agentRunId":"run-1"}"#;
        let headers = signed_headers("msg_1", at, body, &["whsec_c2VjcmV0c2VjcmV0c2VjcmV0".into()]).unwrap();
        assert_eq!(headers["leadtime-webhook-id"], "msg_1");
        assert_eq!(headers["webhook-id"], "msg_1");
        assert_eq!(headers["leadtime-webhook-timestamp"], "2026-05-23T12:00:00.000Z");
        assert_eq!(headers["webhook-timestamp"], "1779537600");
        assert!(
            headers["leadtime-signature"]
                .to_str()
                .unwrap()
                .starts_with("t=2026-05-23T12:00:00.000Z,v1=")
        );
        assert!(headers["webhook-signature"].to_str().unwrap().starts_with("v1,"));
    }
}
