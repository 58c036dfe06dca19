//! Tasks in the console: the list (with a form for a new task), and a task's page — description,
//! assignee picker (people and bots, each bot with its connection type), comments with their
//! @mentions, and the history in which every agent session is a card that follows its session
//! live. Every action goes through the same use case as its API call.

use std::collections::HashMap;

use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::ConsoleUser;
use super::layout::{Page, badge, page};
use super::{problem, refused};
use crate::api::views::{self, CommentView, HistoryEntry, People, SessionView};
use crate::app::SharedApp;
use crate::domain::tasks::TaskRef;
use crate::domain::users::UserKind;
use crate::store;
use crate::use_cases::{self, tasks::NewTask, tasks::TaskPatch};

/// Tasks per page of the list.
const PAGE_SIZE: i64 = 50;

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    page: Option<i64>,
}

/// `GET /console/tasks`
pub(super) async fn list(State(app): State<SharedApp>, user: ConsoleUser, Query(query): Query<ListQuery>) -> Response {
    let page_number = query.page.unwrap_or(1).max(1);
    let loaded = async {
        let mut conn = app.db.read().await?;
        let workspace = user.caller.workspace_id();
        let (tasks, total) = store::tasks::page(&mut conn, workspace, (page_number - 1) * PAGE_SIZE, PAGE_SIZE).await?;
        let statuses = store::tasks::statuses(&mut conn, workspace).await?;
        let people = People::load(&mut conn, tasks.iter().flat_map(|t| t.assignee_id.iter().cloned())).await?;
        let views: Vec<_> = tasks.iter().map(|t| views::task_view(t, &statuses, &people)).collect();
        Ok::<_, store::StoreError>((views, total))
    };
    let (tasks, total) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return refused(error.into()),
    };
    let pages = (total + PAGE_SIZE - 1) / PAGE_SIZE;
    page(Page {
        title: "Tasks",
        user: Some((&user.caller, &user.csrf)),
        body: html! {
            h1 { "Tasks" }
            div.layout {
                section aria-labelledby="task-list" {
                    h2 #task-list { (total) " tasks" }
                    @if tasks.is_empty() {
                        p { "No tasks yet: create the first one." }
                    } @else {
                        table {
                            thead { tr { th scope="col" { "#" } th scope="col" { "Title" } th scope="col" { "Status" } th.optional scope="col" { "Assignee" } } }
                            tbody {
                                @for task in &tasks {
                                    tr {
                                        td { (task.short_number) }
                                        td { a href={ "/console/tasks/" (task.short_number) } { (task.title) } }
                                        td { (task.status.as_ref().map(|s| s.name.as_str()).unwrap_or("")) }
                                        td.optional { (assignee_label(task.assignee.as_ref())) }
                                    }
                                }
                            }
                        }
                        @if pages > 1 {
                            nav aria-label="Pages" {
                                @if page_number > 1 { a href={ "/console/tasks?page=" (page_number - 1) } { "← Newer" } " " }
                                "Page " (page_number) " of " (pages)
                                @if page_number < pages { " " a href={ "/console/tasks?page=" (page_number + 1) } { "Older →" } }
                            }
                        }
                    }
                }
                section aria-labelledby="new-task" {
                    h2 #new-task { "New task" }
                    form method="post" action="/console/tasks" {
                        input type="hidden" name="csrf" value=(user.csrf);
                        label for="title" { "Title" }
                        input #title type="text" name="title" required maxlength="500";
                        label for="description" { "Description" }
                        textarea #description name="description" {}
                        button type="submit" { "Create task" }
                    }
                }
            }
        },
    })
    .into_response()
}

fn assignee_label(assignee: Option<&views::UserRef>) -> Markup {
    html! {
        @match assignee {
            Some(a) => { (a.name) @if a.kind == UserKind::Bot { " (bot)" } }
            None => span.meta { "unassigned" },
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct NewTaskForm {
    csrf: String,
    title: String,
    description: Option<String>,
}

/// `POST /console/tasks`
pub(super) async fn create(State(app): State<SharedApp>, user: ConsoleUser, Form(form): Form<NewTaskForm>) -> Response {
    if let Some(refusal) = user.csrf_refusal(&form.csrf) {
        return refusal;
    }
    let request = NewTask {
        title: form.title,
        description: form.description.filter(|d| !d.trim().is_empty()),
        status_id: None,
        assignee: None,
    };
    match use_cases::tasks::create(&app, &user.caller, request).await {
        Ok(written) => Redirect::to(&format!("/console/tasks/{}", written.task.id)).into_response(),
        Err(error) => refused(error),
    }
}

/// Everything the task page shows, read in a fixed number of queries.
struct TaskPage {
    task: views::TaskView,
    comments: Vec<CommentView>,
    history: Vec<HistoryEntry>,
    /// `(id, label)` of everyone the task can be assigned to; bots with their connection type.
    assignable: Vec<(String, String)>,
}

async fn load(app: &SharedApp, user: &ConsoleUser, number: &str) -> Result<TaskPage, use_cases::Error> {
    let mut conn = app.db.read().await?;
    let task = use_cases::tasks::find_task(&mut conn, &user.caller, &TaskRef::parse(number)).await?;
    let view = views::load_task_view(&mut conn, &task).await?;
    let comments = store::tasks::comments(&mut conn, &task.id).await?;
    let people = People::load(&mut conn, comments.iter().map(|c| c.author_id.clone())).await?;
    let comments = comments.iter().map(|c| views::comment_view(c, &people)).collect();
    let history = views::task_history(&mut conn, &task).await?;
    let workspace = user.caller.workspace_id();
    let users = store::users::list(&mut conn, workspace, None).await?;
    let types: HashMap<String, String> = store::connections::types_of_bots(&mut conn, workspace)
        .await?
        .into_iter()
        .collect();
    let assignable = users
        .iter()
        .filter(|u| u.is_enabled())
        .map(|u| {
            let label = match u.kind {
                UserKind::Person => format!("{} (@{})", u.name, u.handle),
                UserKind::Bot => format!(
                    "{} (@{}) — bot, {}",
                    u.name,
                    u.handle,
                    types.get(u.id.as_str()).map_or("no connection", String::as_str)
                ),
            };
            (u.id.to_string(), label)
        })
        .collect();
    Ok(TaskPage {
        task: view,
        comments,
        history,
        assignable,
    })
}

/// `GET /console/tasks/{number}`
pub(super) async fn show(State(app): State<SharedApp>, user: ConsoleUser, Path(number): Path<String>) -> Response {
    let data = match load(&app, &user, &number).await {
        Ok(data) => data,
        Err(error) => return refused(error),
    };
    let task = &data.task;
    let title = format!("#{} {}", task.short_number, task.title);
    page(Page {
        title: &title,
        user: Some((&user.caller, &user.csrf)),
        body: html! {
            p.meta { a href="/console/tasks" { "← Tasks" } }
            h1 { "#" (task.short_number) " " (task.title) }
            div.layout {
                div {
                    section aria-labelledby="description" {
                        h2 #description { "Description" }
                        @if task.description.trim().is_empty() {
                            p.meta { "No description." }
                        } @else {
                            div.description { (task.description) }
                        }
                    }
                    section aria-labelledby="history" {
                        h2 #history { "History" }
                        ol.timeline {
                            @for entry in &data.history {
                                li { (history_entry(entry, &user.csrf)) }
                            }
                        }
                    }
                    section aria-labelledby="comment" {
                        h2 #comment { "Comment" }
                        form method="post" action={ "/console/tasks/" (task.short_number) "/comments" } {
                            input type="hidden" name="csrf" value=(user.csrf);
                            label for="comment-body" { "Comment (mention a bot with @handle to give it work)" }
                            textarea #comment-body name="comment" required {}
                            button type="submit" { "Comment" }
                        }
                    }
                }
                aside aria-label="Task details" {
                    h2 { "Status" }
                    p { (task.status.as_ref().map(|s| s.name.as_str()).unwrap_or("")) }
                    h2 { "Assignee" }
                    p #assignee { (assignee_label(task.assignee.as_ref())) }
                    form method="post" action={ "/console/tasks/" (task.short_number) "/assign" } {
                        input type="hidden" name="csrf" value=(user.csrf);
                        label for="assignee-picker" { "Assign to" }
                        select #assignee-picker name="assignee" {
                            option value="" { "Nobody" }
                            @for (id, label) in &data.assignable {
                                option value=(id) selected[task.assignee_id.as_deref() == Some(id.as_str())] { (label) }
                            }
                        }
                        button type="submit" { "Assign" }
                    }
                    h2 { "Comments" }
                    p.meta { (data.comments.len()) " on this task" }
                }
            }
        },
    })
    .into_response()
}

fn history_entry(entry: &HistoryEntry, csrf: &str) -> Markup {
    let who = entry.actor.as_ref().map_or("Someone", |a| a.name.as_str());
    html! {
        @match entry.kind {
            "agentSession" => {
                @if let Some(session) = &entry.session { (session_card(session, csrf)) }
            }
            "comment" => {
                @if let Some(comment) = &entry.comment {
                    p.meta { (who) " commented · " time datetime=(entry.at) { (entry.at) } }
                    div.comment-body { (with_mentions(&comment.body)) }
                }
            }
            "created" => p.meta { (who) " created the task · " time datetime=(entry.at) { (entry.at) } },
            kind => p.meta { (who) " · " (describe(kind, entry)) " · " time datetime=(entry.at) { (entry.at) } },
        }
    }
}

fn describe(kind: &str, entry: &HistoryEntry) -> String {
    let name = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v["name"].as_str().unwrap_or("nobody").to_owned(),
        None => "nobody".to_owned(),
    };
    match kind {
        "statusChanged" => format!("moved it from {} to {}", name(&entry.from), name(&entry.to)),
        "assigneeChanged" => format!("assigned it to {} (was {})", name(&entry.to), name(&entry.from)),
        "titleChanged" => format!("renamed it to “{}”", name(&entry.to)),
        "descriptionChanged" => "changed the description".to_owned(),
        other => other.to_owned(),
    }
}

/// A comment's text with its @mentions marked.
fn with_mentions(body: &str) -> Markup {
    html! {
        @for (n, word) in body.split(' ').enumerate() {
            @if n > 0 { " " }
            @if word.len() > 1 && word.starts_with('@') { span.mention { (word) } } @else { (word) }
        }
    }
}

/// One agent session: its card, following the session live while it runs.
fn session_card(session: &SessionView, csrf: &str) -> Markup {
    let status = session.status.as_str();
    let finished = session.status.is_terminal();
    let trigger = serde_json::to_value(session.trigger.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    // The live card resumes after the last activity shown (status events are applied again,
    // which changes nothing).
    let last_event = session.activities.last().map(|a| a.id.clone()).filter(|_| !finished);
    let bot = session.bot.as_ref().map_or("a bot", |b| b.name.as_str());
    let heading = format!("session-{}", session.id);
    html! {
        article.session id=(session.id) aria-labelledby=(heading)
            data-session-status=(status)
            data-stream=[(!finished).then(|| format!("/console/sessions/{}/stream", session.id))]
            data-last-event=[last_event] {
            header {
                strong #(heading) { (bot) }
                span.meta { (session.connection_type) " · " (trigger) }
                (badge(status))
                span.live aria-hidden="true" {}
            }
            @if let Some(message) = &session.status_message {
                p.status-message.meta { (message) }
            } @else {
                p.status-message.meta {}
            }
            @if let Some(link) = &session.external_link {
                p { a href=(link.url) rel="noopener noreferrer" { (link.label) } }
            }
            ol.feed aria-live="polite" aria-label={ "Activity of " (bot) } {
                @for activity in &session.activities {
                    li id=(activity.id) {
                        span.kind { (activity.activity_type.as_str()) }
                        (activity.body)
                    }
                }
            }
            @if !finished {
                form.cancel method="post" action={ "/console/sessions/" (session.id) "/cancel" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button.danger type="submit" { "Cancel session" }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AssignForm {
    csrf: String,
    assignee: String,
}

/// `POST /console/tasks/{number}/assign`
pub(super) async fn assign(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path(number): Path<String>,
    Form(form): Form<AssignForm>,
) -> Response {
    if let Some(refusal) = user.csrf_refusal(&form.csrf) {
        return refusal;
    }
    let assignee = Some(form.assignee).filter(|a| !a.is_empty());
    let patch = TaskPatch {
        assignee: Some(assignee),
        ..TaskPatch::default()
    };
    match use_cases::tasks::update(&app, &user.caller, &TaskRef::parse(&number), patch).await {
        Ok(_) => Redirect::to(&format!("/console/tasks/{number}")).into_response(),
        Err(error) => refused(error),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CommentForm {
    csrf: String,
    comment: String,
}

/// `POST /console/tasks/{number}/comments`
pub(super) async fn comment(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path(number): Path<String>,
    Form(form): Form<CommentForm>,
) -> Response {
    if let Some(refusal) = user.csrf_refusal(&form.csrf) {
        return refusal;
    }
    match use_cases::tasks::add_comment(&app, &user.caller, &TaskRef::parse(&number), &form.comment).await {
        Ok(_) => Redirect::to(&format!("/console/tasks/{number}#comment")).into_response(),
        Err(error) => refused(error),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CancelForm {
    csrf: String,
}

/// `POST /console/sessions/{id}/cancel`
pub(super) async fn cancel(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Response {
    if let Some(refusal) = user.csrf_refusal(&form.csrf) {
        return refusal;
    }
    match use_cases::sessions::cancel_by_person(&app, &user.caller, &id, None).await {
        Ok(session) => Redirect::to(&format!("/console/tasks/{}#{}", session.task_id, session.id)).into_response(),
        Err(error) => refused(error),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct StreamQuery {
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// `GET /console/sessions/{id}/stream`: the session stream of the API, for the signed-in person.
pub(super) async fn stream(
    State(app): State<SharedApp>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Response {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    match crate::api::session_stream::open(&app, &user.caller, &id, after.as_deref(), true).await {
        Ok(stream) => stream.into_response(),
        Err(error) => problem(error.status(), &error.to_string()),
    }
}
