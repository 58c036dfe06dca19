//! People and bots. Both are users of a workspace; a bot is an identity whose work is done by its
//! agent connection.

use serde::Serialize;

use super::DomainError;

/// Whether a user is a person or a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    Person,
    Bot,
}

impl UserKind {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Person => "person",
            UserKind::Bot => "bot",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "person" => Some(UserKind::Person),
            "bot" => Some(UserKind::Bot),
            _ => None,
        }
    }
}

/// What a user may do in their workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages bots, connections, tokens and settings.
    Admin,
    /// Works on tasks.
    Member,
}

impl Role {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses a role name, naming the allowed values when it is not one.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        match text {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(DomainError::invalid(
                "role",
                format!("unknown role `{other}`; allowed: admin, member"),
            )),
        }
    }
}

/// Longest handle, in characters.
pub const MAX_HANDLE_CHARS: usize = 32;

/// Normalises and checks an `@handle`: a leading `@` is dropped, letters are lowercased; 2–32
/// characters of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
pub fn normalize_handle(raw: &str) -> Result<String, DomainError> {
    let handle = raw.trim().trim_start_matches('@').to_lowercase();
    let valid_chars = handle.chars().all(is_handle_char);
    let starts_well = handle.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if handle.chars().count() < 2 || handle.chars().count() > MAX_HANDLE_CHARS || !valid_chars || !starts_well {
        return Err(DomainError::invalid(
            "handle",
            format!(
                "`{}` is not a valid handle: use 2–{MAX_HANDLE_CHARS} characters of a-z, 0-9, `-` and `_`, starting with a letter or digit",
                raw.trim()
            ),
        ));
    }
    Ok(handle)
}

/// Characters allowed in a handle (after lowercasing).
pub fn is_handle_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_normalised_and_checked() {
        assert_eq!(normalize_handle("@Claw").unwrap(), "claw");
        assert_eq!(normalize_handle("code-bot_2").unwrap(), "code-bot_2");
        for bad in ["", "@", "a", "-bot", "has space", "émile", &"x".repeat(33)] {
            assert!(normalize_handle(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn roles_name_the_allowed_values() {
        assert_eq!(Role::parse("admin").unwrap(), Role::Admin);
        assert!(
            Role::parse("owner")
                .unwrap_err()
                .to_string()
                .contains("allowed: admin, member")
        );
    }
}

impl TryFrom<String> for UserKind {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        UserKind::parse(&value).ok_or_else(|| format!("unknown user kind `{value}`"))
    }
}

impl TryFrom<String> for Role {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, DomainError> {
        Role::parse(&value)
    }
}

/// A person or a bot of a workspace.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct User {
    pub id: super::ids::UserId,
    pub workspace_id: super::ids::WorkspaceId,
    #[sqlx(try_from = "String")]
    pub kind: UserKind,
    pub name: String,
    /// Lowercase, without `@`.
    pub handle: String,
    pub email: Option<String>,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub avatar_url: Option<String>,
    /// Set while the user is disabled: their tokens stop working and bots take no new work.
    pub disabled_at: Option<super::time::Timestamp>,
    /// Set once the user is deleted: kept for history, gone from lists, tokens revoked.
    pub deleted_at: Option<super::time::Timestamp>,
    pub created_at: super::time::Timestamp,
    pub updated_at: super::time::Timestamp,
}

impl User {
    /// Whether the user may act (not disabled).
    pub fn is_enabled(&self) -> bool {
        self.disabled_at.is_none()
    }
}

/// A workspace (tenant).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Workspace {
    pub id: super::ids::WorkspaceId,
    pub name: String,
    pub created_at: super::time::Timestamp,
}
