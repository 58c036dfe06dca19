//! Webhook signatures: the Leadtime headers (wire contract §1) and Standard Webhooks, both from one
//! stored secret `whsec_<base64>`.
//!
//! - Leadtime: `Leadtime-Signature: t=<timestamp>,v1=<hex>[,v1=<hex>…]` where each hex is
//!   `HMAC-SHA256(key = the whole secret text, msg = timestamp + "." + body)`, newest secret first.
//! - Standard Webhooks: `webhook-signature: v1,<base64>[ v1,<base64>…]` where each is
//!   `HMAC-SHA256(key = base64-decoded part after "whsec_", msg = id + "." + unix seconds + "." + body)`.
//!
//! The verifiers are what wrapper authors and inbound provider webhooks need: they compare full
//! MACs in constant time, so an empty or truncated signature never matches.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of every webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Receivers reject timestamps further than this from their clock, in seconds.
pub const TOLERANCE_SECONDS: i64 = 300;

/// A fresh secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", BASE64.encode(bytes))
}

/// Why a secret cannot sign Standard Webhooks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("webhook secrets start with `whsec_` followed by base64")]
    Malformed,
}

/// The Standard Webhooks HMAC key of `secret`: the base64-decoded part after `whsec_`.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, SecretError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(SecretError::Malformed)?;
    BASE64.decode(encoded).map_err(|_| SecretError::Malformed)
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The `v1=` value for one secret: lowercase hex HMAC of `timestamp.body` keyed by the secret text.
pub fn leadtime_v1(secret: &str, timestamp: &str, body: &[u8]) -> String {
    hex::encode(
        mac(secret.as_bytes(), &[timestamp.as_bytes(), b".", body])
            .finalize()
            .into_bytes(),
    )
}

/// The `Leadtime-Signature` header for `secrets` (newest first).
pub fn leadtime_signature(secrets: &[String], timestamp: &str, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&leadtime_v1(secret, timestamp, body));
    }
    header
}

/// One `v1,<base64>` Standard Webhooks signature.
pub fn standard_v1(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SecretError> {
    let key = standard_key(secret)?;
    let ts = timestamp.to_string();
    let mac = mac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header for `secrets` (newest first), space-separated.
pub fn standard_signature(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> Result<String, SecretError> {
    secrets
        .iter()
        .map(|s| standard_v1(s, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.join(" "))
}

/// Whether `hex_digest` is the lowercase or uppercase hex HMAC-SHA256 of `body` keyed by the
/// UTF-8 text of `secret` (compared in constant time).
pub fn hmac_hex_matches(secret: &str, body: &[u8], hex_digest: &str) -> bool {
    match hex::decode(hex_digest.trim()) {
        Ok(candidate) => mac(secret.as_bytes(), &[body]).verify_slice(&candidate).is_ok(),
        Err(_) => false,
    }
}

/// The lowercase hex HMAC-SHA256 of `body` keyed by the UTF-8 text of `secret`.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    hex::encode(mac(secret.as_bytes(), &[body]).finalize().into_bytes())
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    #[error("malformed header `{0}`")]
    Malformed(&'static str),
    #[error("timestamp is more than {TOLERANCE_SECONDS} s away from now")]
    Stale,
    #[error("no signature matches")]
    NoMatch,
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Verifies a Leadtime-signed request the way the strictest connector does: the `t=` must equal
/// the timestamp header, which must be ISO-8601 within ±300 s of `now_unix`, and the **first**
/// `v1=` must be lowercase hex and match `secret`.
pub fn verify_leadtime(
    secret: &str,
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    let timestamp = timestamp_header.ok_or(VerifyError::MissingHeader("Leadtime-Webhook-Timestamp"))?;
    let signature = signature_header.ok_or(VerifyError::MissingHeader("Leadtime-Signature"))?;
    let time = chrono::DateTime::parse_from_rfc3339(timestamp)
        .map_err(|_| VerifyError::Malformed("Leadtime-Webhook-Timestamp"))?;
    if (time.timestamp() - now_unix).abs() > TOLERANCE_SECONDS {
        return Err(VerifyError::Stale);
    }
    let mut parts = signature.split(',');
    let t = parts
        .next()
        .and_then(|p| p.strip_prefix("t="))
        .ok_or(VerifyError::Malformed("Leadtime-Signature"))?;
    if t != timestamp {
        return Err(VerifyError::Malformed("Leadtime-Signature"));
    }
    let first = parts
        .next()
        .and_then(|p| p.strip_prefix("v1="))
        .ok_or(VerifyError::Malformed("Leadtime-Signature"))?;
    if first.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(VerifyError::Malformed("Leadtime-Signature"));
    }
    let candidate = hex::decode(first).map_err(|_| VerifyError::NoMatch)?;
    mac(secret.as_bytes(), &[timestamp.as_bytes(), b".", body])
        .verify_slice(&candidate)
        .map_err(|_| VerifyError::NoMatch)
}

/// Verifies a Standard Webhooks request: headers present, timestamp within ±300 s of `now_unix`,
/// and at least one `v1,` entry matching `secret` over its full length.
pub fn verify_standard(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    let id = id.ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let timestamp = timestamp.ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signature = signature.ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| VerifyError::Malformed("webhook-timestamp"))?;
    if (ts - now_unix).abs() > TOLERANCE_SECONDS {
        return Err(VerifyError::Stale);
    }
    let key = standard_key(secret)?;
    for entry in signature.split(' ') {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(candidate) = BASE64.decode(encoded) else {
            continue;
        };
        if mac(&key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body])
            .verify_slice(&candidate)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"agentRunId":"run-1"}"#;

    #[test]
    fn leadtime_vectors() {
        assert_eq!(
            leadtime_v1("secret", "2026-05-23T12:00:00.000Z", BODY),
            "0e7bedbc51583e3cd2031f95e4259aebbfdefed2274f555f63d4c71a7ea7c7a9"
        );
        assert_eq!(
            leadtime_v1("secret", "2026-05-24T00:00:00Z", BODY),
            "086b89f9178d10ff8e5f02d16f8196c0353c9aff11f5e26032063cfe57d11989"
        );
        assert_eq!(
            leadtime_signature(&["secret".into()], "2026-05-23T12:00:00.000Z", BODY),
            "t=2026-05-23T12:00:00.000Z,v1=0e7bedbc51583e3cd2031f95e4259aebbfdefed2274f555f63d4c71a7ea7c7a9"
        );
    }

    #[test]
    fn standard_webhooks_vectors() {
        let a = standard_signature(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(a, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let b = standard_signature(
            &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into()],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(b, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn rotation_lists_newest_first() {
        let secrets = vec![
            "whsec_bmV3bmV3bmV3bmV3bmV3bmV3".to_string(),
            "whsec_b2xkb2xkb2xkb2xkb2xkb2xk".to_string(),
        ];
        let header = leadtime_signature(&secrets, "2026-05-23T12:00:00.000Z", BODY);
        let v1s: Vec<&str> = header.split(',').skip(1).collect();
        assert_eq!(v1s.len(), 2);
        assert_eq!(
            v1s[0],
            format!("v1={}", leadtime_v1(&secrets[0], "2026-05-23T12:00:00.000Z", BODY))
        );
        let std = standard_signature(&secrets, "msg_1", 1_779_537_600, BODY).unwrap();
        assert_eq!(std.split(' ').count(), 2);
        // Each receiver knows one secret; both verify.
        for secret in &secrets {
            verify_standard(
                secret,
                Some("msg_1"),
                Some("1779537600"),
                Some(&std),
                BODY,
                1_779_537_600,
            )
            .unwrap();
        }
    }

    const A_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const A_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const A_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const A_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn verify_a(id: Option<&str>, ts: Option<&str>, sig: Option<&str>, now: i64) -> Result<(), VerifyError> {
        verify_standard(A_SECRET, id, ts, sig, A_BODY, now)
    }

    #[test]
    fn standard_verifier_accepts_the_vector_and_refuses_the_known_bug_classes() {
        let now = 1614265330;
        verify_a(Some(A_ID), Some("1614265330"), Some(A_SIG), now).unwrap();
        assert_eq!(
            verify_a(None, Some("1614265330"), Some(A_SIG), now),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            verify_a(Some(A_ID), None, Some(A_SIG), now),
            Err(VerifyError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(
            verify_a(Some(A_ID), Some("1614265330"), None, now),
            Err(VerifyError::MissingHeader("webhook-signature"))
        );
        assert_eq!(
            verify_a(Some(A_ID), Some("1614265330"), Some(A_SIG), now + 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify_a(Some(A_ID), Some("1614265330"), Some(A_SIG), now - 301),
            Err(VerifyError::Stale)
        );
        verify_a(Some(A_ID), Some("1614265330"), Some(A_SIG), now + 300).unwrap();
        assert_eq!(
            verify_a(Some(A_ID), Some("1614265330"), Some("v1,"), now),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_a(Some(A_ID), Some("1614265330"), Some("v1,g0hM9SsE+OTPJTGt"), now),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_a(Some(A_ID), Some("1614265330"), Some(&A_SIG[..A_SIG.len() - 4]), now),
            Err(VerifyError::NoMatch)
        );
        let wrong = verify_standard(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            Some(A_ID),
            Some("1614265330"),
            Some(A_SIG),
            A_BODY,
            now,
        );
        assert_eq!(wrong, Err(VerifyError::NoMatch));
        let list = format!("v1,AAAA v2,xyz {A_SIG}");
        verify_a(Some(A_ID), Some("1614265330"), Some(&list), now).unwrap();
        assert_eq!(
            verify_a(Some(A_ID), Some("1614265330"), Some("v1,AAAA v1,"), now),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn leadtime_verifier_checks_time_case_and_first_entry() {
        let ts = "2026-05-23T12:00:00.000Z";
        let now = 1_779_537_600;
        let good = leadtime_signature(&["secret".into()], ts, BODY);
        verify_leadtime("secret", Some(ts), Some(&good), BODY, now).unwrap();
        assert_eq!(
            verify_leadtime("secret", Some(ts), Some(&good), BODY, now + 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify_leadtime("secret", None, Some(&good), BODY, now),
            Err(VerifyError::MissingHeader("Leadtime-Webhook-Timestamp"))
        );
        assert_eq!(
            verify_leadtime("other", Some(ts), Some(&good), BODY, now),
            Err(VerifyError::NoMatch)
        );
        assert!(
            verify_leadtime(
                "secret",
                Some(ts),
                Some(&good.to_uppercase().replace("T=", "t=").replace("V1=", "v1=")),
                BODY,
                now
            )
            .is_err()
        );
        assert_eq!(
            verify_leadtime("secret", Some(ts), Some(&format!("t={ts},v1=")), BODY, now),
            Err(VerifyError::NoMatch)
        );
        let old_first = leadtime_signature(&["old".into(), "secret".into()], ts, BODY);
        assert_eq!(
            verify_leadtime("secret", Some(ts), Some(&old_first), BODY, now),
            Err(VerifyError::NoMatch)
        );
        let unix = ts.replace("2026-05-23T12:00:00.000Z", "1779537600");
        assert!(verify_leadtime("secret", Some(&unix), Some(&good), BODY, now).is_err());
    }

    #[test]
    fn generated_secrets_work_for_both_schemes() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(standard_key(&secret).unwrap().len(), 32);
        let sig = standard_signature(std::slice::from_ref(&secret), "msg_x", 100, b"{}").unwrap();
        verify_standard(&secret, Some("msg_x"), Some("100"), Some(&sig), b"{}", 100).unwrap();
    }
}
