//! Session tokens: the bearer token a plugin hands its provider's agent (by reference,
//! `{{secret:session-token}}`) so the agent can use the Leadtime task tools as its bot, for its
//! session alone, and only while the session is open.
//!
//! A session token is not stored anywhere: it is `lt_ses_` + the session id + `_` + the hex
//! HMAC-SHA256 of the session id under a key derived from the host's secrets key. Checking one
//! recomputes the MAC (in constant time) and then reads the session; so there is nothing to clean
//! up, every provider retry gets the same token, and a token dies with its session (or with the
//! secrets key).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ids::SessionId;

/// Every session token starts with this.
pub const PREFIX: &str = "lt_ses_";
/// The secret name a plugin refers to (`{{secret:session-token}}`); plugins with the `task-tools`
/// capability may use it in session calls.
pub const SECRET_NAME: &str = "session-token";
/// What the secrets key is derived into for session tokens.
pub const KEY_PURPOSE: &str = "session-token";

/// Hex characters of the MAC.
const MAC_HEX: usize = 64;
/// Longest session id accepted in a token (ids are far shorter).
const MAX_SESSION_ID: usize = 64;

/// The token of `session` under `key`.
pub fn issue(key: &[u8; 32], session: &SessionId) -> String {
    format!(
        "{PREFIX}{}_{}",
        session.as_str(),
        hex::encode(mac(key, session.as_str()).finalize().into_bytes())
    )
}

/// Whether `bearer` is shaped like a session token (so it is checked as one).
pub fn looks_like(bearer: &str) -> bool {
    bearer.starts_with(PREFIX)
}

/// The session `token` was issued for, if its MAC is right under `key`.
pub fn verify(key: &[u8; 32], token: &str) -> Option<SessionId> {
    let rest = token.strip_prefix(PREFIX)?;
    let (session, tag) = rest.rsplit_once('_')?;
    if session.is_empty()
        || session.len() > MAX_SESSION_ID
        || !session.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || tag.len() != MAC_HEX
    {
        return None;
    }
    let tag = hex::decode(tag).ok()?;
    mac(key, session).verify_slice(&tag).ok()?;
    Some(SessionId::from(session))
}

fn mac(key: &[u8; 32], session: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"leadtime session token v1\0");
    mac.update(session.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_session_and_only_its_key_makes_it() {
        let key = [7u8; 32];
        let session = SessionId::from("ses_abc123");
        let token = issue(&key, &session);
        assert!(token.starts_with("lt_ses_ses_abc123_") && looks_like(&token));
        assert_eq!(
            issue(&key, &session),
            token,
            "the same session always gets the same token"
        );
        assert_eq!(verify(&key, &token), Some(session.clone()));
        assert_eq!(verify(&[8u8; 32], &token), None, "another key");
        let other = SessionId::from("ses_abc124");
        let forged = token.replace("ses_abc123", "ses_abc124");
        assert_eq!(verify(&key, &forged), None, "the MAC binds the session id");
        assert_ne!(issue(&key, &other), forged);
        for malformed in [
            "",
            "lt_ses_",
            "lt_ses__00",
            &token[..token.len() - 1],
            &format!("{token}0"),
            &token.replace("lt_ses_", "lt_pat_"),
            &format!("lt_ses_ses-x_{}", "0".repeat(64)),
            &format!("lt_ses_ses_x_{}", "g".repeat(64)),
        ] {
            assert_eq!(verify(&key, malformed), None, "{malformed}");
        }
    }
}
