//! The audit trail's rules: who did what (an [`Actor`] and an [`Entry`]), the canonical form of a
//! record, and the chain that makes tampering evident. Each record stores
//! `hash = HMAC-SHA256(chain key, prev_hash ‖ canonical record)` — keyed with a key derived from
//! the operator's secrets key, which the database does not hold, so someone who can write to the
//! database cannot recompute the chain after changing a record. Records written by hosts from
//! before keying (before the head's `keyed_from`) are linked with plain SHA-256. [`verify_chain`]
//! walks records in order and names the first one that does not fit; signed [`Checkpoint`]s kept
//! outside the database catch records removed from the end.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ids::{SessionId, TokenId, UserId, WorkspaceId};
use super::time::Timestamp;

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What kind of actor made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A person, with their token.
    Person,
    /// A bot, with its token (e.g. a self-hosted wrapper).
    Bot,
    /// A connection plugin acting as its bot, inside a session.
    Plugin,
    /// The host itself (deliveries, timeouts, bootstrap).
    System,
}

impl ActorKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Person => "person",
            ActorKind::Bot => "bot",
            ActorKind::Plugin => "plugin",
            ActorKind::System => "system",
        }
    }
}

/// Who made a change, and through what request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actor {
    pub kind: Option<ActorKind>,
    pub id: Option<UserId>,
    pub workspace_id: Option<WorkspaceId>,
    pub token_id: Option<TokenId>,
    pub session_id: Option<SessionId>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    /// The host itself, in `workspace` (if the change belongs to one).
    pub fn system(workspace: Option<WorkspaceId>) -> Self {
        Self {
            kind: Some(ActorKind::System),
            workspace_id: workspace,
            ..Self::default()
        }
    }

    /// A plugin acting as `bot` in `session`.
    pub fn plugin(workspace: WorkspaceId, bot: UserId, session: SessionId) -> Self {
        Self {
            kind: Some(ActorKind::Plugin),
            id: Some(bot),
            workspace_id: Some(workspace),
            session_id: Some(session),
            ..Self::default()
        }
    }

    /// This actor, noted as acting within `session`.
    pub fn in_session(mut self, session: &SessionId) -> Self {
        self.session_id = Some(session.clone());
        self
    }

    /// The kind, `system` when unset.
    pub fn kind(&self) -> ActorKind {
        self.kind.unwrap_or(ActorKind::System)
    }
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Dotted verb, e.g. `task.update`, `bot.disable`, `session.activity.create`.
    pub action: &'static str,
    /// Kind of the changed object, e.g. `task`.
    pub target_kind: &'static str,
    pub target_id: Option<String>,
    /// What changed, without secrets.
    pub details: serde_json::Value,
}

impl Entry {
    /// An entry about `target_kind` `target_id`.
    pub fn new(
        action: &'static str,
        target_kind: &'static str,
        target_id: impl ToString,
        details: serde_json::Value,
    ) -> Self {
        Self {
            action,
            target_kind,
            target_id: Some(target_id.to_string()),
            details,
        }
    }
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub workspace_id: Option<String>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub token_id: Option<String>,
    pub session_id: Option<String>,
    pub action: String,
    pub target_kind: String,
    pub target_id: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// JSON text.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Record {
    /// The record's time.
    pub fn time(&self) -> Timestamp {
        Timestamp::from_millis(self.at)
    }

    /// The canonical text hashed into the chain: every field but the hashes, as a JSON array in a
    /// fixed order.
    pub fn canonical(&self) -> String {
        serde_json::json!([
            self.seq,
            self.id,
            self.at,
            self.workspace_id,
            self.actor_kind,
            self.actor_id,
            self.token_id,
            self.session_id,
            self.action,
            self.target_kind,
            self.target_id,
            self.request_id,
            self.ip,
            self.user_agent,
            self.details,
        ])
        .to_string()
    }

    /// The hash this record must carry given its `prev_hash`, in `chain`.
    pub fn expected_hash(&self, chain: &Chain<'_>) -> String {
        chain.link(self.seq, &self.prev_hash, &self.canonical())
    }
}

/// The key audit records are chained with. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(<redacted>)")
    }
}

/// How records link: from `keyed_from` on with the key, before it (records of older hosts) with
/// plain SHA-256.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a> {
    pub key: &'a ChainKey,
    /// The first sequence number linked with the key.
    pub keyed_from: i64,
}

impl Chain<'_> {
    /// The hash of record `seq` with `canonical` content after `prev_hash`.
    pub fn link(&self, seq: i64, prev_hash: &str, canonical: &str) -> String {
        if seq >= self.keyed_from {
            keyed_hash(self.key, prev_hash, canonical)
        } else {
            plain_hash(prev_hash, canonical)
        }
    }
}

/// `hex(HMAC-SHA256(key, prev_hash ‖ canonical))`.
fn keyed_hash(key: &ChainKey, prev_hash: &str, canonical: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(prev_hash.as_bytes());
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `hex(SHA-256(prev_hash ‖ canonical))`: the link of records from before keying.
fn plain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// A signed statement of the chain's head at a moment, kept outside the database: a later
/// verification finds the records it covers unchanged and none of them removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The last record covered.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// The chain's `keyed_from` then.
    pub keyed_from: i64,
    /// When it was made (ms since the epoch).
    pub at: i64,
}

impl Checkpoint {
    /// The bytes its signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "leadtime audit checkpoint v1\n{}\n{}\n{}\n{}",
            self.seq, self.hash, self.keyed_from, self.at
        )
        .into_bytes()
    }
}

/// The first record that breaks the chain, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record #{seq} ({id}) is broken: {reason}")]
pub struct BrokenLink {
    pub seq: i64,
    pub id: String,
    pub reason: String,
}

/// Walks records (in `seq` order, continuing after `previous` = `(seq, hash)` of the record
/// before them) and returns the last `(seq, hash)`, or the first broken link.
pub fn verify_chain<'a>(
    previous: (i64, String),
    records: impl IntoIterator<Item = &'a Record>,
    chain: &Chain<'_>,
) -> Result<(i64, String), BrokenLink> {
    let (mut seq, mut hash) = previous;
    for record in records {
        let broken = |reason: String| BrokenLink {
            seq: record.seq,
            id: record.id.clone(),
            reason,
        };
        if record.seq != seq + 1 {
            return Err(broken(format!(
                "expected record #{} next; records #{}–#{} are missing",
                seq + 1,
                seq + 1,
                record.seq - 1
            )));
        }
        if record.prev_hash != hash {
            return Err(broken(
                "its prev_hash does not match the record before it (a record was removed or replaced)".into(),
            ));
        }
        if record.hash != record.expected_hash(chain) {
            return Err(broken(
                "its content does not match its hash (it was changed after it was written, or its hash was \
                 recomputed without the chain key)"
                    .into(),
            ));
        }
        seq = record.seq;
        hash = record.hash.clone();
    }
    Ok((seq, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChainKey {
        ChainKey::new([7; 32])
    }

    fn chain_rules(key: &ChainKey) -> Chain<'_> {
        Chain { key, keyed_from: 3 }
    }

    fn record(seq: i64, prev_hash: &str, action: &str) -> Record {
        let mut r = Record {
            seq,
            id: format!("aud_{seq}"),
            at: 1000 + seq,
            workspace_id: Some("ws_1".into()),
            actor_kind: "person".into(),
            actor_id: Some("usr_1".into()),
            token_id: Some("tok_1".into()),
            session_id: None,
            action: action.into(),
            target_kind: "task".into(),
            target_id: Some("tsk_1".into()),
            request_id: Some("req_1".into()),
            ip: Some("127.0.0.1".into()),
            user_agent: Some("curl".into()),
            details: "{}".into(),
            prev_hash: prev_hash.into(),
            hash: String::new(),
        };
        r.hash = r.expected_hash(&chain_rules(&key()));
        r
    }

    fn chain(n: i64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=n {
            let prev = out
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| GENESIS_HASH.into());
            out.push(record(seq, &prev, "task.update"));
        }
        out
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = chain(5);
        let (seq, hash) = verify_chain((0, GENESIS_HASH.into()), &records, &chain_rules(&key())).unwrap();
        assert_eq!(seq, 5);
        assert_eq!(hash, records[4].hash);
    }

    #[test]
    fn a_changed_record_is_named() {
        let mut records = chain(5);
        records[2].details = r#"{"title":"changed"}"#.into();
        let broken = verify_chain((0, GENESIS_HASH.into()), &records, &chain_rules(&key())).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("changed after it was written"));
    }

    #[test]
    fn a_rehashed_record_breaks_the_next_link() {
        let mut records = chain(5);
        records[2].action = "task.delete".into();
        records[2].hash = records[2].expected_hash(&chain_rules(&key()));
        let broken = verify_chain((0, GENESIS_HASH.into()), &records, &chain_rules(&key())).unwrap_err();
        assert_eq!(broken.seq, 4);
    }

    #[test]
    fn a_record_rehashed_without_the_key_is_refused() {
        let mut records = chain(5);
        let other = ChainKey::new([8; 32]);
        records[3].details = r#"{"title":"changed"}"#.into();
        records[3].hash = records[3].expected_hash(&chain_rules(&other));
        let broken = verify_chain((0, GENESIS_HASH.into()), &records, &chain_rules(&key())).unwrap_err();
        assert_eq!(broken.seq, 4);
        assert!(broken.reason.contains("without the chain key"), "{broken}");
        // Records before keying use plain SHA-256 and are checked that way.
        assert_ne!(
            records[0].hash,
            records[0].expected_hash(&chain_rules(&other)).to_uppercase()
        );
        assert_eq!(records[0].hash, records[0].expected_hash(&chain_rules(&other)));
    }

    #[test]
    fn a_missing_record_is_named() {
        let mut records = chain(5);
        records.remove(1);
        let broken = verify_chain((0, GENESIS_HASH.into()), &records, &chain_rules(&key())).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("missing"));
    }
}
