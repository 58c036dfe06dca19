//! Tasks and task statuses.

use serde::Serialize;

use super::ids::{CommentId, StatusId, TaskEventId, TaskId, UserId, WorkspaceId};
use super::time::Timestamp;
use super::{DomainError, bounded_text};

/// Longest task title, in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// Longest task description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 100_000;

/// How a task is named in a URL: its id (`tsk_…`) or its per-workspace short number (`943`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRef {
    /// The task id.
    Id(String),
    /// The per-workspace short number.
    ShortNumber(i64),
}

impl TaskRef {
    /// All digits is a short number; anything else is an id (an unknown one simply finds nothing).
    pub fn parse(identifier: &str) -> Self {
        let identifier = identifier.trim().trim_start_matches('#');
        if !identifier.is_empty()
            && identifier.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = identifier.parse::<i64>()
        {
            return TaskRef::ShortNumber(n);
        }
        TaskRef::Id(identifier.to_owned())
    }
}

/// What kind of progress a status means; lets agents and automations reason about statuses
/// whatever a workspace named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusCategory {
    Backlog,
    Unstarted,
    Started,
    Completed,
    Canceled,
}

impl StatusCategory {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCategory::Backlog => "backlog",
            StatusCategory::Unstarted => "unstarted",
            StatusCategory::Started => "started",
            StatusCategory::Completed => "completed",
            StatusCategory::Canceled => "canceled",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Backlog,
            Self::Unstarted,
            Self::Started,
            Self::Completed,
            Self::Canceled,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }
}

/// The statuses a new workspace starts with, in board order. The second one is the default
/// status of new tasks.
pub const DEFAULT_STATUSES: [(&str, StatusCategory); 6] = [
    ("Backlog", StatusCategory::Backlog),
    ("To do", StatusCategory::Unstarted),
    ("In progress", StatusCategory::Started),
    ("In review", StatusCategory::Started),
    ("Done", StatusCategory::Completed),
    ("Canceled", StatusCategory::Canceled),
];

/// Index in [`DEFAULT_STATUSES`] of the status new tasks get.
pub const DEFAULT_NEW_TASK_STATUS: usize = 1;

/// Checks and trims a task title.
pub fn validate_title(title: &str) -> Result<String, DomainError> {
    bounded_text("title", title, 1, MAX_TITLE_CHARS)
}

/// Checks a task description (may be empty).
pub fn validate_description(description: &str) -> Result<String, DomainError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(DomainError::invalid(
            "description",
            format!("`description` is too long: at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(description.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_ids_or_short_numbers() {
        assert_eq!(TaskRef::parse("943"), TaskRef::ShortNumber(943));
        assert_eq!(TaskRef::parse("#7"), TaskRef::ShortNumber(7));
        assert_eq!(TaskRef::parse("tsk_01abc"), TaskRef::Id("tsk_01abc".into()));
        assert_eq!(
            TaskRef::parse("99999999999999999999999"),
            TaskRef::Id("99999999999999999999999".into())
        );
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(validate_title("  Fix it ").unwrap(), "Fix it");
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"x".repeat(501)).is_err());
    }
}

impl TryFrom<String> for StatusCategory {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        StatusCategory::parse(&value).ok_or_else(|| format!("unknown status category `{value}`"))
    }
}

/// A task status of a workspace.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TaskStatus {
    pub id: StatusId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub category: StatusCategory,
    pub position: i64,
}

/// A task.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Task {
    pub id: TaskId,
    pub workspace_id: WorkspaceId,
    /// Per-workspace number, shown as `#943`.
    pub short_number: i64,
    pub title: String,
    pub description: String,
    pub status_id: StatusId,
    pub assignee_id: Option<UserId>,
    pub created_by: UserId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A task comment.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Comment {
    pub id: CommentId,
    pub workspace_id: WorkspaceId,
    pub task_id: TaskId,
    pub author_id: UserId,
    pub body: String,
    pub created_at: Timestamp,
}

/// An entry of a task's own history.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TaskEvent {
    pub id: TaskEventId,
    pub task_id: TaskId,
    pub actor_id: Option<UserId>,
    /// `created`, `title_changed`, `description_changed`, `status_changed`, `assignee_changed`.
    pub kind: String,
    /// JSON: `{"from": …, "to": …}` for changes.
    pub details: String,
    pub created_at: Timestamp,
}
