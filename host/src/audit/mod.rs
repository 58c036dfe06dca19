//! Recording and verifying the audit trail. Every use case that changes something appends one
//! record in its own transaction ([`record`]), chained with a key derived from the operator's
//! secrets key; [`checkpoints`] regularly signs the chain's head into files outside the database;
//! [`verify`] walks the whole chain against both.
//!
//! What this protects against, and what not: someone who can write to the database but does not
//! have the secrets key cannot change, insert or re-chain records without `verify` naming the
//! first one; cannot remove records covered by a checkpoint (checkpoints are written every few
//! seconds and at shutdown), or switch off the append-only triggers, unnoticed. They *can* remove
//! records written after the newest checkpoint together with the head, and delete the checkpoint
//! files themselves if those live on the same machine — so ship the checkpoint directory somewhere
//! they cannot write (another host, object storage with retention). Someone with the secrets key
//! as well can forge everything; keep it off the database's machine and backups.

pub mod checkpoints;

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::Config;
pub use crate::domain::audit::{Actor, ActorKind, BrokenLink, Entry};
use crate::domain::audit::{Chain, ChainKey, GENESIS_HASH, verify_chain};
use crate::domain::time::Timestamp;
use crate::secrets::SecretBox;
use crate::store::{self, Backend, Conn, Db, StoreError};

/// The keys of the audit trail: the chain key and the checkpoint signing key, both derived from
/// the operator's secrets key. `Debug` shows neither.
#[derive(Clone)]
pub struct AuditKeys {
    pub(crate) chain: ChainKey,
    signing: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("checkpoint_public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// The keys derived from `secrets`.
    pub fn derive(secrets: &SecretBox) -> Self {
        Self {
            chain: ChainKey::new(secrets.derive_key("audit chain")),
            signing: ed25519_dalek::SigningKey::from_bytes(&secrets.derive_key("audit checkpoint signing")),
        }
    }

    /// The public key checkpoints verify with (base64), for auditors who hold no secret.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.signing.verifying_key().as_bytes())
    }

    pub(crate) fn signing(&self) -> &ed25519_dalek::SigningKey {
        &self.signing
    }
}

/// Appends `entry` by `actor` at `at`, in the caller's transaction, chained with `keys`. Call it
/// last, right before the transaction commits: it locks the chain head, which every other write
/// of the trail waits for (and the group-commit writers rely on its holder only committing next,
/// see [`store::audit::ChainHead`]).
pub async fn record(
    conn: &mut Conn,
    keys: &AuditKeys,
    actor: &Actor,
    entry: Entry,
    at: Timestamp,
) -> Result<(), StoreError> {
    store::audit::append(conn, &keys.chain, actor, &entry, at).await
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: i64,
    /// The hash of the last record (or the genesis hash for an empty trail).
    pub head_hash: String,
    /// Signed checkpoints found and checked.
    pub checkpoints: usize,
    /// The last record the newest checkpoint covers (0 without checkpoints).
    pub covered_to: i64,
}

/// Records read per query while verifying.
const BATCH: i64 = 1_000;

/// The triggers that keep `audit_log` append-only on each backend.
fn guard_triggers(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Sqlite => &["audit_log_no_delete", "audit_log_no_update"],
        Backend::Postgres => &["audit_log_no_truncate", "audit_log_no_update"],
    }
}

/// A problem that is not about one record.
fn broken(reason: String) -> BrokenLink {
    BrokenLink {
        seq: 0,
        id: "-".into(),
        reason,
    }
}

/// Checks the append-only triggers, the checkpoints in `checkpoint_dir` (signatures, and that the
/// chain still holds each one's record with its hash), every link of the chain in order, and the
/// chain head. Returns the first problem found, if any.
pub async fn verify(
    db: &Db,
    keys: &AuditKeys,
    checkpoint_dir: Option<&Path>,
) -> Result<Result<Verified, BrokenLink>, StoreError> {
    let mut conn = db.read().await?;
    let present = store::audit::guard_triggers(&mut conn, db.backend()).await?;
    let missing: Vec<&str> = guard_triggers(db.backend())
        .iter()
        .copied()
        .filter(|t| !present.iter().any(|p| p == t))
        .collect();
    if !missing.is_empty() {
        return Ok(Err(broken(format!(
            "the triggers that keep audit_log append-only are missing or disabled ({}): someone with \
             database owner rights switched them off",
            missing.join(", ")
        ))));
    }
    let (head_seq, head_hash, keyed_from) = store::audit::head(&mut conn).await?;

    let signed = match checkpoint_dir {
        Some(dir) => match checkpoints::read_verified(dir, keys) {
            Ok(list) => list,
            Err(problem) => return Ok(Err(broken(problem))),
        },
        None => Vec::new(),
    };
    let newest = signed.iter().max_by_key(|c| c.seq).cloned();
    if let Some(newest) = &newest {
        if newest.keyed_from != keyed_from {
            return Ok(Err(broken(format!(
                "the chain says it is keyed from record #{keyed_from}, but the checkpoint of {} says #{}: the \
                 chain's head was altered",
                Timestamp::from_millis(newest.at).to_iso(),
                newest.keyed_from
            ))));
        }
        if newest.seq > head_seq {
            return Ok(Err(BrokenLink {
                seq: head_seq + 1,
                id: "-".into(),
                reason: format!(
                    "the checkpoint of {} covers records up to #{}, but the chain ends at #{head_seq}: records at \
                     the end were removed",
                    Timestamp::from_millis(newest.at).to_iso(),
                    newest.seq
                ),
            }));
        }
    }
    let expected: HashMap<i64, (String, i64)> = signed.iter().map(|c| (c.seq, (c.hash.clone(), c.at))).collect();

    let chain = Chain {
        key: &keys.chain,
        keyed_from,
    };
    let mut last = (0_i64, GENESIS_HASH.to_owned());
    loop {
        let batch = store::audit::after(&mut conn, last.0, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        last = match verify_chain(last, &batch, &chain) {
            Ok(next) => next,
            Err(broken) => return Ok(Err(broken)),
        };
        for record in &batch {
            if let Some((hash, at)) = expected.get(&record.seq)
                && *hash != record.hash
            {
                return Ok(Err(BrokenLink {
                    seq: record.seq,
                    id: record.id.clone(),
                    reason: format!(
                        "it differs from the checkpoint signed at {}: it, or a record before it, was replaced",
                        Timestamp::from_millis(*at).to_iso()
                    ),
                }));
            }
        }
    }
    if head_seq != last.0 || head_hash != last.1 {
        return Ok(Err(BrokenLink {
            seq: last.0 + 1,
            id: "-".into(),
            reason: format!(
                "the chain ends at record #{} but its head says #{head_seq}: records at the end were removed or the head was altered",
                last.0
            ),
        }));
    }
    Ok(Ok(Verified {
        records: last.0,
        head_hash: last.1,
        checkpoints: signed.len(),
        covered_to: newest.map(|c| c.seq).unwrap_or(0),
    }))
}

/// Opens the database and secrets key of `config` (no plugins, no server) and verifies its audit
/// trail against the checkpoints in `config.audit_checkpoint_dir`.
pub async fn verify_database(config: &Config) -> anyhow::Result<Result<Verified, BrokenLink>> {
    let db = Db::connect(&config.database_url).await?;
    let secrets = match &config.secrets_key {
        Some(key) => SecretBox::from_base64(key.expose())?,
        None if config.secrets_key_file.exists() => SecretBox::from_key_file(&config.secrets_key_file)?,
        None => anyhow::bail!(
            "the audit chain is keyed with the secrets key: set LEADTIME_SECRETS_KEY or point \
             --secrets-key-file (default <data dir>/secrets.key) at the host's key file"
        ),
    };
    let keys = AuditKeys::derive(&secrets);
    let outcome = verify(&db, &keys, Some(&config.audit_checkpoint_dir)).await;
    db.close().await;
    Ok(outcome?)
}
