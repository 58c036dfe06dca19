//! Connection secrets at rest: sealed with AES-256-GCM under one operator key.
//!
//! The key comes from the operator's config (`LEADTIME_SECRETS_KEY`, base64 of 32 bytes) or from
//! a key file (`LEADTIME_SECRETS_KEY_FILE`, by default `<data dir>/secrets.key`, created on first
//! start so a local run needs no setup). Each value is sealed with a fresh random nonce and the
//! connection id and secret name as associated data, so a ciphertext copied to another row or
//! another connection does not open. Values are only ever opened by the outbound-HTTP capability,
//! at send time; they never enter plugin memory, API reads, logs, errors or audit details.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The name a webhook signing secret is sealed under, with its connection's id.
pub const WEBHOOK_SIGNING_SECRET: &str = "webhook-signing-secret";

/// Bytes of an AES-GCM nonce.
const NONCE_BYTES: usize = 12;

/// A secret value in host memory. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Parsing never fails; it lets a secret be a command-line value without ever being printed.
impl std::str::FromStr for SecretValue {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// A secret as stored: nonce and ciphertext (with its tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Why a sealed secret did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a stored secret could not be decrypted: it was sealed under another key (was LEADTIME_SECRETS_KEY changed?) or altered"
)]
pub struct OpenError;

/// The operator's key, able to seal and open connection secrets.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    fingerprint: String,
    /// Keys for other purposes are derived from this one (see [`SecretBox::derive_key`]).
    derivation: [u8; 32],
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<key redacted>)")
    }
}

impl SecretBox {
    /// A box over a 32-byte key.
    pub fn from_key(key: &[u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"leadtime secrets key fingerprint v1\0");
        hasher.update(key);
        Self {
            cipher: Aes256Gcm::new(key.into()),
            fingerprint: hex::encode(hasher.finalize()),
            derivation: *key,
        }
    }

    /// A key for `purpose` derived from the operator's key (HMAC-SHA256 of the purpose under it):
    /// as secret as the operator's key, and independent of the keys for other purposes.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac =
            <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.derivation).expect("HMAC takes any key length");
        mac.update(b"leadtime derived key v1\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A one-way fingerprint of the key (SHA-256, domain-separated): stored in the database so a
    /// host started with another key refuses to start instead of failing to open every secret.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A box over a key written as base64 (32 bytes once decoded).
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = BASE64
            .decode(text.trim())
            .context("the secrets key is not base64; generate one with `openssl rand -base64 32`")?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            anyhow::anyhow!(
                "the secrets key must be 32 bytes once decoded, not {}; generate one with `openssl rand -base64 32`",
                b.len()
            )
        })?;
        Ok(Self::from_key(&key))
    }

    /// The key in `path`, creating the file (readable by its owner only) with a random key when it
    /// does not exist yet.
    pub fn from_key_file(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            write_private(path, BASE64.encode(key).as_bytes())
                .with_context(|| format!("cannot create the secrets key file {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "created a new secrets key; back it up: connection secrets cannot be read without it"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secrets key file {}", path.display()))?;
        if text.trim().is_empty() {
            bail!("the secrets key file {} is empty", path.display());
        }
        Self::from_base64(&text).with_context(|| format!("in the secrets key file {}", path.display()))
    }

    /// Seals `value` for secret `name` of connection `owner`.
    pub fn seal(&self, owner: &str, name: &str, value: &SecretValue) -> Sealed {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(owner, name);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: &aad,
                },
            )
            // AES-GCM encryption fails only for inputs of gigabytes; values are capped far below.
            .unwrap_or_default();
        Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Opens what [`SecretBox::seal`] sealed for the same `owner` and `name`.
    pub fn open(&self, owner: &str, name: &str, sealed: &Sealed) -> Result<SecretValue, OpenError> {
        if sealed.nonce.len() != NONCE_BYTES {
            return Err(OpenError);
        }
        let aad = associated_data(owner, name);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map(SecretValue).map_err(|_| OpenError)
    }
}

/// `owner` and `name`, length-prefixed so no two pairs give the same bytes.
fn associated_data(owner: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(owner.len() + name.len() + 8);
    aad.extend_from_slice(&(owner.len() as u32).to_be_bytes());
    aad.extend_from_slice(owner.as_bytes());
    aad.extend_from_slice(&(name.len() as u32).to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretValue {
        SecretValue::new(text.into())
    }

    #[test]
    fn sealed_values_open_only_for_their_owner_and_name() {
        let vault = SecretBox::from_key(&[7; 32]);
        let sealed = vault.seal("conn_1", "api-key", &secret("sk-live-123"));
        assert!(!sealed.ciphertext.windows(11).any(|w| w == b"sk-live-123"));
        assert_eq!(vault.open("conn_1", "api-key", &sealed).unwrap(), secret("sk-live-123"));
        assert_eq!(vault.open("conn_2", "api-key", &sealed), Err(OpenError));
        assert_eq!(vault.open("conn_1", "other", &sealed), Err(OpenError));
        assert_eq!(
            SecretBox::from_key(&[8; 32]).open("conn_1", "api-key", &sealed),
            Err(OpenError)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(vault.open("conn_1", "api-key", &tampered), Err(OpenError));
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let vault = SecretBox::from_key(&[7; 32]);
        let a = vault.seal("c", "n", &secret("same"));
        let b = vault.seal("c", "n", &secret("same"));
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn keys_are_checked_and_key_files_created_once() {
        assert!(SecretBox::from_base64("not base64!").is_err());
        assert!(SecretBox::from_base64(&BASE64.encode([1u8; 16])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let first = SecretBox::from_key_file(&path).unwrap();
        let sealed = first.seal("c", "n", &secret("v"));
        let again = SecretBox::from_key_file(&path).unwrap();
        assert_eq!(again.open("c", "n", &sealed).unwrap(), secret("v"));
        assert_eq!(format!("{again:?}"), "SecretBox(<key redacted>)");
        assert_eq!(again.fingerprint(), first.fingerprint());
        assert_ne!(SecretBox::from_key(&[1; 32]).fingerprint(), first.fingerprint());
        assert_eq!(format!("{:?}", secret("v")), "SecretValue(<redacted>)");
    }
}
