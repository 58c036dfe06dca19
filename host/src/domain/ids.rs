//! Typed, prefixed ids (`ws_…`, `tsk_…`, `ses_…`): a log line or support ticket says what an id
//! is at a glance, and the compiler keeps a task id from being used as a session id.
//!
//! The part after the prefix is a lowercase ULID, so ids sort by creation time.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String, example = $prefix)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with (without the `_`).
            pub const PREFIX: &'static str = $prefix;

            /// A new, unique id.
            pub fn generate() -> Self {
                Self(new_id($prefix))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// `prefix_` + a lowercase ULID. ULIDs from this process increase strictly, so ordering rows by id
/// orders them by creation even within one millisecond.
pub fn new_id(prefix: &str) -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let ulid = {
        let mut guard = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard
            .get_or_insert_with(ulid::Generator::new)
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
    };
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

define_id!(
    /// A workspace: the tenant everything else belongs to.
    WorkspaceId, "ws");
define_id!(
    /// A person or a bot (`usr_…` for people, `bot_…` for bots).
    UserId, "usr");
define_id!(
    /// An API token (not the token itself).
    TokenId, "tok");
define_id!(
    /// A bot's agent connection.
    ConnectionId, "con");
define_id!(
    /// A webhook signing secret of a connection (not the secret itself).
    SecretId, "whs");
define_id!(
    /// A task status of a workspace.
    StatusId, "sts");
define_id!(
    /// A task.
    TaskId, "tsk");
define_id!(
    /// A task comment.
    CommentId, "cmt");
define_id!(
    /// An entry of a task's own history (created, status changed, ...).
    TaskEventId, "tev");
define_id!(
    /// An agent session: one piece of work of one bot on one task.
    SessionId, "ses");
define_id!(
    /// An activity in a session's feed.
    ActivityId, "act");
define_id!(
    /// A recorded status change of a session.
    StatusChangeId, "ssc");
define_id!(
    /// A webhook delivery; sent as `Leadtime-Webhook-Id` and `webhook-id`, stable across retries.
    DeliveryId, "msg");
define_id!(
    /// One attempt at sending a delivery.
    AttemptId, "att");
define_id!(
    /// A durable background job.
    JobId, "job");
define_id!(
    /// A provider webhook the host received for a connection (`inbound`).
    InboundEventId, "ibe");

impl UserId {
    /// A new id for a bot user (`bot_…`).
    pub fn generate_bot() -> Self {
        Self(new_id("bot"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_unique_and_sortable() {
        let a = TaskId::generate();
        let b = TaskId::generate();
        assert!(a.as_str().starts_with("tsk_"));
        assert_eq!(a.as_str().len(), 4 + 26);
        assert_ne!(a, b);
        assert!(UserId::generate_bot().as_str().starts_with("bot_"));
        assert_eq!(a.as_str(), a.as_str().to_lowercase());
        let ids: Vec<String> = (0..1000).map(|_| new_id("x")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids must increase");
    }
}
