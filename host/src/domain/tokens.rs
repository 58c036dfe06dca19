//! API tokens: `lt_pat_` + 32 base62 characters of randomness (≈190 bits) + a 6-character base62
//! CRC32 checksum, so secret scanners can recognise a real token offline. Only the SHA-256 digest is
//! stored; the token itself is shown once.

use rand::Rng;
use sha2::{Digest, Sha256};

use super::DomainError;

/// Every personal or bot API token starts with this.
pub const TOKEN_PREFIX: &str = "lt_pat_";
/// Base62 characters of randomness.
const RANDOM_CHARS: usize = 32;
/// Base62 characters of the CRC32 checksum (62^6 > 2^32).
const CHECKSUM_CHARS: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A newly minted token, in plaintext. Show it once, store only [`token_digest`].
pub fn generate_token() -> String {
    generate_with_prefix(TOKEN_PREFIX)
}

/// `prefix` + randomness + checksum; shared by every kind of bearer secret the host issues.
pub fn generate_with_prefix(prefix: &str) -> String {
    let mut rng = rand::rng();
    let random: String = (0..RANDOM_CHARS)
        .map(|_| BASE62[rng.random_range(0..62)] as char)
        .collect();
    let checksum = base62_fixed(crc32fast::hash(random.as_bytes()), CHECKSUM_CHARS);
    format!("{prefix}{random}{checksum}")
}

/// Whether `token` looks like a secret issued with `prefix`: the prefix and 38 base62 characters
/// (the checksum is not checked).
pub fn has_token_shape(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == RANDOM_CHARS + CHECKSUM_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Checks a token's shape and checksum without touching the database, so typos and
/// look-alikes are refused cheaply.
pub fn check_token_format(token: &str, prefix: &str) -> Result<(), DomainError> {
    let invalid = || DomainError::invalid("token", "not a valid token");
    if !has_token_shape(token, prefix) {
        return Err(invalid());
    }
    let (random, checksum) = token[prefix.len()..].split_at(RANDOM_CHARS);
    if base62_fixed(crc32fast::hash(random.as_bytes()), CHECKSUM_CHARS) != checksum {
        return Err(invalid());
    }
    Ok(())
}

/// The digest stored in place of a token: lowercase hex SHA-256.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn base62_fixed(mut value: u32, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Scope {
    /// Read anything in the workspace the token's user can see.
    Read,
    /// Create and change tasks, comments and session records.
    Write,
    /// Workspace administration (bots, connections, tokens). People only.
    Admin,
}

impl Scope {
    /// Every scope, in display order.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Parses one scope name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| {
            DomainError::invalid("scopes", format!("unknown scope `{text}`; allowed: read, write, admin"))
        })
    }
}

/// A set of scopes, stored as space-separated names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// The given scopes, deduplicated and sorted.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut v: Vec<Scope> = scopes.into_iter().collect();
        v.sort();
        v.dedup();
        Self(v)
    }

    /// Parses the stored form (`"read write"`).
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        text.split_whitespace()
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// Whether `scope` is granted.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// The stored form.
    pub fn to_stored(&self) -> String {
        self.names().join(" ")
    }

    /// The scope names.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_round_trip() {
        for _ in 0..200 {
            let token = generate_token();
            assert!(token.starts_with("lt_pat_"));
            assert_eq!(token.len(), 7 + 32 + 6);
            check_token_format(&token, TOKEN_PREFIX).unwrap();
        }
        assert_ne!(generate_token(), generate_token());
    }

    #[test]
    fn checksum_catches_typos() {
        let token = generate_token();
        let mut bytes = token.clone().into_bytes();
        let i = 7 + 5;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(bytes).unwrap();
        assert!(check_token_format(&typo, TOKEN_PREFIX).is_err());
        assert!(check_token_format(&token[..token.len() - 1], TOKEN_PREFIX).is_err());
        assert!(check_token_format(&token.replace("lt_pat_", "lt_xxx_"), TOKEN_PREFIX).is_err());
        assert!(check_token_format(&format!("{token}x"), TOKEN_PREFIX).is_err());
    }

    #[test]
    fn the_shape_is_checked_apart_from_the_checksum() {
        let code = generate_with_prefix("lt_conn_");
        assert!(has_token_shape(&code, "lt_conn_"));
        let last = if code.ends_with('a') { "b" } else { "a" };
        let typo = format!("{}{last}", &code[..code.len() - 1]);
        assert!(has_token_shape(&typo, "lt_conn_"));
        assert!(check_token_format(&typo, "lt_conn_").is_err());
        for malformed in [
            "lt_conn_forged",
            "",
            &code[1..],
            &format!("{code}x"),
            &code.replace('_', "-"),
        ] {
            assert!(!has_token_shape(malformed, "lt_conn_"), "{malformed}");
        }
    }

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scopes_parse_and_print() {
        let scopes = Scopes::parse("write read write").unwrap();
        assert_eq!(scopes.to_stored(), "read write");
        assert!(scopes.contains(Scope::Read) && !scopes.contains(Scope::Admin));
        assert!(Scopes::parse("read root").is_err());
    }
}

/// A stored API token (its digest, never the token).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApiToken {
    pub id: super::ids::TokenId,
    pub workspace_id: super::ids::WorkspaceId,
    pub user_id: super::ids::UserId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub scopes: Scopes,
    pub expires_at: Option<super::time::Timestamp>,
    pub last_used_at: Option<super::time::Timestamp>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<super::time::Timestamp>,
    pub created_at: super::time::Timestamp,
    /// For a session token (never stored; see [`super::session_tokens`]): the one agent session
    /// it may act for.
    #[sqlx(skip)]
    pub session_id: Option<super::ids::SessionId>,
}

impl TryFrom<String> for Scopes {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, DomainError> {
        Scopes::parse(&value)
    }
}
