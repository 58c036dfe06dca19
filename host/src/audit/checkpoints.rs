//! Signed checkpoints of the audit chain, kept outside the database (the CloudTrail digest model):
//! every few seconds, when the chain moved, the host appends `{seq, hash, keyedFrom, at,
//! signature}` — an Ed25519 signature under a key derived from the secrets key — as one line of
//! `checkpoints.jsonl` in the checkpoint directory, and writes the public key beside it
//! (`public-key.txt`) so an auditor can check the lines without any secret.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};

use super::AuditKeys;
use crate::domain::audit::Checkpoint;
use crate::domain::time::Timestamp;
use crate::store::{self, Db};

/// The append-only file of signed checkpoints.
pub const CHECKPOINT_FILE: &str = "checkpoints.jsonl";
/// The public key the checkpoints verify with (base64 of the Ed25519 key).
pub const PUBLIC_KEY_FILE: &str = "public-key.txt";

/// One line of the checkpoint file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedLine {
    #[serde(flatten)]
    checkpoint: Checkpoint,
    /// Base64 of the Ed25519 signature of [`Checkpoint::signed_bytes`].
    signature: String,
}

fn file_in(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

/// Signs `checkpoint` and appends it to the file in `dir` (created if needed), flushed to disk.
pub fn append(dir: &Path, keys: &AuditKeys, checkpoint: Checkpoint) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let public_key = dir.join(PUBLIC_KEY_FILE);
    let expected = format!("{}\n", keys.public_key_base64());
    if std::fs::read_to_string(&public_key).ok().as_deref() != Some(expected.as_str()) {
        std::fs::write(&public_key, &expected)?;
    }
    let signature = keys.signing().sign(&checkpoint.signed_bytes());
    let line = SignedLine {
        checkpoint,
        signature: BASE64.encode(signature.to_bytes()),
    };
    let mut text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file_in(dir))?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// The checkpoints in `dir`, each checked against `keys`' public key; the first line that is not
/// a checkpoint signed with it is the error. No file: no checkpoints.
pub fn read_verified(dir: &Path, keys: &AuditKeys) -> Result<Vec<Checkpoint>, String> {
    let path = file_in(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("cannot read the checkpoint file {}: {error}", path.display())),
    };
    let verifying = keys.signing().verifying_key();
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let number = index + 1;
        let signed: SignedLine = serde_json::from_str(line)
            .map_err(|e| format!("line {number} of {} is not a checkpoint: {e}", path.display()))?;
        let signature = BASE64
            .decode(&signed.signature)
            .ok()
            .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok());
        let valid = signature.is_some_and(|s| verifying.verify(&signed.checkpoint.signed_bytes(), &s).is_ok());
        if !valid {
            return Err(format!(
                "line {number} of {} is not signed with this host's key: the checkpoint file was altered (or \
                 belongs to a host with another secrets key)",
                path.display()
            ));
        }
        out.push(signed.checkpoint);
    }
    Ok(out)
}

/// The newest checkpoint in `dir` (signature unchecked: for knowing where to resume).
fn newest(dir: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(file_in(dir)).ok()?;
    text.lines()
        .rev()
        .find_map(|line| serde_json::from_str::<SignedLine>(line).ok())
        .map(|l| l.checkpoint)
}

/// Writes checkpoints for one host: each time it is asked and the chain moved since the last one.
#[derive(Debug)]
pub struct CheckpointWriter {
    dir: PathBuf,
    last: Option<(i64, String)>,
}

impl CheckpointWriter {
    /// A writer into `dir`, resuming after the newest checkpoint already there.
    pub fn new(dir: PathBuf) -> Self {
        let last = newest(&dir).map(|c| (c.seq, c.hash));
        Self { dir, last }
    }

    /// Signs (with `keys`) and appends the head of `db`'s chain if it moved; the checkpoint
    /// written, if any.
    pub async fn write_if_moved(
        &mut self,
        db: &Db,
        keys: &AuditKeys,
        now: Timestamp,
    ) -> anyhow::Result<Option<Checkpoint>> {
        let (seq, hash, keyed_from) = {
            let mut conn = db.read().await?;
            store::audit::head(&mut conn).await?
        };
        if seq == 0 || self.last.as_ref() == Some(&(seq, hash.clone())) {
            return Ok(None);
        }
        let checkpoint = Checkpoint {
            seq,
            hash: hash.clone(),
            keyed_from,
            at: now.millis(),
        };
        let (dir, keys, written) = (self.dir.clone(), keys.clone(), checkpoint.clone());
        tokio::task::spawn_blocking(move || append(&dir, &keys, written)).await??;
        self.last = Some((seq, hash));
        Ok(Some(checkpoint))
    }
}
