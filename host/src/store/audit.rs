//! The append-only, hash-chained audit trail.

use futures_util::FutureExt;

use crate::domain::audit::{Actor, Chain, ChainKey, Entry, Record};
use crate::domain::ids::new_id;
use crate::domain::time::Timestamp;

use super::{Backend, Conn, StoreError, Tx, json_rows};

const COLUMNS: &str = "seq, id, at, workspace_id, actor_kind, actor_id, token_id, session_id, action, target_kind, \
     target_id, request_id, ip, user_agent, details, prev_hash, hash";

/// Appends one record, in the caller's transaction, chained with `key`. Locking the chain head
/// serializes writers, so sequence numbers are consecutive and each record links to the one
/// committed before it.
pub async fn append(
    conn: &mut Conn,
    key: &ChainKey,
    actor: &Actor,
    entry: &Entry,
    at: Timestamp,
) -> Result<(), StoreError> {
    append_many(conn, key, &[(actor.clone(), entry.clone(), at)]).await
}

/// Appends `entries` (actor, entry, time) in order, in the caller's transaction, with one update of
/// the chain head for all of them: a group-committed batch takes the head's lock once, at its end.
pub async fn append_many(
    conn: &mut Conn,
    key: &ChainKey,
    entries: &[(Actor, Entry, Timestamp)],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    // Takes the numbers (locking the head until the transaction ends) and answers the head as it
    // was before them.
    let before: Head =
        sqlx::query_as("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq - $1 AS seq, hash, keyed_from")
            .bind(entries.len() as i64)
            .fetch_one(&mut *conn)
            .await?;
    append_reserved(conn, key, &before, entries).await
}

/// Writes `entries` after `before`, the head as it was before the caller took their sequence
/// numbers (locked), each hashed onto the one before, and moves the head's hash to the last.
async fn append_reserved(
    conn: &mut Conn,
    key: &ChainKey,
    before: &Head,
    entries: &[(Actor, Entry, Timestamp)],
) -> Result<(), StoreError> {
    let (records, after) = chained(key, before, entries);
    if conn.is_postgres() {
        // The records and the head's new hash in one statement (see `json_rows`).
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "WITH records AS ({}) UPDATE audit_head SET hash = $2 WHERE id = 1",
                super::json_rows::insert_sql("audit_log", COLUMNS, 1)
            )
        });
        let rows: Vec<RecordRow> = records.iter().map(RecordRow::of).collect();
        sqlx::query(&SQL)
            .bind(super::json_rows::encode(&rows)?)
            .bind(&after.hash)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    // 17 parameters a row; 50 rows stay far below every backend's limit.
    for chunk in records.chunks(50) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let cols: Vec<String> = (1..=17).map(|c| format!("${}", r * 17 + c)).collect();
                format!("({})", cols.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO audit_log ({COLUMNS}) VALUES {}", rows.join(", "));
        let mut query = sqlx::query(&sql);
        for record in chunk {
            query = query
                .bind(record.seq)
                .bind(&record.id)
                .bind(record.at)
                .bind(record.workspace_id.as_deref())
                .bind(&record.actor_kind)
                .bind(record.actor_id.as_deref())
                .bind(record.token_id.as_deref())
                .bind(record.session_id.as_deref())
                .bind(&record.action)
                .bind(&record.target_kind)
                .bind(record.target_id.as_deref())
                .bind(record.request_id.as_deref())
                .bind(record.ip.as_deref())
                .bind(record.user_agent.as_deref())
                .bind(&record.details)
                .bind(&record.prev_hash)
                .bind(&record.hash);
        }
        query.execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&after.hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The chain head: the last sequence number taken, its record's hash, and the first sequence
/// number linked with the chain key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct Head {
    seq: i64,
    hash: String,
    keyed_from: i64,
}

/// `entries` as the records that follow `head`, each hashed onto the one before, and the head
/// after the last of them.
fn chained(key: &ChainKey, head: &Head, entries: &[(Actor, Entry, Timestamp)]) -> (Vec<Record>, Head) {
    let chain = Chain {
        key,
        keyed_from: head.keyed_from,
    };
    let mut prev_hash = head.hash.clone();
    let mut records = Vec::with_capacity(entries.len());
    for (n, (actor, entry, at)) in entries.iter().enumerate() {
        let mut record = new_record(head.seq + 1 + n as i64, actor, entry, *at, prev_hash);
        record.hash = record.expected_hash(&chain);
        prev_hash = record.hash.clone();
        records.push(record);
    }
    let after = Head {
        seq: head.seq + entries.len() as i64,
        hash: prev_hash,
        keyed_from: head.keyed_from,
    };
    (records, after)
}

/// The chain head as this process's group-commit writers last moved it, so that on PostgreSQL a
/// batch appends its records, moves the head and commits in **one** message to the server (the
/// statements its transaction left for the commit, `append_audit_batch(…)`, `COMMIT`), and the
/// head's row lock is held only from that call to the commit's end, with no turn of the host's
/// between them.
///
/// A batch takes the in-process lock, hashes its records onto the head it holds (read with the
/// row locked, if no batch left one), notes its own head as the next batch's, sends the message,
/// and lets the in-process lock go once the message is sent: the next batch hashes onto this
/// one's head before it committed, and its call waits in PostgreSQL for the row until this one
/// committed. The call writes only if the head still is what its batch believes; otherwise
/// (another process, or a use case that appends on its own with [`append`], moved it, or the batch
/// hashed onto rolled back or has not reached its call yet) it fails as a serialization failure,
/// the `COMMIT` sent with it is not run, the next batch reads the head afresh, and this one runs
/// again. So batches queue for the head row for their call and their `COMMIT`, one after another
/// without a round trip between.
///
/// Why this cannot deadlock unseen (PostgreSQL sees only its own locks): a holder of the
/// in-process lock waits in PostgreSQL only when it reads the head, for the row, and whoever holds
/// that row only commits next — a batch past its call, or a transaction that appended on its own
/// with [`append`], which every such use case calls last, right before it commits. A batch whose
/// message waits for another's locks holds no in-process lock.
#[derive(Debug, Default)]
pub struct ChainHead(tokio::sync::Mutex<Option<Head>>);

impl ChainHead {
    /// Appends `entries` in order to the chain keyed with `key`, in `tx`, and commits it: on
    /// PostgreSQL as above, on SQLite (whose one writer holds the database's write lock anyway)
    /// with [`append_many`] and a commit. With `read_afresh` (a batch that runs again) the head is
    /// read with its row locked whatever the last batch left, so the call cannot fail for it.
    pub async fn append_and_commit(
        &self,
        mut tx: Tx,
        key: &ChainKey,
        entries: &[(Actor, Entry, Timestamp)],
        read_afresh: bool,
    ) -> Result<(), StoreError> {
        if entries.is_empty() || !tx.is_postgres() {
            append_many(&mut tx, key, entries).await?;
            return Ok(tx.commit().await?);
        }
        let mut cached = self.0.lock().await;
        // Taken out: if reading the head fails, the next batch reads it afresh.
        let head = match cached.take().filter(|_| !read_afresh) {
            Some(head) => head,
            None => {
                sqlx::query_as("SELECT seq, hash, keyed_from FROM audit_head WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        let (records, after) = chained(key, &head, entries);
        let rows: Vec<RecordRow> = records.iter().map(RecordRow::of).collect();
        let call = format!(
            "SELECT append_audit_batch({}::json, {}::bigint, {}, {}::bigint, {}::bigint, {})",
            json_rows::literal(&json_rows::encode(&rows)?),
            head.seq,
            json_rows::literal(&head.hash),
            head.keyed_from,
            after.seq,
            json_rows::literal(&after.hash),
        );
        *cached = Some(after);
        let committing = tx.commit_after(Some(call));
        let mut committing = std::pin::pin!(committing);
        // One poll sends the message (the connection is idle and its socket takes a few KB at
        // once), then the next batch may go on. Were it not sent yet, the next batch's call could
        // reach the server first and find the head where this one's must: it would run again.
        // (The poll's waker is a no-op; awaiting polls again with the task's.)
        let first = committing.as_mut().now_or_never();
        drop(cached);
        let committed = match first {
            Some(committed) => committed,
            None => committing.await,
        };
        if let Err(error) = committed {
            // The head is not what the next batch was told: it reads it afresh.
            *self.0.lock().await = None;
            return Err(error.into());
        }
        Ok(())
    }
}

/// A record as a row of [`super::json_rows`] (its columns by name, unlike [`Record`]'s API form).
#[derive(serde::Serialize)]
struct RecordRow<'a> {
    seq: i64,
    id: &'a str,
    at: i64,
    workspace_id: Option<&'a str>,
    actor_kind: &'a str,
    actor_id: Option<&'a str>,
    token_id: Option<&'a str>,
    session_id: Option<&'a str>,
    action: &'a str,
    target_kind: &'a str,
    target_id: Option<&'a str>,
    request_id: Option<&'a str>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    details: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> RecordRow<'a> {
    fn of(r: &'a Record) -> Self {
        RecordRow {
            seq: r.seq,
            id: &r.id,
            at: r.at,
            workspace_id: r.workspace_id.as_deref(),
            actor_kind: &r.actor_kind,
            actor_id: r.actor_id.as_deref(),
            token_id: r.token_id.as_deref(),
            session_id: r.session_id.as_deref(),
            action: &r.action,
            target_kind: &r.target_kind,
            target_id: r.target_id.as_deref(),
            request_id: r.request_id.as_deref(),
            ip: r.ip.as_deref(),
            user_agent: r.user_agent.as_deref(),
            details: &r.details,
            prev_hash: &r.prev_hash,
            hash: &r.hash,
        }
    }
}

/// A record of `entry` by `actor` at `at`, at `seq` after `prev_hash`, not yet hashed.
fn new_record(seq: i64, actor: &Actor, entry: &Entry, at: Timestamp, prev_hash: String) -> Record {
    Record {
        seq,
        id: new_id("aud"),
        at: at.millis(),
        workspace_id: actor.workspace_id.as_ref().map(ToString::to_string),
        actor_kind: actor.kind().as_str().to_owned(),
        actor_id: actor.id.as_ref().map(ToString::to_string),
        token_id: actor.token_id.as_ref().map(ToString::to_string),
        session_id: actor.session_id.as_ref().map(ToString::to_string),
        action: entry.action.to_owned(),
        target_kind: entry.target_kind.to_owned(),
        target_id: entry.target_id.clone(),
        request_id: actor.request_id.clone(),
        ip: actor.ip.clone(),
        user_agent: actor.user_agent.clone(),
        details: entry.details.to_string(),
        prev_hash,
        hash: String::new(),
    }
}

/// Filters of an audit query.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub workspace_id: String,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
    pub session_id: Option<String>,
    /// Records at or after this time (ms).
    pub since: Option<i64>,
    /// Records before this time (ms).
    pub until: Option<i64>,
    /// Records with `seq` below this (the previous page's cursor); newest first.
    pub before_seq: Option<i64>,
}

/// A page of one workspace's records, newest first.
pub async fn page(conn: &mut Conn, filter: &Filter, limit: i64) -> Result<Vec<Record>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE workspace_id = $1 \
         AND ($2 = '' OR actor_id = $2) AND ($3 = '' OR action = $3) AND ($4 = '' OR target_id = $4) \
         AND ($5 = '' OR session_id = $5) AND at >= $6 AND at < $7 AND seq < $8 \
         ORDER BY seq DESC LIMIT $9"
    ))
    .bind(&filter.workspace_id)
    .bind(filter.actor_id.as_deref().unwrap_or(""))
    .bind(filter.action.as_deref().unwrap_or(""))
    .bind(filter.target_id.as_deref().unwrap_or(""))
    .bind(filter.session_id.as_deref().unwrap_or(""))
    .bind(filter.since.unwrap_or(i64::MIN))
    .bind(filter.until.unwrap_or(i64::MAX))
    .bind(filter.before_seq.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Up to `limit` records after `after_seq`, in chain order (for verification).
pub async fn after(conn: &mut Conn, after_seq: i64, limit: i64) -> Result<Vec<Record>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(after_seq)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The chain head: the last sequence number handed out, its hash, and the first sequence number
/// linked with the chain key.
pub async fn head(conn: &mut Conn) -> Result<(i64, String, i64), StoreError> {
    Ok(
        sqlx::query_as("SELECT seq, hash, keyed_from FROM audit_head WHERE id = 1")
            .fetch_one(conn)
            .await?,
    )
}

/// The names of the triggers that keep `audit_log` append-only and are in force.
pub async fn guard_triggers(conn: &mut Conn, backend: Backend) -> Result<Vec<String>, StoreError> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT t.tgname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE c.relname = 'audit_log' AND NOT t.tgisinternal AND t.tgenabled <> 'D' ORDER BY 1"
        }
    };
    Ok(sqlx::query_scalar(sql).fetch_all(conn).await?)
}
