//! API tokens and their users as authentication last read them, so a client's requests do not
//! each read its token (a statement and a pool connection per request: under load the most
//! frequent query after the writes themselves).
//!
//! An entry is used for at most [`TTL`]. Every change this host makes to a token or a user
//! ([`TokenMemo::forget_all`], called once the change is committed) drops every entry, and an
//! entry read before a change committed is never kept after it: reads are tagged with the
//! generation they started in and kept only while it is current. So a token revoked or a bot
//! disabled through this host is refused from the moment the call that did it answers; a change
//! made elsewhere (another host on the same database, SQL by hand) takes effect within [`TTL`].
//! Unknown tokens are not remembered.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::domain::tokens::ApiToken;
use crate::domain::users::User;

/// How long an entry is used before the token is read again.
pub const TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; past that the memo starts over (one entry per token in use).
pub const CAPACITY: usize = 4_096;

/// The memo, by token digest.
#[derive(Debug, Default)]
pub struct TokenMemo {
    generation: AtomicU64,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    token: ApiToken,
    user: User,
    read_at: Instant,
    generation: u64,
}

impl TokenMemo {
    /// The token with `digest` and its user, if read within [`TTL`] and since the last change.
    pub fn get(&self, digest: &str) -> Option<(ApiToken, User)> {
        let generation = self.generation.load(Ordering::Acquire);
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(digest)?;
        (entry.generation == generation && entry.read_at.elapsed() < TTL)
            .then(|| (entry.token.clone(), entry.user.clone()))
    }

    /// The generation a read starts in: pass it to [`TokenMemo::keep`] with what was read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps what a read that started in `generation` found, unless a change committed since.
    pub fn keep(&self, digest: &str, token: &ApiToken, user: &User, generation: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CAPACITY && !entries.contains_key(digest) {
            entries.clear();
        }
        entries.insert(
            digest.to_owned(),
            Entry {
                token: token.clone(),
                user: user.clone(),
                read_at: Instant::now(),
                generation,
            },
        );
    }

    /// Forgets every entry: call once a change to a token or a user is committed.
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::Timestamp;
    use crate::domain::tokens::Scopes;
    use crate::domain::users::{Role, UserKind};

    fn token_and_user() -> (ApiToken, User) {
        let at = Timestamp::from_millis(1);
        let user = User {
            id: "usr_1".into(),
            workspace_id: "ws_1".into(),
            kind: UserKind::Person,
            name: "Ada".into(),
            handle: "ada".into(),
            email: None,
            role: Role::Admin,
            avatar_url: None,
            disabled_at: None,
            deleted_at: None,
            created_at: at,
            updated_at: at,
        };
        let token = ApiToken {
            id: "tok_1".into(),
            workspace_id: "ws_1".into(),
            user_id: "usr_1".into(),
            name: "cli".into(),
            scopes: Scopes::new([]),
            expires_at: None,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
            created_at: at,
            session_id: None,
        };
        (token, user)
    }

    #[test]
    fn a_kept_read_is_used_until_a_change_is_committed() {
        let memo = TokenMemo::default();
        let (token, user) = token_and_user();
        assert!(memo.get("d").is_none());
        memo.keep("d", &token, &user, memo.generation());
        assert_eq!(memo.get("d").map(|(t, _)| t.id), Some(token.id.clone()));
        memo.forget_all();
        assert!(memo.get("d").is_none(), "a committed change drops every entry");
    }

    #[test]
    fn a_read_that_started_before_a_change_is_not_kept() {
        let memo = TokenMemo::default();
        let (token, user) = token_and_user();
        let started = memo.generation();
        memo.forget_all();
        memo.keep("d", &token, &user, started);
        assert!(
            memo.get("d").is_none(),
            "it may have read the row as it was before the change"
        );
    }

    #[test]
    fn the_memo_is_bounded() {
        let memo = TokenMemo::default();
        let (token, user) = token_and_user();
        for n in 0..=CAPACITY {
            memo.keep(&format!("d{n}"), &token, &user, memo.generation());
        }
        assert!(memo.entries.lock().unwrap().len() <= CAPACITY);
    }
}
