//! The session snapshot a plugin's `start-session` receives, from its start rows (read from the
//! database, or handed over by the write that opened the session).

use std::collections::HashMap;

use anyhow::anyhow;

use crate::domain::ids::{CommentId, UserId};
use crate::domain::sessions::{Connection, Session, TriggerKind};
use crate::domain::tasks::Comment;
use crate::domain::users::User;
use crate::runtime::bindings::types as wit;
use crate::store::session_start::{NamedUser, StartRows};
use crate::store::{self, Conn, Db};

/// Builds the `session-start` record from a session's start rows.
pub async fn session_start(db: &Db, rows: StartRows, api_base_url: &str) -> anyhow::Result<wit::SessionStart> {
    let StartRows {
        session,
        workspace_name,
        task,
        status_name,
        bot_name,
        bot_handle,
        connection,
        assignee,
        trigger_actor,
        has_comments,
        ..
    } = rows;
    let missing = |what: &str| anyhow!("session {} refers to a missing {what}", session.id);
    // The start rows name the assignee and the trigger's actor; comments and their authors are
    // read only when the task has any.
    let mut actors: HashMap<UserId, wit::Actor> = assignee
        .into_iter()
        .chain(trigger_actor)
        .map(|u| (u.id.clone(), named_actor(u)))
        .collect();
    let mut comments = Vec::new();
    if has_comments {
        let mut conn = db.read().await?;
        comments = store::tasks::comments(&mut conn, &task.id).await?;
        let mut authors: Vec<UserId> = comments
            .iter()
            .map(|c| c.author_id.clone())
            .filter(|id| !actors.contains_key(id))
            .collect();
        authors.sort();
        authors.dedup();
        if !authors.is_empty() {
            for user in store::users::get_many(&mut conn, &authors).await? {
                actors.insert(user.id.clone(), actor(&user));
            }
        }
    }
    let actor = |id: &UserId| actors.get(id).cloned().unwrap_or_else(|| unknown_actor(id));

    let wit_comments: Vec<wit::Comment> = comments.iter().map(|c| comment(c, actor(&c.author_id))).collect();
    let trigger = match session.trigger_kind {
        TriggerKind::Mentioned => {
            let found = session
                .comment_id
                .as_ref()
                .and_then(|id| wit_comments.iter().find(|c| c.id == id.as_str()));
            match found {
                Some(c) => wit::Trigger::Mentioned(c.clone()),
                None => return Err(missing("trigger comment")),
            }
        }
        TriggerKind::Assigned => wit::Trigger::Assigned(
            session
                .trigger_actor_id
                .as_ref()
                .map(&actor)
                .unwrap_or_else(system_actor),
        ),
        TriggerKind::Automation => wit::Trigger::Automation("automation".into()),
    };

    Ok(wit::SessionStart {
        session_id: session.id.to_string(),
        workspace_id: session.workspace_id.to_string(),
        workspace_name,
        created_at: session.created_at.to_iso(),
        bot: wit::BotInfo {
            id: session.bot_id.to_string(),
            name: bot_name,
            handle: bot_handle,
        },
        connection: connection_info(&connection),
        trigger,
        task: wit::TaskSnapshot {
            id: task.id.to_string(),
            short_number: u64::try_from(task.short_number).unwrap_or_default(),
            title: task.title,
            description: task.description,
            status: status_name,
            status_id: task.status_id.to_string(),
            assignee: task.assignee_id.as_ref().map(&actor),
            created_at: task.created_at.to_iso(),
        },
        comments: wit_comments,
        api_base_url: api_base_url.to_owned(),
    })
}

/// The `session-ref` an `on-event` call receives.
pub async fn session_ref(conn: &mut Conn, session: &Session) -> anyhow::Result<wit::SessionRef> {
    let missing = |what: &str| anyhow!("session {} refers to a missing {what}", session.id);
    let bot = store::users::get_any(conn, &session.bot_id)
        .await?
        .ok_or_else(|| missing("bot"))?;
    let connection = store::connections::get(conn, &session.connection_id)
        .await?
        .ok_or_else(|| missing("connection"))?;
    Ok(wit::SessionRef {
        session_id: session.id.to_string(),
        workspace_id: session.workspace_id.to_string(),
        bot: wit::BotInfo {
            id: bot.id.to_string(),
            name: bot.name,
            handle: bot.handle,
        },
        connection: connection_info(&connection),
    })
}

/// The comment `id` as a `follow-up` event carries it, if it still exists.
pub async fn follow_up(conn: &mut Conn, id: &CommentId) -> anyhow::Result<Option<wit::Comment>> {
    let Some(found) = store::tasks::comment(conn, id).await? else {
        return Ok(None);
    };
    let author = match store::users::get_any(conn, &found.author_id).await? {
        Some(user) => actor(&user),
        None => unknown_actor(&found.author_id),
    };
    Ok(Some(comment(&found, author)))
}

/// The `connection-info` of a connection.
pub fn connection_info(connection: &Connection) -> wit::ConnectionInfo {
    wit::ConnectionInfo {
        id: connection.id.to_string(),
        connection_type: connection.connection_type.clone(),
        config: connection.config.clone(),
    }
}

fn actor(user: &User) -> wit::Actor {
    wit::Actor {
        id: user.id.to_string(),
        name: user.name.clone(),
        kind: user.kind.as_str().to_owned(),
        handle: Some(user.handle.clone()),
    }
}

fn named_actor(user: NamedUser) -> wit::Actor {
    wit::Actor {
        id: user.id.to_string(),
        name: user.name,
        kind: user.kind,
        handle: Some(user.handle),
    }
}

fn unknown_actor(id: &UserId) -> wit::Actor {
    wit::Actor {
        id: id.to_string(),
        name: "(unknown user)".into(),
        kind: "person".into(),
        handle: None,
    }
}

fn system_actor() -> wit::Actor {
    wit::Actor {
        id: String::new(),
        name: "Leadtime".into(),
        kind: "system".into(),
        handle: None,
    }
}

fn comment(c: &Comment, author: wit::Actor) -> wit::Comment {
    wit::Comment {
        id: c.id.to_string(),
        author,
        body: c.body.clone(),
        created_at: c.created_at.to_iso(),
    }
}
