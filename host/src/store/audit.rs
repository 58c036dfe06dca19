//! The append-only, hash-chained audit trail.

use crate::domain::audit::{Actor, Chain, ChainKey, Entry, Record};
use crate::domain::ids::new_id;
use crate::domain::time::Timestamp;

use super::{Backend, Conn, StoreError};

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
/// batch appends its records and moves the head in **one** statement, taking the head's row lock
/// only there, instead of reserving numbers in one statement and writing records in the next
/// while holding it.
///
/// A batch takes the in-process lock, hashes its records onto the head it holds, and sends the
/// statement, which moves the head only if it still is what the batch believes (another
/// process, or a use case that appends on its own with [`append`], may have moved it) and
/// inserts the records only then; it answers the head as it found it. On a mismatch the head is
/// now locked by the batch, so the second try with what it answered succeeds. The in-process lock
/// is let go as soon as the statement answered, before the batch commits: the next batch hashes
/// onto this one's uncommitted head and its statement waits in PostgreSQL for this one's commit
/// (and finds the head moved, and tries again, if this one rolled back). So batches queue for the
/// head row for their last statement's end and their `COMMIT`, not three statements.
///
/// Why this cannot deadlock unseen (PostgreSQL sees only its own locks): the statement a holder of
/// the in-process lock waits in only waits for the head row, and whoever holds that row only
/// commits next — a batch past this statement, or a transaction that appended on its own with
/// [`append`], which every such use case calls last, right before it commits.
#[derive(Debug, Default)]
pub struct ChainHead(tokio::sync::Mutex<Option<Head>>);

impl ChainHead {
    /// Appends `entries` in order, in the caller's transaction, chained with `key`: on PostgreSQL
    /// as above, on SQLite (whose one writer holds the database's write lock anyway) with
    /// [`append_many`].
    pub async fn append(
        &self,
        conn: &mut Conn,
        key: &ChainKey,
        entries: &[(Actor, Entry, Timestamp)],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        if !conn.is_postgres() {
            return append_many(conn, key, entries).await;
        }
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            // Every expression of `SET` reads the row as it was; a statement that waited for the
            // row's lock reads it as the holder committed it.
            let as_believed = "seq = $2 AND hash = $3 AND keyed_from = $4";
            format!(
                "WITH head AS (UPDATE audit_head SET seq = CASE WHEN {as_believed} THEN $5 ELSE seq END, \
                 hash = CASE WHEN {as_believed} THEN $6 ELSE hash END WHERE id = 1 RETURNING seq, hash, keyed_from), \
                 records AS ({} WHERE EXISTS (SELECT 1 FROM head WHERE seq = $5 AND hash = $6)) \
                 SELECT seq, hash, keyed_from FROM head",
                super::json_rows::insert_sql("audit_log", COLUMNS, 1)
            )
        });
        let mut cached = self.0.lock().await;
        // Taken out: after a failed statement the next batch reads the head afresh.
        let mut head = match cached.take() {
            Some(head) => head,
            None => {
                sqlx::query_as("SELECT seq, hash, keyed_from FROM audit_head WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        // Twice at most: a statement that found the head moved locked it, so the second finds
        // what the first answered.
        for _ in 0..2 {
            let (records, after) = chained(key, &head, entries);
            let rows: Vec<RecordRow> = records.iter().map(RecordRow::of).collect();
            let found: Head = sqlx::query_as(&SQL)
                .bind(super::json_rows::encode(&rows)?)
                .bind(head.seq)
                .bind(&head.hash)
                .bind(head.keyed_from)
                .bind(after.seq)
                .bind(&after.hash)
                .fetch_one(&mut *conn)
                .await?;
            if found == after {
                *cached = Some(after);
                return Ok(());
            }
            tracing::debug!(
                believed = head.seq,
                found = found.seq,
                "the audit chain head was moved elsewhere"
            );
            head = found;
        }
        Err(StoreError::Database(sqlx::Error::Protocol(
            "the audit chain head moved while this transaction held it".into(),
        )))
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
