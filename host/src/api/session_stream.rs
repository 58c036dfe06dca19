//! `GET /agent-sessions/{id}/stream`: a session's activities and status changes as Server-Sent
//! Events, as they are committed — what the console's live cards read, and what wrappers and
//! scripts may follow too. Same authorization as reading the session.
//!
//! Each event's `id` is its record's id (`act_…` or `ssc_…`, ULIDs in creation order); a client
//! that reconnects with `Last-Event-ID` (browsers do it on their own) or `?lastEventId=` gets what
//! came after it. A stream wakes when a write batch commits (not on a timer) and reads the records
//! after the last it sent; it re-reads a short window before that, because two writers can
//! commit in the other order than they created their ids, so a record committed late is still
//! sent (once). When the session has finished and everything is sent, an `end` event closes it.
//!
//! Bounds: [`StreamSlots`] caps streams host-wide (`--max-session-streams`) and per token
//! ([`PER_TOKEN`]); over either the answer is 429. A stream reads at most every [`MIN_GAP`],
//! [`BATCH`] records at a time, and lasts at most [`MAX_LIFETIME`] (the client reconnects where it
//! left off).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{AppError, ErrorBody};
use super::extract::Reader;
use super::views::{ActivityView, StatusChangeView};
use crate::app::{App, SharedApp};
use crate::domain::ids::{SessionId, TokenId};
use crate::domain::sessions::{Activity, SessionStatus, StatusChange};
use crate::store;
use crate::use_cases::caller::Caller;

/// Streams one token may hold open at once.
pub const PER_TOKEN: usize = 16;
/// Shortest time between two reads of one stream (commits in between are read together).
const MIN_GAP: Duration = Duration::from_millis(100);
/// Records read per query.
const BATCH: i64 = 500;
/// How far before the last record sent a stream reads again, for records committed late.
const LOOKBACK_MS: u64 = 10_000;
/// Longest a stream stays open; the client reconnects with the last id it got.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How often an idle stream sends a comment (keeps proxies from closing it).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Open streams, host-wide and per token.
#[derive(Debug)]
pub struct StreamSlots {
    max: usize,
    open: Mutex<HashMap<TokenId, usize>>,
}

impl StreamSlots {
    /// At most `max` streams open on the host.
    pub fn new(max: usize) -> StreamSlots {
        StreamSlots {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn take(self: &Arc<Self>, token: &TokenId) -> Result<StreamSlot, AppError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(token).copied().unwrap_or(0);
        if total >= self.max || mine >= PER_TOKEN {
            let why = if mine >= PER_TOKEN {
                format!("this token has {PER_TOKEN} session streams open; close one first")
            } else {
                format!("the host has its {} session streams open; try again shortly", self.max)
            };
            return Err(AppError::TooMany {
                message: why,
                retry_after_secs: 5,
            });
        }
        *open.entry(token.clone()).or_default() += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            token: token.clone(),
        })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }
}

/// One open stream's place; given back when the stream is dropped (the client went away).
struct StreamSlot {
    slots: Arc<StreamSlots>,
    token: TokenId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.token) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.token);
            }
        }
    }
}

/// Where to resume and whether to follow.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct StreamQuery {
    /// Resume after this event id (as the `Last-Event-ID` header does; the header wins).
    last_event_id: Option<String>,
    /// `false`: send what there is now, then end (for scripts); default `true`: follow live.
    follow: Option<bool>,
}

/// Follow an agent session live
///
/// Server-Sent Events (`text/event-stream`): `activity` events (data: the activity, as in the
/// session card's feed) and `status` events (data: the status change), each with its record id as
/// the event `id`, in the order they were recorded; `end` once the session has finished and
/// everything was sent. Resume with `Last-Event-ID` (or `?lastEventId=`). At most 16 streams per
/// token (429 beyond, and when the host's cap is reached).
#[utoipa::path(get, path = "/agent-sessions/{id}/stream", tag = "agent-sessions", operation_id = "streamAgentSession",
    params(("id" = String, Path, description = "Agent session id (agentRunId)"), StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "The event stream"),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(super) async fn stream_session(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    open(&app, &caller, &id, after.as_deref(), query.follow.unwrap_or(true)).await
}

/// The stream of session `id` as `caller` may read it, after event `after` (its records' ids),
/// following it live or not: for the API route and the console's.
pub(crate) async fn open(
    app: &SharedApp,
    caller: &Caller,
    id: &str,
    after: Option<&str>,
    follow: bool,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, AppError> {
    let session = super::agent_sessions::find(app, caller, id).await?;
    let after = match after.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => Some(Cursor::parse(id).ok_or_else(|| {
            AppError::invalid(
                "lastEventId",
                format!("`{id}` is not an event id of this stream (an `act_…` or `ssc_…` id it sent)"),
            )
        })?),
        None => None,
    };
    let slot = app.session_streams.take(&caller.token.id)?;
    let state = Follow {
        app: app.clone(),
        session: session.id.clone(),
        commits: app.writer.commits(),
        follow,
        resume: after,
        sent: Window::default(),
        ready: VecDeque::new(),
        ended: false,
        started: tokio::time::Instant::now(),
        last_read: None,
        _slot: slot,
    };
    let events = stream::unfold(state, |mut state| async move {
        let event = state.next().await?;
        Some((Ok(event), state))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// A position in the stream: the ULID part of a record id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor(String);

impl Cursor {
    fn parse(id: &str) -> Option<Cursor> {
        let (prefix, ulid) = id.split_once('_')?;
        let valid = matches!(prefix, "act" | "ssc") && ulid::Ulid::from_string(ulid).is_ok();
        valid.then(|| Cursor(ulid.to_ascii_lowercase()))
    }

    /// The cursor `ms` milliseconds earlier (the lowest ULID of that moment).
    fn earlier(&self, ms: u64) -> Cursor {
        let at = ulid::Ulid::from_string(&self.0).map_or(0, |u| u.timestamp_ms());
        Cursor(
            ulid::Ulid::from_parts(at.saturating_sub(ms), 0)
                .to_string()
                .to_ascii_lowercase(),
        )
    }
}

/// Record ids sent within the lookback window (so a re-read sends each once).
#[derive(Default)]
struct Window {
    ids: HashSet<String>,
    order: VecDeque<(Cursor, String)>,
    last: Option<Cursor>,
}

impl Window {
    fn sent(&mut self, cursor: Cursor, id: String) {
        if self.last.as_ref().is_none_or(|last| cursor > *last) {
            self.last = Some(cursor.clone());
        }
        self.ids.insert(id.clone());
        self.order.push_back((cursor, id));
        if let Some(last) = &self.last {
            let floor = last.earlier(LOOKBACK_MS);
            while self.order.front().is_some_and(|(c, _)| *c < floor) {
                if let Some((_, id)) = self.order.pop_front() {
                    self.ids.remove(&id);
                }
            }
        }
    }
}

/// One stream's state between events.
struct Follow {
    app: SharedApp,
    session: SessionId,
    commits: tokio::sync::watch::Receiver<u64>,
    follow: bool,
    /// The client's `Last-Event-ID`: nothing at or before it is sent (the client has it).
    resume: Option<Cursor>,
    sent: Window,
    ready: VecDeque<Event>,
    ended: bool,
    started: tokio::time::Instant,
    last_read: Option<tokio::time::Instant>,
    _slot: StreamSlot,
}

/// A record of the session's feed, in stream order.
enum Record {
    Activity(Activity),
    Status(StatusChange),
}

impl Record {
    fn id(&self) -> &str {
        match self {
            Record::Activity(a) => a.id.as_str(),
            Record::Status(c) => c.id.as_str(),
        }
    }

    fn event(&self) -> Event {
        let (name, data) = match self {
            Record::Activity(a) => ("activity", serde_json::to_string(&ActivityView::from(a))),
            Record::Status(c) => ("status", serde_json::to_string(&StatusChangeView::from(c))),
        };
        Event::default()
            .id(self.id())
            .event(name)
            .data(data.unwrap_or_else(|_| "{}".into()))
    }
}

impl Follow {
    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.ended || self.started.elapsed() >= MAX_LIFETIME {
                return None;
            }
            if let Some(last) = self.last_read {
                // Wait for a commit (at most until the stream's lifetime ends), no more often
                // than MIN_GAP.
                let left = MAX_LIFETIME.saturating_sub(self.started.elapsed());
                tokio::select! {
                    changed = tokio::time::timeout(left, self.commits.changed()) => {
                        if !matches!(changed, Ok(Ok(()))) {
                            return None;
                        }
                    }
                    // The host is shutting down: end here; the client reconnects to the next one.
                    () = self.app.stopping.cancelled() => return None,
                }
                tokio::time::sleep_until(last + MIN_GAP).await;
            }
            self.commits.borrow_and_update();
            self.last_read = Some(tokio::time::Instant::now());
            let app = self.app.clone();
            match self.read(&app).await {
                Ok(Read { finished, more }) => {
                    if !more && (finished || !self.follow) {
                        self.ready.push_back(Event::default().event("end").data("{}"));
                        self.ended = true;
                    }
                }
                Err(error) => {
                    tracing::warn!(session = %self.session, %error, "a session stream could not read; it ends");
                    return None;
                }
            }
        }
    }

    /// Reads the records after the cursor (and the lookback window) and queues the new ones.
    async fn read(&mut self, app: &App) -> Result<Read, store::StoreError> {
        let lookback = self.sent.last.as_ref().map(|last| last.earlier(LOOKBACK_MS));
        let floor = match (lookback, &self.resume) {
            (Some(lookback), Some(resume)) => lookback.max(resume.clone()),
            (Some(lookback), None) => lookback,
            (None, Some(resume)) => resume.clone(),
            (None, None) => Cursor(String::new()),
        };
        let mut conn = app.db.read().await?;
        let mut records: Vec<(Cursor, Record)> = Vec::new();
        let mut full = false;
        let activities =
            store::sessions::activities_after(&mut conn, &self.session, &format!("act_{}", floor.0), BATCH).await?;
        full |= activities.len() as i64 == BATCH;
        records.extend(
            activities
                .into_iter()
                .map(|a| (cursor_of(a.id.as_str()), Record::Activity(a))),
        );
        let changes =
            store::sessions::status_changes_after(&mut conn, &self.session, &format!("ssc_{}", floor.0), BATCH).await?;
        full |= changes.len() as i64 == BATCH;
        records.extend(
            changes
                .into_iter()
                .map(|c| (cursor_of(c.id.as_str()), Record::Status(c))),
        );
        let status = store::sessions::get_any(&mut conn, &self.session)
            .await?
            .map_or(SessionStatus::Canceled, |s| s.status);
        drop(conn);
        records.sort_by(|a, b| a.0.cmp(&b.0));
        for (cursor, record) in records {
            if self.sent.ids.contains(record.id()) {
                continue;
            }
            self.ready.push_back(record.event());
            self.sent.sent(cursor, record.id().to_owned());
        }
        if full {
            // More than a batch waits: read again at once rather than wait for a commit.
            self.commits.mark_changed();
        }
        Ok(Read {
            finished: status.is_terminal(),
            more: full,
        })
    }
}

/// What one read found.
struct Read {
    /// The session has finished.
    finished: bool,
    /// A batch was full: more records wait.
    more: bool,
}

fn cursor_of(id: &str) -> Cursor {
    Cursor(id.split_once('_').map_or(id, |(_, ulid)| ulid).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_only_this_streams_ids_and_step_back_in_time() {
        let id = crate::domain::ids::ActivityId::generate();
        let cursor = Cursor::parse(id.as_str()).expect("an activity id");
        assert!(Cursor::parse("tsk_01hzzzzzzzzzzzzzzzzzzzzzzz").is_none());
        assert!(Cursor::parse("act_not-a-ulid").is_none());
        let earlier = cursor.earlier(10_000);
        assert!(earlier < cursor);
        assert_eq!(cursor.earlier(0).0[..10], cursor.0[..10]);
    }

    #[test]
    fn the_window_forgets_ids_older_than_the_lookback() {
        let mut window = Window::default();
        let old = Cursor(ulid::Ulid::from_parts(1_000_000, 1).to_string().to_ascii_lowercase());
        let new = Cursor(
            ulid::Ulid::from_parts(1_000_000 + LOOKBACK_MS + 1, 1)
                .to_string()
                .to_ascii_lowercase(),
        );
        window.sent(old, "act_old".into());
        assert!(window.ids.contains("act_old"));
        window.sent(new.clone(), "act_new".into());
        assert!(!window.ids.contains("act_old") && window.ids.contains("act_new"));
        assert_eq!(window.last, Some(new));
    }
}
