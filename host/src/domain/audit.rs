//! The audit trail's rules: who did what (an [`Actor`] and an [`Entry`]), the canonical form of a
//! record, and the hash chain that makes tampering evident. Each record stores
//! `hash = SHA-256(prev_hash ‖ canonical record)`; [`verify_chain`] walks records in order and
//! names the first one that does not fit.

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

    /// The hash this record must carry given its `prev_hash`.
    pub fn expected_hash(&self) -> String {
        chain_hash(&self.prev_hash, &self.canonical())
    }
}

/// `hex(SHA-256(prev_hash ‖ canonical))`.
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
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
        if record.hash != record.expected_hash() {
            return Err(broken(
                "its content does not match its hash (it was changed after it was written)".into(),
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
        r.hash = r.expected_hash();
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
        let (seq, hash) = verify_chain((0, GENESIS_HASH.into()), &records).unwrap();
        assert_eq!(seq, 5);
        assert_eq!(hash, records[4].hash);
    }

    #[test]
    fn a_changed_record_is_named() {
        let mut records = chain(5);
        records[2].details = r#"{"title":"changed"}"#.into();
        let broken = verify_chain((0, GENESIS_HASH.into()), &records).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("changed after it was written"));
    }

    #[test]
    fn a_rehashed_record_breaks_the_next_link() {
        let mut records = chain(5);
        records[2].action = "task.delete".into();
        records[2].hash = records[2].expected_hash();
        let broken = verify_chain((0, GENESIS_HASH.into()), &records).unwrap_err();
        assert_eq!(broken.seq, 4);
    }

    #[test]
    fn a_missing_record_is_named() {
        let mut records = chain(5);
        records.remove(1);
        let broken = verify_chain((0, GENESIS_HASH.into()), &records).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("missing"));
    }
}
