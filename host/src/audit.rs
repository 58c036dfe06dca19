//! Recording and verifying the audit trail. Every use case that changes something appends one
//! record in its own transaction ([`record`]); [`verify`] walks the whole chain.

use crate::config::Config;
pub use crate::domain::audit::{Actor, ActorKind, BrokenLink, Entry};
use crate::domain::audit::{GENESIS_HASH, verify_chain};
use crate::domain::time::Timestamp;
use crate::store::{self, Conn, Db, StoreError};

/// Appends `entry` by `actor` at `at`, in the caller's transaction.
pub async fn record(conn: &mut Conn, actor: &Actor, entry: Entry, at: Timestamp) -> Result<(), StoreError> {
    store::audit::append(conn, actor, &entry, at).await.map(|_| ())
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: i64,
    /// The hash of the last record (or the genesis hash for an empty trail).
    pub head_hash: String,
}

/// Records read per query while verifying.
const BATCH: i64 = 1_000;

/// Recomputes every link of the chain, in order, and checks the chain head. Returns the first
/// broken record, if any.
pub async fn verify(db: &Db) -> Result<Result<Verified, BrokenLink>, StoreError> {
    let mut conn = db.read().await?;
    let mut last = (0_i64, GENESIS_HASH.to_owned());
    loop {
        let batch = store::audit::after(&mut conn, last.0, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        last = match verify_chain(last, &batch) {
            Ok(next) => next,
            Err(broken) => return Ok(Err(broken)),
        };
    }
    let (head_seq, head_hash) = store::audit::head(&mut conn).await?;
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
    }))
}

/// Opens the database of `config` (no plugins, no server) and verifies its audit trail.
pub async fn verify_database(config: &Config) -> anyhow::Result<Result<Verified, BrokenLink>> {
    let db = Db::connect(&config.database_url).await?;
    let outcome = verify(&db).await;
    db.close().await;
    Ok(outcome?)
}
